// Public typings of express-pg-session (hand-written; `binding.d.ts` types the native half).

import type { EventEmitter } from 'node:events'
import type { SessionData } from 'express-session'
import type { StoreStats } from './binding'

declare namespace expressPgSession {
  /** pg's `ssl` option: `true` checks the certificate and host name against the Mozilla roots. */
  type SslOption =
    | boolean
    | 'disable' | 'prefer' | 'require' | 'verify-ca' | 'verify-full' | 'no-verify'
    | {
      /** false: encrypt but accept any certificate (`no-verify`). Default true. */
      rejectUnauthorized?: boolean
      /** Certificate authorities to trust, PEM. */
      ca?: string | Buffer | Array<string | Buffer>
      /** Client certificate chain, PEM. */
      cert?: string | Buffer | Array<string | Buffer>
      /** Client private key, PEM. */
      key?: string | Buffer
      /** Given: the chain is checked, the host name is not (`verify-ca`). */
      checkServerIdentity?: (...args: any[]) => unknown
      /** Explicit libpq mode; overrides the fields above. */
      mode?: 'disable' | 'prefer' | 'require' | 'verify-ca' | 'verify-full' | 'no-verify'
    }

  /** pg's connection config, as given to `new pg.Pool(…)`. */
  interface ConnectionConfig {
    /** `postgres://user:password@host:port/database?sslmode=…`, or `socket:/dir?db=…`. Wins over the fields. */
    connectionString?: string
    /** Host name or IP; a path starting with `/` is a Unix socket directory. */
    host?: string
    port?: number | string
    user?: string
    password?: string
    database?: string
    application_name?: string
    /** Milliseconds before PostgreSQL cancels a statement. */
    statement_timeout?: number
    /** Milliseconds a statement may go unanswered before the call fails and its connection is closed. Default 10000. */
    query_timeout?: number
    ssl?: SslOption
    /** Connections this store opens (per server). Default 10. */
    max?: number
    /** Longest wait to connect or for a free connection, in ms. Default 5000; 0 means the default. */
    connectionTimeoutMillis?: number
    /** Close connections idle this long, in ms. Default 10000; 0 keeps them open. */
    idleTimeoutMillis?: number
  }

  /** Column names of the session table. */
  interface Columns {
    /** The session id column (primary key). Default `sid`. */
    session_id?: string
    /** The session data column: json, jsonb or text. Default `sess`. */
    session_data?: string
    /** The expiry column: timestamp or timestamptz. Default `expire`. */
    expire?: string
    /** The owner column, for listUserSessions/destroyUserSessions (filled by `userId`). Default: none. */
    user_id?: string
    /** When the session was first saved (timestamp or timestamptz); kept by later saves. Needed by `maxLifetime`. Default: none. */
    created_at?: string
    /** When the session was last saved or touched in the database (timestamp or timestamptz), as fresh as `touchAfter` allows. Default: none. */
    last_seen?: string
  }

  /** What an `extraColumns` function may give: undefined stores NULL; anything else fails that set (`ERR_PG_SESSION_EXTRA_COLUMN`). */
  type ExtraColumnValue = string | number | bigint | boolean | null | undefined

  /** An extra column's value as listUserSessions reads it back (a text column gives strings). */
  type ExtraColumnResult = string | number | boolean | null

  interface DestroyUserSessionsOptions {
    /** Keep this session (the current one: `req.sessionID`). */
    except?: string | null
    /** Destroy only these of the user's sessions, by the `sid` listUserSessions gave (hashed with `hashSessionIds`). */
    sids?: string[]
  }

  /** One live session of a user, as `listUserSessions` gives it. */
  interface UserSession {
    /** The id as stored: with `hashSessionIds`, its SHA-256 in hex (compare `req.sessionID` hashed). */
    sid: string
    session: SessionData
    expires: Date
    /** With `columns.created_at`: when the session was first saved; null for a row written before the column existed. */
    createdAt?: Date | null
    /** With `columns.last_seen`: its last save or touch that reached the database; null for a row written before the column existed. */
    lastSeen?: Date | null
    /** With `extraColumns`: each column's value, as the column holds it. */
    extra?: { [column: string]: ExtraColumnResult }
  }

  interface Options {
    /** A pg.Pool: its settings (and `max`) are used for the store's own connections; it is never ended. */
    pool?: { options?: object }
    /** A pg-promise database: its `$cn` settings are used. */
    pgPromise?: { $cn?: string | ConnectionConfig, any: (...args: any[]) => unknown }
    /** A connection string; default `process.env.DATABASE_URL`, then pg's `PG*` variables. */
    conString?: string
    /** A pg connection config object. */
    conObject?: ConnectionConfig
    /** Read replicas for get/all/ids/length; writes always go to the primary. */
    replicas?: Array<string | ConnectionConfig>
    /** Schema of the table. Default: the connection's search_path. */
    schemaName?: string
    /** Table name. Default `session`. */
    tableName?: string
    /** Column names. Default `{ session_id: 'sid', session_data: 'sess', expire: 'expire' }`. */
    columns?: Columns
    /** Create the table (and schema) on first use when missing. Default false. */
    createTableIfMissing?: boolean
    /** On a Citus coordinator, `createTableIfMissing` distributes the table it creates on the session id column; false keeps it a local table. Default true. */
    distributeTable?: boolean
    /** On Citus, send each shard's statements straight to the worker node holding it (up to `max` connections per node); false: everything through the coordinator. Default true. */
    routeToNodes?: boolean
    /** Seconds a session lives in the database; when given it decides the expiry (over the cookie). */
    ttl?: number | ((sess: any) => number)
    /** Make `touch` a no-op. Default false. */
    disableTouch?: boolean
    /**
     * Skip a touch, and let a set keep the stored expiry, while the expiry this store last wrote
     * for the session is less than this many seconds behind the new one (and not later than it);
     * 0 writes every expiry. Default: 1 % of the session's remaining lifetime, at most 60 seconds.
     */
    touchAfter?: number
    /** Seconds between prunes of expired sessions, or false. Default 60. */
    pruneSessionInterval?: number | false
    /** Spreads prunes of several processes; default: 50–150% of the interval. */
    pruneSessionRandomizedInterval?: false | ((delay: number) => number)
    /** Rows deleted per statement while pruning. Default 20000. */
    pruneBatchSize?: number
    /** false: unnamed statements, for PgBouncer in transaction mode. Default true. */
    preparedStatements?: boolean
    /** Emit `disconnect`/`connect` so express-session skips sessions while the database is away. Default false. */
    connectionEvents?: boolean
    /** Where background errors (pruning) are reported. Default console.error. */
    errorLog?: (...args: any[]) => void
    /** How sessions become text and back. Default JSON. */
    serializer?: { stringify: (sess: any) => string, parse: (text: string) => any }
    /** Milliseconds a statement may go unanswered before the call fails and its connection is closed (pg's `query_timeout`). Default 10000. */
    queryTimeout?: number
    /** A destroyed session's id stays destroyed: late `set`/`touch` calls are dropped (a tombstone row). Default true. */
    tombstones?: boolean
    /** The user a session belongs to, written to `columns.user_id` on every set. Default: passport's `sess.passport?.user`. */
    userId?: (sess: SessionData) => string | number | bigint | null | undefined
    /** Encrypts session data (AES-256-GCM) with a key from the first secret; every secret decrypts (rotation). 16+ characters. */
    secret?: string | string[]
    /** Stores the SHA-256 of each session id, never the id itself. Default false. */
    hashSessionIds?: boolean
    /**
     * Columns filled from the session on every set, e.g. `{ user_agent: (s) => s.device?.ua ?? null }`.
     * Stored in clear, also with `secret`: keep secrets out. Default: none.
     */
    extraColumns?: { [column: string]: (sess: SessionData) => ExtraColumnValue }
    /**
     * Absolute timeout in milliseconds (1 to 100 years): a session older than `columns.created_at` plus this reads
     * as missing, whatever its touches did; prune turns it into a tombstone. Needs `columns.created_at`. Default: none.
     */
    maxLifetime?: number
  }

  type Callback<T> = (err: Error | null, value?: T) => void

  /**
   * The store class; errors carry a stable `code` (see the README). Sessions are express-session's
   * `SessionData`, so fields you declare on it (declaration merging) are typed here too.
   */
  interface PGStore extends EventEmitter {
    /** The live session, or null when there is none (missing, expired or unreadable). */
    get (sid: string, cb: Callback<SessionData | null>): void
    get (sid: string): Promise<SessionData | null>
    set (sid: string, sess: SessionData, cb: (err?: Error | null) => void): void
    set (sid: string, sess: SessionData): Promise<void>
    touch (sid: string, sess: SessionData, cb: (err?: Error | null) => void): void
    touch (sid: string, sess: SessionData): Promise<void>
    destroy (sid: string, cb: (err?: Error | null) => void): void
    destroy (sid: string): Promise<void>
    all (cb: Callback<SessionData[]>): void
    all (): Promise<SessionData[]>
    ids (cb: Callback<string[]>): void
    ids (): Promise<string[]>
    length (cb: Callback<number>): void
    length (): Promise<number>
    clear (cb: (err?: Error | null) => void): void
    clear (): Promise<void>
    /** The live sessions of one user (`columns.user_id`): the latest `last_seen` first when configured, else the latest expiry first. */
    listUserSessions (userId: string | number | bigint, cb: Callback<UserSession[]>): void
    listUserSessions (userId: string | number | bigint): Promise<UserSession[]>
    /** Destroys the live sessions of one user: all but `except` (a session id, as `req.sessionID`), or only `sids` (ids as listUserSessions gives them); the value is how many. */
    destroyUserSessions (userId: string | number | bigint, options: DestroyUserSessionsOptions | null, cb: Callback<number>): void
    destroyUserSessions (userId: string | number | bigint, cb: Callback<number>): void
    destroyUserSessions (userId: string | number | bigint, options?: DestroyUserSessionsOptions | null): Promise<number>
    /** Deletes expired sessions now (the value is how many), then re-arms the timer. */
    pruneSessions (cb: Callback<number>): void
    pruneSessions (): Promise<number>
    /** Stops the timers and closes the store's own connections. */
    close (cb: (err?: Error | null) => void): void
    close (): Promise<void>
    /** Resolves once the database answers and the table is usable (created first with `createTableIfMissing`); rejects with the coded error calls would meet. */
    ready (cb: (err?: Error | null) => void): void
    ready (): Promise<void>
    /** Pool sizes of the primary and each replica, completed calls by method, failures by code. */
    stats (): StoreStats
    readonly closed: boolean
    // express-session's Store helpers.
    regenerate (req: any, cb: (err?: any) => void): void
    load (sid: string, cb: (err: any, session?: any) => void): void
    createSession (req: any, session: any): any
  }

  interface PGStoreConstructor {
    new (options?: Options): PGStore
  }

  /** The `code` of every error the store raises itself; database errors carry their SQLSTATE. */
  type ErrorCode =
    | 'ERR_PG_SESSION_CLOSED'
    | 'ERR_PG_SESSION_INVALID_OPTION'
    | 'ERR_PG_SESSION_INVALID_ARG'
    | 'ERR_PG_SESSION_SERIALIZE'
    | 'ERR_PG_SESSION_CONNECT'
    | 'ERR_PG_SESSION_TIMEOUT'
    | 'ERR_PG_SESSION_CONNECTION_LOST'
    | 'ERR_PG_SESSION_TLS'
    | 'ERR_PG_SESSION_NO_TABLE'
    | 'ERR_PG_SESSION_SCHEMA'
    | 'ERR_PG_SESSION_ENCRYPT'
    | 'ERR_PG_SESSION_EXTRA_COLUMN'
    | 'ERR_PG_SESSION_NO_BINARY'

  type StoreStatsResult = StoreStats

  /** What the factory takes: express-session, or Express 3's `express` / Connect (which hold it at `.session`). */
  type SessionModule =
    | { Store: abstract new (...args: any[]) => any }
    | { session: { Store: abstract new (...args: any[]) => any } }
}

/**
 * `require('express-pg-session')(session)`: pass express-session (or Express 3's `express`,
 * or Connect) and get the store class.
 */
declare function expressPgSession (session: expressPgSession.SessionModule): expressPgSession.PGStoreConstructor

export = expressPgSession
