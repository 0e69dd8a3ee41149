#!/bin/sh
# One circuit's throughput through a relay in the NAT lab: a js private host
# on private-1 (NAT A) holds a reservation on the relay on public-1, a js
# caller on private-2 (NAT B) sends BYTES over one stream of the relayed
# connection (natpeer-js.mjs caller --bulk). NAT A = NAT B = apdf, 20 ms one
# way on the internet links (DELAY_MS to change). Prints TAP and a summary
# line; appends it to tests/natlab/results/relay-throughput-<UTC date>.md.
#
#   sh tests/natlab/js_throughput.sh [BYTES] [RUNS]    (default 8 MiB, 3 runs)
#
# MATRIX_RELAY=js (default; the js relay runs with --unlimited, since js's
# default circuit limit is 128 KiB) or another launcher's relay
# (MATRIX_LAUNCHERS, see jslib.sh), which must not limit the circuit either.
: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
export top_srcdir top_builddir
. "$top_srcdir/tests/natlab/lib.sh"
. "$top_srcdir/tests/natlab/jslib.sh"
BYTES=${1:-8388608}
RUNS=${2:-3}
: "${MATRIX_RELAY:=js}"
: "${DELAY_MS:=20}"
: "${MATRIX_OUT:=$top_srcdir/tests/natlab/results}"
for f in ${MATRIX_LAUNCHERS:-}; do . "$f"; done
js_deps
watchdog $((60 + RUNS * 150))

lab_setup apdf apdf || bail "lab setup failed: $(tail -n 3 "$T/natlab.log")"
lab impair internet "$DELAY_MS" >>"$T/natlab.log" 2>&1 || bail "impair failed"
JS_RELAY_ARGS=--unlimited
need "$MATRIX_RELAY relay starts on public-1" "${MATRIX_RELAY}_relay" relay public-1
need "js private host on private-1 gets a reservation" js_private callee private-1 "$RELAY_MA"

rates=""
i=1
while [ "$i" -le "$RUNS" ]; do
  js_run caller private-2 caller --relay "$RELAY_MA" --target "$PRIVATE_ID" --bulk "$BYTES"
  wait_for "$T/caller.out" '"event":"result"' 140 >/dev/null 2>&1
  res=$(grep -m1 '"event":"result"' "$T/caller.out")
  js_stop caller
  echo "# run $i: $(echo "$res" | grep -o '"bulk.*' | cut -c1-200)"
  r=$(echo "$res" | sed -n 's/.*"bulkMbitps":\([0-9.]*\).*/\1/p')
  check "run $i: all $BYTES bytes arrived through the $MATRIX_RELAY relay" \
    grep -q "\"bulkBytes\":$BYTES," "$T/caller.out"
  [ -n "$r" ] && rates="$rates $r"
  i=$((i + 1))
done
js_stop callee
"${MATRIX_RELAY}_stop" relay

med=$(echo "$rates" | tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {if (NR == 0) print "-"; else if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}')
line="| $(date -u +%Y-%m-%dT%H:%MZ) | $MATRIX_RELAY | js -> js | $BYTES | $RUNS | ${DELAY_MS} ms | $med |$(echo "$rates" | sed 's/ / /g') |"
echo "# one circuit through the $MATRIX_RELAY relay: median $med Mbit/s (runs:$rates)"
mkdir -p "$MATRIX_OUT"
out=$MATRIX_OUT/relay-throughput-$(date -u +%Y%m%d).md
[ -f "$out" ] || printf '%s\n%s\n' "| when (UTC) | relay | ends | bytes | runs | one-way delay | median Mbit/s | each run |" "|---|---|---|---|---|---|---|---|" >"$out"
echo "$line" >>"$out"
finish
