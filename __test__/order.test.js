'use strict'

// Program order per session within one process: calls on one sid take effect in the order they
// were made, also when they are made in the same tick without awaiting in between (set then
// destroy, destroy then set, set then set, set then touch, set then get), and under a hot-session
// load of 64 callers on 30 shared sids (the last set made wins, no errors, no deadlocks).

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { PGStore, DATABASE_URL, uniqueName, withClient, cleanUpAfter, notTombstone } = require('./helpers')
const { startServer } = require('./pg-server')
const { sleep, within } = require('./fault-kit')

const COUNT = 300
const HOUR = 3600000
const tables = []
const stores = []

cleanUpAfter(stores, tables)

/** A store on a table of its own (dropped after the file). */
function storeOn (options = {}) {
  const tableName = uniqueName('order')
  tables.push(tableName)
  const store = new PGStore({ conString: DATABASE_URL, tableName, createTableIfMissing: true, pruneSessionInterval: false, ...options })
  stores.push(store)
  return { store, table: tableName }
}

const sess = (/** @type {any} */ n, expiresMs = Date.now() + HOUR) => ({ cookie: { expires: new Date(expiresMs).toISOString() }, n })

/**
 * sid → { n, expire (epoch seconds, as stored) } for the given sids, read with pg.
 * @param {string} table @param {string[]} sids
 */
async function rowsOf (table, sids, url = DATABASE_URL) {
  return withClient(async (client) => {
    const { rows } = await client.query(
      `SELECT sid, sess, extract(epoch FROM expire)::float8 AS expire FROM "${table}" WHERE sid = ANY($1::text[]) AND ${notTombstone()}`, [sids])
    return new Map(rows.map((r) => [r.sid, { n: r.sess.n, expire: r.expire }]))
  }, url)
}

/**
 * `calls(sid)` makes its calls on one sid in one tick, in order. They run for COUNT sids all at
 * once (one tick), then for COUNT more sids one sid per round.
 * @param {string} prefix
 * @param {(sid: string) => Promise<any>[]} calls
 */
async function togetherAndInRounds (prefix, calls) {
  const together = Array.from({ length: COUNT }, (_, i) => `${prefix}-t${i}`)
  const rounds = Array.from({ length: COUNT }, (_, i) => `${prefix}-r${i}`)
  /** @type {Map<string, any[]>} */
  const results = new Map()
  const started = together.map((sid) => Promise.all(calls(sid).map((p) => within(p, 20000))))
  const settled = await Promise.all(started)
  together.forEach((sid, i) => results.set(sid, settled[i]))
  for (const sid of rounds) results.set(sid, await Promise.all(calls(sid).map((p) => within(p, 20000))))
  const failed = [...results.values()].flat().filter((r) => r.hung || r.err)
  return { together, rounds, results, failed }
}

/** Rows to start from: each sid holds n = 'old'. */
async function seed (store, prefix) {
  const sids = []
  for (const kind of ['t', 'r']) for (let i = 0; i < COUNT; i++) sids.push(`${prefix}-${kind}${i}`)
  for (let i = 0; i < sids.length; i += 100) await Promise.all(sids.slice(i, i + 100).map((sid) => store.set(sid, sess('old'))))
}

function describeFailures (failed) {
  return failed.slice(0, 5).map((r) => (r.hung ? 'hung' : `${r.err.code}: ${r.err.message}`)).join('; ')
}

test('set then destroy in one tick: the row is gone', { timeout: 60000 }, async (t) => {
  const { store, table } = storeOn()
  await store.set('warm-up', sess(0))
  const run = await togetherAndInRounds('sd', (sid) => [store.set(sid, sess(1)), store.destroy(sid)])
  const rows = await rowsOf(table, [...run.together, ...run.rounds])
  const survivedTogether = run.together.filter((sid) => rows.has(sid)).length
  const survivedRounds = run.rounds.filter((sid) => rows.has(sid)).length
  t.diagnostic(`set+destroy: rows that survived the destroy: ${survivedTogether}/${COUNT} all at once, ` +
    `${survivedRounds}/${COUNT} one pair per round`)
  assert.deepEqual(run.failed, [], describeFailures(run.failed))
  assert.equal(survivedTogether, 0, `${survivedTogether} of ${COUNT} rows survived a destroy made after their set (pairs started together)`)
  assert.equal(survivedRounds, 0, `${survivedRounds} of ${COUNT} rows survived a destroy made after their set (one pair per round)`)
})

test('destroy then set in one tick, tombstones off: the row exists with the set\'s data', { timeout: 60000 }, async (t) => {
  const { store, table } = storeOn({ tombstones: false })
  await seed(store, 'ds')
  const run = await togetherAndInRounds('ds', (sid) => [store.destroy(sid), store.set(sid, sess('new'))])
  const rows = await rowsOf(table, [...run.together, ...run.rounds])
  const wrong = (sids) => sids.filter((sid) => !rows.has(sid) || rows.get(sid).n !== 'new')
  const wrongTogether = wrong(run.together)
  const wrongRounds = wrong(run.rounds)
  t.diagnostic(`destroy+set: rows missing or stale: ${wrongTogether.length}/${COUNT} all at once, ${wrongRounds.length}/${COUNT} per round`)
  assert.deepEqual(run.failed, [], describeFailures(run.failed))
  assert.equal(wrongTogether.length, 0, `${wrongTogether.length} sessions lost the set made after their destroy (together)`)
  assert.equal(wrongRounds.length, 0, `${wrongRounds.length} sessions lost the set made after their destroy (per round)`)
})

test('destroy then set in one tick, tombstones on (the default): the destroy sticks, the set is dropped quietly', { timeout: 60000 }, async (t) => {
  const { store, table } = storeOn()
  await seed(store, 'dt')
  const run = await togetherAndInRounds('dt', (sid) => [store.destroy(sid), store.set(sid, sess('new'))])
  const sids = [...run.together, ...run.rounds]
  const rows = await rowsOf(table, sids)
  const revived = sids.filter((sid) => rows.has(sid))
  const readable = (await Promise.all(sids.map((sid) => store.get(sid)))).filter((s) => s !== null)
  t.diagnostic(`destroy+set with tombstones: sessions back after their destroy: ${revived.length}/${sids.length}`)
  assert.deepEqual(run.failed, [], describeFailures(run.failed))
  assert.equal(revived.length, 0, `${revived.length} sessions came back after a destroy (a set made after it)`)
  assert.equal(readable.length, 0)
})

test('set A then set B in one tick: B wins; five sets of one sid in one tick: the last wins', { timeout: 60000 }, async (t) => {
  const { store, table } = storeOn()
  await store.set('warm-up', sess(0))
  const two = await togetherAndInRounds('ab', (sid) => [store.set(sid, sess('A')), store.set(sid, sess('B'))])
  const five = await togetherAndInRounds('five', (sid) => [1, 2, 3, 4, 5].map((n) => store.set(sid, sess(n))))
  const twoRows = await rowsOf(table, [...two.together, ...two.rounds])
  const fiveRows = await rowsOf(table, [...five.together, ...five.rounds])
  const lostTwo = [...two.together, ...two.rounds].filter((sid) => !twoRows.has(sid) || twoRows.get(sid).n !== 'B')
  const lostFive = [...five.together, ...five.rounds].filter((sid) => !fiveRows.has(sid) || fiveRows.get(sid).n !== 5)
  t.diagnostic(`set A+B: ${lostTwo.length}/${2 * COUNT} not B; five sets: ${lostFive.length}/${2 * COUNT} not the last ` +
    `(stored: ${[...new Set(lostFive.map((sid) => fiveRows.has(sid) ? fiveRows.get(sid).n : 'none'))].join(', ') || '-'})`)
  assert.deepEqual(two.failed, [], describeFailures(two.failed))
  assert.deepEqual(five.failed, [], describeFailures(five.failed))
  assert.equal(lostTwo.length, 0, `${lostTwo.length} sessions kept an earlier set: ${lostTwo.slice(0, 5)}`)
  assert.equal(lostFive.length, 0, `${lostFive.length} sessions did not keep the last of five sets: ${lostFive.slice(0, 5)}`)
})

test('set (expires E1) then touch (expires E2) in one tick: the stored expiry is E2', { timeout: 60000 }, async (t) => {
  const { store, table } = storeOn()
  await store.set('warm-up', sess(0))
  const e1 = Date.now() + HOUR
  const e2 = Date.now() + 5 * HOUR
  const run = await togetherAndInRounds('st', (sid) => [store.set(sid, sess(1, e1)), store.touch(sid, sess(1, e2))])
  // The column is `timestamp`: compare with E2 as this server writes it into such a column.
  const expected = await withClient(async (client) => {
    const { rows } = await client.query('SELECT extract(epoch FROM to_timestamp($1::float8)::timestamp)::float8 AS e', [e2 / 1000])
    return rows[0].e
  })
  const rows = await rowsOf(table, [...run.together, ...run.rounds])
  const wrong = [...run.together, ...run.rounds].filter((sid) => !rows.has(sid) || Math.abs(rows.get(sid).expire - expected) > 1)
  const atE1 = wrong.filter((sid) => rows.has(sid) && Math.abs(rows.get(sid).expire - (expected - 4 * 3600)) <= 1).length
  t.diagnostic(`set+touch: ${wrong.length}/${2 * COUNT} rows without the touch's expiry (${atE1} at the set's)`)
  assert.deepEqual(run.failed, [], describeFailures(run.failed))
  assert.equal(wrong.length, 0, `${wrong.length} rows did not get the expiry of the touch made after their set`)
})

test('a get made after a set in one tick reads the set\'s data', { timeout: 60000 }, async (t) => {
  const { store } = storeOn()
  await seed(store, 'rw')
  const run = await togetherAndInRounds('rw', (sid) => [store.set(sid, sess('new')), store.get(sid)])
  const stale = [...run.results].filter(([, [, got]]) => !got.err && !(got.value && got.value.n === 'new'))
  t.diagnostic(`set+get: ${stale.length}/${2 * COUNT} gets did not see the set made before them ` +
    `(read: ${[...new Set(stale.map(([, [, got]]) => JSON.stringify(got.value && got.value.n)))].join(', ') || '-'})`)
  assert.deepEqual(run.failed, [], describeFailures(run.failed))
  assert.equal(stale.length, 0, `${stale.length} gets missed the set made before them: ${stale.slice(0, 5).map(([sid]) => sid)}`)
})

/** pg_stat_database.deadlocks of the server's `postgres` database. */
async function deadlocks (url) {
  return withClient(async (client) => {
    await client.query('SELECT pg_stat_clear_snapshot()')
    const { rows } = await client.query('SELECT deadlocks::int AS n FROM pg_stat_database WHERE datname = current_database()')
    return rows[0].n
  }, url)
}

test('hot sessions: 64 callers on 30 shared sids, the last set made wins, no errors, no deadlocks', { timeout: 90000 }, async (t) => {
  const WORKERS = 64
  const SIDS = 30
  const DURATION_MS = 4000
  // A server of its own: its deadlock counter sees nothing but this store.
  const server = await startServer()
  const table = uniqueName('hot')
  const store = new PGStore({ conString: server.url, tableName: table, createTableIfMissing: true, pruneSessionInterval: false })
  try {
    await store.set('warm-up', sess(0))
    await sleep(1500)
    const deadlocksBefore = await deadlocks(server.url)

    let seq = 0
    /** sid → highest seq of any set made on it */
    const lastSet = new Map()
    const latencies = []
    const failures = []
    const started = Date.now()
    const end = started + DURATION_MS
    await Promise.all(Array.from({ length: WORKERS }, async () => {
      while (Date.now() < end) {
        const sid = `hot-${Math.floor(Math.random() * SIDS)}`
        let call
        if (Math.random() < 0.8) {
          const n = ++seq
          lastSet.set(sid, n)
          call = store.set(sid, { cookie: { expires: new Date(Date.now() + HOUR).toISOString() }, seq: n })
        } else {
          // A touch moves the expiry only; its (stale) data must never be written.
          call = store.touch(sid, { cookie: { expires: new Date(Date.now() + 2 * HOUR).toISOString() }, seq: -1 })
        }
        const r = await within(call, 15000)
        latencies.push(r.ms)
        if (r.hung || r.err) failures.push(r.hung ? 'hung' : `${r.err.code}: ${r.err.message}`)
      }
    }))
    const elapsed = Date.now() - started
    const closed = await within(store.close(), 10000)
    assert.ok(!closed.hung && !closed.err, 'close() failed or hung after the load')
    const stored = await withClient(async (client) => {
      const { rows } = await client.query(`SELECT sid, sess FROM "${table}"`)
      return new Map(rows.map((r) => [r.sid, r.sess.seq]))
    }, server.url)
    // Backends report their counters at most once a second; the store's have exited by now.
    await sleep(1500)
    const deadlocksAfter = await deadlocks(server.url)

    latencies.sort((a, b) => a - b)
    const p99 = latencies[Math.floor(latencies.length * 0.99)]
    const outOfOrder = [...lastSet].filter(([sid, n]) => stored.get(sid) !== n)
    t.diagnostic(`${latencies.length} calls in ${elapsed} ms (${Math.round(latencies.length / (elapsed / 1000))} calls/s), ` +
      `p99 ${p99} ms, ${seq} sets; failures ${failures.length} (${[...new Set(failures.map((f) => f.split(':')[0]))].join(', ') || 'none'}), ` +
      `deadlocks ${deadlocksAfter - deadlocksBefore}, sids not holding their last set ${outOfOrder.length}/${lastSet.size}`)

    assert.equal(lastSet.size, SIDS, 'the load did not reach every sid')
    assert.deepEqual(failures.slice(0, 5), [], `${failures.length} calls failed`)
    assert.equal(deadlocksAfter - deadlocksBefore, 0, 'PostgreSQL reported deadlocks')
    assert.deepEqual(outOfOrder.slice(0, 5).map(([sid, n]) => `${sid}: stored ${stored.get(sid)}, last set ${n}`), [],
      `${outOfOrder.length} sids do not hold the last set made on them`)
  } finally {
    await within(store.close(), 10000)
    await server.destroy()
  }
})
