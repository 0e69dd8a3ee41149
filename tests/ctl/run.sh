#!/bin/sh
# p2pd control-socket tests (ctl.test.mjs, @libp2p/daemon-client). Prints TAP.
#
#   sh run.sh                NP_CONTROL and NP_CONTROL2 name two running daemons
#                            (natpeer's control addresses); without them: 1..0 # SKIP
#   sh run.sh --reference    starts two reference js daemons (ref-daemons.mjs:
#                            js-libp2p + @libp2p/daemon-server) and tests them
#   sh run.sh --js-peer      NP_CONTROL is the daemon under test (natpeer); the
#                            remote NP_CONTROL2 is a reference js daemon started here
#   sh run.sh --natpeer      starts two natpeer-hosts (NATPEER_HOST) and tests them,
#                            and two more DHT servers, the second bootstrapped
#                            from the first, for dht.test.mjs
#   sh run.sh --natpeer-js   starts one natpeer-host (under test) and one reference
#                            js daemon (the remote)
#
# Without an argument: NP_CONTROL + NP_CONTROL2 if set, else --natpeer when
# NATPEER_HOST is set (under automake it defaults to
# $top_builddir/host/natpeer-host), else 1..0 # SKIP. NP_CTL_MODE
# (reference|js-peer|natpeer|natpeer-js) picks a mode instead.
# Env: NP_CTL_TRANSPORT=quic|tcp (reference daemons' libp2p transport; default
# quic, the only one natpeer speaks), NP_CTL_CONTROL=unix|tcp (their control
# sockets; default unix). Exit: 0 ok or skipped, 1 a test failed, 99 no deps.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../interop/jsdeps.sh"

: "${NATPEER_HOST:=${top_builddir:+$top_builddir/host/natpeer-host}}"
mode=env
arg=${1:-}
[ -n "$arg" ] || arg=${NP_CTL_MODE:+--$NP_CTL_MODE}
if [ -z "$arg" ] && { [ -z "${NP_CONTROL:-}" ] || [ -z "${NP_CONTROL2:-}" ]; } && [ -n "${NATPEER_HOST:-}" ]; then
  arg=--natpeer
fi
case $arg in
  --reference) mode=reference ;;
  --js-peer) mode=js-peer ;;
  --natpeer) mode=natpeer ;;
  --natpeer-js) mode=natpeer-js ;;
  "") ;;
  *) echo "usage: $0 [--reference|--js-peer|--natpeer|--natpeer-js]" >&2; exit 2 ;;
esac
if [ "$mode" = env ] && { [ -z "${NP_CONTROL:-}" ] || [ -z "${NP_CONTROL2:-}" ]; }; then
  echo "1..0 # SKIP NP_CONTROL and NP_CONTROL2 are not set (run.sh --reference tests the js reference daemons)"
  exit 0
fi
if [ "$mode" = js-peer ] && [ -z "${NP_CONTROL:-}" ]; then
  echo "1..0 # SKIP NP_CONTROL is not set"
  exit 0
fi
case $mode in natpeer*)
  if [ -z "${NATPEER_HOST:-}" ] || [ ! -x "$NATPEER_HOST" ]; then
    echo "1..0 # SKIP NATPEER_HOST (${NATPEER_HOST:-unset}) is not an executable"; exit 0
  fi ;;
esac
np_js_deps_or_exit "$here"

T=$(mktemp -d "${TMPDIR:-/tmp}/np-ctl-XXXXXX") || exit 99
PIDS=
cleanup() {
  for p in $PIDS; do kill -TERM "$p" 2>/dev/null; done
  for p in $PIDS; do
    i=0
    while kill -0 "$p" 2>/dev/null && [ $i -lt 30 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL "$p" 2>/dev/null
  done
  if [ "${NP_CTL_KEEP_LOGS:-0}" = 1 ]; then echo "# logs kept in $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# start_ref COUNT: reference daemons; exports their control addresses
start_ref() {
  "$NP_NODE" "$here/ref-daemons.mjs" --count "$1" --dir "$T" --max-lifetime 300 \
    --transport "${NP_CTL_TRANSPORT:-quic}" --control "${NP_CTL_CONTROL:-unix}" >"$T/ref.out" 2>"$T/ref.err" &
  REF_PID=$!
  PIDS="$PIDS $REF_PID"
  i=0
  while ! grep -q '^READY$' "$T/ref.out" 2>/dev/null; do
    if [ $i -ge 300 ] || ! kill -0 "$REF_PID" 2>/dev/null; then
      echo "Bail out! reference daemons did not start: $(tail -n 3 "$T/ref.err" | tr '\n' ' ')"
      exit 99
    fi
    sleep 0.05; i=$((i + 1))
  done
}

# start_natpeer NAME [BOOTSTRAP]: a natpeer-host (QUIC on loopback, unix
# control socket, no plugins, a DHT server, bootstrapping from the multiaddr
# BOOTSTRAP if given); sets NP_CTL_ADDR to the control address and NP_P2P_ADDR
# to its first /p2p/ address, from its banner
start_natpeer() {
  mkdir -p "$T/$1/data" "$T/$1/plugins"
  printf '[host]\ndata_dir = %s\nlisten = /ip4/127.0.0.1/udp/0/quic-v1\ncontrol = %s\nlog_level = debug\n[plugins]\ndir = %s\n[dht]\nmode = server\n' \
    "$T/$1/data" "$T/$1/ctl.sock" "$T/$1/plugins" >"$T/$1/natpeer.ini"
  [ -n "${2:-}" ] && printf '[bootstrap]\npeers = %s\n' "$2" >>"$T/$1/natpeer.ini"
  "$NATPEER_HOST" --config "$T/$1/natpeer.ini" >"$T/$1/out" 2>"$T/$1/log" &
  PIDS="$PIDS $!"
  i=0
  while ! grep -q '^Control socket: ' "$T/$1/out" 2>/dev/null; do
    if [ $i -ge 200 ]; then
      echo "Bail out! natpeer-host $1 printed no 'Control socket:' line in 10 s: $(tail -n 3 "$T/$1/log" | tr '\n' ' ')"
      exit 99
    fi
    sleep 0.05; i=$((i + 1))
  done
  NP_CTL_ADDR=$(sed -n 's/^Control socket: //p' "$T/$1/out")
  NP_P2P_ADDR=$(grep -m1 '/p2p/' "$T/$1/out")
}

case $mode in
  natpeer)
    start_natpeer np1; NP_CONTROL=$NP_CTL_ADDR
    start_natpeer np2; NP_CONTROL2=$NP_CTL_ADDR
    echo "# two natpeer-hosts: $NP_CONTROL, $NP_CONTROL2 (NP_CTL_KEEP_LOGS=1 keeps their logs)"
    # dht.test.mjs: two more, the second bootstrapping from the first
    start_natpeer dht1; NP_DHT_CONTROL=$NP_CTL_ADDR
    start_natpeer dht2 "$NP_P2P_ADDR"; NP_DHT_CONTROL2=$NP_CTL_ADDR
    export NP_DHT_CONTROL NP_DHT_CONTROL2
    echo "# DHT hosts: $NP_DHT_CONTROL, $NP_DHT_CONTROL2 ([bootstrap] peers = the first)"
    ;;
  natpeer-js)
    start_natpeer np1; NP_CONTROL=$NP_CTL_ADDR
    start_ref 1
    NP_CONTROL2=$(sed -n 's/^NP_CONTROL=//p' "$T/ref.out")
    echo "# natpeer-host $NP_CONTROL under test; remote: reference js daemon $NP_CONTROL2"
    ;;
  reference)
    start_ref 2
    NP_CONTROL=$(sed -n 's/^NP_CONTROL=//p' "$T/ref.out")
    NP_CONTROL2=$(sed -n 's/^NP_CONTROL2=//p' "$T/ref.out")
    echo "# reference daemons: js-libp2p $(sed -n 's/.*"version": "\(.*\)".*/\1/p' "$here/node_modules/libp2p/package.json") + @libp2p/daemon-server, ${NP_CTL_TRANSPORT:-quic}, control ${NP_CTL_CONTROL:-unix}"
    ;;
  js-peer)
    start_ref 1
    NP_CONTROL2=$(sed -n 's/^NP_CONTROL=//p' "$T/ref.out")
    echo "# daemon under test: $NP_CONTROL; remote: reference js daemon $NP_CONTROL2"
    ;;
esac
export NP_CONTROL NP_CONTROL2

# node --test's own TAP (subtests indented, YAML diagnostics) is valid TAP 13;
# the summary lines it ends with are comments. 120 s cap for the whole file.
# dht.test.mjs needs two natpeer DHT daemons, the second bootstrapped from
# the first: natpeer mode starts them, else NP_DHT_CONTROL/NP_DHT_CONTROL2.
files=ctl.test.mjs
if [ -n "${NP_DHT_CONTROL:-}" ] && [ -n "${NP_DHT_CONTROL2:-}" ]; then files="$files dht.test.mjs"; fi
cd "$here" || exit 99
timeout -k 5 120 "$NP_NODE" --test --test-concurrency=1 --test-force-exit --test-reporter=tap --test-timeout=60000 $files
rc=$?
[ $rc -eq 124 ] && echo "Bail out! $files did not finish in 120 s"
exit $rc
