#!/bin/sh
# A natpeer relay (np_relaysvc, [relay] service = on) serving js-libp2p
# private hosts (@libp2p/circuit-relay-v2) on loopback: a js private host
# reserves on it over QUIC and TCP (our reservation's addresses become its
# circuit addresses), a js caller dials it through the natpeer relay and
# calls a unary handler over the limited connection, then pushes 4 MB on one
# circuit (the relay's circuit_bytes is 16M here); a second caller over TCP.
# TAP.
#
# The js peers are tests/interop/natpeer-js.mjs (the NAT lab's js peer);
# without it, npm or a node >= 22 the file is skipped. NP_JS_DIR points at
# another tests/interop folder holding it (by hand). Every process is killed
# on exit and every wait is bounded (about 15 s in all).
#
# By hand: top_srcdir=. top_builddir=. sh tests/integration/relay_js.sh
# (KEEP=1 keeps the temporary folder).
: "${top_builddir:?}" "${top_srcdir:?}"
set -u
here=${NP_JS_DIR:-$top_srcdir/tests/interop}
HOST=$top_builddir/host/natpeer-host
if [ ! -f "$here/natpeer-js.mjs" ]; then
  echo "1..0 # SKIP needs tests/interop/natpeer-js.mjs (the js NAT-lab peer)"
  exit 0
fi
. "$top_srcdir/tests/interop/jsdeps.sh"
np_js_deps_or_exit "$here"

T=$(mktemp -d "${TMPDIR:-/tmp}/np-relay-js-XXXXXX") || exit 99
PIDS=""
n=0
failures=0
cleanup() {
  for p in $PIDS; do kill -TERM "$p" 2>/dev/null; done
  for p in $PIDS; do
    i=0
    while kill -0 "$p" 2>/dev/null && [ $i -lt 30 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL "$p" 2>/dev/null
  done
  if [ "${KEEP:-0}" = 1 ]; then echo "# kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
. "$top_srcdir/tests/interop/taplib.sh"
# wait_grep FILE PATTERN SECONDS: the first line with PATTERN (grep -F)
wait_grep() {
  _i=0
  while [ $_i -lt $(($3 * 20)) ]; do
    _l=$(grep -m1 -F -- "$2" "$1" 2>/dev/null) && { echo "$_l"; return 0; }
    sleep 0.05; _i=$((_i + 1))
  done
  return 1
}
ok_if() { if "$@" >/dev/null 2>&1; then pass "$D"; else fail "$D"; fi; }

# The relay: loopback QUIC and TCP; 127/8 counts as public so that the
# reservation lists these addresses (js takes its circuit addresses from it).
mkdir -p "$T/relay"
cat >"$T/relay/natpeer.ini" <<EOF
[host]
data_dir = $T/relay
listen = /ip4/127.0.0.1/udp/0/quic-v1 /ip4/127.0.0.1/tcp/0
control = /unix$T/relay/control.sock
log_level = info
[dht]
mode = off
[nat]
treat_as_public = 127.0.0.0/8
[relay]
service = on
circuit_bytes = 16M
[plugins]
autoload = no
EOF
RELAY=$("$HOST" --config "$T/relay/natpeer.ini" --print-peer-id 2>"$T/relay/id.err") || {
  echo "Bail out! natpeer-host --print-peer-id: $(cat "$T/relay/id.err")"; exit 99; }
"$HOST" --config "$T/relay/natpeer.ini" >"$T/relay/out" 2>&1 &
PIDS="$PIDS $!"
q=$(wait_grep "$T/relay/out" "quic listen addr=" 10) || {
  echo "Bail out! the relay did not start: $(tail -n 5 "$T/relay/out")"; exit 99; }
QMA=$(echo "$q" | sed 's/.*addr=\([^ ]*\).*/\1/')/p2p/$RELAY
t=$(wait_grep "$T/relay/out" "tcp listen addr=" 5)
TMA=$(echo "$t" | sed 's/.*addr=\([^ ]*\).*/\1/')/p2p/$RELAY
D="the natpeer relay serves the hop protocol ($QMA)"
ok_if wait_grep "$T/relay/out" "relay service-started" 5

# js private host: a reservation on the natpeer relay over each transport
"$NP_NODE" "$here/natpeer-js.mjs" private --ip 127.0.0.21 --relay "$QMA,$TMA" --lab-public 127.0.0.0/8 \
  --max-lifetime 120 >"$T/private.out" 2>"$T/private.err" &
PIDS="$PIDS $!"
ready=$(wait_grep "$T/private.out" '"event":"ready"' 15) || {
  echo "Bail out! js private host: $(tail -n 5 "$T/private.err")"; exit 99; }
PRIV=$(jget "$ready" 'j.peer')
D="js reserves on the natpeer relay over QUIC: its circuit address is RELAY/p2p-circuit/p2p/ITSELF"
ok_if wait_grep "$T/private.out" "\"event\":\"reserved\",\"addr\":\"$QMA/p2p-circuit/p2p/$PRIV\"" 10
D="js reserves on the natpeer relay over TCP too"
ok_if wait_grep "$T/private.out" "\"event\":\"reserved\",\"addr\":\"$TMA/p2p-circuit/p2p/$PRIV\"" 10
D="the relay logs the reservation"
ok_if wait_grep "$T/relay/out" "relay reservation-accepted peer=$PRIV" 5

res=$(timeout 60 "$NP_NODE" "$here/natpeer-js.mjs" caller --ip 127.0.0.22 \
  --relay "$QMA" --target "$PRIV" --lab-public 127.0.0.0/8 --transport quic \
  --bulk 4000000 2>"$T/caller.err" | grep -m1 '"event":"result"')
[ -n "$res" ] || res='{}'
check "js caller -> natpeer relay (QUIC) -> js private host: Hello, World! over a limited connection" \
  "$res" 'j.ok === true && j.response === "Hello, World!" && j.relayedLimited === true'
check "4 MB through one circuit of the natpeer relay" "$res" 'j.bulkBytes === 4000000'
diag "one circuit through the natpeer relay, js at both ends: $(jget "$res" 'j.bulkMbitps') Mbit/s"
c=$(grep -c "relay circuit-open src=.* dst=$PRIV" "$T/relay/out")
if [ "$c" -ge 1 ]; then pass "the relay opened a circuit to the private host"; else fail "the relay opened a circuit to the private host"; fi

res=$(timeout 60 "$NP_NODE" "$here/natpeer-js.mjs" caller --ip 127.0.0.23 \
  --relay "$TMA" --target "$PRIV" --lab-public 127.0.0.0/8 --transport tcp \
  --direct-timeout 1 2>"$T/caller2.err" | grep -m1 '"event":"result"')
[ -n "$res" ] || res='{}'
check "js caller -> natpeer relay (TCP) -> js private host: Hello, World!" \
  "$res" 'j.ok === true && j.response === "Hello, World!" && j.relayedLimited === true'

echo "1..$n"
[ "$failures" -eq 0 ]
