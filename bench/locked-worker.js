'use strict'

// One row locked, one contender in its own process. Another client holds a session's row
// `SELECT … FOR UPDATE` in an open transaction for `holdMs` (an admin query, a migration, a
// stuck transaction); a set of that session is started and waits on the lock, as it must; then
// `others` sets of other sessions are started together. They should take milliseconds, not wait
// for the lock. Two phases, each under a lock of its own:
//   together: the others start in the same tick as the locked session's set (half before it,
//             half after), so a store that coalesces writes puts some of them in one statement
//             with it, which then waits on the lock;
//   behind:   the others start once the server shows that set waiting on the lock, so a store
//             that queues writes behind a write in flight makes them wait.
// Prints one JSON line: per phase, the slowest and p50 of the others, and the locked set's time.
//
// Bounded: each lock is released after `holdMs` whatever happens (and the server ends the
// holder's transaction `graceMs` later if this process hangs), sets still out `graceMs` after
// the release are counted as stalled, close() gets `closeMs`.

const pg = require('pg')
const { makeStore, sid, sessionObject, percentile, sleep, settlesWithin } = require('./lib')

const input = JSON.parse(process.argv[2])
const { kind, url, table, max = 10, others = 100, holdMs = 3000, graceMs = 10000, closeMs = 5000 } = input

const now = () => performance.now()
const message = (err) => String(err.message || err).slice(0, 200)

/** Starts a set; resolves { ms, err } (never rejects). */
function timedSet (store, i) {
  return new Promise((resolve) => {
    const started = now()
    const done = (err) => resolve({ ms: now() - started, err: err || null })
    try {
      store.set(sid(i), sessionObject(i), done)
    } catch (err) {
      done(err)
    }
  })
}

/** Another client: holds sid(0)'s row FOR UPDATE until the returned `released` settles. */
async function lockRow () {
  const locker = new pg.Client({ connectionString: url })
  // The server may end the holder's session (idle_in_transaction_session_timeout): not a crash.
  locker.on('error', () => {})
  await locker.connect()
  await locker.query(`SET idle_in_transaction_session_timeout = ${holdMs + graceMs}`)
  await locker.query('BEGIN')
  await locker.query(`SELECT sid FROM "${table}" WHERE sid = $1 FOR UPDATE`, [sid(0)])
  const lockedAt = now()
  const released = sleep(holdMs).then(() => locker.query('ROLLBACK')).catch(() => {}).then(() => locker.end()).catch(() => {})
  return { lockedAt, released }
}

/** Polls pg_stat_activity (at most 2 s) until a statement on the table waits on a lock. */
async function seenWaiting (since) {
  const watcher = new pg.Client({ connectionString: url })
  watcher.on('error', () => {})
  await watcher.connect()
  try {
    while (now() - since < 2000) {
      const { rows } = await watcher.query(
        `SELECT count(*)::int AS n FROM pg_stat_activity
         WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()
           AND query LIKE '%' || $1 || '%'`, [table])
      if (rows[0].n > 0) return true
      await sleep(20)
    }
    return false
  } finally {
    await watcher.end().catch(() => {})
  }
}

async function phase (store, mode) {
  const { lockedAt, released } = await lockRow()
  const results = Array.from({ length: others }, () => null)
  const start = (j) => timedSet(store, 1 + j).then((r) => { results[j] = r })
  let blocked
  let blockedSeen = null
  let sets
  if (mode === 'together') {
    // No await in between, and the locked session's set amid the others: whichever way a
    // store splits what arrives at once into statements, that set shares one with others.
    const half = others >> 1
    const first = Array.from({ length: half }, (_, j) => start(j))
    blocked = timedSet(store, 0)
    sets = first.concat(Array.from({ length: others - half }, (_, j) => start(half + j)))
  } else {
    blocked = timedSet(store, 0)
    blockedSeen = await seenWaiting(lockedAt)
    sets = Array.from({ length: others }, (_, j) => start(j))
  }
  const othersStarted = now()
  const startedAfterMs = othersStarted - lockedAt
  const deadline = lockedAt + holdMs + graceMs
  await settlesWithin(Promise.all(sets), deadline - now())
  // A set still out is stalled: its wait so far stands for its latency (a lower bound).
  const stalled = results.filter((r) => r === null).length
  const latencies = results.map((r) => (r ? r.ms : now() - othersStarted))
  const failed = results.filter((r) => r && r.err)
  const blockedDone = await settlesWithin(blocked, Math.max(0, deadline - now()))
  const b = blockedDone ? await blocked : null
  await settlesWithin(released, 2000)
  return {
    blockedSeen,
    startedAfterMs,
    slowestMs: latencies.reduce((a, x) => Math.max(a, x), 0),
    p50Ms: percentile(latencies, 50),
    errors: failed.length,
    firstError: failed.length ? message(failed[0].err) : null,
    stalled,
    blockedMs: b ? b.ms : null,
    blockedError: b && b.err ? message(b.err) : null,
  }
}

async function main () {
  const { store, close } = makeStore(kind, { url, table, max })
  // Warm-up on sessions of their own: the pool's connections open, so that connecting is not
  // what the measured sets wait for.
  for (let wave = 0; wave < 2; wave++) {
    await Promise.all(Array.from({ length: 2 * max }, (_, j) => timedSet(store, others + 1 + j)))
  }
  const together = await phase(store, 'together')
  const behind = await phase(store, 'behind')
  const closed = await settlesWithin(close(), closeMs)
  process.stdout.write(JSON.stringify({ kind, holdMs, others, together, behind, closed }) + '\n')
  // A store that did not close (or sets still out) would keep the process alive.
  process.exit(0)
}

main().catch((err) => { console.error(err); process.exit(1) })
