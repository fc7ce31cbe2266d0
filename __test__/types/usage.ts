// Compiled by types.test.js with strict tsc: the public typings as users write against them.
import session from 'express-session'
import express from 'express'
import pg from 'pg'
import pgSession from '../..'
import type { Options, PGStore, ErrorCode, UserSession } from '../..'

const PGStoreClass = pgSession(session)
const pool = new pg.Pool({ connectionString: 'postgres://localhost/app', max: 5 })

const options: Options = {
  pool,
  schemaName: 'app',
  tableName: 'user_sessions',
  columns: { session_id: 'sid', session_data: 'sess', expire: 'expires_at' },
  createTableIfMissing: true,
  ttl: (sess) => (sess.admin ? 600 : 86400),
  disableTouch: false,
  touchAfter: 60,
  pruneSessionInterval: 60,
  pruneSessionRandomizedInterval: (delay) => delay,
  pruneBatchSize: 1000,
  preparedStatements: false,
  connectionEvents: true,
  errorLog: console.error,
  serializer: JSON,
  replicas: ['postgres://replica/app', { host: 'replica2', ssl: { rejectUnauthorized: false } }],
}
const store: PGStore = new PGStoreClass(options)
new PGStoreClass({ conString: 'postgres://localhost/app', ttl: 3600 })
new PGStoreClass({ conObject: { host: '/var/run/postgresql', database: 'app', ssl: true, statement_timeout: 5000 } })
new PGStoreClass()

// It is an express-session store.
const app = express()
app.use(session({ store, secret: 'x', resave: false, saveUninitialized: false }))

async function promises (): Promise<void> {
  const sess = await store.get('sid')
  // express-session's SessionData, augmented below: typed fields, and null for no session.
  const visits: number | undefined = sess === null ? undefined : sess.visits
  void visits
  // @ts-expect-error a session may be missing: null must be handled
  void sess.cookie
  await store.set('sid', { cookie: new session.Cookie(), visits: 1 })
  await store.ready()
  new PGStoreClass({ conObject: { query_timeout: 5000 }, queryTimeout: 5000 })
  await store.touch('sid', { cookie: new session.Cookie() })
  await store.destroy('sid')
  const all: unknown[] = await store.all()
  const ids: string[] = await store.ids()
  const n: number = await store.length()
  const pruned: number = await store.pruneSessions()
  await store.clear()
  const stats = store.stats()
  const waiting: number = stats.primary.waiting
  const closed: boolean = store.closed
  await store.close()
  void [sess, all, ids, n, pruned, waiting, closed]
}

// Session security: tombstones, sign out everywhere, encryption at rest, hashed ids.
async function security (): Promise<void> {
  const secure = new PGStoreClass({
    columns: { user_id: 'user_id' },
    userId: (sess) => (sess.visits === undefined ? null : 'u1'),
    secret: ['new secret, long and random', 'old secret, long and random'],
    hashSessionIds: true,
    tombstones: true,
  })
  const devices: UserSession[] = await secure.listUserSessions('u1')
  const first: Date | undefined = devices[0]?.expires
  const destroyed: number = await secure.destroyUserSessions(42, { except: 'current-sid' })
  await secure.destroyUserSessions('u1')
  await secure.destroyUserSessions(7n, { sids: devices.map((d) => d.sid) })
  // @ts-expect-error the second argument is an options object, not a session id
  await secure.destroyUserSessions('u1', 'current-sid')
  secure.destroyUserSessions('u1', (err, n) => { void [err, n] })
  secure.listUserSessions(7, (err, list) => { void [err, list?.[0]?.session.cookie] })
  // @ts-expect-error userId must return an id, not an object
  new PGStoreClass({ columns: { user_id: 'u' }, userId: () => ({ id: 1 }) })
  // @ts-expect-error secret is a string or a list of strings
  new PGStoreClass({ secret: 42 })
  void [first, destroyed]
}

// Devices and lifetimes: created_at / last_seen, extra columns, an absolute timeout.
async function devices (): Promise<void> {
  const withDevices = new PGStoreClass({
    columns: { user_id: 'user_id', created_at: 'created_at', last_seen: 'last_seen' },
    extraColumns: {
      user_agent: (s) => s.device?.ua ?? null,
      ip: (s) => s.device?.ip,
      visits: (s) => s.visits ?? 0,
      admin: () => false,
    },
    maxLifetime: 12 * 60 * 60 * 1000,
  })
  const list: UserSession[] = await withDevices.listUserSessions('u1')
  for (const d of list) {
    const created: Date | null | undefined = d.createdAt
    const lastSeen: number | undefined = d.lastSeen?.getTime()
    const ua: string | number | boolean | null | undefined = d.extra?.user_agent
    // @ts-expect-error createdAt may be null (a row written before the column existed) or absent
    d.createdAt.getTime()
    void [created, lastSeen, ua]
  }
  const code: ErrorCode = 'ERR_PG_SESSION_EXTRA_COLUMN'
  // @ts-expect-error an extra column holds a string, number, boolean or null, not an object
  new PGStoreClass({ extraColumns: { device: (s) => s.device } })
  // @ts-expect-error maxLifetime is milliseconds, not a string
  new PGStoreClass({ columns: { created_at: 'created_at' }, maxLifetime: '12h' })
  void code
}

function callbacks (): void {
  store.get('sid', (err, sess) => { void [err, sess] })
  store.set('sid', { cookie: new session.Cookie() }, (err) => { void err })
  store.length((err, n) => { void [err, n] })
  store.pruneSessions((err, deleted) => { void [err, deleted] })
  store.on('disconnect', () => {})
}

const code: ErrorCode = 'ERR_PG_SESSION_CLOSED'

// @ts-expect-error ttl is seconds, not a string
new PGStoreClass({ ttl: '1h' })
// @ts-expect-error unknown column key
new PGStoreClass({ columns: { id: 'sid' } })
// @ts-expect-error pruneSessionInterval is seconds or false
new PGStoreClass({ pruneSessionInterval: true })

void [promises, callbacks, code, security, devices]

declare module 'express-session' {
  interface SessionData {
    visits?: number
    device?: { ip?: string, ua?: string }
  }
}
