#!/bin/sh
# natpeer <-> js-libp2p interop checks over QUIC-v1 on 127.0.0.1. Prints TAP.
#
#   sh run.sh --self-test   js <-> js only: validates the js test peer itself
#   sh run.sh               natpeer cases (need NATPEER_HOST, and NATPEER_CLI
#                           for natpeer -> js); without NATPEER_HOST: 1..0 # SKIP
#   sh run.sh --all         both
#   sh run.sh --mock        the natpeer cases against mock/ (a js stand-in for
#                           natpeer-host and natpeer-cli): checks this script's
#                           plumbing, not natpeer
#
# Env:
#   NATPEER_HOST        path to natpeer-host (e.g. $top_builddir/host/natpeer-host)
#   NATPEER_CLI         path to natpeer-cli (natpeer -> js calls through it)
#   NATPEER_PLUGIN_DIR  folder holding hello.so and echo.so
#                       (default: $(dirname NATPEER_HOST)/../plugins/.libs)
#   NATPEER_CLI_ARGS    arguments that point natpeer-cli at the host's control
#                       socket; default: guessed from `natpeer-cli --help`
#                       (--control ADDR, else --config FILE)
#   NP_INTEROP_VERBOSE=1  print every JSON answer as a TAP comment
#   NP_INTEROP_MODE     self-test|all|mock: the mode when no argument is given
#                       (automake's TESTS passes none)
# Under automake (top_builddir set), NATPEER_HOST and NATPEER_CLI default to
# $top_builddir/host/natpeer-host and $top_builddir/host/natpeer-cli.
# Exit: 0 all ok (or skipped), 1 a check failed, 99 could not install deps.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/jsdeps.sh"

: "${NATPEER_HOST:=${top_builddir:+$top_builddir/host/natpeer-host}}"
: "${NATPEER_CLI:=${top_builddir:+$top_builddir/host/natpeer-cli}}"
mode=natpeer
arg=${1:-}
[ -n "$arg" ] || arg=${NP_INTEROP_MODE:+--$NP_INTEROP_MODE}
case $arg in
  --self-test) mode=self ;;
  --all) mode=all ;;
  --mock) mode=natpeer
    NATPEER_HOST=$here/mock/natpeer-host NATPEER_CLI=$here/mock/natpeer-cli NATPEER_CLI_ARGS= NATPEER_PLUGIN_DIR=
    MOCK=1 ;;
  "") ;;
  *) echo "usage: $0 [--self-test|--all|--mock]" >&2; exit 2 ;;
esac

if [ "$mode" = natpeer ] && [ -z "${NATPEER_HOST:-}" ]; then
  echo "1..0 # SKIP NATPEER_HOST is not set (run.sh --self-test checks js <-> js)"
  exit 0
fi
np_js_deps_or_exit "$here"
export NP_NODE

T=$(mktemp -d "${TMPDIR:-/tmp}/np-interop-XXXXXX") || exit 99
if [ "${MOCK:-0}" = 1 ]; then # the mock host needs plugin files to copy, nothing more
  mkdir -p "$T/mockplug" && touch "$T/mockplug/hello.so" "$T/mockplug/echo.so"
  NATPEER_PLUGIN_DIR=$T/mockplug
fi
PIDS=""
cleanup() {
  for p in $PIDS; do kill -TERM "$p" 2>/dev/null; done
  for p in $PIDS; do # 3 s for a clean exit, then SIGKILL
    i=0
    while kill -0 "$p" 2>/dev/null && [ $i -lt 30 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL "$p" 2>/dev/null
  done
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

. "$here/taplib.sh"
node_js() { "$NP_NODE" "$@"; }
peer() { node_js "$here/peer.mjs" "$@"; }
ctl() { node_js "$here/p2pd-ctl.mjs" "$@"; }

# start_js NAME: a js listener; sets JS_MA (its multiaddr) and JS_PID
start_js() {
  # node itself in the background (not the `peer` function, whose subshell
  # would be what $! names): SIGTERM must reach the listener
  "$NP_NODE" "$here/peer.mjs" listen --max-lifetime 240 >"$T/$1.out" 2>"$T/$1.err" &
  JS_PID=$!
  PIDS="$PIDS $JS_PID"
  if ! JS_MA=$(wait_line "$T/$1.out" 15); then
    diag "js listener $1 printed no multiaddr in 15 s:"; diag "$(cat "$T/$1.err")"
    JS_MA=""
    return 1
  fi
}
# stop_pid PID SECONDS: SIGTERM, then true if it is gone within SECONDS
stop_pid() {
  kill -TERM "$1" 2>/dev/null
  _i=0
  while kill -0 "$1" 2>/dev/null; do
    [ $_i -ge $(($2 * 20)) ] && return 1
    sleep 0.05; _i=$((_i + 1))
  done
  return 0
}

# ---------------------------------------------------------------------------
# js <-> js: validates peer.mjs (listener, prober, unary wire format)
# ---------------------------------------------------------------------------
self_test() {
  diag "self-test: js-libp2p <-> js-libp2p, $("$NP_NODE" --version)"
  if ! start_js js1; then fail "js listener prints its multiaddr"; return; fi
  case $JS_MA in
    /ip4/127.0.0.1/udp/*/quic-v1/p2p/12D3KooW*) pass "js listener prints /ip4/127.0.0.1/udp/P/quic-v1/p2p/ID" ;;
    *) fail "js listener prints /ip4/127.0.0.1/udp/P/quic-v1/p2p/ID"; diag "got: $JS_MA" ;;
  esac
  out=$(peer probe --target "$JS_MA" --ping --timeout 10); rc=$?
  check "probe exits 0" "{\"rc\":$rc}" 'j.rc === 0'
  check "identify: agent version js-libp2p/" "$out" 'j.agentVersion.startsWith("js-libp2p/")'
  check "identify: protocols list id, ping, js.hello, js.echo" "$out" \
    '["/ipfs/id/1.0.0", "/ipfs/ping/1.0.0", "js.hello", "js.echo"].every(p => j.protocols.includes(p))'
  check "identify: listen addrs and observed addr are loopback QUIC" "$out" \
    'j.listenAddrs.some(a => a.startsWith("/ip4/127.0.0.1/udp/") && a.endsWith("/quic-v1")) && j.observedAddr.startsWith("/ip4/127.0.0.1/udp/")'
  check "ping RTT measured" "$out" 'typeof j.pingMs === "number" && j.pingMs >= 0 && j.pingMs < 5000'
  out=$(peer probe --target "$JS_MA" --call js.hello --timeout 10); rc=$?
  check "unary js.hello answers Hello from js-libp2p" "$out" "j.response === 'Hello from js-libp2p' && $rc === 0"
  out=$(peer probe --target "$JS_MA" --call js.echo --data 'héllo, ✓ unary' --timeout 10); rc=$?
  check "unary js.echo echoes UTF-8 data" "$out" "j.response === 'héllo, ✓ unary' && $rc === 0"
  out=$(peer probe --target "$JS_MA" --stream /js/echo/1.0.0 --data 'raw bytes' --timeout 10); rc=$?
  check "raw stream echo" "$out" "j.streamEcho === 'raw bytes' && $rc === 0"
  out=$(peer probe --target "$JS_MA" --call no.such.handler --timeout 10); rc=$?
  check "unary call of an unknown handler exits 1 (remote refused)" "$out" "$rc === 1 && /refused/.test(j.error)"
  # a peer ID with nothing listening: some free UDP port on loopback
  dead=$(echo "$JS_MA" | sed 's#/udp/[0-9]*/#/udp/9/#')
  t0=$(date +%s)
  out=$(peer probe --target "$dead" --timeout 3); rc=$?
  secs=$(($(date +%s) - t0))
  check "probe of a dead address exits 3 within its timeout" "$out" "$rc === 3 && $secs <= 8"
  check "listener logged the unary calls as JSON events" "$(grep '"event":"unary"' "$T/js1.out" | head -n 1)" \
    'j.proto === "js.hello" && j.callIdLen === 16'
  if stop_pid "$JS_PID" 2; then pass "listener exits on SIGTERM within 2 s"; else fail "listener exits on SIGTERM within 2 s"; fi
}

# ---------------------------------------------------------------------------
# natpeer <-> js                                  >>> natpeer cases start here
# Enabled by NATPEER_HOST (js -> natpeer) and NATPEER_CLI (natpeer -> js).
# Each group is guarded by a feature probe and SKIPs with the reason when the
# host lacks the feature, so the lead can wire this in before everything lands.
# ---------------------------------------------------------------------------
T_ID_AGENT="js -> natpeer identify: agent version starts with natpeer/"
T_ID_PROTOS="js -> natpeer identify: protocols list hello, echo, /ipfs/id/1.0.0, /ipfs/ping/1.0.0"
T_PING="js -> natpeer ping"
T_HELLO="js -> natpeer unary hello answers Hello, World!"
T_ECHO="js -> natpeer unary echo echoes UTF-8 data"
T_UNKNOWN="js -> natpeer unary call of an unknown handler is refused (exit 1)"
T_CONNECT="natpeer -> js CONNECT through the control socket"
T_JS_ID="js listener identified natpeer (agent natpeer/)"
T_CTL_CALL="natpeer -> js unary js.echo through the control socket (CallUnary)"
T_CLI_CALL="natpeer-cli call PEER js.hello prints Hello from js-libp2p"
JS_TO_NP="T_ID_AGENT T_ID_PROTOS T_PING T_HELLO T_ECHO T_UNKNOWN"
NP_TO_JS="T_CONNECT T_JS_ID T_CTL_CALL T_CLI_CALL"
skip_np() { # skip_np "VAR VAR ..." REASON: skip the named cases
  for _v in $1; do eval "skip \"\$$_v\" \"\$2\""; done
}
fail_np() { # fail_np "VAR VAR ..." REASON: fail the named cases
  for _v in $1; do eval "fail \"\$$_v\""; diag "$2"; done
}

# start_natpeer: a natpeer-host with the hello and echo plugins, QUIC on
# loopback, a unix control socket; sets NP_MA (full multiaddr), NP_PEER,
# NP_CTL (control multiaddr), NP_HAS_CTL. Returns 1 (feature missing: skip)
# or 2 (host broken: fail) with NP_WHY.
start_natpeer() {
  NP_WHY=
  plugdir=${NATPEER_PLUGIN_DIR:-$(dirname "$NATPEER_HOST")/../plugins/.libs}
  mkdir -p "$T/np/data" "$T/np/plugins"
  for p in hello echo; do
    if [ -f "$plugdir/$p.so" ]; then
      cp "$plugdir/$p.so" "$T/np/plugins/.$p.so.tmp" && mv -f "$T/np/plugins/.$p.so.tmp" "$T/np/plugins/$p.so"
    else
      NP_WHY="no $p.so in $plugdir (set NATPEER_PLUGIN_DIR)"; return 1
    fi
  done
  NP_CTL=/unix$T/np/control.sock
  cat >"$T/np/natpeer.ini" <<EOF
[host]
data_dir = $T/np/data
listen = /ip4/127.0.0.1/udp/0/quic-v1
control = $NP_CTL
log_level = debug
[plugins]
dir = $T/np/plugins
EOF
  if ! NP_PEER=$("$NATPEER_HOST" --config "$T/np/natpeer.ini" --print-peer-id 2>"$T/np/print-id.err"); then
    NP_WHY="natpeer-host --print-peer-id failed: $(tail -n 1 "$T/np/print-id.err")"; return 2
  fi
  "$NATPEER_HOST" --config "$T/np/natpeer.ini" >"$T/np/host.out" 2>"$T/np/host.err" &
  NP_PID=$!
  PIDS="$PIDS $NP_PID"
  # Feature probes, 10 s in all. The bound address: from the start-up banner
  # (p2pd's form: "Control socket: A", "Peer ID: P", "Peer Addrs:", one
  # multiaddr per line), else from the log, else from the control socket's
  # IDENTIFY. The control socket counts when it answers IDENTIFY.
  NP_MA= NP_HAS_CTL=0
  i=0
  while [ $i -lt 100 ] && kill -0 "$NP_PID" 2>/dev/null; do
    a=$(grep -o '^/ip4/127\.0\.0\.1/udp/[1-9][0-9]*/quic-v1' "$T/np/host.out" | head -n 1)
    [ -n "$a" ] || a=$(grep -o '/ip4/127\.0\.0\.1/udp/[1-9][0-9]*/quic-v1' "$T/np/host.err" | head -n 1)
    if [ -z "$a" ] && [ -S "$T/np/control.sock" ] && ctl_id=$(ctl --control "$NP_CTL" --timeout 2 identify 2>/dev/null); then
      a=$(jget "$ctl_id" 'j.addrs.find(a => a.startsWith("/ip4/127.0.0.1/udp/") && a.endsWith("/quic-v1"))')
    fi
    [ -n "$a" ] && { NP_MA=$a/p2p/$NP_PEER; break; }
    sleep 0.1; i=$((i + 1))
  done
  if [ -n "$NP_MA" ]; then
    if ctl_id=$(ctl --control "$NP_CTL" --timeout 5 wait-identify 2>&1); then
      NP_HAS_CTL=1
      jcheck "$ctl_id" "j.peer === '$NP_PEER'" || diag "control IDENTIFY names another peer: $ctl_id"
    else
      diag "natpeer control socket $NP_CTL did not answer IDENTIFY: $ctl_id"
    fi
  fi
  if ! kill -0 "$NP_PID" 2>/dev/null; then
    wait "$NP_PID"; rc=$?
    NP_WHY="natpeer-host exited with status $rc: $(tail -n 1 "$T/np/host.err")"
    return 2
  fi
  if [ -z "$NP_MA" ]; then
    NP_WHY="natpeer-host shows no bound /quic-v1 address (not in its banner, log or control IDENTIFY)"
    diag "natpeer-host log:"; diag "$(tail -n 20 "$T/np/host.err")"
    return 1
  fi
  diag "natpeer: $NP_MA (control: $NP_CTL, reachable: $NP_HAS_CTL)"
}

natpeer_cases() {
  if [ -z "${NATPEER_HOST:-}" ] || [ ! -x "$NATPEER_HOST" ]; then
    skip_np "$JS_TO_NP $NP_TO_JS" "NATPEER_HOST (${NATPEER_HOST:-unset}) is not an executable"
    return
  fi
  start_natpeer
  case $? in
    0) ;;
    1) skip_np "$JS_TO_NP $NP_TO_JS" "$NP_WHY"; return ;;
    *) fail "natpeer-host starts with the test config"; diag "$NP_WHY"
       skip_np "$JS_TO_NP $NP_TO_JS" "natpeer-host did not start"; return ;;
  esac

  # --- js -> natpeer: identify, ping, unary hello/echo, unknown handler -----
  out=$(peer probe --target "$NP_MA" --ping --timeout 10); rc=$?
  if [ $rc -eq 3 ]; then
    # natpeer has a bound QUIC address, so not connecting is a failure
    diag "natpeer-host log:"; diag "$(tail -n 20 "$T/np/host.err")"
    fail_np "$JS_TO_NP" "js-libp2p could not connect to or identify natpeer at $NP_MA: $out"
  else
    check "$T_ID_AGENT" "$out" 'j.agentVersion.startsWith("natpeer/")'
    check "$T_ID_PROTOS" "$out" \
      '["hello", "echo", "/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"].every(p => j.protocols.includes(p))'
    check "$T_PING" "$out" "$rc === 0 && typeof j.pingMs === 'number'"
    out=$(peer probe --target "$NP_MA" --call hello --timeout 10); rc=$?
    check "$T_HELLO" "$out" "$rc === 0 && j.response === 'Hello, World!'"
    out=$(peer probe --target "$NP_MA" --call echo --data 'héllo natpeer ✓' --timeout 10); rc=$?
    check "$T_ECHO" "$out" "$rc === 0 && j.response === 'héllo natpeer ✓'"
    out=$(peer probe --target "$NP_MA" --call no.such.handler --timeout 10); rc=$?
    check "$T_UNKNOWN" "$out" "$rc === 1"
  fi

  # --- natpeer -> js: natpeer-cli call, and the control socket's CallUnary --
  if [ "$NP_HAS_CTL" != 1 ]; then
    skip_np "$NP_TO_JS" "natpeer control socket not available"
    return
  fi
  if ! start_js js-np; then
    fail "js listener for natpeer -> js"; skip_np "$NP_TO_JS" "no js listener"; return
  fi
  js_peer=${JS_MA##*/}
  out=$(ctl --control "$NP_CTL" --timeout 10 connect "$JS_MA"); rc=$?
  check "$T_CONNECT" "$out" "$rc === 0 && j.ok === true"
  # the js listener saw natpeer's identify
  i=0
  while [ $i -lt 50 ] && ! grep -q '"event":"identify"' "$T/js-np.out"; do sleep 0.1; i=$((i + 1)); done
  check "$T_JS_ID" "$(grep '"event":"identify"' "$T/js-np.out" | head -n 1)" \
    "j.peer === '$NP_PEER' && j.agentVersion.startsWith('natpeer/')"
  out=$(ctl --control "$NP_CTL" --timeout 10 call "$js_peer" js.echo 'from natpeer ✓'); rc=$?
  check "$T_CTL_CALL" "$out" "$rc === 0 && j.response === 'from natpeer ✓'"
  if [ -z "${NATPEER_CLI:-}" ] || [ ! -x "$NATPEER_CLI" ]; then
    skip "$T_CLI_CALL" "NATPEER_CLI (${NATPEER_CLI:-unset}) is not an executable"
  elif ! "$NATPEER_CLI" --help 2>&1 | grep -q 'call'; then
    skip "$T_CLI_CALL" "natpeer-cli --help does not mention call"
  else
    if [ -n "${NATPEER_CLI_ARGS:-}" ]; then cli_args=$NATPEER_CLI_ARGS
    elif "$NATPEER_CLI" --help 2>&1 | grep -q -- '--control'; then cli_args="--control $T/np/control.sock"
    else cli_args="--config $T/np/natpeer.ini"; fi
    # shellcheck disable=SC2086 # cli_args is a word list on purpose
    got=$(timeout 15 "$NATPEER_CLI" $cli_args call "$js_peer" js.hello 2>"$T/np/cli.err"); rc=$?
    if [ $rc -eq 0 ] && [ "$got" = "Hello from js-libp2p" ]; then
      pass "$T_CLI_CALL"
    else
      fail "$T_CLI_CALL"
      diag "natpeer-cli $cli_args call $js_peer js.hello -> rc=$rc stdout=$got"; diag "$(tail -n 5 "$T/np/cli.err")"
    fi
  fi
}

case $mode in
  self) self_test ;;
  natpeer) natpeer_cases ;;
  all) self_test; natpeer_cases ;;
esac
echo "1..$n"
[ $failures -eq 0 ]
