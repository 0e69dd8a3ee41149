#!/bin/sh
# natpeer's sans-I/O TCP stack (np_mss, np_noise, np_yamux, np_identify,
# driven by tests/interop/tcp_probe over plain sockets) <-> js-libp2p
# (@libp2p/tcp, @chainsafe/libp2p-noise, @chainsafe/libp2p-yamux; no QUIC)
# on 127.0.0.1, both directions: identify, ping, a raw echo stream. TAP.
#
#   (a) js listens (peer.mjs listen --transport tcp), tcp_probe dials it:
#       with early muxer negotiation in Noise, then without it (multistream
#       /yamux/1.0.0 inside Noise) and a 2 MiB echo
#   (b) tcp_probe listens, js dials it (peer.mjs probe --transport tcp):
#       with and without early muxer negotiation
#
# The js peer and its pinned dependencies come from npm
# (tests/interop/package-lock.json; `npm ci` on demand, see jsdeps.sh):
# without npm or a node >= 22 the whole file is skipped. Every process is
# killed on exit and every wait is bounded (about 60 s in the worst case;
# a normal run takes a few seconds).
#
# By hand: top_srcdir=. top_builddir=. sh tests/integration/js_tcp_interop.sh
# NP_INTEROP_VERBOSE=1 prints every JSON answer as a TAP comment;
# NP_PROBE_TRACE=1 makes tcp_probe hex-dump the wire into $T/*.err (kept
# when a check fails: the folder is named in a comment).
: "${top_builddir:?}" "${top_srcdir:?}"
set -u
here=$top_srcdir/tests/interop
PROBE=$top_builddir/tests/interop/tcp_probe
if [ ! -x "$PROBE" ]; then
  echo "Bail out! $PROBE is not built (make check builds it)"
  exit 99
fi
. "$here/jsdeps.sh"
np_js_deps_or_exit "$here"

T=$(mktemp -d "${TMPDIR:-/tmp}/np-tcp-interop-XXXXXX") || exit 99
PIDS=""
n=0
failures=0
cleanup() {
  for p in $PIDS; do kill -TERM "$p" 2>/dev/null; done
  for p in $PIDS; do # 3 s for a clean exit, then SIGKILL
    i=0
    while kill -0 "$p" 2>/dev/null && [ $i -lt 30 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL "$p" 2>/dev/null
  done
  if [ $failures -gt 0 ] && [ "${NP_PROBE_TRACE:-0}" != 0 ]; then
    echo "# logs kept in $T"
  else
    rm -rf "$T"
  fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

. "$top_srcdir/tests/interop/taplib.sh"

# wait_grep FILE PATTERN SECONDS
wait_grep() {
  _i=0
  while [ $_i -lt $(($3 * 20)) ]; do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.05; _i=$((_i + 1))
  done
  return 1
}
# wait_pid PID SECONDS: true (and $WAIT_RC set) if it exits within SECONDS
wait_pid() {
  _i=0
  while kill -0 "$1" 2>/dev/null; do
    [ $_i -ge $(($2 * 20)) ] && return 1
    sleep 0.05; _i=$((_i + 1))
  done
  wait "$1"
  WAIT_RC=$?
  return 0
}

echo "1..24"
diag "js-libp2p over TCP + Noise + yamux, $("$NP_NODE" --version)"

# ---------------------------------------------------------------------------
# (a) js listens, tcp_probe dials
# ---------------------------------------------------------------------------
"$NP_NODE" "$here/peer.mjs" listen --transport tcp --max-lifetime 60 \
  >"$T/js.out" 2>"$T/js.err" &
JS_PID=$!
PIDS="$PIDS $JS_PID"
if JS_MA=$(wait_line "$T/js.out" 20); then
  case $JS_MA in
    /ip4/127.0.0.1/tcp/*/p2p/12D3KooW*) pass "js listener prints /ip4/127.0.0.1/tcp/P/p2p/ID" ;;
    *) fail "js listener prints /ip4/127.0.0.1/tcp/P/p2p/ID"; diag "got: $JS_MA" ;;
  esac
  out=$(NP_PROBE_TRACE=${NP_PROBE_TRACE:-0} timeout 25 "$PROBE" dial "$JS_MA" --timeout 15 2>"$T/dial.err"); rc=$?
  [ -n "$out" ] || out='{}'
  check "tcp_probe dial: exit 0 (multistream /noise, Noise XX, yamux)" "{\"rc\":$rc}" 'j.rc === 0'
  [ $rc -eq 0 ] || diag "$(tail -n 5 "$T/dial.err")"
  check "Noise authenticated the dialed peer; yamux is the muxer" "$out" \
    "j.peer === '${JS_MA##*/p2p/}' && j.muxer === '/yamux/1.0.0'"
  check "early muxer negotiation: /yamux/1.0.0 agreed in the Noise handshake" "$out" \
    "j.muxerNegotiation === 'noise-extension'"
  check "identify: js agent version, publicKey of the dialed peer" "$out" \
    "typeof j.agentVersion === 'string' && j.agentVersion.startsWith('js-libp2p/') && j.identifyPeer === j.peer"
  check "identify: protocols include /ipfs/id/1.0.0 and /ipfs/ping/1.0.0" "$out" \
    '["/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"].every(p => j.protocols.includes(p))'
  check "identify: listen addr is the TCP one; observed addr is ours" "$out" \
    "j.listenAddrs.some(a => '$JS_MA'.startsWith(a)) && j.observedAddr.startsWith('/ip4/127.0.0.1/tcp/') && j.signedRecord === true"
  check "ping: 32 bytes back, RTT measured" "$out" 'typeof j.pingMs === "number" && j.pingMs >= 0 && j.pingMs < 5000'
  check "raw echo stream /js/echo/1.0.0 round trip (FIN both ways)" "$out" 'j.echo === true'
  diag "ping $(echo "$out" | sed -n 's/.*"pingMs":\([0-9.]*\).*/\1/p') ms"
  if wait_grep "$T/js.out" '"event":"identify".*natpeer/' 5; then
    pass "js identified tcp_probe over the same connection (agent natpeer/...)"
  else
    fail "js identified tcp_probe over the same connection (agent natpeer/...)"
    diag "$(cat "$T/js.out" "$T/js.err" | tail -n 8)"
  fi
  # No muxer in our Noise payload: /yamux/1.0.0 by multistream inside Noise.
  # 2 MiB echoed (js's /js/bulk-echo/1.0.0): 8 initial windows each way, so
  # both ends' window updates are needed, and js auto-tunes its window.
  out=$(timeout 25 "$PROBE" dial "$JS_MA" --timeout 15 --no-early-muxer \
          --echo /js/bulk-echo/1.0.0 --echo-bytes 2097152 2>"$T/dial2.err"); rc=$?
  [ -n "$out" ] || out='{}'
  check "tcp_probe dial --no-early-muxer: exit 0, /yamux/1.0.0 by multistream inside Noise, identify" \
    "{\"rc\":$rc,\"out\":$out}" \
    "j.rc === 0 && j.out.muxerNegotiation === 'multistream' && j.out.agentVersion.startsWith('js-libp2p/')"
  check "2 MiB echoed on /js/bulk-echo/1.0.0 (yamux flow control both ways)" "$out" \
    'j.echo === true && j.echoBytes === 2097152'
else
  for d in "js listener prints /ip4/127.0.0.1/tcp/P/p2p/ID" "tcp_probe dial: exit 0" \
           "Noise authenticated the dialed peer" "early muxer negotiation" \
           "identify: js agent version" \
           "identify: protocols" "identify: listen addr" "ping" "raw echo stream" \
           "js identified tcp_probe" "tcp_probe dial --no-early-muxer" \
           "2 MiB echoed"; do fail "$d"; done
  diag "js listener printed no multiaddr in 20 s:"; diag "$(tail -n 8 "$T/js.err")"
fi
kill -TERM "$JS_PID" 2>/dev/null

# ---------------------------------------------------------------------------
# (b) tcp_probe listens, js dials
# ---------------------------------------------------------------------------
# listen_case TAG PROBE_ARGS MUXER_NEGOTIATION: tcp_probe listens, js dials
listen_case() {
  NP_PROBE_TRACE=${NP_PROBE_TRACE:-0} "$PROBE" listen --timeout 20 $2 >"$T/listen$1.out" 2>"$T/listen$1.err" &
  LP_PID=$!
  PIDS="$PIDS $LP_PID"
  if NP_MA=$(wait_line "$T/listen$1.out" 5); then
    case $NP_MA in
      /ip4/127.0.0.1/tcp/*/p2p/12D3KooW*) pass "tcp_probe listen ${2:+$2 }prints /ip4/127.0.0.1/tcp/P/p2p/ID" ;;
      *) fail "tcp_probe listen ${2:+$2 }prints /ip4/127.0.0.1/tcp/P/p2p/ID"; diag "got: $NP_MA" ;;
    esac
    out=$(timeout 30 "$NP_NODE" "$here/peer.mjs" probe --transport tcp --target "$NP_MA" --ping --timeout 10 2>"$T/probe$1.err"); rc=$?
    [ -n "$out" ] || out='{}'
    check "js probe over TCP: exit 0" "{\"rc\":$rc}" 'j.rc === 0'
    [ $rc -eq 0 ] || diag "$(tail -n 5 "$T/probe$1.err")"
    check "js identified us: agent natpeer/, protocols id and ping" "$out" \
      "typeof j.agentVersion === 'string' && j.agentVersion.startsWith('natpeer/') && ['/ipfs/id/1.0.0', '/ipfs/ping/1.0.0'].every(p => j.protocols.includes(p))"
    check "js accepted our signed peer record; listen and observed addrs are TCP" "$out" \
      "j.signedPeerRecordSeq != null && j.listenAddrs.some(a => '$NP_MA'.startsWith(a)) && j.observedAddr.startsWith('/ip4/127.0.0.1/tcp/')"
    check "js ping over our yamux: RTT measured" "$out" 'typeof j.pingMs === "number" && j.pingMs >= 0 && j.pingMs < 5000'
    if wait_pid "$LP_PID" 10; then
      lout=$(tail -n 1 "$T/listen$1.out")
      check "tcp_probe listen: exit 0 once js hung up, identify and ping served, muxer by $3" \
        "{\"rc\":$WAIT_RC,\"out\":$lout}" \
        "j.rc === 0 && j.out.secured && j.out.servedIdentify >= 1 && j.out.servedPing >= 1 && j.out.peerClosed && j.out.muxerNegotiation === '$3'"
    else
      fail "tcp_probe listen: exit 0 once js hung up, identify and ping served, muxer by $3"
      diag "still running 10 s after the js probe ended"
    fi
  else
    for d in "tcp_probe listen prints its multiaddr" "js probe over TCP" "js identified us" \
             "signed peer record" "js ping" "tcp_probe listen exits"; do fail "$d"; done
    diag "tcp_probe listen printed no multiaddr in 5 s:"; diag "$(tail -n 5 "$T/listen$1.err")"
  fi
}
listen_case 1 "" noise-extension
# our Noise payload lists no muxer: js must fall back to multistream
listen_case 2 --no-early-muxer multistream

[ $failures -eq 0 ] || exit 1
exit 0
