# natpeer launcher for js_matrix.sh / js_throughput.sh (the interface is at
# the top of jslib.sh): natpeer_relay, natpeer_private, natpeer_caller,
# natpeer_stop. Needs a natpeer-host with the relay service and client
# ([relay] service/client/relays, np_relaysvc/np_relayc) and, for direct
# connections, DCUtR (np_dcutr); lib.sh's $HOST/$CLI, i.e. top_builddir.
#
#   MATRIX_LAUNCHERS=tests/natlab/nplib.sh MATRIX_COLUMNS="natpeer:natpeer js:js natpeer:js js:natpeer" \
#     sh tests/natlab/js_matrix.sh 10
#   MATRIX_LAUNCHERS=tests/natlab/nplib.sh MATRIX_RELAY=natpeer ...
#
# Hosts use lib.sh's start_host (QUIC + TCP on port 4001, [nat]
# treat_as_public = the lab's prefixes) with a [relay] section; none
# bootstraps a DHT: the caller is given the circuit address, as the js one.

# natpeer_relay NAME NODE: relay service on, client off; RELAY_MA = its QUIC
# address with /p2p/. JS_RELAY_ARGS=--unlimited (js_throughput.sh) lifts the
# circuit limits here too.
natpeer_relay() {
  local extra="[relay]
service = on
client = off"
  case " ${JS_RELAY_ARGS:-} " in
    *" --unlimited "*) extra="$extra
circuit_duration = 1h
circuit_bytes = 4G" ;;
  esac
  HOST_EXTRA=$extra start_host "$1" "$2" server "" ""
  host_ready "$1" || return 1
  eval "RELAY_MA=\$${1}_addr"
  eval "NP_RELAY_ID=\$${1}_id"
}

# natpeer_private NAME NODE RELAY_MA: relay client on with RELAY_MA as its
# static relay, hello served as handler_name; waits (20 s) for the
# reservation (log: relay reservation-ok relay=ID).
natpeer_private() {
  local relay_id=${3##*/p2p/}
  rm -f "$T/$1.out" # a js host's events under the same name (another column)
  HOST_EXTRA="[relay]
service = off
client = on
relays = $3
[plugin.hello]
protocol = handler_name" start_host "$1" "$2" client "" hello
  host_ready "$1" || return 1
  wait_for "$T/$1/log" "relay reservation-ok relay=$relay_id" 20 >/dev/null 2>&1 || return 1
  eval "PRIVATE_ID=\$${1}_id"
}

# np_peer_rec CTL PEER: PEER's records from natpeer-cli --json peers, one a line
np_peer_rec() {
  "$CLI" --control "$1" --timeout 5 --json peers 2>/dev/null | tr '{' '\n' | grep "\"peer\":\"$2\""
}
np_ms() { date +%s%3N; }

# np_caller_host NAME NODE: the caller's host, as lib.sh's start_host but
# with [limits] call_timeout = NP_CALL_TIMEOUT (s, default 15 as start_host):
# a call over a relayed connection waits for a hole punch in progress, and
# a punch that fails takes natpeer's 3 attempts x 10 s.
np_caller_host() {
  local name=$1 node=$2 ip
  ip=$(lab addr "$node") || return 1
  mkdir -p "$T/$name/plugins" "$T/$name/data"
  cat >"$T/$name/host.ini" <<INI
[host]
data_dir = $T/$name/data
listen = /ip4/$ip/udp/4001/quic-v1 /ip4/$ip/tcp/4001
control = $T/$name/ctl.sock
log_level = debug
[nat]
treat_as_public = $LAB_PUBLIC
[limits]
call_timeout = ${NP_CALL_TIMEOUT:-15}s
[plugins]
dir = $T/$name/plugins
[relay]
service = off
client = off
INI
  ip netns exec "$(lab netns "$node")" "$HOST" --config "$T/$name/host.ini" \
    >"$T/$name/out" 2>"$T/$name/log" </dev/null &
  eval "${name}_pid=$!"
  PIDS="$PIDS $!"
  eval "${name}_ctl=$T/$name/ctl.sock"
}

# natpeer_caller NAME NODE RELAY_MA PEER [CALLEE]: connect to
# RELAY_MA/p2p-circuit/p2p/PEER, call handler_name (t0 = before the
# connect), watch natpeer-cli peers for a direct connection to PEER (every
# 100 ms, up to JS_DIRECT_TIMEOUT s from t0), call again; one JSON line.
natpeer_caller() {
  local name=$1 node=$2 relay=$3 peer=$4 callee=${5:-} ctl t0 out rc direct_at="" rec="" out2="" why="" callms
  np_caller_host "$name" "$node"
  if ! host_ready "$name"; then
    echo '{"ok":false,"error":"natpeer caller did not start"}'
    natpeer_stop "$name"
    return 0
  fi
  eval "ctl=\$${name}_ctl"
  rm -f "$T/$name.direct" "$T/$name.connect" "$T/$name.call.err"
  t0=$(np_ms)
  "$CLI" --control "$ctl" --timeout 15 connect "$relay/p2p-circuit/p2p/$peer" >"$T/$name.connect" 2>&1
  # the first direct record, seen from a watcher started now
  (
    end=$((t0 + JS_DIRECT_TIMEOUT * 1000))
    while [ "$(np_ms)" -lt "$end" ]; do
      # direct = not limited (older natpeer-cli has no "path" field)
      r=$(np_peer_rec "$ctl" "$peer" | grep '"limited":false' | grep -v 'p2p-circuit' | head -n 1)
      if [ -n "$r" ]; then echo "$(np_ms) $r" >"$T/$name.direct"; exit 0; fi
      # stop early once either side's DCUtR gave up (natpeer logs
      # "dcutr failed", js B "attempt 3 of 3"), after a 2 s grace
      if [ -z "${gave_up:-}" ] && { grep -q "dcutr failed" "$T/$name/log" ${callee:+"$T/$callee/log"} 2>/dev/null ||
           grep -q 'attempt 3 of 3' ${callee:+"$T/$callee.out"} 2>/dev/null; }; then
        gave_up=$(($(np_ms) + 2000)); [ "$gave_up" -lt "$end" ] && end=$gave_up
      fi
      sleep 0.1
    done
  ) &
  local watcher=$!
  out=$("$CLI" --control "$ctl" --timeout $((${NP_CALL_TIMEOUT:-15} + 5)) call "$peer" handler_name 2>"$T/$name.call.err")
  rc=$?
  callms=$(($(np_ms) - t0))
  wait "$watcher"
  if [ -s "$T/$name.direct" ]; then
    direct_at=$(cut -d' ' -f1 "$T/$name.direct")
    rec=$(cut -d' ' -f2- "$T/$name.direct")
    out2=$("$CLI" --control "$ctl" --timeout 10 call "$peer" handler_name 2>&1)
  fi
  if [ -z "$direct_at" ]; then # why: the DCUtR log of either natpeer side
    why=$(grep -h "dcutr failed" "$T/$name/log" ${callee:+"$T/$callee/log"} 2>/dev/null | tail -n 1 | sed 's/.*dcutr failed/dcutr failed/')
    [ -n "$why" ] || why=$(grep -h '"event":"dcutr".*"level":"error"' ${callee:+"$T/$callee.out"} 2>/dev/null | tail -n 1 | sed 's/.*"msg":"\([^"]*\)".*/B (js): \1/')
    # natpeer still punching when the wait ended: its last DCUtR step
    [ -n "$why" ] || why=$(grep -h " dcutr " "$T/$name/log" ${callee:+"$T/$callee/log"} 2>/dev/null | tail -n 1 |
      sed 's/.* dcutr /no direct connection in '"$JS_DIRECT_TIMEOUT"' s; last dcutr step: /')
  fi
  "$NP_NODE" -e '
    const [out, rc, directAt, t0, rec, out2, why, conn, callErr, callMs] = process.argv.slice(1)
    const r = { ok: rc === "0" && out === "Hello, World!", response: out, callMs: Number(callMs) }
    if (r.ok !== true) r.error = `natpeer-cli call rc=${rc}: ${callErr}`.slice(0, 300)
    if (conn !== "") r.connect = conn.slice(0, 300)
    r.direct = directAt !== ""
    if (r.direct) {
      const j = JSON.parse("{" + rec.replace(/[},\]]*$/, "") + "}")
      r.directAddr = j.addr
      r.directTransport = j.transport
      r.timeToDirectMs = Number(directAt) - Number(t0)
      r.secondCall = out2
    } else r.reason = why || null
    console.log(JSON.stringify(r))
  ' "$out" "$rc" "$direct_at" "$t0" "$rec" "$out2" "$why" "$(grep -v '^$' "$T/$name.connect" | tail -n 1)" "$(tail -n 1 "$T/$name.call.err")" "$callms"
  natpeer_stop "$name"
}

# natpeer_stop NAME: SIGTERM, 3 s, SIGKILL; 1 when it took the KILL
natpeer_stop() {
  local p i=0 st=0
  eval "p=\${$1_pid:-}"
  [ -n "$p" ] || return 0
  kill -TERM "$p" 2>/dev/null
  while kill -0 "$p" 2>/dev/null && [ $i -lt 60 ]; do sleep 0.05; i=$((i + 1)); done
  if kill -0 "$p" 2>/dev/null; then kill -KILL "$p" 2>/dev/null; st=1; fi
  wait "$p" 2>/dev/null
  eval "$1_pid="
  # the next try starts afresh (new identity); the last one stays for a look
  rm -rf "${T:?}/$1.last"; mv "$T/$1" "$T/$1.last" 2>/dev/null
  return $st
}
