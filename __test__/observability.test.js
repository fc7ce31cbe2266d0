'use strict'

// store.stats() (pool state, operations and errors by kind) and the opt-in connect/disconnect
// events, end to end with express-session on a PostgreSQL server this file stops and restarts.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { once } = require('node:events')
const express = require('express')
const request = require('supertest')
const { PGStore, DATABASE_URL, session, makeStore, uniqueName } = require('./helpers')
const { startServer } = require('./pg-server')

const SECRET = 'observability secret'
const cookie = () => ({ cookie: { expires: new Date(Date.now() + 3600000).toISOString() } })

/** @param {Record<string, number>} before @param {Record<string, number>} after */
function delta (before, after) {
  /** @type {Record<string, number>} */
  const changed = {}
  for (const key of new Set([...Object.keys(before), ...Object.keys(after)])) {
    const d = (after[key] || 0) - (before[key] || 0)
    if (d !== 0) changed[key] = d
  }
  return changed
}

test('stats() has the pool state and counts every operation by method', async () => {
  // touchAfter: 0: the touch goes to the database (by default one soon after a set is skipped).
  const store = makeStore({ conObject: { connectionString: DATABASE_URL, max: 3 }, touchAfter: 0 })
  try {
    const fresh = store.stats()
    assert.deepEqual(fresh.primary, { maxSize: 3, size: 0, idle: 0, waiting: 0 })
    assert.deepEqual(fresh.replicas, [])
    assert.deepEqual(fresh.errors, {})

    const before = fresh.operations
    await store.set('a', cookie())
    await store.set('b', cookie())
    await store.get('a')
    await store.get('missing')
    await store.touch('a', cookie())
    await store.destroy('b')
    await store.all()
    await store.ids()
    await store.length()
    await store.pruneSessions()
    await store.clear()
    assert.deepEqual(delta(before, store.stats().operations), {
      set: 2, get: 2, touch: 1, destroy: 1, all: 1, ids: 1, length: 1, prune: 1, clear: 1,
    })

    // Twenty calls at once on three connections: the pool never grows past its maximum.
    await Promise.all(Array.from({ length: 20 }, (_, i) => store.set(`s${i}`, cookie())))
    const busy = store.stats()
    assert.equal(busy.primary.maxSize, 3)
    assert.ok(busy.primary.size >= 1 && busy.primary.size <= 3, JSON.stringify(busy.primary))
    assert.equal(busy.primary.idle, busy.primary.size, 'nothing in use once every call returned')
    assert.equal(busy.primary.waiting, 0)
    assert.equal(busy.operations.set, 22)
  } finally {
    await store.close()
  }
})

test('stats() counts errors by code', async () => {
  const store = makeStore({ tableName: uniqueName('missing'), createTableIfMissing: false })
  try {
    const err = await store.get('x').then(() => null, (e) => e)
    assert.ok(err instanceof Error)
    assert.equal(typeof err.code, 'string')
    await assert.rejects(store.set('x', cookie()), { code: err.code })
    const stats = store.stats()
    assert.deepEqual(stats.errors, { [err.code]: 2 })
    assert.equal(stats.operations.get, 0, 'failed calls are not counted as operations')
    assert.equal(stats.operations.set, 0)
  } finally {
    await store.close()
  }
})

test('connectionEvents: disconnect while the database is down, sessions skipped, connect when it is back', async (t) => {
  const server = await startServer()
  t.after(() => server.destroy())
  const tableName = uniqueName('events')
  const store = new PGStore({
    conString: server.url,
    tableName,
    createTableIfMissing: true,
    pruneSessionInterval: false,
    connectionEvents: true,
  })
  // The same database without the option: it must never emit.
  const quiet = new PGStore({ conString: server.url, tableName, pruneSessionInterval: false })
  t.after(() => store.close())
  t.after(() => quiet.close())
  /** @type {string[]} */
  const events = []
  store.on('connect', () => events.push('connect'))
  store.on('disconnect', (/** @type {any} */ err) => events.push(`disconnect:${err && err.code}`))
  quiet.on('disconnect', () => events.push('quiet:disconnect'))
  quiet.on('connect', () => events.push('quiet:connect'))

  const app = express()
  app.use(session({ store, secret: SECRET, resave: false, saveUninitialized: false }))
  app.get('/visit', (req, res) => {
    if (!req.session) return res.json({ session: false })
    req.session.visits = (req.session.visits || 0) + 1
    res.json({ session: true, visits: req.session.visits })
  })
  app.use((/** @type {any} */ err, /** @type {any} */ req, /** @type {any} */ res, /** @type {any} */ next) => {
    void next
    res.status(503).json({ code: err.code })
  })

  const first = await request(app).get('/visit').expect(200)
  assert.deepEqual(first.body, { session: true, visits: 1 })
  const cookieHeader = first.headers['set-cookie'][0].split(';')[0]
  assert.equal((await quiet.length()), 1)
  assert.deepEqual(events, [])

  await server.stop()
  const disconnected = once(store, 'disconnect')
  // The first request after the outage meets the error; it reaches the app's error handler.
  const failed = await request(app).get('/visit').set('Cookie', cookieHeader).expect(503)
  assert.match(failed.body.code, /^(ERR_PG_SESSION_(CONNECT|CONNECTION_LOST|TIMEOUT)|57P0[123])$/)
  const [reason] = await disconnected
  assert.equal(reason.code, failed.body.code, 'the disconnect event carries the error')
  await assert.rejects(quiet.length(), (/** @type {any} */ e) => typeof e.code === 'string')

  // express-session now serves requests without a session instead of failing them.
  const degraded = await request(app).get('/visit').set('Cookie', cookieHeader).expect(200)
  assert.deepEqual(degraded.body, { session: false })

  const reconnected = once(store, 'connect')
  await server.start()
  await reconnected
  const back = await request(app).get('/visit').set('Cookie', cookieHeader).expect(200)
  assert.deepEqual(back.body, { session: true, visits: 2 }, 'the session from before the outage is intact')
  assert.deepEqual(events, [`disconnect:${failed.body.code}`, 'connect'], 'one disconnect, one connect, none from the quiet store')
  assert.ok((store.stats().errors[failed.body.code] || 0) >= 1, 'the outage is counted in stats().errors')
})
