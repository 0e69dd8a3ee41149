#!/bin/sh
# The plain path (issue 10): behind endpoint-independent, unfiltered NATs
# (full cone, "eif"), a private host's confirmed observed address is
# reachable as it is. private-1 learns NAT A's address from four observers
# and announces it; private-2 finds private-1 by ID through the DHT and
# dials that address directly: the call is answered over a direct
# connection private-2 opened itself, with no circuit in between. Root only.
. "$(dirname "$0")/lib.sh"
watchdog 180

lab_setup eif eif || bail "lab setup failed: $(tail -n 3 "$T/natlab.log")"
lab impair internet 20 >>"$T/natlab.log" 2>&1 ||
  bail "impair failed: $(tail -n 3 "$T/natlab.log")"
pass "lab: NAT A and NAT B are full cone (eif), 20 ms one way"
NAT_A=$(lab addr nat-a)

COMMON="[nat]
autonat_boot_delay = 1s"
HOST_EXTRA="$COMMON" start_host pub1 public-1 auto "" ""
need "public-1 starts" host_ready pub1
for i in 2 3 4; do HOST_EXTRA="$COMMON" start_host "pub$i" "public-$i" auto "$pub1_addr" ""; done
for i in 2 3 4; do need "public-$i starts" host_ready "pub$i"; done
boot="$pub1_addr $pub2_addr $pub3_addr $pub4_addr"
HOST_EXTRA="$COMMON
[plugin.hello]
protocol = handler_name" start_host priv1 private-1 auto "$boot" hello
HOST_EXTRA="$COMMON" start_host priv2 private-2 auto "$boot" ""
need "private-1 starts" host_ready priv1
need "private-2 starts" host_ready priv2

a=$(wait_for "$T/priv1/log" "nat external-address-confirmed addr=/ip4/$NAT_A/udp/" 20 >/dev/null 2>&1 &&
  sed -n "s|.*nat external-address-confirmed addr=\(/ip4/$NAT_A/udp/[0-9]*/quic-v1\).*|\1|p" "$T/priv1/log" | head -n 1)
check "private-1 confirms its address at NAT A (${a:-none})" [ -n "$a" ]
check "private-1 announces it" \
  sh -c '"$1" --control "$2" id | grep -q "^addr *$3/p2p/"' _ "$CLI" "$priv1_ctl" "$a"
check "full cone: AutoNAT finds private-1 public (the dial-back gets through)" \
  wait_for "$T/priv1/log" "nat reachability=public" 40

out=$("$CLI" --control "$priv2_ctl" --timeout 30 call -v "$priv1_id" handler_name 2>"$T/call.err")
cat "$T/call.err" >&2
check "private-2 calls private-1 by ID: \"$out\"" [ "$out" = "Hello, World!" ]
check "call -v: straight to a direct connection, no relay" \
  sh -c 'grep -q "^direct: connected" "$1" && ! grep -q "^relay:" "$1"' _ "$T/call.err"
conn=$("$CLI" --control "$priv2_ctl" --json peers | tr '{' '\n' | grep "\"peer\":\"$priv1_id\"")
check "private-2 dialed private-1's announced address itself ($conn)" \
  sh -c 'echo "$1" | grep -q "\"addr\":\"$2\",\"direction\":\"out\"" && echo "$1" | grep -q "\"path\":\"direct\""' _ "$conn" "$a"
check "no circuit was dialed" sh -c '! grep -q "relay dial-ok" "$1"' _ "$T/priv2/log"
finish
