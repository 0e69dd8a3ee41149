// p2pd control-protocol tests, driven by @libp2p/daemon-client (the client
// js-libp2p's interop suite uses). Two daemons: NP_CONTROL is the one under
// test, NP_CONTROL2 the remote peer (another natpeer, or a reference js daemon
// from ref-daemons.mjs). Control addresses are multiaddrs: /unix/PATH (go style
// or percent-encoded) or /ip4/127.0.0.1/tcp/PORT.
//
//   NP_CONTROL=... NP_CONTROL2=... node --test --test-reporter=tap ctl.test.mjs
//
// Every wait is bounded; a test fails with the step that timed out.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { createServer as netServer } from 'node:net'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createClient } from '@libp2p/daemon-client'
import { Request, Response, StreamInfo } from '@libp2p/daemon-protocol'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'

const STEP_MS = 10_000
const TEST_MS = 30_000

// go-style `/unix/tmp/x.sock` -> multiaddr 13's `/unix/%2Ftmp%2Fx.sock`
function controlAddr (s) {
  if (!s.startsWith('/unix/')) return multiaddr(s)
  let path = decodeURIComponent(s.slice(6))
  if (!path.startsWith('/')) path = '/' + path
  return multiaddr('/unix/' + encodeURIComponent(path))
}

function within (promise, what, ms = STEP_MS) {
  let t
  return Promise.race([
    promise,
    new Promise((resolve, reject) => { t = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms) })
  ]).finally(() => clearTimeout(t))
}

async function eventually (fn, what, ms = 5_000) {
  const until = Date.now() + ms
  let last
  for (;;) {
    last = await fn()
    if (last === true) return
    if (Date.now() > until) throw new Error(`${what}: still false after ${ms} ms (${last})`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

const skip = process.env.NP_CONTROL == null || process.env.NP_CONTROL2 == null
  ? 'NP_CONTROL and NP_CONTROL2 (two daemons\' control addresses) are not set'
  : false
const c1 = skip ? null : createClient(controlAddr(process.env.NP_CONTROL))
const c2 = skip ? null : createClient(controlAddr(process.env.NP_CONTROL2))
let id1, id2

const tmp = mkdtempSync(join(tmpdir(), 'np-ctl-'))
after(() => rmSync(tmp, { recursive: true, force: true }))

// echo handler: one uvarint-length-prefixed message back, then close
async function echoHandler (stream) {
  const lp = lpStream(stream)
  const msg = await within(lp.read(), 'handler read')
  await lp.write(msg)
  await within(stream.close(), 'handler close')
}

async function echoOver (client, peerId, proto, text) {
  const stream = await within(client.openStream(peerId, proto), `STREAM_OPEN ${proto}`)
  try {
    const lp = lpStream(stream)
    await lp.write(new TextEncoder().encode(text))
    const back = await within(lp.read(), 'echo read')
    return new TextDecoder().decode(back.subarray())
  } finally {
    await stream.close().catch(() => stream.abort(new Error('close failed')))
  }
}

let connected = false
async function ensureConnected () {
  if (connected) return
  id1 ??= await within(c1.identify(), 'IDENTIFY daemon 1')
  id2 ??= await within(c2.identify(), 'IDENTIFY daemon 2')
  await within(c1.connect(id2.peerId, id2.addrs), 'CONNECT 1 -> 2')
  connected = true
}

test('IDENTIFY: both daemons answer with a peer ID and listen addresses', { skip, timeout: TEST_MS }, async () => {
  id1 = await within(c1.identify(), 'IDENTIFY daemon 1')
  id2 = await within(c2.identify(), 'IDENTIFY daemon 2')
  for (const [n, id] of [[1, id1], [2, id2]]) {
    assert.ok(id.peerId.toString().length > 0, `daemon ${n}: peer ID`)
    assert.ok(id.addrs.length > 0, `daemon ${n}: no listen addresses in IDENTIFY`)
  }
  assert.notEqual(id1.peerId.toString(), id2.peerId.toString(), 'both daemons have the same peer ID')
})

test('LIST_PEERS: daemon 1 is not connected to daemon 2 before CONNECT', { skip, timeout: TEST_MS }, async () => {
  id2 ??= await within(c2.identify(), 'IDENTIFY daemon 2')
  const peers = await within(c1.listPeers(), 'LIST_PEERS daemon 1')
  assert.ok(!peers.some(p => p.equals(id2.peerId)), 'daemon 2 already listed')
})

test('CONNECT with the addresses from the other daemon\'s IDENTIFY', { skip, timeout: TEST_MS }, async () => {
  await ensureConnected()
})

test('LIST_PEERS shows the connection on both sides', { skip, timeout: TEST_MS }, async () => {
  await ensureConnected()
  await eventually(async () => (await within(c1.listPeers(), 'LIST_PEERS daemon 1')).some(p => p.equals(id2.peerId)), 'daemon 1 lists daemon 2')
  await eventually(async () => (await within(c2.listPeers(), 'LIST_PEERS daemon 2')).some(p => p.equals(id1.peerId)), 'daemon 2 lists daemon 1')
})

test('STREAM_OPEN 1 -> 2 reaches a handler daemon 2\'s client registered (echo)', { skip, timeout: TEST_MS }, async () => {
  await ensureConnected()
  const proto = '/np-ctl/echo/1.0.0'
  await within(c2.registerStreamHandler(proto, echoHandler), 'STREAM_HANDLER on daemon 2')
  assert.equal(await echoOver(c1, id2.peerId, proto, 'hello natpeer'), 'hello natpeer')
})

test('STREAM_HANDLER on daemon 1, stream opened by the remote daemon 2 (echo)', { skip, timeout: TEST_MS }, async () => {
  await ensureConnected()
  const proto = '/np-ctl/echo-back/1.0.0'
  await within(c1.registerStreamHandler(proto, echoHandler), 'STREAM_HANDLER on daemon 1')
  assert.equal(await echoOver(c2, id1.peerId, proto, 'hello from the remote'), 'hello from the remote')
})

// What the daemon writes on the callback connection: a bare uvarint-delimited
// StreamInfo{peer, addr, proto} (not a Response), then the stream's bytes.
// hivemind's client listens on a unix socket, the js client on TCP: test both.
for (const kind of ['tcp', 'unix']) {
  test(`inbound stream on a ${kind} callback: StreamInfo names the remote peer and protocol, then bytes flow`, { skip, timeout: TEST_MS }, async () => {
    await ensureConnected()
    const proto = `/np-ctl/raw-${kind}/1.0.0`
    const got = Promise.withResolvers()
    const srv = netServer((sock) => {
      let buf = Buffer.alloc(0)
      sock.on('data', (d) => {
        buf = Buffer.concat([buf, d])
        let len = 0; let shift = 0; let i = 0
        for (; i < buf.length; i++) { len += (buf[i] & 0x7f) * 2 ** shift; shift += 7; if ((buf[i] & 0x80) === 0) break }
        if (i >= buf.length || buf.length < i + 1 + len) return
        sock.removeAllListeners('data')
        try {
          const info = StreamInfo.decode(buf.subarray(i + 1, i + 1 + len))
          const rest = buf.subarray(i + 1 + len)
          got.resolve({ info, sock, rest })
        } catch (err) { got.reject(err) }
      })
      sock.on('error', () => {})
    })
    const path = join(tmp, `cb-${kind}.sock`)
    await new Promise((resolve, reject) => { srv.once('error', reject); kind === 'tcp' ? srv.listen(0, '127.0.0.1', resolve) : srv.listen(path, resolve) })
    try {
      const cb = kind === 'tcp' ? multiaddr(`/ip4/127.0.0.1/tcp/${srv.address().port}`) : multiaddr(`/unix/${encodeURIComponent(path)}`)
      const sh = await within(c1.send({ type: Request.Type.STREAM_HANDLER, streamHandler: { addr: cb.bytes, proto: [proto] } }), 'STREAM_HANDLER (raw)')
      const resp = await within(sh.read(Response), 'STREAM_HANDLER response')
      await sh.unwrap().close()
      assert.equal(resp.type, Response.Type.OK, `STREAM_HANDLER: ${resp.error?.msg}`)

      const out = await within(c2.openStream(id1.peerId, proto), `STREAM_OPEN ${proto}`)
      const { info, sock, rest } = await within(got.promise, 'callback connection with StreamInfo')
      assert.deepEqual(Buffer.from(info.peer), Buffer.from(id2.peerId.toMultihash().bytes), 'StreamInfo.peer is not the remote peer (as multihash bytes)')
      assert.equal(info.proto, proto, 'StreamInfo.proto')
      assert.ok(multiaddr(info.addr).toString().length > 0, 'StreamInfo.addr is not a multiaddr')

      // bytes both ways through the splice
      const fromCb = Promise.withResolvers()
      let acc = Buffer.from(rest)
      const check = () => { if (acc.toString().includes('ping!')) fromCb.resolve() }
      sock.on('data', (d) => { acc = Buffer.concat([acc, d]); check() })
      check()
      out.send(new TextEncoder().encode('ping!'))
      await within(fromCb.promise, 'bytes opener -> handler')
      const back = Promise.withResolvers()
      let acc2 = ''
      out.addEventListener('message', (evt) => { acc2 += new TextDecoder().decode(evt.data.subarray()); if (acc2.includes('pong!')) back.resolve() })
      sock.write('pong!')
      await within(back.promise, 'bytes handler -> opener')
      sock.end()
      await out.close().catch(() => {})
    } finally {
      srv.close()
    }
  })
}

test('STREAM_OPEN for a protocol nobody handles is refused with ERROR', { skip, timeout: TEST_MS }, async () => {
  await ensureConnected()
  await assert.rejects(within(c1.openStream(id2.peerId, '/np-ctl/nobody/1.0.0'), 'STREAM_OPEN unknown protocol'),
    (err) => { assert.equal(err.name, 'OperationFailedError', `want an ERROR response, got ${err.name}: ${err.message}`); return true })
})
