#!/bin/sh
# natpeer-host <-> js-libp2p over TCP + libp2p TLS (/tls/1.0.0, @libp2p/tls)
# + yamux, both directions, through the daemon itself: identify, ping, a
# unary call and raw streams each way, with natpeer on `security = tls`
# (TLS only: a Noise-only js peer is refused). Then a second natpeer-host on
# the default `security = noise tls` dials a TLS-only js peer: /noise gets
# `na`, /tls/1.0.0 is agreed. TAP.
#
# The js peer and its pinned dependencies come from npm
# (tests/interop/package-lock.json; `npm ci` on demand, see jsdeps.sh);
# NP_JS_SECURITY (lib.mjs) picks the js side's security protocols. Without
# npm or a node >= 22 the whole file is skipped. Every process is killed on
# exit and every wait is bounded.
#
# By hand: top_srcdir=. top_builddir=. sh tests/integration/js_tls_host.sh
# (KEEP=1 keeps the temporary folder).
: "${top_builddir:?}" "${top_srcdir:?}"
set -u
here=$top_srcdir/tests/interop
HOST=$top_builddir/host/natpeer-host
CLI=$top_builddir/host/natpeer-cli
PLUG=$top_builddir/plugins/.libs
. "$here/jsdeps.sh"
np_js_deps_or_exit "$here"

T=$(mktemp -d "${TMPDIR:-/tmp}/np-tls-host-XXXXXX") || exit 99
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
peer() { NP_JS_SECURITY=${SEC:-tls} "$NP_NODE" "$here/peer.mjs" "$@"; }
ctl() { "$NP_NODE" "$here/p2pd-ctl.mjs" --control "/unix$T/$NPD/control.sock" "$@"; }
cli() { timeout 20 "$CLI" --control "$T/$NPD/control.sock" "$@"; }

# start_js NAME SECURITY: a TCP-only js listener; sets JS_MA and JS_PID
start_js() {
  NP_JS_SECURITY=$2 "$NP_NODE" "$here/peer.mjs" listen --transport tcp --max-lifetime 240 \
    >"$T/$1.out" 2>"$T/$1.err" &
  JS_PID=$!
  PIDS="$PIDS $JS_PID"
  JS_MA=$(wait_line "$T/$1.out" 15) || { diag "js $1: no address: $(cat "$T/$1.err")"; return 1; }
}

# start_np DIR SECURITY: natpeer-host on loopback TCP with the hello and
# echo plugins; sets NPD, NP_PEER, NP_PID, NP_MA. SECURITY "" keeps the
# default.
start_np() {
  NPD=$1
  mkdir -p "$T/$1/data" "$T/$1/plugins"
  cp "$PLUG/hello.so" "$PLUG/echo.so" "$T/$1/plugins/"
  {
    echo "[host]"
    echo "data_dir = $T/$1/data"
    echo "listen = /ip4/127.0.0.1/tcp/0"
    echo "control = /unix$T/$1/control.sock"
    echo "log_level = debug"
    [ -n "$2" ] && echo "security = $2"
    echo "[plugins]"
    echo "dir = $T/$1/plugins"
  } >"$T/$1/natpeer.ini"
  NP_PEER=$("$HOST" --config "$T/$1/natpeer.ini" --print-peer-id 2>"$T/$1/id.err") || {
    echo "Bail out! natpeer-host --print-peer-id: $(cat "$T/$1/id.err")"; exit 99; }
  "$HOST" --config "$T/$1/natpeer.ini" >"$T/$1/host.out" 2>"$T/$1/host.err" &
  NP_PID=$!
  PIDS="$PIDS $NP_PID"
  id=$(ctl --timeout 10 wait-identify) || { echo "Bail out! natpeer control socket: $id"; exit 99; }
  NP_TCP=$(jget "$id" 'j.addrs.find(a => /^\/ip4\/127\.0\.0\.1\/tcp\/[1-9]/.test(a))')
  if [ -n "$NP_TCP" ]; then pass "natpeer ($1, security=${2:-default}) listens on TCP ($NP_TCP)"
  else fail "natpeer ($1) listens on TCP"; diag "$id"; fi
  NP_MA=$NP_TCP/p2p/$NP_PEER
}

# has_log DIR PATTERN: the host log of DIR has a line matching PATTERN
has_log() {
  i=0
  while [ $i -lt 30 ]; do grep -q "$2" "$T/$1/host.err" && return 0; sleep 0.1; i=$((i + 1)); done
  return 1
}

start_np np tls
NP1_PID=$NP_PID

# --- js (TCP + TLS) -> natpeer (TLS only) ---------------------------------------
out=$(peer probe --transport tcp --target "$NP_MA" --ping --timeout 10); rc=$?
check "js -> natpeer over TCP+TLS: identify (agent natpeer/, protocols hello, echo, id, ping)" "$out" \
  "$rc === 0 && j.agentVersion.startsWith('natpeer/') && ['hello', 'echo', '/ipfs/id/1.0.0', '/ipfs/ping/1.0.0'].every(p => j.protocols.includes(p))"
check "js -> natpeer over TCP+TLS: ping" "$out" "typeof j.pingMs === 'number' && j.pingMs >= 0"
if has_log np "conn-up .* dir=in sec=tls muxer=inline"; then
  pass "natpeer logged the inbound connection as sec=tls, yamux agreed in ALPN"
else fail "natpeer logged the inbound connection as sec=tls, yamux agreed in ALPN"; fi
out=$(peer probe --transport tcp --target "$NP_MA" --call echo --data 'héllo over TLS ✓' --timeout 10); rc=$?
check "js -> natpeer over TCP+TLS: unary echo" "$out" "$rc === 0 && j.response === 'héllo over TLS ✓'"
big=$(head -c 100000 /dev/zero | tr '\0' 'x')
# into a file: node's stdout to a pipe is cut at 64 KiB by process.exit
peer probe --transport tcp --target "$NP_MA" --stream /natpeer/echo/1.0.0 --data "$big" --timeout 10 >"$T/stream.json"; rc=$?
out=$(cat "$T/stream.json")
check "js -> natpeer over TCP+TLS: 100000 bytes on a raw stream to the echo plugin" "$out" \
  "$rc === 0 && j.streamEcho.length === 100000 && /^x+$/.test(j.streamEcho)"
out=$(SEC=noise peer probe --transport tcp --target "$NP_MA" --ping --timeout 5); rc=$?
check "a Noise-only js peer cannot connect to a TLS-only natpeer" "$out" \
  "$rc !== 0 && /noise|negotiat|protocol/i.test(j.error)"

# --- natpeer (TLS only) -> js (TCP + TLS) ---------------------------------------
if start_js jt tls; then
  js_peer=${JS_MA##*/}
  out=$(ctl --timeout 10 connect "$JS_MA"); rc=$?
  check "natpeer -> js over TCP+TLS: CONNECT" "$out" "$rc === 0 && j.ok === true"
  i=0
  while [ $i -lt 50 ] && ! grep -q '"event":"identify"' "$T/jt.out"; do sleep 0.1; i=$((i + 1)); done
  check "natpeer -> js over TCP+TLS: js identified natpeer" "$(grep '"event":"identify"' "$T/jt.out" | head -n 1)" \
    "j.peer === '$NP_PEER' && j.agentVersion.startsWith('natpeer/')"
  out=$(cli ping "$js_peer" 2>&1); rc=$?
  if [ $rc -eq 0 ] && echo "$out" | grep -q "rtt="; then pass "natpeer -> js over TCP+TLS: ping"
  else fail "natpeer -> js over TCP+TLS: ping"; diag "rc=$rc $out"; fi
  out=$(ctl --timeout 10 call "$js_peer" js.echo 'from natpeer over TLS ✓'); rc=$?
  check "natpeer -> js over TCP+TLS: unary js.echo (CallUnary)" "$out" "$rc === 0 && j.response === 'from natpeer over TLS ✓'"
  out=$(ctl --timeout 10 stream "$js_peer" /js/echo/1.0.0 'raw stream from natpeer'); rc=$?
  check "natpeer -> js over TCP+TLS: raw stream (STREAM_OPEN) echoed" "$out" "$rc === 0 && j.echo === 'raw stream from natpeer'"
  if has_log np "conn-up .*peer=$js_peer dir=out sec=tls"; then pass "natpeer logged its dial as sec=tls"
  else fail "natpeer logged its dial as sec=tls"; fi
else
  for t in CONNECT identified ping CallUnary stream log; do fail "natpeer -> js over TCP+TLS: $t (no js listener)"; done
fi

# --- natpeer on the default (noise tls) -> a TLS-only js peer --------------------
start_np np2 ""
if start_js jt2 tls; then
  js_peer=${JS_MA##*/}
  out=$(ctl --timeout 10 connect "$JS_MA"); rc=$?
  check "default natpeer (noise, then tls) -> TLS-only js: CONNECT" "$out" "$rc === 0 && j.ok === true"
  out=$(ctl --timeout 10 call "$js_peer" js.echo 'fallback to TLS'); rc=$?
  check "default natpeer -> TLS-only js: unary js.echo" "$out" "$rc === 0 && j.response === 'fallback to TLS'"
  if has_log np2 "conn-up .*peer=$js_peer dir=out sec=tls"; then pass "the connection fell back to /tls/1.0.0"
  else fail "the connection fell back to /tls/1.0.0"; fi
else
  for t in CONNECT CallUnary log; do fail "default natpeer -> TLS-only js: $t (no js listener)"; done
fi

for p in "$NP1_PID" "$NP_PID"; do
  if ! kill -0 "$p" 2>/dev/null; then fail "natpeer-host $p still running"; else pass "natpeer-host $p still running"; fi
done
[ $failures -eq 0 ] || { diag "natpeer log tail:"; diag "$(tail -n 30 "$T/np/host.err")"; }
echo "1..$n"
[ $failures -eq 0 ]
