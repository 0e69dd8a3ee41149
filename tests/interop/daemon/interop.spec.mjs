// @libp2p/interop (npm) with natpeer as the suite's "go" daemon and an
// in-process js-libp2p (+ @libp2p/daemon-server) as "js". Run under mocha
// (see ../../integration/interop_suite.sh, or README.md beside this file):
//
//   NATPEER_P2PD=.../host/natpeer-p2pd  mocha --exit interop.spec.mjs
//   NATPEER_HOST=.../host/natpeer-host  (no natpeer-p2pd yet: natpeer-host
//                                        with an INI made from the options)
//   NP_INTEROP_GROUPS=connect,streams,relay,dht   (default: all four)
//   NP_INTEROP_LOGDIR=DIR   each natpeer's stdout/stderr go to DIR/N-*.log
//   NP_INTEROP_JSONLY=1     both labels are js: checks this runner itself
//   NP_INTEROP_BOTH=1       both labels are natpeer (natpeer <-> natpeer)
//
// pubsub is not registered: natpeer has none (its control socket answers
// "PubSub not enabled"). Transports other than TCP throw UnsupportedError,
// which the connect group turns into pending tests.
import { spawn } from 'node:child_process'
import { copyFileSync, chmodSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { yamux } from '@chainsafe/libp2p-yamux'
import { noise } from '@chainsafe/libp2p-noise'
import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { privateKeyFromProtobuf } from '@libp2p/crypto/keys'
import { createClient } from '@libp2p/daemon-client'
import { createServer } from '@libp2p/daemon-server'
import { identify } from '@libp2p/identify'
import { UnsupportedError, connectInteropTests, dhtInteropTests, relayInteropTests, streamInteropTests } from '@libp2p/interop'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { ping } from '@libp2p/ping'
import { plaintext } from '@libp2p/plaintext'
import { tcp } from '@libp2p/tcp'
import { tls } from '@libp2p/tls'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'

const P2PD = process.env.NATPEER_P2PD || ''
const HOST = process.env.NATPEER_HOST || ''
const LOGDIR = process.env.NP_INTEROP_LOGDIR || ''
const GROUPS = (process.env.NP_INTEROP_GROUPS || 'connect,streams,relay,dht').split(/[ ,]+/).filter(Boolean)
const JSONLY = process.env.NP_INTEROP_JSONLY === '1'
const BOTH = process.env.NP_INTEROP_BOTH === '1'
const START_TIMEOUT = 15000 // the suite gives spawn() 20 s for two or three daemons
const STOP_GRACE = 3000

if (!JSONLY && P2PD === '' && HOST === '') {
  throw new Error('set NATPEER_P2PD (natpeer-p2pd) or NATPEER_HOST (natpeer-host), or NP_INTEROP_JSONLY=1')
}

let seq = 0
const running = new Map() // natpeer process -> its folder

// A natpeer process that is still up when mocha exits (a failed before hook
// leaves no stop() call) must not outlive the run, nor its folder.
process.on('exit', () => {
  for (const [p, dir] of running) {
    p.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  }
})

// ---- natpeer ---------------------------------------------------------------

// Go flag syntax, as the js-libp2p runner passes them to p2pd, except that
// the control socket is a unix socket in a folder of our own: no port to
// guess, nothing left behind.
function p2pdArgs (o, dir) {
  const args = [`-listen=/unix${join(dir, 'p2pd.sock')}`]
  if (o.noListen === true) args.push('-noListenAddrs')
  else args.push('-hostAddrs=/ip4/127.0.0.1/tcp/0')
  if (o.encryption != null) args.push(`-${o.encryption}=true`)
  if (o.dht === true) args.push('-dhtServer')
  if (o.relay === true) args.push('-relay')
  if (o.key != null) args.push(`-id=${o.key}`)
  args.push(`-muxer=${o.muxer === 'mplex' ? 'mplex' : 'yamux'}`)
  // NP_INTEROP_P2PD_ARGS: more flags for every natpeer (experiments)
  args.push(...(process.env.NP_INTEROP_P2PD_ARGS ?? '').split(' ').filter(Boolean))
  return args
}

// natpeer-host refuses a key file that group or others can read (natpeer-p2pd
// only warns, as go's p2pd reads any); the suite ships its keys 0644
function privateCopy (key, dir) {
  const copy = join(dir, 'identity.key')
  copyFileSync(key, copy)
  chmodSync(copy, 0o600)
  return copy
}

// Until natpeer-p2pd exists: natpeer-host with the same options as INI.
// natpeer-host has no security-protocol choice (TCP is Noise only there), so
// `encryption` other than noise is not expressible: those tests then fail on
// the js side's handshake, which is the honest result.
function hostIni (o, dir) {
  const identity = o.key != null ? privateCopy(o.key, dir) : join(dir, 'identity.key')
  const lines = [
    '[host]',
    `identity_file = ${identity}`,
    // natpeer-host needs a listen address: noListen hosts listen on loopback
    // too (the suite never dials them directly)
    'listen = /ip4/127.0.0.1/tcp/0',
    `control = ${join(dir, 'ctl.sock')}`,
    `data_dir = ${dir}`,
    'log_level = info',
    '[dht]',
    `mode = ${o.dht === true ? 'server' : 'off'}`,
    '[nat]',
    'reachability = public',
    'autonat = no',
    'hole_punch = no',
    '[relay]',
    `service = ${o.relay === true ? 'on' : 'off'}`,
    'accept_any_relay = yes',
    'client = off',
    '[plugins]',
    'autoload = no',
    `dir = ${dir}`
  ]
  const ini = join(dir, 'natpeer.ini')
  writeFileSync(ini, lines.join('\n') + '\n')
  return ['--config', ini]
}

async function waitFor (what, fn, ms, proc) {
  const end = Date.now() + ms
  for (;;) {
    if (proc.exitCode != null || proc.signalCode != null) throw new Error(`${what}: natpeer exited (${proc.exitCode ?? proc.signalCode})`)
    const v = await fn()
    if (v) return v
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

function tail (file, n = 15) {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-n).join('\n')
  } catch { return '' }
}

// p2pd prints a unix socket as /unix/PATH (Go multiaddr text); js multiaddr
// wants the path as one URI-encoded component
function controlAddr (s) {
  return s.startsWith('/unix/') ? multiaddr(`/unix/${encodeURIComponent(s.slice(5))}`) : multiaddr(s)
}

async function spawnNatpeer (o) {
  if ((o.transport ?? 'tcp') !== 'tcp') throw new UnsupportedError(`natpeer: no ${o.transport} transport`)
  if (o.pubsub === true) throw new UnsupportedError('natpeer: no pubsub')
  const n = ++seq
  const dir = mkdtempSync(join(tmpdir(), `np-interop-${n}-`))
  const usingP2pd = P2PD !== ''
  const bin = usingP2pd ? P2PD : HOST
  const args = usingP2pd ? p2pdArgs(o, dir) : hostIni(o, dir)
  const tag = `${n}-${o.type}${o.relay ? '-relay' : ''}${o.dht ? '-dht' : ''}${o.noListen ? '-nolisten' : ''}`
  let logFile = join(dir, 'natpeer.log')
  if (LOGDIR !== '') { mkdirSync(LOGDIR, { recursive: true }); logFile = join(LOGDIR, `${tag}.log`) }
  const fd = openSync(logFile, 'a')
  writeFileSync(fd, `# ${bin} ${args.join(' ')}\n`)
  const proc = spawn(bin, args, { cwd: dir, stdio: ['ignore', 'pipe', fd] })
  closeSync(fd)
  running.set(proc, dir)
  const exited = new Promise(resolve => proc.once('exit', resolve))
  let out = ''
  proc.stdout.setEncoding('utf8')
  proc.stdout.on('data', s => { out += s; writeFileSync(logFile, s, { flag: 'a' }) })

  // SIGTERM must end natpeer cleanly: exit 0 within STOP_GRACE, and (under
  // ASan/UBSan) no sanitizer report in its log; else the after hook fails
  let stopped = false
  const stop = async () => {
    if (stopped) return
    stopped = true
    let killed = false
    const wasUp = proc.exitCode == null && proc.signalCode == null
    if (wasUp) {
      proc.kill('SIGTERM')
      const t = setTimeout(() => { killed = true; proc.kill('SIGKILL') }, STOP_GRACE)
      await exited
      clearTimeout(t)
    }
    running.delete(proc)
    const log = tail(logFile, 400)
    rmSync(dir, { recursive: true, force: true })
    let why = null
    if (killed) why = `did not stop within ${STOP_GRACE} ms of SIGTERM`
    else if (wasUp && proc.exitCode !== 0) why = `exit ${proc.exitCode ?? proc.signalCode} after SIGTERM`
    else if (/ERROR: (Address|Leak)Sanitizer|runtime error:/.test(log)) why = 'sanitizer report'
    if (why != null) throw new Error(`natpeer ${tag}: ${why}\n${log.split('\n').slice(-30).join('\n')}`)
  }

  try {
    let addr
    if (usingP2pd) {
      // p2pd prints "Control socket: ADDR" once it serves the socket
      const m = await waitFor('Control socket line', () => /Control socket:\s*(\S+)/.exec(out), START_TIMEOUT, proc)
      addr = controlAddr(m[1])
    } else {
      const sock = join(dir, 'ctl.sock')
      await waitFor('control socket', () => existsSync(sock), START_TIMEOUT, proc)
      addr = controlAddr(`/unix${sock}`)
    }
    const client = createClient(addr)
    // ready when the control socket answers and TCP is bound (unless noListen)
    await waitFor('IDENTIFY with a TCP address', async () => {
      try {
        const id = await client.identify()
        return o.noListen === true || id.addrs.some(a => a.toString().includes('/tcp/'))
      } catch { return false }
    }, START_TIMEOUT, proc)
    return { client, stop }
  } catch (err) {
    const why = tail(logFile)
    await stop().catch(() => {})
    throw new Error(`natpeer ${tag} did not start: ${err.message}\n${why}`)
  }
}

// ---- js-libp2p -------------------------------------------------------------

async function spawnJs (o) {
  if ((o.transport ?? 'tcp') !== 'tcp') throw new UnsupportedError(`js runner: no ${o.transport} transport`)
  if (o.pubsub === true) throw new UnsupportedError('js runner: no pubsub')
  const encrypter = o.encryption === 'tls' ? tls() : o.encryption === 'plaintext' ? plaintext() : noise()
  // kad-dht 16 requires the ping service
  const services = { identify: identify(), ping: ping() }
  if (o.relay === true) services.relay = circuitRelayServer()
  if (o.dht === true) {
    services.dht = kadDHT({
      protocol: '/ipfs/kad/1.0.0',
      // js drops loopback/private addresses by default: nothing would be found on 127.0.0.1
      peerInfoMapper: passthroughMapper,
      clientMode: false
    })
  }
  const node = await createLibp2p({
    privateKey: o.key != null ? privateKeyFromProtobuf(readFileSync(o.key)) : undefined,
    addresses: { listen: o.noListen === true ? [] : ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp(), circuitRelayTransport()],
    connectionEncrypters: [encrypter],
    streamMuxers: [yamux()],
    services
  })
  const server = createServer(multiaddr('/ip4/127.0.0.1/tcp/0'), node)
  await server.start()
  return {
    client: createClient(server.getMultiaddr()),
    stop: async () => {
      await server.stop()
      await node.stop()
    }
  }
}

const factory = {
  async spawn (o) {
    const natpeer = BOTH || (!JSONLY && o.type === 'go')
    return natpeer ? spawnNatpeer(o) : spawnJs(o)
  }
}

const groups = {
  connect: connectInteropTests,
  streams: streamInteropTests,
  relay: relayInteropTests,
  dht: dhtInteropTests
}
for (const g of GROUPS) {
  if (groups[g] == null) throw new Error(`NP_INTEROP_GROUPS: unknown group ${g} (connect, streams, relay, dht)`)
  await groups[g](factory)
}
