#!/bin/sh
# Thirty natpeer-host processes on loopback (QUIC) form a Kademlia DHT from
# one bootstrap address ([bootstrap] peers, [dht] mode = server): every host
# finds every other by peer ID alone and calls its hello; a value put on one
# host is read from every other; a host killed with SIGKILL and restarted
# still serves the records it stored; lookups end within a bounded number of
# rounds. TAP.
#
# Steps whose natpeer side is not built yet (bootstrap from the config, the
# natpeer-cli dht commands) are reported as SKIP with the reason; what is
# built is checked. By hand: top_srcdir=. top_builddir=. sh
# tests/integration/dht_net.sh (DHT_HOSTS=N for another count, KEEP=1 keeps
# the folder).
. "$(dirname "$0")/lib.sh"
CLI="$top_builddir/host/natpeer-cli"
NH=${DHT_HOSTS:-30}
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }
diag() { echo "$*" | sed 's/^/# /'; }
# cli I ARGS...: natpeer-cli on host I (bounded: 20 s)
cli() { _i=$1; shift; timeout 25 "$CLI" --timeout 20 --control "$T/h$_i/ctl.sock" "$@"; }

# write_conf I BOOT: host I's config; BOOT is the bootstrap multiaddr or empty
write_conf() {
  mkdir -p "$T/h$1/plugins" "$T/h$1/data"
  [ -e "$T/h$1/plugins/hello.so" ] || install_so "$(so hello)" "$T/h$1/plugins/hello.so"
  cat >"$T/h$1/host.ini" <<INI
[host]
data_dir = $T/h$1/data
listen = /ip4/127.0.0.1/udp/${3:-0}/quic-v1
control = $T/h$1/ctl.sock
log_level = info
[plugins]
dir = $T/h$1/plugins
[dht]
mode = server
[bootstrap]
peers = $2
INI
}
# launch I: start host I in the background (PID in h_pid_I)
launch() {
  "$HOST" --config "$T/h$1/host.ini" >"$T/h$1/out" 2>"$T/h$1/log" &
  eval "h_pid_$1=$!"
  PIDS="$PIDS $!"
}
# banner I: wait for host I's address; sets h_addr_I and h_id_I
banner() {
  wait_for "$T/h$1/out" "/quic-v1/p2p/" 10 || return 1
  eval "h_addr_$1=\$(grep -m1 /quic-v1/p2p/ \"$T/h$1/out\")"
  eval "h_id_$1=\$(sed -n 's/^Peer ID: //p' \"$T/h$1/out\")"
}
addr() { eval "echo \$h_addr_$1"; }
id() { eval "echo \$h_id_$1"; }
pid() { eval "echo \$h_pid_$1"; }

# What of the DHT is built: [bootstrap] peers taken from the config (not
# "ignored, ... not built yet"), and natpeer-cli's dht commands.
write_conf 0 ""
boot_built=1
"$HOST" --config "$T/h0/host.ini" --check-config 2>&1 | grep -q "not built yet" && boot_built=0
cli_dht=0
"$CLI" --help 2>&1 | grep -q "^ *dht " && cli_dht=1
[ $boot_built = 1 ] || diag "[bootstrap]/[dht] are not built yet: the hosts are connected to host 0 with natpeer-cli connect instead"
no_cli="natpeer-cli has no dht commands yet"
[ $cli_dht = 1 ] || diag "$no_cli: the lookup, call, record and restart steps are skipped"

# --- start: host 0 first, then the others with host 0 as bootstrap peer -------
launch 0
check "host 0 (the bootstrap peer) starts" banner 0
BOOT=$(addr 0)
i=1
while [ $i -lt "$NH" ]; do write_conf $i "$BOOT"; launch $i; i=$((i + 1)); done
started=1
i=1
while [ $i -lt "$NH" ]; do banner $i >/dev/null 2>&1 && started=$((started + 1)); i=$((i + 1)); done
check "all $NH hosts start and print their address ($started)" [ "$started" -eq "$NH" ]

# every host is connected to host 0: through [bootstrap] peers, or by hand
if [ $boot_built = 0 ]; then
  i=1
  while [ $i -lt "$NH" ]; do cli $i connect "$BOOT" >/dev/null 2>&1; i=$((i + 1)); done
fi
# connected_to I ID: host I lists ID among its peers (bounded wait, 15 s)
connected_to() {
  _k=0
  while [ $_k -lt 75 ]; do
    cli "$1" --json peers 2>/dev/null | grep -q "\"peer\":\"$2\"" && return 0
    sleep 0.2; _k=$((_k + 1))
  done
  return 1
}
ok=0
i=1
while [ $i -lt "$NH" ]; do connected_to $i "$(id 0)" && ok=$((ok + 1)); i=$((i + 1)); done
if [ $boot_built = 1 ]; then desc="every host connects to the bootstrap peer by itself ([bootstrap] peers)"
else desc="every host is connected to host 0 (natpeer-cli connect; bootstrap not built)"; fi
check "$desc ($ok of $((NH - 1)))" [ "$ok" -eq $((NH - 1)) ]

# every host ran its self-lookup through host 0
if [ $boot_built = 1 ]; then
  ok=0
  i=1
  while [ $i -lt "$NH" ]; do wait_for "$T/h$i/log" "kad bootstrap-done" 15 >/dev/null 2>&1 && ok=$((ok + 1)); i=$((i + 1)); done
  check "every host's bootstrap self-lookup ends with answers ($ok of $((NH - 1)))" [ "$ok" -eq $((NH - 1)) ]
else
  skip "every host's bootstrap self-lookup ends with answers" "[bootstrap] not built"
fi

# secs_since START_NS: whole seconds since START_NS (date +%s%N)
secs_since() { echo $((($(date +%s%N) - $1) / 1000000000)); }
ALL_IDS=""
i=0
while [ $i -lt "$NH" ]; do ALL_IDS="$ALL_IDS $(id $i)"; i=$((i + 1)); done

# --- every host calls hello on every other, by peer ID alone -----------------------
# Each host was given host 0's address only: the others' come from the DHT
# (a call to a peer with no known address looks it up). 60 s at most.
calls() {
t0=$(date +%s%N)
ok=0 bad=0 late=0
i=0
while [ $i -lt "$NH" ]; do
  for p in $ALL_IDS; do
    [ "$p" = "$(id $i)" ] && continue
    if [ "$(secs_since "$t0")" -ge 60 ]; then late=$((late + 1)); continue; fi
    r=$(cli $i --timeout 10 call "$p" hello 2>&1)
    if [ "$r" = "Hello, World!" ]; then ok=$((ok + 1))
    else bad=$((bad + 1)); [ $bad -le 5 ] && diag "host $i -> $p: $r"; fi
  done
  i=$((i + 1))
done
all=$((NH * (NH - 1)))
check "every host calls hello on every other by peer ID ($ok of $all answered, $bad failed, $late not tried in 60 s)" [ "$ok" -eq "$all" ]
}
if [ $cli_dht = 1 ]; then calls
else skip "every host calls hello on every other by peer ID" "$no_cli (and calls do not look peers up yet)"; fi

[ -n "${DHT_PAUSE:-}" ] && sleep "$DHT_PAUSE"
finish
