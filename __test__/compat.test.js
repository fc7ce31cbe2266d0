'use strict'

// Column types (json/jsonb/text × timestamp/timestamptz) and rows shared with connect-pg-simple:
// what one store writes, the other reads, both ways, on the same table.

const { test, describe } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const { PGStore, DATABASE_URL, uniqueName, withClient, session, callback } = require('./helpers')
const ConnectPgSimple = require('connect-pg-simple')(session)

const HOUR = 3600 * 1000
const sessionData = (ms = HOUR, extra = {}) => ({ cookie: { originalMaxAge: ms, expires: new Date(Date.now() + ms).toISOString(), httpOnly: true, path: '/' }, ...extra })

describe('column types', () => {
  for (const dataType of ['json', 'jsonb', 'text']) {
    for (const expireType of ['timestamp(6)', 'timestamptz']) {
      test(`${dataType} data, ${expireType} expiry`, async () => {
        const table = uniqueName('types')
        await withClient((c) => c.query(`CREATE TABLE "${table}" (sid varchar PRIMARY KEY, sess ${dataType} NOT NULL, expire ${expireType} NOT NULL)`))
        const store = new PGStore({ conString: DATABASE_URL, tableName: table, pruneSessionInterval: false })
        try {
          const sess = sessionData(HOUR, { user: { id: 7, tags: ['a', 'b'] }, 'quote"key': 'va\'lue', emoji: '🎉' })
          await store.set('s', sess)
          assert.deepEqual(await store.get('s'), sess)
          const raw = await withClient(async (c) => (await c.query(`SELECT sess::text AS t FROM "${table}"`)).rows[0].t)
          // json and text keep the exact text; jsonb keeps the value in its own normal form.
          if (dataType === 'jsonb') assert.deepEqual(JSON.parse(raw), sess)
          else assert.equal(raw, JSON.stringify(sess))
          await store.touch('s', sessionData(2 * HOUR))
          await store.set('dead', sessionData(-HOUR))
          assert.equal(await store.get('dead'), null)
          assert.equal(await store.length(), 1)
          assert.deepEqual(await store.ids(), ['s'])
          assert.equal(await store.pruneSessions(), 1)
          await store.destroy('s')
          assert.equal(await store.length(), 0)
        } finally {
          await store.close()
          await withClient((c) => c.query(`DROP TABLE "${table}"`))
        }
      })
    }
  }
})

describe('sid column collation', () => {
  test('a case-insensitive (nondeterministic) sid column: concurrent gets find what a lone get finds', async () => {
    // Gets made together share one `= ANY` statement and are matched to the rows by their ids;
    // under a nondeterministic collation the row's id may differ from the id asked, so the store
    // sends such gets one by one.
    const table = uniqueName('collate')
    const collation = uniqueName('ci')
    await withClient((c) => c.query(`CREATE COLLATION "${collation}" (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
      CREATE TABLE "${table}" (sid varchar COLLATE "${collation}" PRIMARY KEY, sess json NOT NULL, expire timestamp(6) NOT NULL)`))
    const store = new PGStore({ conString: DATABASE_URL, tableName: table, pruneSessionInterval: false })
    try {
      await store.set('MiXeD', sessionData(HOUR, { who: 'mixed' }))
      assert.equal((await store.get('mixed')).who, 'mixed')
      const asked = Array.from({ length: 30 }, (_, i) => ['mixed', 'MIXED', 'MiXeD', 'other'][i % 4])
      const answers = await Promise.all(asked.map((sid) => store.get(sid)))
      asked.forEach((sid, i) => assert.equal(answers[i] ? answers[i].who : null, sid === 'other' ? null : 'mixed', `answer ${i} for ${sid}`))
    } finally {
      await store.close()
      await withClient((c) => c.query(`DROP TABLE "${table}"; DROP COLLATION "${collation}"`))
    }
  })
})

describe('connect-pg-simple compatibility', () => {
  /** A table made from connect-pg-simple's own table.sql, under a new name. */
  async function connectPgSimpleTable () {
    const table = uniqueName('cps')
    const theirs = fs.readFileSync(require.resolve('connect-pg-simple/table.sql'), 'utf8')
    await withClient((c) => c.query(theirs.replaceAll('"session"', `"${table}"`).replaceAll('IDX_session_expire', `IDX_${table}_expire`)))
    return table
  }

  test('our table.sql is connect-pg-simple\'s', () => {
    const ours = fs.readFileSync(path.join(__dirname, '..', 'table.sql'), 'utf8')
    const theirs = fs.readFileSync(require.resolve('connect-pg-simple/table.sql'), 'utf8')
    assert.equal(ours.trim(), theirs.trim())
  })

  test('rows written by connect-pg-simple are read by us, and ours by it', async () => {
    const table = await connectPgSimpleTable()
    const pg = require('pg')
    const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 })
    const theirs = new ConnectPgSimple({ pool, tableName: table, pruneSessionInterval: false })
    const ours = new PGStore({ pool, tableName: table, pruneSessionInterval: false })
    try {
      const written = sessionData(HOUR, { by: 'connect-pg-simple', n: 1 })
      const [setErr] = await callback((cb) => theirs.set('from-them', written, cb))
      assert.equal(setErr, null)
      assert.deepEqual(await ours.get('from-them'), written)

      const mine = sessionData(HOUR, { by: 'express-pg-session', n: 2 })
      await ours.set('from-us', mine)
      const [getErr, read] = await callback((cb) => theirs.get('from-us', cb))
      assert.equal(getErr, null)
      assert.deepEqual(read, mine)

      // Touch, expiry and destroy agree across the two.
      await ours.touch('from-them', sessionData(3 * HOUR))
      const [touchedErr, touched] = await callback((cb) => theirs.get('from-them', cb))
      assert.equal(touchedErr, null)
      assert.deepEqual(touched, written)
      const [expErr] = await callback((cb) => theirs.set('expired', sessionData(-HOUR), cb))
      assert.equal(expErr, null)
      assert.equal(await ours.get('expired'), null)
      assert.equal(await ours.pruneSessions(), 1)
      const [destroyErr] = await callback((cb) => theirs.destroy('from-us', cb))
      assert.equal(destroyErr, null)
      assert.equal(await ours.get('from-us'), null)
      assert.deepEqual(await ours.ids(), ['from-them'])
    } finally {
      await theirs.close()
      await ours.close()
      await pool.end()
      await withClient((c) => c.query(`DROP TABLE "${table}"`))
    }
  })

  test('the same options object works for both stores', async () => {
    const table = await connectPgSimpleTable()
    const options = { conString: DATABASE_URL, tableName: table, ttl: 600, disableTouch: true, pruneSessionInterval: false, errorLog: () => {} }
    const theirs = new ConnectPgSimple({ ...options })
    const ours = new PGStore({ ...options })
    try {
      await ours.set('a', sessionData(HOUR, { same: true }))
      const [err, sess] = await callback((cb) => theirs.get('a', cb))
      assert.equal(err, null)
      assert.equal(sess.same, true)
    } finally {
      await theirs.close()
      await ours.close()
      await withClient((c) => c.query(`DROP TABLE "${table}"`))
    }
  })
})
