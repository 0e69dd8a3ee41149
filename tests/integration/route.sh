#!/bin/sh
# Peer routing end to end, natpeer-host processes on loopback: a, c and d
# are DHT servers, b and e DHT clients (nobody's lookup ever contacts them);
# all join through [bootstrap] peers = a, b and e before c and d exist, so
# they know nothing of those. b then calls c, and e connects to d, by peer
# ID alone: each is found through the DHT and dialed. A peer nobody knows
# fails as unreachable, at once, saying why in the log.
. "$(dirname "$0")/lib.sh"
CLI="$top_builddir/host/natpeer-cli"

start_host() { # start_host NAME MODE [BOOT] -> ${NAME}_pid _addr _id _ctl
  name=$1
  mkdir -p "$T/$name/plugins" "$T/$name/data"
  install_so "$(so hello)" "$T/$name/plugins/hello.so"
  cat >"$T/$name/host.ini" <<INI
[host]
data_dir = $T/$name/data
listen = /ip4/127.0.0.1/udp/0/quic-v1
control = $T/$name/ctl.sock
log_level = info
[dht]
mode = $2
[bootstrap]
peers = ${3:-}
[plugins]
dir = $T/$name/plugins
INI
  "$HOST" --config "$T/$name/host.ini" >"$T/$name/out" 2>"$T/$name/log" &
  eval "${name}_pid=$!"
  PIDS="$PIDS $!"
  wait_for "$T/$name/out" "/quic-v1/p2p/" 5 || return 1
  eval "${name}_addr=\$(grep -m1 /quic-v1/p2p/ \"$T/$name/out\")"
  eval "${name}_id=\$(sed -n 's/^Peer ID: //p' \"$T/$name/out\")"
  eval "${name}_ctl=$T/$name/ctl.sock"
}
B() { "$CLI" --control "$b_ctl" "$@"; }
E() { "$CLI" --control "$e_ctl" "$@"; }

check "host a starts (DHT server)" start_host a server
check "host b starts (DHT client, bootstrap a)" start_host b client "$a_addr"
check "b bootstraps from a" wait_for "$T/b/log" "bootstrap-done" 10
check "host e starts (DHT client, bootstrap a)" start_host e client "$a_addr"
check "e bootstraps from a" wait_for "$T/e/log" "bootstrap-done" 10
check "host c starts (DHT server, bootstrap a)" start_host c server "$a_addr"
check "c bootstraps from a" wait_for "$T/c/log" "bootstrap-done" 10
check "host d starts (DHT server, bootstrap a)" start_host d server "$a_addr"
check "d bootstraps from a" wait_for "$T/d/log" "bootstrap-done" 10

out=$(B --json peers)
check "before: b is connected to a only ($out)" sh -c '
  echo "$1" | grep -q "$2" && ! echo "$1" | grep -q "$3" && ! echo "$1" | grep -q "$4"' \
  _ "$out" "$a_id" "$c_id" "$d_id"

out=$(B --timeout 20 call "$c_id" hello 2>"$T/err"); rc=$?
check "b calls c by peer ID alone (rc=$rc \"$out\" $(cat "$T/err"))" [ "$out" = "Hello, World!" ]
check "b found c through the DHT" grep -q "peer-routing-found peer=$c_id" "$T/b/log"

out=$(E --json peers)
check "before: e is connected to a only ($out)" sh -c '
  echo "$1" | grep -q "$2" && ! echo "$1" | grep -q "$3"' _ "$out" "$a_id" "$d_id"
out=$(E --timeout 20 connect "/p2p/$d_id" 2>"$T/err"); rc=$?
check "e connects to /p2p/d (rc=$rc $out $(cat "$T/err"))" [ $rc -eq 0 ]
check "e found d through the DHT" grep -q "peer-routing-found peer=$d_id" "$T/e/log"

mkdir -p "$T/ghost"
printf '[host]\ndata_dir = %s/ghost\n' "$T" >"$T/ghost/host.ini"
ghost=$("$HOST" --config "$T/ghost/host.ini" --print-peer-id 2>/dev/null)
start=$(date +%s%N)
B --timeout 20 call "$ghost" hello >/dev/null 2>"$T/err"; rc=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
check "a call to a peer nobody knows fails as unreachable (rc=$rc: $(cat "$T/err"))" [ $rc -eq 3 ]
check "well before the call's timeout (${ms} ms)" [ $ms -lt 10000 ]
check "the log says why" grep -q "peer-routing-failed peer=$ghost why=\"not found\"" "$T/b/log"

for p in $a_pid $b_pid $c_pid $d_pid $e_pid; do kill -TERM "$p"; done
for p in $a_pid $b_pid $c_pid $d_pid $e_pid; do wait "$p"; done
check "no sanitizer report in the hosts' logs" sh -c '! grep -q "Sanitizer\|runtime error" "$1"/*/log' _ "$T"
finish
