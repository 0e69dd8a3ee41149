// Adds the lockfile entries npm leaves out when it cannot fetch an optional,
// platform-specific package (the npm registry reachable here answers 404 for
// the non-linux-x64-gnu builds of @chainsafe/libp2p-quic). Without them
// `npm ci` stops with "Missing: ... from lock file". npm skips them anyway on
// linux-x64-glibc, by their os/cpu/libc fields, so no integrity is needed.
//
//   node lockfix.mjs [package-lock.json ...]     (after every `npm install`)
//
// Plain JSON work: runs on any node (the system node 20 is fine).
import { readFileSync, writeFileSync } from 'node:fs'

// napi-rs style suffixes: <name>-<os>-<cpu>[-gnu|-musl|-msvc]
function platformOf (name) {
  const m = /-(darwin|linux|win32|freebsd|android)-(x64|arm64|ia32|arm)(?:-(gnu|musl|msvc|gnueabihf))?$/.exec(name)
  if (m == null) return null
  const e = { cpu: [m[2]], os: [m[1]] }
  if (m[1] === 'linux') e.libc = [m[3] === 'musl' ? 'musl' : 'glibc']
  return e
}

const files = process.argv.slice(2)
if (files.length === 0) files.push('package-lock.json')
for (const file of files) {
  const lock = JSON.parse(readFileSync(file, 'utf8'))
  const pkgs = lock.packages ?? {}
  let added = 0
  for (const [path, entry] of Object.entries(pkgs)) {
    for (const [dep, version] of Object.entries(entry.optionalDependencies ?? {})) {
      // npm resolves a dependency next to its parent, else at the top level
      const nested = (path === '' ? '' : path + '/') + 'node_modules/' + dep
      const top = 'node_modules/' + dep
      if (pkgs[nested] != null || pkgs[top] != null) continue
      const plat = platformOf(dep)
      if (plat == null) { console.error(`lockfix: ${file}: ${dep} is missing and not a platform package; left alone`); continue }
      pkgs[top] = { version, ...plat, license: entry.license, optional: true }
      added++
    }
  }
  // npm keeps "packages" sorted by path
  lock.packages = Object.fromEntries(Object.entries(pkgs).sort(([a], [b]) => a === '' ? -1 : b === '' ? 1 : a < b ? -1 : a > b ? 1 : 0))
  writeFileSync(file, JSON.stringify(lock, null, 2) + '\n')
  console.error(`lockfix: ${file}: added ${added} platform entr${added === 1 ? 'y' : 'ies'}`)
}
