// The ESM typings (index.d.mts, koa.d.mts) as an ESM TypeScript app imports them, by the
// package's own name through its `exports` (nodenext resolution).
import session from 'express-session'
import pgSession from 'express-pg-session'
import type { Options } from 'express-pg-session'
import koaStore from 'express-pg-session/koa'
import type { Options as KoaOptions, KoaPGStore } from 'express-pg-session/koa'

const PGStore = pgSession(session)
const options: Options = { conString: 'postgres://localhost/db', tableName: 'sessions' }
const expressStore = new PGStore(options)
void expressStore.ready()

const koaOptions: KoaOptions = { conString: 'postgres://localhost/db', touchAfter: 60 }
const store: KoaPGStore = koaStore(koaOptions)
void store.get('sid', 86400000, { rolling: false })
void store.close()

// @ts-expect-error a table name is a string
koaStore({ tableName: 42 })
