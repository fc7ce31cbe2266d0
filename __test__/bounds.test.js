'use strict'

// Every call settles within a bound: through a proxy that stalls (bytes held, no socket closed),
// against a host that never answers, for a burst of 20,000 calls, across close(), in a child
// process that must then exit by itself; and one session's row lock never holds up other sessions.

const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const net = require('node:net')
const { startServer } = require('./pg-server')
const { PGStore, uniqueName, withClient } = require('./helpers')
const { sleep, outcome, within, runFixture, holdLock, waitForLockWaiters } = require('./fault-kit')
const { startProxy, startSilentServer } = require('./proxy-kit')

const CONNECT_MS = 1000
const QUERY_MS = 1000
// Generous for a busy 2-core CI box: a call may meet both deadlines twice (a retry), plus slack.
const BOUND_MS = 2 * (CONNECT_MS + QUERY_MS) + 3000
// What a call may fail with while the database does not answer.
const STALL_CODES = new Set(['ERR_PG_SESSION_TIMEOUT', 'ERR_PG_SESSION_CONNECT', 'ERR_PG_SESSION_CONNECTION_LOST'])

/** @type {Awaited<ReturnType<typeof startServer>>} */
let server
const stores = []

before(async () => {
  server = await startServer()
})

after(async () => {
  await Promise.allSettled(stores.map((s) => within(s.close(), 5000)))
  await server.destroy()
})

/** pg-style settings for a store reaching the test server on `port` (the proxy's, usually). */
function conObjectFor (port, extra = {}) {
  return {
    host: '127.0.0.1',
    port,
    user: server.user,
    password: server.password,
    database: 'postgres',
    connectionTimeoutMillis: CONNECT_MS,
    query_timeout: QUERY_MS,
    ...extra,
  }
}

/** A store on a table of its own, closed after the file. */
function storeOn (conObject, options = {}) {
  // touchAfter: 0: every touch goes to the database (by default one soon after a set is skipped).
  const store = new PGStore({ conObject, tableName: uniqueName('bound'), createTableIfMissing: true, pruneSessionInterval: false, touchAfter: 0, ...options })
  stores.push(store)
  return store
}

const sess = (/** @type {number} */ n) => ({ cookie: { expires: new Date(Date.now() + 3600000).toISOString() }, n })

/** The i-th call of a mixed burst on 20 sids: get, set, touch in turn. */
function mixedCall (store, i) {
  const sid = `s${i % 20}`
  return i % 3 === 0 ? store.get(sid) : i % 3 === 1 ? store.set(sid, sess(i)) : store.touch(sid, sess(i))
}

/** Opens several connections and checks the store works through them. */
async function warmUp (store) {
  await Promise.all(Array.from({ length: 20 }, (_, i) => store.set(`s${i}`, sess(i))))
  const got = await Promise.all(Array.from({ length: 40 }, (_, i) => store.get(`s${i % 20}`)))
  assert.deepEqual(got.map((s) => s && s.n), Array.from({ length: 40 }, (_, i) => i % 20))
}

/** Polls `store.get(sid)` until it answers with data; returns the ms it took, or -1. */
async function recovery (store, sid, limitMs) {
  const started = Date.now()
  while (Date.now() - started < limitMs) {
    const r = await within(store.get(sid), 2000)
    if (!r.hung && !r.err && r.value) return Date.now() - started
    await sleep(100)
  }
  return -1
}

function codesOf (results) {
  const codes = {}
  for (const r of results) {
    const key = r.hung ? 'hung' : r.err ? String(r.err.code) : 'fulfilled'
    codes[key] = (codes[key] || 0) + 1
  }
  return JSON.stringify(codes)
}

test('a stalled database: a burst of calls fails coded within the bound, and the store serves again after', { timeout: 60000 }, async (t) => {
  const proxy = await startProxy(server.port)
  try {
    const store = storeOn(conObjectFor(proxy.port))
    await warmUp(store)
    proxy.stall()
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => within(mixedCall(store, i), BOUND_MS)))
    const hung = results.filter((r) => r.hung).length
    const slowest = Math.max(...results.map((r) => r.ms))
    t.diagnostic(`50 calls during a stall: ${codesOf(results)}, slowest settled after ${slowest} ms (bound ${BOUND_MS} ms)`)
    assert.equal(hung, 0, `${hung} of 50 calls were still pending ${BOUND_MS} ms into the stall`)
    for (const r of results) {
      assert.ok(r.err, 'a call succeeded through a stalled connection')
      assert.ok(STALL_CODES.has(r.err.code), `unexpected failure ${r.err.code}: ${r.err.message}`)
      assert.ok(r.err instanceof Error)
    }
    proxy.resume()
    const back = await recovery(store, 's1', 8000)
    t.diagnostic(`served again ${back} ms after the stall ended`)
    assert.ok(back >= 0, 'the store did not serve again within 8 s of the stall ending')
    const write = await within(store.set('after', sess(99)), 5000)
    assert.ok(!write.hung && !write.err, `a write after the stall failed: ${write.err && write.err.message}`)
    assert.equal((await store.get('after')).n, 99)
  } finally {
    // Destroys every socket: frees calls that would otherwise wait forever.
    await proxy.close()
  }
})

test('a host that never answers: 20 concurrent calls on a fresh store all fail within connectionTimeoutMillis + slack', { timeout: 60000 }, async (t) => {
  const silent = await startSilentServer()
  try {
    const store = storeOn(conObjectFor(silent.port))
    const bound = CONNECT_MS + 3000
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => within(store.get(`s${i}`), bound)))
    const hung = results.filter((r) => r.hung).length
    const slowest = Math.max(...results.filter((r) => !r.hung).map((r) => r.ms), 0)
    t.diagnostic(`20 gets against a silent host: ${codesOf(results)}, slowest answered after ${slowest} ms, ` +
      `${hung} still pending after ${bound} ms`)
    assert.equal(hung, 0, `${hung} of 20 calls were still pending after ${bound} ms (connectionTimeoutMillis ${CONNECT_MS})`)
    for (const r of results) {
      assert.ok(r.err, 'a call succeeded against a silent host')
      assert.ok(STALL_CODES.has(r.err.code), `unexpected failure ${r.err.code}: ${r.err.message}`)
    }
  } finally {
    await silent.close()
  }
})

test('20,000 calls started while the database is away all settle within 15 s', { timeout: 60000 }, async (t) => {
  const CALLS = 20000
  const DEADLINE_MS = 15000
  const silent = await startSilentServer()
  try {
    const store = storeOn(conObjectFor(silent.port))
    let settled = 0
    let fulfilled = 0
    let lastAt = 0
    const codes = new Map()
    const started = Date.now()
    const calls = []
    for (let i = 0; i < CALLS; i++) {
      calls.push(mixedCall(store, i).then(() => { fulfilled++ }, (err) => {
        const code = err && err.code
        codes.set(code, (codes.get(code) || 0) + 1)
      }).finally(() => { settled++; lastAt = Date.now() }))
    }
    await within(Promise.all(calls), DEADLINE_MS)
    const pending = CALLS - settled
    t.diagnostic(`${CALLS} calls against a host that never answers: ${settled} settled (last after ${lastAt ? lastAt - started : '-'} ms), ` +
      `${pending} still pending after ${DEADLINE_MS} ms; fulfilled ${fulfilled}, failed ${JSON.stringify(Object.fromEntries(codes))}`)
    assert.equal(pending, 0, `${pending} of ${CALLS} calls were still pending after ${DEADLINE_MS} ms`)
    assert.equal(fulfilled, 0, 'calls succeeded against a host that never answers')
    const uncoded = [...codes.keys()].filter((code) => !STALL_CODES.has(code))
    assert.deepEqual(uncoded, [], 'calls failed with unexpected codes')
  } finally {
    // Later connection attempts are refused: frees calls that would otherwise wait.
    await silent.close()
  }
})

test('close() during a stall resolves, and every call started before it settles within the bound', { timeout: 60000 }, async (t) => {
  const proxy = await startProxy(server.port)
  try {
    const store = storeOn(conObjectFor(proxy.port))
    await warmUp(store)
    const track = (p) => {
      const entry = { settled: false, err: null }
      p.then(() => { entry.settled = true }, (err) => { entry.settled = true; entry.err = err })
      return entry
    }
    const calls = Array.from({ length: 100 }, (_, i) => track(store.set(`a${i}`, sess(i))))
    proxy.stall()
    calls.push(...Array.from({ length: 100 }, (_, i) => track(mixedCall(store, i))))
    const closeStarted = Date.now()
    const closed = await within(store.close(), BOUND_MS)
    // Whatever close() did, give the calls the rest of the bound to answer.
    while (calls.some((c) => !c.settled) && Date.now() - closeStarted < BOUND_MS) await sleep(50)
    const unanswered = calls.filter((c) => !c.settled).length
    const codes = {}
    for (const c of calls) {
      const key = !c.settled ? 'pending' : c.err ? String(c.err.code) : 'fulfilled'
      codes[key] = (codes[key] || 0) + 1
    }
    t.diagnostic(`close() during a stall: ${closed.hung ? 'still pending' : `settled after ${closed.ms} ms`}; ` +
      `200 calls: ${JSON.stringify(codes)}`)
    assert.ok(!closed.hung, `close() was still pending ${BOUND_MS} ms into the stall`)
    if (closed.err) assert.fail(`close() failed: ${closed.err.code}: ${closed.err.message}`)
    assert.equal(unanswered, 0, `${unanswered} of 200 calls never settled`)
    const allowed = new Set([...STALL_CODES, 'ERR_PG_SESSION_CLOSED'])
    for (const c of calls) if (c.err) assert.ok(allowed.has(c.err.code), `unexpected failure ${c.err.code}: ${c.err.message}`)
  } finally {
    await proxy.close()
  }
})

test('a process making calls while the database is stalled exits by itself once they settle', { timeout: 60000 }, async (t) => {
  const proxy = await startProxy(server.port)
  // The child asks for the stall once its store works, so its connections are open when it starts.
  let stalledAt = 0
  const control = net.createServer((socket) => {
    socket.on('error', () => {})
    socket.once('data', () => {
      proxy.stall()
      stalledAt = Date.now()
      socket.end('stalled\n')
    })
  })
  await new Promise((resolve) => control.listen(0, '127.0.0.1', resolve))
  const controlPort = /** @type {net.AddressInfo} */ (control.address()).port
  try {
    const run = await runFixture('stalled-exit.js',
      [String(proxy.port), server.user, server.password, uniqueName('exit'), String(controlPort), '30'], { timeoutMs: 18000 })
    const exitAfter = stalledAt ? Date.now() - stalledAt : -1
    t.diagnostic(`child: exit ${run.code}${run.timedOut ? ' (killed: did not exit)' : ''}, ${exitAfter} ms after the stall; ` +
      `stdout ${run.stdout.trim() || '-'}`)
    assert.ok(stalledAt > 0, `the child never got as far as the stall: ${run.stdout} ${run.stderr}`)
    assert.equal(run.timedOut, false, `the process did not exit by itself (output: ${run.stdout.trim() || 'none'})`)
    assert.equal(run.code, 0, `${run.stdout} ${run.stderr}`)
    const report = JSON.parse(run.stdout.trim().split('\n').pop())
    assert.equal(report.settled, 30)
    for (const code of Object.keys(report.codes)) assert.ok(STALL_CODES.has(code), `a call ended with ${code}`)
    assert.ok(exitAfter < BOUND_MS + 3000, `exited ${exitAfter} ms after the stall`)
  } finally {
    control.close()
    await proxy.close()
  }
})



test('a session whose row is locked holds up no other session: 100 other sets finish in well under a second', { timeout: 60000 }, async (t) => {
  // Three requests of one session, 20 ms apart, save it while another client holds its row: those
  // saves wait, and nothing else may wait with them.
  const LOCK_MS = 6000
  const app = uniqueName('lockapp')
  const table = uniqueName('locked')
  const store = storeOn({ connectionString: server.url, application_name: app }, { tableName: table })
  await store.set('locked', sess(1))
  await store.set('warm-up', sess(0))
  const lock = await holdLock(server.url, `SELECT 1 FROM "${table}" WHERE sid = $1 FOR UPDATE`, ['locked'])
  const lockedAt = Date.now()
  const timer = setTimeout(() => lock.release(), LOCK_MS)
  try {
    const blocked = []
    for (const n of [2, 3, 4]) {
      blocked.push(outcome(store.set('locked', sess(n))))
      await sleep(20)
    }
    await waitForLockWaiters(server.url, app, 1)
    await sleep(200)
    const started = Date.now()
    const others = await Promise.all(Array.from({ length: 100 }, (_, i) => within(store.set(`other-${i}`, sess(i)), 2 * LOCK_MS)))
    const slowest = Math.max(...others.map((r) => r.ms))
    const stillLocked = Date.now() - lockedAt < LOCK_MS
    t.diagnostic(`100 sets of other sessions while 3 sets of 'locked' wait on its row lock: ${codesOf(others)}, ` +
      `slowest ${slowest} ms (all done ${Date.now() - started} ms after they started; lock held ${LOCK_MS} ms)`)
    assert.equal(others.filter((r) => r.hung).length, 0, 'sets of other sessions never finished')
    assert.deepEqual(others.filter((r) => r.err).map((r) => `${r.err.code}: ${r.err.message}`), [])
    assert.ok(slowest < 1500, `the slowest set of another session took ${slowest} ms (it waited for the locked row)`)
    assert.ok(stillLocked, 'the lock was released before the other sets finished: the test measured nothing')
    const stored = await withClient(async (client) => {
      const { rows } = await client.query(`SELECT count(*)::int AS n FROM "${table}" WHERE sid LIKE 'other-%'`)
      return rows[0].n
    }, server.url)
    assert.equal(stored, 100)
    await lock.release()
    const results = await Promise.all(blocked.map((b) => within(b, 10000)))
    assert.equal(results.filter((r) => r.hung).length, 0, 'a set on the locked row never finished after the lock was released')
    for (const r of results) if (r.value.err) assert.fail(`a set on the locked row failed: ${r.value.err.code}: ${r.value.err.message}`)
    const n = await withClient(async (client) => {
      const { rows } = await client.query(`SELECT sess FROM "${table}" WHERE sid = 'locked'`)
      return rows[0] && rows[0].sess.n
    }, server.url)
    assert.equal(n, 4, 'the last set on the locked row is not what is stored')
  } finally {
    clearTimeout(timer)
    await lock.release()
  }
})

test('as many sessions locked elsewhere as the pool has connections: other sessions are still served', { timeout: 60000 }, async (t) => {
  // Sessions that wait on a row lock each hold a connection; they may take at most half the pool.
  const MAX = 4
  const app = uniqueName('manylocks')
  const table = uniqueName('manylocks')
  const store = storeOn({ connectionString: server.url, application_name: app, max: MAX }, { tableName: table })
  const lockedSids = Array.from({ length: MAX }, (_, i) => `locked-${i}`)
  for (const sid of lockedSids) await store.set(sid, sess(1))
  await store.set('reader', sess(7))
  const locks = await Promise.all(lockedSids.map((sid) => holdLock(server.url, `SELECT 1 FROM "${table}" WHERE sid = $1 FOR UPDATE`, [sid])))
  try {
    const blocked = lockedSids.map((sid) => outcome(store.set(sid, sess(2))))
    await waitForLockWaiters(server.url, app, MAX / 2)
    await sleep(200)
    const others = await Promise.all(Array.from({ length: 60 }, (_, i) =>
      within(i % 2 ? store.set(`other-${i}`, sess(i)) : store.get('reader'), 5000)))
    const slowest = Math.max(...others.map((r) => r.ms))
    t.diagnostic(`60 calls of other sessions while ${MAX} sessions wait on row locks (pool of ${MAX}): ${codesOf(others)}, slowest ${slowest} ms`)
    assert.equal(others.filter((r) => r.hung).length, 0)
    assert.deepEqual(others.filter((r) => r.err).map((r) => `${r.err.code}: ${r.err.message}`), [])
    assert.ok(slowest < 1500, `the slowest call of another session took ${slowest} ms`)
    await Promise.all(locks.map((l) => l.release()))
    for (const r of await Promise.all(blocked)) assert.equal(r.err, null, r.err && r.err.message)
  } finally {
    await Promise.all(locks.map((l) => l.release()))
  }
})

test('close() during a prune: the prune stops at its next rest and settles', { timeout: 90000 }, async (t) => {
  const table = uniqueName('pruneclose')
  const store = storeOn({ connectionString: server.url, connectionTimeoutMillis: 1000 }, { tableName: table, pruneBatchSize: 200000 })
  await store.set('warm-up', sess(0))
  await withClient((c) => c.query(`INSERT INTO "${table}" (sid, sess, expire)
    SELECT 'old-' || i, '{}', now() - interval '1 day' FROM generate_series(1, 600000) AS i`), server.url)
  const prune = store.pruneSessions()
  // The first batch of 200,000 rows runs; then the prune rests six times as long as it took.
  await waitFor(async () => (await withClient(async (c) =>
    (await c.query(`SELECT count(*)::int AS n FROM "${table}"`)).rows[0].n, server.url)) <= 400001, 30000)
  const closedAt = Date.now()
  await store.close()
  const r = await within(prune, 30000)
  const after = Date.now() - closedAt
  t.diagnostic(`prune settled ${after} ms after close() (${r.err ? r.err.code : `deleted ${r.value}`})`)
  assert.ok(!r.hung, 'the prune never settled')
  // Not at the end of its rest (about a second here): at once.
  assert.ok(after < 400, `the prune settled ${after} ms after close()`)
})

/** Polls `check` until it resolves true, at most `ms`. */
async function waitFor (check, ms) {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (await check()) return
    await sleep(50)
  }
  throw new Error(`not reached within ${ms} ms`)
}
