// Public typings of express-pg-session/koa: a koa-session 7 external store. The options are the
// Express store's (index.d.ts); only `userId` and a `ttl` function see koa-session's data.

import type { EventEmitter } from 'node:events'
import type { StoreStats } from './binding'
import type expressPgSession = require('./index.js')

declare namespace koaPgSession {
  /** A session as koa-session stores it: your fields, plus `_expire`/`_maxAge` (or `_session`). */
  interface KoaSessionData {
    [key: string]: any
  }

  /** The Express store's options (docs/options.md); `ttl` is the expiry of `maxAge: 'session'` sessions. */
  interface Options extends Omit<expressPgSession.Options, 'userId' | 'ttl' | 'extraColumns'> {
    /** Seconds a `maxAge: 'session'` session lives in the database. Default one day. A number maxAge always decides. */
    ttl?: number | ((sess: KoaSessionData) => number)
    /** The user a session belongs to, written to `columns.user_id` on every set. */
    userId?: (sess: KoaSessionData) => string | number | bigint | null | undefined
    /** Columns filled from the session at each set (docs/options.md), e.g. `{ user_agent: (s) => s.ua }`. */
    extraColumns?: { [column: string]: (sess: KoaSessionData) => expressPgSession.ExtraColumnValue }
  }

  type ConnectionConfig = expressPgSession.ConnectionConfig
  type Columns = expressPgSession.Columns
  type DestroyUserSessionsOptions = expressPgSession.DestroyUserSessionsOptions
  type ErrorCode = expressPgSession.ErrorCode
  type StoreStatsResult = StoreStats

  /** One live session of a user, as `listUserSessions` gives it. */
  interface UserSession {
    /** The id as stored: with `hashSessionIds`, its SHA-256 in hex. */
    sid: string
    session: KoaSessionData
    expires: Date
    /** With `columns.created_at`: when the session was first saved; null for a row written before the column existed. */
    createdAt?: Date | null
    /** With `columns.last_seen`: its last save or touch that reached the database; null for a row written before the column existed. */
    lastSeen?: Date | null
    /** With `extraColumns`: each column's value, as the column holds it. */
    extra?: { [column: string]: expressPgSession.ExtraColumnResult }
  }

  type Callback<T> = (err: Error | null, value?: T) => void

  /** The store: koa-session's get/set/destroy, and the Express store's other calls. */
  interface KoaPGStore extends EventEmitter {
    /** koa-session: the live session, or null. */
    get (key: string, maxAge?: number | 'session', options?: { rolling?: boolean, ctx?: any }): Promise<KoaSessionData | null>
    /** koa-session: writes the session to expire `maxAge` ms from now (`'session'`: `ttl`, by default a day). */
    set (key: string, sess: KoaSessionData, maxAge?: number | 'session', options?: { rolling?: boolean, changed?: boolean, ctx?: any }): Promise<void>
    /** koa-session: destroys the session (a tombstone, unless `tombstones: false`). */
    destroy (key: string, options?: { ctx?: any }): Promise<void>
    all (cb: Callback<KoaSessionData[]>): void
    all (): Promise<KoaSessionData[]>
    ids (cb: Callback<string[]>): void
    ids (): Promise<string[]>
    length (cb: Callback<number>): void
    length (): Promise<number>
    clear (cb: (err?: Error | null) => void): void
    clear (): Promise<void>
    /** The live sessions of one user (`columns.user_id`), the latest expiry first. */
    listUserSessions (userId: string | number | bigint, cb: Callback<UserSession[]>): void
    listUserSessions (userId: string | number | bigint): Promise<UserSession[]>
    /** Destroys the live sessions of one user: all but `except` (a session id, as `ctx.session.externalKey`), or only `sids`; the value is how many. */
    destroyUserSessions (userId: string | number | bigint, options: DestroyUserSessionsOptions | null, cb: Callback<number>): void
    destroyUserSessions (userId: string | number | bigint, cb: Callback<number>): void
    destroyUserSessions (userId: string | number | bigint, options?: DestroyUserSessionsOptions | null): Promise<number>
    /** Deletes expired sessions now (the value is how many), then re-arms the timer. */
    pruneSessions (cb: Callback<number>): void
    pruneSessions (): Promise<number>
    /** Stops the timers and closes the store's own connections. */
    close (cb: (err?: Error | null) => void): void
    close (): Promise<void>
    /** Resolves once the database answers and the table is usable; rejects with the coded error calls would meet. */
    ready (cb: (err?: Error | null) => void): void
    ready (): Promise<void>
    /** Pool sizes of the primary and each replica, completed calls by method, failures by code. */
    stats (): StoreStats
    readonly closed: boolean
  }

  interface KoaPGStoreConstructor {
    new (options?: Options): KoaPGStore
  }
}

/** `require('express-pg-session/koa')(options)`: a koa-session external store (`session({ store }, app)`). */
declare const koaPgSession: {
  (options?: koaPgSession.Options): koaPgSession.KoaPGStore
  /** The class, for `instanceof`. */
  KoaPGStore: koaPgSession.KoaPGStoreConstructor
}

export = koaPgSession
