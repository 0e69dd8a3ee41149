#!/bin/sh
# A peer killed without notice (SIGKILL) and restarted on the same address
# with the same identity: its new connection to us is up, the old one is
# dead but not yet known to be. The next call must go over the new one and
# succeed, not wait on the dead one until the liveness probe gives up.
. "$(dirname "$0")/lib.sh"
CLI="$top_builddir/host/natpeer-cli"

start_host() { # start_host NAME LISTEN [BOOT] -> ${NAME}_pid _addr _id _ctl
  name=$1
  mkdir -p "$T/$name/plugins" "$T/$name/data"
  install_so "$(so hello)" "$T/$name/plugins/hello.so"
  cat >"$T/$name/host.ini" <<INI
[host]
data_dir = $T/$name/data
listen = $2
control = $T/$name/ctl.sock
log_level = info
[dht]
mode = server
[bootstrap]
peers = ${3:-}
[plugins]
dir = $T/$name/plugins
INI
  : >"$T/$name/out"
  "$HOST" --config "$T/$name/host.ini" >>"$T/$name/out" 2>>"$T/$name/log" &
  eval "${name}_pid=$!"
  PIDS="$PIDS $!"
  wait_for "$T/$name/out" "/quic-v1/p2p/" 5 || return 1
  eval "${name}_addr=\$(grep -m1 /quic-v1/p2p/ \"$T/$name/out\")"
  eval "${name}_id=\$(sed -n 's/^Peer ID: //p' \"$T/$name/out\" | head -n 1)"
  eval "${name}_ctl=$T/$name/ctl.sock"
}
N() { "$CLI" --control "$n_ctl" "$@"; }

check "host n starts" start_host n /ip4/127.0.0.1/udp/0/quic-v1
check "host h starts (bootstrap n)" start_host h /ip4/127.0.0.1/udp/0/quic-v1 "$n_addr"
check "h bootstraps from n" wait_for "$T/h/log" "bootstrap-done" 10
out=$(N --timeout 10 call "$h_id" hello 2>"$T/err")
check "n calls h (\"$out\" $(cat "$T/err"))" [ "$out" = "Hello, World!" ]

listen=${h_addr%/p2p/*}
first_id=$h_id
kill -9 "$h_pid"
: >"$T/h/log"
check "h restarts on $listen with its identity" start_host h "$listen" "$n_addr"
check "same peer ID after the restart" [ "$h_id" = "$first_id" ]
check "h reconnects to n (bootstrap)" wait_for "$T/h/log" "bootstrap-done" 10
out=$(N --timeout 3 call "$h_id" hello 2>"$T/err")
check "n's first call after the restart goes over the new connection (\"$out\" $(cat "$T/err"))" \
  [ "$out" = "Hello, World!" ]
finish
