'use strict'

// express-session end to end over HTTP (supertest), with a fake clock as apps' tests use:
// new sessions are stored, the cookie finds them again, touches move the expiry by the
// clock's delta, disableTouch keeps it, expired sessions vanish and are pruned.

const { test, describe, beforeEach, afterEach } = require('node:test')
const assert = require('node:assert/strict')
const express = require('express')
const request = require('supertest')
const { PGStore, DATABASE_URL, uniqueName, withClient, session, notTombstone } = require('./helpers')

const MINUTE = 60 * 1000
const MAX_AGE = 30 * MINUTE

// A fake clock in the style of sinon's: Date.now() moves only when the test says so.
const realNow = Date.now
let offset = 0
const advance = (ms) => { offset += ms }

/** An app counting visits in the session, on a store of its own table. */
function app (storeOptions = {}) {
  const table = uniqueName('express')
  const store = new PGStore({ conString: DATABASE_URL, tableName: table, createTableIfMissing: true, pruneSessionInterval: false, ...storeOptions })
  const server = express()
  server.use(session({ store, secret: 'test secret', resave: false, saveUninitialized: false, cookie: { maxAge: MAX_AGE } }))
  server.get('/count', (req, res) => {
    req.session.views = (req.session.views || 0) + 1
    res.json({ views: req.session.views })
  })
  server.get('/read', (req, res) => res.json({ views: req.session.views || 0 }))
  server.get('/logout', (req, res, next) => req.session.destroy((err) => err ? next(err) : res.json({ ok: true })))
  return { server, store, table }
}

/** The row of the session a Set-Cookie header names. */
async function rowOf (table, cookie) {
  const sid = decodeURIComponent(cookie.split(';')[0].split('=')[1]).slice(2).split('.')[0]
  return withClient(async (c) => {
    const { rows } = await c.query(`SELECT sid, sess::text AS sess, extract(epoch FROM expire) * 1000 AS expire_ms FROM "${table}" WHERE sid = $1 AND ${notTombstone()}`, [sid])
    return rows[0] && { sid: rows[0].sid, sess: JSON.parse(rows[0].sess), expireMs: Number(rows[0].expire_ms) }
  })
}

describe('express-session end to end', () => {
  beforeEach(() => {
    offset = 0
    Date.now = () => realNow() + offset
  })
  afterEach(() => { Date.now = realNow })

  test('a new session is stored and the cookie brings it back', async () => {
    const { server, store, table } = app()
    try {
      const first = await request(server).get('/count').expect(200, { views: 1 })
      const cookie = first.headers['set-cookie'][0]
      const row = await rowOf(table, cookie)
      assert.equal(row.sess.views, 1)
      await request(server).get('/count').set('Cookie', cookie).expect(200, { views: 2 })
      assert.equal((await rowOf(table, cookie)).sess.views, 2)
      assert.equal(await store.length(), 1)
      // Without the cookie it is another visitor.
      await request(server).get('/count').expect(200, { views: 1 })
      assert.equal(await store.length(), 2)
      await request(server).get('/logout').set('Cookie', cookie).expect(200)
      assert.equal(await rowOf(table, cookie), undefined)
    } finally {
      await store.close()
    }
  })

  test('a read-only request touches the session: the expiry moves by the clock\'s delta', async () => {
    const { server, store, table } = app()
    try {
      const cookie = (await request(server).get('/count')).headers['set-cookie'][0]
      const before = (await rowOf(table, cookie)).expireMs
      advance(10 * MINUTE)
      await request(server).get('/read').set('Cookie', cookie).expect(200, { views: 1 })
      const after = (await rowOf(table, cookie)).expireMs
      // The fake clock moved exactly 10 minutes; the real one a few ms.
      assert.ok(Math.abs(after - before - 10 * MINUTE) < 2000, `moved ${after - before} ms`)
    } finally {
      await store.close()
    }
  })

  test('with disableTouch the expiry stays', async () => {
    const { server, store, table } = app({ disableTouch: true })
    try {
      const cookie = (await request(server).get('/count')).headers['set-cookie'][0]
      const before = (await rowOf(table, cookie)).expireMs
      advance(10 * MINUTE)
      await request(server).get('/read').set('Cookie', cookie).expect(200, { views: 1 })
      assert.equal((await rowOf(table, cookie)).expireMs, before)
    } finally {
      await store.close()
    }
  })

  test('an expired session vanishes and is pruned', async () => {
    const { server, store, table } = app()
    try {
      const cookie = (await request(server).get('/count')).headers['set-cookie'][0]
      await request(server).get('/count').set('Cookie', cookie).expect(200, { views: 2 })
      advance(MAX_AGE + MINUTE)
      // The stored session is past its expiry by the app's clock: the visitor starts again.
      await request(server).get('/count').set('Cookie', cookie).expect(200, { views: 1 })
      assert.equal(await store.length(), 1)
      assert.equal(await store.pruneSessions(), 1)
      assert.equal(await rowOf(table, cookie), undefined)
    } finally {
      await store.close()
    }
  })

  test('a database error reaches express as a coded error, and the app keeps serving', async () => {
    const { server, store } = app()
    const errors = []
    server.use((err, req, res, _next) => { errors.push(err); res.status(503).json({ code: err.code }) })
    const cookie = (await request(server).get('/count')).headers['set-cookie'][0]
    await store.close()
    // Loading the session fails before the route runs: express-session hands the error to next().
    const res = await request(server).get('/count').set('Cookie', cookie).expect(503)
    assert.equal(res.body.code, 'ERR_PG_SESSION_CLOSED')
    assert.equal(errors.length, 1)
  })
})
