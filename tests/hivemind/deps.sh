#!/bin/sh
# Installs the Debian packages tests/hivemind/run.sh needs (root, apt-get; no PyPI).
# run.sh calls it by itself only under CI=true; otherwise run it by hand.
set -u
pkgs="python3-pytest python3-pytest-asyncio python3-pytest-timeout python3-protobuf
python3-cryptography python3-base58 python3-msgpack python3-numpy python3-netaddr
python3-idna python3-uvloop python3-psutil protobuf-compiler"
[ "$(id -u)" -eq 0 ] || { echo "deps.sh: needs root (apt-get install $pkgs)" >&2; exit 1; }
command -v apt-get >/dev/null 2>&1 || { echo "deps.sh: no apt-get" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086
timeout 600 apt-get install -y -q $pkgs >/dev/null 2>&1 ||
  { timeout 300 apt-get update -q >/dev/null 2>&1 &&
    timeout 600 apt-get install -y -q $pkgs >/dev/null 2>&1; }
