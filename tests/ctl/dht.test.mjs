// The control socket's DHT requests, driven by @libp2p/daemon-client's
// client.dht (what js-libp2p's interop dht group calls). Two natpeer
// daemons with the DHT on (NP_DHT_CONTROL, NP_DHT_CONTROL2; run.sh --natpeer
// starts them with [dht] mode = server, the second with [bootstrap] peers =
// the first): the bootstrap alone fills both routing tables.
//
//   NP_DHT_CONTROL=... NP_DHT_CONTROL2=... node --test --test-reporter=tap dht.test.mjs
//
// multiformats, @libp2p/crypto and @libp2p/peer-id come with the pinned
// daemon-client (package-lock.json). Every wait is bounded.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { createClient } from '@libp2p/daemon-client'
import { multiaddr } from '@multiformats/multiaddr'
import { publicKeyToProtobuf, publicKeyFromProtobuf } from '@libp2p/crypto/keys'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'

const STEP_MS = 15_000
const TEST_MS = 40_000

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

async function collect (iterable, what) {
  const out = []
  await within((async () => { for await (const x of iterable) out.push(x) })(), what)
  return out
}

// /pk/ + the peer ID's multihash: where its PublicKey protobuf is stored
function pkKey (peerId) {
  const mh = peerId.toMultihash().bytes
  const key = new Uint8Array(4 + mh.length)
  key.set(new TextEncoder().encode('/pk/'))
  key.set(mh, 4)
  return key
}

const skip = process.env.NP_DHT_CONTROL == null || process.env.NP_DHT_CONTROL2 == null
  ? 'NP_DHT_CONTROL and NP_DHT_CONTROL2 (two DHT daemons\' control addresses) are not set'
  : false
const c1 = skip ? null : createClient(controlAddr(process.env.NP_DHT_CONTROL))
const c2 = skip ? null : createClient(controlAddr(process.env.NP_DHT_CONTROL2))
let id1, id2, addrs2

// Until |id| is among |client|'s closest peers of a key (5 s at most).
async function seesInDht (client, id, what) {
  const until = Date.now() + 5_000
  for (;;) {
    const peers = await collect(client.dht.getClosestPeers(new TextEncoder().encode('warm-up')), 'GET_CLOSEST_PEERS')
      .catch(() => [])
    if (peers.some(p => p.id.equals(id))) return
    if (Date.now() > until) assert.fail(`${what}: never among the closest peers`)
    await new Promise(resolve => setTimeout(resolve, 200))
  }
}

test('daemon 2 bootstrapped from daemon 1: each DHT sees the other', { skip, timeout: TEST_MS }, async () => {
  const a = await within(c1.identify(), 'IDENTIFY 1')
  const b = await within(c2.identify(), 'IDENTIFY 2')
  id1 = a.peerId
  id2 = b.peerId
  addrs2 = b.addrs
  await seesInDht(c1, id2, 'daemon 2 seen by daemon 1')
  await seesInDht(c2, id1, 'daemon 1 seen by daemon 2')
})

test('findPeer: daemon 2\'s ID and addresses it announces', { skip, timeout: TEST_MS }, async () => {
  const info = await within(c1.dht.findPeer(id2), 'FIND_PEER')
  assert.ok(info.id.equals(id2), 'the peer asked for')
  assert.ok(info.multiaddrs.length > 0, 'with addresses')
  const announced = new Set(addrs2.map(a => a.toString()))
  for (const a of info.multiaddrs) {
    assert.ok(announced.has(a.toString()), `${a} is one of daemon 2's IDENTIFY addresses`)
  }
})

test('findPeer of a peer nobody knows: an error', { skip, timeout: TEST_MS }, async () => {
  const { generateKeyPair } = await import('@libp2p/crypto/keys')
  const { peerIdFromPrivateKey } = await import('@libp2p/peer-id')
  const stranger = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  await assert.rejects(within(c1.dht.findPeer(stranger), 'FIND_PEER stranger'), /not found/)
})

test('getClosestPeers: daemon 2 among them', { skip, timeout: TEST_MS }, async () => {
  const peers = await collect(c1.dht.getClosestPeers(randomBytes(16)), 'GET_CLOSEST_PEERS')
  assert.ok(peers.some(p => p.id.equals(id2)), `daemon 2 in ${peers.map(p => p.id.toString())}`)
})

test('put a /pk/ record on daemon 1, get it from daemon 2', { skip, timeout: TEST_MS }, async () => {
  const key = pkKey(id1)
  const value = publicKeyToProtobuf(id1.publicKey)
  await within(c1.dht.put(key, value), 'PUT_VALUE')
  const got = await within(c2.dht.get(key), 'GET_VALUE')
  assert.deepEqual(Uint8Array.from(got), value)
  assert.ok(publicKeyFromProtobuf(got).equals(id1.publicKey), 'a PublicKey protobuf of daemon 1')
})

test('put: a value that does not match its /pk/ key is refused', { skip, timeout: TEST_MS }, async () => {
  await assert.rejects(within(c1.dht.put(pkKey(id1), publicKeyToProtobuf(id2.publicKey)), 'PUT_VALUE'),
    /refused/)
})

test('get of a record nobody put: an error', { skip, timeout: TEST_MS }, async () => {
  const { generateKeyPair } = await import('@libp2p/crypto/keys')
  const { peerIdFromPrivateKey } = await import('@libp2p/peer-id')
  const other = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  await assert.rejects(within(c2.dht.get(pkKey(other)), 'GET_VALUE'), /not found/)
})

test('provide on daemon 1, findProviders from daemon 2', { skip, timeout: TEST_MS }, async () => {
  const cid = CID.createV1(0x55, await sha256.digest(randomBytes(32)))
  await within(c1.dht.provide(cid), 'PROVIDE')
  const provs = await collect(c2.dht.findProviders(cid, 1), 'FIND_PROVIDERS')
  assert.equal(provs.length, 1, 'count 1: one provider')
  assert.ok(provs[0].id.equals(id1), 'daemon 1')
  assert.ok(provs[0].multiaddrs.length > 0, 'with its addresses')
})

test('findProviders of content nobody has: an empty stream', { skip, timeout: TEST_MS }, async () => {
  const cid = CID.createV1(0x55, await sha256.digest(randomBytes(32)))
  const provs = await collect(c1.dht.findProviders(cid, 5), 'FIND_PROVIDERS')
  assert.equal(provs.length, 0)
})

test('getPublicKey of daemon 2', { skip, timeout: TEST_MS }, async () => {
  const pb = await within(c1.dht.getPublicKey(id2), 'GET_PUBLIC_KEY')
  assert.ok(publicKeyFromProtobuf(pb).equals(id2.publicKey), 'daemon 2\'s key')
})
