'use strict'

// express-pg-session/koa end to end: Koa 3 and koa-session 7 over HTTP (supertest), with a fake
// clock as in express.test.js: login, a later request, logout (a tombstone), rolling without a
// data rewrite, maxAge 'session', custom columns, sign out everywhere, a bad option's code.

const { test, describe, beforeEach, afterEach } = require('node:test')
const assert = require('node:assert/strict')
const Koa = require('koa')
const { createSession } = require('koa-session')
const request = require('supertest')
const koaStore = require('../koa')
const { PGStore, DATABASE_URL, uniqueName, withClient, cleanUpAfter, notTombstone } = require('./helpers')

const MINUTE = 60 * 1000
const DAY = 24 * 60 * MINUTE
// koa-session gives the store its maxAge plus 10 s, so the row outlives the cookie.
const STORE_MARGIN = 10000

const stores = []
const tables = []
cleanUpAfter(stores, tables)

// A fake clock: Date.now() (koa-session's and the store's) moves only when the test says so.
const realNow = Date.now
let offset = 0
const advance = (ms) => { offset += ms }

/**
 * A Koa app with koa-session on a store of its own table.
 * @param {object} [storeOptions] @param {object} [sessionOptions]
 */
function app (storeOptions = {}, sessionOptions = {}) {
  const table = storeOptions.tableName || uniqueName('koa')
  tables.push(table)
  const store = koaStore({ conString: DATABASE_URL, tableName: table, createTableIfMissing: true, pruneSessionInterval: false, ...storeOptions })
  stores.push(store)
  const server = new Koa()
  server.keys = ['test secret']
  server.use(createSession({ store, maxAge: 30 * MINUTE, ...sessionOptions }, server))
  server.use(async (ctx) => {
    switch (ctx.path) {
      case '/login':
        ctx.session.user = ctx.query.user || 'alice'
        ctx.body = { user: ctx.session.user }
        break
      case '/me':
        ctx.body = { user: ctx.session.user || null }
        break
      case '/count':
        ctx.session.views = (ctx.session.views || 0) + 1
        ctx.body = { views: ctx.session.views }
        break
      case '/regenerate':
        await ctx.session.regenerate()
        ctx.body = { user: ctx.session.user || null }
        break
      case '/short':
        ctx.session.maxAge = 5 * MINUTE
        ctx.body = { user: ctx.session.user || null }
        break
      case '/logout':
        ctx.session = null
        ctx.body = { ok: true }
        break
      case '/everywhere':
        ctx.body = { destroyed: await store.destroyUserSessions(ctx.session.user, { except: ctx.session.externalKey }) }
        break
      default:
        ctx.status = 404
    }
  })
  return { server: server.callback(), store, table }
}

/** The Cookie header to send next: the cookies a response set, or the ones sent before. */
function cookieFrom (res, previous = '') {
  const set = res.headers['set-cookie']
  return set ? set.map((c) => c.split(';')[0]).join('; ') : previous
}

/** The session key (koa-session's external key) a Cookie header holds. */
function keyOf (cookie) {
  return /koa\.sess=([^;]+)/.exec(cookie)[1]
}

/** The row of a key: its data as stored (text) and parsed, its expiry in ms; tombstones too. */
async function rowOf (table, key, { sid = 'sid', data = 'sess', expire = 'expire' } = {}) {
  return withClient(async (c) => {
    const { rows } = await c.query(`SELECT "${data}"::text AS text, extract(epoch FROM "${expire}") * 1000 AS expire_ms, ${notTombstone(expire)} AS live FROM "${table}" WHERE "${sid}" = $1`, [key])
    return rows[0] && { text: rows[0].text, sess: JSON.parse(rows[0].text), expireMs: Number(rows[0].expire_ms), live: rows[0].live }
  })
}

describe('koa-session end to end', () => {
  beforeEach(() => {
    offset = 0
    Date.now = () => realNow() + offset
  })
  afterEach(() => { Date.now = realNow })

  test('login, a later request, logout: the row is koa-session\'s data, then a tombstone no late set revives', { timeout: 20000 }, async () => {
    const { server, store, table } = app()
    const login = await request(server).get('/login').expect(200, { user: 'alice' })
    const cookie = cookieFrom(login)
    const key = keyOf(cookie)
    const row = await rowOf(table, key)
    assert.equal(row.sess.user, 'alice')
    assert.equal(row.sess._maxAge, 30 * MINUTE)
    assert.ok(Math.abs(row.expireMs - (Date.now() + 30 * MINUTE + STORE_MARGIN)) < 2000, 'the row expires maxAge (+10 s) from now')

    advance(5 * MINUTE)
    await request(server).get('/me').set('Cookie', cookie).expect(200, { user: 'alice' })

    const logout = await request(server).get('/logout').set('Cookie', cookie).expect(200)
    assert.match(logout.headers['set-cookie'].join(), /koa\.sess=;/, 'the cookie is cleared')
    assert.equal((await rowOf(table, key)).live, false, 'destroy leaves a tombstone')
    await request(server).get('/me').set('Cookie', cookie).expect(200, { user: null })
    // A request of the signed-out client still running writes late: the tombstone drops it.
    await store.set(key, { user: 'alice', _expire: Date.now() + MINUTE, _maxAge: MINUTE }, MINUTE + STORE_MARGIN, { rolling: false, changed: true })
    assert.equal(await store.get(key, MINUTE, { rolling: false }), null)
    await request(server).get('/me').set('Cookie', cookie).expect(200, { user: null })
  })

  test('rolling with an unchanged session moves the expiry without rewriting the data (touchAfter: 0)', { timeout: 20000 }, async () => {
    const maxAge = 10 * MINUTE
    const { server, table } = app({ touchAfter: 0 }, { rolling: true, maxAge })
    let cookie = cookieFrom(await request(server).get('/login').expect(200))
    const key = keyOf(cookie)
    const before = await rowOf(table, key)

    advance(8 * MINUTE)
    cookie = cookieFrom(await request(server).get('/me').set('Cookie', cookie).expect(200, { user: 'alice' }), cookie)
    const touched = await rowOf(table, key)
    assert.equal(touched.text, before.text, 'the data is not rewritten (its _expire included)')
    assert.ok(Math.abs(touched.expireMs - before.expireMs - 8 * MINUTE) < 2000, 'the expiry moved by the clock\'s delta')

    // Past the first maxAge, within the rolled one: the data's old _expire does not end the session.
    advance(8 * MINUTE)
    cookie = cookieFrom(await request(server).get('/me').set('Cookie', cookie).expect(200, { user: 'alice' }), cookie)
    assert.ok((await rowOf(table, key)).expireMs > touched.expireMs)

    // A change is written in full; so is a regenerated session (changed: false, a new key).
    await request(server).get('/count').set('Cookie', cookie).expect(200, { views: 1 })
    const changed = await rowOf(table, key)
    assert.equal(changed.sess.views, 1)
    assert.ok(changed.sess._expire > Date.now(), 'a full write carries the new _expire')
    const regenerated = await request(server).get('/regenerate').set('Cookie', cookie).expect(200, { user: 'alice' })
    const newKey = keyOf(cookieFrom(regenerated))
    assert.notEqual(newKey, key)
    assert.equal((await rowOf(table, newKey)).sess.user, 'alice')
    assert.equal((await rowOf(table, key)).live, false, 'the old key is destroyed')

    // Past the rolled expiry, the session is gone.
    advance(maxAge + STORE_MARGIN + MINUTE)
    await request(server).get('/me').set('Cookie', cookieFrom(regenerated)).expect(200, { user: null })
  })

  test('rolling: a new session.maxAge (koa-session says changed: false) is written in full, not touched', { timeout: 20000 }, async () => {
    const { server, table } = app({ touchAfter: 0 }, { rolling: true })
    const cookie = cookieFrom(await request(server).get('/login').expect(200))
    const key = keyOf(cookie)
    advance(MINUTE)
    await request(server).get('/short').set('Cookie', cookie).expect(200, { user: 'alice' })
    const row = await rowOf(table, key)
    assert.equal(row.sess._maxAge, 5 * MINUTE, 'the data carries the new maxAge')
    assert.ok(Math.abs(row.expireMs - (Date.now() + 5 * MINUTE + STORE_MARGIN)) < 2000)
    await request(server).get('/me').set('Cookie', cookie).expect(200, { user: 'alice' })
  })

  test('maxAge: \'session\' stores for the ttl default: a day, or `ttl` seconds', { timeout: 20000 }, async () => {
    for (const [storeOptions, lifetime] of [[{}, DAY], [{ ttl: 3600 }, 3600 * 1000]]) {
      const { server, table } = app(storeOptions, { maxAge: 'session' })
      const login = await request(server).get('/login').expect(200)
      assert.doesNotMatch(login.headers['set-cookie'][0], /expires=/, 'a browser-session cookie')
      const cookie = cookieFrom(login)
      const row = await rowOf(table, keyOf(cookie))
      assert.equal(row.sess._session, true)
      assert.equal(row.sess._expire, undefined)
      assert.ok(Math.abs(row.expireMs - (Date.now() + lifetime)) < 2000, `expires in ${lifetime} ms`)
      await request(server).get('/me').set('Cookie', cookie).expect(200, { user: 'alice' })
    }
  })

  test('custom columns on jsonb and timestamptz', { timeout: 20000 }, async () => {
    const table = uniqueName('koa_cols')
    await withClient((c) => c.query(`CREATE TABLE "${table}" (id varchar PRIMARY KEY, data jsonb NOT NULL, expires_at timestamptz NOT NULL)`))
    const columns = { session_id: 'id', session_data: 'data', expire: 'expires_at' }
    const { server } = app({ tableName: table, createTableIfMissing: false, columns })
    const cookie = cookieFrom(await request(server).get('/login?user=bob').expect(200))
    const row = await rowOf(table, keyOf(cookie), { sid: 'id', data: 'data', expire: 'expires_at' })
    assert.equal(row.sess.user, 'bob')
    assert.ok(Math.abs(row.expireMs - (Date.now() + 30 * MINUTE + STORE_MARGIN)) < 2000)
    await request(server).get('/me').set('Cookie', cookie).expect(200, { user: 'bob' })
  })

  test('sign out everywhere: three clients of one user, destroyUserSessions from one', { timeout: 20000 }, async () => {
    const { server, store } = app({ columns: { user_id: 'user_id' }, userId: (sess) => sess.user })
    const clients = []
    for (let i = 0; i < 3; i++) clients.push(cookieFrom(await request(server).get('/login?user=carol').expect(200)))
    const other = cookieFrom(await request(server).get('/login?user=dave').expect(200))
    assert.equal((await store.listUserSessions('carol')).length, 3)

    await request(server).get('/everywhere').set('Cookie', clients[0]).expect(200, { destroyed: 2 })
    await request(server).get('/me').set('Cookie', clients[0]).expect(200, { user: 'carol' })
    await request(server).get('/me').set('Cookie', clients[1]).expect(200, { user: null })
    await request(server).get('/me').set('Cookie', clients[2]).expect(200, { user: null })
    await request(server).get('/me').set('Cookie', other).expect(200, { user: 'dave' })
    const left = await store.listUserSessions('carol')
    assert.deepEqual(left.map((s) => s.sid), [keyOf(clients[0])])
  })

  test('a bad option is refused with the Express store\'s code and message', { timeout: 20000 }, () => {
    for (const options of [{ ttl: '1 day' }, { touchAfter: -1 }, { columns: { nope: 'x' } }, { userId: () => 1 }]) {
      let expressError
      try {
        new PGStore({ conString: DATABASE_URL, ...options })
      } catch (err) {
        expressError = err
      }
      assert.ok(expressError, `the Express store refuses ${JSON.stringify(options)}`)
      assert.throws(() => koaStore({ conString: DATABASE_URL, ...options }), (err) => {
        assert.equal(err.code, 'ERR_PG_SESSION_INVALID_OPTION')
        assert.equal(err.constructor, expressError.constructor)
        assert.equal(err.message, expressError.message)
        return true
      })
    }
  })

  test('a maxAge koa-session cannot mean is refused, nothing written; the store is an EventEmitter with the shared calls', { timeout: 20000 }, async () => {
    const { store } = app()
    await store.ready()
    await assert.rejects(store.set('k', { a: 1 }, '1 day', {}), { code: 'ERR_PG_SESSION_INVALID_ARG', name: 'TypeError' })
    await assert.rejects(store.set('k', { a: 1 }, Infinity, {}), { code: 'ERR_PG_SESSION_INVALID_ARG', name: 'RangeError' })
    assert.equal(await store.get('k', 1000, {}), null)
    assert.ok(store instanceof require('node:events').EventEmitter)
    assert.ok(store instanceof koaStore.KoaPGStore)
    assert.equal(typeof store.stats().operations, 'object')
    assert.equal(typeof await store.pruneSessions(), 'number')
  })
})
