#!/bin/sh
# The bench plugin and the natpeer bench client work together (functional
# check only; the numbers are tests/bench's business, never asserted here).
. "$(dirname "$0")/lib.sh"
CLIENT="$top_builddir/tests/bench/np_bench_client"
PLUGIN="$top_builddir/tests/bench/.libs/bench_plugin.so"
[ -x "$CLIENT" ] && [ -f "$PLUGIN" ] || skip_all "bench client or plugin not built"
mkdir -p "$T/p" "$T/d"
install_so "$PLUGIN" "$T/p/bench.so"
printf '[host]\ndata_dir = %s/d\nlisten = /ip4/127.0.0.1/udp/0/quic-v1\ncontrol = %s/c.sock\n[plugins]\ndir = %s/p\n' "$T" "$T" "$T" >"$T/h.ini"
"$HOST" --config "$T/h.ini" >"$T/out" 2>"$T/log" &
PIDS="$!"
check "host with the bench plugin starts" wait_for "$T/out" "/p2p/"
addr=$(grep -m1 /p2p/ "$T/out")
for t in "unary --count 200 --warmup 10" "unary --count 500 --concurrency 64 --warmup 10" \
         "unary --count 100 --negotiate-fully --warmup 0" \
         "bulk --bytes 8MiB --warmup-bytes 0" "handshake --count 20 --concurrency 4 --warmup 0"; do
  out=$("$CLIENT" --target "$addr" --test $t 2>&1)
  check "np_bench_client --test $t: no errors ($(echo "$out" | cut -c1-120))" \
    sh -c 'echo "$1" | grep -q "\"errors\":0,\|\"truncated\":false,\"secs\"" && ! echo "$1" | grep -q "\"errors\":[1-9]"' _ "$out"
done
finish
