#!/bin/sh
# The control socket driven by @libp2p/daemon-client (npm, pinned) against
# two natpeer hosts: identify, connect, list peers, openStream + echo,
# registerStreamHandler with the remote peer opening the stream.
: "${top_builddir:?}" "${top_srcdir:?}"
NATPEER_HOST=$top_builddir/host/natpeer-host
export NATPEER_HOST
exec sh "$top_srcdir/tests/ctl/run.sh" --natpeer
