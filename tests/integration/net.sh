#!/bin/sh
# Three hosts on loopback over QUIC: calls by peer ID through natpeer-cli,
# protocol errors, peer-ID verification, the 4 MiB limit, 1,000 concurrent
# calls, a callee killed mid-call, and a plugin's remote call from a timer.
. "$(dirname "$0")/lib.sh"
CLI="$top_builddir/host/natpeer-cli"
CALLMANY="$top_builddir/tests/integration/callmany"

start_host() { # start_host NAME -> sets ${NAME}_pid, ${NAME}_addr, ${NAME}_id, ${NAME}_ctl
  name=$1
  mkdir -p "$T/$name/plugins" "$T/$name/data"
  install_so "$(so hello)" "$T/$name/plugins/hello.so"
  install_so "$(so echo)" "$T/$name/plugins/echo.so"
  install_so "$(so tp_good)" "$T/$name/plugins/tp_good.so"
  cat >"$T/$name/host.ini" <<INI
[host]
data_dir = $T/$name/data
listen = /ip4/127.0.0.1/udp/0/quic-v1
control = $T/$name/ctl.sock
log_level = debug
[limits]
call_timeout = 20s
max_streams_per_protocol = ${MAXPP:-1024}
[plugins]
dir = $T/$name/plugins
INI
  "$HOST" --config "$T/$name/host.ini" >"$T/$name/out" 2>"$T/$name/log" &
  eval "${name}_pid=$!"
  PIDS="$PIDS $!"
  wait_for "$T/$name/out" "/quic-v1/p2p/" 5 || return 1
  eval "${name}_addr=\$(grep -m1 /quic-v1/p2p/ \"$T/$name/out\")"
  eval "${name}_id=\$(sed -n 's/^Peer ID: //p' \"$T/$name/out\")"
  eval "${name}_ctl=$T/$name/ctl.sock"
}

check "host a starts" start_host a
check "host b starts" start_host b
check "host c starts" start_host c
check "the banner shows the bound address and peer ID" sh -c 'case "$1" in /ip4/127.0.0.1/udp/*/quic-v1/p2p/$2) exit 0;; esac; exit 1' _ "$a_addr" "$a_id"
cli() { "$CLI" --control "$1" "$@"; }
B() { "$CLI" --control "$b_ctl" "$@"; }

out=$(B connect "$a_addr" 2>"$T/err"); rc=$?
check "b connects to a by multiaddr (rc=$rc $(cat "$T/err"))" [ $rc -eq 0 ]
out=$(B call "$a_id" hello 2>"$T/err"); rc=$?
check "natpeer-cli call of hello returns Hello, World! (got \"$out\" $(cat "$T/err"))" [ "$out" = "Hello, World!" ]
check "a saw the call arrive over QUIC from b" grep -q "conn-open peer=$b_id" "$T/a/log"

B call "$a_id" no.such.proto >/dev/null 2>"$T/err"; rc=$?
check "an unknown protocol exits 1 (rc=$rc: $(cat "$T/err"))" [ $rc -eq 1 ]
check "saying the protocol is not supported by the peer" grep -q "protocol not supported by peer" "$T/err"

out=$(B --json peers); rc=$?
check "peers lists a with direction and agent ($out)" sh -c 'echo "$1" | grep -q "\"peer\":\"$2\".*\"direction\":\"out\".*\"agent\":\"natpeer/"' _ "$out" "$a_id"
check "peers shows the transport, direct ($out)" sh -c 'echo "$1" | grep -q "\"transport\":\"quic\",\"limited\":false"' _ "$out"
out=$(B peers); rc=$?
check "peers table has PATH and VIA columns: direct quic ($out)" sh -c 'echo "$1" | grep -q "^PEER .*PATH .*VIA" && echo "$1" | grep -q " out  direct  quic "' _ "$out"
out=$(B ping "$a_id"); rc=$?
check "ping reports an RTT ($out)" sh -c '[ $0 -eq 0 ] && echo "$1" | grep -q "rtt="' $rc "$out"

# Wrong /p2p/ ID: c (not connected to a) dials b's address claiming a's ID.
b_port_addr=${b_addr%/p2p/*}
out=$("$CLI" --control "$c_ctl" connect "$b_port_addr/p2p/$a_id" 2>"$T/err"); rc=$?
check "a dial whose /p2p/ ID does not match the key presented is refused (rc=$rc: $(cat "$T/err"))" [ $rc -ne 0 ]
check "the log names the expected and the presented ID" grep -q "expected=$a_id.*presented=$b_id\|expected $a_id.*presented $b_id" "$T/c/log"

# 4 MiB echoes intact; 4 MiB + 1 is refused naming the limit.
head -c 4194304 /dev/urandom >"$T/big"
B --timeout 60 --hex call "$a_id" echo - <"$T/big" >"$T/big.hex" 2>"$T/err"; rc=$?
check "a 4 MiB payload echoes back intact (rc=$rc)" sh -c '[ "$(od -An -v -tx1 "$1" | tr -d " \n")" = "$(tr -d "\n" <"$2")" ]' _ "$T/big" "$T/big.hex"
head -c 1 /dev/urandom >>"$T/big"
B call "$a_id" echo - <"$T/big" >/dev/null 2>"$T/err"; rc=$?
check "4 MiB + 1 is refused (rc=$rc)" [ $rc -eq 1 ]
check "with a message naming the limit ($(cat "$T/err"))" grep -q "max_message" "$T/err"

out=$("$CALLMANY" "$b_ctl" "$a_id" echo 1000 32 2>&1); rc=$?
check "1,000 concurrent calls are all answered ($out)" [ $rc -eq 0 ]

# A plugin on c calls a's hello from a timer.
"$CLI" --control "$c_ctl" connect "$a_addr" >/dev/null 2>&1
out=$("$CLI" --control "$c_ctl" call "$c_id" tp.selfcall "$a_id" 2>"$T/err"); rc=$?
check "a plugin's remote call from a timer works (got \"$out\" $(cat "$T/err"))" [ "$out" = "Hello, World!" ]

# [limits] max_streams_per_protocol: d serves at most 2 echo calls at once.
MAXPP=2 start_host d
B connect "$d_addr" >/dev/null 2>&1
out=$("$CALLMANY" "$b_ctl" "$d_id" echo 200 32 2>&1)
check "calls over max_streams_per_protocol are refused, the rest answered ($out)" sh -c '
  echo "$1" | grep -q "answered=[1-9][0-9]* errors=[1-9]"' _ "$out"
check "the refusals are logged (at info, with the key)" grep -q "info swarm stream-refused peer=$b_id proto=\"echo\" reason=\"max_streams_per_protocol\"" "$T/d/log"

# a gains a protocol (plugin added, SIGHUP): b learns it through identify/push.
n0=$(grep -c "identified peer=$a_id" "$T/b/log")
install_so "$(so tp_old_minor)" "$T/a/plugins/tp_old_minor.so"
kill -HUP "$a_pid"
check "a loads the new plugin" wait_for "$T/a/log" "plugin loaded name=tp_old_minor"
i=0; while [ "$(grep -c "identified peer=$a_id" "$T/b/log")" -le "$n0" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
check "b hears a's identify/push with one more protocol" sh -c '
  grep "identified peer=$1" "$2" | tail -n 2 | sed -n "s/.*protocols=\([0-9]*\).*/\1/p" |
  { read old; read new; [ "$new" -eq $((old + 1)) ]; }' _ "$a_id" "$T/b/log"

# The callee freezes mid-call (no packets, no ICMP): the liveness ping
# times out and the caller fails within about 5 s.
B connect "$c_addr" >/dev/null 2>&1
start=$(date +%s%N)
B --timeout 30 call "$c_id" tp.never >/dev/null 2>"$T/err" &
callpid=$!
sleep 0.5
kill -STOP "$c_pid"
wait $callpid; rc=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
kill -CONT "$c_pid"
check "a frozen callee fails the caller as unreachable/timed out (rc=$rc: $(cat "$T/err"))" [ $rc -eq 3 ]
check "within 6 s (${ms} ms after the call)" [ $ms -lt 6000 ]
check "the caller logs the liveness timeout" grep -q "liveness-timeout peer=$c_id" "$T/b/log"

# The callee dies mid-call: the caller fails within 5 s.
start=$(date +%s%N)
B --timeout 30 call "$a_id" tp.never >/dev/null 2>"$T/err" &
callpid=$!
sleep 0.5
kill -9 "$a_pid"
wait $callpid; rc=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
check "killing the callee mid-call fails the caller (rc=$rc: $(cat "$T/err"))" [ $rc -ne 0 ]
check "within 5 s of the kill (${ms} ms after the call)" [ $ms -lt 5500 ]
finish
