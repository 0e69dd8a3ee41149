#!/bin/sh
# The NAT lab with what natpeer has before NAT traversal (issue 10): NAT A
# and NAT B are Linux MASQUERADE (apdf), 20 ms one way on every internet
# link. natpeer-host runs on public-1..4 (DHT auto mode, the lab's prefixes
# public; 2..4 bootstrap from 1) and on private-1 and private-2 (DHT clients
# bootstrapping from all four; private-1 serves hello). Checks: (a) the lab
# itself, (b) private hosts reach the public ones and are seen at their NAT's
# public address, (c) identify tells a private host its NAT's public address
# and it is confirmed, (d) calls through the NAT work, and the direct
# private-2 -> private-1 dial -- the gap DCUtR will close -- fails cleanly
# within the dial timeout. About 20 s; root only.
. "$(dirname "$0")/lib.sh"
watchdog 150
# The private hosts run without NAT traversal (no relay reservations, no
# hole punching): this test shows the lab and the plain path, and the gap
# the traversal closes (scenario.sh, lab_relay.sh, lab_dcutr.sh).
NO_TRAVERSAL="[relay]
client = off
[nat]
hole_punch = no"
t0=$(date +%s)

# ---- (a) the lab ------------------------------------------------------------
lab_setup apdf apdf || bail "lab setup failed: $(tail -n 3 "$T/natlab.log")"
pass "lab: namespaces up, NAT A and NAT B = apdf (MASQUERADE)"
lab impair internet 20 >>"$T/natlab.log" 2>&1 ||
  bail "impair failed: $(tail -n 3 "$T/natlab.log")"
pass "lab: 20 ms one-way delay on the internet links"
NAT_A=$(lab addr nat-a) NAT_B=$(lab addr nat-b)
PUB1=$(lab addr public-1) PUB2=$(lab addr public-2)
P1=$(lab addr private-1)

# Both private hosts classify their NAT as MASQUERADE does: one mapping for
# every destination, same port as inside, only the contacted ip:port gets in.
lab probe private-1 --brief >"$T/probe1" 2>&1 &
lab probe private-2 --brief >"$T/probe2" 2>&1
wait $!
check "lab: probe from private-1 finds EIM+APDF, port-preserving ($(cat "$T/probe1"))" \
  [ "$(cat "$T/probe1")" = "EIM+APDF pp" ]
check "lab: probe from private-2 finds EIM+APDF, port-preserving ($(cat "$T/probe2"))" \
  [ "$(cat "$T/probe2")" = "EIM+APDF pp" ]
seen=$(probe private-1 who "$PUB1:3478")
check "lab: private-1 reaches public-1, which sees NAT A's public address ($seen)" \
  sh -c 'case $1 in "$2":[0-9]*) exit 0;; esac; exit 1' _ "$seen" "$NAT_A"
seen=$(probe private-2 who "$PUB1:3478")
check "lab: private-2 reaches public-1, which sees NAT B's public address ($seen)" \
  sh -c 'case $1 in "$2":[0-9]*) exit 0;; esac; exit 1' _ "$seen" "$NAT_B"
rtt=$(probe private-1 rtt "$PUB2:3478" 5)
check "lab: private-1 <-> public-2 round trip is at least 2 x 20 ms (median $rtt ms)" \
  awk -v r="$rtt" 'BEGIN { exit !(r + 0 >= 39) }'

# Unsolicited traffic: listeners on private-1 and (control) public-2, port
# 4001 UDP and TCP, for at most 15 s. Nothing from the internet side may
# reach private-1. (ip netns exec execs python, so $! is the listener.)
ip netns exec "$(lab netns private-1)" python3 "$NATPROBE" listen 4001 15 >"$T/listen1" 2>&1 &
l1=$!
ip netns exec "$(lab netns public-2)" python3 "$NATPROBE" listen 4001 15 >"$T/listen2" 2>&1 &
l2=$!
wait_for "$T/listen1" ready 5 >/dev/null 2>&1
wait_for "$T/listen2" ready 5 >/dev/null 2>&1
probe public-1 knock "$P1:4001" >"$T/k1" 2>&1 &
k1=$!
probe public-1 knock "$NAT_A:4001" >"$T/k2" 2>&1 &
k2=$!
probe private-2 knock "$NAT_A:4001" >"$T/k3" 2>&1 &
k3=$!
probe private-1 knock "$PUB2:4001" >"$T/k4" 2>&1
wait $k1; wait $k2; wait $k3
sleep 0.3 # > one-way delay: the last datagrams are in
kill -TERM $l1 $l2 2>/dev/null
wait $l1; wait $l2
check "lab: public-1 cannot connect to private-1's private address ($(cat "$T/k1"))" \
  grep -qx "tcp=timeout\|tcp=unreachable\|tcp=refused" "$T/k1"
check "lab: public-1 cannot connect to NAT A's public address unsolicited ($(cat "$T/k2"))" \
  grep -qx "tcp=timeout\|tcp=unreachable\|tcp=refused" "$T/k2"
check "lab: private-2 cannot connect to NAT A's public address unsolicited ($(cat "$T/k3"))" \
  grep -qx "tcp=timeout\|tcp=unreachable\|tcp=refused" "$T/k3"
check "lab: nothing of it reached private-1 ($(tail -n 1 "$T/listen1"))" \
  grep -qx "udp=0 tcp=0" "$T/listen1"
check "lab: control: private-1 connects out to public-2 ($(cat "$T/k4"))" \
  grep -qx "tcp=connected" "$T/k4"
check "lab: control: public-2 got its 3 datagrams and 1 connection ($(tail -n 1 "$T/listen2"))" \
  grep -qx "udp=3 tcp=1" "$T/listen2"

# ---- natpeer hosts ------------------------------------------------------------
# Private hosts run the DHT in auto mode too: their observed address is
# public (treat_as_public) but their NAT's, not one of their own, so they
# must stay clients (nobody could reach them as servers).
start_host pub1 public-1 auto "" hello
need "public-1 starts" host_ready pub1
for i in 2 3 4; do start_host "pub$i" "public-$i" auto "$pub1_addr" hello; done
for i in 2 3 4; do need "public-$i starts" host_ready "pub$i"; done
boot="$pub1_addr $pub2_addr $pub3_addr $pub4_addr"
HOST_EXTRA="$NO_TRAVERSAL" start_host priv1 private-1 auto "$boot" hello
HOST_EXTRA="$NO_TRAVERSAL" start_host priv2 private-2 auto "$boot" ""
need "private-1 starts" host_ready priv1
need "private-2 starts" host_ready priv2
for i in 1 2 3 4; do
  check "public-$i: treat_as_public makes its address public, so the DHT serves" \
    wait_for "$T/pub$i/log" 'kad mode-server why="a public address"' 5
done
check "private-1 bootstraps from all four public hosts" \
  wait_for "$T/priv1/log" "kad bootstrap-done peers=4" 15
check "private-2 bootstraps from all four public hosts" \
  wait_for "$T/priv2/log" "kad bootstrap-done peers=4" 15

# ---- (b) connections through the NAT ----------------------------------------
# peers --json: {"peers":[{"peer":"ID","addr":"/ip4/...","direction":...},...]}
addr_of() { # addr_of CTL PEER: remote address of PEER's connection on CTL's host
  "$CLI" --control "$1" --json peers | tr '{' '\n' |
    sed -n "s|.*\"peer\":\"$2\",\"addr\":\"\([^\"]*\)\",\"direction\":\"\([a-z]*\)\".*|\1 \2|p"
}
for pv in priv1 priv2; do
  eval "ctl=\$${pv}_ctl"
  for i in 1 2 3 4; do
    eval "id=\$pub${i}_id"
    a=$(addr_of "$ctl" "$id")
    check "$pv has an outbound connection to public-$i ($a)" \
      sh -c 'case $1 in "/ip4/$2/udp/4001/quic-v1 out") exit 0;; esac; exit 1' _ "$a" "$(lab addr "public-$i")"
  done
done
for i in 1 2 3 4; do
  eval "ctl=\$pub${i}_ctl"
  a=$(addr_of "$ctl" "$priv1_id")
  check "public-$i sees private-1 coming from NAT A's public address ($a)" \
    sh -c 'case $1 in "/ip4/$2/udp/"[0-9]*"/quic-v1 in") exit 0;; esac; exit 1' _ "$a" "$NAT_A"
  a=$(addr_of "$ctl" "$priv2_id")
  check "public-$i sees private-2 coming from NAT B's public address ($a)" \
    sh -c 'case $1 in "/ip4/$2/udp/"[0-9]*"/quic-v1 in") exit 0;; esac; exit 1' _ "$a" "$NAT_B"
done

# ---- (c) identify: the observed address is the NAT's public one ---------------
# natpeer exposes observed addresses only in its log (debug "identify
# observed-addr" per report, info "nat external-address-confirmed" once 4
# observers at distinct IPs agree); `natpeer-cli id` lists listen addresses.
for pv in priv1 priv2; do
  for i in 1 2 3 4; do
    eval "id=\$pub${i}_id ctl=\$pub${i}_ctl pvid=\$${pv}_id"
    wait_for "$T/$pv/log" "observed-addr peer=$id " 5 >/dev/null 2>&1
    obs=$(sed -n "s|.*identify observed-addr peer=$id addr=\([^ ]*\).*|\1|p" "$T/$pv/log" | tail -n 1)
    a=$(addr_of "$ctl" "$pvid")
    check "$pv: public-$i observed it at ${obs:-nothing}, the address its connection comes from" \
      sh -c '[ -n "$1" ] && [ "$1 in" = "$2" ]' _ "$obs" "$a"
  done
done

for pv in priv1 priv2; do
  eval "pvid=\$${pv}_id"
  a=$(addr_of "$pub1_ctl" "$pvid")
  a=${a% in}
  check "$pv: the four observers confirm its external address ${a:-?}" \
    wait_for "$T/$pv/log" "nat external-address-confirmed addr=$a" 10
  check "$pv: the NAT's UDP mapping is learned as endpoint-independent (MASQUERADE)" \
    wait_for "$T/$pv/log" "nat mapping-learned transport=udp mapping=independent" 10
  check "$pv: and no other external address is confirmed" \
    sh -c '[ "$(grep -c "nat external-address-confirmed" "$1")" -eq 1 ]' _ "$T/$pv/log"
  check "$pv: stays a DHT client in auto mode (the public address is its NAT's)" \
    sh -c '! grep -q "kad mode-server" "$1"' _ "$T/$pv/log"
done

# ---- (d) calls ----------------------------------------------------------------
for pv in priv1 priv2; do
  eval "ctl=\$${pv}_ctl"
  for i in 1 4; do
    eval "id=\$pub${i}_id"
    out=$("$CLI" --control "$ctl" --timeout 10 call "$id" hello 2>"$T/err")
    check "$pv calls hello on public-$i through its NAT (got \"$out\" $(cat "$T/err"))" \
      [ "$out" = "Hello, World!" ]
  done
done

# Baseline before hole punching (issue 10): private-2 cannot reach private-1
# directly. Each attempt must fail with a clear error from the host (exit 3:
# unreachable or timed out) within the dial timeout (10 s) plus a lookup, or
# at worst the call timeout (15 s) -- well before the CLI's own 30 s -- and
# neither host ends up with a connection.
s=$(date +%s)
"$CLI" --control "$priv2_ctl" --timeout 30 call "$priv1_id" hello >"$T/o1" 2>"$T/e1"
rc=$?
el=$(($(date +%s) - s))
check "baseline: private-2 -> private-1 call by ID fails (rc=$rc: $(cat "$T/e1"))" \
  sh -c '[ "$1" -eq 3 ] && grep -q "unreachable\|timed out" "$2"' _ "$rc" "$T/e1"
check "baseline: ... within 16 s (${el} s)" [ "$el" -le 16 ]
s=$(date +%s)
"$CLI" --control "$priv2_ctl" --timeout 30 connect "/ip4/$NAT_A/udp/4001/quic-v1/p2p/$priv1_id" >/dev/null 2>"$T/e2" &
c1=$!
"$CLI" --control "$priv2_ctl" --timeout 30 connect "/ip4/$NAT_A/tcp/4001/p2p/$priv1_id" >/dev/null 2>"$T/e3"
rc3=$?
wait $c1
rc2=$?
el=$(($(date +%s) - s))
check "baseline: private-2 dialing NAT A's public address over QUIC fails (rc=$rc2: $(cat "$T/e2"))" \
  sh -c '[ "$1" -eq 3 ] && grep -q "unreachable\|timed out" "$2"' _ "$rc2" "$T/e2"
check "baseline: ... and over TCP (rc=$rc3: $(cat "$T/e3"))" \
  sh -c '[ "$1" -eq 3 ] && grep -q "unreachable\|timed out" "$2"' _ "$rc3" "$T/e3"
check "baseline: ... both within 16 s (${el} s)" [ "$el" -le 16 ]
check "baseline: private-2 has no connection to private-1 afterwards" \
  sh -c '[ -z "$1" ]' _ "$(addr_of "$priv2_ctl" "$priv1_id")"
check "baseline: private-1 has no connection to private-2" \
  sh -c '[ -z "$1" ]' _ "$(addr_of "$priv1_ctl" "$priv2_id")"
out=$("$CLI" --control "$priv2_ctl" --timeout 10 call "$pub2_id" hello 2>"$T/err")
check "baseline: private-2 still calls public-2 after the failures (got \"$out\" $(cat "$T/err"))" \
  [ "$out" = "Hello, World!" ]

# ---- shutdown: every host exits 0 on SIGTERM (sanitizer builds: no reports) ---
for h in pub1 pub2 pub3 pub4 priv1 priv2; do eval "kill -TERM \$${h}_pid"; done
for h in pub1 pub2 pub3 pub4 priv1 priv2; do
  eval "pid=\$${h}_pid"
  i=0
  while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  if kill -0 "$pid" 2>/dev/null; then
    fail "$h exits within 10 s of SIGTERM"
  else
    wait "$pid"
    rc=$?
    check "$h exits 0 on SIGTERM (rc=$rc)" [ "$rc" -eq 0 ]
  fi
done
if [ "$failures" -gt 0 ]; then
  for h in pub1 pub2 pub3 pub4 priv1 priv2; do
    echo "# --- $h log (last 30 lines)"; tail -n 30 "$T/$h/log" | sed 's/^/# /'
  done
fi
echo "# lab_basic: $(($(date +%s) - t0)) s"
finish
