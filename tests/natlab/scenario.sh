#!/bin/sh
# Issue 10's scenario through real NATs: public-1..4 on the lab's internet,
# private-1 behind NAT A and private-2 behind NAT B, both Linux MASQUERADE
# (port-restricted cone), 20 ms one way on every internet link.
# public-1 starts alone; public-2..4 bootstrap from it; private-1
# bootstraps from all four in DHT auto mode and serves the hello plugin as
# "handler_name"; private-2 bootstraps the same way and calls
#   natpeer-cli call <private-1 ID> handler_name
# with no address: "Hello, World!". Then: the answer came over a direct,
# hole-punched connection (peers --json on both private hosts: a direct
# QUIC connection to the other whose remote address is the other NAT's
# public address), and a second call works after all four public hosts are
# stopped. Along the way: AutoNAT's verdicts, the reservations, the circuit
# addresses, `natpeer-cli nat`, and `call -v`'s narration. Root only.
. "$(dirname "$0")/lib.sh"
watchdog 240
# step TEXT: a line for `make demo` (NATLAB_DEMO=1), a TAP comment otherwise.
step() { echo "# step: $*"; }
t0=$(date +%s)

lab_setup apdf apdf || bail "lab setup failed: $(tail -n 3 "$T/natlab.log")"
lab impair internet 20 >>"$T/natlab.log" 2>&1 ||
  bail "impair failed: $(tail -n 3 "$T/natlab.log")"
pass "lab: NAT A and NAT B are MASQUERADE (apdf), 20 ms one way on the internet"
step "lab: private-1 behind NAT A ($(lab addr nat-a)), private-2 behind NAT B ($(lab addr nat-b)), public-1..4 on 192.0.2.0/24, 20 ms one way"
NAT_A=$(lab addr nat-a) NAT_B=$(lab addr nat-b)

# AutoNAT asks early in the lab (the default waits 15 s for peers).
COMMON="[nat]
autonat_boot_delay = 1s"
HOST_EXTRA="$COMMON" start_host pub1 public-1 auto "" ""
need "public-1 starts alone" host_ready pub1
for i in 2 3 4; do
  HOST_EXTRA="$COMMON" start_host "pub$i" "public-$i" auto "$pub1_addr" ""
done
for i in 2 3 4; do need "public-$i starts, bootstrapping from public-1" host_ready "pub$i"; done
boot="$pub1_addr $pub2_addr $pub3_addr $pub4_addr"
HOST_EXTRA="$COMMON
[plugin.hello]
protocol = handler_name" start_host priv1 private-1 auto "$boot" hello
HOST_EXTRA="$COMMON" start_host priv2 private-2 auto "$boot" ""
need "private-1 starts (hello as handler_name)" host_ready priv1
need "private-2 starts" host_ready priv2
step "bootstrap: public-1 alone, public-2..4 from it, private-1 and private-2 from all four"

# ---- bootstrap and reachability -------------------------------------------------
for i in 1 2 3 4; do
  check "public-$i: AutoNAT says public" \
    wait_for "$T/pub$i/log" "nat reachability=public" 30
done
for pv in priv1 priv2; do
  check "$pv: AutoNAT says private (dial-backs are filtered by the NAT)" \
    wait_for "$T/$pv/log" "nat reachability=private" 40
  check "$pv: stays a DHT client" sh -c '! grep -q "kad mode-server" "$1"' _ "$T/$pv/log"
done
step "reachability: public-1..4 public, private-1 and private-2 private (AutoNAT dial-backs)"

# ---- reservations ---------------------------------------------------------------
check "private-1 holds a relay reservation" \
  wait_for "$T/priv1/log" "relay reservation-ok" 30
nat=$("$CLI" --control "$priv1_ctl" --json nat)
echo "$nat" >"$T/priv1.nat.json"
check "natpeer-cli nat on private-1: private, a reservation, a confirmed address at NAT A ($nat)" \
  sh -c 'echo "$1" | grep -q "\"reachability\":\"private\"" &&
         echo "$1" | grep -q "\"held\":\[{\"peer\"" &&
         echo "$1" | grep -q "\"confirmed\":\[\"/ip4/$2/udp/"' _ "$nat" "$NAT_A"
step "reservation: $(grep -m1 "relay reservation-ok" "$T/priv1/log" | sed 's/^.*relay reservation-ok/private-1 holds a relay slot:/')"
circ=$("$CLI" --control "$priv1_ctl" id | grep -c "/p2p-circuit")
check "private-1 announces circuit addresses ($circ)" [ "$circ" -ge 1 ]

# ---- the call ---------------------------------------------------------------------
s=$(date +%s)
out=$("$CLI" --control "$priv2_ctl" --timeout 60 call -v "$priv1_id" handler_name 2>"$T/call1.err")
el=$(($(date +%s) - s))
cat "$T/call1.err" >&2
sed 's/^/# step: call -v: /' "$T/call1.err"
step "reply: \"$out\" after ${el}s"
check "private-2 calls handler_name on private-1 by peer ID: \"$out\" in ${el}s" \
  [ "$out" = "Hello, World!" ]
check "call -v narrated the lookup, the relay and the punch" \
  sh -c 'grep -q "^find:" "$1" && grep -q "^relay:" "$1" && grep -q "^punch:" "$1" && grep -q "^reply:.*direct" "$1"' _ "$T/call1.err"

# peers --json: {"peers":[{"peer":"ID","addr":"/ip4/...","direction":...,"limited":false,"path":"direct",...},...]}
direct_to() { # direct_to CTL PEER: remote address of a direct connection to PEER
  "$CLI" --control "$1" --json peers | tr '{' '\n' | grep "\"peer\":\"$2\"" |
    grep '"path":"direct"' | sed -n 's|.*"addr":"\([^"]*\)".*|\1|p' | head -n 1
}
a=$(direct_to "$priv2_ctl" "$priv1_id")
check "private-2 has a direct connection to private-1 at NAT A's public address ($a)" \
  sh -c 'case $1 in "/ip4/$2/udp/"[0-9]*"/quic-v1") exit 0;; esac; exit 1' _ "$a" "$NAT_A"
a=$(direct_to "$priv1_ctl" "$priv2_id")
check "private-1 has a direct connection to private-2 at NAT B's public address ($a)" \
  sh -c 'case $1 in "/ip4/$2/udp/"[0-9]*"/quic-v1") exit 0;; esac; exit 1' _ "$a" "$NAT_B"
check "private-1 logged the hole punch as the DCUtR initiator" \
  grep -q "dcutr direct peer=$priv2_id" "$T/priv1/log"
nat=$("$CLI" --control "$priv1_ctl" nat)
echo "$nat" >&2
check "natpeer-cli nat on private-1 lists the punch to private-2" \
  sh -c 'echo "$1" | grep -q "$2  direct"' _ "$nat" "$priv2_id"

# ---- without the public hosts -------------------------------------------------------
for i in 1 2 3 4; do eval "kill \$pub${i}_pid"; done
for i in 1 2 3 4; do eval "wait \$pub${i}_pid" 2>/dev/null; done
pass "all four public hosts stopped"
step "all four public hosts stopped"
out=$("$CLI" --control "$priv2_ctl" --timeout 20 call "$priv1_id" handler_name 2>"$T/call2.err")
check "a second call works without them: \"$out\" $(cat "$T/call2.err")" \
  [ "$out" = "Hello, World!" ]
step "second call without them: \"$out\""
a=$(direct_to "$priv2_ctl" "$priv1_id")
check "still over the direct connection ($a)" \
  sh -c 'case $1 in "/ip4/$2/udp/"[0-9]*"/quic-v1") exit 0;; esac; exit 1' _ "$a" "$NAT_A"

echo "# scenario took $(($(date +%s) - t0)) s"
finish
