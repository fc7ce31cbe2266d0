'use strict'

// Correct at the edges: odd rows, odd ids and owners, clocks, constraint errors and connection
// events. Each test is one promise a session store makes (issue "Correct at the edges").

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { PGStore, DATABASE_URL, uniqueName, makeStore, withClient, callback, cleanUpAfter } = require('./helpers')
const { sleep, outcome, holdLock } = require('./fault-kit')
const { startProxy } = require('./proxy-kit')

const stores = []
const tables = []
cleanUpAfter(stores, tables)

/** A store on a fresh table (created on first use), closed after the file. */
function fresh (options = {}) {
  const tableName = uniqueName('edge')
  tables.push(tableName)
  const store = makeStore({ tableName, ...options })
  stores.push(store)
  return { store, tableName }
}

const inOneHour = () => new Date(Date.now() + 3600000).toISOString()
const sess = (tag, expires = inOneHour()) => ({ cookie: { expires }, tag })

test('get of an unreadable row never destroys a session written after it (JSON array, throwing serializer)', { timeout: 20000 }, async (t) => {
  for (const [kind, text, options] of [
    ['a JSON array', '[1,2]', {}],
    ['a serializer that throws', '{"cookie":{},"tag":"old"}', { serializer: { stringify: JSON.stringify, parse: (s) => { if (s.includes('old')) throw new Error('no'); return JSON.parse(s) } } }],
  ]) {
    const { store, tableName } = fresh(options)
    await store.ready()
    let lost = 0
    for (let i = 0; i < 50; i++) {
      const sid = `s${i}`
      await withClient((c) => c.query(`INSERT INTO "${tableName}" VALUES ($1, $2::json, now() + interval '1 hour')`, [sid, text]))
      // The get reads the bad row; the set made after it, in the same tick, must stay.
      const [got, set] = await Promise.all([store.get(sid), store.set(sid, sess('fresh'))])
      assert.equal(got, null)
      assert.equal(set, undefined)
      const now = await store.get(sid)
      if (!now || now.tag !== 'fresh') lost++
    }
    t.diagnostic(`${kind}: acknowledged sets wiped by the get before them: ${lost}/50`)
    assert.equal(lost, 0)
  }
})

test('a batched get is judged by its own clock: a get that waited does not revive another session that expired since', { timeout: 20000 }, async (t) => {
  const { store, tableName } = fresh()
  await store.set('other', sess('other'))
  await store.set('expiring', sess('expiring', new Date(Date.now() + 400).toISOString()))
  // A table lock holds two get batches (every slot); the gets made meanwhile share the next one.
  const lock = await holdLock(DATABASE_URL, `LOCK TABLE "${tableName}" IN ACCESS EXCLUSIVE MODE`)
  const held = [store.get('held-1')]
  await sleep(20)
  held.push(store.get('held-2'))
  await sleep(20)
  const early = store.get('other') // its clock: before 'expiring' expired
  await sleep(800)
  const late = store.get('expiring') // its clock: after
  await sleep(50)
  await lock.release()
  await Promise.all(held)
  const [o, e] = await Promise.all([early, late])
  t.diagnostic(`the early get read ${o && o.tag}; the get made after expiry read ${e ? e.tag : null}`)
  assert.equal(o && o.tag, 'other')
  assert.equal(e, null, 'a session that expired before its get was served because an older get shared its batch')
})

test('a constraint violation reports no session id, user id or data; keeps the SQLSTATE and constraint name', { timeout: 20000 }, async () => {
  const tableName = uniqueName('constrained')
  tables.push(tableName)
  await withClient((c) => c.query(`CREATE TABLE "${tableName}" (sid varchar PRIMARY KEY, sess json NOT NULL, expire timestamp(6) NOT NULL,
    owner varchar, note text NOT NULL DEFAULT 'x', CONSTRAINT small_data CHECK (length(sess::text) < 60))`))
  const errors = []
  const store = new PGStore({ conString: DATABASE_URL, tableName, columns: { user_id: 'owner' }, pruneSessionInterval: false, errorLog: (...a) => errors.push(a.join(' ')) })
  stores.push(store)
  const sid = 'SECRET-COOKIE-SID-abc123'
  const big = { cookie: { expires: inOneHour() }, passport: { user: 'USER-42-secret' }, payload: 'DATA-'.repeat(20) }
  const single = await outcome(store.set(sid, big))
  // Several at once go as one batch statement, then one by one.
  const batch = await Promise.all([1, 2, 3].map((i) => outcome(store.set(`${sid}-${i}`, big))))
  await withClient((c) => c.query(`ALTER TABLE "${tableName}" DROP CONSTRAINT small_data, ALTER COLUMN note DROP DEFAULT`))
  const notNull = await outcome(store.set(`${sid}-nn`, { cookie: {}, passport: { user: 'USER-42-secret' } }))
  for (const { err } of [single, ...batch, notNull]) {
    assert.ok(err, 'the violating set succeeded')
    const text = `${err.message}\n${err.stack}\n${errors.join('\n')}`
    for (const secret of ['SECRET-COOKIE', 'USER-42', 'DATA-', 'Failing row']) {
      assert.ok(!text.includes(secret), `the error shows ${secret}: ${err.message}`)
    }
  }
  assert.equal(single.err.code, '23514')
  assert.equal(single.err.sqlState, '23514')
  assert.match(single.err.message, /small_data/)
  assert.equal(notNull.err.code, '23502')
  assert.match(notNull.err.message, /"note"/)
})

test('no connect event while the database is down: a touch skipped locally is no evidence', { timeout: 30000 }, async (t) => {
  const url = new URL(DATABASE_URL)
  const proxy = await startProxy(Number(url.port || 5432), url.hostname)
  url.hostname = '127.0.0.1'
  url.port = String(proxy.port)
  const { store } = fresh({ conObject: { connectionString: url.toString(), connectionTimeoutMillis: 500, query_timeout: 500 }, conString: undefined, connectionEvents: true })
  const events = []
  store.on('connect', () => events.push('connect'))
  store.on('disconnect', () => events.push('disconnect'))
  const s = sess('live')
  await store.set('a', s)
  await proxy.close() // every connection destroyed; new ones refused
  const failed = await outcome(store.get('a'))
  assert.ok(failed.err, 'a get succeeded with the database gone')
  // Within the touch bound: answered without the database.
  await store.touch('a', s)
  await store.touch('a', s)
  await sleep(100)
  t.diagnostic(`events while down: ${events.join(', ')}`)
  assert.deepEqual(events, ['disconnect'])
})

test('tombstones end with their guard, by time alone: with pruning off the id can be used again; an expiry before 1900 blocks nothing', { timeout: 20000 }, async () => {
  const { store, tableName } = fresh({ pruneSessionInterval: false })
  await store.set('t', sess('before'))
  await store.destroy('t')
  await store.set('t', sess('during'))
  assert.equal(await store.get('t'), null, 'a set inside the guard brought the id back')
  // Four days and an hour later: the guard (the session's expiry plus a day) ended, and the two
  // days' margin after it (TOMBSTONE_RECLAIM_SECONDS) too.
  const realNow = Date.now
  const later = realNow() + 97 * 3600000
  Date.now = () => later
  try {
    await store.set('t', sess('after', new Date(later + 3600000).toISOString()))
    const got = await store.get('t')
    assert.equal(got && got.tag, 'after', 'the id stayed blocked after its guard ended')
  } finally {
    Date.now = realNow
  }
  // A session whose cookie expired before 1900: stored as expired, not as a tombstone.
  await store.set('old', sess('ancient', '1850-01-01T00:00:00.000Z'))
  assert.equal(await store.get('old'), null)
  await store.set('old', sess('renewed'))
  assert.equal((await store.get('old')).tag, 'renewed', 'a set with an expiry before 1900 blocked its id')
  await store.set('old2', sess('ancient', '1850-01-01T00:00:00.000Z'))
  await store.pruneSessions()
  const left = await withClient(async (c) => (await c.query(`SELECT count(*)::int AS n FROM "${tableName}" WHERE sid = 'old2'`)).rows[0].n)
  assert.equal(left, 0, 'prune left a row whose expiry was before 1900')
})

test('a skipped touch is answered after the earlier calls of its session, in call order', { timeout: 20000 }, async (t) => {
  const { store } = fresh({ touchAfter: 3600 })
  let wrong = 0
  for (let i = 0; i < 200; i++) {
    const sid = `o${i % 20}`
    const s = sess(`v${i}`)
    await store.set(sid, s)
    const order = []
    await new Promise((resolve) => {
      store.set(sid, sess(`w${i}`), () => order.push('set'))
      store.touch(sid, s, () => { order.push('touch'); resolve(undefined) })
    })
    if (order.join() !== 'set,touch') wrong++
  }
  t.diagnostic(`touch answered before the set made before it: ${wrong}/200`)
  assert.equal(wrong, 0)
})

test('destroyUserSessions refuses sids: null; user ids follow one rule for storing and asking', { timeout: 20000 }, async () => {
  const owner = { user: 'u1' }
  const { store } = fresh({ columns: { user_id: 'owner' }, userId: (s) => s.owner })
  await store.set('a', { cookie: { expires: inOneHour() }, owner: 'u1' })
  await store.set('b', { cookie: { expires: inOneHour() }, owner: 'u1' })
  const refused = await outcome(store.destroyUserSessions('u1', { sids: null }))
  assert.equal(refused.err && refused.err.code, 'ERR_PG_SESSION_INVALID_ARG')
  assert.equal((await store.listUserSessions('u1')).length, 2, 'sids: null signed the user out everywhere')
  for (const bad of ['', NaN, Infinity]) {
    const stored = await outcome(store.set('c', { cookie: { expires: inOneHour() }, owner: bad }))
    const asked = await outcome(store.listUserSessions(/** @type {any} */ (bad)))
    assert.equal(stored.err && stored.err.code, 'ERR_PG_SESSION_INVALID_ARG', `owner ${String(bad)} was stored`)
    assert.equal(asked.err && asked.err.code, 'ERR_PG_SESSION_INVALID_ARG', `listUserSessions(${String(bad)}) was not refused`)
  }
  assert.ok(owner)
})

test('set refuses what the next get could not read back: arrays, and a toJSON that gives no object', { timeout: 20000 }, async () => {
  const { store } = fresh()
  for (const bad of [[1, 2], { toJSON: () => 'str' }, { toJSON: () => [1] }]) {
    const [err] = await callback((cb) => store.set('x', bad, cb))
    assert.ok(err && /^ERR_PG_SESSION_(INVALID_ARG|SERIALIZE)$/.test(err.code), `set accepted ${JSON.stringify(bad)}`)
  }
  assert.equal(await store.get('x'), null)
})

test('with no secret, a plain session that looks like a sealed envelope reads as itself', { timeout: 20000 }, async () => {
  const { store } = fresh()
  const lookalike = { cookie: { expires: inOneHour() }, pgs: 1, k: 'abcd', iv: 'AAAA', ct: 'BBBB' }
  await store.set('env', lookalike)
  assert.deepEqual(await store.get('env'), lookalike)
})

test('100k answers at once are delivered in slices: the event loop runs between them', { timeout: 20000 }, async () => {
  const { CallTable } = require('../lib/calls')
  const table = new CallTable()
  const answers = []
  let delivered = 0
  let turnsBetween = 0
  for (let i = 0; i < 100000; i++) answers.push(table.track(() => { delivered++ }), null)
  const ticker = setInterval(() => { if (delivered > 0 && delivered < 100000) turnsBetween++ }, 0)
  table.deliver(answers)
  assert.ok(delivered < 100000, 'every answer was delivered in one go')
  while (delivered < 100000) await new Promise((resolve) => setImmediate(resolve))
  clearInterval(ticker)
  assert.ok(turnsBetween > 0, 'no timer ran while the answers were delivered')
})
