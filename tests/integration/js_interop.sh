#!/bin/sh
# natpeer <-> js-libp2p (+ @chainsafe/libp2p-quic, rust-libp2p inside) over
# QUIC on loopback: identify, ping and unary calls both ways. The js peer
# and its pinned dependencies come from npm (tests/interop/package-lock.json).
: "${top_builddir:?}" "${top_srcdir:?}"
NATPEER_HOST=$top_builddir/host/natpeer-host
NATPEER_CLI=$top_builddir/host/natpeer-cli
NATPEER_PLUGIN_DIR=$top_builddir/plugins/.libs
export NATPEER_HOST NATPEER_CLI NATPEER_PLUGIN_DIR
exec sh "$top_srcdir/tests/interop/run.sh"
