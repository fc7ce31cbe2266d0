'use strict'

// Hostile and malformed input: identifiers carrying SQL, sessions JSON cannot hold, odd session
// ids, huge sessions, unreadable rows, options of the wrong type, calls after close(), and a fuzz
// run over every public method. Each gets a coded error; nothing already stored is harmed.

const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { PGStore, DATABASE_URL, uniqueName, makeStore, withClient, callback } = require('./helpers')
const { outcome, within } = require('./fault-kit')

const stores = []
const CANARY = uniqueName('canary')

before(async () => {
  await withClient((c) => c.query(`CREATE TABLE "${CANARY}" (id int); INSERT INTO "${CANARY}" VALUES (42)`))
})

after(async () => {
  await Promise.allSettled(stores.map((s) => s.close()))
  await withClient((c) => c.query(`DROP TABLE IF EXISTS "${CANARY}"`))
})

/** @param {Record<string, any>} [options] */
function track (options) {
  const store = makeStore(options)
  stores.push(store)
  return store
}

const sess = (/** @type {any} */ extra = {}) => ({ cookie: { expires: new Date(Date.now() + 3600000).toISOString() }, ...extra })

/** The canary table and its row are still there. */
async function canaryIntact () {
  const { rows } = await withClient((c) => c.query(`SELECT id FROM "${CANARY}"`))
  assert.deepEqual(rows, [{ id: 42 }])
}

/** The attribute names of a table found by its exact name. */
async function columnsOf (schema, table) {
  return withClient(async (c) => {
    const { rows } = await c.query(
      `SELECT a.attname FROM pg_attribute a JOIN pg_class t ON t.oid = a.attrelid JOIN pg_namespace n ON n.oid = t.relnamespace
       WHERE t.relname = $1 AND n.nspname = coalesce($2, current_schema()) AND a.attnum > 0 ORDER BY a.attnum`, [table, schema])
    return rows.map((r) => r.attname)
  })
}

const INJECTIONS = [
  `x"; DROP TABLE "${CANARY}"; --`,
  `s'); DROP TABLE "${CANARY}"; --`,
  'a;b',
  'Robert" OR 1=1 --',
  'sel$$ect 1; $$',
  'ünï "cödé" 表',
]

test('table, schema and column names holding quotes, semicolons and SQL are quoted, never executed', async () => {
  for (const [i, name] of INJECTIONS.entries()) {
    const schemaName = i % 2 ? `${name} s${i}` : undefined
    const columns = { session_id: `${name} id`, session_data: `${name} data`, expire: `${name} exp` }
    const store = track({ tableName: name, schemaName, columns })
    await store.set('sid', sess({ i }))
    assert.equal((await store.get('sid')).i, i)
    assert.equal(await store.length(), 1)
    await store.destroy('sid')
    assert.deepEqual(await columnsOf(schemaName || null, name), [columns.session_id, columns.session_data, columns.expire])
    await store.close()
    await withClient((c) => c.query(schemaName ? `DROP SCHEMA "${schemaName.replace(/"/g, '""')}" CASCADE` : `DROP TABLE "${name.replace(/"/g, '""')}"`))
  }
  await canaryIntact()
})

test('names PostgreSQL cannot hold are refused at construction with ERR_PG_SESSION_INVALID_OPTION', () => {
  const refused = [
    { tableName: 'a\u0000b' },
    { schemaName: 'a\u0000; DROP TABLE x' },
    { tableName: 'x'.repeat(64) },
    { tableName: 'é'.repeat(32) }, // 64 bytes
    { columns: { session_id: 'a\u0000' } },
    { columns: { session_id: '' } },
    { columns: { session_id: 'same', session_data: 'same' } },
    { columns: { session_id: 'sid', bogus: 'x' } },
    { tableName: 5 },
    { schemaName: {} },
    { columns: 'sid,sess,expire' },
  ]
  for (const options of refused) {
    assert.throws(() => new PGStore({ conString: DATABASE_URL, ...options }),
      (err) => err instanceof Error && /** @type {any} */ (err).code === 'ERR_PG_SESSION_INVALID_OPTION',
      JSON.stringify(options))
  }
})

test('sessions JSON.stringify cannot serialize: the caller gets ERR_PG_SESSION_SERIALIZE, the stored session is untouched', async () => {
  const store = track()
  await store.set('keep', sess({ version: 1 }))
  const cyclic = sess()
  cyclic.self = cyclic
  const bad = [
    cyclic,
    sess({ big: 10n }),
    sess({ toJSON () { throw new Error('no') } }),
    Object.defineProperty(sess(), 'boom', { enumerable: true, get () { throw new Error('getter') } }),
  ]
  for (const value of bad) {
    const [err] = await callback((cb) => store.set('keep', value, cb))
    assert.equal(err && err.code, 'ERR_PG_SESSION_SERIALIZE')
    assert.equal((await outcome(store.set('keep', value))).err.code, 'ERR_PG_SESSION_SERIALIZE')
  }
  const weird = track({ serializer: { stringify: () => 42, parse: JSON.parse } })
  assert.equal((await outcome(weird.set('a', sess()))).err.code, 'ERR_PG_SESSION_SERIALIZE')
  for (const notObject of ['text', 7, null, undefined]) {
    assert.equal((await outcome(store.set('keep', notObject))).err.code, 'ERR_PG_SESSION_INVALID_ARG')
  }
  for (const expires of [Symbol('when'), { valueOf () { throw new Error('no date') } }]) {
    assert.equal((await outcome(store.set('keep', { cookie: { expires } }))).err.code, 'ERR_PG_SESSION_INVALID_ARG')
  }
  assert.equal((await store.get('keep')).version, 1)
  await store.set('keep', sess({ version: 2 }))
  assert.equal((await store.get('keep')).version, 2)
})

test('session ids: non-strings, empty, NUL and lone surrogates are refused; a 1 KB unicode id works', async () => {
  const store = track()
  await store.set('existing', sess({ ok: 1 }))
  const bad = [undefined, null, 0, 42, true, {}, [], Symbol('s'), () => 'x', '', 'a\u0000b', 'x\uD800', 'x\uDFFF', '\uDC00\uD800']
  for (const sid of bad) {
    for (const [name, call] of [
      ['get', () => store.get(sid)],
      ['set', () => store.set(sid, sess())],
      ['touch', () => store.touch(sid, sess())],
      ['destroy', () => store.destroy(sid)],
    ]) {
      const r = await outcome(call())
      assert.equal(r.err && r.err.code, 'ERR_PG_SESSION_INVALID_ARG', `${name}(${typeof sid === 'symbol' ? 'symbol' : JSON.stringify(sid)})`)
    }
  }
  // 1 KB of UTF-8: 4-byte emoji, 3-byte CJK, 2-byte Latin, and a valid surrogate pair.
  const sid = '😀表é'.repeat(113)
  assert.ok(Buffer.byteLength(sid) >= 1000 && Buffer.byteLength(sid) <= 1024, `${Buffer.byteLength(sid)} bytes`)
  await store.set(sid, sess({ unicode: true }))
  assert.equal((await store.get(sid)).unicode, true)
  assert.ok((await store.ids()).includes(sid))
  await store.touch(sid, sess({ unicode: true }))
  await store.destroy(sid)
  assert.equal(await store.get(sid), null)
  // Longer than a btree entry can hold: PostgreSQL refuses it with its SQLSTATE, and the store carries on.
  const huge = Array.from({ length: 4000 }, (_, i) => String.fromCodePoint(0x4e00 + ((i * 7919) % 20000))).join('')
  const r = await outcome(store.set(huge, sess()))
  if (r.err) assert.match(r.err.code, /^[0-9A-Z]{5}$/, r.err.message)
  else assert.equal((await store.get(huge)) !== null, true)
  assert.equal((await store.get('existing')).ok, 1)
})

test('a 2 MB session is stored and read back intact', async () => {
  const store = track()
  const big = sess({ blob: 'x'.repeat(2 * 1024 * 1024), list: Array.from({ length: 50000 }, (_, i) => `é${i}`) })
  assert.ok(JSON.stringify(big).length > 2 * 1024 * 1024)
  await store.set('big', big)
  assert.deepEqual(await store.get('big'), big)
})

test('rows holding invalid JSON, or JSON that is not an object, read as no session and stay until a set overwrites them', async () => {
  const table = uniqueName('badrows')
  await withClient((c) => c.query(`CREATE TABLE "${table}" (sid varchar PRIMARY KEY, sess text NOT NULL, expire timestamp(6) NOT NULL)`))
  const rows = { broken: '{"cookie": ', number: '42', array: '[1,2]', nul: 'null', string: '"hi"', good: '{"cookie":{},"ok":true}' }
  await withClient(async (c) => {
    for (const [sid, text] of Object.entries(rows)) {
      await c.query(`INSERT INTO "${table}" VALUES ($1, $2, now() + interval '1 hour')`, [sid, text])
    }
  })
  const store = track({ tableName: table, createTableIfMissing: false })
  assert.deepEqual(await store.all(), [{ cookie: {}, ok: true }])
  for (const sid of Object.keys(rows).filter((s) => s !== 'good')) {
    const [err, value] = await callback((cb) => store.get(sid, cb))
    assert.equal(err, null)
    assert.equal(value, null, sid)
  }
  assert.deepEqual((await store.ids()).sort(), Object.keys(rows).sort(), 'a get removed an unreadable row')
  assert.deepEqual(await store.get('good'), { cookie: {}, ok: true })
  await store.set('array', { cookie: {}, fresh: true })
  assert.deepEqual(await store.get('array'), { cookie: {}, fresh: true })
  await withClient((c) => c.query(`DROP TABLE "${table}"`))
})

test('options of the wrong type throw a TypeError with ERR_PG_SESSION_INVALID_OPTION at construction', () => {
  const wrong = [
    null, 'options', 42,
    { conString: 42 }, { conString: 'mysql://u:p@h/db' }, { conString: 'postgres://h:notaport/db' },
    { conObject: 5 }, { conObject: { port: 'abc' } }, { conObject: { password: () => 'x' } },
    { conObject: { ssl: 'sometimes' } }, { conObject: { ssl: 7 } },
    { pool: 'pool' }, { pgPromise: {} }, { replicas: 'postgres://h/db' }, { replicas: [5] },
    { ttl: 'a day' }, { ttl: -1 }, { ttl: NaN }, { touchAfter: '10' },
    { pruneSessionInterval: 'often' }, { pruneSessionInterval: -5 }, { pruneSessionRandomizedInterval: 3 },
    { pruneBatchSize: 0 }, { pruneBatchSize: 1.5 }, { pruneBatchSize: '100' },
    { createTableIfMissing: 'yes' }, { distributeTable: 1 }, { routeToNodes: 'no' }, { disableTouch: 1 }, { preparedStatements: 'false' }, { connectionEvents: 'on' },
    { errorLog: 'console' }, { serializer: JSON.stringify }, { serializer: { stringify: JSON.stringify } },
  ]
  for (const options of wrong) {
    assert.throws(() => new PGStore(/** @type {any} */ (options)),
      (err) => err instanceof Error && /** @type {any} */ (err).code === 'ERR_PG_SESSION_INVALID_OPTION' && !String(err.message).includes('u:p@'),
      String(JSON.stringify(options)))
  }
})

test('every call after close() fails with ERR_PG_SESSION_CLOSED, by callback and by promise', async () => {
  const logged = []
  const store = track({ errorLog: (...args) => logged.push(args) })
  await store.set('a', sess())
  await store.close()
  const calls = {
    get: (cb) => store.get('a', cb),
    set: (cb) => store.set('a', sess(), cb),
    touch: (cb) => store.touch('a', sess(), cb),
    destroy: (cb) => store.destroy('a', cb),
    all: (cb) => store.all(cb),
    ids: (cb) => store.ids(cb),
    length: (cb) => store.length(cb),
    clear: (cb) => store.clear(cb),
    pruneSessions: (cb) => store.pruneSessions(cb),
  }
  for (const [name, call] of Object.entries(calls)) {
    const [err] = await callback(call)
    assert.equal(err && err.code, 'ERR_PG_SESSION_CLOSED', `${name} by callback`)
    const r = await outcome(call(undefined))
    assert.equal(r.err && r.err.code, 'ERR_PG_SESSION_CLOSED', `${name} by promise`)
  }
  assert.equal(store.closed, true)
  assert.equal((await outcome(store.close())).err, null)
  // pruneSessions() with no callback also reports to errorLog, as connect-pg-simple does.
  assert.equal(logged.length, 1)
  assert.equal(logged[0][1].code, 'ERR_PG_SESSION_CLOSED')
})

/** A small seeded PRNG (mulberry32), so a failing run can be replayed with FUZZ_SEED. */
function rng (seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

test('fuzz: random values at every public method; no crash, no unhandled rejection, each callback once', { timeout: 50000 }, async (t) => {
  const seed = Number(process.env.FUZZ_SEED) || (Date.now() % 1e9)
  const ITERATIONS = 10000
  const random = rng(seed)
  const pick = (/** @type {any[]} */ list) => list[Math.floor(random() * list.length)]
  const text = () => Array.from({ length: Math.floor(random() * 12) }, () => String.fromCharCode(Math.floor(random() * 0xffff))).join('')
  const cyclic = () => { const o = sess(); o.me = o; return o }
  const thrower = () => new Proxy({}, { get () { throw new Error('proxy get') }, ownKeys () { throw new Error('proxy keys') } })
  const values = [
    () => undefined, () => null, () => true, () => 0, () => -1, () => NaN, () => Infinity, () => 2 ** 53, () => 10n,
    () => '', () => 'sid', () => `s${Math.floor(random() * 20)}`, text, () => 'x'.repeat(5000), () => '\u0000', () => '\uD800',
    () => Symbol('s'), () => () => {}, () => [], () => [1, [2]], () => ({}), () => Object.create(null),
    () => sess({ n: random() }), () => ({ cookie: { expires: pick(['soon', -1, 8.64e15, Symbol('e'), {}, null, new Date(NaN)]) } }),
    cyclic, thrower, () => new Date(), () => new Map([[1, 2]]), () => Buffer.from('abc'),
  ]
  const value = () => pick(values)()
  const store = track({ pruneBatchSize: 7 })
  const methods = {
    get: 1, set: 2, touch: 2, destroy: 1, all: 0, ids: 0, length: 0, clear: 0, pruneSessions: 0,
  }
  const names = Object.keys(methods)
  const unhandled = []
  const onUnhandled = (/** @type {unknown} */ reason) => unhandled.push(reason)
  process.on('unhandledRejection', onUnhandled)
  process.on('uncaughtException', onUnhandled)
  const calls = new Map() // id → times its callback was called
  const uncoded = []
  const pending = []
  const stats = { callbacks: 0, promises: 0, errors: 0, ok: 0, threw: 0 }
  const note = (err) => {
    if (err === null || err === undefined) { stats.ok++; return }
    stats.errors++
    if (!(err instanceof Error) || typeof err.code !== 'string') uncoded.push(err)
  }
  try {
    for (let i = 0; i < ITERATIONS; i++) {
      const name = pick(names)
      const args = Array.from({ length: methods[name] }, value)
      let returned
      try {
        if (random() < 0.6) {
          calls.set(i, 0)
          stats.callbacks++
          let settle
          pending.push(new Promise((resolve) => { settle = resolve }))
          returned = store[name](...args, (/** @type {any} */ err) => {
            calls.set(i, calls.get(i) + 1)
            note(err)
            settle()
          })
          assert.equal(returned, undefined, `${name} returned something with a callback`)
        } else {
          stats.promises++
          const extra = random() < 0.5 ? [value()] : []
          returned = store[name](...args, ...extra.filter((v) => typeof v !== 'function'))
          assert.equal(typeof returned.then, 'function', `${name} returned no promise without a callback`)
          pending.push(returned.then(() => note(null), note))
        }
      } catch (err) {
        // A synchronous throw would skip the callback: that is a bug.
        stats.threw++
        uncoded.push(err)
      }
      if (i % 100 === 0) await new Promise((resolve) => setImmediate(resolve))
    }
    const settled = await within(Promise.all(pending), 30000)
    assert.ok(!settled.hung, 'some calls never settled')
    await new Promise((resolve) => setTimeout(resolve, 100)) // room for a late second callback
  } finally {
    process.off('unhandledRejection', onUnhandled)
    process.off('uncaughtException', onUnhandled)
  }
  const counts = [...calls.values()]
  t.diagnostic(`seed ${seed}: ${ITERATIONS} calls (${stats.callbacks} with callbacks, ${stats.promises} by promise), ` +
    `${stats.ok} succeeded, ${stats.errors} failed with coded errors, ${stats.threw} threw`)
  assert.deepEqual(unhandled, [])
  assert.equal(stats.threw, 0)
  assert.deepEqual(uncoded.map(String), [])
  assert.equal(counts.filter((n) => n !== 1).length, 0, 'a callback was called zero or several times')
  // The store still works, and nothing outside its table was touched.
  await store.set('after-fuzz', sess({ ok: true }))
  assert.equal((await store.get('after-fuzz')).ok, true)
  await canaryIntact()
})
