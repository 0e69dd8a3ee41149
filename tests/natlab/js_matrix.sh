#!/bin/sh
# The NAT-type matrix of issue 10 (tests/natlab/matrix): for every pair of
# NAT A x NAT B in {eif, adf, apdf, sym}, TRIES fresh tries of: a private
# host on private-1 (behind NAT A) holds a reservation on the relay on
# public-1 and serves handler_name; a caller on private-2 (behind NAT B)
# calls it through the relay's circuit address and waits for a direct
# (hole-punched) connection. 20 ms one way on every internet link. Prints a
# table of direct-connection successes, calls answered, and the median time
# from the first call to the direct connection, per column; writes it with
# every try's JSON to tests/natlab/results/matrix-<columns>-<UTC date>.{md,jsonl}.
#
#   sh tests/natlab/js_matrix.sh [TRIES]        (default 2; the issue asks 10)
#
# Env:
#   MATRIX_TRIES=N            tries per pair and column (or the argument)
#   MATRIX_PAIRS="eif:eif .." the NAT pairs (default all 16 of {eif,adf,apdf,sym}^2)
#   MATRIX_RELAY=js           relay implementation (a launcher, see jslib.sh)
#   MATRIX_COLUMNS="js:js"    columns, each CALLEE_IMPL:CALLER_IMPL (private-1
#                             host : private-2 caller), e.g. "js:js natpeer:natpeer
#                             natpeer:js js:natpeer"
#   MATRIX_LAUNCHERS="f.sh .." more launcher files to source (a natpeer one
#                             defines natpeer_relay/_private/_caller/_stop)
#   MATRIX_OUT=DIR            results folder (default tests/natlab/results)
#   MATRIX_NOTE=TEXT          a line for the results' header (e.g. which natpeer build)
#   MATRIX_FRESH_LAB=1        a new lab (and relay) for every try (default; 0: one
#                             lab per NAT pair, faster, but tries share NAT state)
#   JS_MODE=stock|announce    see jslib.sh; JS_TRANSPORT=quic|tcp|both;
#   JS_RELAY_VIA=quic|tcp; JS_DIRECT_TIMEOUT=30; JS_AUTONAT_SERVER=1
# Root only (network namespaces); skipped otherwise. Every wait is bounded; a
# watchdog ends the run; the lab and every process go away on exit.
#
# Adding the natpeer column: write tests/natlab/nplib.sh with natpeer_relay,
# natpeer_private, natpeer_caller and natpeer_stop (the interface in
# jslib.sh; lib.sh's start_host/host_ready do most of it, natpeer-cli call
# plus `natpeer-cli peers --json` give the result fields), then
#   MATRIX_LAUNCHERS=tests/natlab/nplib.sh MATRIX_COLUMNS="natpeer:natpeer js:js" sh tests/natlab/js_matrix.sh 10
# and MATRIX_RELAY=natpeer for a natpeer relay.
: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
export top_srcdir top_builddir
. "$top_srcdir/tests/natlab/lib.sh"
. "$top_srcdir/tests/natlab/jslib.sh"

TRIES=${1:-${MATRIX_TRIES:-2}}
case $TRIES in '' | *[!0-9]*) echo "usage: $0 [TRIES]" >&2; exit 2 ;; esac
: "${MATRIX_PAIRS:=$(for a in eif adf apdf sym; do for b in eif adf apdf sym; do printf '%s:%s ' $a $b; done; done)}"
: "${MATRIX_RELAY:=js}"
: "${MATRIX_COLUMNS:=js:js}"
: "${MATRIX_OUT:=$top_srcdir/tests/natlab/results}"
for f in ${MATRIX_LAUNCHERS:-}; do . "$f"; done
case " $MATRIX_RELAY $MATRIX_COLUMNS " in *js*) js_deps ;; esac
[ -n "${NP_NODE:-}" ] || NP_NODE=$(command -v node) || bail "no node for the result summary"

npairs=$(echo $MATRIX_PAIRS | wc -w)
ncols=$(echo $MATRIX_COLUMNS | wc -w)
# bound: about 45 s per try at worst (start, call, 30 s wait), 20 s per lab
watchdog $((npairs * ncols * TRIES * (JS_DIRECT_TIMEOUT + 45) + 60))

mkdir -p "$MATRIX_OUT"
stamp=$(date -u +%Y%m%dT%H%MZ)
tag=$(echo "$MATRIX_COLUMNS" | tr ' :' '-_')
[ "$JS_MODE" = stock ] || tag=$tag-$JS_MODE
base=$MATRIX_OUT/matrix-$tag-$stamp
: >"$base.jsonl"
echo "# matrix: pairs=$npairs columns=$MATRIX_COLUMNS relay=$MATRIX_RELAY tries=$TRIES js_mode=$JS_MODE -> $base.md"

# pair_lab A B: a new lab with NAT types A and B, 20 ms, and a relay on
# public-1 (RELAY_MA empty when it did not start). Tearing the lab down
# between tries (MATRIX_FRESH_LAB=1, the default) matters: a try leaves NAT
# state behind (conntrack entries, the cone maps of eif/adf: 120 s), and
# the next host on the same inside address and port 4001 would find a hole
# already open (seen: natpeer punching from private-1:4001 in one column let
# the next column's dial into private-1:4001 through apdf).
pair_lab() {
  if [ "$LAB_UP" = 1 ]; then "${MATRIX_RELAY}_stop" relay; lab teardown >/dev/null 2>&1; LAB_UP=0; fi
  lab_setup "$1" "$2" || bail "lab setup $1 $2 failed: $(tail -n 3 "$T/natlab.log")"
  lab impair internet 20 >>"$T/natlab.log" 2>&1 || bail "impair failed: $(tail -n 3 "$T/natlab.log")"
  if ! "${MATRIX_RELAY}_relay" relay public-1; then
    echo "# $1:$2: relay did not start: $(tail -n 3 "$T/relay.err" 2>/dev/null)"
    RELAY_MA=
  fi
}
: "${MATRIX_FRESH_LAB:=1}"

t_start=$(date +%s)
for pair in $MATRIX_PAIRS; do
  ta=${pair%%:*} tb=${pair##*:}
  [ "$MATRIX_FRESH_LAB" = 1 ] || pair_lab "$ta" "$tb"
  for col in $MATRIX_COLUMNS; do
    callee=${col%%:*} caller=${col##*:}
    i=1
    while [ "$i" -le "$TRIES" ]; do
      [ "$MATRIX_FRESH_LAB" = 1 ] && pair_lab "$ta" "$tb"
      if [ -z "$RELAY_MA" ]; then
        res='{"ok":false,"error":"relay did not start"}'
      elif ! "${callee}_private" callee private-1 "$RELAY_MA"; then
        res='{"ok":false,"error":"private host got no reservation in 20 s"}'
        cp "$T/callee.out" "$T/callee-fail-$pair-$i.out" 2>/dev/null
      else
        res=$("${caller}_caller" caller private-2 "$RELAY_MA" "$PRIVATE_ID" callee)
      fi
      "${callee}_stop" callee
      line=$(printf '{"natA":"%s","natB":"%s","column":"%s","relay":"%s","try":%d,"jsMode":"%s","freshLab":%s,"result":%s}' \
        "$ta" "$tb" "$col" "$MATRIX_RELAY" "$i" "$JS_MODE" "$([ "$MATRIX_FRESH_LAB" = 1 ] && echo true || echo false)" "${res:-null}")
      echo "$line" >>"$base.jsonl"
      echo "# $pair $col try $i: $(echo "$res" | cut -c1-220)"
      i=$((i + 1))
    done
  done
done
"${MATRIX_RELAY}_stop" relay
t_total=$(($(date +%s) - t_start))

# the table (Markdown) from the JSON lines
"$NP_NODE" -e '
  const fs = require("fs")
  const [file, cols, tries, secs, relay, mode, transport, note] = process.argv.slice(1)
  const rows = fs.readFileSync(file, "utf8").split("\n").filter(Boolean).map(l => JSON.parse(l))
  const columns = cols.split(" ").filter(Boolean)
  const pairs = [...new Set(rows.map(r => r.natA + ":" + r.natB))]
  const med = (a) => { if (a.length === 0) return null; a = [...a].sort((x, y) => x - y); const m = a.length >> 1; return a.length % 2 ? a[m] : Math.round((a[m - 1] + a[m]) / 2) }
  let out = `NAT matrix, ${new Date().toISOString()}: relay ${relay} on public-1, ${tries} tries per pair and column, js mode ${mode}, js transports ${transport}, 20 ms one way on the internet links; ${secs} s in all.${note ? " " + note + "." : ""}\n\n`
  out += "| NAT A (callee) | NAT B (caller) | " + columns.map(c => `${c}: direct | ${c}: answered | ${c}: median ms to direct`).join(" | ") + " | why not direct (js DCUtR log, most frequent) |\n"
  out += "|---|---|" + columns.map(() => "---|---|---|").join("") + "---|\n"
  let unanswered = 0
  for (const p of pairs) {
    const [a, b] = p.split(":")
    const cells = []
    const reasons = {}
    for (const c of columns) {
      const rs = rows.filter(r => r.natA + ":" + r.natB === p && r.column === c)
      const direct = rs.filter(r => r.result?.direct === true)
      const ok = rs.filter(r => r.result?.ok === true)
      unanswered += rs.length - ok.length
      const m = med(direct.map(r => r.result.timeToDirectMs).filter(x => typeof x === "number"))
      cells.push(`${direct.length}/${rs.length}`, `${ok.length}/${rs.length}`, m == null ? "-" : String(m))
      for (const r of rs) {
        const why = r.result?.direct ? null : (r.result?.reason ?? r.result?.error ?? null)
        if (why) { const k = why.replace(/\/p2p\/12D3Koo\w+/g, "").replace(/ \| /g, "; ").replace(/\|/g, "/").slice(0, 300); reasons[k] = (reasons[k] ?? 0) + 1 }
      }
    }
    const top = Object.entries(reasons).sort((x, y) => y[1] - x[1])[0]
    out += `| ${a} | ${b} | ${cells.join(" | ")} | ${top ? top[0] + " (" + top[1] + "x)" : ""} |\n`
  }
  fs.writeFileSync(file.replace(/\.jsonl$/, ".md"), out)
  process.stdout.write(out)
  process.exitCode = unanswered === 0 ? 0 : 1
' "$base.jsonl" "$MATRIX_COLUMNS" "$TRIES" "$t_total" "$MATRIX_RELAY" "$JS_MODE" "$JS_TRANSPORT" "${MATRIX_NOTE:-}"
st=$?
echo "# results: $base.md and $base.jsonl"
exit $st
