'use strict'

// A plain Koa app with koa-session keeping its sessions in PostgreSQL. Run: `npm run example:koa`
// (or `node examples/koa.js`), then open http://localhost:3000 and reload.

const Koa = require('koa')
const { createSession } = require('koa-session')
const koaStore = require('express-pg-session/koa')
const { database, closeOnSignal } = require('./database')

async function main () {
  const db = await database()
  const store = koaStore({
    conString: db.url,
    tableName: process.env.SESSION_TABLE || 'example_sessions',
    createTableIfMissing: true,
  })
  await store.ready() // fail at boot, not on the first request, when the database is unusable

  const app = new Koa()
  app.keys = [process.env.COOKIE_SECRET || 'example secret, set COOKIE_SECRET in production']
  app.use(createSession({ store, maxAge: 24 * 60 * 60 * 1000, rolling: true }, app))
  app.use(async (ctx) => {
    if (ctx.method === 'GET' && ctx.path === '/') {
      ctx.session.views = (ctx.session.views || 0) + 1
      ctx.body = { views: ctx.session.views }
    } else if (ctx.method === 'GET' && ctx.path === '/stats') {
      ctx.body = store.stats()
    } else if (ctx.method === 'POST' && ctx.path === '/logout') {
      ctx.session = null
      ctx.body = { ok: true }
    } else {
      ctx.status = 404
    }
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
