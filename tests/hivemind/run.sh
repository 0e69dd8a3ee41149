#!/bin/sh
# hivemind's own P2P tests (tests/test_p2p_daemon.py, tests/test_p2p_servicer.py, vendored
# under vendor/) against natpeer-p2pd, started by hivemind's P2P.create(); then the tutorial
# flow (tutorial.py). Debian python3 packages only. Prints TAP (pytest's own output as
# comments, one TAP line per test from its JUnit XML). Exit: 0 pass or skip, 1 fail, 99 error.
#   sh run.sh [pytest args...]     e.g. sh run.sh -k test_call_protobuf_handler
# NP_P2PD: the daemon to run as hivemind's `p2pd` (default $top_builddir/host/natpeer-p2pd).
# NP_HM_TIMEOUT: seconds per test (default 60); NP_HM_TOTAL: seconds for everything (600).
set -u
here=$(cd "$(dirname "$0")" && pwd)
: "${top_srcdir:=$(cd "$here/../.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
top_builddir=$(cd "$top_builddir" && pwd)
P2PD=${NP_P2PD:-$top_builddir/host/natpeer-p2pd}
PY=${NP_PYTHON:-/usr/bin/python3}
per_test=${NP_HM_TIMEOUT:-60}
total=${NP_HM_TOTAL:-600}

skip() { echo "1..0 # SKIP $*"; exit 0; }
[ -x "$P2PD" ] || skip "no natpeer-p2pd at $P2PD (set NP_P2PD)"
[ -x "$PY" ] || { [ "${CI:-}" = true ] && sh "$here/deps.sh"; }
[ -x "$PY" ] || skip "no $PY (Debian python3; tests/hivemind/deps.sh installs it)"
have_deps() {
  missing=""
  for m in pytest pytest_asyncio pytest_timeout google.protobuf cryptography base58 msgpack \
           numpy netaddr idna uvloop psutil; do
    "$PY" -c "import $m" 2>/dev/null || missing="$missing $m"
  done
  command -v protoc >/dev/null 2>&1 || missing="$missing protoc"
  [ -z "$missing" ]
}
# CI installs them (Debian packages only); anyone else is told how.
if ! have_deps && [ "${CI:-}" = true ]; then
  echo "# installing:$missing (tests/hivemind/deps.sh)"
  sh "$here/deps.sh" && have_deps
fi
[ -z "$missing" ] || skip "missing:$missing (run tests/hivemind/deps.sh as root)"

T=$(mktemp -d "${TMPDIR:-/tmp}/np-hm-XXXXXX") || exit 99
cleanup() {
  # Daemons P2P.create() left behind (a test killed by the timeout) die with us.
  for p in $(pgrep -f "$T/py/hivemind/hivemind_cli/p2pd" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
  [ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# The package tree hivemind imports: vendored code, shims, generated *_pb2, and the daemon
# where hivemind looks for it (hivemind/hivemind_cli/p2pd).
mkdir -p "$T/py" "$T/tests" || exit 99
cp -R "$here/vendor/hivemind" "$T/py/" && cp "$here"/shims/*.py "$T/py/" \
  && cp -R "$here/vendor/tests/." "$T/tests/" && cp "$here/conftest.py" "$T/tests/" \
  && cp "$here/pytest.ini" "$T/" || exit 99
ln -s "$P2PD" "$T/py/hivemind/hivemind_cli/p2pd" || exit 99
protoc --proto_path="$T/py/hivemind/proto" --python_out="$T/py/hivemind/proto" \
  "$T"/py/hivemind/proto/*.proto || exit 99
# As hivemind's setup.py does: imports between generated modules become relative.
for f in "$T"/py/hivemind/proto/*_pb2.py; do
  sed -i 's/^\(import [a-z_]*_pb2\)/from . \1/' "$f" || exit 99
done

# hivemind reads the daemon's output and logs it at debug level only: sanitizer reports of
# an ASan build go to files instead, and count as a failure.
mkdir -p "$T/san" || exit 99
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}log_path=$T/san/asan"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}log_path=$T/san/ubsan"
export PYTHONPATH="$T/py:$T/tests"
export PYTHONDONTWRITEBYTECODE=1
cd "$T" || exit 99
rc=0
# timeout(1) bounds the whole run; pytest-timeout each test (signal method: a stuck test fails, the run goes on).
timeout -k 10 "$total" "$PY" -m pytest -c "$T/pytest.ini" -p no:cacheprovider \
  --timeout="$per_test" --timeout-method=signal -rfEs --junitxml="$T/junit.xml" "$@" \
  tests/test_p2p_daemon.py tests/test_p2p_servicer.py 2>&1 | sed 's/^/# /'
[ -s "$T/junit.xml" ] || { echo "Bail out! pytest wrote no results (killed by the ${total}s timeout?)"; exit 99; }
"$PY" "$here/junit_tap.py" "$T/junit.xml" 0 >"$T/tap" 2>"$T/count" || exit 99
n=$(cat "$T/count")
if [ $# -eq 0 ]; then
  timeout -k 5 60 "$PY" "$here/tutorial.py" "$n" >>"$T/tap" 2>"$T/tut.err"
  sed 's/^/# tutorial: /' "$T/tut.err"
  grep -q 'tutorial flow' "$T/tap" || { n=$((n + 1)); echo "not ok $n - tutorial.py ran (no result: killed?)" >>"$T/tap"; }
fi
if grep -q __asan_init "$P2PD" 2>/dev/null; then
  n=$(grep -cE '^(not )?ok ' "$T/tap")
  if [ -n "$(ls "$T/san")" ]; then
    echo "not ok $((n + 1)) - natpeer-p2pd (ASan build): no sanitizer report" >>"$T/tap"
    cat "$T"/san/* | sed 's/^/# /'
  else
    echo "ok $((n + 1)) - natpeer-p2pd (ASan build): no sanitizer report" >>"$T/tap"
  fi
fi
cat "$T/tap"
echo "1..$(grep -cE '^(not )?ok ' "$T/tap")"
grep -q '^not ok ' "$T/tap" && rc=1
exit $rc
