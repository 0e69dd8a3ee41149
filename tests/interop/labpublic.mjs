// Lab only: make js-libp2p count given IPv4 prefixes as public.
//
// The NAT lab's "internet" is the documentation prefixes 192.0.2.0/24,
// 198.51.100.0/24 and 203.0.113.0/24. js-libp2p 3.3.11 lists them as private
// in one hard-coded table, PRIVATE_IP_RANGES in
// node_modules/@libp2p/utils/dist/src/private-ip.js (isPrivateIp, behind
// isPrivate(ma)); no option changes it. Every NAT-traversal decision reads it:
//   - @libp2p/dcutr dist/src/utils.js isPublicAndDialable: the addresses B and
//     A accept from each other's CONNECT and dial (all private -> "no
//     dialable multiaddrs"), and the unilateral upgrade;
//   - @libp2p/autonat dist/src/autonat.js: the server skips private addresses
//     in a DIAL request (line ~225), the client asks only about non-private
//     ones (line ~350);
//   - libp2p dist/src/address-manager/observed-addresses.js add(): observed
//     addresses (identify) that are private are dropped;
//   - libp2p dist/src/address-manager/transport-addresses.js get(): a private
//     listen address counts as verified, a public one waits for AutoNAT.
// So the lab peers load the module with those entries removed, in memory, by
// an in-thread module hook (node >= 22.15 module.registerHooks): node_modules
// stays untouched and every other script keeps js's stock behaviour.
//
//   import { treatAsPublic } from './labpublic.mjs'
//   treatAsPublic(['192.0.2.0/24', ...])   // BEFORE the first libp2p import
//   ... then check with checkTreatAsPublic(isPrivate, prefixes) after import
import { registerHooks } from 'node:module'

const TARGET = /\/@libp2p\/utils\/dist\/src\/private-ip\.js$/

let installed = null

export function treatAsPublic (prefixes) {
  if (installed != null) throw new Error('labpublic: treatAsPublic called twice')
  if (typeof registerHooks !== 'function') throw new Error(`labpublic: node ${process.version} has no module.registerHooks (need >= 22.15)`)
  for (const p of prefixes) {
    if (!/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/.test(p)) throw new Error(`labpublic: not an IPv4 prefix: ${p}`)
  }
  installed = { prefixes, removed: [] }
  registerHooks({
    load (url, context, nextLoad) {
      const r = nextLoad(url, context)
      if (!TARGET.test(url)) return r
      let src = Buffer.from(r.source).toString('utf8')
      for (const p of prefixes) {
        const entry = `'${p}',`
        if (!src.includes(entry)) continue // not in js's table: already public
        src = src.replace(entry, `/* ${p}: lab public (labpublic.mjs) */`)
        installed.removed.push(p)
      }
      return { ...r, source: src, shortCircuit: true }
    }
  })
}

// After libp2p is loaded: proves the patch took effect, so that a changed
// @libp2p/utils layout fails loudly instead of silently measuring stock js.
export function checkTreatAsPublic (isPrivate, multiaddr) {
  if (installed == null) return []
  for (const p of installed.prefixes) {
    const ip = p.split('/')[0].replace(/\.0$/, '.1')
    if (isPrivate(multiaddr(`/ip4/${ip}/tcp/1`))) {
      throw new Error(`labpublic: ${p} is still private to js-libp2p (private-ip.js changed?)`)
    }
  }
  return installed.removed
}
