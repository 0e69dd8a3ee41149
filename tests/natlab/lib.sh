# Helpers for NAT-lab tests (sourced after setting nothing; see lab_basic.sh).
# On top of tests/integration/lib.sh (TAP check/pass/fail/finish, wait_for,
# temp dir $T, $PIDS killed on exit): a lab named nl$$ that is torn down on
# every exit, natpeer hosts started inside lab nodes, and a watchdog.
#
# Root is needed (network namespaces). Otherwise the test is skipped: it
# prints a TAP skip plan and exits 77, or 0 when NATLAB_SKIP_STATUS=0 (set by
# tests/natlab/natlab.am, because automake's TAP driver reads a skip from the
# plan and would call exit status 77 an error).
. "$(dirname "$0")/../integration/lib.sh"
NATLAB="$top_srcdir/tests/natlab/natlab.sh"
NATPROBE="$top_srcdir/tests/natlab/natprobe.py"
CLI="$top_builddir/host/natpeer-cli"
LAB=nl$$
# The lab's "internet": documentation prefixes natpeer is told to count as
# public ([nat] treat_as_public).
LAB_PUBLIC="192.0.2.0/24 198.51.100.0/24 203.0.113.0/24"
LAB_UP=0
WATCHDOG=""

natlab_skip() {
  echo "1..0 # SKIP $*"
  echo "SKIP: $*" >&2
  exit "${NATLAB_SKIP_STATUS:-77}"
}
[ "$(id -u)" -eq 0 ] || natlab_skip "needs root (network namespaces)"

# KEEP=1 leaves the lab, its hosts and $T in place for a look afterwards.
# A fired watchdog turns any ending into "Bail out!" (exit 99).
lab_cleanup() {
  local st=$?
  trap '' INT TERM HUP # the watchdog's signal must not cut this short
  if [ -n "$WATCHDOG" ]; then kill "$WATCHDOG" 2>/dev/null; fi
  if [ -f "$T/watchdog.fired" ]; then
    echo "Bail out! watchdog: the test ran longer than $(cat "$T/watchdog.fired") s"
    st=99
  fi
  if [ -n "${KEEP:-}" ]; then
    echo "# KEEP: lab $LAB and $T left; remove with: $NATLAB teardown $LAB" >&2
    exit $st
  fi
  if [ "$LAB_UP" = 1 ]; then bash "$NATLAB" teardown "$LAB" >/dev/null 2>&1; fi
  cleanup
  exit $st
}
trap lab_cleanup EXIT

# watchdog SECONDS: a hung step ends the test. The shell runs its TERM trap
# (exit 1 -> teardown) only once the foreground command returns, so the
# watchdog first tears the lab down: whatever runs in it, or waits on it,
# ends.
watchdog() {
  (
    trap 'kill $s 2>/dev/null; exit 0' TERM
    sleep "$1" & s=$!
    if wait $s; then
      echo "$1" >"$T/watchdog.fired"
      bash "$NATLAB" teardown "$LAB" >/dev/null 2>&1 # (LAB_UP is a copy here)
      kill -TERM $$
    fi
  ) &
  WATCHDOG=$!
}

# lab_setup TYPE_A TYPE_B: build the lab (torn down on exit); the output of
# natlab.sh goes to $T/natlab.log.
lab_setup() {
  LAB_UP=1
  NATLAB_OWNER=$$ bash "$NATLAB" setup "$LAB" "$1" "$2" >>"$T/natlab.log" 2>&1
}
# lab CMD ARGS...: natlab.sh CMD on this test's lab (lab exec private-1 ...).
lab() { local c=$1; shift; bash "$NATLAB" "$c" "$LAB" "$@"; }
# probe NODE who|rtt|listen|knock ARGS...: natprobe.py inside NODE.
probe() { local node=$1; shift; lab exec "$node" python3 "$NATPROBE" "$@"; }
# bail REASON: the test cannot go on (TAP "Bail out!", exit 99).
bail() { echo "Bail out! $*"; exit 99; }
# need "description" command...: a check the rest of the test depends on.
need() {
  local d=$1
  shift
  if "$@"; then pass "$d"; else fail "$d"; bail "$d: failed"; fi
}

# start_host NAME NODE MODE BOOTSTRAP PLUGINS: natpeer-host in lab NODE,
# listening on the node's address, port 4001 (QUIC and TCP); $HOST_EXTRA
# (ini text: more sections, e.g. [relay] or [plugin.hello]) is appended. Sets
# ${NAME}_pid, ${NAME}_addr (QUIC multiaddr with /p2p/), ${NAME}_id,
# ${NAME}_ctl. PLUGINS: space-separated bundled plugin names, or "".
# Environment: TREAT_AS_PUBLIC replaces the lab's prefixes, NAT_EXTRA adds
# lines to [nat] (e.g. NAT_EXTRA="autonat_boot_delay = 3s").
start_host() {
  local name=$1 node=$2 mode=$3 boot=$4 plugins=$5 ip p
  ip=$(lab addr "$node") || return 1
  mkdir -p "$T/$name/plugins" "$T/$name/data"
  for p in $plugins; do install_so "$(so "$p")" "$T/$name/plugins/$p.so"; done
  cat >"$T/$name/host.ini" <<INI
[host]
data_dir = $T/$name/data
listen = /ip4/$ip/udp/4001/quic-v1 /ip4/$ip/tcp/4001
control = $T/$name/ctl.sock
log_level = debug
[bootstrap]
peers = $boot
connect_timeout = 5s
[dht]
mode = $mode
[nat]
treat_as_public = ${TREAT_AS_PUBLIC:-$LAB_PUBLIC}
${NAT_EXTRA:-}
[limits]
call_timeout = 15s
[plugins]
dir = $T/$name/plugins
${HOST_EXTRA:-}
INI
  ip netns exec "$(lab netns "$node")" "$HOST" --config "$T/$name/host.ini" \
    >"$T/$name/out" 2>"$T/$name/log" </dev/null &
  eval "${name}_pid=$!"
  PIDS="$PIDS $!"
  eval "${name}_ctl=$T/$name/ctl.sock"
}
# host_ready NAME: wait (10 s) for the banner; sets ${NAME}_addr, ${NAME}_id.
host_ready() {
  local name=$1
  wait_for "$T/$name/out" "/quic-v1/p2p/" 10 || return 1
  eval "${name}_addr=\$(grep -m1 /quic-v1/p2p/ \"$T/$name/out\")"
  eval "${name}_id=\$(sed -n 's/^Peer ID: //p' \"$T/$name/out\")"
}
