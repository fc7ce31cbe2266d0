'use strict'

// An app's test suite that fakes timers (node:test `mock.timers`, @sinonjs/fake-timers as sinon
// and jest use it) before making a store: every call still reaches PostgreSQL and answers, by
// callback and by promise, at the store level and through an Express route, without the fake
// clock ever being advanced. The store's scheduling is out of the fakes' reach (lib/timers.js).
// Each run is a child process (fixtures/faked-timers-app.js): sinon's fakes also stop node:test's
// own reporter, and a call that hangs must fail the test, not the run.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { DATABASE_URL } = require('./helpers')
const { runFixture } = require('./fault-kit')

for (const [mode, what] of [
  ['node-test', 'node:test mock.timers (setTimeout, setInterval, setImmediate, Date)'],
  ['sinon', '@sinonjs/fake-timers (every timer API, Date, hrtime, performance)'],
  ['sinon-all', '@sinonjs/fake-timers faking nextTick and queueMicrotask too, as jest does (store calls)'],
]) {
  test(`${what}, enabled before the store is made: every call answers`, { timeout: 30000 }, async (t) => {
    const run = await runFixture('faked-timers-app.js', [DATABASE_URL, mode], { timeoutMs: 20000 })
    t.diagnostic(`${mode}: exit ${run.code}${run.timedOut ? ' (killed: still running after 20 s)' : ''} in ${run.ms} ms`)
    assert.ok(!run.timedOut, `calls hung under ${mode}: ${run.stdout}${run.stderr}`)
    assert.equal(run.code, 0, run.stdout + run.stderr)
    assert.match(run.stdout, /^ok$/m)
  })
}
