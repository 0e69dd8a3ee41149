// Shared by peer.mjs and mock-natpeer.mjs: a js-libp2p node (QUIC-v1, or
// TCP + Noise + yamux), and the
// hivemind unary-call wire format on top of libp2p streams (see peer.mjs).
// Import only under node >= 22 (the scripts re-exec themselves first).
import { randomBytes } from 'node:crypto'

export const MAX_MESSAGE = 4 << 20 // hivemind's -persistentConnMaxMsgSize default

const [{ createLibp2p }, { identify }, { ping }, { quic }, { tcp }, { noise }, { yamux }, keys, { lpStream, echo }, P, { tls }] = await Promise.all([
  import('libp2p'), import('@libp2p/identify'), import('@libp2p/ping'), import('@chainsafe/libp2p-quic'),
  import('@libp2p/tcp'), import('@chainsafe/libp2p-noise'), import('@chainsafe/libp2p-yamux'),
  import('@libp2p/crypto/keys'), import('@libp2p/utils'), import('./p2pd-proto.mjs'), import('@libp2p/tls')
])
// NP_JS_SECURITY: what TCP connections are secured with, in preference
// order: "noise" (default), "tls" (@libp2p/tls), "tls noise", "noise tls"
const encrypters = () => (process.env.NP_JS_SECURITY ?? 'noise').split(/[ ,]+/).filter(Boolean)
  .map(w => w === 'tls' ? tls() : w === 'noise' ? noise() : (() => { throw new Error(`NP_JS_SECURITY: unknown ${w}`) })())
export { echo, P }

// transport: 'quic' (QUIC-v1, libp2p TLS and muxing built in) or 'tcp' (TCP
// only, upgraded with Noise and yamux; no QUIC at all) or 'both' 
// services: more js-libp2p services beside identify and ping (kad.mjs adds
// kadDHT).
export async function makeNode ({ listen = [], seedHex, userAgent, transport = 'quic', services = {} }) {
  const privateKey = seedHex != null
    ? await keys.generateKeyPairFromSeed('Ed25519', Uint8Array.from(Buffer.from(seedHex, 'hex')))
    : await keys.generateKeyPair('Ed25519')
  return await createLibp2p({
    privateKey,
    addresses: { listen },
    ...(transport === 'tcp'
      ? { transports: [tcp()], connectionEncrypters: encrypters(), streamMuxers: [yamux()] }
      : transport === 'both'
        ? { transports: [quic(), tcp()], connectionEncrypters: encrypters(), streamMuxers: [yamux()] }
        : { transports: [quic()] }),
    // everything comes from 127.0.0.1: lift js-libp2p's per-host inbound limits
    connectionManager: { inboundConnectionThreshold: 1_000_000, maxIncomingPendingConnections: 1_000 },
    services: { identify: identify(), ping: ping(), ...services },
    ...(userAgent != null ? { nodeInfo: { userAgent } } : {})
  })
}

// stop a node, but never wait more than `ms` (a js-libp2p stop() has been seen
// never settling; see shared/bench/js-libp2p-baseline.md)
export async function stopNode (node, ms = 1500) {
  let t
  await Promise.race([node.stop().catch(() => {}), new Promise(resolve => { t = setTimeout(resolve, ms) })])
  clearTimeout(t)
}

export const utf8 = (b) => Buffer.from(b.subarray ? b.subarray() : b).toString('utf8')

// ---------------------------------------------------------------------------
// unary calls
// ---------------------------------------------------------------------------
// Registers a unary handler: fn(data: Uint8Array, remotePeer) -> Uint8Array
// (response) or throws (the message goes back as unaryResponse.error).
// handleOpts: more node.handle options (natpeer-js.mjs: runOnLimitedConnection,
// so that calls over a relayed circuit are served).
export async function handleUnary (node, proto, fn, onEvent, handleOpts = {}) {
  await node.handle(proto, async (stream, connection) => {
    const peer = connection.remotePeer.toString()
    const signal = AbortSignal.timeout(10_000)
    try {
      const lp = lpStream(stream, { maxDataLength: MAX_MESSAGE })
      const req = P.decodeUnary((await lp.read({ signal })).subarray())
      if (req.call == null) throw new Error('unary: request without callUnary')
      let reply
      try {
        reply = { callId: req.callId, response: await fn(req.call.data, peer) }
      } catch (err) {
        reply = { callId: req.callId, error: Buffer.from(String(err?.message ?? err)) }
      }
      await lp.write(P.encodeUnaryResponse(reply), { signal })
      await stream.close({ signal })
      onEvent?.({ event: 'unary', proto, peer, bytes: req.call.data.byteLength, callIdLen: req.callId.byteLength, error: reply.error != null ? utf8(reply.error) : undefined })
    } catch (err) {
      onEvent?.({ event: 'unary-failed', proto, peer, error: String(err?.message ?? err) })
      stream.abort(err)
    }
  }, { maxInboundStreams: 1024, maxOutboundStreams: 1024, ...handleOpts })
}

export class RemoteError extends Error {}

// -> { response: Uint8Array } | { error: Uint8Array }; throws RemoteError when
// the remote refused the protocol or broke the exchange, other errors otherwise
// runOnLimitedConnection: allow a relayed (limited) connection.
export async function callUnary (node, target, proto, data, { timeoutMs = 10_000, peerIdBytes, runOnLimitedConnection = false } = {}) {
  const signal = AbortSignal.timeout(timeoutMs)
  let stream
  try {
    stream = await node.dialProtocol(target, proto, { signal, runOnLimitedConnection })
  } catch (err) {
    const n = err?.name ?? ''
    if (/UnsupportedProtocol|ProtocolError|InvalidMessage/.test(n)) throw new RemoteError(`protocol ${proto} refused: ${err.message}`)
    throw err
  }
  return await unaryExchange(stream, proto, data, signal, peerIdBytes)
}

// The same call on a given connection (natpeer-js.mjs: to know whether it
// went over the relayed or the direct connection).
export async function callUnaryOn (conn, proto, data, { timeoutMs = 10_000, peerIdBytes } = {}) {
  const signal = AbortSignal.timeout(timeoutMs)
  let stream
  try {
    stream = await conn.newStream(proto, { signal, runOnLimitedConnection: true })
  } catch (err) {
    if (/UnsupportedProtocol|ProtocolError|InvalidMessage/.test(err?.name ?? '')) throw new RemoteError(`protocol ${proto} refused: ${err.message}`)
    throw err
  }
  return await unaryExchange(stream, proto, data, signal, peerIdBytes)
}

async function unaryExchange (stream, proto, data, signal, peerIdBytes) {
  const callId = randomBytes(16)
  try {
    const lp = lpStream(stream, { maxDataLength: MAX_MESSAGE })
    await lp.write(P.encodeUnaryCall({ callId, peer: peerIdBytes, proto, data }), { signal })
    let raw
    try { raw = await lp.read({ signal }) } catch (err) {
      if (signal.aborted) throw err
      throw new RemoteError(`no unary response: ${err?.message ?? err}`)
    }
    let resp
    try { resp = P.decodeUnary(raw.subarray()) } catch (err) { throw new RemoteError(`malformed unary response: ${err.message}`) }
    if (Buffer.compare(Buffer.from(resp.callId ?? []), callId) !== 0) throw new RemoteError('unary response with a different callId')
    await stream.close({ signal }).catch(() => {})
    if (resp.error != null) return { error: resp.error }
    if (resp.response == null) throw new RemoteError('unary response without unaryResponse')
    return { response: resp.response }
  } catch (err) {
    stream.abort(err)
    throw err
  }
}

// raw stream: write `data`, close the write side, read until the remote closes
export async function streamRoundTrip (node, target, proto, data, timeoutMs) {
  const signal = AbortSignal.timeout(timeoutMs)
  let stream
  try {
    stream = await node.dialProtocol(target, proto, { signal })
  } catch (err) {
    if (/UnsupportedProtocol|ProtocolError/.test(err?.name ?? '')) throw new RemoteError(`protocol ${proto} refused: ${err.message}`)
    throw err
  }
  const chunks = []
  const done = Promise.withResolvers()
  const t = setTimeout(() => done.reject(new Error(`stream ${proto}: no EOF in ${timeoutMs} ms`)), timeoutMs)
  stream.addEventListener('message', (evt) => chunks.push(Buffer.from(evt.data.subarray())))
  stream.addEventListener('remoteCloseWrite', () => done.resolve())
  stream.addEventListener('close', (evt) => evt.error != null ? done.reject(new RemoteError(`stream ${proto}: ${evt.error.message}`)) : done.resolve())
  try {
    if (data.length > 0) stream.send(data)
    await stream.close({ signal })
    await done.promise
  } catch (err) {
    stream.abort(err)
    throw err
  } finally { clearTimeout(t) }
  return Buffer.concat(chunks)
}
