'use strict'

// Hot sessions: 64 callers doing set:touch 80:20 on 30 shared sessions (hot-worker.js), each
// measurement in a fresh process on a freshly seeded table, express-pg-session and
// connect-pg-simple alternated A B B A. Around each one, the deadlocks PostgreSQL counted in
// this database: a store must never make its own statements deadlock one another.

const { seedTable, sql, runChild, alternate, sleep } = require('./lib')

const SESSIONS = 30

const ms = (x) => (Number.isFinite(x) ? x.toFixed(1) : '–')

/**
 * pg_stat_database.deadlocks for the current database. A backend counts its deadlocks locally and
 * flushes them to shared statistics when it exits or idles (at most once a second), so this is
 * read again every 500 ms until two readings agree (at most ~3 s), each after
 * pg_stat_clear_snapshot() so that no cached snapshot is returned.
 */
async function deadlocks (url) {
  const read = async () => Number((await sql(url,
    `SELECT pg_stat_clear_snapshot();
     SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()`))[1].rows[0].deadlocks)
  let last = await read()
  for (let i = 0; i < 6; i++) {
    await sleep(500)
    const next = await read()
    if (next === last) break
    last = next
  }
  return last
}

async function runHot ({ url, rounds, seconds, concurrency = 64, max = 10, log }) {
  const runs = []
  const order = alternate('ours', 'cps', rounds)
  const warmupMs = 1000
  const graceMs = 10000
  const closeMs = 5000
  for (let i = 0; i < order.length; i++) {
    const kind = order[i]
    const table = `bench_hot_${kind}`
    // Fresh rows each time: 57k updates of 30 rows leave dead versions the next run would pay for.
    await seedTable(url, table, SESSIONS)
    const before = await deadlocks(url)
    let r
    try {
      r = await runChild('hot-worker.js', {
        kind, url, table, max, concurrency, sessions: SESSIONS, warmupMs, durationMs: seconds * 1000, graceMs, closeMs,
      }, { timeoutMs: warmupMs + seconds * 1000 + graceMs + closeMs + 15000 })
    } catch (err) {
      // A contender that crashed or hung is a result too: reported, and the run goes on.
      r = { kind, failed: String(err.message).slice(0, 300) }
    }
    r.deadlocks = (await deadlocks(url)) - before
    r.round = Math.floor(i / 4)
    runs.push(r)
    if (r.failed) {
      log(`  hot ${kind.padEnd(4)} FAILED: ${r.failed}  deadlocks ${r.deadlocks}`)
      continue
    }
    const problems = [r.errors && `ERRORS ${r.errors} ${JSON.stringify(r.errorMessages)}`, r.stalled && `STALLED ${r.stalled}`,
      !r.closed && 'close() timed out'].filter(Boolean).join('  ')
    log(`  hot ${kind.padEnd(4)} ${r.callsPerSec.toFixed(0).padStart(6)} calls/s (${r.calls} calls)  p50 ${ms(r.p50Ms)} ms  p99 ${ms(r.p99Ms)} ms  deadlocks ${r.deadlocks}${problems ? '  ' + problems : ''}`)
  }
  return runs
}

module.exports = { runHot }
