// A TypeScript Express app with typed session data. Run: `npm run example:typescript`
// (or `npx tsx examples/typescript/app.ts`); type-check: `npx tsc -p examples/typescript`.

import express from 'express'
import session from 'express-session'
import pgSession from 'express-pg-session'
import { database, closeOnSignal } from '../database'

// What this app keeps in a session; req.session.views is typed from here on.
declare module 'express-session' {
  interface SessionData {
    views: number
  }
}

const PGStore = pgSession(session)

async function main (): Promise<void> {
  const db = await database()
  const options: pgSession.Options = {
    conString: db.url,
    tableName: process.env.SESSION_TABLE || 'example_sessions',
    createTableIfMissing: true,
    ttl: 24 * 60 * 60,
  }
  const store = new PGStore(options)

  const app = express()
  app.use(session({
    store,
    secret: process.env.COOKIE_SECRET ?? 'example secret, set COOKIE_SECRET in production',
    resave: false,
    saveUninitialized: false,
  }))
  app.get('/', (req, res) => {
    req.session.views = (req.session.views ?? 0) + 1
    res.json({ views: req.session.views })
  })
  app.get('/stats', (_req, res) => {
    const stats: pgSession.StoreStatsResult = store.stats()
    res.json(stats)
  })

  const server = app.listen(Number(process.env.PORT ?? 3000), () => {
    const address = server.address()
    console.log(`listening on http://localhost:${typeof address === 'object' && address ? address.port : ''}`)
  })
  closeOnSignal([() => new Promise((resolve) => server.close(resolve)), () => store.close(), () => db.stop()])
}

main().catch((err: unknown) => {
  console.error(err)
  process.exit(1)
})
