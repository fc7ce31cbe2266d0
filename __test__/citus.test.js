'use strict'

// The store on Citus tables distributed on the session id (`create_distributed_table`): batched
// get / set / touch (several sessions in one statement), destroy with tombstones,
// destroyUserSessions, pruneSessions() and the prune timer, createTableIfMissing's distribution,
// and the short lock wait on the workers: a row locked elsewhere must not hold up the unrelated
// sets of its burst. Needs CITUS_URL, a Citus coordinator (`.ci/run` starts a local cluster with
// ../shared/citus/start-cluster.sh); without it the file skips, saying why, unless CI is set.

const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { PGStore, uniqueName, withClient } = require('./helpers')
const { holdLock, within, sleep } = require('./fault-kit')

const CITUS_URL = process.env.CITUS_URL
if (!CITUS_URL && process.env.CI) {
  throw new Error('CITUS_URL is not set: under CI the Citus tests must run (.ci/run starts a cluster with ../shared/citus/start-cluster.sh)')
}
const skip = CITUS_URL ? false : 'CITUS_URL is not set (a Citus coordinator URL, e.g. from /work/shared/citus/start-cluster.sh; see docs/distributed.md): skipped'

const HOUR = 3600000
const tables = []
const stores = []

/** @param {(client: any) => Promise<any>} fn */
const onCitus = (fn) => withClient(fn, CITUS_URL)

before(async () => {
  if (skip) return
  // Unreachable or not Citus: fail here, with the reason, rather than in every test.
  const { rows } = await onCitus((c) => c.query("SELECT extversion FROM pg_extension WHERE extname = 'citus'"))
  assert.equal(rows.length, 1, `${CITUS_URL} has no citus extension`)
})

after(async () => {
  if (skip) return
  await Promise.allSettled(stores.map((s) => Promise.race([s.close(), sleep(10000)])))
  await onCitus(async (c) => {
    for (const table of tables) await c.query(`DROP TABLE IF EXISTS "${table}" CASCADE`)
  })
})

/** @param {Record<string, any>} options */
function storeOn (table, options = {}) {
  const store = new PGStore({ conString: CITUS_URL, tableName: table, pruneSessionInterval: false, ...options })
  stores.push(store)
  return store
}

/** A table made by hand and distributed on sid, as docs/distributed.md shows. */
async function distributedTable (expireType = 'timestamp(6)', shards = null) {
  const table = uniqueName('citus')
  tables.push(table)
  await onCitus(async (c) => {
    await c.query(`CREATE TABLE "${table}" (sid varchar NOT NULL COLLATE "default" PRIMARY KEY, sess json NOT NULL,
      expire ${expireType} NOT NULL, owner varchar NULL)`)
    await c.query(`CREATE INDEX ON "${table}" (expire)`)
    await c.query(`SELECT create_distributed_table('"${table}"', 'sid'${shards ? `, shard_count => ${shards}` : ''})`)
  })
  return table
}

/** How Citus holds `table`: its partition method ('h' hash) and column, or null. */
async function distribution (table) {
  const { rows } = await onCitus((c) => c.query(
    `SELECT partmethod, column_to_column_name(logicalrelid, partkey) AS col FROM pg_dist_partition
     WHERE logicalrelid = to_regclass($1)`, [`"${table}"`]))
  return rows[0] || null
}

/** How many shards `table` has. */
async function shardCount (table) {
  const { rows } = await onCitus((c) => c.query('SELECT count(*)::int AS n FROM pg_dist_shard WHERE logicalrelid = to_regclass($1)', [`"${table}"`]))
  return rows[0].n
}

const sess = (/** @type {any} */ n, user = 'u1', expiresMs = Date.now() + HOUR) =>
  ({ cookie: { expires: new Date(expiresMs).toISOString() }, n, passport: { user } })

test('createTableIfMissing on a Citus coordinator distributes the table on the session id, two shards per worker unless citus.shard_count is set; distributeTable: false keeps it local', { skip, timeout: 60000 }, async () => {
  const table = uniqueName('citus_made')
  tables.push(table)
  const store = storeOn(table, { createTableIfMissing: true, columns: { user_id: 'owner' } })
  await store.ready()
  assert.deepEqual(await distribution(table), { partmethod: 'h', col: 'sid' })
  await store.set('a', sess(1))
  assert.equal((await store.get('a')).n, 1)
  // Two shards per worker node, unless citus.shard_count is set (here for the connection).
  const { rows: [{ n: nodes, source, count }] } = await onCitus((c) => c.query(`SELECT count(*)::int AS n,
    (SELECT source FROM pg_settings WHERE name = 'citus.shard_count'), current_setting('citus.shard_count')::int AS count
    FROM pg_dist_node WHERE noderole = 'primary' AND isactive AND shouldhaveshards`))
  assert.equal(await shardCount(table), source === 'default' ? 2 * nodes : count)
  const counted = uniqueName('citus_counted')
  tables.push(counted)
  const withCount = new URL(CITUS_URL)
  withCount.searchParams.set('options', '-c citus.shard_count=6')
  await storeOn(counted, { createTableIfMissing: true, conString: withCount.toString() }).ready()
  assert.equal(await shardCount(counted), 6)
  // Two stores creating the same table at once: one distributes it, neither fails.
  const shared = uniqueName('citus_race')
  tables.push(shared)
  await Promise.all([storeOn(shared, { createTableIfMissing: true }).ready(), storeOn(shared, { createTableIfMissing: true }).ready()])
  assert.equal((await distribution(shared)).partmethod, 'h')
  const local = uniqueName('citus_local')
  tables.push(local)
  await storeOn(local, { createTableIfMissing: true, distributeTable: false }).ready()
  assert.equal(await distribution(local), null)
})

for (const expireType of ['timestamp(6)', 'timestamptz']) {
  test(`${expireType}: batched get, set and touch, destroy with tombstones, destroyUserSessions`, { skip, timeout: 60000 }, async () => {
    const table = await distributedTable(expireType)
    const store = storeOn(table, { columns: { user_id: 'owner' } })
    const ids = Array.from({ length: 40 }, (_, i) => `s${i}`)
    // One tick each: the calls go as batches of several sessions.
    await Promise.all(ids.map((id, i) => store.set(id, sess(i, i % 2 ? 'odd' : 'even'))))
    const got = await Promise.all(ids.map((id) => store.get(id)))
    assert.deepEqual(got.map((s) => s.n), ids.map((_, i) => i))
    const later = Date.UTC(2031, 0, 2, 3, 4, 5, 678)
    await Promise.all(ids.map((id, i) => store.touch(id, sess(i, 'x', later))))
    const { rows } = await onCitus((c) => c.query(
      `SELECT count(*)::int AS n FROM "${table}" WHERE expire = to_timestamp($1::float8)`, [later / 1000]))
    assert.equal(rows[0].n, ids.length, 'every touch of the batch wrote the expiry')

    await Promise.all([store.destroy('s0'), store.destroy('s1'), store.destroy('s2')])
    assert.equal(await store.get('s0'), null)
    // A late set of a destroyed id does not bring it back (the tombstone's guard).
    await Promise.all([store.set('s0', sess(100)), store.set('s1', sess(101))])
    assert.equal(await store.get('s0'), null)
    assert.equal(await store.get('s1'), null)
    assert.equal(await store.length(), ids.length - 3)

    const listed = await store.listUserSessions('odd')
    assert.equal(listed.length, 19) // s1 of the 20 odd ones was destroyed
    const destroyed = await store.destroyUserSessions('odd', { except: 's3' })
    assert.equal(destroyed, 18)
    assert.deepEqual((await store.listUserSessions('odd')).map((s) => s.sid), ['s3'])
    assert.equal(await store.get('s5'), null)
    await store.set('s5', sess(5, 'odd'))
    assert.equal(await store.get('s5'), null, 'a session destroyed by user stays destroyed')
    assert.equal((await store.get('s4')).n, 4)
  })
}

test('batched sets of every size, past 64 rows per shard, store each caller\'s own data (multi-row VALUES, one size per group)', { skip, timeout: 60000 }, async () => {
  const table = await distributedTable('timestamp(6)', 2)
  const store = storeOn(table)
  // Rounds of 1 … 12 sets, then 150 and 300 at once: groups of every size up to 64 per shard and
  // groups split into near-equal chunks.
  const rounds = [...Array.from({ length: 12 }, (_, i) => i + 1), 150, 300]
  let base = 0
  for (const count of rounds) {
    const ids = Array.from({ length: count }, (_, i) => `r${base + i}`)
    await Promise.all(ids.map((id, i) => store.set(id, sess(base + i))))
    base += count
  }
  const { rows } = await onCitus((c) => c.query(`SELECT sid, sess FROM "${table}"`))
  assert.equal(rows.length, base)
  for (const row of rows) assert.equal(row.sess.n, Number(row.sid.slice(1)), row.sid)
})

test('batched gets across many shards (a statement per shard) answer each caller with its own session: live, expired, missing, destroyed', { skip, timeout: 60000 }, async () => {
  const table = await distributedTable('timestamp(6)')
  const store = storeOn(table)
  const live = Array.from({ length: 60 }, (_, i) => `live-${i}`)
  const expired = Array.from({ length: 15 }, (_, i) => `expired-${i}`)
  const missing = Array.from({ length: 15 }, (_, i) => `missing-${i}`)
  const destroyed = Array.from({ length: 5 }, (_, i) => `destroyed-${i}`)
  await Promise.all([...live, ...destroyed].map((id, i) => store.set(id, sess(i))))
  await Promise.all(destroyed.map((id) => store.destroy(id)))
  await onCitus((c) => c.query(
    `INSERT INTO "${table}" (sid, sess, expire) SELECT id, '{"n": -1}', localtimestamp - interval '1 hour'
     FROM unnest($1::text[]) id`, [expired]))
  // The ids asked land in many shards: some alone in theirs (the single-row get), some with
  // others (one = ANY per shard); so both forms of the per-shard path run.
  const asked = [...live, ...expired, ...missing, ...destroyed, ...live.slice(0, 5)].sort(() => Math.random() - 0.5)
  const { rows } = await onCitus((c) => c.query(
    `SELECT get_shard_id_for_distribution_column($1, id) AS shard, count(*)::int AS n
     FROM unnest($2::text[]) id GROUP BY 1`, [`"${table}"`, [...new Set(asked)]]))
  assert.ok(rows.length >= 16, `the ids land in ${rows.length} shards`)
  assert.ok(rows.some((r) => r.n === 1) && rows.some((r) => r.n > 1), 'shards with one id and with several')
  for (let round = 0; round < 3; round++) {
    // One tick: one batch of gets.
    const got = await Promise.all(asked.map((id) => store.get(id)))
    asked.forEach((id, k) => {
      if (id.startsWith('live-')) assert.deepEqual(got[k] && got[k].n, Number(id.slice(5)), `${id} gets its own session`)
      else assert.equal(got[k], null, `${id} is no session`)
    })
  }
})

test('the touch batch writes the value the single-row form writes, in the session time zone', { skip, timeout: 60000 }, async () => {
  const table = await distributedTable('timestamp(6)')
  const zone = 'America/New_York'
  const url = `${CITUS_URL}${CITUS_URL.includes('?') ? '&' : '?'}options=${encodeURIComponent(`-c TimeZone=${zone}`)}`
  const store = new PGStore({ conString: url, tableName: table, pruneSessionInterval: false })
  stores.push(store)
  const at = Date.UTC(2030, 6, 1, 12, 0, 0, 250)
  await store.set('one', sess(1))
  await Promise.all([store.set('a', sess(1)), store.set('b', sess(2))])
  await store.touch('one', sess(1, 'u1', at)) // alone: the single-row statement
  await Promise.all([store.touch('a', sess(1, 'u1', at)), store.touch('b', sess(2, 'u1', at))]) // a batch
  const { rows } = await onCitus((c) => c.query(`SELECT sid, expire::text AS e FROM "${table}" ORDER BY sid`))
  const local = await onCitus(async (c) => {
    await c.query(`SET TimeZone = '${zone}'`)
    return (await c.query('SELECT to_timestamp($1::float8)::timestamp::text AS e', [at / 1000])).rows[0].e
  })
  assert.deepEqual(rows, [{ sid: 'a', e: local }, { sid: 'b', e: local }, { sid: 'one', e: local }])
})

test('pruneSessions() and the prune timer delete expired sessions and ended tombstones, and keep live tombstones', { skip, timeout: 60000 }, async () => {
  for (const timer of [false, true]) {
    const table = await distributedTable()
    await onCitus((c) => c.query(`INSERT INTO "${table}" (sid, sess, expire)
      SELECT 'live-' || i, '{}'::json, localtimestamp + interval '1 day' FROM generate_series(1, 300) i
      UNION ALL SELECT 'old-' || i, '{}', localtimestamp - interval '1 day' FROM generate_series(1, 300) i
      UNION ALL SELECT 'tomb-live-' || i, '{}', localtimestamp - interval '1000 years' + interval '1 day' FROM generate_series(1, 50) i
      UNION ALL SELECT 'tomb-ended-' || i, '{}', localtimestamp - interval '1000 years' - interval '1 day' FROM generate_series(1, 50) i`))
    const options = timer ? { pruneSessionInterval: 0.2, pruneSessionRandomizedInterval: false, errorLog: (/** @type {any} */ e) => { throw e } } : {}
    const store = storeOn(table, { pruneBatchSize: 100, ...options })
    if (timer) {
      await store.ready()
      for (let i = 0; i < 100; i++) {
        const { rows } = await onCitus((c) => c.query(`SELECT count(*)::int AS n FROM "${table}" WHERE sid LIKE 'old-%' OR sid LIKE 'tomb-ended-%'`))
        if (rows[0].n === 0) break
        await sleep(100)
      }
    } else {
      assert.equal(await store.pruneSessions(), 350)
    }
    const { rows } = await onCitus((c) => c.query(
      `SELECT split_part(sid, '-', 1) || CASE WHEN sid LIKE 'tomb-%' THEN '-' || split_part(sid, '-', 2) ELSE '' END AS kind,
        count(*)::int AS n FROM "${table}" GROUP BY 1 ORDER BY 1`))
    assert.deepEqual(rows, [{ kind: 'live', n: 300 }, { kind: 'tomb-live', n: 50 }], timer ? 'prune timer' : 'pruneSessions()')
    await store.close()
  }
})

test('a row locked elsewhere for 12 s does not hold up 100 unrelated sets: they finish within 1 s', { skip, timeout: 60000 }, async (t) => {
  const table = await distributedTable()
  const store = storeOn(table, { queryTimeout: 20000 })
  await store.set('locked', sess(0))
  await Promise.all(Array.from({ length: 100 }, (_, i) => store.set(`free-${i}`, sess(i))))
  const lock = await holdLock(CITUS_URL, `SELECT sid FROM "${table}" WHERE sid = 'locked' FOR UPDATE`)
  const releaseAt = setTimeout(() => lock.release(), 12000)
  try {
    const started = Date.now()
    const lockedSet = store.set('locked', sess(1))
    const others = Array.from({ length: 100 }, (_, i) => store.set(`free-${i}`, sess(1000 + i)))
    const done = await within(Promise.all(others), 1000)
    const ms = Date.now() - started
    assert.ok(!done.hung && !done.err, `the 100 unrelated sets ${done.hung ? 'did not finish within 1 s' : `failed: ${done.err}`}`)
    t.diagnostic(`100 unrelated sets beside a row locked for 12 s: ${ms} ms`)
    const free = await store.get('free-7')
    assert.equal(free.n, 1007)
    // The locked session's own set waits for the lock, then lands.
    const locked = await within(lockedSet, 20000)
    assert.ok(!locked.hung && !locked.err, `the locked session's set: ${locked.hung ? 'hung' : locked.err}`)
    assert.ok(Date.now() - started >= 11000, 'the locked set waited for the lock')
    assert.equal((await store.get('locked')).n, 1)
  } finally {
    clearTimeout(releaseAt)
    await lock.release()
  }
})

test('devices: created_at, last_seen, extra columns and maxLifetime on a distributed table (batched sets and touches, list, prune)', { skip, timeout: 60000 }, async () => {
  const table = uniqueName('citus_devices')
  tables.push(table)
  const store = storeOn(table, {
    createTableIfMissing: true,
    touchAfter: 0,
    columns: { user_id: 'owner', created_at: 'created_at', last_seen: 'last_seen' },
    userId: (/** @type {any} */ s) => s.user,
    extraColumns: { user_agent: (/** @type {any} */ s) => s.ua, logins: (/** @type {any} */ s) => s.n },
    maxLifetime: 2500,
  })
  const device = (/** @type {number} */ i, extra = {}) => ({ ...sess(i), user: 'u1', ua: `agent-${i}`, ...extra })
  // Concurrent sets share multi-row statements (Citus's per-shard VALUES form).
  await Promise.all(Array.from({ length: 12 }, (_, i) => store.set(`dev-${i}`, device(i))))
  const distributed = await onCitus((c) => c.query('SELECT 1 FROM pg_dist_partition WHERE logicalrelid = $1::regclass', [table]))
  assert.equal(distributed.rowCount, 1, 'createTableIfMissing distributed the table')
  const first = await store.listUserSessions('u1')
  assert.equal(first.length, 12)
  assert.deepEqual(first.map((r) => r.extra.user_agent).sort(), Array.from({ length: 12 }, (_, i) => `agent-${i}`).sort())
  assert.ok(first.every((r) => r.createdAt instanceof Date && r.lastSeen instanceof Date))
  await sleep(200)
  // Concurrent touches (batched) move last_seen; a second set keeps created_at.
  await Promise.all(Array.from({ length: 6 }, (_, i) => store.touch(`dev-${i}`, sess(i))))
  await store.set('dev-11', device(11, { ua: 'agent-11b' }))
  const later = new Map((await store.listUserSessions('u1')).map((r) => [r.sid, r]))
  const before = new Map(first.map((r) => [r.sid, r]))
  for (const i of [0, 5, 11]) {
    assert.ok(later.get(`dev-${i}`).lastSeen > before.get(`dev-${i}`).lastSeen, `dev-${i}'s last_seen moved`)
    assert.equal(later.get(`dev-${i}`).createdAt.getTime(), before.get(`dev-${i}`).createdAt.getTime())
  }
  assert.equal(later.get('dev-11').extra.user_agent, 'agent-11b')
  assert.equal(later.get('dev-8').lastSeen.getTime(), before.get('dev-8').lastSeen.getTime())
  assert.equal(await store.destroyUserSessions('u1', { except: 'dev-0' }), 11)
  assert.deepEqual((await store.listUserSessions('u1')).map((r) => r.sid), ['dev-0'])
  // Past maxLifetime: missing whatever its touches did; prune turns it into a tombstone.
  await store.set('dev-aged', device(99))
  await sleep(2600)
  await store.touch('dev-aged', sess(99))
  assert.equal(await store.get('dev-aged'), null)
  assert.ok(await store.pruneSessions() >= 2)
  const { rows } = await onCitus((c) => c.query(`SELECT user_agent, owner, created_at, expire < '1900-01-01' AS tomb FROM "${table}" WHERE sid = 'dev-aged'`))
  assert.deepEqual(rows, [{ user_agent: null, owner: null, created_at: null, tomb: true }])
  await store.set('dev-aged', device(100))
  assert.equal(await store.get('dev-aged'), null, 'a late write does not bring an aged session back')
})

/** The worker nodes (`host:port`, as the cluster names them) and a URL for each, as `role`. */
async function workers (role = 'postgres') {
  const { rows } = await onCitus((c) => c.query('SELECT nodename, nodeport FROM pg_dist_node WHERE groupid <> 0 ORDER BY nodeport'))
  return rows.map((r) => {
    const url = new URL(CITUS_URL)
    url.hostname = r.nodename
    url.port = String(r.nodeport)
    url.username = role
    return { address: `${r.nodename}:${r.nodeport}`, url: url.toString() }
  })
}

/** Whether a connection of the store's own (`appName`) on `node` last ran a session's statement (not
 * the node's probe), started after `since` (ms since the epoch). */
async function ranOn (node, appName, since) {
  const { rows } = await withClient((c) => c.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1
    AND query NOT LIKE '%pg_dist_local_group%' AND query_start > to_timestamp($2 / 1000.0)`, [appName, since]), node.url)
  return rows[0].n > 0
}

/** Polls `check` every 50 ms until it is true, at most `ms`. */
async function until (check, ms) {
  for (const end = Date.now() + ms; !check() && Date.now() < end;) await sleep(50)
  return check()
}

test('each shard\'s statements go to the worker node holding it; a node that cannot serve the table is left out (at the start or later) and its sessions go through the coordinator', { skip, timeout: 60000 }, async () => {
  const table = await distributedTable('timestamp(6)', 4)
  const role = uniqueName('citus_role')
  const appName = uniqueName('citus_app')
  await onCitus(async (c) => {
    await c.query(`CREATE ROLE "${role}" LOGIN`)
    await c.query(`GRANT ALL ON "${table}" TO "${role}"`)
  })
  const [open, shut] = await workers()
  /** Takes the role's grant back on one node's own table (its shards keep theirs, so the coordinator still serves them). */
  const revokeOn = (node) => withClient(async (c) => {
    await c.query('SET citus.enable_ddl_propagation TO off')
    await c.query(`REVOKE ALL ON "${table}" FROM "${role}"`)
  }, node.url)
  await revokeOn(shut)
  const url = new URL(CITUS_URL)
  url.username = role
  url.searchParams.set('application_name', appName)
  const store = storeOn(table, { conString: url.toString() })
  try {
    await store.set('warm', sess(0))
    const inUse = () => Object.fromEntries(store.stats().nodes.map((n) => [n.address, n.inUse]))
    assert.ok(await until(() => inUse()[open.address] === true, 5000), `the node the role may use is in use: ${JSON.stringify(store.stats().nodes)}`)
    assert.deepEqual(inUse(), { [open.address]: true, [shut.address]: false })

    const ids = Array.from({ length: 200 }, (_, i) => `route-${i}`)
    const roundTrip = async (base) => {
      await Promise.all(ids.map((id, i) => store.set(id, sess(base + i))))
      const got = await Promise.all(ids.map((id) => store.get(id)))
      got.forEach((s, i) => assert.equal(s && s.n, base + i, ids[i]))
      const { rows } = await onCitus((c) => c.query(`SELECT count(*)::int AS n FROM "${table}" WHERE sid LIKE 'route-%' AND (sess->>'n')::int >= $1`, [base]))
      assert.equal(rows[0].n, ids.length)
    }
    await roundTrip(1000)
    // The store's own connections (its application_name) on the node in use ran sessions' statements there.
    assert.ok(await ranOn(open, appName, 0), 'sessions\' statements ran on the node in use')

    // The node in use stops serving the table: the statements it refuses go through the
    // coordinator, no call fails, and the node is left out.
    await revokeOn(open)
    await roundTrip(2000)
    assert.deepEqual(inUse(), { [open.address]: false, [shut.address]: false })
    assert.deepEqual(store.stats().errors, {})
  } finally {
    await store.close()
    await onCitus(async (c) => {
      await c.query(`DROP OWNED BY "${role}"`)
      await c.query(`DROP ROLE "${role}"`)
    })
  }
})

test('routeToNodes: false sends every statement through the coordinator', { skip, timeout: 60000 }, async () => {
  const table = await distributedTable('timestamp(6)', 4)
  const appName = uniqueName('citus_app')
  const url = new URL(CITUS_URL)
  url.searchParams.set('application_name', appName)
  const store = storeOn(table, { conString: url.toString(), routeToNodes: false })
  await Promise.all(Array.from({ length: 50 }, (_, i) => store.set(`coord-${i}`, sess(i))))
  // Time for nodes to be probed and taken into use, were they started.
  await sleep(300)
  await Promise.all(Array.from({ length: 50 }, (_, i) => store.set(`coord-${i}`, sess(100 + i))))
  assert.equal((await store.get('coord-7')).n, 107)
  assert.deepEqual(store.stats().nodes, [])
  for (const node of await workers()) {
    const { rows } = await withClient((c) => c.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', [appName]), node.url)
    assert.equal(rows[0].n, 0, `no connection of the store's own on ${node.address}`)
  }
})

test('a shard moved to another node after the store looked it up is still served, through the node it was on', { skip, timeout: 60000 }, async () => {
  const table = await distributedTable('timestamp(6)', 2)
  const appName = uniqueName('citus_app')
  const url = new URL(CITUS_URL)
  url.searchParams.set('application_name', appName)
  const store = storeOn(table, { conString: url.toString() })
  await store.set('warm', sess(0))
  assert.ok(await until(() => store.stats().nodes.length === 2 && store.stats().nodes.every((n) => n.inUse), 5000), `both nodes in use: ${JSON.stringify(store.stats().nodes)}`)
  const ids = Array.from({ length: 100 }, (_, i) => `moved-${i}`)
  /** @type {any} */
  let movedFrom
  await Promise.all(ids.map((id, i) => store.set(id, sess(i))))
  // Both shards onto one node (block_writes: no logical replication needed).
  await onCitus(async (c) => {
    const { rows } = await c.query(`SELECT s.shardid, n.nodename, n.nodeport FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid)
      JOIN pg_dist_node n ON n.groupid = p.groupid WHERE s.logicalrelid = $1::regclass ORDER BY n.nodeport`, [`"${table}"`])
    assert.equal(new Set(rows.map((r) => `${r.nodename}:${r.nodeport}`)).size, 2, 'one shard per node before the move')
    const [from, to] = rows
    await c.query("SELECT citus_move_shard_placement($1, $2, $3, $4, $5, shard_transfer_mode => 'block_writes')",
      [from.shardid, from.nodename, from.nodeport, to.nodename, to.nodeport])
    movedFrom = (await workers()).find((w) => w.address === `${from.nodename}:${from.nodeport}`)
  })
  const moved = Date.now()
  await Promise.all(ids.map((id, i) => store.set(id, sess(1000 + i))))
  // The node that no longer holds any shard still got the moved shard's sessions, and passed them on.
  assert.ok(await ranOn(movedFrom, appName, moved), 'statements went to the node the shard was on')
  const got = await Promise.all(ids.map((id) => store.get(id)))
  got.forEach((s, i) => assert.equal(s && s.n, 1000 + i, ids[i]))
  await Promise.all(ids.slice(0, 50).map((id) => store.destroy(id)))
  const { rows } = await onCitus((c) => c.query(`SELECT count(*)::int AS n FROM "${table}" WHERE sid LIKE 'moved-%' AND expire > '1900-01-01'`))
  assert.equal(rows[0].n, 50)
  assert.deepEqual(store.stats().errors, {})
  assert.ok(store.stats().nodes.every((n) => n.inUse))
})
