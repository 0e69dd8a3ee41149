#!/bin/sh
# natpeer-cli dht against three hosts on loopback over QUIC: b and c join
# the DHT through a (identify fills the tables); findpeer, closest,
# provide and findprovs across hosts, and the errors of each command.
. "$(dirname "$0")/lib.sh"
CLI="$top_builddir/host/natpeer-cli"

start_host() { # start_host NAME -> ${NAME}_addr, ${NAME}_id, ${NAME}_ctl
  name=$1
  mkdir -p "$T/$name/data"
  cat >"$T/$name/host.ini" <<INI
[host]
data_dir = $T/$name/data
listen = /ip4/127.0.0.1/udp/0/quic-v1
control = $T/$name/ctl.sock
log_level = debug
[dht]
mode = server
[plugins]
autoload = no
INI
  "$HOST" --config "$T/$name/host.ini" >"$T/$name/out" 2>"$T/$name/log" &
  PIDS="$PIDS $!"
  wait_for "$T/$name/out" "/quic-v1/p2p/" 5 || return 1
  eval "${name}_addr=\$(grep -m1 /quic-v1/p2p/ \"$T/$name/out\")"
  eval "${name}_id=\$(sed -n 's/^Peer ID: //p' \"$T/$name/out\")"
  eval "${name}_ctl=$T/$name/ctl.sock"
}

check "host a starts" start_host a
check "host b starts" start_host b
check "host c starts" start_host c
A() { "$CLI" --control "$a_ctl" -t 15 "$@"; }
B() { "$CLI" --control "$b_ctl" -t 15 "$@"; }
C() { "$CLI" --control "$c_ctl" -t 15 "$@"; }

B connect "$a_addr" >/dev/null 2>"$T/err"
check "b connects to a ($(cat "$T/err"))" [ $? -eq 0 ]
C connect "$a_addr" >/dev/null 2>"$T/err"
check "c connects to a ($(cat "$T/err"))" [ $? -eq 0 ]
sleep 0.5 # identify: the tables fill

out=$(B dht findpeer "$c_id" 2>"$T/err"); rc=$?
check "b finds c through the DHT (rc=$rc $(cat "$T/err"))" [ $rc -eq 0 ]
check "first line c's peer ID, then its addresses ($out)" \
  sh -c 'echo "$1" | head -1 | grep -qx "$2" && echo "$1" | grep -q "^  /ip4/127.0.0.1/udp/.*/quic-v1$"' _ "$out" "$c_id"
out=$(B --json dht findpeer "$c_id" 2>"$T/err"); rc=$?
check "--json findpeer ($out)" sh -c 'echo "$1" | grep -q "^{\"peer\":\"$2\",\"addrs\":\[\"/ip4/"' _ "$out" "$c_id"

out=$(B dht closest some-key 2>"$T/err"); rc=$?
check "closest lists a and c, one per line (rc=$rc $out $(cat "$T/err"))" \
  sh -c '[ $0 -eq 0 ] && echo "$1" | grep -qx "$2" && echo "$1" | grep -qx "$3"' $rc "$out" "$a_id" "$c_id"

CID=bafkreidykms7vwp7fvelzxrr2rj52g6f5e2ybqxtjutmdwzovd5qcznwfe
out=$(B dht provide "$CID" 2>"$T/err"); rc=$?
check "b provides a CID (rc=$rc $out $(cat "$T/err"))" [ "$out" = "providing $CID" ]
out=$(C dht findprovs "$CID" -n 1 2>"$T/err"); rc=$?
check "c finds b as its provider, with addresses (rc=$rc $out $(cat "$T/err"))" \
  sh -c '[ $0 -eq 0 ] && echo "$1" | head -1 | grep -qx "$2" && echo "$1" | grep -q "^  /ip4/127.0.0.1/"' $rc "$out" "$b_id"
out=$(A dht findprovs bafkreibw7bm6ibcsm6fdfmmmugyqjewts6jjms6osxbzpv52pjlb2wu3ou 2>"$T/err"); rc=$?
check "content nobody provides: nothing, exit 0 (rc=$rc \"$out\")" sh -c '[ $0 -eq 0 ] && [ -z "$1" ]' $rc "$out"

out=$(B dht put /natpeer/greeting "hello dht" 2>"$T/err"); rc=$?
check "put of a text value under /natpeer/ (rc=$rc $out $(cat "$T/err"))" [ "$out" = "stored /natpeer/greeting" ]
out=$(C dht get /natpeer/greeting 2>"$T/err"); rc=$?
check "c gets it back (rc=$rc \"$out\" $(cat "$T/err"))" [ "$out" = "hello dht" ]
printf 'line one\nline two\n' >"$T/value"
B dht put /natpeer/file @"$T/value" >/dev/null 2>"$T/err"; rc=$?
check "put @FILE (rc=$rc $(cat "$T/err"))" [ $rc -eq 0 ]
out=$(A --hex dht get /natpeer/file 2>"$T/err"); rc=$?
check "a gets the file's bytes, --hex ($out)" [ "$out" = "6c696e65206f6e650a6c696e652074776f0a" ]
out=$(A --json dht get /natpeer/greeting 2>"$T/err"); rc=$?
check "--json get ($out)" [ "$out" = '{"key":"/natpeer/greeting","value":"hello dht"}' ]
B dht get "/pk/$c_id" >/dev/null 2>"$T/err"; rc=$?
check "get of a record nobody put: exit 1 ($(cat "$T/err"))" sh -c '[ $0 -eq 1 ] && grep -q "not found" "$1"' $rc "$T/err"
B dht put /nons/key hello >/dev/null 2>"$T/err"; rc=$?
check "put in an unknown namespace: exit 1 ($(cat "$T/err"))" sh -c '[ $0 -eq 1 ] && grep -q "no validator" "$1"' $rc "$T/err"
B dht put "/pk/$b_id" @"$T/nonexistent" >/dev/null 2>"$T/err"; rc=$?
check "put @FILE that does not exist: exit 2 ($(cat "$T/err"))" [ $rc -eq 2 ]
B dht findprovs not-a-cid >/dev/null 2>"$T/err"; rc=$?
check "findprovs of a non-CID: exit 2 ($(cat "$T/err"))" sh -c '[ $0 -eq 2 ] && grep -q "is not a CID" "$1"' $rc "$T/err"
B dht findprovs "$CID" -n 0 >/dev/null 2>"$T/err"; rc=$?
check "findprovs -n 0: exit 2 ($(cat "$T/err"))" [ $rc -eq 2 ]
B dht findpeer nobody >/dev/null 2>"$T/err"; rc=$?
check "findpeer of a non-peer-ID: exit 2 ($(cat "$T/err"))" [ $rc -eq 2 ]
B dht frobnicate x >/dev/null 2>"$T/err"; rc=$?
check "an unknown dht command: exit 2 ($(cat "$T/err"))" sh -c '[ $0 -eq 2 ] && grep -q "findpeer PEER" "$1"' $rc "$T/err"
"$CLI" --help | grep -q "dht findprovs CID \[-n N\]"
check "--help lists the dht commands" [ $? -eq 0 ]
finish
