#!/bin/sh
# natpeer's Kademlia DHT against js-libp2p's @libp2p/kad-dht (server mode,
# /ipfs/kad/1.0.0, loopback addresses kept), both directions: peer routing
# by ID alone through a natpeer bootstrap peer, /pk/ records put on one side
# and read on the other, provider records announced on one side and found
# on the other. TAP.
#
#   natpeer A   the bootstrap peer of everyone
#   natpeer B   bootstraps from A; puts record R1 and provides P1 before js
#               exists, so js can only learn them from natpeer
#   js J        tests/interop/kad.mjs, bootstraps from A; finds B by ID and
#               calls its hello; reads R1; finds B as provider of P1; puts R2
#               and provides P2
#   natpeer C   starts after that, bootstraps from A; finds J by ID and calls
#               js.hello; reads R2; finds J as provider of P2
#   js Q        QUIC only, bootstraps from A's QUIC address; finds C by ID and
#               calls its hello; reads R1
#
# The js peer and its pinned dependencies come from npm (tests/interop;
# `npm ci` on demand): without npm or node >= 22 the whole file is skipped.
#
# By hand: top_srcdir=$PWD top_builddir=$PWD sh tests/integration/js_kad.sh
# (absolute paths: jsdeps.sh changes directory; KEEP=1 keeps the folder).
: "${top_builddir:?}" "${top_srcdir:?}"
set -u
here=$top_srcdir/tests/interop
HOST=$top_builddir/host/natpeer-host
CLI=$top_builddir/host/natpeer-cli
PLUG=$top_builddir/plugins/.libs
. "$here/jsdeps.sh"
np_js_deps_or_exit "$here"

T=$(mktemp -d "${TMPDIR:-/tmp}/np-js-kad-XXXXXX") || exit 99
PIDS=""
n=0
failures=0
cleanup() {
  exec 7>&- 8>&- 2>/dev/null # the js peers' stdin: EOF makes them stop
  for p in $PIDS; do kill -TERM "$p" 2>/dev/null; done
  for p in $PIDS; do
    i=0
    while kill -0 "$p" 2>/dev/null && [ $i -lt 30 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL "$p" 2>/dev/null
  done
  if [ "${KEEP:-0}" = 1 ]; then echo "# kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
trap '' PIPE # a js peer gone: writes to its stdin fail, jsq times out
. "$here/taplib.sh"
kadjs() { "$NP_NODE" "$here/kad.mjs" "$@"; }
# unhex HEX FILE: the bytes
unhex() { "$NP_NODE" -e 'process.stdout.write(Buffer.from(process.argv[1], "hex"))' "$1" >"$2"; }
# cli NAME ARGS...: natpeer-cli on natpeer host NAME (bounded)
cli() { _h=$1; shift; timeout 30 "$CLI" --timeout 25 --control "$T/$_h/ctl.sock" "$@"; }

# start_np NAME BOOT: natpeer-host NAME on TCP and QUIC with the hello
# plugin, [dht] mode = server, [bootstrap] peers = BOOT; sets NAME_id,
# NAME_tcp (its TCP multiaddr with /p2p/)
start_np() {
  mkdir -p "$T/$1/data" "$T/$1/plugins"
  cp "$PLUG/hello.so" "$T/$1/plugins/"
  cat >"$T/$1/natpeer.ini" <<EOF
[host]
data_dir = $T/$1/data
listen = /ip4/127.0.0.1/tcp/0 /ip4/127.0.0.1/udp/0/quic-v1
control = $T/$1/ctl.sock
log_level = debug
[plugins]
dir = $T/$1/plugins
[dht]
mode = server
[bootstrap]
peers = $2
EOF
  "$HOST" --config "$T/$1/natpeer.ini" >"$T/$1/out" 2>"$T/$1/log" &
  PIDS="$PIDS $!"
  eval "${1}_pid=$!"
  _i=0
  while [ $_i -lt 100 ] && ! grep -q '/tcp/.*/p2p/' "$T/$1/out" 2>/dev/null; do sleep 0.1; _i=$((_i + 1)); done
  eval "${1}_id=\$(sed -n 's/^Peer ID: //p' \"$T/$1/out\")"
  eval "${1}_tcp=\$(grep -m1 '^/ip4/127.0.0.1/tcp/.*/p2p/' \"$T/$1/out\")"
  eval "[ -n \"\$${1}_tcp\" ]"
}
# connected NAME PEER: natpeer host NAME lists PEER among its peers (<= 10 s)
connected() {
  _i=0
  while [ $_i -lt 50 ]; do
    cli "$1" --json peers 2>/dev/null | grep -q "\"peer\":\"$2\"" && return 0
    sleep 0.2; _i=$((_i + 1))
  done
  return 1
}
# join NAME: NAME connects to A by itself ([bootstrap] peers)
join() { connected "$1" "$A_id"; }

# start_js NAME FD TRANSPORT BOOT: kad.mjs serve as js peer NAME, its stdin
# a FIFO open on FD (7 or 8); sets NAME_pid and NAME_fd, waits (<= 30 s)
# for its ready line and sets READY to it (not in $(...): the FIFO stays
# open in this shell)
start_js() {
  mkfifo "$T/$1.in"
  "$NP_NODE" "$here/kad.mjs" serve --transport "$3" --bootstrap "$4" --max-lifetime 240 <"$T/$1.in" >"$T/$1.out" 2>"$T/$1.err" &
  eval "${1}_pid=$!"
  PIDS="$PIDS $!"
  eval "exec $2>\"\$T/$1.in\""
  eval "${1}_fd=$2"
  _i=0
  while [ $_i -lt 300 ] && kill -0 "$(eval echo "\$${1}_pid")" 2>/dev/null &&
        ! grep -q '"event":"ready"' "$T/$1.out"; do sleep 0.1; _i=$((_i + 1)); done
  READY=$(grep -m1 '"event":"ready"' "$T/$1.out") || READY='{"error":"js peer not ready in 30 s"}'
}
# jsq SECONDS BODY: send {"id": N, BODY} to js peer $JS (J unless set),
# print its answer (N counts in a file: jsq runs in $(...) subshells)
JS=J
echo 0 >"$T/jsq.n"
jsq() {
  q=$(($(cat "$T/jsq.n") + 1))
  echo $q >"$T/jsq.n"
  eval "_fd=\$${JS}_fd _pid=\$${JS}_pid"
  eval "printf '{\"id\":%d,%s}\\n' \"\$q\" \"\$2\" >&$_fd"
  _i=0
  while [ $_i -lt $(($1 * 10)) ]; do
    _l=$(grep -m1 "^{\"id\":$q," "$T/$JS.out") && { echo "$_l"; return 0; }
    kill -0 "$_pid" 2>/dev/null || break
    sleep 0.1; _i=$((_i + 1))
  done
  echo "{\"id\":$q,\"ok\":false,\"error\":\"no answer (in $1 s, or the js peer is gone)\"}"
}

# --- natpeer A and B; B puts R1 and provides P1 before any js peer exists ------
start_np A "" || { echo "Bail out! natpeer A did not start: $(tail -n 5 "$T/A/log")"; exit 99; }
A_tcp=$A_tcp
if start_np B "$A_tcp" && join B; then pass "natpeer B joins through A"
else fail "natpeer B joins through A"; diag "$(tail -n 10 "$T/B/log")"; fi
R1=$(kadjs pk); R1_key=$(jget "$R1" j.key); R1_val=$(jget "$R1" j.value); R1_peer=$(jget "$R1" j.peer)
unhex "$R1_val" "$T/r1.val"
P1=$(kadjs cid "provided by natpeer B $$"); P1_cid=$(jget "$P1" j.cid)
out=$(cli B dht put "/pk/$R1_peer" "@$T/r1.val" 2>&1); rc=$?
if [ $rc -eq 0 ]; then pass "natpeer B puts a /pk/ record"; else fail "natpeer B puts a /pk/ record"; diag "rc=$rc $out"; fi
out=$(cli B dht provide "$P1_cid" 2>&1); rc=$?
if [ $rc -eq 0 ]; then pass "natpeer B provides a CID"; else fail "natpeer B provides a CID"; diag "rc=$rc $out"; fi

# --- js J bootstraps from A -------------------------------------------------------
start_js J 7 tcp "$A_tcp"
ready=$READY
J_id=$(jget "$ready" j.peer)
J_tcp=$(head -n 1 "$T/J.out")
check "js kad-dht (server mode) bootstraps from natpeer A: A enters its routing table" "$ready" \
  "j.mode === 'server' && j.table >= 1 && j.errors.length === 0"
[ -n "$J_id" ] || diag "js stderr: $(tail -n 5 "$T/J.err")"
out=$(jsq 10 '"op":"info"')
check "js's routing table holds natpeer A and not B (js was given only A's address)" "$out" \
  "j.ok && j.table.includes('$A_id') && !j.table.includes('$B_id')"

# --- js -> natpeer ---------------------------------------------------------------------
out=$(jsq 30 "\"op\":\"findPeer\",\"peer\":\"$B_id\",\"call\":\"hello\"")
check "js finds natpeer B by peer ID alone (FIND_NODE answered by natpeer A)" "$out" \
  "j.ok && j.found && j.knownBefore === false && j.connectedBefore === false && j.queried >= 1 && j.addrs.some(a => a.startsWith('/ip4/127.0.0.1/'))"
check "js calls hello on natpeer B at the address the DHT gave" "$out" "j.response === 'Hello, World!'"
out=$(jsq 30 '"op":"closest"')
check "js's self-lookup is answered by natpeer: the closest peers are A and B" "$out" \
  "j.ok && j.peers.includes('$A_id') && j.peers.includes('$B_id') && j.errors.length === 0"
out=$(jsq 30 "\"op\":\"get\",\"key\":\"$R1_key\"")
check "js reads the /pk/ record natpeer B put (GET_VALUE answered by natpeer)" "$out" \
  "j.ok && j.found && j.value === '$R1_val' && j.localBefore === false && j.sources.some(p => p === '$A_id' || p === '$B_id')"
out=$(jsq 30 "\"op\":\"findProviders\",\"cid\":\"$P1_cid\"")
check "js finds natpeer B as provider of the CID B provided, with B's addresses" "$out" \
  "j.ok && j.providers.some(p => p.peer === '$B_id' && p.addrs.some(a => a.startsWith('/ip4/127.0.0.1/')))"

# --- js puts R2 and provides P2 ------------------------------------------------------
R2=$(kadjs pk); R2_key=$(jget "$R2" j.key); R2_val=$(jget "$R2" j.value); R2_peer=$(jget "$R2" j.peer)
P2=$(kadjs cid "provided by js $$"); P2_cid=$(jget "$P2" j.cid)
out=$(jsq 30 "\"op\":\"put\",\"key\":\"$R2_key\",\"value\":\"$R2_val\"")
check "js puts a /pk/ record: natpeer A and B acknowledge PUT_VALUE" "$out" "j.ok && j.stored >= 2 && j.errors.length === 0"
# R3's key with R2's value: a /pk/ record that does not hash to its key
R3=$(kadjs pk); R3_key=$(jget "$R3" j.key); R3_peer=$(jget "$R3" j.peer)
out=$(jsq 30 "\"op\":\"put\",\"key\":\"$R3_key\",\"value\":\"$R2_val\"")
check "natpeer A and B refuse a /pk/ record from js whose value is another key (none acknowledges)" "$out" \
  "j.ok && j.stored === 0 && j.errors.length >= 2"
out=$(jsq 30 "\"op\":\"provide\",\"cid\":\"$P2_cid\"")
check "js provides a CID: ADD_PROVIDER written to natpeer A and B (no answer in the protocol: C checks below)" "$out" "j.ok && j.sent >= 2 && j.errors.length === 0"

# --- natpeer C (new, knows only A) -> js ----------------------------------------
if start_np C "$A_tcp" && join C; then pass "natpeer C joins through A"
else fail "natpeer C joins through A"; diag "$(tail -n 10 "$T/C/log")"; fi
# a call to a peer with no known address looks it up
out=$(cli C call "$J_id" js.hello 2>&1); rc=$?
if [ $rc -eq 0 ] && [ "$out" = "Hello from js-libp2p" ]; then pass "natpeer C calls js.hello on the js peer by peer ID alone"
else fail "natpeer C calls js.hello on the js peer by peer ID alone"; diag "rc=$rc $out"; fi
out=$(cli C dht findpeer "$J_id" 2>&1); rc=$?
if [ $rc -eq 0 ] && [ "$(echo "$out" | head -n 1)" = "$J_id" ] && echo "$out" | grep -q "^  ${J_tcp%/p2p/*}\$"; then
  pass "natpeer C finds js by peer ID (dht findpeer), with its TCP address"
else fail "natpeer C finds js by peer ID (dht findpeer), with its TCP address"; diag "rc=$rc $out"; fi
out=$(cli C --hex dht get "/pk/$R2_peer" 2>&1); rc=$?
if [ $rc -eq 0 ] && [ "$out" = "$R2_val" ]; then pass "natpeer C reads the /pk/ record js put"
else fail "natpeer C reads the /pk/ record js put"; diag "rc=$rc want $R2_val got $out"; fi
out=$(cli C dht get "/pk/$R3_peer" 2>&1); rc=$?
if [ $rc -eq 1 ]; then pass "natpeer C does not find the bad /pk/ record (exit 1: $out)"
else fail "natpeer C does not find the bad /pk/ record"; diag "rc=$rc $out"; fi
out=$(cli C dht findprovs "$P2_cid" 2>&1); rc=$?
if [ $rc -eq 0 ] && echo "$out" | grep -q "$J_id"; then pass "natpeer C finds js as provider of the CID js provided"
else fail "natpeer C finds js as provider of the CID js provided"; diag "rc=$rc $out"; fi

# --- a js peer on QUIC only ----------------------------------------------------
# Q bootstraps from A's QUIC address, finds C (which it was never told of)
# and calls its hello over QUIC, and reads R1 from natpeer.
A_quic=$(grep -m1 '^/ip4/127.0.0.1/udp/.*/quic-v1/p2p/' "$T/A/out")
start_js Q 8 quic "$A_quic"
check "a QUIC-only js peer bootstraps from natpeer A's QUIC address" "$READY" \
  "j.mode === 'server' && j.table >= 1 && j.errors.length === 0"
JS=Q
out=$(jsq 30 "\"op\":\"findPeer\",\"peer\":\"$C_id\",\"call\":\"hello\"")
check "the QUIC js peer finds natpeer C by peer ID alone and calls its hello over QUIC" "$out" \
  "j.ok && j.found && j.knownBefore === false && j.addrs.some(a => a.endsWith('/quic-v1')) && j.response === 'Hello, World!'"
out=$(jsq 30 "\"op\":\"get\",\"key\":\"$R1_key\"")
check "the QUIC js peer reads the /pk/ record natpeer B put, from natpeer" "$out" \
  "j.ok && j.value === '$R1_val' && j.localBefore === false && j.sources.some(p => ['$A_id', '$B_id', '$C_id'].includes(p))"

for h in A B C; do
  eval "p=\$${h}_pid"
  if kill -0 "$p" 2>/dev/null; then pass "natpeer $h still running"; else fail "natpeer $h still running"; diag "$(tail -n 20 "$T/$h/log")"; fi
done
[ $failures -eq 0 ] || { diag "natpeer A log tail:"; diag "$(tail -n 30 "$T/A/log")"; diag "js stderr:"; diag "$(tail -n 10 "$T/J.err")"; }
echo "1..$n"
[ $failures -eq 0 ]
