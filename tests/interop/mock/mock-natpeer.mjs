// A js stand-in for natpeer-host and natpeer-cli, only to validate run.sh's
// natpeer cases (`run.sh --mock`) before the C side can run them. It plays the
// parts those cases use, as the spec describes them, and nothing else:
//
//   host --config FILE [--print-peer-id]
//       reads [host] data_dir / listen / control from FILE; a QUIC-v1 node with
//       agent "natpeer/0-mock", unary handlers hello ("Hello, World!") and echo,
//       prints natpeer-host's banner (Control socket / Peer ID / Peer Addrs) on
//       stdout and "listening addr=<multiaddr>" on stderr; a p2pd control socket with
//       IDENTIFY, CONNECT and PERSISTENT_CONN_UPGRADE + CallUnary (§1, §2.3);
//       other requests get ERROR. Exits on SIGTERM.
//   cli [--control ADDR] call PEER PROTO [--data STR]   prints the response
//
// Needs node >= 22 (the wrappers beside it run it with $NP_NODE).
import { createServer } from 'node:net'
import { mkdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'

const [{ multiaddr }, { peerIdFromString }, lib, ctl] = await Promise.all([
  import('@multiformats/multiaddr'), import('@libp2p/peer-id'), import('../lib.mjs'), import('../p2pd-ctl.mjs')
])
const { PB, REQ, RESP } = lib.P

function ini (file) {
  const out = {}; let sec = ''
  for (const raw of readFileSync(file, 'utf8').split('\n')) {
    const l = raw.trim()
    if (l === '' || l.startsWith(';') || l.startsWith('#')) continue
    const m = /^\[(.+)\]$/.exec(l)
    if (m != null) { sec = m[1]; continue }
    const eq = l.indexOf('=')
    if (eq > 0) out[`${sec}.${l.slice(0, eq).trim()}`] = l.slice(eq + 1).trim()
  }
  return out
}

const peerStrFromBytes = (b) => {
  const len = []; let v = b.length
  while (v >= 0x80) { len.push((v & 0x7f) | 0x80); v >>= 7 }
  len.push(v)
  return multiaddr(Uint8Array.from([0xa5, 0x03, ...len, ...b])).getComponents()[0].value
}

async function host (argv) {
  const cfgFile = argv[argv.indexOf('--config') + 1]
  const cfg = ini(cfgFile)
  const dataDir = cfg['host.data_dir']
  mkdirSync(dataDir, { recursive: true })
  const seedFile = join(dataDir, 'mock-identity.seed')
  if (!existsSync(seedFile)) writeFileSync(seedFile, randomBytes(32).toString('hex'), { mode: 0o600 })
  const seedHex = readFileSync(seedFile, 'utf8').trim()
  if (argv.includes('--print-peer-id')) {
    const node = await lib.makeNode({ seedHex })
    console.log(node.peerId.toString())
    process.exit(0)
  }
  const node = await lib.makeNode({ listen: [cfg['host.listen']], seedHex, userAgent: 'natpeer/0-mock' })
  await lib.handleUnary(node, 'hello', async () => Buffer.from('Hello, World!'))
  await lib.handleUnary(node, 'echo', async (d) => d)
  const addrs = node.getMultiaddrs().map(a => a.decapsulateCode(421))
  for (const a of addrs) console.error(`info host listening addr=${a}`)
  // natpeer-host's start-up banner (p2pd's form), unless MOCK_NO_BANNER=1
  if (process.env.MOCK_NO_BANNER !== '1') {
    process.stdout.write(`Control socket: ${cfg['host.control']}\nPeer ID: ${node.peerId}\nPeer Addrs:\n` +
      addrs.map(a => `${a}/p2p/${node.peerId}\n`).join(''))
  }

  const ctlPath = cfg['host.control'].replace(/^\/unix/, '')
  const srv = createServer((sock) => serveControl(node, addrs, new ctl.Framed(sock)).catch(() => sock.destroy()))
  // MOCK_NO_CONTROL=1: no control socket (run.sh then reads the address from the log)
  if (process.env.MOCK_NO_CONTROL !== '1') {
    rmSync(ctlPath, { force: true })
    await new Promise(resolve => srv.listen(ctlPath, resolve))
  }
  const stop = async () => {
    setTimeout(() => process.exit(0), 1500).unref()
    srv.close(); await lib.stopNode(node); process.exit(0)
  }
  process.on('SIGTERM', stop); process.on('SIGINT', stop)
  setTimeout(stop, 300_000).unref()
  setInterval(() => {}, 1 << 30)
}

async function serveControl (node, addrs, f) {
  const ok = (extra = {}) => f.write(PB.Response.encode({ 1: RESP.OK, ...extra }))
  const err = (msg) => f.write(PB.Response.encode({ 1: RESP.ERROR, 2: { 1: msg } }))
  for (;;) {
    const req = PB.Request.decode(await f.read())
    if (req[1] === REQ.IDENTIFY) {
      ok({ 4: { 1: node.peerId.toMultihash().bytes, 2: addrs.map(a => a.bytes) } })
    } else if (req[1] === REQ.CONNECT) {
      const id = peerStrFromBytes(req[2][1])
      const target = (req[2][2] ?? []).map(b => multiaddr(b).encapsulate(`/p2p/${id}`))
      try {
        await node.dial(target, { signal: AbortSignal.timeout(10_000) })
        ok()
      } catch (e) { err(`connect: ${e.message}`) }
    } else if (req[1] === REQ.PERSISTENT_CONN_UPGRADE && req[9] == null) {
      ok()
      for (;;) {
        const m = PB.PersistentConnectionRequest.decode(await f.read())
        if (m[3] == null) { f.write(PB.PersistentConnectionResponse.encode({ 1: m[1], 4: { 1: 'mock: only callUnary' } })); continue }
        const peer = peerIdFromString(peerStrFromBytes(m[3][1]))
        lib.callUnary(node, peer, m[3][2], m[3][3] ?? new Uint8Array(0), { peerIdBytes: m[3][1] })
          .then(r => f.write(PB.PersistentConnectionResponse.encode({ 1: m[1], 2: r.error != null ? { 2: r.error } : { 1: r.response } })))
          .catch(e => f.write(PB.PersistentConnectionResponse.encode({ 1: m[1], 4: { 1: e.message } })))
      }
    } else {
      err(`mock natpeer: request type ${req[1]} not supported`)
      f.close()
      return
    }
  }
}

async function cli (argv) {
  if (argv.includes('--help')) { console.log('usage: natpeer-cli [--control ADDR] call PEER PROTO [--data STR]'); return }
  const opt = (n) => { const i = argv.indexOf(n); if (i < 0) return undefined; const v = argv[i + 1]; argv.splice(i, 2); return v }
  const control = opt('--control'); const data = opt('--data') ?? ''
  const [cmd, peer, proto] = argv
  if (cmd !== 'call' || control == null) { console.error('mock natpeer-cli: only `--control ADDR call PEER PROTO`'); process.exit(2) }
  try {
    const r = await ctl.callUnary(control, peer, proto, Buffer.from(data), 10_000)
    if (r.error != null) { console.error(`natpeer-cli: remote error: ${r.error}`); process.exit(1) }
    console.log(r.response)
    process.exit(0)
  } catch (e) { console.error(`natpeer-cli: ${e.message}`); process.exit(1) }
}

const [role, ...rest] = process.argv.slice(2)
if (role === 'host') await host(rest)
else if (role === 'cli') await cli(rest)
else { console.error('usage: mock-natpeer.mjs host|cli ...'); process.exit(2) }
