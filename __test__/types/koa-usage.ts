// Compiled by types.test.js with strict tsc: express-pg-session/koa's typings as Koa users write
// against them, with koa-session 7's own typings (koa itself ships none: the app is typed loosely).
import session from 'koa-session'
import koaStore from '../../koa'
import type { Options, KoaPGStore, UserSession, ErrorCode } from '../../koa'

declare const app: { use: (middleware: unknown) => unknown, keys: string[] }

const options: Options = {
  conString: 'postgres://localhost/app',
  tableName: 'koa_sessions',
  columns: { session_data: 'data', expire: 'expires_at', user_id: 'user_id' },
  userId: (sess) => sess.user,
  ttl: (sess) => (sess.admin ? 600 : 86400),
  touchAfter: 60,
  createTableIfMissing: true,
  tombstones: true,
  secret: ['a long random secret, 16+'],
}
const store: KoaPGStore = koaStore(options)
app.use(session({ store, maxAge: 86400000, rolling: true }, app))
app.use(session({ store: koaStore(), maxAge: 'session' }, app))

async function calls (): Promise<void> {
  await store.ready()
  const sess = await store.get('key', 1000, { rolling: false, ctx: {} })
  if (sess) {
    const user: unknown = sess.user
    await store.set('key', { ...sess, user }, 86400000, { rolling: true, changed: false, ctx: {} })
  }
  await store.set('key', { n: 1 }, 'session')
  await store.destroy('key', { ctx: {} })
  const mine: UserSession[] = await store.listUserSessions('u1')
  const destroyed: number = await store.destroyUserSessions('u1', { except: 'key' })
  const pruned: number = await store.pruneSessions()
  console.log(mine.length, destroyed, pruned, store.stats().operations, store.closed)
  store.on('disconnect', (err: Error) => console.error(err))
  await store.close()
  // @ts-expect-error maxAge is milliseconds or 'session'
  await store.set('key', {}, '1 day')
  // @ts-expect-error get has no callback form: koa-session awaits it
  store.get('key', (err: Error) => err)
}

try {
  koaStore({ tableName: 'x' })
} catch (err) {
  const code = (err as { code?: ErrorCode }).code
  if (code === 'ERR_PG_SESSION_INVALID_OPTION') console.error('bad option')
}

// @ts-expect-error ttl is seconds, not a string
koaStore({ ttl: '1 day' })
// @ts-expect-error userId must return an id, not an object
koaStore({ columns: { user_id: 'uid' }, userId: (sess) => ({ id: sess.user }) })
void calls
