#!/bin/sh
# As js_ctl.sh, with a reference js daemon (@libp2p/daemon-server over
# js-libp2p QUIC) as the remote peer of the natpeer host under test.
: "${top_builddir:?}" "${top_srcdir:?}"
NATPEER_HOST=$top_builddir/host/natpeer-host
export NATPEER_HOST
exec sh "$top_srcdir/tests/ctl/run.sh" --natpeer-js
