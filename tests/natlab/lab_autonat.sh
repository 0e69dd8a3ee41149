#!/bin/sh
# AutoNAT v1 in the NAT lab (issue 10): NAT A and NAT B are Linux
# MASQUERADE (port-restricted cone), 20 ms one way on the internet links.
# public-1..4 serve and ask AutoNAT; private-1 and private-2 ask them.
#  - public hosts learn PUBLIC (a dial-back from a fresh port reaches them)
#    and stay DHT servers;
#  - private hosts learn PRIVATE: the dial-back to their confirmed observed
#    address (their NAT's) comes from a port their NAT never sent to, and is
#    filtered; three servers must say so;
#  - private-1 stays a DHT client; private-2, told to count its own 10/8
#    address as public, starts as a DHT server by the interim rule and
#    becomes a client once AutoNAT says PRIVATE;
#  - servers only ever dial the requester's observed IP (the NAT's), never
#    the private addresses the requester lists;
#  - private hosts advertise their confirmed observed address.
# About 80 s; root only.
. "$(dirname "$0")/lib.sh"
watchdog 200
t0=$(date +%s)

lab_setup apdf apdf || bail "lab setup failed: $(tail -n 3 "$T/natlab.log")"
pass "lab: namespaces up, NAT A and NAT B = apdf (MASQUERADE)"
lab impair internet 20 >>"$T/natlab.log" 2>&1 ||
  bail "impair failed: $(tail -n 3 "$T/natlab.log")"
pass "lab: 20 ms one-way delay on the internet links"
NAT_A=$(lab addr nat-a) NAT_B=$(lab addr nat-b)

NAT_EXTRA="autonat_boot_delay = 3s"
start_host pub1 public-1 auto "" ""
need "public-1 starts" host_ready pub1
for i in 2 3 4; do start_host "pub$i" "public-$i" auto "$pub1_addr" ""; done
for i in 2 3 4; do need "public-$i starts" host_ready "pub$i"; done
boot="$pub1_addr $pub2_addr $pub3_addr $pub4_addr"
# Private hosts ask once all four have identified them (the observed
# address needs 4 confirmations).
NAT_EXTRA="autonat_boot_delay = 6s"
start_host priv1 private-1 auto "$boot" ""
TREAT_AS_PUBLIC="$LAB_PUBLIC 10.0.0.0/8" start_host priv2 private-2 auto "$boot" ""
need "private-1 starts" host_ready priv1
need "private-2 starts" host_ready priv2

# ---- public hosts: PUBLIC, DHT servers ---------------------------------------
for i in 1 2 3 4; do
  check "public-$i: reachability public (a dial-back from a new port reached it)" \
    wait_for "$T/pub$i/log" 'nat reachability=public why="a peer dialed us back"' 30
done
for i in 1 2 3 4; do
  check "public-$i: a DHT server throughout" \
    sh -c 'grep -q "kad mode-server" "$1" && ! grep -q "kad mode-client" "$1"' _ "$T/pub$i/log"
done

# ---- private hosts: PRIVATE ----------------------------------------------------
check "private-1: its external address is confirmed" \
  wait_for "$T/priv1/log" "nat external-address-confirmed addr=/ip4/$NAT_A/udp/4001/quic-v1" 20
check "private-1: the confirmed address is advertised (identify, DHT)" \
  wait_for "$T/priv1/log" "nat observed-adverts n=1" 5
for pv in priv1 priv2; do
  check "$pv: reachability private after three failed dial-backs" \
    wait_for "$T/$pv/log" 'nat reachability=private why="dial-backs failed from 3 peers"' 100
done
k=$(grep -c 'nat autonat-probe .* result=dial-error' "$T/priv1/log")
s=$(sed -n 's/.*nat autonat-probe server=\([^ ]*\) result=dial-error.*/\1/p' "$T/priv1/log" | sort -u | wc -l)
check "private-1: it took 3 dial-errors ($k) from 3 distinct servers ($s)" \
  sh -c '[ "$1" -eq 3 ] && [ "$2" -eq 3 ]' _ "$k" "$s"
check "private-1: never public" sh -c '! grep -q "nat reachability=public" "$1"' _ "$T/priv1/log"
check "private-1: stays a DHT client in auto mode" \
  sh -c '! grep -q "kad mode-server" "$1"' _ "$T/priv1/log"
check "private-2: counting 10/8 as public made it a DHT server first (interim rule)" \
  grep -q 'kad mode-server why="a public address"' "$T/priv2/log"
check "private-2: PRIVATE turned it into a DHT client" \
  wait_for "$T/priv2/log" 'kad mode-client why="reachability private"' 5

nat=$("$CLI" --control "$priv1_ctl" --json nat)
check "natpeer-cli nat on private-1: private, from AutoNAT ($nat)" \
  sh -c 'echo "$1" | grep -q "\"reachability\":\"private\"" &&
         echo "$1" | grep -q "\"reachability_source\":\"autonat\""' _ "$nat"
nat=$("$CLI" --control "$pub1_ctl" --json nat)
check "natpeer-cli nat on public-1: public, served dial-backs ($nat)" \
  sh -c 'echo "$1" | grep -q "\"reachability\":\"public\"" &&
         echo "$1" | grep -q "\"autonat_served\":[1-9]"' _ "$nat"

# ---- servers dialed only the observed IP ---------------------------------------
cat "$T"/pub*/log >"$T/publogs"
k1=$(grep -c "autonat-dialing-back peer=$priv1_id addr=" "$T/publogs")
k2=$(grep -c "autonat-dialing-back peer=$priv2_id addr=" "$T/publogs")
check "servers dialed private-1 back $k1 times and private-2 $k2 times" \
  sh -c '[ "$1" -ge 3 ] && [ "$2" -ge 3 ]' _ "$k1" "$k2"
check "every dial-back to private-1 went to NAT A's address" \
  sh -c '! grep "autonat-dialing-back peer=$1 addr=" "$2" | grep -qv "addr=/ip4/$3/"' _ "$priv1_id" "$T/publogs" "$NAT_A"
check "every dial-back to private-2 went to NAT B's address" \
  sh -c '! grep "autonat-dialing-back peer=$1 addr=" "$2" | grep -qv "addr=/ip4/$3/"' _ "$priv2_id" "$T/publogs" "$NAT_B"
check "no server ever dialed a 10.x address" \
  sh -c '! grep -q "autonat-dialing-back .*addr=/ip4/10\." "$1"' _ "$T/publogs"
check "servers answered the private hosts E_DIAL_ERROR" \
  grep -q "autonat-served peer=$priv1_id result=dial-error" "$T/publogs"

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
    echo "# --- $h log (nat/kad lines, last 30)"
    grep ' nat \| kad mode' "$T/$h/log" | tail -n 30 | sed 's/^/# /'
  done
fi
echo "# lab_autonat: $(($(date +%s) - t0)) s"
finish
