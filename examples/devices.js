'use strict'

// A "where you're signed in" page: each of a user's sessions with its device, when it signed in
// and when it was last active, and "sign out my other devices". Run: `node examples/devices.js`,
// then `curl -c jar -X POST 'localhost:3000/login?user=ada'` and `curl -b jar localhost:3000/devices`.
// (A real app logs in with passport, which fills `session.passport.user` as this one does.)

const express = require('express')
const session = require('express-session')
const PGStore = require('express-pg-session')(session)
const { database, closeOnSignal } = require('./database')

async function main () {
  const db = await database()
  const store = new PGStore({
    conString: db.url,
    tableName: process.env.SESSION_TABLE || 'example_devices',
    createTableIfMissing: true, // adds the columns below
    columns: { user_id: 'user_id', created_at: 'created_at', last_seen: 'last_seen' },
    extraColumns: { user_agent: (s) => s.device?.ua ?? null, ip: (s) => s.device?.ip ?? null },
    maxLifetime: 14 * 24 * 60 * 60 * 1000, // ends 14 days after login, however active
  })

  const app = express()
  app.use(session({
    store,
    secret: process.env.COOKIE_SECRET || 'example secret, set COOKIE_SECRET in production',
    resave: false,
    saveUninitialized: false,
    cookie: { maxAge: 24 * 60 * 60 * 1000 },
  }))
  app.post('/login', (req, res, next) => req.session.regenerate((err) => {
    if (err) return next(err)
    req.session.passport = { user: String(req.query.user || 'ada') }
    req.session.device = { ip: req.ip, ua: req.get('user-agent') || 'unknown' }
    req.session.save((err) => (err ? next(err) : res.json({ signedIn: req.session.passport.user })))
  }))
  const signedIn = (req, res, next) => (req.session.passport ? next() : res.status(401).json({ error: 'not signed in' }))
  app.get('/devices', signedIn, (req, res, next) => {
    store.listUserSessions(req.session.passport.user) // last active first
      .then((list) => res.json(list.map((s) => ({
        current: s.sid === req.sessionID,
        device: s.extra.user_agent,
        ip: s.extra.ip,
        signedIn: s.createdAt,
        lastActive: s.lastSeen,
      }))))
      .catch(next)
  })
  app.post('/signout-others', signedIn, (req, res, next) => {
    store.destroyUserSessions(req.session.passport.user, { except: req.sessionID })
      .then((n) => res.json({ signedOut: n }))
      .catch(next)
  })

  const server = app.listen(Number(process.env.PORT || 3000), () => {
    console.log(`listening on http://localhost:${server.address().port}`)
  })
  closeOnSignal([() => new Promise((resolve) => server.close(resolve)), () => store.close(), () => db.stop()])
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
