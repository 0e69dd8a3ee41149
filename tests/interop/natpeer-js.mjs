// js-libp2p NAT-traversal peer for the NAT lab (tests/natlab/js_matrix.sh):
// circuit relay v2 (@libp2p/circuit-relay-v2), DCUtR (@libp2p/dcutr), AutoNAT
// v1 (@libp2p/autonat), identify, ping; TCP + Noise + yamux and QUIC-v1
// (@chainsafe/libp2p-quic). Run it with the pinned node (jsdeps.sh: $NP_NODE).
//
//   node natpeer-js.mjs relay   --ip IP [--port 4001] [--autonat-server] [--unlimited] [common]
//       public host: relay server (hop), identify, ping; announces exactly its
//       listen addresses (see "lab" below). --autonat-server adds the AutoNAT
//       v1 server, off by default because in @libp2p/autonat 3.0.28 it breaks
//       the lab: its dial-back (dist/src/autonat.js, handleAutonatMessage ->
//       openConnection without `force`) is answered with the requester's own
//       connection whenever the address to check is the one that connection
//       comes from (always, for a QUIC client behind an EIM NAT), reports
//       the address as dialable (a false OK), and then closes that connection
//       (`finally { connection.close() }`), which drops the requester's relay
//       reservation a few ms after it was made. Stock js never gets there
//       because the lab's addresses are private to it.
//   node natpeer-js.mjs private --ip IP --relay MA[,MA...] [--serve NAME] [common]
//       private host: circuit-relay transport with a reservation on each
//       relay (listens on MA/p2p-circuit), DCUtR, AutoNAT client; serves the
//       unary NAME (default handler_name) answering "Hello, World!" in
//       natpeer's unary-call wire format (README.md), also over relayed
//       (limited) connections, so natpeer-cli can call it.
//   node natpeer-js.mjs caller  --ip IP --relay MA --target PEER [--proto NAME]
//                               [--direct-timeout 30] [common]
//       a private host like `private` (no reservation); dials
//       MA/p2p-circuit/p2p/PEER, calls NAME over the relayed connection
//       (t0 = just before that dial), waits up to --direct-timeout s for a
//       direct (non-circuit) connection to PEER, calls NAME again on it, and
//       prints ONE JSON line (see RESULT below). Exit 0 the first call was
//       answered (direct or not), 1 it was not, 2 usage.
//       --bulk BYTES: after the first call, send BYTES on one stream of the
//       relayed connection to the private host's /natpeer-js/sink/1.0.0
//       (it answers the count it received as 8 bytes, big-endian, after our
//       FIN) and report bulkBytes, bulkMs, bulkMbitps instead of waiting for
//       a direct connection (a relay's one-circuit throughput; the relay
//       needs --unlimited beyond 128 KiB).
//
// common: [--transport quic|tcp|both] (default both: every address family a
//   punch could use) [--seed HEX64] [--max-lifetime S] (default 600)
//   [--lab-public PFX,PFX...] (prefixes js must treat as public; the lab's
//   documentation prefixes; see labpublic.mjs)
//   [--announce MA,MA...] (addresses.appendAnnounce: addresses js counts as
//   verified without AutoNAT; the lab's "announce the NAT's address" mode)
//
// relay and private print one JSON line per event on stdout; the first is
// {"event":"ready","peer":ID,"addrs":[...]}; private prints
// {"event":"reserved","relay":ID,"addrs":[circuit addrs]} per reservation.
// Every process prints {"event":"conn","dir","remote","addr","limited"} per
// connection opened and closed ("conn-closed"). They exit on SIGTERM/SIGINT.
//
// RESULT (caller): {ok, response, relayedAddr, callMs, direct (bool),
//   directAddr, directDir, timeToDirectMs (t0 -> direct connection open),
//   secondCall ("Hello, World!" over the direct connection, or error),
//   error?}
//
// lab: with --lab-public, js-libp2p's private-address table loses those
// prefixes (labpublic.mjs). Then js counts the relay's own listen address as
// a public address waiting for AutoNAT confirmation and would announce none,
// leaving reservations without relay addresses, so the relay announces its
// listen addresses explicitly (addresses.announce).
import { treatAsPublic, checkTreatAsPublic } from './labpublic.mjs'

const EXIT = { OK: 0, FAIL: 1, USAGE: 2 }
function parseArgs (argv) {
  const out = { _: [] }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (!a.startsWith('--')) { out._.push(a); continue }
    const eq = a.indexOf('=')
    if (eq > 0) { out[a.slice(2, eq)] = a.slice(eq + 1); continue }
    const next = argv[i + 1]
    if (next === undefined || next.startsWith('--')) out[a.slice(2)] = true
    else { out[a.slice(2)] = next; i++ }
  }
  return out
}
const args = parseArgs(process.argv.slice(2))
const role = args._[0]
const usage = (msg) => { console.error(`natpeer-js.mjs: ${msg}`); process.exit(EXIT.USAGE) }
if (!['relay', 'private', 'caller'].includes(role)) usage('role must be relay, private or caller')
if (typeof args.ip !== 'string') usage('--ip IP is required')
const transport = args.transport ?? 'both'
if (!['quic', 'tcp', 'both'].includes(transport)) usage('--transport must be quic, tcp or both')
const port = Number(args.port ?? 4001)
const labPublic = typeof args['lab-public'] === 'string' ? args['lab-public'].split(',').filter(Boolean) : []
const announce = typeof args.announce === 'string' ? args.announce.split(',').filter(Boolean) : []
const relays = typeof args.relay === 'string' ? args.relay.split(',').filter(Boolean) : []
if (role !== 'relay' && relays.length === 0) usage('--relay MA is required')
if (role === 'caller' && typeof args.target !== 'string') usage('--target PEER is required')
const maxLifetime = Number(args['max-lifetime'] ?? 600)
const directTimeout = Number(args['direct-timeout'] ?? 30)
const proto = typeof args.proto === 'string' ? args.proto : 'handler_name'
const serve = typeof args.serve === 'string' ? args.serve : 'handler_name'

// must come before the first import of libp2p
if (labPublic.length > 0) treatAsPublic(labPublic)

const [lib, { circuitRelayServer, circuitRelayTransport }, { dcutr }, { autoNAT }, { isPrivate }, { multiaddr }, { Circuit }] = await Promise.all([
  import('./lib.mjs'), import('@libp2p/circuit-relay-v2'), import('@libp2p/dcutr'), import('@libp2p/autonat'),
  import('@libp2p/utils'), import('@multiformats/multiaddr'), import('@multiformats/multiaddr-matcher')
])
const [{ createLibp2p }, { identify }, { ping }, { quic }, { tcp }, { noise }, { yamux }, keys, { defaultLogger }] = await Promise.all([
  import('libp2p'), import('@libp2p/identify'), import('@libp2p/ping'), import('@chainsafe/libp2p-quic'),
  import('@libp2p/tcp'), import('@chainsafe/libp2p-noise'), import('@chainsafe/libp2p-yamux'), import('@libp2p/crypto/keys'),
  import('@libp2p/logger')
])

const SINK = '/natpeer-js/sink/1.0.0'
const emit = (o) => process.stdout.write(JSON.stringify(o) + '\n')

// @libp2p/dcutr reports progress and failures only through its logger
// (component libp2p:dcutr); no events. Tap that logger so every DCUtR step
// is a JSON event ({"event":"dcutr","level","msg"}) whatever DEBUG says, and
// so the caller knows when A has seen B's last attempt.
const dcutrSeen = { connects: 0, lastConnectAt: 0 }
function fmtLog (fmt, a) {
  let i = 0
  const str = (v) => Array.isArray(v) ? v.map(String).join(',') : v instanceof Error ? `${v.name}: ${v.message}` : String(v)
  return String(fmt).replace(/%[psaeodj]/g, () => i < a.length ? str(a[i++]) : '')
}
function tapped (l, name) {
  const wrap = (fn, level) => {
    const w = (fmt, ...a) => {
      const msg = fmtLog(fmt, a)
      if (msg === 'A receiving connect') { dcutrSeen.connects++; dcutrSeen.lastConnectAt = Date.now() }
      emit({ event: 'dcutr', t: Date.now(), level, msg: msg.slice(0, 600) })
      return fn(fmt, ...a)
    }
    return w
  }
  const w = wrap(l, 'info')
  w.error = wrap(l.error, 'error')
  w.trace = l.trace
  w.enabled = true
  w.newScope = (scope) => tapped(l.newScope(scope), `${name}:${scope}`)
  return w
}
const baseLogger = defaultLogger()
const logger = {
  forComponent (name) {
    const l = baseLogger.forComponent(name)
    return name.startsWith('libp2p:dcutr') ? tapped(l, name) : l
  }
}
const removed = checkTreatAsPublic(isPrivate, multiaddr)

const listen = []
if (transport !== 'quic') listen.push(`/ip4/${args.ip}/tcp/${port}`)
if (transport !== 'tcp') listen.push(`/ip4/${args.ip}/udp/${port}/quic-v1`)
if (role === 'private') for (const r of relays) listen.push(`${r}/p2p-circuit`)

const transports = []
if (transport !== 'tcp') transports.push(quic())
if (transport !== 'quic') transports.push(tcp())
if (role !== 'relay') transports.push(circuitRelayTransport())

const services = { identify: identify(), ping: ping() }
if (role === 'relay') {
  // --unlimited: no per-circuit duration/data limit (js's default is 2 min and
  // 128 KiB per direction), for throughput runs through one circuit
  services.relay = circuitRelayServer(args.unlimited === true ? { reservations: { applyDefaultLimit: false } } : {})
  // off by default: see --autonat-server in the header
  if (args['autonat-server'] === true) services.autonat = autoNAT()
} else {
  services.dcutr = dcutr()
  services.autonat = autoNAT()
}

const privateKey = typeof args.seed === 'string'
  ? await keys.generateKeyPairFromSeed('Ed25519', Uint8Array.from(Buffer.from(args.seed, 'hex')))
  : await keys.generateKeyPair('Ed25519')

const node = await createLibp2p({
  privateKey,
  logger,
  // the relay's listen ports are fixed, so the announce list is known
  addresses: role === 'relay' ? { listen, announce: listen } : { listen, appendAnnounce: announce },
  transports,
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  // the lab has few hosts per IP; lift js's per-host inbound limits
  connectionManager: { inboundConnectionThreshold: 1_000_000, maxIncomingPendingConnections: 1_000 },
  services,
  nodeInfo: { userAgent: `natpeer-js/${role}` }
})

const connInfo = (c) => ({ remote: c.remotePeer.toString(), addr: c.remoteAddr.toString(), dir: c.direction, limited: c.limits != null })
node.addEventListener('connection:open', (e) => emit({ event: 'conn', t: Date.now(), ...connInfo(e.detail) }))
node.addEventListener('connection:close', (e) => emit({ event: 'conn-closed', t: Date.now(), ...connInfo(e.detail) }))

let stopping = false
async function stop (code) {
  if (stopping) return
  stopping = true
  await lib.stopNode(node, 1500)
  process.exit(code)
}
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => { stop(0) })
setTimeout(() => { emit({ event: 'max-lifetime' }); stop(0) }, maxLifetime * 1000).unref()

emit({ event: 'ready', role, peer: node.peerId.toString(), addrs: node.getMultiaddrs().map(String), labPublic: removed })

if (role === 'relay') {
  // the service declares a relay:reservation event but never dispatches it
  // (4.2.13); its reservations map is the record
  const served = new Set()
  setInterval(() => {
    for (const [peer, r] of node.services.relay.reservations.entries()) {
      const k = `${peer}/${r.expiry.getTime()}`
      if (served.has(k)) continue
      served.add(k)
      emit({ event: 'reservation-served', t: Date.now(), peer: peer.toString(), expiry: r.expiry.toISOString(), limit: r.limit == null ? null : { duration: r.limit.duration, data: r.limit.data?.toString() } })
    }
  }, 100).unref()
} else {
  await lib.handleUnary(node, serve, async () => Buffer.from('Hello, World!'),
    (ev) => emit({ ...ev, t: Date.now() }), { runOnLimitedConnection: true })
  await node.handle(SINK, async (stream) => {
    let n = 0
    const done = Promise.withResolvers()
    const t = setTimeout(() => done.reject(new Error('sink: no FIN in 120 s')), 120_000)
    stream.addEventListener('message', (evt) => { n += evt.data.byteLength })
    stream.addEventListener('remoteCloseWrite', () => done.resolve())
    stream.addEventListener('close', (evt) => evt.error != null ? done.reject(evt.error) : done.resolve())
    try {
      await done.promise
      const b = Buffer.alloc(8)
      b.writeBigUInt64BE(BigInt(n))
      stream.send(b)
      await stream.close({ signal: AbortSignal.timeout(10_000) })
      emit({ event: 'sink', bytes: n })
    } catch (err) { stream.abort(err) } finally { clearTimeout(t) }
  }, { runOnLimitedConnection: true })
  node.addEventListener('self:peer:update', () => {
    const circuits = node.getMultiaddrs().map(String).filter(a => a.includes('/p2p-circuit'))
    if (circuits.length > 0) emit({ event: 'addrs', addrs: node.getMultiaddrs().map(String) })
  })
}

if (role === 'private') {
  // a reservation shows up as a circuit listen address
  const t0 = Date.now()
  const seen = new Set()
  const timer = setInterval(() => {
    for (const a of node.getMultiaddrs().map(String)) {
      if (!a.includes('/p2p-circuit') || seen.has(a)) continue
      seen.add(a)
      emit({ event: 'reserved', addr: a, ms: Date.now() - t0 })
    }
    if (Date.now() - t0 > 30_000 && seen.size === 0) { emit({ event: 'no-reservation' }); clearInterval(timer) }
  }, 50)
}

if (role === 'caller') {
  const target = args.target
  const result = { ok: false, target }
  const isDirect = (c) => c.remotePeer.toString() === target && !Circuit.exactMatch(c.remoteAddr) && c.status === 'open'
  let t0 = 0
  let relayedConn
  const direct = Promise.withResolvers()
  node.addEventListener('connection:open', (e) => { if (isDirect(e.detail)) direct.resolve({ conn: e.detail, at: Date.now() }) })
  try {
    const circuitAddr = multiaddr(`${relays[0]}/p2p-circuit/p2p/${target}`)
    t0 = Date.now()
    const conn = relayedConn = await node.dial(circuitAddr, { signal: AbortSignal.timeout(15_000) })
    result.relayedAddr = conn.remoteAddr.toString()
    result.relayedLimited = conn.limits != null
    const r = await lib.callUnaryOn(conn, proto, Buffer.from('hi'), { timeoutMs: 15_000 })
    result.callMs = Date.now() - t0
    result.response = r.response != null ? lib.utf8(r.response) : undefined
    result.error = r.error != null ? `remote error: ${lib.utf8(r.error)}` : undefined
    result.ok = result.response === 'Hello, World!'
  } catch (err) {
    result.error = `first call: ${err?.message ?? err}`
  }
  if (result.ok && args.bulk != null) {
    try {
      Object.assign(result, await bulk(relayedConn, Number(args.bulk)))
    } catch (err) { result.bulkError = String(err?.message ?? err) }
  } else if (result.ok) {
    const already = node.getConnections().find(isDirect)
    if (already != null) direct.resolve({ conn: already, at: Date.now() })
    // wait for a direct connection: at most --direct-timeout s, and no longer
    // than B's last attempt can take (js: 3 attempts of 5 s each; A sees
    // each one start with B's CONNECT)
    const deadline = t0 + directTimeout * 1000
    let tick
    const gaveUp = new Promise(resolve => {
      tick = setInterval(() => {
        const now = Date.now()
        if (now >= deadline) resolve(null)
        if (dcutrSeen.connects >= 3 && now - dcutrSeen.lastConnectAt > 6_000) resolve(null)
      }, 50)
    })
    const got = await Promise.race([direct.promise, gaveUp])
    clearInterval(tick)
    result.dcutrAttemptsSeen = dcutrSeen.connects
    result.direct = got != null
    if (got != null) {
      result.directAddr = got.conn.remoteAddr.toString()
      result.directDir = got.conn.direction
      result.timeToDirectMs = got.at - t0
      try {
        const r = await lib.callUnaryOn(got.conn, proto, Buffer.from('hi'), { timeoutMs: 10_000 })
        result.secondCall = r.response != null ? lib.utf8(r.response) : `remote error: ${lib.utf8(r.error)}`
      } catch (err) { result.secondCall = `error: ${err?.message ?? err}` }
    }
  }
  emit({ event: 'result', ...result })
  await stop(result.ok ? EXIT.OK : EXIT.FAIL)
}

// --bulk: one stream, BYTES in 64 KiB chunks with back-pressure, FIN, then
// the sink's 8-byte count
async function bulk (conn, bytes) {
  if (!(bytes > 0)) throw new Error('--bulk needs a positive byte count')
  const signal = AbortSignal.timeout(120_000)
  const stream = await conn.newStream(SINK, { signal, runOnLimitedConnection: true })
  const got = []
  const done = Promise.withResolvers()
  stream.addEventListener('message', (evt) => got.push(Buffer.from(evt.data.subarray())))
  stream.addEventListener('remoteCloseWrite', () => done.resolve())
  stream.addEventListener('close', (evt) => evt.error != null ? done.reject(evt.error) : done.resolve())
  signal.addEventListener('abort', () => done.reject(new Error('bulk: 120 s')))
  const chunk = Buffer.alloc(64 * 1024, 0x5a)
  const t0 = performance.now()
  let sent = 0
  while (sent < bytes) {
    const c = bytes - sent >= chunk.length ? chunk : chunk.subarray(0, bytes - sent)
    sent += c.length
    if (!stream.send(c)) {
      await new Promise((resolve, reject) => {
        stream.addEventListener('drain', resolve, { once: true })
        stream.addEventListener('close', () => reject(new Error('bulk: stream closed while sending')), { once: true })
      })
    }
  }
  await stream.close({ signal })
  await done.promise
  const ms = performance.now() - t0
  const reply = Buffer.concat(got)
  if (reply.length !== 8) throw new Error(`bulk: sink answered ${reply.length} bytes`)
  const n = Number(reply.readBigUInt64BE(0))
  return { bulkBytes: n, bulkSent: sent, bulkMs: Math.round(ms), bulkMbitps: Math.round(n * 8 / ms / 1000 * 10) / 10 }
}
