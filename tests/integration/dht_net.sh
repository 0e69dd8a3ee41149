#!/bin/sh
# Thirty natpeer-host processes on loopback (QUIC) form a Kademlia DHT from
# one bootstrap address ([bootstrap] peers, [dht] mode = server): every host
# finds every other by peer ID alone and calls its hello; a value put on one
# host is read from every other; a host killed with SIGKILL and restarted
# still serves the records it stored. TAP. (How many rounds a lookup takes
# is not visible from outside a daemon: test_kadnet checks that bound on 30
# hosts over /memory/.)
#
# By hand: top_srcdir=. top_builddir=. sh
# tests/integration/dht_net.sh (DHT_HOSTS=N for another count; KEEP=1 keeps
# the folder and, as everywhere lib.sh is used, leaves the hosts running).
. "$(dirname "$0")/lib.sh"
CLI="$top_builddir/host/natpeer-cli"
NH=${DHT_HOSTS:-30}
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
# launch I: start host I in the background (PID in h_pid_I); a restarted
# host's earlier output is kept as out.prev and log.prev, so that waits
# cannot match it
launch() {
  [ -e "$T/h$1/out" ] && mv "$T/h$1/out" "$T/h$1/out.prev" && mv "$T/h$1/log" "$T/h$1/log.prev"
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

# --- start: host 0 first, then the others with host 0 as bootstrap peer -------
write_conf 0 ""
launch 0
check "host 0 (the bootstrap peer) starts" banner 0
BOOT=$(addr 0)
i=1
while [ $i -lt "$NH" ]; do write_conf $i "$BOOT"; launch $i; i=$((i + 1)); done
started=1
i=1
while [ $i -lt "$NH" ]; do banner $i >/dev/null 2>&1 && started=$((started + 1)); i=$((i + 1)); done
check "all $NH hosts start and print their address ($started)" [ "$started" -eq "$NH" ]

# every host connects to host 0 by itself ([bootstrap] peers)
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
check "every host connects to the bootstrap peer by itself ([bootstrap] peers) ($ok of $((NH - 1)))" [ "$ok" -eq $((NH - 1)) ]

# every host ran its self-lookup through host 0
ok=0
i=1
while [ $i -lt "$NH" ]; do wait_for "$T/h$i/log" "kad bootstrap-done" 15 >/dev/null 2>&1 && ok=$((ok + 1)); i=$((i + 1)); done
check "every host's bootstrap self-lookup ends with answers ($ok of $((NH - 1)))" [ "$ok" -eq $((NH - 1)) ]

# --- every host calls every other's hello, and finds it, by peer ID ------------
# Each host was given host 0's address only. pair_worker G KIND: hosts
# I = G, G + 3, ... each ask about every other host J, one natpeer-cli each:
# KIND findpeer (dht findpeer J: J's ID, then its addresses indented, J's
# QUIC address among them) or call (call J hello by peer ID: Hello, World!).
# One line per pair in $T/KIND.G: ok, bad, or late (past the deadline).
pair_worker() {
  _g=$1 _kind=$2 _end=$3 _i=$1
  while [ $_i -lt "$NH" ]; do
    _j=0
    while [ $_j -lt "$NH" ]; do
      if [ $_j -ne $_i ]; then
        eval "_p=\$h_id_$_j _a=\$h_addr_$_j"
        if [ "$(date +%s)" -ge "$_end" ]; then echo late
        elif [ "$_kind" = findpeer ]; then
          _r=$(cli $_i --timeout 15 dht findpeer "$_p" 2>&1)
          case "$_r
" in "$_p
"*"  ${_a%/p2p/*}
"*) echo ok ;;
            *) echo "bad host $_i findpeer $_p: $_r" | tr '\n' ' '; echo ;;
          esac
        else
          _r=$(cli $_i --timeout 10 call "$_p" hello 2>&1)
          if [ "$_r" = "Hello, World!" ]; then echo ok
          else echo "bad host $_i call $_p hello: $_r" | tr '\n' ' '; echo; fi
        fi
      fi
      _j=$((_j + 1))
    done
    _i=$((_i + 3))
  done >"$T/$_kind.$_g"
}
# pairs KIND DESC: all pairs, three workers at once, 60 s at most
pairs() {
  end=$(($(date +%s) + 60))
  wp=""
  for g in 0 1 2; do pair_worker $g "$1" "$end" & wp="$wp $!"; done
  PIDS="$PIDS $wp"
  wait $wp
  diag "$1: all pairs in $(($(date +%s) - end + 60)) s"
  cat "$T/$1".? >"$T/$1.all"
  ok=$(count "$T/$1.all" ok) bad=$(grep -c '^bad' "$T/$1.all") late=$(count "$T/$1.all" late)
  all=$((NH * (NH - 1)))
  grep '^bad' "$T/$1.all" | head -n 5 | while read -r l; do diag "$l"; done
  check "$2 ($ok of $all, $bad failed, $late not tried in 60 s)" [ "$ok" -eq "$all" ]
}
# Calls first: a call to a peer with no known address looks it up itself.
conn=0
i=0
while [ $i -lt "$NH" ]; do
  conn=$((conn + $(cli $i --json peers 2>/dev/null | grep -o '"peer":"[^"]*"' | sort -u | wc -l)))
  i=$((i + 1))
done
diag "before the calls, $((NH * (NH - 1) - conn)) of the $((NH * (NH - 1))) pairs are not connected"
pairs call "every host calls hello on every other by peer ID alone"
pairs findpeer "every host finds every other by peer ID, with its address (dht findpeer)"

# --- a record put on one host is read from every other ------------------------
# A /pk/ record of a key pair no host uses: a spare natpeer identity (its
# key file is a libp2p PrivateKey protobuf: Ed25519 seed then public key);
# the value is the PublicKey protobuf 08 01 12 20 + the 32 key bytes.
hexof() { od -An -v -tx1 "$1" | tr -d ' \n'; }
records() {
  mkdir -p "$T/spare"
  printf '[host]\ndata_dir = %s/spare\n' "$T" >"$T/spare/host.ini"
  spare=$("$HOST" --config "$T/spare/host.ini" --print-peer-id 2>/dev/null)
  { printf '\010\001\022\040'; tail -c 32 "$T/spare/identity.key"; } >"$T/pk.val"
  val=$(hexof "$T/pk.val")
  P=3 # the putter
  out=$(cli $P dht put "/pk/$spare" "@$T/pk.val" 2>&1); rc=$?
  check "host $P puts the /pk/ record of a peer outside the network (rc=$rc: $out)" [ $rc -eq 0 ]
  ok=0 bad=0
  i=0
  while [ $i -lt "$NH" ]; do
    if [ $i -ne $P ]; then
      r=$(cli $i --hex dht get "/pk/$spare" 2>&1)
      if [ "$r" = "$val" ]; then ok=$((ok + 1)); else bad=$((bad + 1)); [ $bad -le 5 ] && diag "host $i get: $r"; fi
    fi
    i=$((i + 1))
  done
  check "every other host reads it ($ok of $((NH - 1)))" [ "$ok" -eq $((NH - 1)) ]
  out=$(timeout 40 "$CLI" --timeout 35 --control "$T/h5/ctl.sock" dht get "/pk/$(id 7)" 2>&1); rc=$?
  check "a key nobody put is not found (exit 1, not a timeout: rc=$rc $out)" [ $rc -eq 1 ]
}

# --- a holder killed with SIGKILL and restarted still serves the record ------
# Holders: hosts whose store file (data_dir/kadstore.bin, written a second
# after a change) has the value. H, one of them, is killed and restarted on
# the same port. A new host then joins (through host 0 and H), every other holder
# is frozen (SIGSTOP), and the new host reads the record: only H can answer.
# (The new host, not an old one: a host that was connected to the killed H
# keeps that dead connection until it fails a request or idles out, 60 s.)
restart() {
  k=0
  while :; do
    holders="" nh=0
    i=0
    while [ $i -lt "$NH" ]; do
      if [ -f "$T/h$i/data/kadstore.bin" ] && hexof "$T/h$i/data/kadstore.bin" | grep -q "$val"; then
        holders="$holders $i"; nh=$((nh + 1))
      fi
      i=$((i + 1))
    done
    { [ $nh -ge 2 ] || [ $k -ge 30 ]; } && break
    sleep 0.2; k=$((k + 1))
  done
  diag "holders:$holders"
  H=""
  for i in $holders; do [ $i -ne $P ] && [ $i -ne 0 ] && { H=$i; break; }; done
  if [ -z "$H" ]; then fail "a host other than 0 and $P holds the record (holders:$holders)"; return; fi
  old_id=$(id $H) old_addr=$(addr $H)
  kill -9 "$(pid $H)"
  wait "$(pid $H)" 2>/dev/null
  port=$(addr $H | sed -n 's|^/ip4/127.0.0.1/udp/\([0-9]*\)/quic-v1/.*|\1|p')
  write_conf $H "$BOOT" "$port"
  launch $H
  banner $H >/dev/null 2>&1
  check "holder $H, killed with SIGKILL, restarts with its peer ID and address" \
    [ "$(id $H) $(addr $H)" = "$old_id $old_addr" ]
  [ "$(id $H) $(addr $H)" = "$old_id $old_addr" ] || diag "was $old_id $old_addr, now $(id $H) $(addr $H): $(cat "$T/h$H/out")"
  check "  ... and loads the record from its store file" wait_for "$T/h$H/log" "kad store-loaded records=1 " 5
  X=$NH # the newcomer, given host 0 and H as bootstrap peers (H is then
  # in its table whatever the other hosts' tables say of H)
  write_conf $X "$BOOT $(addr $H)"
  launch $X
  if banner $X && wait_for "$T/h$X/log" "kad bootstrap-done" 15 >/dev/null; then pass "a new host joins through host 0 and $H"
  else fail "a new host joins through host 0 and $H"; return; fi
  frozen=""
  for i in $holders; do [ $i -ne $H ] && { kill -STOP "$(pid $i)"; frozen="$frozen $(pid $i)"; }; done
  r=$(cli $X --timeout 40 --hex dht get "/pk/$spare" 2>&1)
  for p in $frozen; do kill -CONT "$p"; done
  check "with every other holder frozen, the new host reads the record from the restarted $H" [ "$r" = "$val" ]
  if [ "$r" != "$val" ]; then
    diag "got: $r"
    diag "the newcomer's connections to $H: $(cli $X --json peers 2>&1 | grep -o "\"peer\":\"$(id $H)\"" | wc -l)"
    diag "$H's log since the restart:"; diag "$(grep -v 'conn-open\|conn-closed' "$T/h$H/log" | tail -n 15)"
  fi
}
records
restart

finish
