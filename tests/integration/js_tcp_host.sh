#!/bin/sh
# natpeer-host <-> js-libp2p over TCP + Noise + yamux (@libp2p/tcp,
# @chainsafe/libp2p-noise, @chainsafe/libp2p-yamux; the js peer has no QUIC),
# both directions, through the daemon itself: identify, ping, a unary call
# and a raw stream each way. Then a js peer with both transports: natpeer,
# given its TCP address first and its QUIC address second, connects over
# QUIC. TAP.
#
# The js peer and its pinned dependencies come from npm
# (tests/interop/package-lock.json; `npm ci` on demand, see jsdeps.sh):
# without npm or a node >= 22 the whole file is skipped. Every process is
# killed on exit and every wait is bounded.
#
# By hand: top_srcdir=. top_builddir=. sh tests/integration/js_tcp_host.sh
# (KEEP=1 keeps the temporary folder; NP_INTEROP_VERBOSE=1 prints every
# JSON answer).
: "${top_builddir:?}" "${top_srcdir:?}"
set -u
here=$top_srcdir/tests/interop
HOST=$top_builddir/host/natpeer-host
CLI=$top_builddir/host/natpeer-cli
PLUG=$top_builddir/plugins/.libs
. "$here/jsdeps.sh"
np_js_deps_or_exit "$here"

T=$(mktemp -d "${TMPDIR:-/tmp}/np-tcp-host-XXXXXX") || exit 99
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
. "$here/taplib.sh"
peer() { "$NP_NODE" "$here/peer.mjs" "$@"; }
ctl() { "$NP_NODE" "$here/p2pd-ctl.mjs" --control "/unix$T/np/control.sock" "$@"; }
cli() { timeout 20 "$CLI" --control "$T/np/control.sock" "$@"; }

# start_js NAME TRANSPORT: sets JS_MA (first line) and JS_PID
start_js() {
  "$NP_NODE" "$here/peer.mjs" listen --transport "$2" --max-lifetime 240 >"$T/$1.out" 2>"$T/$1.err" &
  JS_PID=$!
  PIDS="$PIDS $JS_PID"
  JS_MA=$(wait_line "$T/$1.out" 15) || { diag "js $1: no address: $(cat "$T/$1.err")"; return 1; }
}

# natpeer-host on TCP and QUIC, loopback, hello + echo plugins
mkdir -p "$T/np/data" "$T/np/plugins"
cp "$PLUG/hello.so" "$PLUG/echo.so" "$T/np/plugins/"
cat >"$T/np/natpeer.ini" <<EOF
[host]
data_dir = $T/np/data
listen = /ip4/127.0.0.1/tcp/0 /ip4/127.0.0.1/udp/0/quic-v1
control = /unix$T/np/control.sock
log_level = debug
[plugins]
dir = $T/np/plugins
EOF
NP_PEER=$("$HOST" --config "$T/np/natpeer.ini" --print-peer-id 2>"$T/np/id.err") || {
  echo "Bail out! natpeer-host --print-peer-id: $(cat "$T/np/id.err")"; exit 99; }
"$HOST" --config "$T/np/natpeer.ini" >"$T/np/host.out" 2>"$T/np/host.err" &
NP_PID=$!
PIDS="$PIDS $NP_PID"
id=$(ctl --timeout 10 wait-identify) || { echo "Bail out! natpeer control socket: $id"; exit 99; }
NP_TCP=$(jget "$id" 'j.addrs.find(a => /^\/ip4\/127\.0\.0\.1\/tcp\/[1-9]/.test(a))')
if [ -n "$NP_TCP" ]; then pass "natpeer listens on TCP ($NP_TCP)"; else fail "natpeer listens on TCP"; diag "$id"; fi
NP_MA=$NP_TCP/p2p/$NP_PEER

# --- js (TCP only) -> natpeer --------------------------------------------------
out=$(peer probe --transport tcp --target "$NP_MA" --ping --timeout 10); rc=$?
check "js -> natpeer over TCP: identify (agent natpeer/, protocols hello, echo, id, ping)" "$out" \
  "$rc === 0 && j.agentVersion.startsWith('natpeer/') && ['hello', 'echo', '/ipfs/id/1.0.0', '/ipfs/ping/1.0.0'].every(p => j.protocols.includes(p))"
check "js -> natpeer over TCP: the connection is TCP and identify lists a TCP address" "$out" \
  "j.remoteAddr.includes('/tcp/') && j.listenAddrs.some(a => a.includes('/tcp/'))"
check "js -> natpeer over TCP: observed address is js's TCP address" "$out" \
  "j.observedAddr != null && j.observedAddr.startsWith('/ip4/127.0.0.1/tcp/')"
check "js -> natpeer over TCP: ping" "$out" "typeof j.pingMs === 'number' && j.pingMs >= 0"
out=$(peer probe --transport tcp --target "$NP_MA" --call hello --timeout 10); rc=$?
check "js -> natpeer over TCP: unary hello answers Hello, World!" "$out" "$rc === 0 && j.response === 'Hello, World!'"
out=$(peer probe --transport tcp --target "$NP_MA" --call echo --data 'héllo over TCP ✓' --timeout 10); rc=$?
check "js -> natpeer over TCP: unary echo" "$out" "$rc === 0 && j.response === 'héllo over TCP ✓'"
out=$(peer probe --transport tcp --target "$NP_MA" --stream /natpeer/echo/1.0.0 --data 'raw bytes over yamux' --timeout 10); rc=$?
check "js -> natpeer over TCP: raw stream to the echo plugin" "$out" "$rc === 0 && j.streamEcho === 'raw bytes over yamux'"
out=$(peer probe --transport tcp --target "$NP_MA" --call no.such.handler --timeout 10); rc=$?
check "js -> natpeer over TCP: unknown handler refused (exit 1)" "$out" "$rc === 1"

# --- natpeer -> js (TCP only) --------------------------------------------------
if start_js jt tcp; then
  js_peer=${JS_MA##*/}
  out=$(ctl --timeout 10 connect "$JS_MA"); rc=$?
  check "natpeer -> js over TCP: CONNECT" "$out" "$rc === 0 && j.ok === true"
  i=0
  while [ $i -lt 50 ] && ! grep -q '"event":"identify"' "$T/jt.out"; do sleep 0.1; i=$((i + 1)); done
  check "natpeer -> js over TCP: js identified natpeer" "$(grep '"event":"identify"' "$T/jt.out" | head -n 1)" \
    "j.peer === '$NP_PEER' && j.agentVersion.startsWith('natpeer/')"
  out=$(cli --json peers); rc=$?
  check "natpeer -> js over TCP: peers shows transport tcp" "$out" \
    "j.peers.some(p => p.peer === '$js_peer' && p.transport === 'tcp' && p.addr.includes('/tcp/') && p.agent.startsWith('js-libp2p/'))"
  out=$(cli ping "$js_peer" 2>&1); rc=$?
  if [ $rc -eq 0 ] && echo "$out" | grep -q "rtt="; then pass "natpeer -> js over TCP: ping"; else fail "natpeer -> js over TCP: ping"; diag "rc=$rc $out"; fi
  out=$(ctl --timeout 10 call "$js_peer" js.echo 'from natpeer over TCP ✓'); rc=$?
  check "natpeer -> js over TCP: unary js.echo (CallUnary)" "$out" "$rc === 0 && j.response === 'from natpeer over TCP ✓'"
  got=$(cli call "$js_peer" js.hello 2>"$T/cli.err"); rc=$?
  if [ $rc -eq 0 ] && [ "$got" = "Hello from js-libp2p" ]; then pass "natpeer -> js over TCP: natpeer-cli call js.hello"
  else fail "natpeer -> js over TCP: natpeer-cli call js.hello"; diag "rc=$rc out=$got $(cat "$T/cli.err")"; fi
  out=$(ctl --timeout 10 stream "$js_peer" /js/echo/1.0.0 'raw stream from natpeer'); rc=$?
  check "natpeer -> js over TCP: raw stream (STREAM_OPEN) echoed" "$out" "$rc === 0 && j.echo === 'raw stream from natpeer'"
else
  for t in CONNECT identified peers ping CallUnary cli-call stream; do fail "natpeer -> js over TCP: $t (no js listener)"; done
fi

# --- js with QUIC and TCP: natpeer picks QUIC -----------------------------------
if start_js jb both; then
  jb_peer=${JS_MA##*/}
  i=0
  while [ $i -lt 50 ] && ! grep -q '"event":"listening"' "$T/jb.out"; do sleep 0.1; i=$((i + 1)); done
  jb_tcp=$(jget "$(grep '"event":"listening"' "$T/jb.out" | head -n 1)" 'j.multiaddrs.find(a => a.includes("/tcp/"))')
  jb_quic=$(jget "$(grep '"event":"listening"' "$T/jb.out" | head -n 1)" 'j.multiaddrs.find(a => a.includes("/quic-v1"))')
  # TCP listed first: the choice is natpeer's, not the order
  out=$(ctl --timeout 10 connect "$jb_tcp" "$jb_quic"); rc=$?
  check "natpeer -> js with both transports: CONNECT" "$out" "$rc === 0 && j.ok === true"
  out=$(cli --json peers)
  check "natpeer -> js with both transports: the connection is QUIC" "$out" \
    "j.peers.filter(p => p.peer === '$jb_peer').length >= 1 && j.peers.filter(p => p.peer === '$jb_peer').every(p => p.transport === 'quic')"
else
  fail "natpeer -> js with both transports (no js listener)"
fi

if ! kill -0 "$NP_PID" 2>/dev/null; then fail "natpeer-host still running"; diag "$(tail -n 20 "$T/np/host.err")"
else pass "natpeer-host still running"; fi
[ $failures -eq 0 ] || { diag "natpeer log tail:"; diag "$(tail -n 30 "$T/np/host.err")"; }
echo "1..$n"
[ $failures -eq 0 ]
