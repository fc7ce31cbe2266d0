'use strict'

// Pruning never deletes a live row, whatever the table's shape: plain, partitioned by hash of the
// sid, by range of the expiry, by list of another column, and a parent with an inheriting child
// (row ids, ctid, repeat across partitions and children). 2,000 live and 2,000 expired rows are
// written with SQL; pruneSessions() in batches of 500 must delete exactly the expired ones.

const { test, after } = require('node:test')
const assert = require('node:assert/strict')
const { PGStore, DATABASE_URL, uniqueName, withClient } = require('./helpers')
const { within } = require('./fault-kit')

const LIVE = 2000
const EXPIRED = 2000
const BATCH = 500
const tables = []

after(async () => {
  await withClient(async (client) => {
    for (const table of tables) await client.query(`DROP TABLE IF EXISTS "${table}" CASCADE`)
  })
})

const COLUMNS = 'sid varchar NOT NULL, sess json NOT NULL, expire timestamp(6) NOT NULL'

/**
 * Rows for `table`: `live-<i>` expiring in a day and `old-<i>` expired a day ago, interleaved.
 * `extra` is SQL (over `i`) for the values of `extraColumns`.
 */
function insertRows (table, { extraColumns = '', extra = '' } = {}) {
  const cols = `sid, sess, expire${extraColumns ? `, ${extraColumns}` : ''}`
  const more = extra ? `, ${extra}` : ''
  return `INSERT INTO "${table}" (${cols})
    SELECT sid, sess, expire${more} FROM (
      SELECT i, 'live-' || i AS sid, json_build_object('cookie', json_build_object(), 'n', i) AS sess,
             localtimestamp + interval '1 day' AS expire, 0 AS k FROM generate_series(1, ${LIVE}) i
      UNION ALL
      SELECT i, 'old-' || i, json_build_object('cookie', json_build_object(), 'n', i),
             localtimestamp - interval '1 day', 1 FROM generate_series(1, ${EXPIRED}) i
    ) v ORDER BY i, k`
}

/**
 * Creates a table with `setup(client, table)`, prunes it with a store, and counts what is left.
 * @param {string} label
 * @param {(client: any, table: string) => Promise<void>} setup
 */
async function pruneShape (label, setup) {
  const table = uniqueName(`prune_${label}`)
  tables.push(table)
  await withClient((client) => setup(client, table))
  const before = await counts(table)
  assert.deepEqual(before, { live: LIVE, expired: EXPIRED }, `${label}: the table was not filled as planned`)
  const store = new PGStore({
    conString: DATABASE_URL,
    tableName: table,
    createTableIfMissing: false,
    pruneSessionInterval: false,
    pruneBatchSize: BATCH,
  })
  try {
    const r = await within(store.pruneSessions(), 30000)
    assert.ok(!r.hung, `${label}: pruneSessions() did not finish in 30 s`)
    if (r.err) assert.fail(`${label}: pruneSessions() failed: ${r.err.code}: ${r.err.message}`)
    return { label, deleted: r.value, ms: r.ms, ...(await counts(table)) }
  } finally {
    await within(store.close(), 10000)
  }
}

/** Live and expired rows left in `table` (its partitions and children included). */
async function counts (table) {
  return withClient(async (client) => {
    const { rows } = await client.query(`SELECT
        count(*) FILTER (WHERE sid LIKE 'live-%')::int AS live,
        count(*) FILTER (WHERE sid LIKE 'old-%')::int AS expired
      FROM "${table}"`)
    return rows[0]
  })
}

function check (t, result) {
  t.diagnostic(`${result.label}: pruneSessions() resolved ${result.deleted} after ${result.ms} ms; ` +
    `left ${result.live}/${LIVE} live and ${result.expired}/${EXPIRED} expired rows`)
  assert.equal(LIVE - result.live, 0, `${result.label}: prune deleted ${LIVE - result.live} live rows`)
  assert.equal(result.expired, 0, `${result.label}: ${result.expired} expired rows were not pruned`)
  assert.equal(result.deleted, EXPIRED, `${result.label}: pruneSessions() resolved ${result.deleted}, not the ${EXPIRED} rows it deleted`)
}

test('hash-partitioned table (4 partitions, and a plain table as the control): prune deletes exactly the expired rows', { timeout: 60000 }, async (t) => {
  const plain = await pruneShape('plain', async (client, table) => {
    await client.query(`CREATE TABLE "${table}" (${COLUMNS}, PRIMARY KEY (sid))`)
    await client.query(`CREATE INDEX ON "${table}" (expire)`)
    await client.query(insertRows(table))
  })
  const hash = await pruneShape('hash', async (client, table) => {
    await client.query(`CREATE TABLE "${table}" (${COLUMNS}, PRIMARY KEY (sid)) PARTITION BY HASH (sid)`)
    for (let r = 0; r < 4; r++) {
      await client.query(`CREATE TABLE "${table}_p${r}" PARTITION OF "${table}" FOR VALUES WITH (MODULUS 4, REMAINDER ${r})`)
    }
    await client.query(`CREATE INDEX ON "${table}" (expire)`)
    await client.query(insertRows(table))
  })
  check(t, plain)
  check(t, hash)
})

test('range-partitioned table on the expiry (past and future partitions): prune deletes exactly the expired rows', { timeout: 60000 }, async (t) => {
  const range = await pruneShape('range', async (client, table) => {
    const { rows } = await client.query('SELECT localtimestamp::text AS now')
    const now = rows[0].now
    await client.query(`CREATE TABLE "${table}" (${COLUMNS}, PRIMARY KEY (sid, expire)) PARTITION BY RANGE (expire)`)
    await client.query(`CREATE TABLE "${table}_past" PARTITION OF "${table}" FOR VALUES FROM (MINVALUE) TO ('${now}')`)
    await client.query(`CREATE TABLE "${table}_future" PARTITION OF "${table}" FOR VALUES FROM ('${now}') TO (MAXVALUE)`)
    await client.query(`CREATE INDEX ON "${table}" (expire)`)
    await client.query(insertRows(table))
  })
  check(t, range)
})

test('list-partitioned table on a region column: prune deletes exactly the expired rows', { timeout: 60000 }, async (t) => {
  const list = await pruneShape('list', async (client, table) => {
    await client.query(`CREATE TABLE "${table}" (${COLUMNS}, region text NOT NULL, PRIMARY KEY (sid, region)) PARTITION BY LIST (region)`)
    await client.query(`CREATE TABLE "${table}_eu" PARTITION OF "${table}" FOR VALUES IN ('eu')`)
    await client.query(`CREATE TABLE "${table}_us" PARTITION OF "${table}" FOR VALUES IN ('us')`)
    await client.query(`CREATE INDEX ON "${table}" (expire)`)
    await client.query(insertRows(table, { extraColumns: 'region', extra: "CASE WHEN hashtext(sid) & 1 = 0 THEN 'eu' ELSE 'us' END" }))
  })
  check(t, list)
})

test('a parent table with an inheriting child holding half the rows: prune deletes exactly the expired rows', { timeout: 60000 }, async (t) => {
  const inherited = await pruneShape('inherit', async (client, table) => {
    await client.query(`CREATE TABLE "${table}" (${COLUMNS}, PRIMARY KEY (sid))`)
    await client.query(`CREATE INDEX ON "${table}" (expire)`)
    await client.query(`CREATE TABLE "${table}_child" (PRIMARY KEY (sid)) INHERITS ("${table}")`)
    await client.query(`CREATE INDEX ON "${table}_child" (expire)`)
    // Fill the parent, then move every other row (live and expired alike) to the child.
    await client.query(insertRows(table))
    await client.query(`WITH moved AS (
        DELETE FROM ONLY "${table}" WHERE substring(sid FROM '[0-9]+$')::int % 2 = 0 RETURNING *
      ) INSERT INTO "${table}_child" SELECT * FROM moved`)
    const { rows } = await client.query(`SELECT count(*)::int AS n FROM ONLY "${table}_child"`)
    assert.equal(rows[0].n, (LIVE + EXPIRED) / 2, 'the child does not hold half the rows')
  })
  check(t, inherited)
})
