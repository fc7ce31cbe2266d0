'use strict'

// Devices and lifetimes (issue 21): a "devices" page that shows each session's device, when it
// signed in and when it was last active (`columns.created_at`, `columns.last_seen`,
// `extraColumns`), "sign out my other devices", and an absolute timeout (`maxLifetime`) that
// activity does not extend. End to end through Express where a user meets it; raw SELECTs show
// what the table holds. One test waits for real (maxLifetime 2 s); the others move created_at
// in the table instead.

const { test, describe } = require('node:test')
const assert = require('node:assert/strict')
const crypto = require('node:crypto')
const express = require('express')
const request = require('supertest')
const { uniqueName, withClient, session, notTombstone, storesOnTables, sessionWith, rawRows: selectRows, cookieSid } = require('./helpers')

const HOUR = 3600 * 1000

const COLUMNS = { user_id: 'user_id', created_at: 'created_at', last_seen: 'last_seen' }
const EXTRA = {
  user_agent: (s) => s.device?.ua ?? null,
  ip: (s) => s.device?.ip ?? null,
}
const DEVICE_OPTIONS = { columns: COLUMNS, extraColumns: EXTRA }

const storeOn = storesOnTables('dev')

const sess = sessionWith
/** Every column of the rows (the device columns too). @param {string} table @param {string} [where] @param {any[]} [params] */
const rawRows = (table, where, params) => selectRows(table, where, params, '*, sid::text AS sid, sess::text AS sess')
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * An app as users write a devices page: a login that records the device in the session, a page
 * that changes the session, "my devices", "sign out my other devices".
 */
function deviceApp (store, { hash = false } = {}) {
  const app = express()
  app.use(session({ store, secret: 'cookie secret', resave: false, saveUninitialized: false }))
  app.post('/login', (req, res, next) => req.session.regenerate((err) => {
    if (err) return next(err)
    req.session.passport = { user: 'u1' }
    req.session.device = { ip: req.ip, ua: req.get('user-agent') }
    // Saved before answering, as passport's login does: a failed save is this request's error.
    req.session.save((err) => err ? next(err) : res.json({ ok: true }))
  }))
  const loggedIn = (req, res, next) => req.session.passport ? next() : res.status(401).json({ error: 'not logged in' })
  app.get('/me', loggedIn, (req, res) => res.json({ user: req.session.passport.user }))
  app.post('/visit', loggedIn, (req, res) => {
    req.session.views = (req.session.views || 0) + 1
    res.json({ views: req.session.views })
  })
  const current = (req) => hash ? crypto.createHash('sha256').update(req.sessionID).digest('hex') : req.sessionID
  app.get('/devices', loggedIn, (req, res, next) => store.listUserSessions(req.session.passport.user)
    .then((list) => res.json(list.map((s) => ({
      sid: s.sid,
      current: s.sid === current(req),
      ua: s.extra.user_agent,
      ip: s.extra.ip,
      createdAt: s.createdAt && s.createdAt.toISOString(),
      lastSeen: s.lastSeen && s.lastSeen.toISOString(),
    })))).catch(next))
  app.post('/signout-others', loggedIn, (req, res, next) => store.destroyUserSessions(req.session.passport.user, { except: req.sessionID })
    .then((n) => res.json({ destroyed: n })).catch(next))
  // express-session saves a regenerated session again as the response ends; when that save fails
  // too, its error comes after the 500 went out (and Express's final handler, quiet in 'test', gets it).
  // eslint-disable-next-line no-unused-vars
  app.use((err, req, res, next) => { if (!res.headersSent) res.status(500).json({ code: err.code, message: err.message }) })
  app.set('env', 'test')
  return app
}

/** A supertest agent (it keeps its cookie) sending `ua` as its User-Agent, logged in. */
async function loginAs (app, ua) {
  const agent = request.agent(app)
  const res = await agent.post('/login').set('User-Agent', ua).expect(200)
  return { agent, sid: cookieSid(res), get: (path) => agent.get(path).set('User-Agent', ua), post: (path) => agent.post(path).set('User-Agent', ua) }
}

describe('a devices page (created_at, last_seen, extraColumns)', () => {
  test('Express: three devices of one user, each with its agent; created_at stays, last_seen moves on a write; sign out the others', async () => {
    const table = uniqueName('devices')
    const store = storeOn(DEVICE_OPTIONS, table)
    const app = deviceApp(store)
    await store.ready()
    const before = Date.now()
    const firefox = await loginAs(app, 'Firefox/140')
    await sleep(20)
    const safari = await loginAs(app, 'Safari/18')
    await sleep(20)
    const curl = await loginAs(app, 'curl/8.5')
    const listed = (await firefox.get('/devices').expect(200)).body
    // Newest activity first: the last login first.
    assert.deepEqual(listed.map((d) => d.ua), ['curl/8.5', 'Safari/18', 'Firefox/140'])
    assert.deepEqual(listed.map((d) => d.sid), [curl.sid, safari.sid, firefox.sid])
    assert.deepEqual(listed.map((d) => d.current), [false, false, true])
    for (const d of listed) {
      assert.match(d.ip, /127\.0\.0\.1|::1/)
      const created = Date.parse(d.createdAt)
      assert.ok(Math.abs(created - before) < 10000, `created_at ${d.createdAt} is not about now (a time zone slip?)`)
      assert.ok(Date.parse(d.lastSeen) >= created, JSON.stringify(d))
    }
    const first = Object.fromEntries(listed.map((d) => [d.sid, d]))

    // The API itself: Dates, and the extra columns by name.
    const rows = await store.listUserSessions('u1')
    assert.equal(rows.length, 3)
    assert.ok(rows[0].createdAt instanceof Date && rows[0].lastSeen instanceof Date && rows[0].expires instanceof Date)
    assert.deepEqual(Object.keys(rows[0].extra).sort(), ['ip', 'user_agent'])
    assert.equal(rows[0].session.device.ua, 'curl/8.5')

    // A request that changes the session (a set) moves its last_seen, and puts it first.
    await sleep(30)
    await safari.post('/visit').expect(200, { views: 1 })
    const later = (await firefox.get('/devices').expect(200)).body
    assert.equal(later[0].sid, safari.sid, JSON.stringify(later))
    assert.ok(Date.parse(later[0].lastSeen) > Date.parse(first[safari.sid].lastSeen), `${first[safari.sid].lastSeen} → ${later[0].lastSeen}`)
    for (const d of later) assert.equal(d.createdAt, first[d.sid].createdAt, 'created_at is written once')
    await safari.post('/visit').expect(200, { views: 2 })
    assert.deepEqual((await store.listUserSessions('u1')).map((r) => r.createdAt.toISOString()).sort(),
      listed.map((d) => d.createdAt).sort())

    // Sign out my other devices: only this one is left; the others are signed out at their next request.
    assert.deepEqual((await firefox.post('/signout-others').expect(200)).body, { destroyed: 2 })
    await safari.get('/me').expect(401)
    await curl.get('/me').expect(401)
    await firefox.get('/me').expect(200, { user: 'u1' })
    const left = (await firefox.get('/devices').expect(200)).body
    assert.deepEqual(left.map((d) => [d.sid, d.current, d.ua]), [[firefox.sid, true, 'Firefox/140']])
    // The signed-out devices' rows are tombstones: owner and extra columns cleared.
    for (const sid of [safari.sid, curl.sid]) {
      const [row] = await rawRows(table, 'sid = $1', [sid])
      if (!row) continue
      assert.ok(row.expire.getTime() < Date.UTC(1900, 0, 1), sid)
      assert.equal(row.user_agent, null)
      assert.equal(row.ip, null)
      assert.equal(row.user_id, null)
    }
  })

  test('createTableIfMissing makes the columns (and the created_at index with maxLifetime); values read back as the column holds them', async () => {
    const table = uniqueName('devcols')
    const store = storeOn({
      columns: COLUMNS,
      maxLifetime: HOUR,
      extraColumns: { ...EXTRA, n: (s) => s.n, flag: (s) => s.flag, missing: () => undefined },
    }, table)
    await store.ready()
    const info = await withClient(async (c) => ({
      cols: (await c.query('SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_name = $1', [table])).rows,
      idx: (await c.query('SELECT indexdef FROM pg_indexes WHERE tablename = $1', [table])).rows.map((r) => r.indexdef),
    }))
    const col = Object.fromEntries(info.cols.map((c) => [c.column_name, c]))
    for (const name of ['created_at', 'last_seen']) {
      assert.equal(col[name]?.data_type, 'timestamp without time zone', name)
      assert.equal(col[name].is_nullable, 'YES', name)
    }
    for (const name of ['user_agent', 'ip', 'n', 'flag', 'missing']) {
      assert.equal(col[name]?.data_type, 'text', name)
      assert.equal(col[name].is_nullable, 'YES', name)
    }
    assert.ok(info.idx.some((d) => /\(created_at\)/.test(d)), info.idx.join('\n'))

    await store.set('s', sess({ passport: { user: 'u2' }, device: { ua: 'Edge', ip: '10.0.0.1' }, n: 42, flag: true }))
    const [row] = await store.listUserSessions('u2')
    assert.deepEqual(row.extra, { user_agent: 'Edge', ip: '10.0.0.1', n: '42', flag: 'true', missing: null })
    const [raw] = await rawRows(table, "sid = 's'")
    assert.equal(raw.user_agent, 'Edge')
    assert.equal(raw.missing, null)
    assert.ok(raw.created_at instanceof Date && raw.last_seen instanceof Date)
    // Stores without the new columns list rows without the new fields.
    const plain = storeOn({ columns: { user_id: 'user_id' } })
    await plain.set('p', sess({ passport: { user: 'u3' } }))
    const [plainRow] = await plain.listUserSessions('u3')
    assert.ok(!('createdAt' in plainRow) && !('lastSeen' in plainRow) && !('extra' in plainRow), JSON.stringify(plainRow))
  })

  test('last_seen: a touch that reaches the database writes it (touchAfter: 0); a deferred touch does not; touch never writes created_at or the extra columns', async () => {
    const table = uniqueName('devtouch')
    const every = storeOn({ ...DEVICE_OPTIONS, touchAfter: 0 }, table)
    const deferring = storeOn(DEVICE_OPTIONS, table)
    const expires = Date.now() + HOUR
    const data = (expiresMs = expires) => sess({ passport: { user: 'u4' }, device: { ua: 'Opera' } }, expiresMs)
    await every.set('a', data())
    await deferring.set('b', data())
    const at = async (sid) => (await rawRows(table, 'sid = $1', [sid]))[0]
    const a0 = await at('a')
    const b0 = await at('b')
    await sleep(30)
    await every.touch('a', { ...data(expires + HOUR), device: { ua: 'changed by a touch' } })
    // 1 s later than stored: within the default bound (1 % of an hour, 36 s).
    await deferring.touch('b', data(expires + 1000))
    const a1 = await at('a')
    const b1 = await at('b')
    assert.ok(a1.last_seen > a0.last_seen, `${a0.last_seen.toISOString()} → ${a1.last_seen.toISOString()}`)
    assert.equal(a1.created_at.getTime(), a0.created_at.getTime())
    assert.equal(a1.user_agent, 'Opera', 'a touch leaves the extra columns')
    assert.equal(b1.last_seen.getTime(), b0.last_seen.getTime(), 'a touch within the deferral bound is skipped')
  })

  test('extraColumns: a function that throws or gives another type fails only that set, naming the column, never the value', async () => {
    const table = uniqueName('devbad')
    const store = storeOn({
      ...DEVICE_OPTIONS,
      extraColumns: {
        ...EXTRA,
        user_agent: (s) => {
          if (s.device?.ua === 'evil') throw new Error('boom')
          return s.device?.ua ?? null
        },
      },
    }, table)
    const app = deviceApp(store)
    await store.ready()
    // Express: one login's save fails, the concurrent other one is stored.
    const evil = request.agent(app)
    const good = request.agent(app)
    const [bad, ok] = await Promise.all([
      evil.post('/login').set('User-Agent', 'evil'),
      good.post('/login').set('User-Agent', 'Firefox/140'),
    ])
    assert.equal(bad.status, 500)
    assert.equal(bad.body.code, 'ERR_PG_SESSION_EXTRA_COLUMN')
    assert.match(bad.body.message, /user_agent/)
    assert.equal(ok.status, 200)
    await good.get('/me').expect(200)
    await evil.get('/me').expect(401)
    const live = await rawRows(table, notTombstone())
    assert.deepEqual(live.map((r) => r.user_agent), ['Firefox/140'], 'nothing of the failed set was written')

    // Direct: every value that is not a string, finite number, boolean, null or undefined.
    const typed = storeOn({ ...DEVICE_OPTIONS, extraColumns: { secret_col: (s) => s.v } })
    const bads = [{ pw: 'hunter2' }, ['hunter2'], new Date(), NaN, Infinity, -Infinity, () => 'hunter2', Symbol('hunter2')]
    const results = await Promise.allSettled([...bads.map((v, i) => typed.set(`bad${i}`, sess({ v }))), typed.set('fine', sess({ v: 'x' }))])
    for (const [i, r] of results.slice(0, -1).entries()) {
      assert.equal(r.status, 'rejected', String(bads[i]?.toString?.() ?? i))
      assert.equal(r.reason.code, 'ERR_PG_SESSION_EXTRA_COLUMN')
      assert.match(r.reason.message, /secret_col/)
      assert.doesNotMatch(r.reason.message, /hunter2/)
      assert.equal(await typed.get(`bad${i}`), null)
    }
    assert.equal(results[results.length - 1].status, 'fulfilled')
    assert.equal((await typed.get('fine')).v, 'x')
  })

  test('with secret and hashSessionIds: the extra columns are stored plain, listUserSessions gives them with the hashed ids', async () => {
    const table = uniqueName('devsealed')
    const store = storeOn({ ...DEVICE_OPTIONS, secret: 'a long random secret for the data', hashSessionIds: true }, table)
    const app = deviceApp(store, { hash: true })
    const phone = await loginAs(app, 'Phone/1')
    const laptop = await loginAs(app, 'Laptop/2')
    const devices = (await phone.get('/devices').expect(200)).body
    assert.deepEqual(devices.map((d) => [d.ua, d.current]), [['Laptop/2', false], ['Phone/1', true]])
    const rows = await rawRows(table, notTombstone())
    assert.equal(rows.length, 2)
    for (const row of rows) {
      assert.ok(!row.sess.includes('Phone') && !row.sess.includes('Laptop'), 'session data is sealed')
      assert.match(row.user_agent, /^(Phone\/1|Laptop\/2)$/, 'extra columns are not encrypted')
      assert.ok(row.sid !== phone.sid && row.sid !== laptop.sid, 'ids are hashed')
    }
    await phone.post('/signout-others').expect(200, { destroyed: 1 })
    await laptop.get('/me').expect(401)
  })
})

describe('an absolute timeout (maxLifetime)', () => {
  test('Express: a session active every 300 ms ends 2 s after login whatever its touches and saves; a new login works; prune leaves nothing of it', async () => {
    const table = uniqueName('devlife')
    // touchAfter: 0: every touch reaches the database, and still does not extend the session.
    const store = storeOn({ ...DEVICE_OPTIONS, maxLifetime: 2000, touchAfter: 0 }, table)
    const app = deviceApp(store)
    await store.ready()
    const t0 = Date.now()
    const device = await loginAs(app, 'Firefox/140')
    const loggedInBy = Date.now()
    // [start, end, status] of each request, in ms since just before the login.
    const seen = []
    for (let i = 0; Date.now() - loggedInBy < 2700; i++) {
      const start = Date.now()
      const res = await (i % 2 === 0 ? device.get('/me') : device.post('/visit'))
      seen.push([start - t0, Date.now() - t0, res.status])
      await sleep(300)
    }
    const story = JSON.stringify(seen)
    // created_at lies between t0 and loggedInBy: answered before t0 + 2 s, in; started after loggedInBy + 2 s, out.
    const surelyIn = seen.filter(([, end]) => end < 2000 - 100)
    const surelyOut = seen.filter(([start]) => start > loggedInBy - t0 + 2000 + 100)
    assert.ok(surelyIn.length >= 3 && surelyIn.every(([, , status]) => status === 200), story)
    assert.ok(surelyOut.length >= 1 && surelyOut.every(([, , status]) => status === 401), story)
    const firstOut = seen.findIndex(([, , status]) => status === 401)
    assert.ok(firstOut > 0 && seen.slice(firstOut).every(([, , status]) => status === 401), `once ended it stays ended: ${story}`)

    // Ended for every reader, though its expiry lies a day ahead.
    assert.equal(await store.get(device.sid), null)
    assert.deepEqual(await store.ids(), [])
    assert.equal(await store.length(), 0)
    assert.deepEqual(await store.all(), [])
    assert.deepEqual(await store.listUserSessions('u1'), [])
    const [aged] = await rawRows(table, 'sid = $1', [device.sid])
    assert.ok(aged && aged.expire.getTime() > Date.now() + HOUR, 'the row is still there, with its rolling expiry')

    // A new login works (a regenerated session gets its own created_at).
    const again = await device.post('/login').expect(200)
    const newSid = cookieSid(again)
    assert.notEqual(newSid, device.sid)
    await device.get('/me').expect(200, { user: 'u1' })
    assert.deepEqual((await store.listUserSessions('u1')).map((r) => r.sid), [newSid])

    // Prune turns the aged session into a tombstone (or deletes it): no data of it is left,
    // and a late write of it (a request that loaded it before) does not bring it back.
    await store.pruneSessions()
    const [after] = await rawRows(table, 'sid = $1', [device.sid])
    if (after) {
      assert.ok(after.expire.getTime() < Date.UTC(1900, 0, 1), `a tombstone, got ${after.expire.toISOString()}`)
      assert.ok(!after.sess.includes('u1') && !after.sess.includes('Firefox'), after.sess)
      assert.equal(after.user_id, null)
      assert.equal(after.user_agent, null)
      assert.equal(after.ip, null)
    }
    await store.set(device.sid, sess({ passport: { user: 'u1' }, device: { ua: 'late' } }))
    assert.equal(await store.get(device.sid), null)
    await device.get('/me').expect(200, { user: 'u1' })
    assert.equal((await rawRows(table, 'sid = $1', [newSid]))[0].user_agent, 'Firefox/140', 'prune left the young session alone')
  })

  test('judged by the row: a session whose created_at lies more than maxLifetime back reads as missing in every store on the table', async () => {
    const table = uniqueName('devage')
    const a = storeOn({ ...DEVICE_OPTIONS, maxLifetime: HOUR }, table)
    const b = storeOn({ ...DEVICE_OPTIONS, maxLifetime: HOUR }, table)
    await a.set('young', sess({ passport: { user: 'u5' } }))
    await a.set('old', sess({ passport: { user: 'u5' } }))
    await withClient((c) => c.query(`UPDATE "${table}" SET created_at = created_at - interval '61 minutes' WHERE sid = 'old'`))
    for (const store of [a, b]) {
      assert.equal(await store.get('old'), null)
      assert.notEqual(await store.get('young'), null)
      assert.deepEqual(await store.ids(), ['young'])
      assert.equal(await store.length(), 1)
      assert.equal((await store.all()).length, 1)
      assert.deepEqual((await store.listUserSessions('u5')).map((r) => r.sid), ['young'])
    }
    // Saves and touches keep created_at: the session stays ended.
    await b.set('old', sess({ passport: { user: 'u5' }, again: true }))
    await b.touch('old', sess({ passport: { user: 'u5' } }, Date.now() + 10 * HOUR))
    assert.equal(await a.get('old'), null)
    // A store without tombstones deletes it on prune.
    const deleting = storeOn({ ...DEVICE_OPTIONS, maxLifetime: HOUR, tombstones: false }, table)
    await deleting.pruneSessions()
    assert.deepEqual((await rawRows(table)).map((r) => r.sid), ['young'])
  })

  test('options: maxLifetime needs columns.created_at and is 1 ms to 100 years; extraColumns takes functions', () => {
    assert.throws(() => storeOn({ maxLifetime: 2000 }), (err) => {
      assert.ok(err instanceof TypeError)
      assert.equal(err.code, 'ERR_PG_SESSION_INVALID_OPTION')
      assert.match(err.message, /created_at/)
      return true
    })
    assert.throws(() => storeOn({ maxLifetime: 2000, columns: { last_seen: 'last_seen' } }), { code: 'ERR_PG_SESSION_INVALID_OPTION' })
    const columns = { created_at: 'created_at' }
    for (const bad of [0, -1, 1.5, NaN, Infinity, 3155760000000 + 1]) {
      assert.throws(() => storeOn({ maxLifetime: bad, columns }), { name: 'RangeError', code: 'ERR_PG_SESSION_INVALID_OPTION', message: /maxLifetime/ }, String(bad))
    }
    assert.throws(() => storeOn({ maxLifetime: '2000', columns }), { name: 'TypeError', code: 'ERR_PG_SESSION_INVALID_OPTION' })
    storeOn({ maxLifetime: 1, columns })
    storeOn({ maxLifetime: 3155760000000, columns })
    assert.throws(() => storeOn({ extraColumns: { ip: 'ip' } }), { code: 'ERR_PG_SESSION_INVALID_OPTION', message: /extraColumns/ })
    assert.throws(() => storeOn({ extraColumns: ['ip'] }), { code: 'ERR_PG_SESSION_INVALID_OPTION', message: /extraColumns/ })
    // An extra column cannot be one the store writes itself.
    for (const name of ['sid', 'expire', 'user_id', 'created_at']) {
      assert.throws(() => storeOn({ columns: COLUMNS, extraColumns: { [name]: () => 'x' } }), { code: 'ERR_PG_SESSION_INVALID_OPTION' }, name)
    }
  })
})

describe('existing tables', () => {
  test('a table without the columns: ready() and calls reject with ERR_PG_SESSION_SCHEMA holding the ALTER TABLE to run', async () => {
    const all = { created_at: 'timestamp(6) NULL', last_seen: 'timestamptz NULL', user_agent: 'text NULL', ip: 'text NULL' }
    // A table lacking each column in turn (the others there, a timestamptz last_seen among them).
    for (const missing of Object.keys(all)) {
      const table = uniqueName('devold')
      const present = Object.entries(all).filter(([name]) => name !== missing).map(([name, type]) => `, "${name}" ${type}`).join('')
      await withClient((c) => c.query(`CREATE TABLE "${table}" (sid varchar PRIMARY KEY, sess json NOT NULL, expire timestamp(6) NOT NULL, user_id varchar NULL${present})`))
      const store = storeOn({ ...DEVICE_OPTIONS, maxLifetime: HOUR, createTableIfMissing: false }, table)
      const check = (err) => {
        assert.equal(err.code, 'ERR_PG_SESSION_SCHEMA')
        assert.match(err.message, new RegExp(`ALTER TABLE "${table}" ADD COLUMN "${missing}" ${missing.endsWith('_at') || missing === 'last_seen' ? 'timestamp' : 'text'}`))
        return true
      }
      await assert.rejects(store.ready(), check, missing)
      await assert.rejects(store.set('a', sess()), check, missing)
      await assert.rejects(store.listUserSessions('u1'), check, missing)
    }
    // All of them missing: one message names each, with every ALTER TABLE (no fix-and-retry loop).
    const table = uniqueName('devold')
    await withClient((c) => c.query(`CREATE TABLE "${table}" (sid varchar PRIMARY KEY, sess json NOT NULL, expire timestamp(6) NOT NULL, user_id varchar NULL)`))
    const store = storeOn({ ...DEVICE_OPTIONS, maxLifetime: HOUR, createTableIfMissing: false }, table)
    await assert.rejects(store.ready(), (err) => {
      assert.equal(err.code, 'ERR_PG_SESSION_SCHEMA')
      for (const name of Object.keys(all)) assert.match(err.message, new RegExp(`ALTER TABLE "${table}" ADD COLUMN "${name}" `))
      assert.match(err.message, /CREATE INDEX IF NOT EXISTS "IDX_devold_\w+_created_at"/)
      return true
    })
  })

  test('rows written before the columns existed read fine, are not limited, list last, and get created_at at their next set', async () => {
    const table = uniqueName('devmig')
    // Custom names, a timestamptz last_seen: the store uses what it is given.
    const columns = { user_id: 'owner', created_at: 'signed_in_at', last_seen: 'active_at' }
    await withClient(async (c) => {
      await c.query(`CREATE TABLE "${table}" (sid varchar PRIMARY KEY, sess json NOT NULL, expire timestamp(6) NOT NULL, owner varchar NULL)`)
      // Written by hand, as an older version (or connect-pg-simple) left it.
      await c.query(`INSERT INTO "${table}" (sid, sess, expire, owner) VALUES ('before', $1, localtimestamp + interval '1 hour', 'u6')`,
        [JSON.stringify(sess({ passport: { user: 'u6' }, n: 1 }))])
      await c.query(`ALTER TABLE "${table}" ADD COLUMN signed_in_at timestamp(6) NULL, ADD COLUMN active_at timestamptz NULL, ADD COLUMN ip text NULL`)
    })
    const store = storeOn({ columns, extraColumns: { ip: EXTRA.ip }, maxLifetime: HOUR, createTableIfMissing: false }, table)
    await store.set('after', sess({ passport: { user: 'u6' }, device: { ip: '10.1.1.1' } }))
    assert.equal((await store.get('before')).n, 1, 'a row with no created_at is not limited')
    const list = await store.listUserSessions('u6')
    assert.deepEqual(list.map((r) => r.sid), ['after', 'before'], 'rows without last_seen list last')
    assert.equal(list[1].createdAt, null)
    assert.equal(list[1].lastSeen, null)
    assert.deepEqual(list[1].extra, { ip: null })
    assert.ok(list[0].createdAt instanceof Date && list[0].lastSeen instanceof Date)
    assert.deepEqual(list[0].extra, { ip: '10.1.1.1' })

    await store.set('before', sess({ passport: { user: 'u6' }, n: 2 }))
    const [row] = await rawRows(table, "sid = 'before'")
    assert.ok(row.signed_in_at instanceof Date && row.active_at instanceof Date, 'written by the set')
    const listed = (await store.listUserSessions('u6')).find((r) => r.sid === 'before')
    assert.ok(Math.abs(listed.createdAt.getTime() - Date.now()) < 10000, listed.createdAt.toISOString())
    assert.equal((await store.get('before')).n, 2)
    // From now on it is limited like any other.
    await withClient((c) => c.query(`UPDATE "${table}" SET signed_in_at = signed_in_at - interval '61 minutes' WHERE sid = 'before'`))
    assert.equal(await store.get('before'), null)
  })
})

describe('review findings', () => {
  test('a NOT NULL created_at / last_seen / extra column is refused at first use with the ALTER TABLE that drops NOT NULL (a tombstone writes NULL there)', async () => {
    const table = uniqueName('devnn')
    await withClient((c) => c.query(`CREATE TABLE "${table}" (sid varchar PRIMARY KEY, sess json NOT NULL, expire timestamp(6) NOT NULL,
      user_id varchar NULL, created_at timestamptz NOT NULL DEFAULT now(), last_seen timestamptz NOT NULL DEFAULT now(), user_agent text NULL, ip text NULL)`))
    const store = storeOn({ ...DEVICE_OPTIONS, createTableIfMissing: false }, table)
    await assert.rejects(store.ready(), (err) => {
      assert.equal(err.code, 'ERR_PG_SESSION_SCHEMA')
      assert.match(err.message, new RegExp(`ALTER TABLE "${table}" ALTER COLUMN "created_at" DROP NOT NULL;\\nALTER TABLE "${table}" ALTER COLUMN "last_seen" DROP NOT NULL;`))
      return true
    })
    await withClient((c) => c.query(`ALTER TABLE "${table}" ALTER COLUMN created_at DROP NOT NULL, ALTER COLUMN last_seen DROP NOT NULL`))
    const fixed = storeOn({ ...DEVICE_OPTIONS, createTableIfMissing: false }, table)
    await fixed.set('a', sess({ passport: { user: 'u9' } }))
    await fixed.destroy('a')
    assert.equal(await fixed.get('a'), null)
  })

  test('a missing owner column is named with the other missing columns, in one message', async () => {
    const table = uniqueName('devmiss')
    await withClient((c) => c.query(`CREATE TABLE "${table}" (sid varchar PRIMARY KEY, sess json NOT NULL, expire timestamp(6) NOT NULL, user_agent text NULL, ip text NULL)`))
    const store = storeOn({ ...DEVICE_OPTIONS, createTableIfMissing: false }, table)
    await assert.rejects(store.ready(), (err) => {
      assert.equal(err.code, 'ERR_PG_SESSION_SCHEMA')
      for (const name of ['user_id', 'created_at', 'last_seen']) assert.match(err.message, new RegExp(`ALTER TABLE "${table}" ADD COLUMN "${name}" `))
      return true
    })
  })

  test('a value a typed extra column refuses (out of range) fails that set without the value in the message', async () => {
    const table = uniqueName('devrange')
    await withClient((c) => c.query(`CREATE TABLE "${table}" (sid varchar PRIMARY KEY, sess json NOT NULL, expire timestamp(6) NOT NULL, logins integer NULL, big bigint NULL)`))
    const store = storeOn({ createTableIfMissing: false, extraColumns: { logins: (s) => s.logins, big: (s) => s.big } }, table)
    await assert.rejects(store.set('a', sess({ logins: '99999999999' })), (err) => {
      assert.equal(err.code, '22003')
      assert.doesNotMatch(`${err.message}\n${err.stack}`, /99999999999/)
      return true
    })
    // A bigint beyond 2^53 reads back exactly (as text, not a rounded number).
    const big = uniqueName('devbig')
    await withClient((c) => c.query(`CREATE TABLE "${big}" (sid varchar PRIMARY KEY, sess json NOT NULL, expire timestamp(6) NOT NULL, owner varchar NULL, big bigint NULL)`))
    const exact = storeOn({ createTableIfMissing: false, columns: { user_id: 'owner' }, extraColumns: { big: (s) => s.big } }, big)
    await exact.set('b', sess({ passport: { user: 'u8' }, big: '9007199254740993' }))
    assert.equal((await exact.listUserSessions('u8'))[0].extra.big, '9007199254740993')
  })

  test('prune deletes a session both expired and past maxLifetime (no tombstone for it); destroyUserSessions counts only what the list shows', async () => {
    const table = uniqueName('devexp')
    const store = storeOn({ ...DEVICE_OPTIONS, maxLifetime: HOUR }, table)
    await store.set('expired-and-aged', sess({ passport: { user: 'u7' } }, Date.now() - 1000))
    await store.set('aged', sess({ passport: { user: 'u7' } }))
    await store.set('live', sess({ passport: { user: 'u7' } }))
    await withClient((c) => c.query(`UPDATE "${table}" SET created_at = created_at - interval '2 hours' WHERE sid <> 'live'`))
    assert.deepEqual((await store.listUserSessions('u7')).map((r) => r.sid), ['live'])
    assert.equal(await store.destroyUserSessions('u7'), 1)
    await store.pruneSessions()
    const rows = await rawRows(table)
    assert.deepEqual(rows.map((r) => r.sid).sort(), ['aged', 'live'], 'the expired one is deleted, the aged one kept as a tombstone')
    assert.ok(rows.every((r) => r.user_agent === null && r.created_at === null), 'both are tombstones now')
  })
})
