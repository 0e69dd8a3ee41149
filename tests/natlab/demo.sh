#!/bin/sh
# make demo: issue 10's scenario, narrated. As root it runs in the NAT lab
# (tests/natlab/scenario.sh with NATLAB_DEMO=1: real MASQUERADE NATs in
# network namespaces); as another user, a loopback version: one public
# relay host and two hosts told they are private ([nat] reachability =
# private), where the "hole punch" is DCUtR over loopback (no NAT to
# cross). Either way it prints each step: bootstrap, reachability,
# reservation, punch, the reply.
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}
export top_srcdir top_builddir
if [ "$(id -u)" -eq 0 ] && command -v ip >/dev/null 2>&1; then
  echo "== natpeer demo: the NAT lab (root): 4 public hosts, 2 private hosts behind 2 MASQUERADE NATs"
  NATLAB_DEMO=1 sh "$top_srcdir/tests/natlab/scenario.sh" |
    sed -n 's/^# step: /== /p; s/^not ok/FAILED:/p; s/^Bail out!/FAILED:/p'
  exit 0
fi

echo "== natpeer demo on loopback (not root: no network namespaces, no NAT to cross)"
HOST="$top_builddir/host/natpeer-host"
CLI="$top_builddir/host/natpeer-cli"
T=$(mktemp -d /tmp/natpeer-demo.XXXXXX)
PIDS=""
trap 'for p in $PIDS; do kill $p 2>/dev/null; done; wait 2>/dev/null; rm -rf "$T"' EXIT INT TERM
mkdir -p "$T/plugins"
cp "$top_builddir/plugins/.libs/hello.so" "$T/plugins/" 2>/dev/null ||
  cp "$top_builddir/plugins/hello.so" "$T/plugins/" || exit 1
start() { # start NAME PORT EXTRA
  mkdir -p "$T/$1"
  cat >"$T/$1/host.ini" <<INI
[host]
data_dir = $T/$1
listen = /ip4/127.0.0.1/udp/$2/quic-v1
control = $T/$1/ctl.sock
[plugins]
dir = $T/plugins
autoload = no
$3
INI
  "$HOST" --config "$T/$1/host.ini" >"$T/$1/out" 2>"$T/$1/log" </dev/null &
  PIDS="$PIDS $!"
}
waitfor() { # waitfor FILE PATTERN SECS
  i=0
  while [ $i -lt $(($3 * 10)) ]; do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
    i=$((i + 1))
  done
  echo "FAILED: no \"$2\" in $1 after $3 s"; tail -n 5 "$1"; exit 1
}
port=$((20000 + $$ % 20000))
start relay "$port" "[dht]
mode = server
[nat]
reachability = public
[relay]
service = on"
waitfor "$T/relay/out" "/quic-v1/p2p/" 10
relay=$(grep -m1 /quic-v1/p2p/ "$T/relay/out")
echo "== bootstrap: relay and DHT server up at $relay"
start a $((port + 1)) "[bootstrap]
peers = $relay
[nat]
reachability = private
[relay]
client = on
[plugins]
load = $T/plugins/hello.so
[plugin.hello]
protocol = handler_name"
start b $((port + 2)) "[bootstrap]
peers = $relay
[nat]
reachability = private
[relay]
client = on"
waitfor "$T/a/out" "Peer ID:" 10
waitfor "$T/b/out" "Peer ID:" 10
a=$(sed -n 's/^Peer ID: //p' "$T/a/out")
echo "== reachability: host A ($a) and host B are private (configured: no NAT on loopback)"
waitfor "$T/a/log" "relay reservation-ok" 20
echo "== reservation: $(grep -m1 "relay reservation-ok" "$T/a/log" | sed 's/^.*relay reservation-ok/A holds a slot on the relay:/')"
"$CLI" --control "$T/a/ctl.sock" id | grep p2p-circuit | sed 's/^/   A announces /'
echo "== call: B calls handler_name on A by peer ID alone"
out=$("$CLI" --control "$T/b/ctl.sock" --timeout 30 call -v "$a" handler_name 2>"$T/call.err")
sed 's/^/   /' "$T/call.err"
echo "== reply: $out"
"$CLI" --control "$T/b/ctl.sock" peers | sed 's/^/   /'
[ "$out" = "Hello, World!" ]
