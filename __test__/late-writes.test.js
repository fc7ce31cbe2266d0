'use strict'

// A write the store gave up on never lands after a later call: through a proxy that black-holes
// the connection the write went out on (bytes held, nothing closed) while new connections pass,
// the next call of that session is released only once the old statement can no longer commit;
// and a write answered ERR_PG_SESSION_CLOSED by close() does not commit afterwards.

const { test, after } = require('node:test')
const assert = require('node:assert/strict')
const { PGStore, DATABASE_URL, uniqueName, withClient } = require('./helpers')
const { sleep, outcome, holdLock, waitForLockWaiters } = require('./fault-kit')
const { startProxy } = require('./proxy-kit')

const QUERY_MS = 1000
const stores = []
const tables = []

after(async () => {
  await Promise.allSettled(stores.map((s) => s.close()))
  await withClient(async (c) => {
    for (const t of tables) await c.query(`DROP TABLE IF EXISTS "${t}"`)
  })
})

/** DATABASE_URL with its host and port replaced by the proxy's. */
function viaPort (port) {
  const url = new URL(DATABASE_URL)
  url.hostname = '127.0.0.1'
  url.port = String(port)
  return url.toString()
}

function storeOn (conString, options = {}) {
  const tableName = uniqueName('late')
  tables.push(tableName)
  const store = new PGStore({
    conObject: { connectionString: conString, connectionTimeoutMillis: 2000, query_timeout: QUERY_MS },
    tableName,
    createTableIfMissing: true,
    pruneSessionInterval: false,
    touchAfter: 0,
    ...options,
  })
  stores.push(store)
  return { store, tableName }
}

const sess = (tag) => ({ cookie: { expires: new Date(Date.now() + 3600000).toISOString() }, tag })

/** The row's data tag (or 'missing' / 'tombstone'), read straight from the table. */
async function stored (tableName, sid) {
  return withClient(async (c) => {
    const { rows } = await c.query(`SELECT sess->>'tag' AS tag, expire < '1900-01-01' AS tomb FROM "${tableName}" WHERE sid = $1`, [sid])
    if (rows.length === 0) return 'missing'
    return rows[0].tomb ? 'tombstone' : rows[0].tag
  })
}

/**
 * first(store, sid) times out on a black-holed connection; second(store, sid) then succeeds on a
 * new one; once the held bytes reach the server, the row must show the second call's effect.
 */
async function lateCase (t, name, first, second, expected, options = {}) {
  const proxy = await startProxy(Number(new URL(DATABASE_URL).port || 5432), new URL(DATABASE_URL).hostname)
  try {
    const { store, tableName } = storeOn(viaPort(proxy.port), options)
    // One connection, with the statements prepared on it: the held bytes are then the write
    // itself, not only its preparation.
    await store.set('warm', sess('warm'))
    await store.destroy('warm')
    await store.set('x', sess('before'))
    proxy.stallOpen()
    const a = await outcome(first(store, 'x'))
    assert.ok(a.err, `${name}: the first call succeeded through a black-holed connection`)
    assert.equal(a.err.code, 'ERR_PG_SESSION_TIMEOUT')
    const b = await outcome(second(store, 'x'))
    assert.equal(b.err, null, `${name}: the second call failed: ${b.err && b.err.message}`)
    proxy.resume()
    await sleep(500)
    const row = await stored(tableName, 'x')
    t.diagnostic(`${name}: first call ${a.err.code} after ${a.ms} ms, second ok after ${b.ms} ms, row then: ${row}`)
    assert.equal(row, expected, `${name}: the call given up on landed after the acknowledged one`)
  } finally {
    await proxy.close()
  }
}

test('set A given up on (timeout), set B acknowledged: once the network heals the row holds B', { timeout: 30000 }, async (t) => {
  await lateCase(t, 'set→set', (s, sid) => s.set(sid, sess('A')), (s, sid) => s.set(sid, sess('B')), 'B')
})

test('destroy given up on, then set acknowledged: once the network heals the row holds the set', { timeout: 30000 }, async (t) => {
  await lateCase(t, 'destroy→set', (s, sid) => s.destroy(sid), (s, sid) => s.set(sid, sess('B')), 'B')
})

test('set given up on, then destroy acknowledged: the session stays destroyed (tombstones on, and off)', { timeout: 30000 }, async (t) => {
  await lateCase(t, 'set→destroy', (s, sid) => s.set(sid, sess('A')), (s, sid) => s.destroy(sid), 'tombstone')
  await lateCase(t, 'set→destroy, tombstones off', (s, sid) => s.set(sid, sess('A')), (s, sid) => s.destroy(sid), 'missing', { tombstones: false })
})

test('a write answered ERR_PG_SESSION_CLOSED by close() does not commit once its row lock is released', { timeout: 30000 }, async (t) => {
  const app = uniqueName('closing')
  const { store, tableName } = storeOn(DATABASE_URL, { conObject: { connectionString: DATABASE_URL, connectionTimeoutMillis: 1000, query_timeout: 20000, application_name: app } })
  await store.set('x', sess('before'))
  const lock = await holdLock(DATABASE_URL, `SELECT 1 FROM "${tableName}" WHERE sid = 'x' FOR UPDATE`)
  try {
    const write = outcome(store.set('x', sess('after-close')))
    await waitForLockWaiters(DATABASE_URL, app, 1)
    await store.close()
    const w = await write
    assert.ok(w.err, 'the write blocked on a lock succeeded across close()')
    assert.equal(w.err.code, 'ERR_PG_SESSION_CLOSED')
    t.diagnostic(`blocked write answered by close(): ${w.err.message}`)
  } finally {
    await lock.release()
  }
  await sleep(300)
  assert.equal(await stored(tableName, 'x'), 'before', 'a write answered ERR_PG_SESSION_CLOSED committed after close()')
})
