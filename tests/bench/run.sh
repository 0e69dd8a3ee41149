#!/bin/sh
# Loopback benchmarks with js/bench.mjs (see README.md). Small counts by
# default (about 1 min for QUIC + TCP); --full uses the baseline's sizes.
#
#   sh run.sh                      js server <- js client, QUIC and TCP, small counts
#   sh run.sh --full               the sizes of shared/bench/js-libp2p-baseline.md (~5 min)
#   sh run.sh --natpeer            natpeer-host (NATPEER_HOST) as the server, QUIC only
#   sh run.sh --natpeer-client     np_bench_client as the client (NATPEER_BENCH_CLIENT, default
#                                  $(dirname NATPEER_HOST)/../tests/bench/np_bench_client), QUIC only;
#                                  with --natpeer too: natpeer -> natpeer
#   sh run.sh --server-cmd 'CMD {transport}' [--label L]   any server (README contract)
#   sh run.sh --tap                also print TAP: one line per test that ran cleanly
#   sh run.sh ... -- --tests unary,handshake ...          further bench.mjs `run` flags
#
# Each bench.mjs flag also reads env BENCH_<FLAG> (--unary-count = BENCH_UNARY_COUNT);
# the small defaults below apply only to what is not set.
# Output: the Markdown table on stdout, the raw JSON in results/LABEL-DATE.json
# (or NP_BENCH_OUT), the harness log on stderr with NP_BENCH_VERBOSE=1.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../interop/jsdeps.sh"

full=0 tap=0 natpeer=0 npclient=0 label= server_cmd= client_cmd=
while [ $# -gt 0 ]; do
  case $1 in
    --full) full=1; shift ;;
    --tap) tap=1; shift ;;
    --natpeer) natpeer=1; shift ;;
    --natpeer-client) npclient=1; shift ;;
    --label) label=$2; shift 2 ;;
    --server-cmd) server_cmd=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (bench.mjs flags go after --)" >&2; exit 2 ;;
  esac
done

say_skip() { if [ $tap = 1 ]; then echo "1..0 # SKIP $*"; else echo "bench: skipped: $*" >&2; fi; exit 0; }
say_bail() { if [ $tap = 1 ]; then echo "Bail out! $*"; else echo "bench: $*" >&2; fi; exit 99; }

np_js_deps "$here/js"
case $? in 0) ;; 77) say_skip "$NP_JS_WHY" ;; *) say_bail "$NP_JS_WHY" ;; esac
if [ $natpeer = 1 ]; then
  if [ -z "${NATPEER_HOST:-}" ] || [ ! -x "$NATPEER_HOST" ]; then say_skip "NATPEER_HOST (${NATPEER_HOST:-unset}) is not an executable"; fi
  # natpeer-server.sh's fallback reads the bound address through tests/interop's p2pd client
  _node=$NP_NODE; np_js_deps "$here/../interop" || true; NP_NODE=$_node
  server_cmd="sh '$here/natpeer-server.sh' --transport {transport}"
  : "${BENCH_TRANSPORTS:=quic}"
  export BENCH_TRANSPORTS
  [ -n "$label" ] || label=natpeer
fi
if [ $npclient = 1 ]; then
  client=${NATPEER_BENCH_CLIENT:-$(dirname "${NATPEER_HOST:-.}")/../tests/bench/np_bench_client}
  [ -x "$client" ] || say_skip "no natpeer bench client at $client (set NATPEER_BENCH_CLIENT)"
  client_cmd="'$client'"
  : "${BENCH_TRANSPORTS:=quic}"
  export BENCH_TRANSPORTS
  if [ -z "$label" ]; then
    if [ $natpeer = 1 ]; then label=natpeer-natpeer; else label=natpeer-client; fi
  fi
fi
# bench.mjs re-execs itself under the pinned node unless told not to
BENCH_SYSTEM_NODE=1
export BENCH_SYSTEM_NODE

if [ $full = 0 ]; then
  : "${BENCH_REPEAT:=1}" "${BENCH_BYTES:=64MiB}" "${BENCH_UNARY_COUNT:=1000}" "${BENCH_HS_COUNT:=50}"
  : "${BENCH_CONNS:=20}" "${BENCH_IDLE_WAIT:=2}" "${BENCH_TIME_LIMIT:=20}" "${BENCH_MAX_MINUTES:=3}"
  export BENCH_REPEAT BENCH_BYTES BENCH_UNARY_COUNT BENCH_HS_COUNT BENCH_CONNS BENCH_IDLE_WAIT BENCH_TIME_LIMIT BENCH_MAX_MINUTES
else
  : "${BENCH_MAX_MINUTES:=20}"
  export BENCH_MAX_MINUTES
fi
[ -n "$label" ] || label=js
mkdir -p "$here/results"
out=${NP_BENCH_OUT:-$here/results/$label-$(date -u +%Y%m%dT%H%M%SZ).json}

T=$(mktemp -d "${TMPDIR:-/tmp}/np-bench-XXXXXX") || exit 99
BENCH_PID=
cleanup() {
  if [ -n "$BENCH_PID" ]; then
    kill -TERM "$BENCH_PID" 2>/dev/null
    i=0
    while kill -0 "$BENCH_PID" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL "$BENCH_PID" 2>/dev/null
  fi
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

set -- run --label "$label" --out "$out" "$@"
[ -n "$server_cmd" ] && set -- "$@" --server-cmd "$server_cmd"
[ -n "$client_cmd" ] && set -- "$@" --client-cmd "$client_cmd"
if [ "${NP_BENCH_VERBOSE:-0}" = 1 ]; then
  "$NP_NODE" "$here/js/bench.mjs" "$@" >"$T/stdout" &
else
  "$NP_NODE" "$here/js/bench.mjs" "$@" >"$T/stdout" 2>"$T/stderr" &
fi
BENCH_PID=$!
wait "$BENCH_PID"
rc=$?
BENCH_PID=
if [ $rc -ne 0 ] || [ ! -s "$out" ]; then
  [ -f "$T/stderr" ] && tail -n 20 "$T/stderr" >&2
  say_bail "bench.mjs run exited $rc"
fi

if [ $tap = 0 ]; then
  grep -v '^{' "$T/stdout"
  echo "bench: raw results in $out" >&2
  exit 0
fi
# TAP: a test passes when its client ran, had no errors and was not cut short
"$NP_NODE" -e '
const doc = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))
let n = 0, bad = 0
for (const run of doc.runs) {
  for (const [key, r] of Object.entries(run.results)) {
    if (key === "server") continue
    const why = r.error ?? (r.errors > 0 ? `${r.errors} errors, first: ${r.first_error}` : r.truncated ? "hit its time limit" : null)
    const m = r.MBps != null ? `${r.MBps} MB/s` : r.calls_per_s != null ? `${r.calls_per_s} calls/s, p50 ${r.p50_us} us` : r.per_s != null ? `${r.per_s}/s, p50 ${r.p50_ms} ms` : r.conns != null ? `${r.conns} conns, server ${r.server_rss_per_conn_kib} KiB/conn` : ""
    n++
    if (why == null) console.log(`ok ${n} - ${doc.params.label} ${run.transport} ${key} rep ${run.rep}: ${m}`)
    else { bad++; console.log(`not ok ${n} - ${doc.params.label} ${run.transport} ${key} rep ${run.rep}: ${why}`) }
  }
}
console.log(`1..${n}`)
process.exit(bad === 0 ? 0 : 1)' "$out"
rc=$?
grep -v '^{' "$T/stdout" | sed 's/^/# /'
exit $rc
