'use strict'

// Read replicas on a real streaming standby (its own primary + standby pair, not DATABASE_URL):
// reads are answered by the standby, a miss there is retried on the primary, writes go to the
// primary, and an unreachable replica falls back to the primary.

const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { PGStore, uniqueName, withClient, notTombstone } = require('./helpers')
const { startReplicaPair } = require('./replica-pair')
const { freePort } = require('./pg-server')

const REPLAY_WAIT_MS = 30000

/** @type {Awaited<ReturnType<typeof startReplicaPair>>} */
let pair
const tableName = uniqueName('replica')
/** @type {any[]} */
const stores = []

function cookie () {
  return { cookie: { originalMaxAge: 3600000, expires: new Date(Date.now() + 3600000).toISOString() } }
}

/** @param {Record<string, any>} options */
function storeOn (options) {
  const store = new PGStore({ conString: pair.primaryUrl, tableName, pruneSessionInterval: false, ...options })
  stores.push(store)
  return store
}

/** Waits (bounded) until the standby has replayed everything the primary has written so far. */
async function waitForReplay () {
  const target = await withClient((c) => c.query('SELECT pg_current_wal_lsn()::text AS lsn'), pair.primaryUrl)
  const lsn = target.rows[0].lsn
  const deadline = Date.now() + REPLAY_WAIT_MS
  await withClient(async (c) => {
    for (;;) {
      const { rows } = await c.query('SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS done', [lsn])
      if (rows[0].done) return
      if (Date.now() > deadline) throw new Error(`the standby did not replay up to ${lsn}`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }, pair.standbyUrl)
}

/** @param {'pause' | 'resume'} action */
async function replay (action) {
  await withClient(async (c) => {
    await c.query(action === 'pause' ? 'SELECT pg_wal_replay_pause()' : 'SELECT pg_wal_replay_resume()')
    if (action === 'resume') return
    // Pausing is a request; replay stops at the next record boundary.
    for (;;) {
      const { rows } = await c.query('SELECT pg_get_wal_replay_pause_state() AS state')
      if (rows[0].state === 'paused') return
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }, pair.standbyUrl)
}

/** @param {string} url @param {string} sid */
async function rowCount (url, sid) {
  const { rows } = await withClient((c) => c.query(`SELECT count(*)::int AS n FROM ${tableName} WHERE sid = $1 AND ${notTombstone()}`, [sid]), url)
  return rows[0].n
}

before(async () => {
  pair = await startReplicaPair()
  // The table is made through the store on the primary and must reach the standby before reads.
  const setup = storeOn({ createTableIfMissing: true })
  await setup.length()
  await waitForReplay()
})

after(async () => {
  for (const store of stores) await store.close().catch(() => {})
  if (pair) await pair.destroy()
})

test('the standby is a real hot standby that refuses writes', async (t) => {
  t.diagnostic(`standby made by ${pair.method}`)
  const inRecovery = await withClient((c) => c.query('SELECT pg_is_in_recovery() AS r'), pair.standbyUrl)
  assert.equal(inRecovery.rows[0].r, true, `standby made by ${pair.method}`)
  await assert.rejects(
    withClient((c) => c.query(`INSERT INTO ${tableName} VALUES ('x', '{}', now())`), pair.standbyUrl),
    { code: '25006' }
  )
})

test('get, all, ids and length are answered by the replica', async () => {
  const store = storeOn({ replicas: [pair.standbyUrl] })
  const sid = uniqueName('sid')
  await store.set(sid, { ...cookie(), version: 1 })
  await waitForReplay()
  await replay('pause')
  try {
    // Change the primary behind the standby's back: what the store reads now shows where it read.
    const other = uniqueName('sid')
    await withClient(async (c) => {
      await c.query(`UPDATE ${tableName} SET sess = jsonb_set(sess::jsonb, '{version}', '2')::json WHERE sid = $1`, [sid])
      await c.query(`INSERT INTO ${tableName} (sid, sess, expire) VALUES ($1, $2, now() + interval '1 hour')`, [other, JSON.stringify(cookie())])
    }, pair.primaryUrl)
    assert.equal(await rowCount(pair.primaryUrl, other), 1)
    assert.equal(await rowCount(pair.standbyUrl, other), 0)

    const stale = await store.get(sid)
    assert.equal(stale.version, 1, 'get read the replica, which has not replayed version 2')
    assert.deepEqual((await store.ids()).sort(), [sid])
    assert.equal(await store.length(), 1)
    const all = await store.all()
    assert.equal(all.length, 1)
    assert.equal(all[0].version, 1)

    const stats = store.stats()
    assert.equal(stats.replicas.length, 1)
    assert.ok(stats.replicas[0].size >= 1, 'the replica pool opened a connection')
  } finally {
    await replay('resume')
  }
  await waitForReplay()
  assert.equal((await store.get(sid)).version, 2, 'after replay the replica has the update')
  assert.equal(await store.length(), 2)
})

test('a get that misses on the replica is retried on the primary; writes go to the primary', async () => {
  const store = storeOn({ replicas: [pair.standbyUrl] })
  await replay('pause')
  try {
    const sid = uniqueName('sid')
    // A write on the standby would fail with 25006 (read-only transaction): this one must not.
    await store.set(sid, { ...cookie(), fresh: true })
    assert.equal(await rowCount(pair.primaryUrl, sid), 1)
    assert.equal(await rowCount(pair.standbyUrl, sid), 0, 'replay is paused: the standby has not seen it')
    const sess = await store.get(sid)
    assert.equal(sess.fresh, true, 'the just-created session was read from the primary')

    await store.touch(sid, { cookie: { expires: new Date(Date.now() + 7200000).toISOString() } })
    await store.destroy(sid)
    assert.equal(await rowCount(pair.primaryUrl, sid), 0, 'destroy reached the primary')
    assert.equal(await store.get(sid), null, 'missing on both: null')
  } finally {
    await replay('resume')
  }
})

test('replicas given as pg config objects, several, in turn', async () => {
  const { port } = new URL(pair.standbyUrl)
  const applicationName = uniqueName('eps_replica')
  const store = storeOn({
    replicas: [
      pair.standbyUrl,
      { host: '127.0.0.1', port: Number(port), user: 'postgres', database: 'postgres', application_name: applicationName },
    ],
  })
  const sid = uniqueName('sid')
  await store.set(sid, { ...cookie(), n: 1 })
  await waitForReplay()
  for (let i = 0; i < 4; i++) assert.equal((await store.get(sid)).n, 1)
  const stats = store.stats()
  assert.equal(stats.replicas.length, 2)
  assert.ok(stats.replicas.every((r) => r.size >= 1), `both replicas were used: ${JSON.stringify(stats.replicas)}`)
  const { rows } = await withClient((c) => c.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', [applicationName]), pair.standbyUrl)
  assert.ok(rows[0].n >= 1, 'the config-object replica connected to the standby with its application_name')
})

test('with synchronous_commit = remote_apply a replica reads every acknowledged write (the README advice)', async () => {
  const setting = async (/** @type {string} */ sql) => withClient(async (c) => {
    await c.query(sql)
    await c.query('SELECT pg_reload_conf()')
  }, pair.primaryUrl)
  await setting("ALTER SYSTEM SET synchronous_standby_names = '*'")
  await setting("ALTER SYSTEM SET synchronous_commit = 'remote_apply'")
  try {
    // The store's own connections open after the reload, so they commit with remote_apply.
    const store = storeOn({ replicas: [pair.standbyUrl] })
    const sid = uniqueName('sid')
    await store.set(sid, { ...cookie(), user: 'alice' })
    await store.set(sid, { ...cookie(), user: null })
    assert.equal((await store.get(sid)).user, null, 'the change is on the replica when set() resolves')
    await store.destroy(sid)
    assert.equal(await store.get(sid), null, 'the delete is on the replica when destroy() resolves')
    assert.equal(await rowCount(pair.standbyUrl, sid), 0)
  } finally {
    await setting('ALTER SYSTEM RESET synchronous_commit')
    await setting('ALTER SYSTEM RESET synchronous_standby_names')
  }
})

test('an unreachable replica falls back to the primary', async () => {
  const nobody = `postgres://postgres@127.0.0.1:${await freePort()}/postgres`
  const store = storeOn({ replicas: [{ connectionString: nobody, connectionTimeoutMillis: 2000 }] })
  const sid = uniqueName('sid')
  await store.set(sid, { ...cookie(), via: 'primary' })
  assert.equal((await store.get(sid)).via, 'primary')
  assert.ok((await store.ids()).includes(sid))
  assert.ok(await store.length() >= 1)
  assert.ok((await store.all()).some((s) => s.via === 'primary'))
  assert.equal(store.stats().replicas[0].size, 0, 'no connection to the missing replica')
})

test('a standby that goes away mid-life: reads continue on the primary, then return to it', async () => {
  const store = storeOn({ replicas: [pair.standbyUrl] })
  const sid = uniqueName('sid')
  await store.set(sid, { ...cookie(), n: 7 })
  await waitForReplay()
  assert.equal((await store.get(sid)).n, 7)
  await pair.stopStandby()
  try {
    assert.equal((await store.get(sid)).n, 7, 'served by the primary while the standby is down')
    assert.ok(await store.length() >= 1)
  } finally {
    await pair.startStandby()
  }
  await waitForReplay()
  assert.equal((await store.get(sid)).n, 7)
})

test('maxLifetime on a replica: a session past it reads as missing there and on the primary it falls back to', async () => {
  const devices = uniqueName('replica_devices')
  const options = { tableName: devices, columns: { created_at: 'created_at', last_seen: 'last_seen' }, maxLifetime: 3600000 }
  await storeOn({ ...options, createTableIfMissing: true }).length()
  const store = storeOn({ ...options, replicas: [pair.standbyUrl] })
  await store.set('young', cookie())
  await store.set('aged', cookie())
  await withClient((c) => c.query(`UPDATE ${devices} SET created_at = created_at - interval '2 hours' WHERE sid = 'aged'`), pair.primaryUrl)
  await waitForReplay()
  assert.notEqual(await store.get('young'), null)
  assert.equal(await store.get('aged'), null)
  assert.deepEqual(await store.ids(), ['young'])
  assert.equal(await store.length(), 1)
})
