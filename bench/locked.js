'use strict'

// One row locked (locked-worker.js): while another client holds one session's row FOR UPDATE
// for a few seconds, how long do 100 sets of other sessions take, started in the same tick as
// the locked session's set ('together') and once it waits on the lock ('behind')? Each
// measurement in a fresh process on a freshly seeded table, express-pg-session and
// connect-pg-simple alternated A B B A.

const { seedTable, runChild, alternate } = require('./lib')

const OTHERS = 100
const PHASES = ['together', 'behind']

const ms = (x) => (Number.isFinite(x) ? x.toFixed(0) : '–')

function describe (p) {
  const problems = [p.blockedSeen === false && 'the locked session\'s set was never seen waiting',
    p.errors && `ERRORS ${p.errors} (${p.firstError})`, p.stalled && `STALLED ${p.stalled}`,
    p.blockedError && `locked session's set failed: ${p.blockedError}`, p.blockedMs === null && 'locked session\'s set stalled',
  ].filter(Boolean).join('  ')
  return `slowest ${ms(p.slowestMs).padStart(5)} ms  p50 ${ms(p.p50Ms).padStart(5)} ms  (started ${ms(p.startedAfterMs)} ms into the lock; locked session's set ${ms(p.blockedMs)} ms)${problems ? '  ' + problems : ''}`
}

async function runLocked ({ url, rounds, holdSeconds, max = 10, log }) {
  const runs = []
  const order = alternate('ours', 'cps', rounds)
  const holdMs = holdSeconds * 1000
  const graceMs = 10000
  const closeMs = 5000
  for (let i = 0; i < order.length; i++) {
    const kind = order[i]
    const table = `bench_locked_${kind}`
    // The locked row, the 100 others and the warm-up's sessions all exist: every set is an update.
    await seedTable(url, table, OTHERS + 1 + 2 * max)
    let r
    try {
      r = await runChild('locked-worker.js', { kind, url, table, max, others: OTHERS, holdMs, graceMs, closeMs },
        { timeoutMs: PHASES.length * (holdMs + graceMs + 2000) + closeMs + 20000 })
    } catch (err) {
      // A contender that crashed or hung is a result too: reported, and the run goes on.
      r = { kind, failed: String(err.message).slice(0, 300) }
    }
    r.round = Math.floor(i / 4)
    runs.push(r)
    if (r.failed) {
      log(`  locked ${kind.padEnd(4)} FAILED: ${r.failed}`)
      continue
    }
    for (const phase of PHASES) log(`  locked ${kind.padEnd(4)} ${phase.padEnd(8)} ${OTHERS} other sets: ${describe(r[phase])}`)
    if (!r.closed) log(`  locked ${kind.padEnd(4)} close() timed out`)
  }
  return runs
}

module.exports = { runLocked, PHASES }
