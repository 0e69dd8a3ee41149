# TAP and JSON helpers shared by the js interop scripts (sourced; needs
# NP_NODE from jsdeps.sh). Counters: n, failures.
n=${n:-0}
failures=${failures:-0}
pass() { n=$((n + 1)); echo "ok $n - $*"; }
fail() { n=$((n + 1)); failures=$((failures + 1)); echo "not ok $n - $*"; }
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }
diag() { echo "$*" | sed 's/^/# /'; }

# jcheck JSON EXPR: EXPR is a JS expression over `j` (the parsed JSON)
jcheck() {
  "$NP_NODE" -e 'const j = JSON.parse(process.argv[1]); process.exit(new Function("j", "return (" + process.argv[2] + ")")(j) ? 0 : 1)' "$1" "$2" 2>/dev/null
}
# jget JSON EXPR: prints the value of EXPR
jget() {
  "$NP_NODE" -e 'const j = JSON.parse(process.argv[1]); const v = new Function("j", "return (" + process.argv[2] + ")")(j); if (v != null) console.log(v)' "$1" "$2" 2>/dev/null
}
# check DESC JSON EXPR: one TAP line; on failure the JSON goes out as a comment
check() {
  if jcheck "$2" "$3"; then pass "$1"; else fail "$1"; diag "want: $3"; diag "got:  $2"; fi
  [ "${NP_INTEROP_VERBOSE:-0}" = 1 ] && diag "$2"
  return 0
}
# wait_line FILE SECONDS: wait until FILE has a first line starting with "/"
wait_line() {
  _i=0
  while [ $_i -lt $(($2 * 20)) ]; do
    _l=$(head -n 1 "$1" 2>/dev/null)
    case $_l in /*) echo "$_l"; return 0 ;; esac
    sleep 0.05; _i=$((_i + 1))
  done
  return 1
}
