# js-libp2p peers in the NAT lab (tests/interop/natpeer-js.mjs), for
# js_matrix.sh. Sourced after tests/natlab/lib.sh (lab, $T, $PIDS, wait_for).
#
# The matrix drives every implementation through the same four functions
# ("launcher" interface); an implementation IMPL provides
#
#   IMPL_relay    NAME NODE            start a relay on public NODE; set RELAY_MA
#                                      (its multiaddr with /p2p/ID, the one
#                                      private hosts reserve on and callers dial
#                                      through); return 1 if it did not start
#   IMPL_private  NAME NODE RELAY_MA   start a private host on NODE that holds
#                                      a reservation on RELAY_MA and serves the
#                                      unary `handler_name` -> "Hello, World!";
#                                      wait for the reservation; set
#                                      PRIVATE_ID; return 1 on failure
#   IMPL_caller   NAME NODE RELAY_MA PEER [CALLEE_NAME]
#                                      (CALLEE_NAME: the IMPL_private NAME, for
#                                      diagnostics from its log) from NODE, call PEER's handler_name by
#                                      RELAY_MA/p2p-circuit/p2p/PEER, wait for a
#                                      direct connection; print ONE JSON line:
#                                      {ok, response, direct, directAddr,
#                                       timeToDirectMs (first call -> direct),
#                                       secondCall, reason, error}
#   IMPL_stop     NAME                 stop what NAME started (SIGTERM, 3 s, KILL)
#
# js below; a natpeer launcher (natpeer_relay, ...) goes in its own file and
# is selected with MATRIX_RELAY / MATRIX_COLUMNS (see js_matrix.sh).

JS_DIR="$top_srcdir/tests/interop"
# the lab's internet, comma-separated, for natpeer-js --lab-public
JS_LAB_PUBLIC=$(echo "$LAB_PUBLIC" | tr ' ' ',')
# JS_MODE=stock: js finds its addresses itself (identify + AutoNAT);
# JS_MODE=announce: each private js peer also announces its NAT's public
# address at its own listen port (addresses.appendAnnounce), which js then
# sends in DCUtR CONNECT without AutoNAT's confirmation.
: "${JS_MODE:=stock}"
# JS_TRANSPORT: what the js peers listen on and dial (quic|tcp|both).
: "${JS_TRANSPORT:=both}"
# the relay address private js peers reserve on: quic or tcp
: "${JS_RELAY_VIA:=quic}"
: "${JS_DIRECT_TIMEOUT:=30}"

# js_deps: install/check the pinned node and packages; skips the test
# (natlab_skip) when js cannot run here, bails when the install fails.
js_deps() {
  . "$JS_DIR/jsdeps.sh"
  np_js_deps "$JS_DIR"
  case $? in
    0) ;;
    77) natlab_skip "$NP_JS_WHY" ;;
    *) bail "$NP_JS_WHY" ;;
  esac
}

# js_run NAME NODE ROLE ARGS...: natpeer-js.mjs in the background inside NODE;
# stdout (JSON events) -> $T/NAME.out, stderr -> $T/NAME.err; sets NAME_pid.
js_run() {
  local name=$1 node=$2 role=$3
  shift 3
  : >"$T/$name.out"
  NP_JS_SYSTEM_NODE=1 ip netns exec "$(lab netns "$node")" "$NP_NODE" "$JS_DIR/natpeer-js.mjs" "$role" \
    --ip "$(lab addr "$node")" --transport "$JS_TRANSPORT" --lab-public "$JS_LAB_PUBLIC" \
    --max-lifetime 900 "$@" >"$T/$name.out" 2>"$T/$name.err" </dev/null &
  eval "${name}_pid=$!"
  PIDS="$PIDS $!"
}
# js_event NAME KEY: a field of NAME's first "ready" event
js_ready_field() {
  sed -n '/"event":"ready"/{s/.*"'"$2"'":"\([^"]*\)".*/\1/p;q}' "$T/$1.out"
}

js_relay() {
  local name=$1 node=$2 id addr
  # shellcheck disable=SC2086 # JS_RELAY_ARGS: more relay options (js_throughput.sh: --unlimited)
  js_run "$name" "$node" relay ${JS_AUTONAT_SERVER:+--autonat-server} ${JS_RELAY_ARGS:-}
  wait_for "$T/$name.out" '"event":"ready"' 20 >/dev/null 2>&1 || return 1
  id=$(js_ready_field "$name" peer)
  case $JS_RELAY_VIA in
    tcp) addr=/ip4/$(lab addr "$node")/tcp/4001 ;;
    *) addr=/ip4/$(lab addr "$node")/udp/4001/quic-v1 ;;
  esac
  RELAY_MA=$addr/p2p/$id
}

# js_nat_announce NODE: the announce list for JS_MODE=announce (the node's
# NAT's public address at port 4001, QUIC and TCP), else nothing
js_nat_announce() {
  [ "$JS_MODE" = announce ] || return 0
  local nat
  case $1 in private-1) nat=$(lab addr nat-a) ;; private-2) nat=$(lab addr nat-b) ;; *) return 0 ;; esac
  echo "--announce /ip4/$nat/udp/4001/quic-v1,/ip4/$nat/tcp/4001"
}

js_private() {
  local name=$1 node=$2 relay=$3
  # shellcheck disable=SC2046 # word list on purpose
  js_run "$name" "$node" private --relay "$relay" $(js_nat_announce "$node")
  wait_for "$T/$name.out" '"event":"reserved"' 20 >/dev/null 2>&1 || return 1
  PRIVATE_ID=$(js_ready_field "$name" peer)
}

# The caller's result line, with `reason`: why there was no direct
# connection, from the DCUtR log of both sides (js logs it, no events).
js_caller() {
  local name=$1 node=$2 relay=$3 peer=$4 callee=${5:-} res
  # shellcheck disable=SC2046
  js_run "$name" "$node" caller --relay "$relay" --target "$peer" \
    --direct-timeout "$JS_DIRECT_TIMEOUT" $(js_nat_announce "$node")
  wait_for "$T/$name.out" '"event":"result"' $((JS_DIRECT_TIMEOUT + 30)) >/dev/null 2>&1
  res=$(grep -m1 '"event":"result"' "$T/$name.out")
  [ -n "$res" ] || res='{"ok":false,"error":"caller printed no result"}'
  # last DCUtR error on each side (B = the callee, which starts DCUtR)
  "$NP_NODE" -e '
    const fs = require("fs")
    const [res, aFile, bFile, npLog] = process.argv.slice(1)
    const r = JSON.parse(res)
    const last = (f) => {
      let m = null
      try {
        for (const l of fs.readFileSync(f, "utf8").split("\n")) {
          if (!l.includes("\"event\":\"dcutr\"")) continue
          const e = JSON.parse(l)
          if (e.level === "error" || /no public addresses|had no dialable/.test(e.msg)) m = e.msg
        }
      } catch {}
      return m
    }
    if (!r.direct) {
      const a = last(aFile), b = last(bFile)
      // a natpeer callee logs "dcutr failed peer=.. why=.." (np_dcutr.h)
      let nb = null
      try { nb = fs.readFileSync(npLog, "utf8").split("\n").filter(l => l.includes("dcutr failed")).pop() ?? null } catch {}
      if (nb != null) nb = nb.replace(/.*dcutr failed/, "dcutr failed")
      r.reason = [b && "B: " + b, nb && "B (natpeer): " + nb, a && "A: " + a].filter(Boolean).join(" | ") || null
    }
    delete r.event
    console.log(JSON.stringify(r))
  ' "$res" "$T/$name.out" "${callee:+$T/$callee.out}" "${callee:+$T/$callee/log}"
  js_stop "$name"
}

# js_stop NAME: SIGTERM, up to 3 s, then SIGKILL; 1 when it took the KILL
js_stop() {
  local p i=0 st=0
  eval "p=\${$1_pid:-}"
  [ -n "$p" ] || return 0
  kill -TERM "$p" 2>/dev/null
  while kill -0 "$p" 2>/dev/null && [ $i -lt 60 ]; do sleep 0.05; i=$((i + 1)); done
  if kill -0 "$p" 2>/dev/null; then kill -KILL "$p" 2>/dev/null; st=1; fi
  wait "$p" 2>/dev/null
  eval "$1_pid="
  return $st
}
