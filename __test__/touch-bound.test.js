'use strict'

// The touch deferral never logs an active user out: whatever `touchAfter` says (5 s, a day as
// connect-mongo's docs use, with or without resave), a session used every 300 ms with a 2 s
// lifetime stays alive, because the stored expiry never lags by half the remaining lifetime.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const express = require('express')
const request = require('supertest')
const { PGStore, DATABASE_URL, uniqueName, session, cleanUpAfter } = require('./helpers')
const { sleep } = require('./fault-kit')

const MAX_AGE_MS = 2000
const EVERY_MS = 300
const FOR_MS = 4000

const stores = []
const tables = []
cleanUpAfter(stores, tables)

function app (storeOptions, sessionOptions = {}) {
  const tableName = uniqueName('touchbound')
  tables.push(tableName)
  const store = new PGStore({ conString: DATABASE_URL, tableName, createTableIfMissing: true, pruneSessionInterval: false, ...storeOptions })
  stores.push(store)
  const server = express()
  server.use(session({ store, secret: 'test secret', resave: false, saveUninitialized: false, rolling: true, cookie: { maxAge: MAX_AGE_MS }, ...sessionOptions }))
  server.post('/login', (req, res) => {
    req.session.user = 'alice'
    res.json({ ok: true })
  })
  server.get('/me', (req, res) => (req.session.user ? res.json({ user: req.session.user }) : res.status(401).end()))
  return server
}

/** Logs in, then asks /me every 300 ms for 4 s; the times (ms) of the 401s. */
async function loggedOutAt (server) {
  const agent = request.agent(server)
  await agent.post('/login').expect(200)
  const started = Date.now()
  const out = []
  while (Date.now() - started < FOR_MS) {
    await sleep(EVERY_MS)
    const res = await agent.get('/me')
    if (res.status !== 200) out.push(Date.now() - started)
  }
  return out
}

for (const [name, storeOptions, sessionOptions] of [
  ['touchAfter: 5 (s), above the 2 s lifetime', { touchAfter: 5 }, {}],
  ['touchAfter: 86400 (connect-mongo\'s example)', { touchAfter: 86400 }, {}],
  ['touchAfter: 86400 with resave: true', { touchAfter: 86400 }, { resave: true }],
  ['the default bound', {}, {}],
]) {
  test(`${name}: a user active every 300 ms with maxAge 2 s is never logged out`, { timeout: 20000 }, async (t) => {
    const out = await loggedOutAt(app(storeOptions, sessionOptions))
    t.diagnostic(`401s at ${out.length ? out.join(', ') + ' ms' : 'none'}`)
    assert.deepEqual(out, [])
  })
}
