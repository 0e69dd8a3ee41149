#!/bin/sh
# natpeer-host start-up: --help, --version, --check-config, config errors
# with FILE:LINE and exit 2, key file permissions, --print-peer-id, --call.
. "$(dirname "$0")/lib.sh"

out=$("$HOST" --help); rc=$?
check "--help exits 0" [ $rc -eq 0 ]
check "--help documents --config and SIGHUP" sh -c 'echo "$1" | grep -q -- "--config FILE" && echo "$1" | grep -q SIGHUP' _ "$out"
check "--version names the plugin ABI" sh -c '"$1" --version | grep -q "natpeer-host .*plugin ABI 1\.3"' _ "$HOST"
"$HOST" --bogus >/dev/null 2>"$T/err"; rc=$?
check "unknown option exits 2" [ $rc -eq 2 ]

mkdir -p "$T/data" "$T/plugins"
cat >"$T/good.ini" <<INI
[host]
data_dir = $T/data
listen = /ip4/127.0.0.1/udp/0/quic-v1
[plugins]
dir = $T/plugins
INI
out=$("$HOST" --config "$T/good.ini" --check-config); rc=$?
check "--check-config accepts a good file" [ $rc -eq 0 ]
check "--check-config says ok" [ "$out" = "$T/good.ini: ok" ]
check "--check-config writes nothing (no key file yet)" [ ! -e "$T/data/identity.key" ]

printf '[host]\ndata_dir = %s/data\n\n[limits]\nmax_message = 4X\n' "$T" >"$T/bad.ini"
"$HOST" --config "$T/bad.ini" >"$T/out" 2>"$T/err"; rc=$?
check "bad value exits 2" [ $rc -eq 2 ]
check "bad value message names file, line, section, key and expectation" \
  [ "$(cat "$T/err")" = "$T/bad.ini:5: [limits] max_message: \"4X\" is not a size (expected a size like 4M, from 1K to 64M)" ]
check "nothing written before the config is valid" [ ! -e "$T/data/identity.key" ]

printf '[host]\nfoo = 1\n' >"$T/unk.ini"
"$HOST" --config "$T/unk.ini" 2>"$T/err"; rc=$?
check "unknown key exits 2" [ $rc -eq 2 ]
check "unknown key message" grep -q "^$T/unk.ini:2: \[host\] foo: unknown key (expected one of identity_file, listen" "$T/err"

"$HOST" --config "$T/missing.ini" 2>"$T/err"; rc=$?
check "missing config file exits 2 naming it" sh -c '[ $0 -eq 2 ] && grep -q "missing.ini: cannot open" "$1"' $rc "$T/err"

printf '[plugin.\377]\nx = 1\n' >"$T/pname.ini"
"$HOST" --config "$T/pname.ini" --check-config >/dev/null 2>"$T/err"; rc=$?
check "[plugin.<not a name>] fails --check-config with exit 2" [ $rc -eq 2 ]
check "naming the section (escaped) and the rule" grep -qF '[plugin.\xff]: not a plugin name (expected plugin.NAME with NAME [A-Za-z0-9_.-]{1,64})' "$T/err"

# A FIFO where a file is expected must be refused, not block start-up.
mkfifo "$T/fifo.key" "$T/fifo.ini"
sed "s|^data_dir = .*|&\nidentity_file = $T/fifo.key|" "$T/good.ini" >"$T/fifokey.ini"
timeout 10 "$HOST" --config "$T/fifokey.ini" --print-peer-id >/dev/null 2>"$T/err"; rc=$?
check "identity_file as a FIFO: --print-peer-id exits 2 at once (rc=$rc)" [ $rc -eq 2 ]
check "saying the key file is not a regular file" grep -q "fifo.key: key file is not a regular file" "$T/err"
timeout 10 "$HOST" --config "$T/fifo.ini" --check-config >/dev/null 2>"$T/err"; rc=$?
check "a FIFO as the config exits 2 at once (rc=$rc)" [ $rc -eq 2 ]
check "saying it is not a regular file" grep -q "fifo.ini: not a regular file" "$T/err"

id1=$("$HOST" --config "$T/good.ini" --print-peer-id 2>/dev/null)
check "--print-peer-id prints an Ed25519 peer ID" sh -c 'case "$1" in 12D3KooW*) exit 0;; *) exit 1;; esac' _ "$id1"
check "the key file is created 0600" [ "$(stat -c %a "$T/data/identity.key")" = 600 ]
id2=$("$HOST" --config "$T/good.ini" --print-peer-id 2>/dev/null)
check "the peer ID is stable across runs" [ "$id1" = "$id2" ]

chmod 644 "$T/data/identity.key"
"$HOST" --config "$T/good.ini" --print-peer-id >/dev/null 2>"$T/err"; rc=$?
check "a world-readable key file stops start-up with exit 2" [ $rc -eq 2 ]
check "the message names the file and the fix" grep -q "$T/data/identity.key: key file is accessible by group or others (mode 0644); fix: chmod 600 $T/data/identity.key" "$T/err"
chmod 600 "$T/data/identity.key"

install_so "$(so hello)" "$T/plugins/hello.so"
out=$("$HOST" --config "$T/good.ini" --call hello 2>"$T/err"); rc=$?
check "--call hello prints Hello, World!" [ "$out" = "Hello, World!" ]
check "--call exits 0" [ $rc -eq 0 ]
"$HOST" --config "$T/good.ini" --call nope >/dev/null 2>"$T/err"; rc=$?
check "--call of an unknown protocol exits 1" [ $rc -eq 1 ]
check "and says the protocol is not supported" grep -q "protocol not supported" "$T/err"
# Control socket over TCP: loopback only unless allowed; port 0 is reported.
CLI="$top_builddir/host/natpeer-cli"
sed 's|^listen = .*|&\ncontrol = /ip4/127.0.0.1/tcp/0|' "$T/good.ini" >"$T/tcp.ini"
"$HOST" --config "$T/tcp.ini" >"$T/tcp.out" 2>"$T/tcp.log" &
PIDS="$PIDS $!"
check "a TCP control address on loopback starts (port 0 resolved)" wait_for "$T/tcp.out" "Control socket: /ip4/127.0.0.1/tcp/"
ctl=$(sed -n 's/^Control socket: //p' "$T/tcp.out")
check "natpeer-cli works over the TCP control socket" sh -c '"$1" --control "$2" id | grep -q "^peer    $3"' _ "$CLI" "$ctl" "$id1"
"$CLI" --control /ip4/127.0.0.1/tcp/1 id >/dev/null 2>"$T/err"; rc=$?
check "natpeer-cli exits 3 when the host is not running" [ $rc -eq 3 ]
check "and says where it tried" grep -q "cannot reach the host's control socket /ip4/127.0.0.1/tcp/1" "$T/err"
sed 's|^listen = .*|&\ncontrol = /ip4/0.0.0.0/tcp/0|' "$T/good.ini" >"$T/remote.ini"
"$HOST" --config "$T/remote.ini" >/dev/null 2>"$T/err"; rc=$?
check "a non-loopback TCP control address is refused (rc=$rc)" [ $rc -ne 0 ]
check "naming the key that allows it" grep -q "control_allow_remote" "$T/err"
"$CLI" bogus >/dev/null 2>&1; rc=$?
check "natpeer-cli: unknown command exits 2" [ $rc -eq 2 ]
finish
