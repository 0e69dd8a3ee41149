#!/bin/sh
# iperf3 over loopback in the same run as the libp2p benches: the ceiling a
# TCP (or UDP) transport could reach on this machine.
#
#   sh iperf3.sh [--udp] [--seconds 5] [--streams 1]
# Prints one JSON line: {"tool":"iperf3","proto":"tcp","streams":1,
#   "seconds":5,"MBps":…,"Gbps":…}. Exit 77 when iperf3 is missing.
set -u
proto=tcp secs=5 streams=1
while [ $# -gt 0 ]; do
  case $1 in
    --udp) proto=udp; shift ;;
    --seconds) secs=$2; shift 2 ;;
    --streams) streams=$2; shift 2 ;;
    *) echo "iperf3.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
command -v iperf3 >/dev/null 2>&1 || { echo "iperf3.sh: iperf3 not installed" >&2; exit 77; }
T=$(mktemp -d "${TMPDIR:-/tmp}/np-iperf-XXXXXX") || exit 1
SRV=
cleanup() { [ -n "$SRV" ] && kill "$SRV" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
# a free port: bind-and-release through python is not available everywhere;
# try a few in the dynamic range
for port in 50201 50203 50207 50211 50221; do
  iperf3 -s -1 -p $port >"$T/srv.log" 2>&1 &
  SRV=$!
  sleep 0.3
  kill -0 "$SRV" 2>/dev/null && break
  SRV=
done
[ -n "$SRV" ] || { echo "iperf3.sh: no server port" >&2; exit 1; }
if [ $proto = udp ]; then
  iperf3 -c 127.0.0.1 -p "$port" -u -b 0 -l 1400 -t "$secs" -P "$streams" -J >"$T/c.json" 2>&1
else
  iperf3 -c 127.0.0.1 -p "$port" -t "$secs" -P "$streams" -J >"$T/c.json" 2>&1
fi
rc=$?
[ $rc -eq 0 ] || { cat "$T/c.json" >&2; exit 1; }
bps=$(tr -d '\n\t ' <"$T/c.json" | grep -o '"sum_received":{[^}]*}' | grep -o '"bits_per_second":[0-9.e+]*' | head -n 1 | cut -d: -f2)
[ -n "$bps" ] || bps=$(tr -d '\n\t ' <"$T/c.json" | grep -o '"sum":{[^}]*}' | tail -n 1 | grep -o '"bits_per_second":[0-9.e+]*' | cut -d: -f2)
awk -v b="$bps" -v p="$proto" -v s="$secs" -v n="$streams" 'BEGIN {
  printf "{\"tool\":\"iperf3\",\"proto\":\"%s\",\"streams\":%d,\"seconds\":%d,\"MBps\":%.1f,\"Gbps\":%.3f}\n", p, n, s, b / 8e6, b / 1e9 }'
