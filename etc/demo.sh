#!/bin/sh
# make demo: two natpeer hosts on loopback; the second calls the first's
# `hello` handler over QUIC (libp2p TLS, multistream-select, unary call)
# with natpeer-cli and prints the reply. Everything stops on exit.
set -u
B=${1:?builddir}
S=${2:?srcdir}
D=$B/demo-run
HOST=$B/host/natpeer-host
CLI=$B/host/natpeer-cli
rm -rf "$D"; mkdir -p "$D"
pids=""
trap 'for p in $pids; do kill $p 2>/dev/null; done; wait 2>/dev/null' EXIT INT TERM

start() { # start NAME
  mkdir -p "$D/$1"
  sed -e "s|@DEMO_DIR@|$D/$1|g" -e "s|@PLUGIN_DIR@|$B/plugins/.libs|g" \
    "$S/etc/demo.ini.in" >"$D/$1/natpeer.ini"
  "$HOST" --config "$D/$1/natpeer.ini" >"$D/$1/banner" 2>"$D/$1/log" &
  pids="$pids $!"
  i=0
  while ! grep -q '/p2p/' "$D/$1/banner" 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt 100 ]; then echo "demo: host $1 did not start:"; cat "$D/$1/log"; exit 1; fi
    sleep 0.05
  done
}

start first
start second
first_addr=$(grep -m1 '/quic-v1/p2p/' "$D/first/banner")
first_id=$(sed -n 's/^Peer ID: //p' "$D/first/banner")
echo "== first host:  $first_addr"
echo "== second host: $(grep -m1 '/quic-v1/p2p/' "$D/second/banner")"
echo "== second: natpeer-cli connect <first> && natpeer-cli call $first_id hello"
"$CLI" --control "$D/second/control.sock" connect "$first_addr" >/dev/null || exit 1
reply=$("$CLI" --control "$D/second/control.sock" call "$first_id" hello) || exit 1
echo "== reply over QUIC: $reply"
"$CLI" --control "$D/second/control.sock" peers
[ "$reply" = "Hello, World!" ]
