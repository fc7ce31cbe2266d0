'use strict'

// A plain Express app with sessions in PostgreSQL. Run: `npm run example:express`
// (or `node examples/express.js`), then open http://localhost:3000 and reload.

const express = require('express')
const session = require('express-session')
const PGStore = require('express-pg-session')(session)
const { database, closeOnSignal } = require('./database')

async function main () {
  const db = await database()
  const store = new PGStore({
    conString: db.url,
    tableName: process.env.SESSION_TABLE || 'example_sessions',
    createTableIfMissing: true,
    connectionEvents: true, // serve pages without sessions while the database is away
  })
  store.on('disconnect', (err) => console.warn('session store disconnected:', err.code))
  store.on('connect', () => console.warn('session store connected again'))

  const app = express()
  app.use(session({
    store,
    secret: process.env.COOKIE_SECRET || 'example secret, set COOKIE_SECRET in production',
    resave: false,
    saveUninitialized: false,
    cookie: { maxAge: 24 * 60 * 60 * 1000 },
  }))
  app.get('/', (req, res) => {
    if (!req.session) return res.json({ views: null, note: 'the session store is unavailable' })
    req.session.views = (req.session.views || 0) + 1
    res.json({ views: req.session.views })
  })
  app.get('/stats', (req, res) => res.json(store.stats()))
  app.post('/logout', (req, res, next) => req.session.destroy((err) => (err ? next(err) : res.json({ ok: true }))))

  const server = app.listen(Number(process.env.PORT || 3000), () => {
    console.log(`listening on http://localhost:${server.address().port}`)
  })
  closeOnSignal([() => new Promise((resolve) => server.close(resolve)), () => store.close(), () => db.stop()])
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
