#!/bin/sh
# natpeer-host running an RSA (hivemind's PKCS#1 file), secp256k1 or ECDSA
# P-256 host key (tests/fixtures/keys, peer IDs computed by keys.py with
# python3-cryptography) is dialed by js-libp2p over TCP + Noise + yamux and
# over QUIC-v1 + libp2p TLS. js checks the handshake against the expected
# peer ID (it is in the dialed /p2p/ address), identifies natpeer, verifies
# its signed peer record and pings it. TAP output.
#
#   NATPEER_HOST=$top_builddir/host/natpeer-host sh tests/interop/hostkeys.sh
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
KEYS=$HERE/../fixtures/keys
. "$HERE/jsdeps.sh"
N=0
FAILS=0
ok() { N=$((N + 1)); echo "ok $N - $1"; }
notok() { N=$((N + 1)); FAILS=$((FAILS + 1)); echo "not ok $N - $1"; }
diag() { printf '%s\n' "$@" | sed 's/^/# /'; }

if [ -z "${NATPEER_HOST:-}" ] || [ ! -x "$NATPEER_HOST" ]; then
  echo "1..0 # SKIP NATPEER_HOST (${NATPEER_HOST:-unset}) is not an executable"; exit 0
fi
np_js_deps "$HERE"
case $? in
  0) ;;
  77) echo "1..0 # SKIP $NP_JS_WHY"; exit 0 ;;
  *) echo "Bail out! npm ci failed: $NP_JS_WHY"; exit 1 ;;
esac
T=$(mktemp -d "${TMPDIR:-/tmp}/np-hostkeys-XXXXXX")
PID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT INT TERM

for key in rsa2048 secp256k1 p256; do
  want=$(awk -v f="$key.key" '$1 == f { print $2 }' "$KEYS/expected.txt")
  mkdir -p "$T/$key"
  cp "$KEYS/$key.key" "$T/$key/identity.key" && chmod 600 "$T/$key/identity.key"
  cat >"$T/$key/natpeer.ini" <<INI
[host]
data_dir = $T/$key
identity_file = $T/$key/identity.key
listen = /ip4/127.0.0.1/udp/0/quic-v1 /ip4/127.0.0.1/tcp/0
log_level = info
[dht]
mode = off
[plugins]
autoload = no
INI
  got=$("$NATPEER_HOST" --config "$T/$key/natpeer.ini" --print-peer-id 2>"$T/$key/print.err")
  if [ "$got" = "$want" ]; then ok "$key: natpeer-host --print-peer-id is $want"
  else notok "$key: natpeer-host --print-peer-id is $want (got '$got')"; diag "$(cat "$T/$key/print.err")"; fi
  "$NATPEER_HOST" --config "$T/$key/natpeer.ini" >"$T/$key/host.out" 2>"$T/$key/host.err" &
  PID=$!
  q= t= i=0
  while [ $i -lt 100 ] && { [ -z "$q" ] || [ -z "$t" ]; } && kill -0 "$PID" 2>/dev/null; do
    q=$(grep -o '/ip4/127\.0\.0\.1/udp/[1-9][0-9]*/quic-v1' "$T/$key/host.err" | head -n 1)
    t=$(grep -o '/ip4/127\.0\.0\.1/tcp/[1-9][0-9]*' "$T/$key/host.err" | head -n 1)
    sleep 0.1; i=$((i + 1))
  done
  for tr in tcp quic; do
    if [ $tr = tcp ]; then a=$t; else a=$q; fi
    if [ -z "$a" ]; then notok "$key over $tr: natpeer-host listens"; diag "$(tail -n 5 "$T/$key/host.err")"; continue; fi
    out=$("$NP_NODE" "$HERE/peer.mjs" probe --target "$a/p2p/$want" --transport $tr --ping --timeout 10 2>&1)
    if printf '%s' "$out" | "$NP_NODE" -e '
        const j = JSON.parse(require("fs").readFileSync(0, "utf8").trim().split("\n").pop())
        process.exit(j.peer === process.argv[1] && j.signedPeerRecordSeq != null &&
                     typeof j.pingMs === "number" ? 0 : 1)' "$want" 2>/dev/null; then
      ok "$key over $tr: js-libp2p connects to $want, identifies it, its signed record verifies, ping"
    else
      notok "$key over $tr: js-libp2p connects to $want"; diag "$out" "$(tail -n 5 "$T/$key/host.err")"
    fi
  done
  kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; PID=
done
echo "1..$N"
[ $FAILS -eq 0 ]
