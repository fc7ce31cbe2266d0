'use strict'

// The store behind a real PgBouncer in transaction pooling (Debian's `pgbouncer`, started here
// with a generated config). Named prepared statements break there; `preparedStatements: false`
// sends every statement unnamed with explicit parameter types.

const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { startServer } = require('./pg-server')
const { PGStore, uniqueName, withClient } = require('./helpers')
const { outcome, startPgBouncer, skipWithout } = require('./fault-kit')

// Without pgbouncer on a developer's machine these tests skip, saying why; under CI they must run.
const skip = skipWithout('pgbouncer')

/** @type {Awaited<ReturnType<typeof startServer>>} */
let server
/** @type {Awaited<ReturnType<typeof startPgBouncer>>} */
let bouncer
const stores = []

before(async () => {
  if (skip) return
  server = await startServer()
  bouncer = await startPgBouncer(server, {
    // Drop every prepared statement when a server connection goes back to the pool: what
    // transaction pooling does to them over time, made certain so the failure is not left to chance.
    server_reset_query: 'DEALLOCATE ALL',
    server_reset_query_always: 1,
  })
})

after(async () => {
  await Promise.allSettled(stores.map((s) => s.close()))
  if (bouncer) await bouncer.stop()
  if (server) await server.destroy()
})

/** @param {Record<string, any>} options */
function storeOn (options) {
  const store = new PGStore({ tableName: uniqueName('bouncer'), createTableIfMissing: true, pruneSessionInterval: false, ...options })
  stores.push(store)
  return store
}

const sess = (/** @type {number} */ n, expires = Date.now() + 3600000) => ({ cookie: { expires: new Date(expires).toISOString() }, n })

test('preparedStatements: false works through PgBouncer in transaction mode, under concurrency', { skip, timeout: 40000 }, async (t) => {
  const table = uniqueName('bouncer')
  // 10 client connections share PgBouncer's 2 server connections.
  const store = storeOn({ conObject: { connectionString: bouncer.url, max: 10 }, tableName: table, preparedStatements: false })
  const N = 300
  const writes = await Promise.all(Array.from({ length: N }, (_, i) => outcome(store.set(`s${i}`, sess(i)))))
  assert.deepEqual(writes.filter((r) => r.err).map((r) => r.err.message), [])
  const reads = await Promise.all(Array.from({ length: N }, (_, i) => outcome(store.get(`s${i}`))))
  assert.deepEqual(reads.map((r) => r.err ? r.err.message : r.value.n), Array.from({ length: N }, (_, i) => i))
  assert.equal(await store.touch('s1', sess(1)), undefined)
  await store.destroy('s2')
  assert.equal(await store.get('s2'), null)
  assert.equal(await store.length(), N - 1)
  assert.equal((await store.ids()).length, N - 1)
  assert.equal((await store.all()).length, N - 1)
  await store.set('expired', sess(-1, Date.now() - 1000))
  assert.equal(await store.pruneSessions(), 1)
  await store.clear()
  assert.equal(await store.length(), 0)
  // Every row really went through PgBouncer to the server behind it.
  const direct = await withClient(async (c) => (await c.query(`SELECT count(*)::int AS n FROM "${table}"`)).rows[0].n, server.url)
  assert.equal(direct, 0)
  const pools = await withClient(async (c) => (await c.query('SHOW POOLS')).rows, bouncer.url.replace(/\/postgres$/, '/pgbouncer'))
  const pool = pools.find((p) => p.database === 'postgres' && p.user === server.user)
  assert.equal(pool && pool.pool_mode, 'transaction')
  t.diagnostic(`${N} concurrent writes and ${N} reads from 10 client connections over PgBouncer ` +
    `(transaction pooling, default_pool_size 2): 0 errors`)
})

test('with prepared statements on, the error names the preparedStatements option', { skip, timeout: 40000 }, async () => {
  const store = storeOn({ conString: bouncer.url })
  // The first call reads the catalog with a prepared statement; it or a later call must fail.
  const results = []
  for (let i = 0; i < 3; i++) results.push(await outcome(store.set(`s${i}`, sess(i))))
  const failed = results.filter((r) => r.err)
  assert.ok(failed.length > 0, 'named prepared statements unexpectedly survived transaction pooling')
  for (const { err } of failed) {
    assert.equal(err.code, '26000', err.message)
    assert.match(err.message, /preparedStatements: false/)
  }
})

test('statement_timeout needs PgBouncer to accept the `options` startup parameter; the error says so', { skip, timeout: 40000 }, async () => {
  const store = storeOn({ conObject: { connectionString: bouncer.url, statement_timeout: 1000 }, preparedStatements: false })
  const r = await outcome(store.set('a', sess(1)))
  assert.ok(r.err, 'PgBouncer 1.18 refuses `options`; this call was expected to fail')
  assert.equal(typeof r.err.code, 'string')
  assert.match(r.err.message, /unsupported startup parameter/)
  assert.match(r.err.message, /ignore_startup_parameters/)
})

test('statement_timeout through a PgBouncer that ignores `options` connects (the timeout is then not applied)', { skip, timeout: 40000 }, async () => {
  const lenient = await startPgBouncer(server, { ignore_startup_parameters: 'options' })
  const store = new PGStore({
    conObject: { connectionString: lenient.url, statement_timeout: 1000 },
    tableName: uniqueName('bouncer'),
    createTableIfMissing: true,
    pruneSessionInterval: false,
    preparedStatements: false,
  })
  try {
    await store.set('a', sess(1))
    assert.equal((await store.get('a')).n, 1)
  } finally {
    await store.close()
    await lenient.stop()
  }
})
