'use strict'
// TAP for automake's tap-driver, with pass/fail/skip counts per suite group.
// mocha's own "tap" reporter prints a plan that ignores --invert (it counts
// the --grep matches), which the driver then reports as missing tests.
//
//   mocha --reporter ./daemon/tap-reporter.cjs ...
const Mocha = require('mocha')
const { EVENT_TEST_PASS, EVENT_TEST_FAIL, EVENT_TEST_PENDING, EVENT_RUN_END } = Mocha.Runner.constants

// the @libp2p/interop group a test belongs to, from its titles
function groupOf (full) {
  if (/^connection\./.test(full)) return 'connect'
  if (/ echo /.test(full)) return 'streams'
  if (/ over relay /.test(full)) return 'relay'
  if (/^dht\./.test(full)) return 'dht'
  return 'other'
}

function TapReporter (runner, options) {
  Mocha.reporters.Base.call(this, runner, options)
  let n = 0
  const counts = {}
  const count = (t, what) => {
    const g = groupOf(t.fullTitle())
    counts[g] ??= { pass: 0, fail: 0, skip: 0 }
    counts[g][what]++
  }
  // '#' starts a directive in TAP
  const title = t => t.fullTitle().replace(/#/g, '\\#')
  runner.on(EVENT_TEST_PASS, t => {
    count(t, 'pass')
    console.log(`ok ${++n} - ${title(t)} (${t.duration} ms)`)
  })
  runner.on(EVENT_TEST_PENDING, t => {
    count(t, 'skip')
    console.log(`ok ${++n} - ${title(t)} # SKIP pending (UnsupportedError)`)
  })
  runner.on(EVENT_TEST_FAIL, (t, err) => {
    count(t, 'fail')
    console.log(`not ok ${++n} - ${title(t)}`)
    const text = String(err?.stack ?? err).split('\n').slice(0, 12)
    for (const l of text) console.log(`#   ${l}`)
  })
  runner.once(EVENT_RUN_END, () => {
    for (const [g, c] of Object.entries(counts)) {
      console.log(`# ${g}: ${c.pass} passed, ${c.fail} failed, ${c.skip} skipped`)
    }
    console.log(`1..${n}`)
  })
}

module.exports = TapReporter
