#!/bin/sh
# A js-libp2p relay (@libp2p/circuit-relay-v2) serving natpeer private hosts
# on loopback: a natpeer host with [relay] client = on and the js relay as
# its static relay reserves on it (the js voucher verifies) and announces
# the circuit address; a second natpeer host connects to that circuit
# address and calls hello by peer ID over the relayed, limited connection.
# Then the other way round: a js caller dials a natpeer private host
# through a natpeer relay (our stop side and Noise responder under js's
# initiator). When the js relay stops, the reservation is lost and the
# circuit goes down. TAP.
#
# The js relay is tests/interop/natpeer-js.mjs (the NAT lab's js peer);
# without it, npm or a node >= 22 the file is skipped. NP_JS_DIR points at
# another tests/interop folder holding it (by hand). Every wait is bounded
# (about 10 s in all).
. "$(dirname "$0")/lib.sh"
CLI="$top_builddir/host/natpeer-cli"
here=${NP_JS_DIR:-$top_srcdir/tests/interop}
[ -f "$here/natpeer-js.mjs" ] ||
  skip_all "needs tests/interop/natpeer-js.mjs (the js NAT-lab peer)"
. "$top_srcdir/tests/interop/jsdeps.sh"
np_js_deps_or_exit "$here"

start_host() { # start_host NAME RELAY_INI -> ${NAME}_pid _id _ctl
  name=$1
  mkdir -p "$T/$name/plugins" "$T/$name/data"
  install_so "$(so hello)" "$T/$name/plugins/hello.so"
  cat >"$T/$name/host.ini" <<INI
[host]
data_dir = $T/$name/data
listen = /ip4/127.0.0.1/udp/0/quic-v1 /ip4/127.0.0.1/tcp/0
control = $T/$name/ctl.sock
log_level = info
[dht]
mode = off
[plugins]
dir = $T/$name/plugins
[relay]
$2
INI
  "$HOST" --config "$T/$name/host.ini" >"$T/$name/out" 2>"$T/$name/log" &
  eval "${name}_pid=$!"
  PIDS="$PIDS $!"
  wait_for "$T/$name/out" "/quic-v1/p2p/" 10 || return 1
  eval "${name}_id=\$(sed -n 's/^Peer ID: //p' \"$T/$name/out\")"
  eval "${name}_ctl=$T/$name/ctl.sock"
}

port=$((20000 + $$ % 20000))
"$NP_NODE" "$here/natpeer-js.mjs" relay --ip 127.0.0.31 --port "$port" \
  --lab-public 127.0.0.0/8 --max-lifetime 60 >"$T/relay.out" 2>"$T/relay.err" &
js_pid=$!
PIDS="$PIDS $js_pid"
wait_for "$T/relay.out" '"event":"ready"' 15 ||
  { echo "Bail out! the js relay did not start: $(tail -n 5 "$T/relay.err")"; exit 99; }
JSID=$(sed -n 's/.*"event":"ready".*"peer":"\([^"]*\)".*/\1/p' "$T/relay.out" | head -n 1)
JSQ="/ip4/127.0.0.31/udp/$port/quic-v1/p2p/$JSID"
pass "a js-libp2p relay runs ($JSQ)"

check "private host starts ([relay] client = on, relays = the js relay)" \
  start_host priv "service = off
client = on
relays = $JSQ"
check "it reserves on the js relay" \
  wait_for "$T/priv/log" "relay reservation-ok relay=$JSID" 10
check "the js relay's voucher verifies" \
  sh -c '! grep -q "voucher-bad\|voucher-missing" "$1"' _ "$T/priv/log"
circ="$JSQ/p2p-circuit"
out=$("$CLI" --control "$priv_ctl" --json nat 2>&1)
check "natpeer-cli nat lists the reservation with $circ" \
  sh -c 'echo "$1" | grep -qF "\"state\":\"ok\"" && echo "$1" | grep -qF "$2"' _ "$out" "$circ"

check "source host starts (client = off)" start_host src "service = off
client = off"
out=$("$CLI" --control "$src_ctl" --timeout 15 connect "$circ/p2p/$priv_id" 2>&1)
rc=$?
check "the source connects to $circ/p2p/PRIVATE (rc=$rc $out)" [ $rc -eq 0 ]
out=$("$CLI" --control "$src_ctl" --timeout 15 call "$priv_id" hello 2>"$T/err")
check "and calls hello by peer ID through the js relay (got \"$out\" $(cat "$T/err"))" \
  [ "$out" = "Hello, World!" ]
rec=$("$CLI" --control "$src_ctl" --json peers | tr '{' '\n' | grep "\"peer\":\"$priv_id\"")
check "over a relayed, limited connection ($rec)" \
  sh -c 'echo "$1" | grep -q "\"transport\":\"relay\"" &&
         echo "$1" | grep -q "\"limited\":true"' _ "$rec"
check "the private host accepted the stop from the js relay" \
  grep -q "relay stop-ok relay=$JSID src=$src_id" "$T/priv/log"

# The other way round: a js caller dials a natpeer private host through a
# natpeer relay (the stop side and the Noise responder over the circuit).
check "a natpeer relay starts ([relay] service = on)" start_host nrelay "service = on
client = off"
NQ=$(grep -m1 "/quic-v1/p2p/" "$T/nrelay/out")
check "a second private host starts, reserving on the natpeer relay" \
  start_host priv2 "service = off
client = on
relays = $NQ"
check "it reserves on the natpeer relay" \
  wait_for "$T/priv2/log" "relay reservation-ok relay=$nrelay_id" 10
res=$(timeout 40 "$NP_NODE" "$here/natpeer-js.mjs" caller --ip 127.0.0.32 \
  --relay "$NQ" --target "$priv2_id" --proto hello --lab-public 127.0.0.0/8 \
  --transport quic --direct-timeout 1 2>"$T/caller.err" | grep -m1 '"event":"result"')
check "a js caller -> natpeer relay -> natpeer private host: Hello, World! ($res)" \
  sh -c 'echo "$1" | grep -q "\"ok\":true" &&
         echo "$1" | grep -q "\"response\":\"Hello, World!\"" &&
         echo "$1" | grep -q "\"relayedLimited\":true"' _ "$res"
check "the natpeer private host accepted it (stop-ok from the relay)" \
  grep -q "relay stop-ok relay=$nrelay_id" "$T/priv2/log"

kill -TERM "$js_pid"
check "the js relay stopping loses the reservation" \
  wait_for "$T/priv/log" "relay reservation-lost relay=$JSID" 10
check "and takes the circuit down" \
  sh -c 'i=0; while [ $i -lt 50 ]; do
    [ -z "$("$1" --control "$2" --json peers | tr "{" "\n" | grep "\"peer\":\"$3\"")" ] && exit 0
    sleep 0.2; i=$((i + 1)); done; exit 1' _ "$CLI" "$src_ctl" "$priv_id"
for h in priv src priv2 nrelay; do
  eval "pid=\$${h}_pid"
  kill -TERM "$pid"
  wait "$pid"
  rc=$?
  check "$h exits 0 on SIGTERM (rc=$rc)" [ "$rc" -eq 0 ]
done
check "no sanitizer report in the hosts' logs" \
  sh -c '! grep -q "Sanitizer\|runtime error" "$1"/*/log' _ "$T"
finish
