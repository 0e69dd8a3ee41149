// Ratio table of compare.sh's results: js-libp2p over natpeer per network
// size and lookup kind (> 1: js takes more). Reads natpeer-N.json
// (kad_scale -j) and js-N.json (dht.mjs --out) from the folder given.
//   node compare.mjs DIR > DIR/summary.md
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

const dir = process.argv[2]
const sizes = readdirSync(dir).map(f => /^natpeer-(\d+)\.json$/.exec(f)).filter(Boolean)
  .map(m => Number(m[1])).sort((a, b) => a - b)
const f = (x, d = 1) => (x == null || Number.isNaN(x)) ? '–' : x.toFixed(d)
const r = (a, b) => (b > 0 ? a / b : NaN)
console.log('| hosts | kind | found np / js | hops mean np / js (max) | requests mean np / js | requests js/np | latency ms mean np / js | p95 np / js | latency js/np | RSS MB after bootstrap np / js | bootstrap s np / js |')
console.log('|---|---|---|---|---|---|---|---|---|---|---|')
for (const n of sizes) {
  let np, js
  try {
    np = JSON.parse(readFileSync(join(dir, `natpeer-${n}.json`), 'utf8'))
    js = JSON.parse(readFileSync(join(dir, `js-${n}.json`), 'utf8'))
  } catch (e) { console.log(`| ${n} | (missing: ${e.message}) |`); continue }
  for (const k of js.kinds) {
    const a = np.levels.find(l => l.kind === k.kind && l.gone_pct === 0)
    if (a == null) continue
    console.log(`| ${n} | ${k.kind} | ${a.found}/${a.lookups} / ${k.found}/${k.lookups} | ` +
      `${f(a.hops_mean, 2)} (${a.hops_max}) / ${f(k.hops.mean, 2)} (${k.hops.max}) | ` +
      `${f(a.sent_mean)} / ${f(k.sent.mean)} | ${f(r(k.sent.mean, a.sent_mean), 2)} | ` +
      `${f(a.ms_mean)} / ${f(k.ms.mean)} | ${f(a.ms_p95)} / ${f(k.ms.p95)} | ${f(r(k.ms.mean, a.ms_mean), 1)} | ` +
      `${f(np.rss_boot_mb, 0)} / ${f(js.rss_boot_mb, 0)} | ${f(np.boot_s)} / ${f(js.boot_s)} |`)
  }
}
