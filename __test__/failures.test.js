'use strict'

// Faults against PostgreSQL servers this file starts and controls: restarts under load, killed
// connections, a database that is down at start-up or never answers, pool exhaustion and slow
// queries, two app processes on one table, and processes that must exit by themselves.

const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const net = require('node:net')
const { startServer, freePort } = require('./pg-server')
const { PGStore, uniqueName, withClient } = require('./helpers')
const { sleep, outcome, within, runFixture, holdLock, waitForLockWaiters } = require('./fault-kit')

// What a call may fail with while the database is away.
const OUTAGE_CODES = new Set([
  'ERR_PG_SESSION_CONNECT',
  'ERR_PG_SESSION_TIMEOUT',
  'ERR_PG_SESSION_CONNECTION_LOST',
  '57P01', // admin shutdown
  '57P02', // crash shutdown
  '57P03', // cannot connect now (starting up / shutting down)
])
// Slack on top of a timeout for "it failed instead of hanging"; generous for a busy 2-core CI box.
const SLACK_MS = 3000

/** @type {Awaited<ReturnType<typeof startServer>>} */
let server
const stores = []

before(async () => {
  server = await startServer()
})

after(async () => {
  await Promise.allSettled(stores.map((s) => s.close()))
  await server.destroy()
})

/** A store on a table of its own, closed after the file. */
function track (store) {
  stores.push(store)
  return store
}

/** @param {Record<string, any>} conObject @param {Record<string, any>} [options] */
function storeOn (conObject, options = {}) {
  return track(new PGStore({
    conObject,
    tableName: uniqueName('fail'),
    createTableIfMissing: true,
    pruneSessionInterval: false,
    ...options,
  }))
}

const sess = (/** @type {number} */ n) => ({ cookie: { expires: new Date(Date.now() + 3600000).toISOString() }, n })

/** sid → n for every row of a table, read with pg. */
async function rowsOf (table, url = server.url) {
  return withClient(async (client) => {
    const { rows } = await client.query(`SELECT sid, sess FROM "${table}"`)
    return new Map(rows.map((r) => [r.sid, r.sess.n]))
  }, url)
}

/**
 * `workers` loops writing fresh sessions until stop(); every acknowledged write and every failure is kept.
 * @param {any} store
 */
function writeLoad (store, workers) {
  const acked = new Map()
  const failures = []
  let running = true
  let seq = 0
  let slowest = 0
  const loops = Array.from({ length: workers }, async (_, w) => {
    while (running) {
      const n = seq++
      const sid = `w${w}-${n}`
      const r = await outcome(store.set(sid, sess(n)))
      slowest = Math.max(slowest, r.ms)
      if (r.err) {
        failures.push({ code: r.err.code, message: r.err.message, ms: r.ms, at: Date.now() })
        await sleep(20)
      } else {
        acked.set(sid, { n, at: Date.now() })
      }
    }
  })
  return {
    acked,
    failures,
    get slowest () { return slowest },
    async stop () { running = false; await Promise.all(loops) },
  }
}

test('restart under load: no acknowledged write is lost, outage calls fail coded, service is back within 1 s', { timeout: 40000 }, async (t) => {
  const TIMEOUT = 2000
  const table = uniqueName('restart')
  const store = storeOn({ connectionString: server.url, connectionTimeoutMillis: TIMEOUT, max: 10 }, { tableName: table })
  await store.set('warm-up', sess(0))
  const load = writeLoad(store, 16)
  await sleep(500)
  const stoppedAt = Date.now()
  await server.stop()
  await sleep(1000)
  await server.start()
  const backAt = Date.now()
  // A probe of its own measures when the store serves again, beside the 16 writers.
  let recoveredAt = 0
  while (!recoveredAt && Date.now() - backAt < 10000) {
    const r = await outcome(store.get('warm-up'))
    if (!r.err && r.value && r.value.n === 0) recoveredAt = Date.now()
    else await sleep(10)
  }
  await sleep(500)
  await load.stop()

  const stored = await rowsOf(table)
  const lost = [...load.acked].filter(([sid, { n }]) => stored.get(sid) !== n)
  const ackedAfter = [...load.acked.values()].filter((a) => a.at > backAt).length
  const recoveryMs = recoveredAt - backAt
  t.diagnostic(`acknowledged ${load.acked.size} writes (${ackedAfter} after the restart), lost ${lost.length}, ` +
    `failed ${load.failures.length} (${[...new Set(load.failures.map((f) => f.code))].join(', ')}), ` +
    `slowest call ${load.slowest} ms, recovery ${recoveryMs} ms after the server was back ` +
    `(outage ${backAt - stoppedAt} ms)`)

  assert.equal(lost.length, 0, `acknowledged but not stored: ${lost.slice(0, 5).map(([s]) => s)}`)
  assert.ok(load.failures.length > 0, 'the outage was not felt: the test did not test anything')
  for (const f of load.failures) {
    assert.ok(OUTAGE_CODES.has(f.code), `unexpected failure ${f.code}: ${f.message}`)
    assert.ok(f.ms < TIMEOUT + SLACK_MS, `a call took ${f.ms} ms to fail`)
  }
  assert.ok(recoveredAt > 0, 'the store did not serve again within 10 s')
  assert.ok(recoveryMs < 1000, `the store served again ${recoveryMs} ms after the server was back`)
  assert.ok(ackedAfter > 0, 'no write was acknowledged after the restart')
})

test('killed connections are dropped from the pool and replaced; the next calls succeed', { timeout: 40000 }, async (t) => {
  const app = uniqueName('killed')
  const table = uniqueName('killed')
  const store = storeOn({ connectionString: server.url, application_name: app, max: 8 }, { tableName: table })
  // Open several connections first, so there is a pool to kill (concurrent reads each take one).
  await Promise.all(Array.from({ length: 24 }, (_, i) => store.set(`warm-${i}`, sess(i))))
  await Promise.all(Array.from({ length: 48 }, (_, i) => store.get(`warm-${i % 24}`)))
  const load = writeLoad(store, 8)
  await sleep(300)
  const killedPids = await withClient(async (client) => {
    const { rows } = await client.query(
      'SELECT pid, pg_terminate_backend(pid) AS killed FROM pg_stat_activity WHERE application_name = $1', [app])
    return rows.filter((r) => r.killed).map((r) => r.pid)
  }, server.url)
  const killedAt = Date.now()
  await sleep(700)
  await load.stop()

  // Calls started after the kill.
  const after = await Promise.all(Array.from({ length: 40 }, (_, i) => outcome(store.set(`after-${i}`, sess(i)))))
  const failuresAfterKill = load.failures.filter((f) => f.at - f.ms > killedAt)
  const livePids = await withClient(async (client) => {
    const { rows } = await client.query('SELECT pid FROM pg_stat_activity WHERE application_name = $1', [app])
    return rows.map((r) => r.pid)
  }, server.url)
  const stored = await rowsOf(table)
  const lost = [...load.acked].filter(([sid, { n }]) => stored.get(sid) !== n)
  t.diagnostic(`killed ${killedPids.length} connections mid-load; ${load.acked.size} writes acknowledged, ` +
    `${load.failures.length} failed (${[...new Set(load.failures.map((f) => f.code))].join(', ') || 'none'}), ` +
    `lost ${lost.length}; ${livePids.length} fresh connections afterwards`)

  assert.ok(killedPids.length >= 1, 'the store had no connection to kill')
  for (const f of load.failures) assert.ok(OUTAGE_CODES.has(f.code), `unexpected failure ${f.code}: ${f.message}`)
  assert.deepEqual(failuresAfterKill, [], 'calls started after the kill failed')
  assert.deepEqual(after.filter((r) => r.err).map((r) => r.err.message), [])
  assert.equal(lost.length, 0)
  assert.ok(livePids.length > 0)
  assert.deepEqual(livePids.filter((pid) => killedPids.includes(pid)), [], 'a killed connection is still in use')
  assert.ok(store.stats().primary.size <= 8)
})

test('database down at start-up: construction does not throw, calls fail coded and bounded, then succeed', { timeout: 40000 }, async (t) => {
  const TIMEOUT = 1500
  const port = await freePort()
  const table = uniqueName('late')
  const conObject = {
    host: '127.0.0.1', port, user: server.user, password: server.password, database: 'postgres', connectionTimeoutMillis: TIMEOUT,
  }
  const store = storeOn(conObject, { tableName: table })
  for (const call of [() => store.get('a'), () => store.set('a', sess(1)), () => store.length()]) {
    const r = await outcome(call())
    assert.ok(r.err, 'a call succeeded with no database')
    assert.equal(r.err.code, 'ERR_PG_SESSION_CONNECT', r.err.message)
    t.diagnostic(`database down: ${r.err.code} after ${r.ms} ms`)
    assert.ok(r.ms < TIMEOUT + SLACK_MS, `failed after ${r.ms} ms`)
  }
  const late = await startServer({ port })
  try {
    const first = await outcome(store.set('a', sess(1)))
    assert.equal(first.err, null, first.err && first.err.message)
    assert.equal((await store.get('a')).n, 1)
    t.diagnostic(`first call after the database came up took ${first.ms} ms`)
  } finally {
    await store.close()
    await late.destroy()
  }
})

test('a server that accepts but never answers: calls fail with ERR_PG_SESSION_TIMEOUT, default and set timeouts', { timeout: 40000 }, async (t) => {
  // Accepts TCP connections and never says a word, like a hung host or a black-holing firewall.
  const sockets = new Set()
  const silent = net.createServer((socket) => { sockets.add(socket); socket.on('error', () => {}) })
  await new Promise((resolve) => silent.listen(0, '127.0.0.1', resolve))
  const { port } = /** @type {net.AddressInfo} */ (silent.address())
  try {
    const conObject = { host: '127.0.0.1', port, user: 'postgres', password: 'x', database: 'postgres' }
    const cases = [
      { timeout: undefined, bound: 5000 }, // pg's default is "wait forever"; ours is 5000 ms
      { timeout: 0, bound: 5000 }, // pg's 0 means forever: here it means the default
      { timeout: 800, bound: 800 },
    ]
    const results = await Promise.all(cases.map(async ({ timeout, bound }) => {
      const store = storeOn({ ...conObject, connectionTimeoutMillis: timeout })
      const r = await outcome(store.get('a'))
      return { timeout, bound, r }
    }))
    for (const { timeout, bound, r } of results) {
      t.diagnostic(`connectionTimeoutMillis ${timeout}: failed with ${r.err && r.err.code} after ${r.ms} ms`)
      assert.ok(r.err, 'a call succeeded against a silent server')
      assert.equal(r.err.code, 'ERR_PG_SESSION_TIMEOUT', r.err.message)
      assert.ok(r.ms < bound + SLACK_MS, `failed after ${r.ms} ms, bound ${bound} ms`)
    }
  } finally {
    for (const s of sockets) s.destroy()
    silent.close()
  }
})

/** Holds a row lock on `sid` in `table` until release() is called. */
async function lockRow (table, sid) {
  return holdLock(server.url, `SELECT 1 FROM "${table}" WHERE sid = $1 FOR UPDATE`, [sid])
}



test('pool exhaustion: a call waits at most connectionTimeoutMillis for a connection, then fails coded', { timeout: 40000 }, async () => {
  const TIMEOUT = 1000
  const app = uniqueName('exhaust')
  const table = uniqueName('exhaust')
  // touchAfter: 0: the touch goes to the database (by default one soon after a set is skipped).
  const store = storeOn({ connectionString: server.url, application_name: app, max: 2, connectionTimeoutMillis: TIMEOUT }, { tableName: table, touchAfter: 0 })
  await store.set('a', sess(1))
  await store.set('free', sess(2))
  // A SHARE lock on the table blocks every write (and lets reads through): a set and a touch
  // go in two statements, each holding one of the two connections while it waits.
  const lock = await holdLock(server.url, `LOCK TABLE "${table}" IN SHARE MODE`)
  let blocked
  try {
    blocked = [outcome(store.set('b', sess(3))), outcome(store.touch('a', sess(4)))]
    await waitForLockWaiters(server.url, app, 2)
    const starved = await within(store.get('free'), TIMEOUT + SLACK_MS)
    assert.ok(!starved.hung, `a call on an exhausted pool was still waiting after ${TIMEOUT + SLACK_MS} ms`)
    assert.ok(starved.err, 'a call got a connection from an exhausted pool')
    assert.equal(starved.err.code, 'ERR_PG_SESSION_TIMEOUT', starved.err.message)
    assert.ok(starved.ms < TIMEOUT + SLACK_MS, `waited ${starved.ms} ms`)
  } finally {
    await lock.release()
  }
  for (const r of await Promise.all(blocked)) assert.equal(r.err, null, r.err && r.err.message)
  assert.equal((await store.get('free')).n, 2)
  assert.equal((await store.get('b')).n, 3)
})

test('statement_timeout from the options is honoured (57014), and the store carries on', { timeout: 40000 }, async () => {
  const table = uniqueName('stmt')
  const store = storeOn({ connectionString: server.url, statement_timeout: 300 }, { tableName: table })
  await store.set('locked', sess(1))
  const lock = await lockRow(table, 'locked')
  try {
    const r = await within(store.set('locked', sess(2)), 300 + SLACK_MS)
    assert.ok(!r.hung, 'statement_timeout did not end the blocked write')
    assert.ok(r.err, 'a write blocked by a lock finished despite statement_timeout')
    assert.equal(r.err.code, '57014', r.err.message)
    assert.ok(r.ms < 300 + SLACK_MS, `cancelled after ${r.ms} ms`)
    const other = await within(store.set('other', sess(3)), 5000)
    assert.ok(!other.hung && !other.err, 'the store did not carry on after the cancelled statement')
    assert.equal((await store.get('other')).n, 3)
  } finally {
    await lock.release()
  }
  assert.equal((await store.get('locked')).n, 1)
})

test('a table locked past statement_timeout: a burst of gets, touches and sets fails with 57014 in bounded time', { timeout: 40000 }, async (t) => {
  // Calls made together share one statement; when that statement runs out of time, running its
  // calls again one by one would make the last caller wait one timeout per call before it.
  const TIMEOUT_MS = 300
  const table = uniqueName('tlock')
  // touchAfter: 0: the touches go to the database (by default one soon after a set is skipped).
  const store = storeOn({ connectionString: server.url, statement_timeout: TIMEOUT_MS }, { tableName: table, touchAfter: 0 })
  await Promise.all(Array.from({ length: 30 }, (_, i) => store.set(`s${i}`, sess(i))))
  const lock = await holdLock(server.url, `LOCK TABLE "${table}" IN ACCESS EXCLUSIVE MODE`)
  let results
  try {
    results = await Promise.all(Array.from({ length: 90 }, (_, i) => {
      const sid = `s${i % 30}`
      const call = i < 30 ? store.get(sid) : i < 60 ? store.touch(sid, sess(i)) : store.set(sid, sess(i))
      return within(call, 20000)
    }))
  } finally {
    await lock.release()
  }
  assert.equal(results.filter((r) => r.hung).length, 0, 'calls did not settle')
  assert.deepEqual([...new Set(results.map((r) => r.err && r.err.code))], ['57014'])
  const slowest = Math.max(...results.map((r) => r.ms))
  t.diagnostic(`90 calls against a locked table: slowest failed after ${slowest} ms (statement_timeout ${TIMEOUT_MS} ms)`)
  // A few statements' worth of waiting (batches of a kind run two at a time), not one per call.
  assert.ok(slowest < 4 * TIMEOUT_MS + SLACK_MS, `the slowest call failed after ${slowest} ms`)
  assert.equal((await store.get('s3')).n, 3)
})

test('one slow query does not stall unrelated calls on other connections', { timeout: 40000 }, async () => {
  const app = uniqueName('slow')
  const table = uniqueName('slow')
  const store = storeOn({ connectionString: server.url, application_name: app, max: 4 }, { tableName: table })
  await store.set('locked', sess(1))
  const lock = await lockRow(table, 'locked')
  let slowSettled = false
  let slow
  try {
    slow = outcome(store.set('locked', sess(2))).then((r) => { slowSettled = true; return r })
    await waitForLockWaiters(server.url, app, 1)
    const others = await Promise.all(Array.from({ length: 60 }, (_, i) =>
      within(i % 2 ? store.set(`other-${i}`, sess(i)) : store.get(`other-${i - 1}`), 5000)))
    assert.equal(others.filter((r) => r.hung).length, 0, 'calls on other sessions waited behind the slow one')
    assert.deepEqual(others.filter((r) => r.err).map((r) => r.err.message), [])
    assert.equal(await store.length(), 31)
    assert.equal(slowSettled, false, 'the slow call was expected to still be blocked')
  } finally {
    await lock.release()
  }
  const r = await slow
  assert.equal(r.err, null)
  assert.equal((await store.get('locked')).n, 2)
})

test('two app processes pruning and writing one table: no errors, no deadlocks, no lost sessions', { timeout: 40000 }, async (t) => {
  const table = uniqueName('twoapps')
  const COUNT = 300
  const runs = await Promise.all(['a', 'b'].map((prefix) =>
    runFixture('two-apps-worker.js', [server.url, table, prefix, String(COUNT)], { timeoutMs: 45000 })))
  for (const run of runs) {
    assert.equal(run.timedOut, false, 'a worker process hung')
    assert.equal(run.code, 0, run.stderr)
  }
  const reports = runs.map((run) => JSON.parse(run.stdout))
  const stored = await rowsOf(table)
  const live = reports.flatMap((r) => r.live)
  const missing = live.filter((sid) => !stored.has(sid))
  const expiredLeft = [...stored.keys()].filter((sid) => sid.includes('-old-'))
  t.diagnostic(`two processes wrote ${live.length} live + ${live.length} expired sessions; ` +
    `errors ${reports.map((r) => r.errors.length).join(' + ')}, missing ${missing.length}, expired left ${expiredLeft.length}`)
  assert.deepEqual(reports.flatMap((r) => r.errors), [])
  assert.equal(live.length, 2 * COUNT)
  assert.deepEqual(missing, [])
  assert.deepEqual(expiredLeft, [])
})

test('a process that used the store exits by itself (working, database down, close with calls in flight), and waits for calls in flight', { timeout: 40000 }, async (t) => {
  const deadPort = await freePort()
  const deadUrl = `postgres://postgres:x@127.0.0.1:${deadPort}/postgres`
  const modes = [['used', server.url], ['down', deadUrl], ['close', server.url], ['pending', server.url]]
  for (const [mode, url] of modes) {
    const run = await runFixture('exit-by-itself.js', [url, uniqueName('exit'), mode], { timeoutMs: 20000 })
    t.diagnostic(`mode ${mode}: exited with ${run.code} after ${run.ms} ms`)
    assert.equal(run.timedOut, false, `mode ${mode}: the process did not exit by itself`)
    assert.equal(run.code, 0, `mode ${mode}: ${run.stdout} ${run.stderr}`)
    assert.match(run.stdout, /^done$/m)
  }
})

test('close() with calls in flight: each call finishes or fails with ERR_PG_SESSION_CLOSED, then close resolves', { timeout: 40000 }, async () => {
  const table = uniqueName('closing')
  const store = storeOn({ connectionString: server.url }, { tableName: table })
  await store.set('warm-up', sess(0))
  const calls = Array.from({ length: 100 }, (_, i) => outcome(store.set(`s${i}`, sess(i))))
  const closed = outcome(store.close())
  const results = await Promise.all(calls)
  const c = await closed
  assert.equal(c.err, null)
  const stored = await rowsOf(table)
  results.forEach((r, i) => {
    if (r.err) assert.equal(r.err.code, 'ERR_PG_SESSION_CLOSED', r.err.message)
    else assert.equal(stored.get(`s${i}`), i, `s${i} was acknowledged but not stored`)
  })
  const late = await outcome(store.get('s1'))
  assert.equal(late.err && late.err.code, 'ERR_PG_SESSION_CLOSED')
  assert.equal((await outcome(store.close())).err, null, 'a second close() rejected')
})
