'use strict'

// End to end over HTTP in each framework the store is used with: Express 4, Express 5, Connect
// (all through express-session) and Fastify (through @fastify/session, which calls only get, set
// and destroy, with callbacks). Each checks that the row lands in PostgreSQL, that a second
// request with the cookie sees the session, and that logging out deletes the row.

const { test, after } = require('node:test')
const assert = require('node:assert/strict')
const request = require('supertest')
const session = require('express-session')
const { PGStore, DATABASE_URL, uniqueName, withClient, notTombstone } = require('./helpers')

const SECRET = 'a secret of at least thirty-two characters!'
/** @type {Array<{ close(): Promise<void> }>} */
const stores = []

after(async () => {
  for (const store of stores) await store.close()
})

/** A store on a table of its own, made now (the first request may not reach the store). @param {string} tableName */
async function storeFor (tableName) {
  const store = new PGStore({ conString: DATABASE_URL, tableName, createTableIfMissing: true, pruneSessionInterval: false })
  stores.push(store)
  await store.length()
  return store
}

/** @param {string} tableName @returns {Promise<Array<{ sid: string, sess: any, expire: Date }>>} */
async function rows (tableName) {
  const { rows } = await withClient((c) => c.query(`SELECT sid, sess, expire FROM ${tableName} WHERE ${notTombstone()}`))
  return rows
}

/** The `name=value` pair of the session cookie in a response. */
function sessionCookie (res, name = 'connect.sid') {
  // One cookie comes as a string from light-my-request, as an array from supertest.
  const cookies = [].concat(res.headers['set-cookie'] || [])
  const found = cookies.find((/** @type {string} */ c) => c.startsWith(`${name}=`))
  assert.ok(found, `the response sets ${name}: ${JSON.stringify(cookies)}`)
  return found.split(';')[0]
}

/** express-session for Express and Connect, on a table of its own. */
async function expressSession (tableName) {
  return session({
    store: await storeFor(tableName),
    secret: SECRET,
    resave: false,
    saveUninitialized: false,
    cookie: { maxAge: 3600000 },
  })
}

/**
 * The same three-request story for every express-session app.
 * @param {any} server an http handler
 * @param {string} tableName
 */
async function loginStory (server, tableName) {
  const agent = request(server)
  const anonymous = await agent.get('/me').expect(200)
  assert.equal(JSON.parse(anonymous.text).user, null)
  assert.equal((await rows(tableName)).length, 0, 'an uninitialised session is not saved')

  const login = await agent.post('/login').expect(200)
  const cookie = sessionCookie(login)
  const stored = await rows(tableName)
  assert.equal(stored.length, 1)
  assert.equal(stored[0].sess.user, 'alice')
  assert.ok(stored[0].expire.getTime() > Date.now(), 'expiry in the future')
  const sid = decodeURIComponent(cookie.split('=')[1]).slice(2).split('.')[0]
  assert.equal(stored[0].sid, sid, 'the row is keyed by the cookie\'s session id')

  const me = await agent.get('/me').set('Cookie', cookie).expect(200)
  assert.deepEqual(JSON.parse(me.text), { user: 'alice', views: 2 })
  assert.equal((await rows(tableName))[0].sess.views, 2, 'the change was saved')

  await agent.post('/logout').set('Cookie', cookie).expect(200)
  assert.equal((await rows(tableName)).length, 0, 'logout destroyed the row')
  const after = await agent.get('/me').set('Cookie', cookie).expect(200)
  assert.equal(JSON.parse(after.text).user, null)
}

/** Routes for Express 4 and 5. */
function expressRoutes (app) {
  app.get('/me', (req, res) => {
    if (req.session.user) req.session.views = (req.session.views || 0) + 1
    res.json({ user: req.session.user || null, ...(req.session.user ? { views: req.session.views } : {}) })
  })
  app.post('/login', (req, res, next) => {
    req.session.regenerate((err) => {
      if (err) return next(err)
      req.session.user = 'alice'
      req.session.views = 1
      res.json({ ok: true })
    })
  })
  app.post('/logout', (req, res, next) => {
    req.session.destroy((err) => (err ? next(err) : res.json({ ok: true })))
  })
  return app
}

test('Express 4 with express-session', async () => {
  const express = require('express')
  const tableName = uniqueName('fw_express4')
  const app = express()
  app.use(await expressSession(tableName))
  await loginStory(expressRoutes(app), tableName)
})

test('Express 5 with express-session (async handlers)', async () => {
  const express5 = require('express5')
  const tableName = uniqueName('fw_express5')
  const app = express5()
  app.use(await expressSession(tableName))
  // Express 5 forwards a rejected handler to the error handler: promisified session calls are the idiom.
  app.get('/me', async (req, res) => {
    if (req.session.user) req.session.views = (req.session.views || 0) + 1
    res.json({ user: req.session.user || null, ...(req.session.user ? { views: req.session.views } : {}) })
  })
  app.post('/login', async (req, res) => {
    await new Promise((resolve, reject) => req.session.regenerate((err) => (err ? reject(err) : resolve(undefined))))
    req.session.user = 'alice'
    req.session.views = 1
    await new Promise((resolve, reject) => req.session.save((err) => (err ? reject(err) : resolve(undefined))))
    res.json({ ok: true })
  })
  app.post('/logout', async (req, res) => {
    await new Promise((resolve, reject) => req.session.destroy((err) => (err ? reject(err) : resolve(undefined))))
    res.json({ ok: true })
  })
  await loginStory(app, tableName)
})

test('Connect with express-session', async () => {
  const connect = require('connect')
  const tableName = uniqueName('fw_connect')
  const app = connect()
  app.use(await expressSession(tableName))
  const json = (res, value) => {
    res.setHeader('Content-Type', 'application/json')
    res.end(JSON.stringify(value))
  }
  app.use('/me', (req, res) => {
    if (req.session.user) req.session.views = (req.session.views || 0) + 1
    json(res, { user: req.session.user || null, ...(req.session.user ? { views: req.session.views } : {}) })
  })
  app.use('/login', (req, res, next) => {
    req.session.regenerate((err) => {
      if (err) return next(err)
      req.session.user = 'alice'
      req.session.views = 1
      json(res, { ok: true })
    })
  })
  app.use('/logout', (req, res, next) => {
    req.session.destroy((err) => (err ? next(err) : json(res, { ok: true })))
  })
  await loginStory(app, tableName)
})

test('Fastify 5 with @fastify/session', async (t) => {
  const Fastify = require('fastify')
  const tableName = uniqueName('fw_fastify')
  const app = Fastify()
  t.after(() => app.close())
  await app.register(require('@fastify/cookie'))
  await app.register(require('@fastify/session'), {
    secret: SECRET,
    store: await storeFor(tableName),
    saveUninitialized: false,
    cookie: { secure: false, maxAge: 3600000 },
  })
  app.get('/me', async (req) => {
    const user = req.session.get('user')
    if (user) req.session.set('views', (req.session.get('views') || 0) + 1)
    return { user: user || null, ...(user ? { views: req.session.get('views') } : {}) }
  })
  app.post('/login', async (req) => {
    await req.session.regenerate()
    req.session.set('user', 'alice')
    req.session.set('views', 1)
    return { ok: true }
  })
  app.post('/logout', async (req) => {
    await req.session.destroy()
    return { ok: true }
  })

  const anonymous = await app.inject({ method: 'GET', url: '/me' })
  assert.equal(anonymous.statusCode, 200)
  assert.equal(anonymous.json().user, null)
  assert.equal((await rows(tableName)).length, 0)

  const login = await app.inject({ method: 'POST', url: '/login' })
  assert.equal(login.statusCode, 200)
  const cookie = sessionCookie(login, 'sessionId')
  const stored = await rows(tableName)
  assert.equal(stored.length, 1)
  assert.equal(stored[0].sess.user, 'alice')
  assert.ok(stored[0].expire.getTime() > Date.now() + 3000000, 'the expiry follows the cookie maxAge')
  assert.ok(decodeURIComponent(cookie).includes(stored[0].sid), 'the cookie carries the stored session id')

  const me = await app.inject({ method: 'GET', url: '/me', headers: { cookie } })
  assert.equal(me.statusCode, 200)
  assert.deepEqual(me.json(), { user: 'alice', views: 2 })
  assert.equal((await rows(tableName))[0].sess.views, 2)

  const logout = await app.inject({ method: 'POST', url: '/logout', headers: { cookie } })
  assert.equal(logout.statusCode, 200)
  assert.equal((await rows(tableName)).length, 0, 'destroy removed the row')
  const after = await app.inject({ method: 'GET', url: '/me', headers: { cookie } })
  assert.equal(after.json().user, null)
})
