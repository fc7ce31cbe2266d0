'use strict'

// Options: validation, every way of naming the database, names of schema/table/columns,
// ttl, touch, pruning timers, errorLog and serializer.

const { test, describe } = require('node:test')
const assert = require('node:assert/strict')
const pg = require('pg')
const { PGStore, DATABASE_URL, makeStore, uniqueName, withClient, session, notTombstone } = require('./helpers')
const factory = require('..')

const HOUR = 3600 * 1000
const sessionData = (ms = HOUR, extra = {}) => ({ cookie: { originalMaxAge: ms, expires: new Date(Date.now() + ms).toISOString() }, ...extra })

/** Seconds-since-epoch of a row's expiry, read with SQL. */
async function expireMs (table, sid, schema) {
  const name = schema ? `"${schema}"."${table}"` : `"${table}"`
  return withClient(async (c) => {
    const { rows } = await c.query(`SELECT extract(epoch FROM expire) * 1000 AS ms FROM ${name} WHERE sid = $1`, [sid])
    return rows.length ? Number(rows[0].ms) : undefined
  })
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

describe('validation', () => {
  const cases = [
    [{ columns: { session_id: 'id', sessionId: 'x' } }, 'columns.sessionId'],
    [{ columns: { expire: 5 } }, 'columns.expire'],
    [{ columns: { expire: '' } }, 'columns.expire'],
    [{ columns: 'sid' }, 'columns'],
    [{ ttl: '1h' }, 'ttl'],
    [{ ttl: -1 }, 'ttl'],
    [{ touchAfter: 'soon' }, 'touchAfter'],
    [{ pruneSessionInterval: 'often' }, 'pruneSessionInterval'],
    [{ pruneSessionRandomizedInterval: true }, 'pruneSessionRandomizedInterval'],
    [{ pruneBatchSize: 0 }, 'pruneBatchSize'],
    [{ errorLog: 'console' }, 'errorLog'],
    [{ createTableIfMissing: 'yes' }, 'createTableIfMissing'],
    [{ disableTouch: 1 }, 'disableTouch'],
    [{ tableName: 5 }, 'tableName'],
    [{ schemaName: {} }, 'schemaName'],
    [{ serializer: { stringify: JSON.stringify } }, 'serializer'],
    [{ pool: 'postgres://x' }, 'pool'],
    [{ pgPromise: {} }, 'pgPromise'],
    [{ conObject: 42 }, 'conObject'],
    [{ conObject: { port: 'http' } }, 'conObject.port'],
    [{ conObject: { password: () => 'x' } }, 'conObject.password'],
    [{ conString: 42 }, 'conString'],
    [{ replicas: 'postgres://r' }, 'replicas'],
    [{ conString: 'mysql://u:p@h/db' }, 'connection string'],
    [{ tableName: 'a\0b' }, 'tableName'],
    [{ tableName: 'x'.repeat(64) }, 'tableName'],
    [{ columns: { session_id: 'same', expire: 'same' } }, 'columns'],
    [{ conObject: { ssl: { mode: 'sometimes' } } }, 'sslmode'],
  ]
  for (const [options, named] of cases) {
    test(`${JSON.stringify(options, (k, v) => typeof v === 'function' ? 'fn' : v)} is refused, naming ${named}`, () => {
      assert.throws(() => new PGStore({ conString: DATABASE_URL, ...options }), (err) => {
        assert.equal(err.code, 'ERR_PG_SESSION_INVALID_OPTION')
        assert.ok(err.message.includes(named), err.message)
        return true
      })
    })
  }

  test('the options argument itself must be an object', () => {
    assert.throws(() => new PGStore('postgres://x'), { code: 'ERR_PG_SESSION_INVALID_OPTION' })
  })

  test('the factory needs express-session; Express 3 / Connect style (session.session.Store) works', () => {
    assert.throws(() => factory({}), { code: 'ERR_PG_SESSION_INVALID_ARG' })
    const Legacy = factory({ session: session })
    const store = new Legacy({ conString: DATABASE_URL, pruneSessionInterval: false })
    assert.ok(store instanceof session.Store)
    return store.close()
  })
})

describe('where the database is', () => {
  /** Proves a store reaches the database: a write and a read on its own table. */
  async function roundTrip (options) {
    const store = new PGStore({ tableName: uniqueName('conn'), createTableIfMissing: true, pruneSessionInterval: false, ...options })
    try {
      await store.set('probe', sessionData(HOUR, { ok: 1 }))
      assert.equal((await store.get('probe')).ok, 1)
      return store.stats()
    } finally {
      await store.close()
    }
  }

  test('conString', () => roundTrip({ conString: DATABASE_URL }))

  test('conObject with connectionString, and with separate fields', async () => {
    await roundTrip({ conObject: { connectionString: DATABASE_URL } })
    const url = new URL(DATABASE_URL)
    await roundTrip({
      conObject: {
        host: url.hostname,
        port: url.port || 5432,
        user: decodeURIComponent(url.username),
        password: decodeURIComponent(url.password) || undefined,
        database: url.pathname.slice(1),
        application_name: 'options-test',
        max: 3,
      },
    })
  })

  // PostgreSQL on Windows listens on no Unix socket by default (unix_socket_directories is empty).
  test('a Unix socket directory as host', { skip: process.platform === 'win32' && 'no Unix socket to reach on Windows' }, async () => {
    const { dir, port } = await withClient(async (c) => ({
      dir: (await c.query('SHOW unix_socket_directories')).rows[0].unix_socket_directories.split(',')[0].trim(),
      port: (await c.query('SHOW port')).rows[0].port,
    }))
    const url = new URL(DATABASE_URL)
    await roundTrip({ conObject: { host: dir, port, user: decodeURIComponent(url.username), password: decodeURIComponent(url.password) || undefined, database: url.pathname.slice(1) } })
  })

  test('DATABASE_URL, then PG* variables', async (t) => {
    const saved = { ...process.env }
    t.after(() => {
      for (const key of ['DATABASE_URL', 'PGHOST', 'PGPORT', 'PGUSER', 'PGPASSWORD', 'PGDATABASE']) {
        if (saved[key] === undefined) delete process.env[key]
        else process.env[key] = saved[key]
      }
    })
    process.env.DATABASE_URL = DATABASE_URL
    await roundTrip({})
    delete process.env.DATABASE_URL
    const url = new URL(DATABASE_URL)
    process.env.PGHOST = url.hostname
    process.env.PGPORT = url.port || '5432'
    process.env.PGUSER = decodeURIComponent(url.username)
    if (url.password) process.env.PGPASSWORD = decodeURIComponent(url.password)
    process.env.PGDATABASE = url.pathname.slice(1)
    await roundTrip({})
  })

  test('a pg.Pool: its settings and max are used, and it is never ended', async () => {
    const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 4 })
    try {
      const stats = await roundTrip({ pool })
      assert.equal(stats.primary.maxSize, 4)
      const { rows } = await pool.query('SELECT 1 AS one')
      assert.equal(rows[0].one, 1)
      assert.equal(pool.ending, false)
    } finally {
      await pool.end()
    }
  })

  test('a pg-promise database, with a string or an object as $cn', async () => {
    const pgp = require('pg-promise')()
    try {
      await roundTrip({ pgPromise: pgp(DATABASE_URL) })
      await roundTrip({ pgPromise: pgp({ connectionString: DATABASE_URL, max: 2 }) })
    } finally {
      pgp.end()
    }
  })
})

describe('names', () => {
  test('schemaName, tableName and custom columns are used by every statement', async () => {
    const schema = uniqueName('app')
    const table = uniqueName('user sessions')
    await withClient((c) => c.query(`CREATE SCHEMA "${schema}"; CREATE TABLE "${schema}"."${table}" (
      "session id" varchar PRIMARY KEY, "data" json NOT NULL, "expires_at" timestamp(6) NOT NULL)`))
    const store = new PGStore({
      conString: DATABASE_URL,
      schemaName: schema,
      tableName: table,
      columns: { session_id: 'session id', session_data: 'data', expire: 'expires_at' },
      pruneSessionInterval: false,
    })
    try {
      await store.set('a', sessionData(HOUR, { n: 1 }))
      await store.set('gone', sessionData(-HOUR))
      await store.touch('a', sessionData(2 * HOUR))
      assert.equal((await store.get('a')).n, 1)
      assert.deepEqual(await store.ids(), ['a'])
      assert.equal(await store.length(), 1)
      assert.equal((await store.all()).length, 1)
      assert.equal(await store.pruneSessions(), 1)
      await store.destroy('a')
      assert.equal(await store.length(), 0)
      const rows = await withClient(async (c) => (await c.query(`SELECT count(*)::int AS n FROM "${schema}"."${table}" WHERE ${notTombstone('expires_at')}`)).rows[0].n)
      assert.equal(rows, 0)
    } finally {
      await store.close()
      await withClient((c) => c.query(`DROP SCHEMA "${schema}" CASCADE`))
    }
  })

  test('the legacy tableName "schema"."table" form still works, with a deprecation warning', async () => {
    const schema = uniqueName('legacy')
    const table = uniqueName('t')
    await withClient((c) => c.query(`CREATE SCHEMA "${schema}"`))
    const warnings = []
    const onWarning = (w) => warnings.push(w)
    process.on('warning', onWarning)
    const store = new PGStore({ conString: DATABASE_URL, tableName: `${schema}"."${table}`, createTableIfMissing: true, pruneSessionInterval: false })
    try {
      await store.set('a', sessionData())
      await new Promise((resolve) => setImmediate(resolve))
      assert.ok(warnings.some((w) => w.name === 'DeprecationWarning' && /schemaName/.test(w.message)))
      const n = await withClient(async (c) => (await c.query(`SELECT count(*)::int AS n FROM "${schema}"."${table}"`)).rows[0].n)
      assert.equal(n, 1)
    } finally {
      process.off('warning', onWarning)
      await store.close()
      await withClient((c) => c.query(`DROP SCHEMA "${schema}" CASCADE`))
    }
  })
})

describe('expiry', () => {
  test('without ttl: the cookie expiry, else one day', async () => {
    const table = uniqueName('ttl')
    const store = makeStore({ tableName: table })
    try {
      const sess = sessionData(3 * HOUR)
      await store.set('cookie', sess)
      assert.ok(Math.abs(await expireMs(table, 'cookie') - Date.parse(sess.cookie.expires)) < 1)
      const before = Date.now()
      await store.set('nocookie', { cookie: {} })
      const at = await expireMs(table, 'nocookie')
      assert.ok(at >= before + 24 * HOUR - 1 && at <= Date.now() + 24 * HOUR + 1, `${at - before}`)
    } finally {
      await store.close()
    }
  })

  test('a numeric ttl decides the expiry, over the cookie (unlike connect-pg-simple)', async () => {
    const table = uniqueName('ttl')
    const store = makeStore({ tableName: table, ttl: 60 })
    try {
      const before = Date.now()
      await store.set('s', sessionData(3 * HOUR))
      const at = await expireMs(table, 's')
      assert.ok(at >= before + 60000 - 1 && at <= Date.now() + 60000 + 1, `${at - before}`)
    } finally {
      await store.close()
    }
  })

  test('a ttl function gets the session and returns seconds', async () => {
    const table = uniqueName('ttl')
    const seen = []
    const store = makeStore({ tableName: table, ttl: (sess) => { seen.push(sess.role); return sess.role === 'admin' ? 10 : 1000 } })
    try {
      const before = Date.now()
      await store.set('admin', sessionData(HOUR, { role: 'admin' }))
      await store.touch('admin', sessionData(HOUR, { role: 'admin' }))
      const at = await expireMs(table, 'admin')
      assert.ok(at >= before + 10000 - 1 && at <= Date.now() + 10000 + 1)
      assert.deepEqual(seen, ['admin', 'admin'])
    } finally {
      await store.close()
    }
  })

  test('disableTouch leaves the expiry alone', async () => {
    const table = uniqueName('notouch')
    const store = makeStore({ tableName: table, disableTouch: true })
    try {
      const sess = sessionData(HOUR)
      await store.set('s', sess)
      await store.touch('s', sessionData(5 * HOUR))
      assert.ok(Math.abs(await expireMs(table, 's') - Date.parse(sess.cookie.expires)) < 1)
    } finally {
      await store.close()
    }
  })

  test('by default a touch is written once the stored expiry lags by 1 % of the lifetime (a minute at most), or moves back', async () => {
    const table = uniqueName('touchlag')
    const store = makeStore({ tableName: table })
    const eager = makeStore({ tableName: table, touchAfter: 0 })
    // A session of about an hour: the bound is 1 % of it, 36 s.
    const at = (ms) => ({ cookie: { expires: new Date(ms).toISOString() } })
    try {
      const written = Date.now() + HOUR
      await store.set('s', at(written))
      await store.touch('s', at(written + 10000))
      assert.equal(await expireMs(table, 's'), written, 'a touch 10 s later than the stored expiry was written')
      await store.touch('s', at(written + 40000))
      assert.equal(await expireMs(table, 's'), written + 40000, 'a touch 40 s later was not written')
      await store.touch('s', at(written + 30000))
      assert.equal(await expireMs(table, 's'), written + 30000, 'a touch to an earlier expiry was not written')
      // A day-long session: 1 % would be 14 min, the bound is a minute.
      const day = Date.now() + 24 * HOUR
      await store.set('d', at(day))
      await store.touch('d', at(day + 50000))
      assert.equal(await expireMs(table, 'd'), day)
      await store.touch('d', at(day + 70000))
      assert.equal(await expireMs(table, 'd'), day + 70000)
      // touchAfter: 0 writes every touch.
      await eager.set('e', at(written))
      await eager.touch('e', at(written + 1))
      assert.equal(await expireMs(table, 'e'), written + 1)
    } finally {
      await store.close()
      await eager.close()
    }
  })

  test('a set keeps the stored expiry while it lags the new one by less than the touch bound (an update PostgreSQL can make in place)', async () => {
    const table = uniqueName('setlag')
    const store = makeStore({ tableName: table })
    const eager = makeStore({ tableName: table, touchAfter: 0 })
    const at = (ms, n) => ({ n, cookie: { expires: new Date(ms).toISOString() } })
    const data = (sid) => withClient(async (c) => (await c.query(`SELECT sess FROM "${table}" WHERE sid = $1`, [sid])).rows[0].sess)
    try {
      const written = Date.now() + HOUR
      await store.set('s', at(written, 1))
      await store.set('s', at(written + 10000, 2))
      assert.equal(await expireMs(table, 's'), written, 'a set 10 s later than the stored expiry moved it')
      assert.equal((await data('s')).n, 2, 'the data was not written')
      // The expiry kept is the one written, not the one asked last: the lag never adds up.
      await store.set('s', at(written + 30000, 3))
      assert.equal(await expireMs(table, 's'), written)
      await store.touch('s', at(written + 40000, 3))
      assert.equal(await expireMs(table, 's'), written + 40000, 'a touch 40 s behind the kept expiry was not written')
      await store.set('s', at(written + 80000, 4))
      assert.equal(await expireMs(table, 's'), written + 80000, 'a set 40 s later was not written')
      await store.set('s', at(written + 70000, 5))
      assert.equal(await expireMs(table, 's'), written + 70000, 'a set to an earlier expiry was not written')
      // touchAfter: 0 writes every set's expiry.
      await eager.set('e', at(written, 1))
      await eager.set('e', at(written + 1, 2))
      assert.equal(await expireMs(table, 'e'), written + 1)
    } finally {
      await store.close()
      await eager.close()
    }
  })

  test('touchAfter skips a touch while the expiry this store wrote is less than that far behind', async () => {
    const table = uniqueName('touchafter')
    const store = makeStore({ tableName: table, touchAfter: 3600 })
    const eager = makeStore({ tableName: table })
    try {
      const sess = sessionData(HOUR)
      await store.set('s', sess)
      await store.touch('s', sessionData(HOUR + 30 * 60000))
      assert.ok(Math.abs(await expireMs(table, 's') - Date.parse(sess.cookie.expires)) < 1)
      // More than touchAfter behind: written.
      const much = sessionData(5 * HOUR)
      await store.touch('s', much)
      assert.ok(Math.abs(await expireMs(table, 's') - Date.parse(much.cookie.expires)) < 1)
      // A store that never wrote the session touches it.
      const later = sessionData(6 * HOUR)
      await eager.touch('s', later)
      assert.ok(Math.abs(await expireMs(table, 's') - Date.parse(later.cookie.expires)) < 1)
    } finally {
      await store.close()
      await eager.close()
    }
  })
})

describe('pruning timer, errorLog, serializer', () => {
  test('the prune timer starts on first use and deletes expired rows', async () => {
    const table = uniqueName('timer')
    const delays = []
    const store = makeStore({
      tableName: table,
      pruneSessionInterval: 0.1,
      pruneSessionRandomizedInterval: (delay) => { delays.push(delay); return delay },
    })
    try {
      await store.set('dead', sessionData(-1000))
      let left = 1
      for (let i = 0; i < 100 && left > 0; i++) {
        await sleep(50)
        left = await withClient(async (c) => (await c.query(`SELECT count(*)::int AS n FROM "${table}"`)).rows[0].n)
      }
      assert.equal(left, 0)
      assert.equal(delays[0], 100)
    } finally {
      await store.close()
    }
  })

  test('pruning failures go to errorLog', async () => {
    const logged = []
    const store = new PGStore({
      conString: DATABASE_URL,
      tableName: uniqueName('absent'),
      pruneSessionInterval: 0.05,
      pruneSessionRandomizedInterval: false,
      errorLog: (...args) => logged.push(args),
    })
    try {
      await assert.rejects(store.get('x'), { code: 'ERR_PG_SESSION_NO_TABLE' })
      for (let i = 0; i < 100 && logged.length === 0; i++) await sleep(20)
      assert.match(String(logged[0][0]), /prune/i)
      assert.equal(logged[0][1].code, 'ERR_PG_SESSION_NO_TABLE')
    } finally {
      await store.close()
    }
  })

  test('a custom serializer writes and reads the text', async () => {
    const table = uniqueName('serial')
    const serializer = {
      stringify: (s) => JSON.stringify({ wrapped: s }),
      parse: (text) => JSON.parse(text).wrapped,
    }
    const store = makeStore({ tableName: table, serializer })
    try {
      const sess = sessionData(HOUR, { x: 1 })
      await store.set('s', sess)
      assert.deepEqual(await store.get('s'), sess)
      const raw = await withClient(async (c) => (await c.query(`SELECT sess::text AS t FROM "${table}"`)).rows[0].t)
      assert.equal(raw, JSON.stringify({ wrapped: sess }))
    } finally {
      await store.close()
    }
  })
})
