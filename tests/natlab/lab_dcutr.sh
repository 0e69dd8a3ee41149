#!/bin/sh
# DCUtR hole punching through two real port-restricted NATs (issue 10):
# NAT A and NAT B are Linux MASQUERADE (apdf: endpoint-independent mapping,
# address-and-port-dependent filtering), 20 ms one way on the internet
# links. public-1 runs the relay service and the DHT; private-1 reserves on
# it ([relay] client = on); private-2 knows only public-1 and calls
# private-1 by peer ID. The call reaches private-1 over the relay (limited,
# inbound to private-1), so private-1 starts DCUtR as initiator (B):
# CONNECT with its NAT's address (identify-observed), private-2 (A)
# answers, B punches from its listen port while A dials from its own, and
# a direct QUIC connection replaces the relayed one: A outbound to NAT A's
# public address, B inbound from NAT B's. Calls then go direct and the
# relayed connection is closed. Then the same over TCP only: a simultaneous
# open. With symmetric NATs on both sides the punch fails after 3 attempts
# and the relay stays. About 80 s; root only.
. "$(dirname "$0")/lib.sh"
watchdog 240
t0=$(date +%s)

peer_rec() { # peer_rec CTL PEER: PEER's connection records from peers --json
  "$CLI" --control "$1" --json peers | tr '{' '\n' | grep "\"peer\":\"$2\""
}

# run NATTYPE call|connect: the relay, the two private hosts, then private-2
# reaches private-1 through the relay (a call by ID, or a connect to the
# circuit address).
run() {
  local kind=$1
  lab_setup "$kind" "$kind" || bail "lab setup failed: $(tail -n 3 "$T/natlab.log")"
  pass "$kind: lab up, NAT A and NAT B = $kind"
  lab impair internet 20 >>"$T/natlab.log" 2>&1 ||
    bail "impair failed: $(tail -n 3 "$T/natlab.log")"
  HOST_EXTRA="[relay]
service = on
client = off" start_host pub1 public-1 server "" ""
  need "$kind: public-1 starts (relay service)" host_ready pub1
  # $3 = tcp: the private hosts reach public-1 over TCP only, so identify
  # reports their TCP addresses and the punch is a TCP simultaneous open.
  # (Then the relay is found through identify: a static relay would be
  # dialed beside the bootstrap, and of two TCP dials to one address at
  # once one must leave from an ephemeral port, whose mapping a punch
  # from the listen port does not open.)
  boot=$pub1_addr relays="relays = $pub1_addr"
  if [ "${3:-}" = tcp ]; then
    boot="/ip4/$(lab addr public-1)/tcp/4001/p2p/$pub1_id" relays=""
  fi
  HOST_EXTRA="[relay]
service = off
client = on
$relays" start_host priv1 private-1 client "$boot" hello
  HOST_EXTRA="[relay]
service = off
client = off" start_host priv2 private-2 client "$boot" ""
  need "$kind: private-1 starts" host_ready priv1
  need "$kind: private-2 starts" host_ready priv2
  check "$kind: private-1 reserves on public-1" \
    wait_for "$T/priv1/log" "relay reservation-ok relay=$pub1_id" 15
  check "$kind: private-2 bootstraps from public-1" \
    wait_for "$T/priv2/log" "kad bootstrap-done" 15
  # The circuit address must be what the DHT hands out for private-1.
  circ="/p2p/$pub1_id/p2p-circuit"
  check "$kind: public-1 gives out private-1's circuit address" \
    sh -c 'i=0; while [ $i -lt 50 ]; do
      "$1" --control "$2" --timeout 5 dht findpeer "$3" 2>/dev/null | grep -qF "$4" && exit 0
      sleep 0.2; i=$((i + 1)); done; exit 1' _ "$CLI" "$priv2_ctl" "$priv1_id" "$circ"
  if [ "$2" = call ]; then
    s=$(date +%s)
    out=$("$CLI" --control "$priv2_ctl" --timeout 40 call "$priv1_id" hello 2>"$T/err")
    el=$(($(date +%s) - s))
    check "$kind: private-2 calls private-1 by peer ID (got \"$out\" $(cat "$T/err"), ${el} s)" \
      [ "$out" = "Hello, World!" ]
  else
    # A call would wait for the punch (up to 3 attempts): connect first.
    out=$("$CLI" --control "$priv2_ctl" --timeout 20 connect \
      "/ip4/$(lab addr public-1)/udp/4001/quic-v1$circ/p2p/$priv1_id" 2>&1)
    check "$kind: private-2 connects to private-1 through the relay ($out)" \
      sh -c '"$3" --control "$1" --json peers | tr "{" "\n" | grep "\"peer\":\"$2\"" |
        grep -q "\"transport\":\"relay\""' _ "$priv2_ctl" "$priv1_id" "$CLI"
  fi
  check "$kind: private-1 (relayed connection inbound) starts DCUtR as initiator" \
    wait_for "$T/priv1/log" "dcutr start peer=$priv2_id role=initiator" 10
  check "$kind: private-2 answers as responder" \
    wait_for "$T/priv2/log" "dcutr start peer=$priv1_id role=responder" 10
  check "$kind: private-1 measured the round trip through the relay" \
    wait_for "$T/priv1/log" "dcutr rtt peer=$priv2_id rtt_ms=" 10
}

finish_hosts() {
  for h in pub1 priv1 priv2; do eval "kill -TERM \$${h}_pid"; done
  for h in pub1 priv1 priv2; do
    eval "pid=\$${h}_pid"
    wait "$pid"
    rc=$?
    check "$1: $h exits 0 on SIGTERM (rc=$rc)" [ "$rc" -eq 0 ]
  done
  check "$1: no sanitizer report in the hosts' logs" \
    sh -c '! grep -q "Sanitizer\|runtime error" "$1"/*/log' _ "$T"
  if [ "$failures" -gt 0 ]; then
    for h in pub1 priv1 priv2; do
      echo "# --- $h log (dcutr/quic/swarm/relay lines, last 40)"
      grep "dcutr\|swarm\|relay\|quic" "$T/$h/log" | tail -n 40 | sed 's/^/# /'
    done
  fi
  bash "$NATLAB" teardown "$LAB" >/dev/null 2>&1
  LAB_UP=0
  for h in pub1 priv1 priv2; do mv "$T/$h" "$T/$h.$1"; done
}

# ---- port-restricted cone on both sides: the punch works ---------------------
run apdf call
NAT_A=$(lab addr nat-a) NAT_B=$(lab addr nat-b)
check "apdf: private-2 (A) punches private-1 at NAT A's public address" \
  wait_for "$T/priv2/log" "dcutr punch peer=$priv1_id addrs=/ip4/$NAT_A/udp/4001/quic-v1" 10
check "apdf: private-1 (B) punches private-2 at NAT B's public address" \
  wait_for "$T/priv1/log" "dcutr punch peer=$priv2_id addrs=/ip4/$NAT_B/udp/4001/quic-v1" 10
check "apdf: private-2 reports the direct connection" \
  wait_for "$T/priv2/log" "dcutr direct peer=$priv1_id addr=/ip4/$NAT_A/udp/4001/quic-v1" 20
check "apdf: private-1 reports it too" \
  wait_for "$T/priv1/log" "dcutr direct peer=$priv2_id addr=/ip4/$NAT_B/udp/4001/quic-v1" 20
line=$(grep -m1 "dcutr direct peer=$priv2_id" "$T/priv1/log")
echo "# $line"
"$CLI" --control "$priv1_ctl" nat >"$T/nat1" 2>&1
check "apdf: natpeer-cli nat on private-1 lists the punch ($(grep -A1 "hole punches" "$T/nat1" | tr '\n' ' '))" \
  grep -q "  $priv2_id  direct as initiator, 1 attempt, [0-9]* ms, via /ip4/$NAT_B/udp/4001/quic-v1" "$T/nat1"
"$CLI" --control "$priv2_ctl" nat >"$T/nat2" 2>&1
check "apdf: natpeer-cli nat on private-2 lists it as responder" \
  grep -q "  $priv1_id  direct as responder, 1 attempt" "$T/nat2"
rec=$(peer_rec "$priv2_ctl" "$priv1_id" | grep '"transport":"quic"')
check "apdf: private-2 holds an outbound direct QUIC connection to NAT A's address ($rec)" \
  sh -c 'echo "$1" | grep -qF "\"addr\":\"/ip4/$2/udp/4001/quic-v1\"" &&
         echo "$1" | grep -q "\"direction\":\"out\"" &&
         ! echo "$1" | grep -q "\"limited\":true"' _ "$rec" "$NAT_A"
rec=$(peer_rec "$priv1_ctl" "$priv2_id" | grep '"transport":"quic"')
check "apdf: private-1 has it inbound from NAT B's address ($rec)" \
  sh -c 'echo "$1" | grep -qF "\"addr\":\"/ip4/$2/udp/4001/quic-v1\"" &&
         echo "$1" | grep -q "\"direction\":\"in\""' _ "$rec" "$NAT_B"
check "apdf: the relayed connection is closed after the grace period" \
  sh -c 'i=0; while [ $i -lt 75 ]; do
    "$1" --control "$2" --json peers | tr "{" "\n" | grep "\"peer\":\"$3\"" |
      grep -q "\"transport\":\"relay\"" || exit 0
    sleep 0.2; i=$((i + 1)); done; exit 1' _ "$CLI" "$priv2_ctl" "$priv1_id"
out=$("$CLI" --control "$priv2_ctl" --timeout 10 call "$priv1_id" hello 2>"$T/err")
check "apdf: a second call works over the direct connection (got \"$out\" $(cat "$T/err"))" \
  [ "$out" = "Hello, World!" ]
recs=$(peer_rec "$priv2_ctl" "$priv1_id")
check "apdf: only the direct connection is left ($recs)" \
  sh -c '[ "$(echo "$1" | grep -c .)" -eq 1 ] && echo "$1" | grep -q "\"transport\":\"quic\""' _ "$recs"
check "apdf: no DCUtR failure logged" \
  sh -c '! grep -q "dcutr failed" "$1/priv1/log" "$1/priv2/log"' _ "$T"
finish_hosts apdf

# ---- apdf again, everything over TCP: a simultaneous open -------------------
run apdf call tcp
NAT_A=$(lab addr nat-a) NAT_B=$(lab addr nat-b)
check "tcp: private-2 (A) punches private-1 at NAT A's public TCP address" \
  wait_for "$T/priv2/log" "dcutr punch peer=$priv1_id addrs=/ip4/$NAT_A/tcp/4001" 10
check "tcp: private-2 reports a direct TCP connection" \
  wait_for "$T/priv2/log" "dcutr direct peer=$priv1_id addr=/ip4/$NAT_A/tcp/4001" 20
check "tcp: private-1 reports it too" \
  wait_for "$T/priv1/log" "dcutr direct peer=$priv2_id addr=/ip4/$NAT_B/tcp/4001" 20
grep -m1 "dcutr direct peer=$priv2_id" "$T/priv1/log" | sed 's/^/# /'
rec=$(peer_rec "$priv2_ctl" "$priv1_id" | grep '"transport":"tcp"')
check "tcp: private-2 holds a direct TCP connection to NAT A's address ($rec)" \
  sh -c 'echo "$1" | grep -qF "\"addr\":\"/ip4/$2/tcp/4001\"" &&
         ! echo "$1" | grep -q "\"limited\":true"' _ "$rec" "$NAT_A"
out=$("$CLI" --control "$priv2_ctl" --timeout 10 call "$priv1_id" hello 2>"$T/err")
check "tcp: a call works over it (got \"$out\" $(cat "$T/err"))" \
  [ "$out" = "Hello, World!" ]
finish_hosts tcp

# ---- symmetric NATs on both sides: 3 attempts, then the relay stays ----------
run sym connect
check "sym: private-1 gives up after 3 attempts" \
  wait_for "$T/priv1/log" "dcutr failed peer=$priv2_id attempts=3" 60
grep -m1 "dcutr failed peer=$priv2_id" "$T/priv1/log" | sed 's/^/# /'
"$CLI" --control "$priv1_ctl" nat >"$T/nat1" 2>&1
check "sym: natpeer-cli nat on private-1 lists the failure" \
  grep -q "  $priv2_id  failed as initiator, 3 attempts: no direct connection" "$T/nat1"
check "sym: private-1 made no direct connection" \
  sh -c '! grep -q "dcutr direct" "$1"' _ "$T/priv1/log"
check "sym: private-2 (responder) gives up once no further attempt comes" \
  wait_for "$T/priv2/log" "dcutr failed peer=$priv1_id attempts=3" 25
rec=$(peer_rec "$priv2_ctl" "$priv1_id")
check "sym: private-2 still reaches private-1 over the relay only ($rec)" \
  sh -c 'echo "$1" | grep -q "\"transport\":\"relay\"" &&
         ! echo "$1" | grep -q "\"transport\":\"quic\""' _ "$rec"
out=$("$CLI" --control "$priv2_ctl" --timeout 15 call "$priv1_id" hello 2>"$T/err")
check "sym: calls still work through the relay (got \"$out\" $(cat "$T/err"))" \
  [ "$out" = "Hello, World!" ]
finish_hosts sym

echo "# lab_dcutr: $(($(date +%s) - t0)) s"
finish
