'use strict'

// What a new user meets first: a typo'd option, checking the database at boot (ready()), a missing
// table (the CREATE TABLE to run, and PostgreSQL's 42P01), and errors that say which server.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { PGStore, DATABASE_URL, uniqueName, withClient } = require('./helpers')
const { freePort } = require('./pg-server')
const { outcome } = require('./fault-kit')

/** The warnings emitted while `fn` runs (and one tick after). */
async function warningsOf (fn) {
  const warnings = []
  const onWarning = (w) => warnings.push(w)
  process.on('warning', onWarning)
  try {
    await fn()
    await new Promise((resolve) => setImmediate(resolve))
  } finally {
    process.off('warning', onWarning)
  }
  return warnings
}

test('an unknown option is reported once, naming the closest known option', async () => {
  const stores = []
  const warnings = await warningsOf(async () => {
    stores.push(new PGStore({ conString: DATABASE_URL, tablename: 'user_sessions', pruneSessionInterval: false }))
    stores.push(new PGStore({ conString: DATABASE_URL, tablename: 'user_sessions', pruneSessionInterval: false }))
    stores.push(new PGStore({ conString: DATABASE_URL, frobnicate: true, pruneSessionInterval: false }))
  })
  await Promise.all(stores.map((s) => s.close()))
  const ours = warnings.filter((w) => w.code === 'PG_SESSION_UNKNOWN_OPTION')
  assert.equal(ours.length, 2, ours.map((w) => w.message).join('\n'))
  assert.match(ours[0].message, /unknown option `tablename`.*did you mean `tableName`\?/i)
  assert.match(ours[1].message, /unknown option `frobnicate`/)
  assert.doesNotMatch(ours[1].message, /did you mean/i)
})

test('ready() resolves once the table is usable (creating it when asked), and rejects coded otherwise', async () => {
  const table = uniqueName('ready')
  const creating = new PGStore({ conString: DATABASE_URL, tableName: table, createTableIfMissing: true, pruneSessionInterval: false })
  const missing = new PGStore({ conString: DATABASE_URL, tableName: uniqueName('absent'), pruneSessionInterval: false })
  const port = await freePort()
  const down = new PGStore({ conObject: { host: '127.0.0.1', port, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 1000 }, pruneSessionInterval: false })
  try {
    await creating.ready()
    const exists = await withClient(async (c) => (await c.query('SELECT to_regclass($1) IS NOT NULL AS e', [`"${table}"`])).rows[0].e)
    assert.equal(exists, true, 'ready() did not create the table')
    const viaCallback = await new Promise((resolve) => creating.ready((err) => resolve(err)))
    assert.equal(viaCallback, null)
    const r = await outcome(missing.ready())
    assert.equal(r.err && r.err.code, 'ERR_PG_SESSION_NO_TABLE')
    const d = await outcome(down.ready())
    assert.equal(d.err && d.err.code, 'ERR_PG_SESSION_CONNECT', d.err && d.err.message)
  } finally {
    await Promise.all([creating.close(), missing.close(), down.close()])
    await withClient((c) => c.query(`DROP TABLE IF EXISTS "${table}"`))
  }
})

test('a missing table: the error shows the CREATE TABLE for the configured names and keeps 42P01', async () => {
  const schema = uniqueName('app')
  const table = uniqueName('user_sessions')
  const store = new PGStore({
    conString: DATABASE_URL,
    schemaName: schema,
    tableName: table,
    columns: { session_id: 'id', session_data: 'data', expire: 'expires_at' },
    pruneSessionInterval: false,
  })
  try {
    const r = await outcome(store.get('x'))
    assert.equal(r.err && r.err.code, 'ERR_PG_SESSION_NO_TABLE')
    assert.equal(r.err.sqlState, '42P01', 'connect-pg-simple apps look for 42P01')
    assert.match(r.err.message, new RegExp(`CREATE TABLE IF NOT EXISTS "${schema}"\\."${table}"`))
    assert.match(r.err.message, /"id" varchar NOT NULL/)
    assert.match(r.err.message, /"expires_at"/)
    // The statement in the message works as it is.
    const sql = r.err.message.slice(r.err.message.indexOf('CREATE SCHEMA'), r.err.message.lastIndexOf(';') + 1)
    await withClient((c) => c.query(sql))
    await store.set('x', { cookie: { expires: new Date(Date.now() + 60000).toISOString() }, n: 1 })
    assert.equal((await store.get('x')).n, 1)
  } finally {
    await store.close()
    await withClient((c) => c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`))
  }
})

test('a refused connection says where: host and port, never the password', async () => {
  const port = await freePort()
  const store = new PGStore({ conString: `postgres://someone:s3cret-pw@127.0.0.1:${port}/db`, pruneSessionInterval: false })
  try {
    const r = await outcome(store.get('x'))
    assert.equal(r.err && r.err.code, 'ERR_PG_SESSION_CONNECT')
    assert.match(r.err.message, new RegExp(`127\\.0\\.0\\.1:${port}`))
    assert.doesNotMatch(r.err.message, /s3cret-pw/)
  } finally {
    await store.close()
  }
})
