#!/bin/sh
# DHT lookups against network size, natpeer and js-libp2p in the same run:
# for each N, kad_scale (natpeer, np_kad over /memory/) and js/dht.mjs
# (js-libp2p 3.3.11 with @libp2p/kad-dht 16.4.5 over @libp2p/memory), each
# N hosts in one process, bootstrapped alike (3 random earlier hosts, then
# a self-lookup, waves of at most 100), then the same number of find_peer
# lookups of random hosts and closest lookups of random keys, one at a time.
#
#   sh compare.sh [N ...]        default: 10 100 300
#   DHT_LOOKUPS=40               lookups of each kind per size
#   KAD_SCALE=path/to/kad_scale  (default: this folder's, from make)
#   NP_BENCH_OUT=dir             (default: ../results/<date>-dht-compare)
#
# Writes natpeer-N.json/.log, js-N.json/.log, host.txt and summary.md (the
# ratio table of js/compare.mjs) into the output folder.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../interop/jsdeps.sh"
bin=${KAD_SCALE:-$here/kad_scale}
[ -x "$bin" ] || { echo "compare.sh: build it first: make tests/bench/dht/kad_scale" >&2; exit 2; }
np_js_deps "$here/js" || { echo "compare.sh: js side unavailable: $NP_JS_WHY" >&2; exit 2; }
out=${NP_BENCH_OUT:-$here/../results/$(date -u +%Y%m%d)-dht-compare}
mkdir -p "$out"
L=${DHT_LOOKUPS:-40}
[ $# -gt 0 ] || set -- 10 100 300
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') x $(nproc)"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "node: $("$NP_NODE" --version)"
  echo "lookups per kind and size: $L, one at a time"
} >"$out/host.txt"
for n in "$@"; do
  echo "compare.sh: $n hosts, natpeer" >&2
  "$bin" -n "$n" -g 0 -m find,closest -c 1 -l "$L" -w 100 -j "$out/natpeer-$n.json" \
    >"$out/natpeer-$n.log" 2>&1 || echo "compare.sh: natpeer $n: exit $?" >&2
  grep 'gone' "$out/natpeer-$n.log" >&2
  echo "compare.sh: $n hosts, js-libp2p" >&2
  (cd "$here/js" && timeout 3600 "$NP_NODE" dht.mjs --nodes "$n" --lookups "$L" --conc 1 \
     --wave 100 --kind find,closest --out "$out/js-$n.json") >"$out/js-$n.log" 2>&1 ||
    echo "compare.sh: js $n: exit $?" >&2
  grep -E '^# (find|closest)' "$out/js-$n.log" >&2
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/host.txt"
"$NP_NODE" "$here/js/compare.mjs" "$out" >"$out/summary.md"
cat "$out/summary.md"
