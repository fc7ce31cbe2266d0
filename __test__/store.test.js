'use strict'

// Every store method against a real PostgreSQL, with callbacks and with promises.

const { test, describe, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { PGStore, DATABASE_URL, makeStore, uniqueName, withClient, callback, notTombstone } = require('./helpers')

const HOUR = 3600 * 1000

/** A session as express-session builds it, expiring `ms` from now. */
function sessionData (ms = HOUR, extra = {}) {
  return { cookie: { originalMaxAge: ms, expires: new Date(Date.now() + ms).toISOString(), httpOnly: true, path: '/' }, ...extra }
}

describe('store methods', () => {
  let store
  let table
  before(() => {
    table = uniqueName('methods')
    store = makeStore({ tableName: table })
  })
  after(() => store.close())

  test('set then get returns what was stored (promise and callback forms)', async () => {
    const sess = sessionData(HOUR, { user: 'ada', visits: 3, nested: { list: [1, 'two', null], unicode: 'ünï €' } })
    assert.equal(await store.set('s1', sess), undefined)
    assert.deepEqual(await store.get('s1'), sess)
    const [err, value] = await callback((cb) => store.get('s1', cb))
    assert.equal(err, null)
    assert.deepEqual(value, sess)
    const [setErr] = await callback((cb) => store.set('s1b', sess, cb))
    assert.equal(setErr, null)
  })

  test('get of an unknown sid is null', async () => {
    assert.equal(await store.get('nobody'), null)
    const [err, value] = await callback((cb) => store.get('nobody', cb))
    assert.equal(err, null)
    assert.equal(value, null)
  })

  test('set stores exactly the JSON text JS produced, with the expiry from the cookie', async () => {
    const sess = sessionData(2 * HOUR, { b: 1, a: 2 })
    await store.set('exact', sess)
    const row = await withClient(async (c) => (await c.query(
      `SELECT sess::text AS text, extract(epoch FROM expire) * 1000 AS expire_ms FROM "${table}" WHERE sid = $1`, ['exact'])).rows[0])
    assert.equal(row.text, JSON.stringify(sess))
    assert.ok(Math.abs(Number(row.expire_ms) - Date.parse(sess.cookie.expires)) < 1, `${row.expire_ms} vs ${sess.cookie.expires}`)
  })

  test('set replaces an existing session (upsert)', async () => {
    await store.set('up', sessionData(HOUR, { v: 1 }))
    await store.set('up', sessionData(HOUR, { v: 2 }))
    assert.equal((await store.get('up')).v, 2)
    const count = await withClient(async (c) => (await c.query(`SELECT count(*)::int AS n FROM "${table}" WHERE sid = 'up'`)).rows[0].n)
    assert.equal(count, 1)
  })

  test('concurrent sets of one sid all succeed and leave one row holding one of them', async () => {
    const writes = Array.from({ length: 40 }, (_, i) => store.set('race', sessionData(HOUR, { i })))
    await Promise.all(writes)
    const got = await store.get('race')
    assert.ok(got.i >= 0 && got.i < 40)
    const count = await withClient(async (c) => (await c.query(`SELECT count(*)::int AS n FROM "${table}" WHERE sid = 'race'`)).rows[0].n)
    assert.equal(count, 1)
  })

  test('a burst of concurrent calls: each caller gets its own answer (hits, misses, expired, repeated ids, callbacks and promises)', async () => {
    // Calls made together travel together (one statement for many gets, touches or sets):
    // this checks that every caller still receives exactly its own result.
    const live = Array.from({ length: 40 }, (_, i) => `live-${i}`)
    const expired = Array.from({ length: 10 }, (_, i) => `gone-${i}`)
    await Promise.all([
      ...live.map((sid, i) => store.set(sid, sessionData(HOUR, { owner: sid, i }))),
      ...expired.map((sid) => store.set(sid, sessionData(-1000, { owner: sid }))),
    ])
    const asked = []
    for (let round = 0; round < 3; round++) {
      for (const sid of live) asked.push(sid)
      for (const sid of expired) asked.push(sid)
      for (let i = 0; i < 10; i++) asked.push(`missing-${round}-${i}`)
    }
    const answers = await Promise.all(asked.map((sid, i) => i % 2
      ? store.get(sid)
      : callback((cb) => store.get(sid, cb)).then(([err, value]) => { assert.equal(err, null); return value })))
    asked.forEach((sid, i) => {
      if (sid.startsWith('live-')) assert.equal(answers[i] && answers[i].owner, sid, `answer ${i} for ${sid}`)
      else assert.equal(answers[i], null, `answer ${i} for ${sid}`)
    })
    // Touches in one burst: each moves its own row, and a touch of a missing id creates nothing.
    const later = Date.now() + 7 * HOUR
    await Promise.all([...live, 'missing-touch'].map((sid) => store.touch(sid, { cookie: { expires: new Date(later).toISOString() } })))
    const rows = await withClient(async (c) => (await c.query(
      `SELECT sid, extract(epoch FROM expire) * 1000 AS expire_ms FROM "${table}" WHERE sid = ANY($1)`, [[...live, 'missing-touch']])).rows)
    assert.equal(rows.length, live.length)
    for (const row of rows) assert.ok(Math.abs(Number(row.expire_ms) - later) < 1, `${row.sid}: ${row.expire_ms}`)
  })

  test('expired sessions read as null by the JS clock', async () => {
    await store.set('old', sessionData(-1000))
    assert.equal(await store.get('old'), null)
    // Still in the table until pruned.
    const count = await withClient(async (c) => (await c.query(`SELECT count(*)::int AS n FROM "${table}" WHERE sid = 'old'`)).rows[0].n)
    assert.equal(count, 1)
  })

  test('touch moves only the expiry', async () => {
    const sess = sessionData(HOUR, { keep: 'me' })
    await store.set('t', sess)
    const later = sessionData(5 * HOUR, { keep: 'changed but not written' })
    await store.touch('t', later)
    const row = await withClient(async (c) => (await c.query(
      `SELECT sess::text AS text, extract(epoch FROM expire) * 1000 AS expire_ms FROM "${table}" WHERE sid = 't'`)).rows[0])
    assert.equal(row.text, JSON.stringify(sess))
    assert.ok(Math.abs(Number(row.expire_ms) - Date.parse(later.cookie.expires)) < 1)
    const [err] = await callback((cb) => store.touch('t', later, cb))
    assert.equal(err, null)
  })

  test('touch of an unknown sid is not an error and creates nothing', async () => {
    await store.touch('ghost', sessionData())
    assert.equal(await store.get('ghost'), null)
  })

  test('destroy deletes and is idempotent', async () => {
    await store.set('d', sessionData())
    await store.destroy('d')
    assert.equal(await store.get('d'), null)
    const [err] = await callback((cb) => store.destroy('d', cb))
    assert.equal(err, null)
  })

  test('all, ids and length see live sessions only; clear removes every row', async () => {
    const own = makeStore()
    try {
      await own.set('a', sessionData(HOUR, { n: 'a' }))
      await own.set('b', sessionData(HOUR, { n: 'b' }))
      await own.set('dead', sessionData(-5000, { n: 'dead' }))
      assert.equal(await own.length(), 2)
      assert.deepEqual((await own.ids()).sort(), ['a', 'b'])
      const all = await own.all()
      assert.deepEqual(all.map((s) => s.n).sort(), ['a', 'b'])
      const [err, n] = await callback((cb) => own.length(cb))
      assert.equal(err, null)
      assert.equal(n, 2)
      const [allErr, sessions] = await callback((cb) => own.all(cb))
      assert.equal(allErr, null)
      assert.equal(sessions.length, 2)
      const [idsErr, ids] = await callback((cb) => own.ids(cb))
      assert.equal(idsErr, null)
      assert.equal(ids.length, 2)
      await own.clear()
      assert.equal(await own.length(), 0)
      assert.deepEqual(await own.ids(), [])
      const [clearErr] = await callback((cb) => own.clear(cb))
      assert.equal(clearErr, null)
    } finally {
      await own.close()
    }
  })

  test('pruneSessions deletes expired rows only, in batches', async () => {
    const own = makeStore({ pruneBatchSize: 7 })
    try {
      for (let i = 0; i < 20; i++) await own.set(`dead${i}`, sessionData(-1000 - i))
      await own.set('alive', sessionData())
      assert.equal(await own.pruneSessions(), 20)
      const [err, deleted] = await callback((cb) => own.pruneSessions(cb))
      assert.equal(err, null)
      assert.equal(deleted, 0)
      assert.deepEqual(await own.ids(), ['alive'])
    } finally {
      await own.close()
    }
  })

  test('a row whose data is not JSON reads as null and is kept until a set overwrites it', async () => {
    const textTable = uniqueName('badjson')
    await withClient((c) => c.query(`CREATE TABLE "${textTable}" (sid varchar PRIMARY KEY, sess text NOT NULL, expire timestamp(6) NOT NULL)`))
    const own = new PGStore({ conString: DATABASE_URL, tableName: textTable, pruneSessionInterval: false })
    try {
      await withClient((c) => c.query(`INSERT INTO "${textTable}" VALUES ('broken', '{not json', now() + interval '1 hour')`))
      assert.equal(await own.get('broken'), null)
      const left = await withClient(async (c) => (await c.query(`SELECT count(*)::int AS n FROM "${textTable}" WHERE ${notTombstone()}`)).rows[0].n)
      assert.equal(left, 1, 'the get removed the row')
      await own.set('broken', { cookie: {}, fresh: true })
      assert.deepEqual(await own.get('broken'), { cookie: {}, fresh: true })
    } finally {
      await own.close()
      await withClient((c) => c.query(`DROP TABLE "${textTable}"`))
    }
  })
})

/** A store that creates `schema`.`table` (custom columns) on first use. */
function creatingStore (schema, table) {
  return new PGStore({
    conString: DATABASE_URL,
    schemaName: schema,
    tableName: table,
    columns: { session_id: 'id', session_data: 'data', expire: 'expires_at' },
    createTableIfMissing: true,
    pruneSessionInterval: false,
  })
}

describe('table creation', () => {
  test('createTableIfMissing creates table, primary key and expire index once under concurrent first calls', async () => {
    const schema = uniqueName('schema')
    const table = uniqueName('created')
    const stores = [1, 2, 3].map(() => creatingStore(schema, table))
    try {
      // Each store races its own creation against the others, and many calls race inside each store.
      await Promise.all(stores.flatMap((s, i) => Array.from({ length: 5 }, (_, j) => s.set(`s${i}-${j}`, sessionData()))))
      assert.equal(await stores[0].length(), 15)
      const info = await withClient(async (c) => {
        const cols = await c.query(
          'SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position',
          [schema, table])
        const idx = await c.query('SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = $2 ORDER BY indexname', [schema, table])
        return { cols: cols.rows, idx: idx.rows.map((r) => r.indexdef) }
      })
      assert.deepEqual(info.cols, [
        { column_name: 'id', data_type: 'character varying' },
        { column_name: 'data', data_type: 'json' },
        { column_name: 'expires_at', data_type: 'timestamp without time zone' },
      ])
      assert.equal(info.idx.length, 2)
      assert.ok(info.idx.some((d) => /UNIQUE INDEX .* \(id\)/.test(d)), info.idx.join('\n'))
      assert.ok(info.idx.some((d) => /INDEX .* \(expires_at\)/.test(d)), info.idx.join('\n'))
    } finally {
      await Promise.all(stores.map((s) => s.close()))
      await withClient((c) => c.query(`DROP SCHEMA "${schema}" CASCADE`))
    }
  })

  test('a table another store is creating this instant is never seen without its columns (60 rounds of 6 stores)', async () => {
    // The catalog lookup once failed 1.5% of such races with "has no column": the table existed
    // in the newest catalog while its columns were not yet in the statement's snapshot.
    for (let round = 0; round < 60; round++) {
      const schema = uniqueName('schema')
      const table = uniqueName('raced')
      const stores = Array.from({ length: 6 }, () => creatingStore(schema, table))
      try {
        await Promise.all(stores.map((s, i) => s.set(`s${i}`, sessionData())))
        assert.equal(await stores[0].length(), 6)
      } finally {
        await Promise.all(stores.map((s) => s.close()))
        await withClient((c) => c.query(`DROP SCHEMA "${schema}" CASCADE`))
      }
    }
  })

  test('a missing table without createTableIfMissing fails with ERR_PG_SESSION_NO_TABLE, and the store recovers once it exists', async () => {
    const table = uniqueName('missing')
    const store = new PGStore({ conString: DATABASE_URL, tableName: table, pruneSessionInterval: false })
    try {
      const [err] = await callback((cb) => store.get('x', cb))
      assert.equal(err.code, 'ERR_PG_SESSION_NO_TABLE')
      assert.match(err.message, /createTableIfMissing/)
      await assert.rejects(store.set('x', sessionData()), { code: 'ERR_PG_SESSION_NO_TABLE' })
      await withClient((c) => c.query(`CREATE TABLE "${table}" (sid varchar PRIMARY KEY, sess json NOT NULL, expire timestamp(6) NOT NULL)`))
      await store.set('x', sessionData(HOUR, { ok: true }))
      assert.equal((await store.get('x')).ok, true)
    } finally {
      await store.close()
      await withClient((c) => c.query(`DROP TABLE IF EXISTS "${table}"`))
    }
  })

  test('a table without the configured column fails with ERR_PG_SESSION_SCHEMA naming the option', async () => {
    const table = uniqueName('wrongcols')
    await withClient((c) => c.query(`CREATE TABLE "${table}" (sid varchar PRIMARY KEY, sess json NOT NULL, expire timestamp NOT NULL)`))
    const store = new PGStore({ conString: DATABASE_URL, tableName: table, columns: { expire: 'expires_at' }, pruneSessionInterval: false })
    const badType = uniqueName('badtype')
    await withClient((c) => c.query(`CREATE TABLE "${badType}" (sid varchar PRIMARY KEY, sess bytea NOT NULL, expire timestamp NOT NULL)`))
    const store2 = new PGStore({ conString: DATABASE_URL, tableName: badType, pruneSessionInterval: false })
    try {
      await assert.rejects(store.get('x'), (err) => err.code === 'ERR_PG_SESSION_SCHEMA' && /columns\.expire/.test(err.message))
      await assert.rejects(store2.get('x'), (err) => err.code === 'ERR_PG_SESSION_SCHEMA' && /json, jsonb or text/.test(err.message))
    } finally {
      await store.close()
      await store2.close()
      await withClient((c) => c.query(`DROP TABLE "${table}"; DROP TABLE "${badType}"`))
    }
  })
})

describe('close', () => {
  test('close is idempotent, stops the store, and later calls fail with ERR_PG_SESSION_CLOSED', async () => {
    const store = makeStore()
    await store.set('c', sessionData())
    await store.close()
    await store.close()
    assert.equal(store.closed, true)
    await assert.rejects(store.get('c'), { code: 'ERR_PG_SESSION_CLOSED' })
    const [err] = await callback((cb) => store.set('c', sessionData(), cb))
    assert.equal(err.code, 'ERR_PG_SESSION_CLOSED')
    const [closeErr] = await callback((cb) => store.close(cb))
    assert.equal(closeErr, null)
  })

  test('a rejected call nobody awaits is not an unhandled rejection', async () => {
    const store = makeStore()
    await store.close()
    const unhandled = []
    const onUnhandled = (reason) => unhandled.push(reason)
    process.on('unhandledRejection', onUnhandled)
    try {
      store.get('x')
      store.set('x', sessionData())
      store.touch('x', sessionData())
      store.destroy('x')
      store.length()
      store.pruneSessions()
      await new Promise((resolve) => setTimeout(resolve, 50))
      assert.deepEqual(unhandled, [])
    } finally {
      process.off('unhandledRejection', onUnhandled)
    }
  })
})

test('on Linux the engine\'s worker runs as SCHED_BATCH: woken, it does not preempt the JS thread on a shared core', { skip: process.platform !== 'linux' && 'the scheduling policy is set on Linux only' }, async () => {
  const fs = require('node:fs')
  const store = makeStore({ tableName: uniqueName('sched') })
  try {
    await store.ready()
    const threads = fs.readdirSync('/proc/self/task').flatMap((tid) => {
      let stat
      try {
        stat = fs.readFileSync(`/proc/self/task/${tid}/stat`, 'utf8')
      } catch {
        return [] // a thread that ended since the listing (an idle blocking-pool thread)
      }
      // Field 41, the policy, counted from the fields after the name's closing parenthesis.
      return [{ tid: Number(tid), name: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')), policy: Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[38]) }]
    })
    const workers = threads.filter((t) => t.name.startsWith('tokio-'))
    assert.ok(workers.length >= 1, `no tokio thread among ${threads.map((t) => t.name).join(', ')}`)
    for (const w of workers) assert.equal(w.policy, 3, `${w.name} runs with policy ${w.policy}, not SCHED_BATCH (3)`)
    // Node's own threads (the JS thread first) keep the default policy.
    assert.equal(threads.find((t) => t.tid === process.pid).policy, 0, 'the JS thread\'s policy changed')
  } finally {
    await store.close()
  }
})
