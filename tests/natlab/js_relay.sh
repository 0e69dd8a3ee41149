#!/bin/sh
# js-libp2p's circuit relay v2 and DCUtR in the NAT lab (the js peers of
# js_matrix.sh, tests/interop/natpeer-js.mjs): NAT A and NAT B = apdf, 20 ms
# one way on the internet links. A js relay on public-1; a js private host on
# private-1 reserves on it and serves handler_name; a js caller on private-2
# calls it through the circuit address. Checks the relay path end to end and
# that DCUtR runs over the relayed connection (whether it punches is the
# matrix's business: see matrix.md). About 15 s; root and npm only.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/jslib.sh"
js_deps
watchdog 120

lab_setup apdf apdf || bail "lab setup failed: $(tail -n 3 "$T/natlab.log")"
lab impair internet 20 >>"$T/natlab.log" 2>&1 || bail "impair failed: $(tail -n 3 "$T/natlab.log")"
jtrue() { # jtrue JSON EXPR: exit 0 when EXPR (over j) is true
  "$NP_NODE" -e 'const j = JSON.parse(process.argv[1]); process.exit(eval(process.argv[2]) ? 0 : 1)' "$1" "$2" 2>/dev/null
}

need "js relay starts on public-1" js_relay relay public-1
ready=$(grep -m1 '"event":"ready"' "$T/relay.out")
check "js relay announces its lab addresses, with the documentation prefixes public to js" \
  jtrue "$ready" 'j.addrs.includes("/ip4/192.0.2.11/udp/4001/quic-v1/p2p/" + j.peer) && ["192.0.2.0/24","198.51.100.0/24","203.0.113.0/24"].every(p => j.labPublic.includes(p))'

need "js private host on private-1 gets a reservation on the relay" js_private callee private-1 "$RELAY_MA"
wait_for "$T/relay.out" '"event":"reservation-served"' 5 >/dev/null 2>&1
check "the relay holds that reservation (js default limit: 2 min as 120000 ms, 128 KiB)" \
  jtrue "$(grep -m1 '"event":"reservation-served"' "$T/relay.out")" "j.peer === '$PRIVATE_ID' && j.limit.duration === 120000 && j.limit.data === '131072'"
check "the private host's circuit address is RELAY/p2p-circuit/p2p/ITSELF" \
  grep -qF "\"addr\":\"$RELAY_MA/p2p-circuit/p2p/$PRIVATE_ID\"" "$T/callee.out"
# the relay sees it at NAT A's public address (and the js dial socket is not the listener's)
check "the relay sees the private host at NAT A's public address" \
  grep -q "\"remote\":\"$PRIVATE_ID\",\"addr\":\"/ip4/$(lab addr nat-a)/udp/" "$T/relay.out"

res=$(js_caller caller private-2 "$RELAY_MA" "$PRIVATE_ID" callee)
echo "# caller: $res"
check "js caller on private-2: handler_name answers Hello, World! through the relay" \
  jtrue "$res" 'j.ok === true && j.response === "Hello, World!"'
check "the call went over a limited circuit connection" \
  jtrue "$res" 'j.relayedLimited === true && j.relayedAddr.includes("/p2p-circuit/p2p/")'
check "DCUtR ran over the relayed connection: the caller (A) received B's CONNECT" \
  jtrue "$res" 'j.dcutrAttemptsSeen >= 1'
check "the private host (B) started DCUtR and logged its outcome" \
  grep -q '"event":"dcutr".*"msg":"B sending connect to' "$T/callee.out"
# no direct connection here is js's own limitation (matrix.md); if one
# appears, it must be a real direct one whose second call works
if jtrue "$res" 'j.direct === true'; then
  check "direct connection: second call answers over it" jtrue "$res" 'j.secondCall === "Hello, World!" && !j.directAddr.includes("p2p-circuit")'
else
  echo "# no direct connection (js-libp2p, expected: $(echo "$res" | sed -n 's/.*"reason":"\([^"]*\)".*/\1/p' | cut -c1-200))"
fi

check "js private host exits on SIGTERM within 3 s" js_stop callee
check "js relay exits on SIGTERM within 3 s" js_stop relay
finish
