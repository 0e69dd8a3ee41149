#!/bin/sh
# Circuit relay v2 through real NAT (issue 10): NAT A and NAT B symmetric
# (no hole punch can work), 20 ms one way on the internet links.
# public-1 runs the relay service ([relay] service = on) and the DHT;
# private-1 ([relay] client = on, no static relays) finds the relay through
# identify, reserves on it and announces <public-1>/p2p/R/p2p-circuit;
# private-2 knows nothing but public-1 and calls private-1 by peer ID: the
# DHT answers with private-1's addresses (its circuit address among them),
# the direct ones fail and the call goes through the relay, over a
# connection both sides list as relayed and limited. When the relay stops,
# private-1's reservation is lost and the circuit goes down. About 20 s;
# root only.
. "$(dirname "$0")/lib.sh"
watchdog 150
t0=$(date +%s)

lab_setup sym sym || bail "lab setup failed: $(tail -n 3 "$T/natlab.log")"
pass "lab: namespaces up, NAT A and NAT B symmetric"
lab impair internet 20 >>"$T/natlab.log" 2>&1 ||
  bail "impair failed: $(tail -n 3 "$T/natlab.log")"
pass "lab: 20 ms one-way delay on the internet links"

# rhost NAME NODE DHTMODE BOOTSTRAP PLUGINS RELAY_INI: start_host (lib.sh)
# with a [relay] section.
rhost() {
  local name=$1 node=$2 ip p
  ip=$(lab addr "$node") || return 1
  mkdir -p "$T/$name/plugins" "$T/$name/data"
  for p in $5; do install_so "$(so "$p")" "$T/$name/plugins/$p.so"; done
  cat >"$T/$name/host.ini" <<INI
[host]
data_dir = $T/$name/data
listen = /ip4/$ip/udp/4001/quic-v1 /ip4/$ip/tcp/4001
control = $T/$name/ctl.sock
log_level = debug
[bootstrap]
peers = $4
connect_timeout = 5s
[dht]
mode = $3
[nat]
treat_as_public = $LAB_PUBLIC
[limits]
call_timeout = 15s
[plugins]
dir = $T/$name/plugins
[relay]
$6
INI
  ip netns exec "$(lab netns "$node")" "$HOST" --config "$T/$name/host.ini" \
    >"$T/$name/out" 2>"$T/$name/log" </dev/null &
  eval "${name}_pid=$!"
  PIDS="$PIDS $!"
  eval "${name}_ctl=$T/$name/ctl.sock"
}
peer_rec() { # peer_rec CTL PEER: PEER's connection record from peers --json
  "$CLI" --control "$1" --json peers | tr '{' '\n' | grep "\"peer\":\"$2\""
}

rhost pub1 public-1 server "" "" "service = on
client = off"
need "public-1 starts (relay service on)" host_ready pub1
rhost priv1 private-1 client "$pub1_addr" hello "service = off
client = on"
rhost priv2 private-2 client "$pub1_addr" "" "service = off
client = off"
need "private-1 starts (relay client on)" host_ready priv1
need "private-2 starts" host_ready priv2
check "private-1 bootstraps from public-1" \
  wait_for "$T/priv1/log" "kad bootstrap-done" 15
check "private-2 bootstraps from public-1" \
  wait_for "$T/priv2/log" "kad bootstrap-done" 15

check "private-1 reserves on public-1, found through identify" \
  wait_for "$T/priv1/log" "relay reservation-ok relay=$pub1_id" 15
PUB1=$(lab addr public-1)
circ="/ip4/$PUB1/udp/4001/quic-v1/p2p/$pub1_id/p2p-circuit"
check "public-1 learned private-1's circuit address ($circ) through identify" \
  sh -c 'i=0; while [ $i -lt 50 ]; do
    "$1" --control "$2" --timeout 5 dht findpeer "$3" 2>/dev/null | grep -qF "$4" && exit 0
    sleep 0.2; i=$((i + 1)); done; exit 1' _ "$CLI" "$priv2_ctl" "$priv1_id" "$circ"

out=$("$CLI" --control "$priv1_ctl" --json nat 2>&1)
check "natpeer-cli nat on private-1 lists the reservation held on public-1 ($out)" \
  sh -c 'echo "$1" | grep -qF "\"held\":[{\"peer\":\"$2\"" &&
         echo "$1" | grep -qF "\"state\":\"ok\"" &&
         echo "$1" | grep -qF "$3"' _ "$out" "$pub1_id" "$circ"

s=$(date +%s)
out=$("$CLI" --control "$priv2_ctl" --timeout 30 call "$priv1_id" hello 2>"$T/err")
el=$(($(date +%s) - s))
check "private-2 calls private-1 by peer ID through the relay (got \"$out\" $(cat "$T/err"), ${el} s)" \
  [ "$out" = "Hello, World!" ]
rec=$(peer_rec "$priv2_ctl" "$priv1_id")
check "private-2's connection to private-1 is relayed and limited ($rec)" \
  sh -c 'echo "$1" | grep -q "\"transport\":\"relay\"" &&
         echo "$1" | grep -q "\"limited\":true" &&
         echo "$1" | grep -qF "/p2p/$2/p2p-circuit"' _ "$rec" "$pub1_id"
rec=$(peer_rec "$priv1_ctl" "$priv2_id")
check "private-1 sees it inbound, relayed and limited ($rec)" \
  sh -c 'echo "$1" | grep -q "\"direction\":\"in\"" &&
         echo "$1" | grep -q "\"transport\":\"relay\"" &&
         echo "$1" | grep -q "\"limited\":true"' _ "$rec"
check "private-2 logged the circuit dial" \
  grep -q "relay dial-ok relay=$pub1_id target=$priv1_id" "$T/priv2/log"
check "private-1 accepted it (stop)" \
  grep -q "relay stop-ok relay=$pub1_id src=$priv2_id" "$T/priv1/log"
out=$("$CLI" --control "$priv2_ctl" --timeout 10 call "$priv1_id" hello 2>"$T/err")
check "a second call reuses the circuit (got \"$out\" $(cat "$T/err"))" \
  [ "$out" = "Hello, World!" ]

kill -TERM "$pub1_pid"
wait "$pub1_pid"
check "the relay exits 0 on SIGTERM" [ $? -eq 0 ]
check "private-1 loses its reservation with the relay" \
  wait_for "$T/priv1/log" "relay reservation-lost relay=$pub1_id" 10
check "the circuit went down with the relay" \
  sh -c 'i=0; while [ $i -lt 50 ]; do
    [ -z "$("$1" --control "$2" --json peers | tr "{" "\n" | grep "\"peer\":\"$3\"")" ] && exit 0
    sleep 0.2; i=$((i + 1)); done; exit 1' _ "$CLI" "$priv2_ctl" "$priv1_id"

for h in priv1 priv2; do eval "kill -TERM \$${h}_pid"; done
for h in priv1 priv2; do
  eval "pid=\$${h}_pid"
  wait "$pid"
  rc=$?
  check "$h exits 0 on SIGTERM (rc=$rc)" [ "$rc" -eq 0 ]
done
check "no sanitizer report in the hosts' logs" \
  sh -c '! grep -q "Sanitizer\|runtime error" "$1"/*/log' _ "$T"
if [ "$failures" -gt 0 ]; then
  for h in pub1 priv1 priv2; do
    echo "# --- $h log (relay/swarm lines, last 40)"
    grep "relay\|swarm\|kad" "$T/$h/log" | tail -n 40 | sed 's/^/# /'
  done
fi
echo "# lab_relay: $(($(date +%s) - t0)) s"
finish
