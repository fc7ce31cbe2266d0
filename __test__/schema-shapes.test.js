'use strict'

// Table shapes and server states beyond connect-pg-simple's table: a uuid sid column, two long
// table names whose default expiry-index names share their first 63 bytes, and a server with no
// connection slot left (53300), which must count as the database being unreachable.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const crypto = require('node:crypto')
const pg = require('pg')
const { PGStore, DATABASE_URL, uniqueName, withClient, cleanUpAfter, notTombstone } = require('./helpers')
const { startServer } = require('./pg-server')
const { sleep, outcome, within } = require('./fault-kit')

const HOUR = 3600000
const tables = []
const stores = []

cleanUpAfter(stores, tables)

function track (store) {
  stores.push(store)
  return store
}

const sess = (/** @type {number} */ n, expiresMs = Date.now() + HOUR) => ({ cookie: { expires: new Date(expiresMs).toISOString() }, n })

/** Fails with the call's code and message when `r` holds an error. */
function assertOk (r, what) {
  assert.ok(!r.hung, `${what} did not settle`)
  if (r.err) assert.fail(`${what} failed: ${r.err.code}: ${r.err.message}`)
  return r.value
}

test('a table whose sid column is uuid: set, get, touch, destroy and pruneSessions work with uuid sids', { timeout: 60000 }, async (t) => {
  const table = uniqueName('uuid')
  tables.push(table)
  await withClient((client) => client.query(
    `CREATE TABLE "${table}" (sid uuid NOT NULL PRIMARY KEY, sess json NOT NULL, expire timestamp(6) NOT NULL)`))
  const store = track(new PGStore({ conString: DATABASE_URL, tableName: table, createTableIfMissing: false, pruneSessionInterval: false }))
  const expireOf = (sid) => withClient(async (client) => {
    const { rows } = await client.query(`SELECT extract(epoch FROM expire)::float8 AS e FROM "${table}" WHERE sid = $1::uuid AND ${notTombstone()}`, [sid])
    return rows.length ? rows[0].e : null
  })
  const asStored = (ms) => withClient(async (client) => {
    const { rows } = await client.query('SELECT extract(epoch FROM to_timestamp($1::float8)::timestamp)::float8 AS e', [ms / 1000])
    return rows[0].e
  })

  // One call at a time.
  const one = crypto.randomUUID()
  assertOk(await within(store.set(one, sess(1)), 10000), 'set')
  assert.equal(assertOk(await within(store.get(one), 10000), 'get').n, 1)
  const later = Date.now() + 5 * HOUR
  assertOk(await within(store.touch(one, sess(1, later)), 10000), 'touch')
  assert.ok(Math.abs((await expireOf(one)) - (await asStored(later))) <= 1, 'touch did not move the expiry')
  assertOk(await within(store.destroy(one), 10000), 'destroy')
  assert.equal(await expireOf(one), null, 'destroy left the row')
  assert.equal(assertOk(await within(store.get(one), 10000), 'get after destroy'), null)

  // Many calls at once (the store may answer them with one statement).
  const many = Array.from({ length: 50 }, () => crypto.randomUUID())
  const sets = await Promise.all(many.map((sid, i) => within(store.set(sid, sess(i)), 10000)))
  sets.forEach((r) => assertOk(r, 'concurrent set'))
  const gets = await Promise.all(many.map((sid) => within(store.get(sid), 10000)))
  assert.deepEqual(gets.map((r) => assertOk(r, 'concurrent get').n), many.map((_, i) => i))
  const touches = await Promise.all(many.map((sid, i) => within(store.touch(sid, sess(i, later)), 10000)))
  touches.forEach((r) => assertOk(r, 'concurrent touch'))
  assert.ok(Math.abs((await expireOf(many[7])) - (await asStored(later))) <= 1, 'concurrent touches did not move the expiry')
  const destroys = await Promise.all(many.slice(0, 10).map((sid) => within(store.destroy(sid), 10000)))
  destroys.forEach((r) => assertOk(r, 'concurrent destroy'))

  // Expired rows are pruned, live ones stay.
  await withClient((client) => client.query(
    `INSERT INTO "${table}" SELECT gen_random_uuid(), '{"cookie":{}}', localtimestamp - interval '1 day' FROM generate_series(1, 25)`))
  const pruned = assertOk(await within(store.pruneSessions(), 20000), 'pruneSessions')
  const left = await withClient(async (client) => {
    const { rows } = await client.query(`SELECT count(*)::int AS n, count(*) FILTER (WHERE expire < localtimestamp)::int AS expired FROM "${table}" WHERE ${notTombstone()}`)
    return rows[0]
  })
  t.diagnostic(`uuid table: pruneSessions() resolved ${pruned}; ${left.n} rows left (${left.expired} expired)`)
  assert.deepEqual(left, { n: 40, expired: 0 })
})

/** Indexes of `table` whose only key column is `column`. */
async function indexesOn (table, column) {
  return withClient(async (client) => {
    const { rows } = await client.query(
      `SELECT c.relname AS name FROM pg_index i
         JOIN pg_class c ON c.oid = i.indexrelid
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
       WHERE i.indrelid = $1::regclass AND i.indnkeyatts = 1 AND a.attname = $2`, [`"${table}"`, column])
    return rows.map((r) => r.name)
  })
}

test('createTableIfMissing on two long table names whose index names share 63 bytes: both get an expiry index', { timeout: 60000 }, async (t) => {
  // "IDX_<table>_expire" is cut to 63 bytes: with 60-byte names differing in the last byte, the
  // default index names of the two tables are the same.
  const base = uniqueName('longname').padEnd(59, 'x')
  const names = [`${base}a`, `${base}b`]
  tables.push(...names)
  for (const tableName of names) {
    assert.equal(Buffer.byteLength(tableName), 60)
    const store = track(new PGStore({ conString: DATABASE_URL, tableName, createTableIfMissing: true, pruneSessionInterval: false }))
    assertOk(await within(store.set('a', sess(1)), 10000), `set on ${tableName}`)
    assert.equal(assertOk(await within(store.get('a'), 10000), `get on ${tableName}`).n, 1)
  }
  const found = await Promise.all(names.map((name) => indexesOn(name, 'expire')))
  t.diagnostic(`expiry indexes: ${names.map((n, i) => `…${n.slice(-6)}: ${found[i].join(', ') || 'none'}`).join('; ')}`)
  names.forEach((name, i) => assert.ok(found[i].length >= 1, `table ${name} has no index on its expiry column`))
})

test('a server out of connection slots (53300): the call fails with 53300, the store emits disconnect, then connect', { timeout: 60000 }, async (t) => {
  // reserved_connections (PostgreSQL 16+, 0 by default) is not named: 13–15 refuse to start on it.
  const server = await startServer({
    postgresFlags: ['-c', 'max_connections=5', '-c', 'superuser_reserved_connections=0'],
  })
  const hogs = []
  let store
  try {
    // Take every slot; the next connection is refused with 53300.
    let refused = null
    for (let i = 0; i < 20 && !refused; i++) {
      const client = new pg.Client({ connectionString: server.url })
      client.on('error', () => {})
      try {
        await client.connect()
        hogs.push(client)
      } catch (err) {
        refused = err
      }
    }
    assert.ok(refused, 'the server never ran out of connection slots')
    assert.equal(refused.code, '53300', `the extra connection failed with ${refused.code}: ${refused.message}`)

    store = track(new PGStore({
      conObject: { connectionString: server.url, connectionTimeoutMillis: 2000 },
      tableName: uniqueName('full'),
      createTableIfMissing: true,
      pruneSessionInterval: false,
      connectionEvents: true,
    }))
    const events = []
    store.on('disconnect', (err) => events.push({ event: 'disconnect', at: Date.now(), code: err && err.code }))
    store.on('connect', () => events.push({ event: 'connect', at: Date.now() }))
    const r = await within(store.get('a'), 10000)
    assert.ok(!r.hung, 'a call on a full server did not settle')
    assert.ok(r.err, 'a call on a full server succeeded')
    const sqlState = r.err.sqlState || r.err.code
    t.diagnostic(`call on a full server: ${r.err.code} (sqlState ${r.err.sqlState}) after ${r.ms} ms: ${r.err.message}`)
    assert.equal(sqlState, '53300', `failed with ${r.err.code}: ${r.err.message}`)
    const deadline = Date.now() + 3000
    while (!events.some((e) => e.event === 'disconnect') && Date.now() < deadline) await sleep(25)
    t.diagnostic(`events: ${JSON.stringify(events.map((e) => [e.event, e.code]))}`)
    assert.ok(events.some((e) => e.event === 'disconnect'), 'the store did not emit disconnect when the server had no slot left')

    // Slots free again: the store finds out by itself and says so.
    await Promise.all(hogs.splice(0).map((c) => c.end()))
    const freedAt = Date.now()
    while (!events.some((e) => e.event === 'connect') && Date.now() - freedAt < 5000) await sleep(25)
    const connect = events.find((e) => e.event === 'connect')
    t.diagnostic(`connect emitted ${connect ? connect.at - freedAt : '-'} ms after the slots were freed`)
    assert.ok(connect, 'the store did not emit connect within 5 s of slots being free')
    assertOk(await within(store.set('a', sess(1)), 10000), 'set after the slots were freed')
  } finally {
    await Promise.allSettled(hogs.map((c) => c.end()))
    if (store) await within(store.close(), 10000)
    await server.destroy()
  }
})

test('a char(32) sid column: each id keeps its own row', { timeout: 60000 }, async () => {
  const table = uniqueName('char')
  tables.push(table)
  await withClient((client) => client.query(
    `CREATE TABLE "${table}" (sid char(32) NOT NULL PRIMARY KEY, sess json NOT NULL, expire timestamp(6) NOT NULL)`))
  const store = track(new PGStore({ conString: DATABASE_URL, tableName: table, pruneSessionInterval: false }))
  const sids = ['alice-0123456789', 'aaron-0123456789', 'bob-0123456789']
  await Promise.all(sids.map((sid, i) => store.set(sid, sess(i))))
  await store.set('alice-0123456789', sess(10))
  const got = await Promise.all(sids.map((sid) => store.get(sid)))
  assert.deepEqual(got.map((s) => s && s.n), [10, 1, 2], 'a session read another id\'s data')
  await store.touch('aaron-0123456789', sess(1, Date.now() + 5 * HOUR))
  await store.destroy('bob-0123456789')
  const rows = await withClient(async (client) => (await client.query(`SELECT trim(sid) AS sid FROM "${table}" WHERE ${notTombstone()} ORDER BY 1`)).rows)
  assert.deepEqual(rows.map((r) => r.sid), ['aaron-0123456789', 'alice-0123456789'])
})

test('a uuid sid column and an id that is no uuid (a forged cookie): no session, not an error', { timeout: 60000 }, async () => {
  const table = uniqueName('uuidbad')
  tables.push(table)
  await withClient((client) => client.query(
    `CREATE TABLE "${table}" (sid uuid NOT NULL PRIMARY KEY, sess json NOT NULL, expire timestamp(6) NOT NULL)`))
  const store = track(new PGStore({ conString: DATABASE_URL, tableName: table, pruneSessionInterval: false }))
  const good = crypto.randomUUID()
  await store.set(good, sess(1))
  const results = await Promise.all([
    outcome(store.get('not-a-uuid')), outcome(store.get(good)),
    outcome(store.touch('not-a-uuid', sess(2))), outcome(store.destroy('not-a-uuid')),
  ])
  assert.deepEqual(results.map((r) => r.err && `${r.err.code}: ${r.err.message}`), [null, null, null, null])
  assert.equal(results[0].value, null)
  assert.equal(results[1].value.n, 1)
  const bad = await outcome(store.set('not-a-uuid', sess(3)))
  assert.equal(bad.err && bad.err.code, '22P02', 'storing an id the column cannot hold must fail with PostgreSQL\'s code')
})

test('a row whose data is NULL (written by hand) reads as no session, and the store carries on', { timeout: 60000 }, async () => {
  const table = uniqueName('nulldata')
  tables.push(table)
  await withClient((client) => client.query(
    `CREATE TABLE "${table}" (sid varchar PRIMARY KEY, sess json, expire timestamp(6) NOT NULL);
     INSERT INTO "${table}" VALUES ('null-1', NULL, now() + interval '1 day'), ('null-2', NULL, now() + interval '1 day')`))
  const store = track(new PGStore({ conString: DATABASE_URL, tableName: table, pruneSessionInterval: false }))
  await store.set('fine', sess(1))
  // Alone and in a batch with other gets.
  const lone = await within(store.get('null-1'), 5000)
  const batch = await Promise.all(['null-1', 'null-2', 'fine'].map((sid) => within(store.get(sid), 5000)))
  for (const r of [lone, ...batch]) assertOk(r, 'get')
  assert.equal(lone.value, null)
  assert.deepEqual(batch.map((r) => r.value && r.value.n), [null, null, 1])
  // The sessions are usable afterwards.
  assertOk(await within(store.set('null-1', sess(5)), 5000), 'set after a NULL row')
  assert.equal(assertOk(await within(store.get('null-1'), 5000), 'get').n, 5)
  const all = assertOk(await within(store.all(), 5000), 'all')
  assert.equal(all.length, 2)
})
