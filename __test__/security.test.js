'use strict'

// Session security: a logout that sticks (tombstones), sign out everywhere (`columns.user_id`),
// data encrypted at rest (`secret`) and ids a dump cannot replay (`hashSessionIds`). End to end
// through Express where the user would meet it; raw SELECTs show what the table holds.

const { test, describe } = require('node:test')
const assert = require('node:assert/strict')
const crypto = require('node:crypto')
const express = require('express')
const request = require('supertest')
const { DATABASE_URL, uniqueName, withClient, session, notTombstone, storesOnTables, sessionWith, rawRows, cookieSid } = require('./helpers')

const HOUR = 3600 * 1000

const storeOn = storesOnTables('sec')

const sess = sessionWith

/**
 * An app as users write them: login, a slow route that changes the session, logout, "my devices"
 * and "sign out my other devices".
 */
function appOn (store) {
  const app = express()
  app.use(session({ store, secret: 'cookie secret', resave: false, saveUninitialized: false }))
  app.post('/login/:user', (req, res, next) => req.session.regenerate((err) => {
    if (err) return next(err)
    req.session.passport = { user: req.params.user }
    res.json({ ok: true })
  }))
  app.get('/me', (req, res) => res.json({ user: (req.session.passport && req.session.passport.user) || null }))
  app.get('/slow', (req, res) => setTimeout(() => {
    req.session.views = (req.session.views || 0) + 1
    res.json({ views: req.session.views })
  }, 400))
  app.post('/logout', (req, res, next) => req.session.destroy((err) => err ? next(err) : res.json({ ok: true })))
  app.get('/devices', (req, res, next) => store.listUserSessions(req.session.passport.user)
    .then((list) => res.json(list.map((s) => ({ sid: s.sid, current: s.sid === req.sessionID, expires: s.expires })))).catch(next))
  app.post('/logout-others', (req, res, next) => store.destroyUserSessions(req.session.passport.user, { except: req.sessionID })
    .then((n) => res.json({ destroyed: n })).catch(next))
  return app
}

/** Logs in on `app`; the cookie. */
async function login (app, user = 'alice') {
  const res = await request(app).post(`/login/${user}`).expect(200)
  return [].concat(res.headers['set-cookie'])[0].split(';')[0]
}

/**
 * The race: a 400 ms request that changes the session, and a logout 100 ms into it, maybe on
 * another app instance. Resolves who the cookie reads as afterwards.
 */
async function logoutDuringSlowRequest (slowApp, logoutApp) {
  const cookie = await login(slowApp)
  // supertest sends on then(): start the slow request now.
  const slow = request(slowApp).get('/slow').set('Cookie', cookie).expect(200).then((res) => res)
  await new Promise((resolve) => setTimeout(resolve, 100))
  await request(logoutApp).post('/logout').set('Cookie', cookie).expect(200)
  await slow
  const after = await request(logoutApp).get('/me').set('Cookie', cookie).expect(200)
  return after.body.user
}

describe('a logout that sticks (tombstones)', () => {
  test('Express, one app: a slow request ending after the logout does not log the user back in', async () => {
    const app = appOn(storeOn())
    assert.equal(await logoutDuringSlowRequest(app, app), null)
  })

  test('Express, two app instances on one table: the same', async () => {
    const table = uniqueName('sec2')
    const a = appOn(storeOn({}, table))
    const b = appOn(storeOn({}, table))
    assert.equal(await logoutDuringSlowRequest(a, b), null)
  })

  test('the race is real: with `tombstones: false` the slow request logs the user back in', async () => {
    const table = uniqueName('sec3')
    const a = appOn(storeOn({ tombstones: false }, table))
    const b = appOn(storeOn({ tombstones: false }, table))
    assert.equal(await logoutDuringSlowRequest(a, b), 'alice')
  })

  test('after destroy, late sets and touches from another store never make a readable session; connect-pg-simple sees none', async () => {
    const table = uniqueName('tomb')
    const a = storeOn({}, table)
    const b = storeOn({}, table)
    await a.set('s1', sess({ user: 'alice' }))
    // A session whose expiry lies far ahead still leaves a tombstone (it is capped below the floor).
    await a.set('s2', sess({ user: 'bob' }, Date.UTC(3500, 0, 1)))
    await a.destroy('s1')
    await a.destroy('s2')
    // Never saved: a logout of a session whose first save is still in flight.
    await a.destroy('s3')
    for (const sid of ['s1', 's2', 's3']) {
      await b.set(sid, sess({ user: 'mallory' }))
      await b.touch(sid, sess({}, Date.now() + 10 * HOUR))
      assert.equal(await b.get(sid), null, sid)
      assert.equal(await a.get(sid), null, sid)
    }
    assert.equal(await a.length(), 0)
    assert.deepEqual(await b.ids(), [])
    const ConnectPg = require('connect-pg-simple')(session)
    const theirs = new ConnectPg({ conString: DATABASE_URL, tableName: table, pruneSessionInterval: false })
    try {
      for (const sid of ['s1', 's2', 's3']) {
        assert.ok(!(await new Promise((resolve, reject) => theirs.get(sid, (err, s) => err ? reject(err) : resolve(s)))), sid)
      }
    } finally {
      await theirs.close()
    }
    // What the table holds: three rows, each expired to every reader.
    const rows = await rawRows(table)
    assert.equal(rows.length, 3)
    for (const row of rows) {
      assert.ok(row.expire.getTime() < Date.UTC(1900, 0, 1), `${row.sid}: ${row.expire.toISOString()}`)
      assert.ok(!row.sess.includes('mallory') && !row.sess.includes('alice'), row.sess)
    }
  })

  test('regenerate flows (a new id) are unaffected, and `tombstones: false` lets a destroyed id come back', async () => {
    const store = storeOn()
    await store.set('old', sess({ n: 1 }))
    await store.destroy('old')
    await store.set('new', sess({ n: 2 }))
    assert.equal((await store.get('new')).n, 2)
    const reuse = storeOn({ tombstones: false })
    await reuse.set('x', sess({ n: 1 }))
    await reuse.destroy('x')
    await reuse.set('x', sess({ n: 2 }))
    assert.equal((await reuse.get('x')).n, 2)
  })

  test('prune deletes expired sessions and ended tombstones, keeps live tombstones; clear deletes everything', async () => {
    const table = uniqueName('tprune')
    const store = storeOn({}, table)
    await store.set('live', sess())
    await store.set('expired', sess({}, Date.now() - HOUR))
    await store.set('gone', sess())
    await store.destroy('gone')
    await store.set('ended', sess())
    await store.destroy('ended')
    // The guard of `ended` lies in the past: as if it had been destroyed two days ago.
    await withClient((c) => c.query(`UPDATE "${table}" SET expire = localtimestamp - interval '1000 years' - interval '2 days' WHERE sid = 'ended'`))
    assert.equal(await store.pruneSessions(), 2)
    assert.deepEqual((await rawRows(table)).map((r) => r.sid).sort(), ['gone', 'live'])
    await store.set('gone', sess({ back: true }))
    assert.equal(await store.get('gone'), null, 'a pruned-too-early tombstone would let it back')
    await store.clear()
    assert.equal((await rawRows(table)).length, 0)
  })
})

describe('sign out everywhere (`columns.user_id`)', () => {
  test('Express: list my devices, sign out my other devices; their late writes stay out', async () => {
    const store = storeOn({ columns: { user_id: 'user_id' } })
    const app = appOn(store)
    const mine = await login(app, 'alice')
    const laptop = await login(app, 'alice')
    const phone = await login(app, 'alice')
    const bob = await login(app, 'bob')
    const devices = (await request(app).get('/devices').set('Cookie', mine).expect(200)).body
    assert.equal(devices.length, 3)
    assert.equal(devices.filter((d) => d.current).length, 1)
    // A slow request on the phone, running across the sign-out.
    const slow = request(app).get('/slow').set('Cookie', phone).expect(200).then((res) => res)
    await new Promise((resolve) => setTimeout(resolve, 100))
    assert.deepEqual((await request(app).post('/logout-others').set('Cookie', mine).expect(200)).body, { destroyed: 2 })
    await slow
    const who = async (cookie) => (await request(app).get('/me').set('Cookie', cookie).expect(200)).body.user
    assert.equal(await who(mine), 'alice')
    assert.equal(await who(laptop), null)
    assert.equal(await who(phone), null)
    assert.equal(await who(bob), 'bob')
    assert.equal((await request(app).get('/devices').set('Cookie', mine).expect(200)).body.length, 1)
  })

  test('createTableIfMissing makes the column and its index; listUserSessions is newest first, with callbacks too', async () => {
    const table = uniqueName('users')
    const store = storeOn({ columns: { user_id: 'owner' }, userId: (s) => s.owner }, table)
    await store.set('a', sess({ owner: 7 }, Date.now() + HOUR))
    await store.set('b', sess({ owner: 7 }, Date.now() + 2 * HOUR))
    await store.set('c', sess({ owner: 8 }))
    await store.set('d', sess({}))
    await store.set('old', sess({ owner: 7 }, Date.now() - HOUR))
    const list = await store.listUserSessions(7)
    assert.deepEqual(list.map((s) => s.sid), ['b', 'a'])
    assert.equal(list[0].session.owner, 7)
    assert.ok(list[0].expires instanceof Date && Math.abs(list[0].expires.getTime() - (Date.now() + 2 * HOUR)) < 5000)
    const viaCallback = await new Promise((resolve, reject) => store.listUserSessions('8', (err, l) => err ? reject(err) : resolve(l)))
    assert.deepEqual(viaCallback.map((s) => s.sid), ['c'])
    const destroyed = await new Promise((resolve, reject) => store.destroyUserSessions(7, (err, n) => err ? reject(err) : resolve(n)))
    assert.equal(destroyed, 2)
    assert.deepEqual(await store.listUserSessions(7), [])
    const info = await withClient(async (c) => ({
      cols: (await c.query('SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position', [table])).rows,
      idx: (await c.query('SELECT indexdef FROM pg_indexes WHERE tablename = $1', [table])).rows.map((r) => r.indexdef),
    }))
    assert.deepEqual(info.cols.map((c) => c.column_name), ['sid', 'sess', 'expire', 'owner'])
    assert.ok(info.idx.some((d) => /\(owner\)/.test(d)), info.idx.join('\n'))
  })

  test('an existing table without the column: ERR_PG_SESSION_SCHEMA with the ALTER TABLE to run; bad uses are coded errors', async () => {
    const table = uniqueName('nouser')
    await withClient((c) => c.query(`CREATE TABLE "${table}" (sid varchar PRIMARY KEY, sess json NOT NULL, expire timestamp(6) NOT NULL)`))
    const store = storeOn({ columns: { user_id: 'user_id' }, createTableIfMissing: false }, table)
    await assert.rejects(store.set('a', sess()), (err) => {
      assert.equal(err.code, 'ERR_PG_SESSION_SCHEMA')
      assert.match(err.message, /ALTER TABLE "nouser_[0-9a-f]+" ADD COLUMN "user_id" varchar NULL/)
      assert.match(err.message, /CREATE INDEX IF NOT EXISTS/)
      return true
    })
    const plain = storeOn()
    await assert.rejects(plain.listUserSessions('u'), { code: 'ERR_PG_SESSION_INVALID_OPTION', message: /columns\.user_id/ })
    assert.throws(() => storeOn({ userId: () => 'x' }), { code: 'ERR_PG_SESSION_INVALID_OPTION' })
    const objects = storeOn({ columns: { user_id: 'user_id' } })
    await assert.rejects(objects.set('a', sess({ passport: { user: { id: 1 } } })), { code: 'ERR_PG_SESSION_INVALID_ARG', message: /userId/ })
    await assert.rejects(objects.listUserSessions(''), { code: 'ERR_PG_SESSION_INVALID_ARG' })
    // A session id where the options go would silently sign out the current session too.
    await assert.rejects(objects.destroyUserSessions('u', 'a-session-id'), { code: 'ERR_PG_SESSION_INVALID_ARG' })
  })

  test('an owner value the column cannot hold fails that set with 22P02, without the value in the message', async () => {
    const table = uniqueName('intuser')
    await withClient((c) => c.query(`CREATE TABLE "${table}" (sid varchar PRIMARY KEY, sess json NOT NULL, expire timestamp(6) NOT NULL, owner int)`))
    const store = storeOn({ columns: { user_id: 'owner' }, createTableIfMissing: false }, table)
    await store.set('ok', sess({ passport: { user: 42 } }))
    const [bad, good] = await Promise.allSettled([
      store.set('bad', sess({ passport: { user: 'bob@example.com' } })),
      store.set('good', sess({ passport: { user: 43 } })),
    ])
    assert.equal(bad.status, 'rejected')
    assert.equal(bad.reason.code, '22P02')
    assert.doesNotMatch(bad.reason.message, /bob@example/)
    assert.equal(good.status, 'fulfilled', 'one session\'s bad owner fails only that session')
    assert.deepEqual((await store.listUserSessions(42)).map((s) => s.sid), ['ok'])
  })
})

describe('encrypted at rest (`secret`)', () => {
  for (const type of ['json', 'jsonb', 'text']) {
    test(`${type} column: the table holds no plaintext; the store reads it back`, async () => {
      const table = uniqueName(`enc_${type}`)
      await withClient((c) => c.query(`CREATE TABLE "${table}" (sid varchar PRIMARY KEY, sess ${type} NOT NULL, expire timestamp(6) NOT NULL)`))
      const store = storeOn({ secret: 'a long random secret, 32 chars..' }, table)
      await store.set('s', sess({ card: '4111-1111-1111-1111' }))
      const [row] = await rawRows(table)
      assert.ok(!row.sess.includes('4111'), row.sess)
      assert.equal(JSON.parse(row.sess).pgs, 1)
      // Readers without the secret (connect-pg-simple, a rollback) see an empty, long-expired session.
      const ConnectPg = require('connect-pg-simple')(session)
      const theirs = new ConnectPg({ conString: DATABASE_URL, tableName: table, pruneSessionInterval: false })
      try {
        const seen = await new Promise((resolve, reject) => theirs.get('s', (err, s) => err ? reject(err) : resolve(s)))
        assert.equal(new Date(seen.cookie.expires).getTime(), 0)
      } finally {
        await theirs.close()
      }
      assert.equal((await store.get('s')).card, '4111-1111-1111-1111')
      assert.equal((await store.all())[0].card, '4111-1111-1111-1111')
    })
  }

  test('rotation: the first secret encrypts, every secret decrypts; plaintext rows from before still read', async () => {
    const table = uniqueName('rotate')
    const plain = storeOn({}, table)
    await plain.set('before', sess({ n: 0 }))
    const old = storeOn({ secret: 'the old secret, long enough' }, table)
    await old.set('old', sess({ n: 1 }))
    const rotated = storeOn({ secret: ['the new secret, long enough', 'the old secret, long enough'] }, table)
    await rotated.set('new', sess({ n: 2 }))
    assert.deepEqual(await Promise.all(['before', 'old', 'new'].map(async (sid) => (await rotated.get(sid)).n)), [0, 1, 2])
    assert.equal(await old.get('new'), null, 'the old secret alone cannot read what the new one sealed')
  })

  test('a row no secret opens reads as no session, reported once to errorLog; data moved to another id does not open', async () => {
    const table = uniqueName('unread')
    const logged = []
    const store = storeOn({ secret: 'one secret that is long enough', errorLog: (...args) => logged.push(args.join(' ')) }, table)
    const other = storeOn({ secret: 'another secret, long enough too' }, table)
    await other.set('theirs', sess({ n: 1 }))
    await store.set('victim', sess({ n: 2 }))
    await store.set('attacker', sess({ n: 3 }))
    // Read, then write: Citus (.ci/run runs this file on it) refuses a subquery over other shards.
    await withClient(async (c) => {
      const { rows } = await c.query(`SELECT sess::text AS sess FROM "${table}" WHERE sid = 'victim'`)
      await c.query(`UPDATE "${table}" SET sess = $1::json WHERE sid = 'attacker'`, [rows[0].sess])
    })
    assert.equal(await store.get('theirs'), null)
    assert.equal(await store.get('attacker'), null)
    assert.equal((await store.get('victim')).n, 2)
    assert.equal(logged.length, 1, logged.join('\n'))
    assert.match(logged[0], /secret/)
    assert.equal((await rawRows(table, "sid = 'theirs'")).length, 1, 'the row stays: a secret may be missing from the list')
    assert.throws(() => storeOn({ secret: 'short' }), { code: 'ERR_PG_SESSION_INVALID_OPTION', message: /secret/ })
  })
})

describe('ids a dump cannot replay (`hashSessionIds`)', () => {
  test('Express with secret + hashSessionIds: the table holds no cookie id and no plaintext; everything still works', async () => {
    const table = uniqueName('hashed')
    const store = storeOn({ secret: 'a long random secret for data', hashSessionIds: true, columns: { user_id: 'user_id' } }, table)
    const app = appOn(store)
    const res = await request(app).post('/login/carol').expect(200)
    const cookie = [].concat(res.headers['set-cookie'])[0].split(';')[0]
    const sid = cookieSid(res)
    const rows = await rawRows(table, notTombstone())
    assert.equal(rows.length, 1)
    assert.equal(rows[0].sid, crypto.createHash('sha256').update(sid).digest('hex'))
    const dump = JSON.stringify(await rawRows(table))
    assert.ok(!dump.includes(sid), 'the cookie id is in the table')
    assert.ok(!dump.includes('carol'), 'session data is in the table in clear')
    assert.equal((await request(app).get('/me').set('Cookie', cookie).expect(200)).body.user, 'carol')
    const devices = (await request(app).get('/devices').set('Cookie', cookie).expect(200)).body
    assert.deepEqual(devices.map((d) => d.sid), [rows[0].sid], 'listUserSessions gives the stored (hashed) ids')
    assert.deepEqual(await store.ids(), [rows[0].sid])
    await request(app).post('/logout').set('Cookie', cookie).expect(200)
    assert.equal((await request(app).get('/me').set('Cookie', cookie).expect(200)).body.user, null)
  })

  test('hashSessionIds: one listed device is signed out by the id listUserSessions gave', async () => {
    const store = storeOn({ hashSessionIds: true, columns: { user_id: 'user_id' } })
    await store.set('laptop', sess({ passport: { user: 'dan' } }))
    await store.set('phone', sess({ passport: { user: 'dan' } }))
    await store.set('other', sess({ passport: { user: 'eve' } }))
    const listed = await store.listUserSessions('dan')
    const phone = crypto.createHash('sha256').update('phone').digest('hex')
    assert.ok(listed.some((s) => s.sid === phone))
    // Another user's listed id is out of reach: only the user's own sessions are destroyed.
    const eve = (await store.listUserSessions('eve'))[0].sid
    assert.equal(await store.destroyUserSessions('dan', { sids: [phone, eve] }), 1)
    assert.equal(await store.get('phone'), null)
    assert.notEqual(await store.get('laptop'), null)
    assert.notEqual(await store.get('other'), null)
  })

  test('a uuid sid column cannot hold a hash, nor give back ids as sealed: ERR_PG_SESSION_SCHEMA says so', async () => {
    const table = uniqueName('hashuuid')
    await withClient((c) => c.query(`CREATE TABLE "${table}" (sid uuid PRIMARY KEY, sess json NOT NULL, expire timestamp(6) NOT NULL)`))
    const store = storeOn({ hashSessionIds: true, createTableIfMissing: false }, table)
    await assert.rejects(store.get(crypto.randomUUID()), { code: 'ERR_PG_SESSION_SCHEMA', message: /hashSessionIds/ })
    const sealed = storeOn({ secret: 'a secret that is long enough', createTableIfMissing: false }, table)
    await assert.rejects(sealed.get(crypto.randomUUID()), { code: 'ERR_PG_SESSION_SCHEMA', message: /secret/ })
  })
})
