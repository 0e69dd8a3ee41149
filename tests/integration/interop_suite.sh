#!/bin/sh
# The libp2p implementations' conformance suite, @libp2p/interop (npm), with
# natpeer as its "go" daemon and an in-process js-libp2p as "js": groups
# connect, streams (echo), relay and dht (pubsub: natpeer has none). The
# runner is tests/interop/daemon/interop.spec.mjs under mocha; TAP out.
#
# natpeer is started as natpeer-p2pd with the go-libp2p-daemon flags the
# suite's options map to; without a natpeer-p2pd in the build, as
# natpeer-host with an INI made from the same options.
#
# Cases natpeer is known not to pass are not run: the table `known` below
# lists each (a mocha --grep pattern on "<describe> <it>") with the reason,
# and every one is printed as a TAP comment. NP_INTEROP_SUITE_ALL=1 runs
# them too (what the closing notes count).
#
# The js side and its pinned dependencies come from npm
# (tests/interop/package-lock.json; `npm ci` on demand, see jsdeps.sh):
# without npm or a node >= 22 the whole file is skipped.
#
# By hand: top_srcdir=$PWD top_builddir=$PWD sh tests/integration/interop_suite.sh
# Env: NP_INTEROP_GROUPS=connect,streams,relay,dht (default all),
#      NP_INTEROP_GREP=REGEX (only those cases), KEEP=1 (keep natpeer logs),
#      NATPEER_P2PD / NATPEER_HOST (the binaries), NP_INTEROP_REPORTER (a mocha reporter; default daemon/tap-reporter.cjs).
: "${top_builddir:?}" "${top_srcdir:?}"
set -u
here=$top_srcdir/tests/interop
. "$here/jsdeps.sh"
np_js_deps_or_exit "$here"

: "${NATPEER_P2PD:=$top_builddir/host/natpeer-p2pd}"
: "${NATPEER_HOST:=$top_builddir/host/natpeer-host}"
if [ -x "$NATPEER_P2PD" ]; then
  NATPEER_HOST=
  mode=p2pd
elif [ -x "$NATPEER_HOST" ]; then
  NATPEER_P2PD=
  mode=host
else
  echo "1..0 # SKIP neither $NATPEER_P2PD nor $NATPEER_HOST is built"
  exit 0
fi
export NATPEER_P2PD NATPEER_HOST

# known: PATTERN<TAB>REASON, for natpeer as built in this tree
TAB=$(printf '\t')
known() {
  _np='(js sender to go|go sender to js) listener'
  printf '%s\t%s\n' \
    "^[a-z0-9]+/plaintext/[a-z]+ echo $_np" 'natpeer has no /plaintext/2.0.0 (natpeer-p2pd -plaintext=true exits with an error; natpeer-host offers Noise and TLS only)'
}

T=$(mktemp -d "${TMPDIR:-/tmp}/np-interop-suite-XXXXXX") || exit 99
cleanup() {
  if [ "${KEEP:-0}" = 1 ]; then echo "# kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

set -- --exit --timeout 30000 --reporter "${NP_INTEROP_REPORTER:-./daemon/tap-reporter.cjs}"
if [ -n "${NP_INTEROP_GREP:-}" ]; then
  set -- "$@" --grep "$NP_INTEROP_GREP"
elif [ "${NP_INTEROP_SUITE_ALL:-0}" != 1 ]; then
  pat=
  while IFS=$TAB read -r p why; do
    echo "# not run: /$p/: $why"
    pat=${pat:+$pat|}$p
  done <<EOF
$(known)
EOF
  [ -n "$pat" ] && set -- "$@" --grep "$pat" --invert
fi
echo "# natpeer as \"go\": $mode (${NATPEER_P2PD:-$NATPEER_HOST})"

NP_INTEROP_LOGDIR=$T/logs
export NP_INTEROP_LOGDIR
cd "$here" || exit 99
# mocha bounds each case (30 s) and each hook (20 s); this bounds the whole
timeout -k 10 "${NP_INTEROP_SUITE_TIMEOUT:-900}" \
  "$NP_NODE" node_modules/mocha/bin/mocha.js "$@" daemon/interop.spec.mjs
rc=$?
if [ $rc -ne 0 ]; then
  [ $rc -eq 124 ] && echo "not ok - the suite did not end within ${NP_INTEROP_SUITE_TIMEOUT:-900} s"
  # the natpeer logs of the run, for the failure's why
  for f in "$T"/logs/*.log; do
    [ -f "$f" ] || continue
    echo "# ---- $(basename "$f")"
    tail -n 20 "$f" | sed 's/^/# /'
  done
  exit 1
fi
exit 0
