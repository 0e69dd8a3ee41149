#!/usr/bin/env bash
# natlab.sh - natpeer's NAT lab: real Linux NAT in network namespaces (root).
#
#   natlab.sh setup    NAME TYPE_A TYPE_B  build lab NAME; nat-a is TYPE_A, nat-b TYPE_B
#   natlab.sh exec     NAME NODE CMD...    run CMD inside NODE
#   natlab.sh addr     NAME NODE           NODE's address (routers: their public one)
#   natlab.sh netns    NAME NODE           the namespace name of NODE
#   natlab.sh impair   NAME NODE DELAY_MS [LOSS_PCT] [DEV]   egress delay/loss
#   natlab.sh impair   NAME NODE off [DEV]
#   natlab.sh impair   NAME internet DELAY_MS|off   the same on every internet link
#   natlab.sh probe    NAME private-1|private-2 [--brief]   classify the NAT (RFC 4787)
#   natlab.sh teardown NAME                kill the lab's processes, delete it
#   natlab.sh list                         labs, their NAT types and owner pid
#   natlab.sh prune                        tear down labs whose owner has exited
#
# NAME: [a-z][a-z0-9]{0,11}, unique per run (tests use nl$$). NODE: inet,
# public-1..public-4, nat-a, nat-b, private-1, private-2.
# TYPE (mapping + filtering, RFC 4787; see README.md):
#   eif   EIM + endpoint-independent filtering (full cone; nft map)
#   adf   EIM + address-dependent filtering (restricted cone; nft map + set)
#   apdf  EIM + address-and-port-dependent filtering (Linux MASQUERADE)
#   sym   APDM + APDF (MASQUERADE fully-random)
# Env for setup: UDP_TIMEOUT=SECONDS (router conntrack UDP + cone map timeout),
#   ROUTER_INPUT=drop|accept (unsolicited packets to a router; default drop),
#   NATLAB_OWNER=PID (whose exit makes the lab stale for prune; default $PPID).
#
#  private-1 10.1.0.2 -- 10.1.0.1 [nat-a] 198.51.100.2 -- 198.51.100.1 [inet] 192.0.2.1 -br0-+- public-1 192.0.2.11
#  private-2 10.2.0.2 -- 10.2.0.1 [nat-b] 203.0.113.2  -- 203.0.113.1  [inet]               +- public-2 192.0.2.12
#                                                                                            +- public-3 192.0.2.13
#                                                                                            +- public-4 192.0.2.14
# inet routes the three documentation prefixes and nothing else: 10.0.0.0/8
# is unreachable from the internet side. Nothing is linked to the root
# namespace. public-1 and public-2 run a reflector on UDP 3478 and 3479.
set -Eeuo pipefail

RUN=${NATLAB_RUN:-/run/natlab}
NODES="inet public-1 public-2 public-3 public-4 nat-a nat-b private-1 private-2"
P1=3478 P2=3479
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROBE=$HERE/natprobe.py
PY=$(command -v python3 || true)

die() { echo "natlab: $*" >&2; exit 1; }
ns() { echo "$NAME-$1"; }
nx() { local n=$1; shift; ip netns exec "$(ns "$n")" "$@"; }
lab_exists() { [[ -d $RUN/$NAME ]]; }
check_name() {
  [[ ${NAME:-} =~ ^[a-z][a-z0-9]{0,11}$ ]] || die "NAME must match [a-z][a-z0-9]{0,11}"
}
check_node() { [[ " $NODES " == *" $1 "* ]] || die "unknown node '$1' (nodes: $NODES)"; }
need_lab() { check_name; lab_exists || die "no lab $NAME"; }
# Namespaces of lab NAME that exist now (also after a half-done setup).
lab_netns() { ip netns list | awk -v p="$NAME-" 'index($1, p) == 1 {print $1}'; }

node_addr() {
  case $1 in
    public-[1-4]) echo "192.0.2.1${1#public-}";;
    nat-a) echo 198.51.100.2;; nat-b) echo 203.0.113.2;;
    private-1) echo 10.1.0.2;; private-2) echo 10.2.0.2;;
    inet) echo 192.0.2.1;;
  esac
}
uplink() {
  case $1 in
    nat-a|nat-b) echo wan;;
    inet) die "inet has several links: give DEV (isp-a isp-b br0)";;
    *) echo eth0;;
  esac
}

norm_type() {
  case ${1,,} in
    eif|fullcone|full-cone) echo eif;;
    adf|restricted|restricted-cone) echo adf;;
    apdf|portrestricted|port-restricted|masq|masquerade) echo apdf;;
    sym|symmetric) echo sym;;
    *) die "unknown NAT type '$1' (eif|adf|apdf|sym)";;
  esac
}

# veth pair, each end created directly inside its namespace.
link() { # NODE_A IF_A NODE_B IF_B
  ip link add "$2" netns "$(ns "$1")" type veth peer name "$4" netns "$(ns "$3")"
  nx "$1" ip link set "$2" up; nx "$3" ip link set "$4" up
}

# nftables ruleset of a NAT router: $1 type, $2 mapping timeout (s), $3 input policy.
router_rules() {
  local t=$1 to=$2 inp=$3 masq=masquerade
  [[ $t == sym ]] && masq="masquerade fully-random"   # new random port per flow: APDM
  echo "table ip natlab {"
  if [[ $t == eif || $t == adf ]]; then
    # Linux conntrack alone only gives APDF: keep cone state ourselves,
    # mapped WAN port -> inside addr.port, refreshed by every outbound packet.
    echo "  map cone { type inet_service : ipv4_addr . inet_service; flags dynamic,timeout; timeout ${to}s; }"
  fi
  [[ $t == adf ]] && echo "  set peers { type inet_service . ipv4_addr; flags dynamic,timeout; timeout ${to}s; }"
  echo "  chain nat_pre { type nat hook prerouting priority dstnat; policy accept;"
  [[ $t == eif ]] && echo "    iifname \"wan\" dnat ip to udp dport map @cone"
  [[ $t == adf ]] && echo "    iifname \"wan\" udp dport . ip saddr @peers dnat ip to udp dport map @cone"
  echo "  }"
  echo "  chain nat_post { type nat hook postrouting priority srcnat; policy accept;"
  echo "    oifname \"wan\" $masq"
  echo "  }"
  if [[ $t == eif || $t == adf ]]; then
    # After SNAT: udp sport is the mapped port, ct original/reply the inside end.
    echo "  chain cone_rec { type filter hook postrouting priority srcnat + 10; policy accept;"
    echo "    oifname \"wan\" ct direction original update @cone { udp sport : ct original ip saddr . ct original proto-src }"
    echo "    oifname \"wan\" ct direction reply update @cone { udp sport : ct reply ip saddr . ct reply proto-src }"
    [[ $t == adf ]] && echo "    oifname \"wan\" update @peers { udp sport . ip daddr }"
    echo "  }"
  fi
  echo "  chain filter_fwd { type filter hook forward priority filter; policy drop;"
  echo "    ct state established,related accept"
  echo "    iifname \"lan\" oifname \"wan\" accept"
  echo "    iifname \"wan\" oifname \"lan\" ct status dnat accept"
  echo "  }"
  # Dropping unsolicited packets to the router itself also keeps them from
  # leaving conntrack entries that would renumber a later mapping.
  echo "  chain filter_in { type filter hook input priority filter; policy $inp;"
  echo "    ct state established,related accept"
  echo "    iifname { \"lo\", \"lan\" } accept"
  echo "    icmp type echo-request accept"
  echo "  }"
  echo "}"
}

bg() { # NODE LOGNAME CMD... : a lab daemon inside NODE (killed by teardown)
  local n=$1 log=$2; shift 2
  ip netns exec "$(ns "$n")" "$@" >"$RUN/$NAME/$log.log" 2>&1 </dev/null &
}

cmd_setup() {
  NAME=${1:-}; check_name; [[ $# == 3 ]] || die "usage: setup NAME TYPE_A TYPE_B"
  local ta tb n p i ok inp=${ROUTER_INPUT:-drop} to=${UDP_TIMEOUT:-120}
  ta=$(norm_type "$2"); tb=$(norm_type "$3")
  [[ $inp == drop || $inp == accept ]] || die "ROUTER_INPUT is drop|accept"
  [[ $to =~ ^[1-9][0-9]*$ ]] || die "UDP_TIMEOUT is a number of seconds"
  [[ -n $PY ]] || die "python3 not found (reflectors, probe and delayer need it)"
  lab_exists && die "lab $NAME exists (teardown first)"
  if [[ -n $(lab_netns) ]]; then die "namespaces $NAME-* exist (teardown $NAME first)"; fi
  mkdir -p "$RUN/$NAME"
  echo "${NATLAB_OWNER:-$PPID}" >"$RUN/$NAME/owner"
  echo "$ta $tb" >"$RUN/$NAME/types"
  trap 'echo "natlab: setup of $NAME failed; clean up with: $0 teardown $NAME" >&2' ERR
  for n in $NODES; do
    ip netns add "$(ns "$n")"; nx "$n" ip link set lo up
    nx "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  done
  # The internet: one router; the public hosts share bridge br0.
  nx inet ip link add br0 type bridge; nx inet ip link set br0 up
  nx inet ip addr add 192.0.2.1/24 dev br0
  for i in 1 2 3 4; do
    link "public-$i" eth0 inet "pub$i"; nx inet ip link set "pub$i" master br0
    nx "public-$i" ip addr add "$(node_addr "public-$i")/24" dev eth0
    nx "public-$i" ip route add default via 192.0.2.1
  done
  link nat-a wan inet isp-a; link nat-b wan inet isp-b
  nx inet ip addr add 198.51.100.1/24 dev isp-a; nx nat-a ip addr add 198.51.100.2/24 dev wan
  nx inet ip addr add 203.0.113.1/24 dev isp-b; nx nat-b ip addr add 203.0.113.2/24 dev wan
  nx nat-a ip route add default via 198.51.100.1; nx nat-b ip route add default via 203.0.113.1
  # The private LANs.
  link private-1 eth0 nat-a lan; link private-2 eth0 nat-b lan
  nx nat-a ip addr add 10.1.0.1/24 dev lan; nx private-1 ip addr add 10.1.0.2/24 dev eth0
  nx nat-b ip addr add 10.2.0.1/24 dev lan; nx private-2 ip addr add 10.2.0.2/24 dev eth0
  nx private-1 ip route add default via 10.1.0.1; nx private-2 ip route add default via 10.2.0.1
  for n in inet nat-a nat-b; do nx "$n" sysctl -qw net.ipv4.ip_forward=1; done
  echo "$inp" >"$RUN/$NAME/input"
  for n in nat-a nat-b; do
    [[ -n ${UDP_TIMEOUT:-} ]] && nx "$n" sysctl -qw \
      net.netfilter.nf_conntrack_udp_timeout="$to" net.netfilter.nf_conntrack_udp_timeout_stream="$to"
    if [[ $n == nat-a ]]; then router_rules "$ta" "$to" "$inp"; else router_rules "$tb" "$to" "$inp"; fi |
      nx "$n" nft -f -
  done
  bg public-1 reflector-public-1 "$PY" "$PROBE" server $P1 $P2 "$(node_addr public-2)"
  bg public-2 reflector-public-2 "$PY" "$PROBE" server $P1 $P2 "$(node_addr public-1)"
  ok=0
  for i in $(seq 50); do   # both reflectors answer (at most ~5 s)
    if nx public-1 "$PY" "$PROBE" who "$(node_addr public-2):$P1" >/dev/null 2>&1 &&
       nx public-2 "$PY" "$PROBE" who "$(node_addr public-1):$P1" >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.1
  done
  [[ $ok == 1 ]] || die "reflectors not answering (see $RUN/$NAME/reflector-*.log)"
  trap - ERR
  echo "lab $NAME up: nat-a=$ta nat-b=$tb (router input policy $inp)"
}

cmd_teardown() {
  NAME=${1:-}; check_name
  local n p i left
  for n in $(lab_netns); do   # only processes living inside this lab's namespaces
    for p in $(ip netns pids "$n" 2>/dev/null); do kill "$p" 2>/dev/null || true; done
  done
  for i in $(seq 20); do      # up to 2 s for a clean exit, then SIGKILL
    left=0
    for n in $(lab_netns); do [[ -n $(ip netns pids "$n" 2>/dev/null) ]] && left=1; done
    [[ $left == 0 ]] && break; sleep 0.1
  done
  for n in $(lab_netns); do
    for p in $(ip netns pids "$n" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    # Deleting the namespace destroys its veths, bridge, nft tables and
    # iptables rules with it. (Another teardown may have just done it.)
    ip netns del "$n" 2>/dev/null || true
  done
  rm -rf "${RUN:?}/$NAME"
  [[ -z $(lab_netns) ]] || die "lab $NAME: could not delete $(lab_netns | tr '\n' ' ')"
  echo "lab $NAME removed"
}

cmd_exec() {
  NAME=${1:-}; need_lab; check_node "${2:-}"
  local n=$2; shift 2; nx "$n" "$@"
}

cmd_addr() { NAME=${1:-}; need_lab; check_node "${2:-}"; node_addr "$2"; }
cmd_netns() { NAME=${1:-}; need_lab; check_node "${2:-}"; ns "$2"; }

cmd_probe() {
  NAME=${1:-}; need_lab; check_node "${2:-}"
  nx "$2" "$PY" "$PROBE" probe "$(node_addr public-1)" "$(node_addr public-2)" $P1 $P2 "${@:3}"
}

impair_one() { # NODE DELAY_MS|off LOSS DEV
  local n=$1 d=$2 loss=$3 dev=$4 q pidf
  q=$(nx "$n" ip -o link show dev "$dev" | cut -d: -f1) || die "no device $dev in $n"
  pidf=$RUN/$NAME/impair.$n.$dev
  nx "$n" tc qdisc del dev "$dev" root 2>/dev/null || true
  local i; for i in 1 2 3 4; do   # impair adds one rule; a few are plenty
    nx "$n" iptables -t mangle -D POSTROUTING -o "$dev" -j NFQUEUE --queue-num "$q" --queue-bypass 2>/dev/null || break
  done
  if [[ -f $pidf ]]; then kill "$(cat "$pidf")" 2>/dev/null || true; rm -f "$pidf"; fi
  [[ $d == off ]] && { echo "$n/$dev: impairment removed"; return; }
  if nx "$n" tc qdisc add dev "$dev" root netem delay "${d}ms" loss "${loss}%" 2>/dev/null; then
    echo "$n/$dev: netem delay ${d}ms loss ${loss}% (egress)"; return
  fi
  # No sch_netem: egress IPv4 on DEV goes through NFQUEUE (queue = ifindex,
  # per namespace) to the userspace delayer. --queue-bypass lets packets
  # through if the delayer is gone.
  ip netns exec "$(ns "$n")" "$PY" "$PROBE" delayer "$q" "$d" "$loss" \
    >"$RUN/$NAME/impair.$n.$dev.log" 2>&1 </dev/null &
  echo $! >"$pidf"
  for i in $(seq 30); do   # the delayer prints once it has bound the queue (at most 3 s)
    grep -q '^delayer' "$RUN/$NAME/impair.$n.$dev.log" 2>/dev/null && break
    kill -0 "$(cat "$pidf")" 2>/dev/null || break; sleep 0.1
  done
  grep -q '^delayer' "$RUN/$NAME/impair.$n.$dev.log" ||
    die "delayer on $n/$dev failed: $(cat "$RUN/$NAME/impair.$n.$dev.log")"
  nx "$n" iptables -t mangle -A POSTROUTING -o "$dev" -j NFQUEUE --queue-num "$q" --queue-bypass
  echo "$n/$dev: delay ${d}ms loss ${loss}% (egress, NFQUEUE $q)"
}

cmd_impair() {
  NAME=${1:-}; need_lab
  local n=${2:-} d=${3:?DELAY_MS|off} loss dev
  if [[ $n == internet ]]; then
    # Every path between two sites crosses exactly one of these egresses in
    # each direction: private->public via br0, public->private via isp-a/b,
    # private-1 <-> private-2 via isp-b / isp-a.
    for dev in isp-a isp-b br0; do impair_one inet "$d" "${4:-0}" "$dev"; done
    return
  fi
  check_node "$n"
  if [[ $d == off ]]; then loss=0; dev=${4:-$(uplink "$n")}; else loss=${4:-0}; dev=${5:-$(uplink "$n")}; fi
  [[ $d == off || $d =~ ^[0-9]+$ ]] || die "DELAY_MS is a number or off"
  impair_one "$n" "$d" "$loss" "$dev"
}

cmd_list() {
  local d o
  for d in "$RUN"/*/; do
    [[ -f $d/types ]] || continue
    o=$(cat "$d/owner" 2>/dev/null || echo 0)
    printf '%-12s nat-a/nat-b=%-10s owner=%s%s\n' "$(basename "$d")" \
      "$(tr ' ' / <"$d/types")" "$o" "$(kill -0 "$o" 2>/dev/null || echo ' (exited: stale)')"
  done
}

cmd_prune() {
  local d o
  for d in "$RUN"/*/; do
    [[ -f $d/owner ]] || continue
    o=$(cat "$d/owner")
    kill -0 "$o" 2>/dev/null || cmd_teardown "$(basename "$d")"
  done
}

main() {
  local c=${1:-}; shift || true
  case $c in
    setup|teardown|exec|addr|netns|probe|impair|list|prune)
      [[ $(id -u) == 0 ]] || die "must run as root (network namespaces)";;
  esac
  case $c in
    setup) cmd_setup "$@";; teardown) cmd_teardown "$@";; exec) cmd_exec "$@";;
    addr) cmd_addr "$@";; netns) cmd_netns "$@";; probe) cmd_probe "$@";;
    impair) cmd_impair "$@";; list) cmd_list;; prune) cmd_prune;;
    *) awk 'NR > 1 && /^set -E/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0"; exit 2;;
  esac
}
main "$@"
