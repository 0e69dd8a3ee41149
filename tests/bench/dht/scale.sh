#!/bin/sh
# The DHT at scale (kad_scale.c): N in-process hosts over /memory/, 0 %, 10 %
# and 30 % gone without notice, random find_peer lookups of live hosts.
#
#   sh scale.sh [N ...]         default: 1000 10000
#   KAD_SCALE=path/to/kad_scale  (default: $top_builddir/tests/bench/dht/kad_scale)
#   KAD_SCALE_ARGS='-l 200 -c 25 -b 3'   passed to every run
#   NP_BENCH_OUT=dir            (default: ../results/<date>-dht-scale)
#
# Writes N<n>.json (kad_scale -j), N<n>.log (its text) and host.txt (the
# machine) into the output folder. One run at a time: 10,000 hosts take a
# few GB and every core they can get.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=${KAD_SCALE:-$here/kad_scale}
[ -x "$bin" ] || { echo "scale.sh: build it first: make tests/bench/dht/kad_scale" >&2; exit 2; }
out=${NP_BENCH_OUT:-$here/../results/$(date -u +%Y%m%d)-dht-scale}
mkdir -p "$out"
[ $# -gt 0 ] || set -- 1000 10000
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') x $(nproc)"
  echo "memory: $(awk '/MemTotal/ {printf "%.1f GB", $2/1048576}' /proc/meminfo)"
  echo "args: ${KAD_SCALE_ARGS:-}"
} >"$out/host.txt"
for n in "$@"; do
  echo "scale.sh: $n hosts" >&2
  # shellcheck disable=SC2086
  /usr/bin/time -v "$bin" -n "$n" -j "$out/N$n.json" ${KAD_SCALE_ARGS:-} \
    >"$out/N$n.log" 2>"$out/N$n.time" || echo "scale.sh: $n hosts: exit $?" >&2
  grep '^#' "$out/N$n.log" >&2 || true
  grep -E 'Maximum resident|Elapsed|User time|System time' "$out/N$n.time" >&2 || true
done
