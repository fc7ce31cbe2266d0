'use strict'

// Cost with table size (express-pg-session only): `get` latency on 10k rows, then on the same
// table grown to 1M+ rows (1M expired ones, filled by one INSERT … SELECT generate_series), then
// while `prune()` deletes those 1M rows in bounded batches.

const { makeStore, seedTable, sql, sid, percentile, median } = require('./lib')

const LIVE = 10000

/** `callers` concurrent loops of get() until `until()` says stop; latencies in µs. */
async function measureGets (store, callers, until) {
  const latencies = []
  const get = (id) => new Promise((resolve, reject) => store.get(id, (err, s) => (err ? reject(err) : resolve(s))))
  await Promise.all(Array.from({ length: callers }, async () => {
    while (!until()) {
      const t0 = process.hrtime.bigint()
      const sess = await get(sid(Math.floor(Math.random() * LIVE)))
      latencies.push(Number(process.hrtime.bigint() - t0) / 1000)
      if (!sess) throw new Error('a live session was not found')
    }
  }))
  return { gets: latencies.length, p50: percentile(latencies, 50), p99: percentile(latencies, 99) }
}

const forMs = (ms) => { const end = Date.now() + ms; return () => Date.now() >= end }

/** `rounds` measurements of `seconds` each: medians of their p50 and p99 (one run's p99 is noisy). */
async function measureRounds (store, callers, rounds, seconds) {
  const runs = []
  for (let i = 0; i < rounds; i++) runs.push(await measureGets(store, callers, forMs(seconds * 1000)))
  return {
    gets: runs.reduce((n, r) => n + r.gets, 0),
    p50: median(runs.map((r) => r.p50)),
    p99: median(runs.map((r) => r.p99)),
    rounds: runs,
  }
}

async function runTableSize ({ url, expired = 1000000, seconds, rounds = 3, callers = 4, log }) {
  const table = 'bench_size'
  await seedTable(url, table, LIVE)
  const { store, close } = makeStore('ours', { url, table })
  try {
    await measureGets(store, callers, forMs(500)) // warm-up
    const small = await measureRounds(store, callers, rounds, seconds)
    log(`  get on ${LIVE} rows: p50 ${small.p50.toFixed(0)} µs  p99 ${small.p99.toFixed(0)} µs`)

    const t0 = Date.now()
    await sql(url, `INSERT INTO "${table}" (sid, sess, expire)
      SELECT 'expired-' || i, '{"cookie":{}}'::json, now() - interval '1 day' FROM generate_series(1, $1::int) AS i`, [expired])
    // As a table that has been this size for a while would be: statistics and the visibility map
    // up to date, so autovacuum does not run on the freshly filled table during the measurement.
    await sql(url, `VACUUM ANALYZE "${table}"`)
    log(`  filled ${expired} expired rows in ${((Date.now() - t0) / 1000).toFixed(1)} s`)
    await measureGets(store, callers, forMs(500))
    const large = await measureRounds(store, callers, rounds, seconds)
    log(`  get on ${LIVE + expired} rows: p50 ${large.p50.toFixed(0)} µs  p99 ${large.p99.toFixed(0)} µs`)

    let pruning = true
    const t1 = Date.now()
    const prune = store.pruneSessions().finally(() => { pruning = false })
    const during = await measureGets(store, callers, () => !pruning)
    const deleted = await prune
    const pruneSeconds = (Date.now() - t1) / 1000
    log(`  prune deleted ${deleted} rows in ${pruneSeconds.toFixed(1)} s; concurrent get p50 ${during.p50.toFixed(0)} µs  p99 ${during.p99.toFixed(0)} µs (${(during.p99 / large.p99).toFixed(2)}× idle)`)
    return { live: LIVE, expired, callers, small, large, during, deleted, pruneSeconds, batchSize: 20000 }
  } finally {
    await close()
    await sql(url, `DROP TABLE IF EXISTS "${table}"`)
  }
}

module.exports = { runTableSize }
