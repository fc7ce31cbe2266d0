'use strict'

// Fastify with @fastify/session and sessions in PostgreSQL. Run: `npm run example:fastify`
// (or `node examples/fastify.js`), then open http://localhost:3000 and reload.

const Fastify = require('fastify')
const session = require('express-session')
const PGStore = require('express-pg-session')(session)
const { database, closeOnSignal } = require('./database')

async function main () {
  const db = await database()
  // @fastify/session calls only get/set/destroy, with callbacks: any express-session store fits.
  const store = new PGStore({
    conString: db.url,
    tableName: process.env.SESSION_TABLE || 'example_sessions',
    createTableIfMissing: true,
  })

  const app = Fastify()
  await app.register(require('@fastify/cookie'))
  await app.register(require('@fastify/session'), {
    store,
    secret: process.env.COOKIE_SECRET || 'an example secret of at least 32 characters',
    saveUninitialized: false,
    cookie: { secure: false, maxAge: 24 * 60 * 60 * 1000 }, // secure: true behind HTTPS
  })
  app.get('/', async (req) => {
    const views = (req.session.get('views') || 0) + 1
    req.session.set('views', views)
    return { views }
  })
  app.get('/stats', async () => store.stats())
  app.post('/logout', async (req) => {
    await req.session.destroy()
    return { ok: true }
  })

  const address = await app.listen({ port: Number(process.env.PORT || 3000), host: '127.0.0.1' })
  console.log(`listening on ${address.replace('127.0.0.1', 'localhost')}`)
  closeOnSignal([() => app.close(), () => store.close(), () => db.stop()])
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
