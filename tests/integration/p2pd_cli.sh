#!/bin/sh
# natpeer-p2pd: go-libp2p-daemon's command line (hivemind's exact argv),
# the banner, -q, the lifetime rules (-idleTimeout, last persistent
# connection, parent exit), calls and streams to oneself, Go's flag errors.
# Everything on loopback; every daemon is killed on exit.
. "$(dirname "$0")/lib.sh"
P2PD="$top_builddir/host/natpeer-p2pd"
CLI="$top_builddir/host/natpeer-cli"
PYC="$top_srcdir/tests/integration/p2pd_client.py"
command -v python3 >/dev/null || skip_all "python3 not found"
[ -x "$P2PD" ] || skip_all "$P2PD not built"

# alive PID: the process exists and is no zombie.
alive() { [ -d "/proc/$1" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }
# gone_within PID SECS
gone_within() {
  i=0
  while [ $i -lt $(($2 * 20)) ]; do
    alive "$1" || return 0
    sleep 0.05; i=$((i + 1))
  done
  return 1
}
banner() { sed -n "s/^$2: //p" "$1" | head -1; }

# ---- Go flag errors -------------------------------------------------------
"$P2PD" -h >"$T/out" 2>"$T/err"; rc=$?
check "-h exits 0" [ $rc -eq 0 ]
check "-h prints Go's usage header" grep -q '^Usage of natpeer-p2pd:$' "$T/err"
"$P2PD" -bogus=1 >"$T/out" 2>"$T/err"; rc=$?
check "unknown flag exits 2" [ $rc -eq 2 ]
check "unknown flag: Go's message first" \
  [ "$(head -1 "$T/err")" = "flag provided but not defined: -bogus" ]
check "unknown flag: usage follows" grep -q '^  -hostAddrs string$' "$T/err"
"$P2PD" -idleTimeout=5 2>"$T/err"; rc=$?
check "a duration without unit exits 2" sh -c '[ $0 -eq 2 ] && grep -q "invalid value \"5\" for flag -idleTimeout: parse error" "$1"' $rc "$T/err"
"$P2PD" -pubsub=true 2>"$T/err"; rc=$?
check "-pubsub=true is refused (exit 2)" [ $rc -eq 2 ]
ln -s "$top_builddir/host/natpeer-host" "$T/p2pd"
"$T/p2pd" -nope 2>"$T/err"; rc=$?
check "natpeer-host started as p2pd is p2pd" sh -c '[ $0 -eq 2 ] && grep -q "^flag provided but not defined: -nope" "$1"' $rc "$T/err"

# ---- A: current hivemind's argv (unix control socket) ---------------------
setsid "$P2PD" -autoRelay=0 -autonat=1 -b=0 -connManager=1 -idleTimeout=30s \
  "-listen=/unix$T/a.sock" -natPortMap=1 -relay=1 -relayHopLimit=0 -tls=1 \
  -persistentConnMaxMsgSize=4194304 -dhtServer=1 \
  -hostAddrs=/ip4/127.0.0.1/tcp/0,/ip4/127.0.0.1/udp/0/quic-v1 \
  >"$T/a.out" 2>"$T/a.err" &
A=$!; PIDS="$PIDS $A"
wait_for "$T/a.out" "Peer Addrs:" 10
check "A: banner 'Control socket:' names the unix socket" [ "$(banner "$T/a.out" "Control socket")" = "/unix$T/a.sock" ]
# As hivemind: a persistent connection held for the daemon's whole life.
python3 "$PYC" persist "/unix$T/a.sock" 60 >"$T/hold.out" 2>&1 &
HOLD=$!; PIDS="$PIDS $HOLD"
APEER=$(banner "$T/a.out" "Peer ID")
check "A: banner 'Peer ID:'" sh -c 'case $0 in 12D3KooW*) exit 0;; esac; exit 1' "$APEER"
AQUIC=$(grep '/quic-v1$' "$T/a.out" | head -1)/p2p/$APEER
check "A: 'Peer Addrs:' then one address per line (TCP and QUIC), as p2pd: no /p2p/" \
  sh -c '[ "$(sed -n 3p "$1")" = "Peer Addrs:" ] && [ "$(tail -n +4 "$1" | grep -c "^/ip4/127.0.0.1/\(tcp/[0-9]*\|udp/[0-9]*/quic-v1\)$")" -eq 2 ] && [ "$(wc -l <"$1")" -eq 5 ]' _ "$T/a.out"
out=$("$CLI" --control "$T/a.sock" id 2>&1)
check "A: natpeer-cli --control works" sh -c 'echo "$1" | grep -q "$2"' _ "$out" "$APEER"

# ---- B: hivemind 0.9.9's argv, bootstrapping to A over /quic (draft-29) ---
BQ=$(echo "$AQUIC" | sed 's|/quic-v1/|/quic/|')
setsid "$P2PD" -quic=1 -tls=1 -connManager=1 -natPortMap=1 -autonat=1 \
  -relay=1 -relayHop=0 -relayDiscovery=0 -autoRelay=0 -relayHopLimit=0 \
  -b=1 "-bootstrapPeers=$BQ" -dht=1 \
  -hostAddrs=/ip4/127.0.0.1/tcp/0,/ip4/127.0.0.1/udp/0/quic \
  -listen=/ip4/127.0.0.1/tcp/0 >"$T/b.out" 2>"$T/b.err" &
B=$!; PIDS="$PIDS $B"
wait_for "$T/b.out" "Peer Addrs:" 10
BCTL=$(banner "$T/b.out" "Control socket")
check "B: TCP control socket in the banner" sh -c 'case $0 in /ip4/127.0.0.1/tcp/[1-9]*) exit 0;; esac; exit 1' "$BCTL"
check "B: /quic listen address served as /quic-v1" grep -q '^/ip4/127.0.0.1/udp/[0-9]*/quic-v1$' "$T/b.out"
check "B: exactly one /quic warning line" [ "$(count "$T/b.err" "/quic (QUIC draft-29)")" -eq 1 ]
i=0; while [ $i -lt 100 ] && ! "$CLI" --control "$BCTL" peers 2>/dev/null | grep -q "$APEER"; do sleep 0.1; i=$((i + 1)); done
check "B: bootstrapped to A through its /quic address" sh -c '"$1" --control "$2" peers | grep -q "$3"' _ "$CLI" "$BCTL" "$APEER"

# -b with no bootstrap peer answering: p2pd exits.
timeout 20 "$P2PD" -b=1 "-bootstrapPeers=/ip4/127.0.0.1/tcp/1/p2p/$APEER" \
  "-listen=/unix$T/bb.sock" -hostAddrs=/ip4/127.0.0.1/tcp/0 >"$T/bb.out" 2>"$T/bb.err"; rc=$?
check "-b: no bootstrap peer reachable: exit 1" [ $rc -eq 1 ]
check "... 'failed to connect to bootstrap peers', no banner" sh -c 'grep -q "^failed to connect to bootstrap peers$" "$1" && [ ! -s "$2" ]' _ "$T/bb.err" "$T/bb.out"

# -b towards a silent UDP port, stopped while the connect is pending.
python3 -c 'import socket,time,sys
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(("127.0.0.1",0))
print(s.getsockname()[1],flush=True); time.sleep(30)' >"$T/silent.port" &
SIL=$!; PIDS="$PIDS $SIL"
wait_for "$T/silent.port" "" 5; sleep 0.3
SPORT=$(head -1 "$T/silent.port")
setsid "$P2PD" -b=1 "-bootstrapPeers=/ip4/127.0.0.1/udp/$SPORT/quic-v1/p2p/$APEER" \
  "-listen=/unix$T/bs.sock" -hostAddrs=/ip4/127.0.0.1/udp/0/quic-v1 >"$T/bs.out" 2>"$T/bs.err" &
BS=$!; PIDS="$PIDS $BS"
sleep 1.5
check "-b: waits for its bootstrap connect (no banner yet)" sh -c 'kill -0 $0 && [ ! -s "$1" ]' $BS "$T/bs.out"
kill $BS; gone_within $BS 5
check "-b: SIGTERM while the bootstrap connect is pending stops it" [ $? -eq 0 ]
kill $SIL

# ---- calls and streams to oneself ------------------------------------------
python3 "$PYC" persist "/unix$T/a.sock" 0 "$APEER" >"$T/self.out" 2>&1
check "unary call to one's own peer ID fails (p2pd)" grep -q '^daemonError dial to self attempted$' "$T/self.out"
python3 "$PYC" streamopen "/unix$T/a.sock" "$APEER" >"$T/so.out" 2>&1
check "stream open to oneself: a clear error" grep -q '^ERROR dial to self attempted (cannot open a stream' "$T/so.out"
check "A outlives a persistent connection while another is open" alive $A
kill $HOLD; gone_within $A 3
check "A exits once hivemind's persistent connection closes" [ $? -eq 0 ]

# ---- -q ---------------------------------------------------------------------
setsid "$P2PD" -q "-listen=/unix$T/q.sock" -hostAddrs=/ip4/127.0.0.1/tcp/0 \
  >"$T/q.out" 2>"$T/q.err" &
Q=$!; PIDS="$PIDS $Q"
i=0; while [ $i -lt 100 ] && ! "$CLI" --control "$T/q.sock" id >/dev/null 2>&1; do sleep 0.1; i=$((i + 1)); done
check "-q: the control socket works" sh -c '"$1" --control "$2" id | grep -q 12D3KooW' _ "$CLI" "$T/q.sock"
check "-q: nothing on stdout" [ ! -s "$T/q.out" ]
kill $Q; gone_within $Q 5
check "SIGTERM stops it" [ $? -eq 0 ]

# ---- -id: a key file natpeer-host wrote, made 0644 as hivemind's are --------
mkdir -p "$T/k"
printf '[host]\ndata_dir = %s/k\n' "$T" >"$T/k.ini"
KPEER=$("$HOST" --config "$T/k.ini" --print-peer-id 2>/dev/null)
chmod 644 "$T/k/identity.key"
setsid "$P2PD" "-id=$T/k/identity.key" "-listen=/unix$T/k.sock" \
  -hostAddrs=/ip4/127.0.0.1/tcp/0 >"$T/k.out" 2>"$T/k.err" &
K=$!; PIDS="$PIDS $K"
wait_for "$T/k.out" "Peer Addrs:" 10
check "-id: the key file's peer ID" [ "$(banner "$T/k.out" "Peer ID")" = "$KPEER" ]
check "-id: a 0644 key file is taken, with a warning" grep -q "warning: -id .*accessible by group or others" "$T/k.err"
kill -HUP $K; gone_within $K 5
check "SIGHUP ends it (p2pd has no reload)" sh -c '[ $0 -eq 0 ] && grep -q "exiting reason=\"signal HUP\"" "$1"' $? "$T/k.err"
printf 'not a key' >"$T/bad.key"
"$P2PD" "-id=$T/bad.key" "-listen=/unix$T/bk.sock" 2>"$T/bk.err"; rc=$?
check "-id: a file that is no PrivateKey exits 2, saying so" sh -c '[ $0 -eq 2 ] && grep -q "not a libp2p PrivateKey" "$1"' $rc "$T/bk.err"
"$P2PD" "-id=$T/none.key" 2>"$T/nk.err"; rc=$?
check "-id: a missing file exits 2" sh -c '[ $0 -eq 2 ] && grep -q "none.key" "$1"' $rc "$T/nk.err"

# ---- lifetime -------------------------------------------------------------
setsid "$P2PD" -idleTimeout=1s "-listen=/unix$T/i.sock" \
  -hostAddrs=/ip4/127.0.0.1/tcp/0 >"$T/i.out" 2>"$T/i.err" &
I=$!; PIDS="$PIDS $I"
sleep 0.5
check "-idleTimeout=1s: alive before the timeout" alive $I
gone_within $I 4
check "-idleTimeout=1s: exits when no persistent connection opened" [ $? -eq 0 ]
check "... saying why" grep -q 'exiting reason="no persistent control connection within -idleTimeout"' "$T/i.err"
wait $I; rc=$?
check "... with status 0" [ $rc -eq 0 ]
check "... and removes its control socket" [ ! -e "$T/i.sock" ]

setsid "$P2PD" -idleTimeout=1s "-listen=/unix$T/p.sock" \
  -hostAddrs=/ip4/127.0.0.1/tcp/0 >"$T/p.out" 2>"$T/p.err" &
PP=$!; PIDS="$PIDS $PP"
wait_for "$T/p.out" "Peer Addrs:" 10
python3 "$PYC" persist "/unix$T/p.sock" 2.5 >"$T/pc.out" 2>&1 &
PC=$!; PIDS="$PIDS $PC"
sleep 2
check "a persistent connection keeps it past -idleTimeout" alive $PP
wait $PC
check "... (the upgrade answered OK)" grep -q '^upgrade OK$' "$T/pc.out"
gone_within $PP 3
check "exits when the last persistent connection closes" [ $? -eq 0 ]
check "... saying why" grep -q 'exiting reason="the last persistent control connection closed"' "$T/p.err"

# Parent exit: the daemon's parent is a shell that leaves after 1 s.
sh -c '"$1" "-listen=/unix$2/d.sock" -hostAddrs=/ip4/127.0.0.1/tcp/0 >"$2/d.out" 2>"$2/d.err" & echo $! >"$2/d.pid"; sleep 1' _ "$P2PD" "$T" &
SH=$!
wait_for "$T/d.out" "Peer Addrs:" 10
D=$(cat "$T/d.pid"); PIDS="$PIDS $D"
check "alive while its parent is" alive $D
wait $SH
gone_within $D 4
check "exits when its parent process exits" [ $? -eq 0 ]
check "... saying why" grep -q 'exiting reason="the parent process exited"' "$T/d.err"

# natpeer-host (the service) follows none of these rules.
mkdir -p "$T/h"
printf '[host]\ndata_dir = %s/h\nlisten = /ip4/127.0.0.1/tcp/0\ncontrol = %s/h.sock\n[plugins]\nautoload = no\n' "$T" "$T" >"$T/h.ini"
sh -c '"$1" --config "$2/h.ini" >"$2/h.out" 2>"$2/h.err" & echo $! >"$2/h.pid"; sleep 0.5' _ "$HOST" "$T"
H=$(cat "$T/h.pid"); PIDS="$PIDS $H"
wait_for "$T/h.out" "Peer Addrs:" 10
python3 "$PYC" persist "$T/h.sock" 0 >/dev/null 2>&1
sleep 2
check "natpeer-host survives its parent and its last persistent connection" alive $H

# (ASan builds) the daemons that exited on their own left no report.
check "no sanitizer report in the daemons' logs" sh -c '! grep -l "Sanitizer" "$1"/*.err'  _ "$T"

finish
