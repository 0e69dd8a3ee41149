#!/bin/sh
# natpeer-host running an RSA (hivemind's 2048-bit PKCS#1 file), secp256k1
# or ECDSA P-256 host key (tests/fixtures/keys; the peer IDs there were
# computed by keys.py with python3-cryptography) is dialed by js-libp2p
# over TCP + Noise + yamux and over QUIC-v1 + libp2p TLS. js checks the
# handshake against the expected peer ID (the /p2p/ part of the dialed
# address), identifies natpeer, verifies its signed peer record and pings.
# TAP. About 10 s.
#
# ECDSA: js-libp2p (@libp2p/crypto 5.x, js-libp2p#3059) encodes ECDSA public
# keys as an RFC 4210 "PKI message", not the PKIX SubjectPublicKeyInfo of
# the peer-ids spec and go-libp2p, and cannot parse the spec's own ECDSA
# vector; the script checks that first and then marks the P-256 cases TODO.
#
# By hand: top_srcdir=. top_builddir=. sh tests/integration/js_hostkeys.sh
: "${top_builddir:?}" "${top_srcdir:?}"
set -u
here=$top_srcdir/tests/interop
KEYS=$top_srcdir/tests/fixtures/keys
HOST=$top_builddir/host/natpeer-host
if [ ! -x "$HOST" ]; then
  echo "Bail out! $HOST is not built"
  exit 99
fi
. "$here/jsdeps.sh"
np_js_deps_or_exit "$here"

N=0
FAILS=0
ok() { N=$((N + 1)); echo "ok $N - $1"; }
notok() { N=$((N + 1)); case $1 in *"# TODO"*) ;; *) FAILS=$((FAILS + 1)) ;; esac; echo "not ok $N - $1"; }
diag() { printf '%s\n' "$@" | sed 's/^/# /'; }
T=$(mktemp -d "${TMPDIR:-/tmp}/np-hostkeys-XXXXXX") || exit 99
PID=
cleanup() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; fi
  rm -rf "$T"
}
trap cleanup EXIT INT TERM

# Can this js-libp2p read a spec-form ECDSA PublicKey (peer-ids.md vector)?
cat >"$here/.np-ecdsa-probe.mjs" <<'JS'
import { publicKeyFromProtobuf } from '@libp2p/crypto/keys'
try {
  publicKeyFromProtobuf(Buffer.from('0803125b3059301306072a8648ce3d020106082a8648ce3d03010703420004de3d300fa36ae0e8f5d530899d83abab44abf3161f162a4bc901d8e6ecda020e8b6d5f8da30525e71d6851510c098e5c47c646a597fb4dcec034e9f77c409e62', 'hex'))
  console.log('ok')
} catch (e) { console.log(e.message) }
JS
js_ecdsa=$("$NP_NODE" "$here/.np-ecdsa-probe.mjs" 2>&1)
rm -f "$here/.np-ecdsa-probe.mjs"

for key in rsa2048 secp256k1 p256; do
  todo=
  if [ $key = p256 ] && [ "$js_ecdsa" != ok ]; then
    todo=" # TODO js-libp2p cannot parse the peer-ids spec's ECDSA PublicKey ($js_ecdsa)"
  fi
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
  got=$("$HOST" --config "$T/$key/natpeer.ini" --print-peer-id 2>"$T/$key/print.err")
  if [ "$got" = "$want" ]; then ok "$key: natpeer-host --print-peer-id is $want"
  else notok "$key: natpeer-host --print-peer-id is $want (got '$got')"; diag "$(cat "$T/$key/print.err")"; fi
  "$HOST" --config "$T/$key/natpeer.ini" >"$T/$key/host.out" 2>"$T/$key/host.err" &
  PID=$!
  q= t= i=0
  while [ $i -lt 100 ] && { [ -z "$q" ] || [ -z "$t" ]; } && kill -0 "$PID" 2>/dev/null; do
    q=$(grep -o '/ip4/127\.0\.0\.1/udp/[1-9][0-9]*/quic-v1' "$T/$key/host.err" | head -n 1)
    t=$(grep -o '/ip4/127\.0\.0\.1/tcp/[1-9][0-9]*' "$T/$key/host.err" | head -n 1)
    sleep 0.1; i=$((i + 1))
  done
  for tr in tcp quic; do
    if [ $tr = tcp ]; then a=$t; else a=$q; fi
    # QUIC: the certificate is checked in @chainsafe/libp2p-quic's Rust code
    # (it answers UnknownIssuer for an ECDSA host key; natpeer's own TLS
    # peer accepts it, test_hostkeys), and identify then needs the js parser.
    [ -n "$todo" ] && [ $tr = quic ] && todo=" # TODO js-libp2p's QUIC binding refuses ECDSA host-key certificates, and js-libp2p cannot parse the spec's ECDSA PublicKey ($js_ecdsa)"
    if [ -z "$a" ]; then notok "$key over $tr: natpeer-host listens"; diag "$(tail -n 5 "$T/$key/host.err")"; continue; fi
    out=$("$NP_NODE" "$here/peer.mjs" probe --target "$a/p2p/$want" --transport $tr --ping --timeout 10 2>&1)
    if printf '%s' "$out" | "$NP_NODE" -e '
        const j = JSON.parse(require("fs").readFileSync(0, "utf8").trim().split("\n").pop())
        process.exit(j.peer === process.argv[1] && j.signedPeerRecordSeq != null &&
                     typeof j.pingMs === "number" ? 0 : 1)' "$want" 2>/dev/null; then
      ok "$key over $tr: js-libp2p connects to $want, identifies it, verifies its signed record, pings$todo"
    else
      notok "$key over $tr: js-libp2p connects to $want, identifies it, verifies its signed record, pings$todo"
      diag "$out"
    fi
  done
  kill "$PID" 2>/dev/null; wait "$PID"; rc=$?; PID=
  if [ $rc -eq 0 ] && ! grep -q 'Sanitizer\|runtime error' "$T/$key/host.err"; then
    ok "$key: natpeer-host exits 0 on SIGTERM, no sanitizer report"
  else
    notok "$key: natpeer-host exits 0 on SIGTERM, no sanitizer report (exit $rc)"
    diag "$(grep -A5 'Sanitizer\|runtime error' "$T/$key/host.err" | head -n 20)"
  fi
done
echo "1..$N"
[ $FAILS -eq 0 ]
