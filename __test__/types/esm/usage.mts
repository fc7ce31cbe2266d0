// The ESM typings (index.d.mts, koa.d.mts) as an ESM TypeScript app imports them, by the
// package's own name through its `exports` (nodenext resolution).
import session from 'express-session'
import type { SessionData } from 'express-session'
import pgSession from 'express-pg-session'
import type { Options, UserSession, ExtraColumnValue } from 'express-pg-session'
import koaStore from 'express-pg-session/koa'
import type { Options as KoaOptions, KoaPGStore } from 'express-pg-session/koa'

const PGStore = pgSession(session)
const options: Options = { conString: 'postgres://localhost/db', tableName: 'sessions' }
const expressStore = new PGStore(options)
void expressStore.ready()

const ua = (s: SessionData): ExtraColumnValue => s.device?.ua ?? null
const devicesStore = new PGStore({
  columns: { user_id: 'user_id', created_at: 'created_at', last_seen: 'last_seen' },
  extraColumns: { user_agent: ua },
  maxLifetime: 86400000,
})
void devicesStore.listUserSessions('u1').then((list: UserSession[]) => list[0]?.lastSeen?.toISOString())

const koaOptions: KoaOptions = { conString: 'postgres://localhost/db', touchAfter: 60 }
const store: KoaPGStore = koaStore(koaOptions)
void store.get('sid', 86400000, { rolling: false })
void store.close()

// @ts-expect-error a table name is a string
koaStore({ tableName: 42 })

declare module 'express-session' {
  interface SessionData {
    device?: { ip?: string, ua?: string }
  }
}
