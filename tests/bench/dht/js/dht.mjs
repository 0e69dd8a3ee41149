// The js-libp2p side of tests/bench/dht: N libp2p nodes in this process over
// @libp2p/memory (noise, yamux, identify, ping, @libp2p/kad-dht in server
// mode on /ipfs/kad/1.0.0), built as kad_scale.c builds natpeer's: node i
// dials `boot` random earlier nodes, then looks up its own key
// (getClosestPeers of its peer ID, as np_kad_bootstrap); then `lookups`
// random lookups, `conc` at once, each from a distinct node:
//   find:    dht.findPeer(target, {useCache: false}), ended at FINAL_PEER
//            (natpeer's find_peer ends when the target is reached too)
//   closest: dht.getClosestPeers(random 32 bytes) to the end
// Per lookup: requests sent (SEND_QUERY events), hops (depth of the deepest
// peer that answered: peers from the table are depth 1, peers first named
// in an answer from depth d are d + 1: natpeer's np_kad_stats hops), time.
//
//   node dht.mjs --nodes 100 --lookups 100 --conc 1 --boot 3 --wave 100 --kind find,closest --out x.json
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { memory } from '@libp2p/memory'
import { ping } from '@libp2p/ping'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { writeFileSync } from 'node:fs'
import { createHash, randomBytes } from 'node:crypto'

const args = { nodes: 100, lookups: 100, conc: 1, boot: 3, wave: 100, kind: 'find,closest', out: '', seed: 1 }
for (let i = 2; i < process.argv.length; i += 2) {
  const k = process.argv[i].replace(/^--/, '')
  if (!(k in args)) { console.error(`dht.mjs: unknown flag ${process.argv[i]}`); process.exit(2) }
  args[k] = typeof args[k] === 'number' ? Number(process.argv[i + 1]) : process.argv[i + 1]
}

let rng = BigInt(0x9e3779b97f4a7c15n ^ BigInt(args.seed))
function rnd (n) { // xorshift64*, as kad_scale.c
  const M = (1n << 64n) - 1n
  rng ^= rng >> 12n; rng ^= (rng << 25n) & M; rng ^= rng >> 27n
  return Number(((rng * 2685821657736338717n) & M) % BigInt(n))
}
const now = () => performance.now()
const rssMb = () => process.memoryUsage().rss / 1048576
const tag = Math.random().toString(36).slice(2, 8) // memory names are per process

async function makeNode (i) {
  return createLibp2p({
    addresses: { listen: [`/memory/js${tag}-${i}`] },
    transports: [memory()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionManager: { maxConnections: 100000, maxIncomingPendingConnections: 100000 },
    services: {
      identify: identify(),
      ping: ping(),
      dht: kadDHT({ protocol: '/ipfs/kad/1.0.0', clientMode: false, peerInfoMapper: passthroughMapper })
    }
  })
}

// The peers a query of |key| starts from (query/manager.js: the table's k
// closest to SHA-256(key)): depth 1, as natpeer's seeds.
function seeds (dht, key) {
  const kadId = createHash('sha256').update(key).digest()
  const m = new Map()
  for (const p of dht.routingTable.closestPeers(kadId, { count: dht.routingTable.kBucketSize })) {
    m.set((p.peerId ?? p.id ?? p).toString(), 1)
  }
  return m
}

// Drains a query, counting what it sent and how deep its answers went.
async function runQuery (iter, target, depth) {
  let sent = 0; let hops = 0; let found = false; let answered = 0
  const d = (id) => depth.get(id.toString()) ?? 1
  try {
    for await (const ev of iter) {
      if (ev.name === 'SEND_QUERY') sent++
      else if (ev.name === 'PEER_RESPONSE') {
        answered++
        const df = d(ev.from)
        if (df > hops) hops = df
        for (const p of ev.closer) {
          const k = p.id.toString()
          if (!depth.has(k)) depth.set(k, df + 1)
        }
      } else if (ev.name === 'FINAL_PEER' && target != null && ev.peer.id.equals(target)) {
        found = true
        break
      }
    }
  } catch (e) {
    if (target == null) throw e
  }
  return { sent, hops, found: target == null ? answered > 0 : found }
}

function stats (v) {
  if (v.length === 0) return { mean: 0, p95: 0, max: 0 }
  const s = [...v].sort((a, b) => a - b)
  return {
    mean: v.reduce((a, b) => a + b, 0) / v.length,
    p95: s[Math.round((s.length - 1) * 0.95)],
    max: s[s.length - 1]
  }
}

// kad-dht 16.4.5 can end a query path with an AbortError nobody awaits
// (query-path.js, under load at 300 nodes): count it instead of dying.
const stray = {}
for (const ev of ['unhandledRejection', 'uncaughtException']) {
  process.on(ev, (e) => {
    const k = `${ev}: ${e?.name}: ${e?.message}`.slice(0, 120)
    stray[k] = (stray[k] ?? 0) + 1
  })
}

const t0 = now()
const rss0 = rssMb()
const nodes = []
for (let i = 0; i < args.nodes; i++) nodes.push(await makeNode(i))
const rssHosts = rssMb()
console.log(`# ${args.nodes} js nodes up, RSS ${rssHosts.toFixed(1)} MB, ${((now() - t0) / 1e3).toFixed(1)} s`)

// Bootstrap in waves as kad_scale.c: 1..9 one at a time, then doubling, at
// most `wave` at once.
const tb = now()
let bootFails = 0
const bootErrors = {}
function bootFailed (why) {
  bootFails++
  bootErrors[why] = (bootErrors[why] ?? 0) + 1
}
async function boot (i, from) {
  const k = Math.min(args.boot, from)
  const picked = new Set()
  while (picked.size < k) picked.add(rnd(from))
  try {
    for (const j of picked) await nodes[i].dial(nodes[j].getMultiaddrs()[0])
    const dht = nodes[i].services.dht
    // The table fills from identify, after the dial: a self-lookup on an
    // empty table finds nobody (np_kad_bootstrap adds its boot peers as
    // they connect, so natpeer never starts empty). Bounded: 10 s.
    for (let t = 0; t < 200 && dht.routingTable.size === 0; t++) {
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    const key = nodes[i].peerId.toMultihash().bytes
    const r = await runQuery(dht.getClosestPeers(key), null, seeds(dht, key))
    if (!r.found) bootFailed('no peer answered the self-lookup')
  } catch (e) {
    bootFailed(`${e.name}: ${e.message}`.slice(0, 120))
  }
}
for (let i = 1; i < args.nodes;) {
  const to = i < 10 ? i + 1 : Math.min(i * 2, args.nodes, i + args.wave)
  const wave = []
  for (let j = i; j < to; j++) wave.push(boot(j, i))
  await Promise.all(wave)
  i = to
}
const bootS = (now() - tb) / 1e3
let entries = 0; let minsz = Infinity; let conns = 0
for (const n of nodes) {
  const s = n.services.dht.routingTable.size
  entries += s; minsz = Math.min(minsz, s)
  conns += n.getConnections().length
}
const rssBoot = rssMb()
for (const [why, n] of Object.entries(bootErrors)) console.log(`# bootstrap failure x${n}: ${why}`)
console.log(`# bootstrap: ${bootS.toFixed(1)} s, ${bootFails} failed; table entries ${entries} (mean ${(entries / args.nodes).toFixed(1)}, min ${minsz}); connections ${conns}; RSS ${rssBoot.toFixed(1)} MB`)

const result = {
  impl: 'js-libp2p', versions: { libp2p: '3.3.11', 'kad-dht': '16.4.5', memory: '2.0.15', node: process.version },
  hosts: args.nodes, boot_peers: args.boot, boot_failed: bootFails, boot_errors: bootErrors, boot_s: bootS,
  entries, entries_min: minsz, conns, rss0_mb: rss0, rss_hosts_mb: rssHosts, rss_boot_mb: rssBoot, kinds: []
}

for (const kind of args.kind.split(',')) {
  const per = []
  const busy = new Set()
  const tk = now()
  let next = 0
  async function one () {
    let s, d
    do { s = rnd(args.nodes); d = rnd(args.nodes) } while (s === d || busy.has(s))
    busy.add(s)
    const t = now()
    const dht = nodes[s].services.dht
    const key = kind === 'find' ? nodes[d].peerId.toMultihash().bytes : randomBytes(32)
    const r = kind === 'find'
      ? await runQuery(dht.findPeer(nodes[d].peerId, { useCache: false }), nodes[d].peerId, seeds(dht, key))
      : await runQuery(dht.getClosestPeers(key), null, seeds(dht, key))
    r.ms = now() - t
    per.push(r)
    busy.delete(s)
  }
  async function worker () {
    while (next < args.lookups) { next++; await one() }
  }
  await Promise.all(Array.from({ length: Math.min(args.conc, args.lookups) }, worker))
  const found = per.filter(r => r.found).length
  const k = {
    kind, lookups: per.length, found, rate: found / per.length,
    hops: stats(per.map(r => r.hops)), sent: stats(per.map(r => r.sent)), ms: stats(per.map(r => r.ms)),
    wall_s: (now() - tk) / 1e3
  }
  result.kinds.push(k)
  result.stray_errors = stray
  if (args.out) writeFileSync(args.out, JSON.stringify(result) + '\n') // partial results survive
  console.log(`# ${kind}: ${found}/${per.length} (${k.rate.toFixed(3)}); hops mean ${k.hops.mean.toFixed(2)} p95 ${k.hops.p95} max ${k.hops.max}; requests mean ${k.sent.mean.toFixed(1)} p95 ${k.sent.p95} max ${k.sent.max}; ms mean ${k.ms.mean.toFixed(1)} p95 ${k.ms.p95.toFixed(1)} max ${k.ms.max.toFixed(1)}; ${k.wall_s.toFixed(1)} s`)
}
result.total_s = (now() - t0) / 1e3
if (args.out) writeFileSync(args.out, JSON.stringify(result) + '\n')
await Promise.all(nodes.map(n => n.stop()))
process.exit(0)
