# Shared helpers for shell tests: exit 0 pass, 77 skip, 99 hard error.
# Every test gets its own temp dir, removed (with its processes) on exit.
set -u
: "${top_builddir:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${top_srcdir:=$top_builddir}"
HOST="$top_builddir/host/natpeer-host"
T=$(mktemp -d "${TMPDIR:-/tmp}/np-it-XXXXXX") || exit 99
PIDS=""
cleanup() {
  for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
  rm -rf "$T"
}
trap cleanup EXIT
# A test killed by a signal (make's timeout, ^C) still takes its hosts down.
trap 'exit 1' INT TERM HUP
[ -n "${KEEP:-}" ] && trap - EXIT
failures=0
n=0
pass() { n=$((n + 1)); echo "ok $n - $*"; }
fail() { n=$((n + 1)); failures=$((failures + 1)); echo "not ok $n - $*"; }
check() { # check "description" command...
  local d=$1; shift
  if "$@"; then pass "$d"; else fail "$d"; fi
}
finish() {
  echo "1..$n"
  [ "$failures" -eq 0 ] && exit 0 || exit 1
}
# skip_all REASON: the whole script is skipped (TAP plan 1..0).
skip_all() { echo "1..0 # SKIP $*"; exit 0; }
# wait_for FILE PATTERN [SECONDS]: grep -F with a bounded wait.
wait_for() {
  local f=$1 pat=$2 secs=${3:-5} i=0
  while [ $i -lt $((secs * 20)) ]; do
    grep -qF -- "$pat" "$f" 2>/dev/null && return 0
    sleep 0.05; i=$((i + 1))
  done
  echo "# timed out waiting for: $pat" >&2
  echo "# --- $f:" >&2; sed 's/^/# /' "$f" >&2
  return 1
}
count() { grep -cF -- "$2" "$1" 2>/dev/null || true; }
# install SRC DST: copy then rename, as plugins must be installed
install_so() { cp "$1" "$2.tmp.$$" && mv -f "$2.tmp.$$" "$2"; }
so() { # so NAME -> path of a built plugin
  case $1 in
    hello|echo) echo "$top_builddir/plugins/.libs/$1.so" ;;
    *) echo "$top_builddir/tests/plugins/.libs/$1.so" ;;
  esac
}
