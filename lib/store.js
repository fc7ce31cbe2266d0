// @ts-check
'use strict'

// The express-session Store: the JS half of every call (the clock, JSON, ttl, callbacks and
// promises, timers, connection events). Every database call goes to the native store
// (src/store.rs); get, set, touch, destroy and clear take the ordered fast path (lib/calls.js).

const { codedError, fromNative, badOption } = require('./errors')
const { connectionFrom, primaryFrom, tableFrom, protectionFrom, validate, isObject, describe, MAX_TIMER_MS, MAX_TTL_SECONDS } = require('./options')
const { calls, settle } = require('./calls')
const { setTimeout, clearTimeout, afterTurn, nextTick } = require('./timers')

const ONE_DAY_SECONDS = 86400
const DEFAULT_PRUNE_INTERVAL_SECONDS = 60
const HEALTH_PROBE_MS = 1000
const TOUCH_MEMORY_LIMIT = 100000
// Without `touchAfter`, a touch is skipped while the expiry this store wrote is less than this
// far behind the new one: never more than a minute, nor more than 1 % of the session's remaining
// lifetime (36 s of an hour, 0.6 s of a minute).
const DEFAULT_TOUCH_LAG_MAX_MS = 60000
const DEFAULT_TOUCH_LAG_SHARE = 0.01
// Whatever `touchAfter` says, the stored expiry never lags the new one by half the session's
// remaining lifetime: a session used more often than that never expires (touchAfter ≥ maxAge
// would otherwise log active users out).
const TOUCH_LAG_SHARE_LIMIT = 0.5
// With the `u` flag a surrogate only matches when unpaired; NUL is the one control character
// PostgreSQL text cannot hold.
// oxlint-disable-next-line no-control-regex
const UNSTORABLE_SID = /[\u0000\uD800-\uDFFF]/u
// Codes after which the database is unreachable rather than the call wrong.
const CONNECTION_CODES = new Set([
  'ERR_PG_SESSION_CONNECT',
  'ERR_PG_SESSION_TIMEOUT',
  'ERR_PG_SESSION_CONNECTION_LOST',
  '57P01',
  '57P02',
  '57P03',
  '53300', // too many connections
])

// The fast path's calls (FastCall.op).
const GET = 0
const SET = 1
const TOUCH = 2
const DESTROY = 3
const CLEAR = 4
const ignore = () => {}

/**
 * One fast-path call from its start to its caller's answer, as one object (lib/calls.js holds
 * it by id and calls `done` with the native answer): no promise when a callback is given
 * (express-session always gives one), no closures per call. The callback is called once, never
 * before the call has returned (see `reply`); without one the promise is returned, and a
 * rejection nobody awaits is never an unhandled rejection.
 */
class FastCall {
  /**
   * @param {(call: FastCall, err: Error | null, value: any) => void} answer the store's
   * @param {number} op @param {string} sid @param {unknown} cb
   */
  constructor (answer, op, sid, cb) {
    this.answer = answer
    this.op = op
    this.sid = sid
    /** the expiry a set or touch sends, remembered once it is acknowledged */
    this.expireAt = 0
    /** a touch the shim did not send */
    this.skipped = false
    /** true until the start returns */
    this.starting = true
    /** its id in lib/calls.js's table once tracked (`track`), else 0 */
    this.id = 0
    /** @type {Function | undefined} */
    this.cb = typeof cb === 'function' ? cb : undefined
    /** @type {Promise<any> | undefined} */
    this.promise = undefined
    /** @type {(value: any) => void} */
    this.resolve = ignore
    /** @type {(err: Error) => void} */
    this.reject = ignore
    if (this.cb === undefined) {
      this.promise = new Promise((resolve, reject) => {
        this.resolve = resolve
        this.reject = reject
      })
      this.promise.catch(ignore)
    }
  }

  /** Enters the call in the table of calls in flight; returns the id to start it with. */
  track () {
    this.id = calls.track(this)
    return this.id
  }

  /** @param {Error | null} err @param {any} [value] the native answer */
  done (err, value) {
    this.answer(this, err, value)
  }

  /**
   * The caller's answer. An answer that comes while the call is starting (a bad argument, a
   * skipped touch answered at once) reaches the callback on the next tick; one from the native
   * store comes on a later turn of the event loop already, so the callback is called there.
   * @param {Error | null} err @param {any} [value]
   */
  reply (err, value) {
    const cb = this.cb
    if (cb !== undefined) {
      if (this.starting) nextTick(cb, err, value)
      else cb(err, value)
    } else if (err) {
      this.reject(err)
    } else {
      this.resolve(value)
    }
  }
}

/** @param {unknown} sid */
function checkSid (sid) {
  if (typeof sid !== 'string' || sid === '') {
    throw codedError('ERR_PG_SESSION_INVALID_ARG', `express-pg-session: the session id must be a non-empty string, got ${sid === '' ? 'an empty string' : typeof sid}`, TypeError)
  }
  // PostgreSQL text cannot hold NUL, and a lone surrogate becomes U+FFFD on its way to UTF-8,
  // so two different ids would share one row.
  if (UNSTORABLE_SID.test(sid)) {
    throw codedError('ERR_PG_SESSION_INVALID_ARG', 'express-pg-session: the session id holds a NUL character or a lone UTF-16 surrogate', TypeError)
  }
}

/**
 * A user id as the owner column holds it: one rule for what a set stores and what
 * listUserSessions / destroyUserSessions take.
 * @param {unknown} userId @param {string} [where]
 */
function userText (userId, where = 'the user id') {
  if ((typeof userId === 'string' && userId !== '') || (typeof userId === 'number' && Number.isFinite(userId)) || typeof userId === 'bigint') return String(userId)
  throw codedError('ERR_PG_SESSION_INVALID_ARG', `express-pg-session: ${where} must be a non-empty string, a finite number or a bigint, got ${userId === '' ? 'an empty string' : typeof userId}`, TypeError)
}

/**
 * The store class for express-session's `Store` and the native class.
 * @param {any} Store express-session's Store
 * @param {any} NativeStore the native class (binding.js)
 */
module.exports = function storeClass (Store, NativeStore) {
  class PGStore extends Store {
    /** @type {import("../binding").NativeStore} */ #native
    /** @type {(typeof console.error)} */ #errorLog
    /** @type {{ stringify: (v: any) => string, parse: (s: string) => any }} */ #serializer
    /** @type {number | ((sess: any) => number) | undefined} */ #ttl
    /** @type {boolean} */ #disableTouch
    /** @type {number | undefined} the fixed bound of `touchAfter`; undefined: the default bound */ #touchAfterMs
    /** @type {Map<string, number>} sid → the expiry (ms) this store last wrote, acknowledged */ #lastWrite = new Map()
    /** @type {boolean} a flush of the native calls is queued for this turn */ #flushQueued = false
    /** @type {boolean} the JSON serializer: what it writes can be checked cheaply */ #jsonSerializer
    #flush = () => {
      this.#flushQueued = false
      this.#native.flush()
    }
    /** @type {number | false} */ #pruneIntervalMs
    /** @type {((delay: number) => number) | undefined} */ #randomizePrune
    /** @type {NodeJS.Timeout | undefined} */ #pruneTimer
    /** @type {boolean} */ #closed = false
    /** @type {boolean} */ #connectionEvents
    /** @type {boolean} */ #connected = true
    /** @type {NodeJS.Timeout | undefined} */ #probeTimer
    /** @type {((sess: any) => unknown) | undefined} fills `columns.user_id` */ #userId
    /** @type {boolean} */ #unreadableLogged = false
    /** @type {[string, (sess: any) => unknown][] | undefined} `extraColumns`, in the order sent */ #extras
    /** @type {{ createdAt: boolean, lastSeen: boolean }} the time columns configured */ #times

    /** @param {Record<string, any>} [options] */
    constructor (options = {}) {
      validate(options)
      super(options)
      const primary = primaryFrom(options)
      const replicas = (options.replicas || []).map((/** @type {any} */ r, /** @type {number} */ i) => connectionFrom(r, `replicas[${i}]`).connection)
      const table = tableFrom(options)
      try {
        this.#native = new NativeStore({
          ...primary,
          replicas,
          ...table,
          ...protectionFrom(options),
          tombstones: options.tombstones !== false,
          createTableIfMissing: !!options.createTableIfMissing,
          distributeTable: options.distributeTable !== false,
          routeToNodes: options.routeToNodes !== false,
          queryTimeout: options.queryTimeout !== undefined ? options.queryTimeout : primary.queryTimeout,
          preparedStatements: options.preparedStatements !== false,
          pruneBatchSize: options.pruneBatchSize,
        }, (/** @type {any[]} */ answers) => calls.deliver(answers))
      } catch (err) {
        throw fromNative(err)
      }
      this.#extras = options.extraColumns && Object.entries(options.extraColumns)
      this.#times = { createdAt: !!table.createdAtColumn, lastSeen: !!table.lastSeenColumn }
      if (table.userIdColumn) {
        // passport keeps what serializeUser gave at session.passport.user.
        this.#userId = options.userId || ((/** @type {any} */ sess) => sess && sess.passport ? sess.passport.user : null)
      }
      this.#errorLog = options.errorLog || console.error.bind(console)
      this.#serializer = options.serializer || JSON
      this.#jsonSerializer = this.#serializer === JSON
      this.#ttl = options.ttl
      this.#disableTouch = !!options.disableTouch
      this.#touchAfterMs = options.touchAfter === undefined ? undefined : options.touchAfter * 1000
      this.#connectionEvents = !!options.connectionEvents
      if (options.pruneSessionInterval === false) {
        this.#pruneIntervalMs = false
      } else {
        this.#pruneIntervalMs = (options.pruneSessionInterval || DEFAULT_PRUNE_INTERVAL_SECONDS) * 1000
        if (options.pruneSessionRandomizedInterval !== false) {
          // 50–150% of the interval, so several app instances do not prune in step.
          this.#randomizePrune = options.pruneSessionRandomizedInterval ||
            ((/** @type {number} */ delay) => Math.ceil(delay / 2 + delay * Math.random()))
        }
      }
    }

    /**
     * Runs one store call: starts the prune timer, maps native errors, tracks connectivity.
     * @template T
     * @param {() => Promise<T>} work
     * @returns {Promise<T>}
     */
    async #call (work) {
      this.#schedulePrune()
      try {
        const value = await work()
        this.#observe(null)
        return value
      } catch (err) {
        const coded = fromNative(err)
        this.#observe(coded)
        throw coded
      }
    }

    /**
     * What a call's outcome says of the database's reachability (for `connectionEvents`).
     * @param {any} err
     */
    #observe (err) {
      // Only an answer from the server is evidence of a connection (a skipped touch is not).
      if (!err) {
        if (!this.#connected) this.#markConnected()
      } else if (CONNECTION_CODES.has(err.code)) {
        this.#markDisconnected(err)
      }
    }

    /** @param {any} sess @returns {number} ms since the epoch */
    #expireAt (sess) {
      if (this.#ttl !== undefined) {
        if (typeof this.#ttl === 'number') return Date.now() + this.#ttl * 1000
        const ttl = this.#ttl(sess)
        // Within 100 years either way (a negative one stores an expired session): the expiry must
        // stay far inside what the table holds, and after the year 1900 that marks tombstones.
        const expected = `a function returning a number of seconds from ${-MAX_TTL_SECONDS} to ${MAX_TTL_SECONDS} (100 years)`
        if (typeof ttl !== 'number') throw badOption('ttl', expected, { got: describe(ttl) })
        if (!(Number.isFinite(ttl) && Math.abs(ttl) <= MAX_TTL_SECONDS)) throw badOption('ttl', expected, { got: describe(ttl), Kind: RangeError })
        return Date.now() + ttl * 1000
      }
      let at
      try {
        const expires = sess && sess.cookie && sess.cookie.expires
        at = expires ? new Date(expires).getTime() : NaN
      } catch (cause) {
        // A getter that throws, a Symbol, an object whose valueOf throws.
        throw codedError('ERR_PG_SESSION_INVALID_ARG', 'express-pg-session: session.cookie.expires could not be read as a date', TypeError, cause)
      }
      return Number.isFinite(at) ? at : Date.now() + ONE_DAY_SECONDS * 1000
    }

    /** @param {any} sess */
    #stringify (sess) {
      if (typeof sess !== 'object' || sess === null || Array.isArray(sess)) {
        throw codedError('ERR_PG_SESSION_INVALID_ARG', 'express-pg-session: the session must be an object (not an array)', TypeError)
      }
      let text
      try {
        text = this.#serializer.stringify(sess)
      } catch (cause) {
        throw codedError('ERR_PG_SESSION_SERIALIZE', `express-pg-session: the session could not be serialized (${/** @type {Error} */ (cause).message})`, TypeError, cause)
      }
      if (typeof text !== 'string') {
        throw codedError('ERR_PG_SESSION_SERIALIZE', 'express-pg-session: the serializer did not return a string', TypeError)
      }
      // A toJSON that returns a string or an array would be stored and read back as no session.
      if (this.#jsonSerializer && text.charCodeAt(0) !== 123 /* { */) {
        throw codedError('ERR_PG_SESSION_SERIALIZE', 'express-pg-session: the session did not serialize to a JSON object (does it have a toJSON method?)', TypeError)
      }
      return text
    }

    /** @param {string} text @returns {any} the session, or undefined when the text is not valid */
    #parse (text) {
      let sess
      try {
        sess = this.#serializer.parse(text)
      } catch {
        return undefined
      }
      // A row holding `42` or `[]` is no session either; express-session would throw reading its cookie.
      return isObject(sess) ? sess : undefined
    }

    /**
     * The session's owner for `columns.user_id`, as text; null when there is none.
     * @param {any} sess @returns {string | null}
     */
    #owner (sess) {
      if (!this.#userId) return null
      const user = this.#userId(sess)
      if (user === null || user === undefined) return null
      return userText(user, 'the user id for `columns.user_id` (from `userId(sess)`, by default session.passport.user)')
    }

    /**
     * The `extraColumns` values of a session, as text (null for null/undefined); undefined when
     * none are configured. A function that throws or gives another type fails the set, with a
     * message naming the column and never the value.
     * @param {any} sess @returns {(string | null)[] | undefined}
     */
    #extraValues (sess) {
      if (!this.#extras) return undefined
      return this.#extras.map(([name, fn]) => {
        let value
        try {
          value = fn(sess)
        } catch (cause) {
          throw codedError('ERR_PG_SESSION_EXTRA_COLUMN', `express-pg-session: \`extraColumns.${name}\` threw; the session was not saved`, Error, cause)
        }
        if (value === null || value === undefined) return null
        if (typeof value === 'string' && !value.includes('\u0000')) return value
        if ((typeof value === 'number' && Number.isFinite(value)) || typeof value === 'boolean' || typeof value === 'bigint') return String(value)
        throw codedError('ERR_PG_SESSION_EXTRA_COLUMN', `express-pg-session: \`extraColumns.${name}\` must return a string (without NUL), a finite number, a boolean or null, got ${Array.isArray(value) ? 'an array' : typeof value}; the session was not saved`, TypeError)
      })
    }

    /**
     * True when a touch to `expireAt` need not be written (and a set may keep the expiry it
     * wrote): the expiry this store wrote for the session (and had acknowledged) is at most that
     * new one, and less than the bound behind it.
     * @param {string} sid @param {number} expireAt
     */
    #touchCanWait (sid, expireAt) {
      const written = this.#lastWrite.get(sid)
      if (written === undefined || expireAt < written) return false
      const remaining = expireAt - Date.now()
      const bound = this.#touchAfterMs !== undefined
        ? Math.min(this.#touchAfterMs, remaining * TOUCH_LAG_SHARE_LIMIT)
        : Math.min(DEFAULT_TOUCH_LAG_MAX_MS, remaining * DEFAULT_TOUCH_LAG_SHARE)
      return expireAt - written < bound
    }

    /** @param {string} sid @param {number} expireAt the expiry just written */
    #rememberWrite (sid, expireAt) {
      if (this.#touchAfterMs === 0) return
      // Set in place (a delete and set per write keeps rebuilding the Map's table): the first
      // key is the oldest first write, the one forgotten past the limit (its next touch is written).
      this.#lastWrite.set(sid, expireAt)
      if (this.#lastWrite.size > TOUCH_MEMORY_LIMIT) {
        this.#lastWrite.delete(/** @type {string} */ (this.#lastWrite.keys().next().value))
      }
    }

    /**
     * Sends this turn's calls once the event loop has run its ready callbacks (lib/timers.js,
     * which an app's fake timers do not reach): the calls made by all the requests of one turn
     * wake the native worker once and can share statements.
     */
    #flushSoon () {
      if (this.#flushQueued) return
      this.#flushQueued = true
      afterTurn(this.#flush)
    }

    /**
     * A fast-path call's answer from the native store, turned into its caller's: the JSON
     * parsed (get), the expiry remembered (set, a touch written), the connectivity noted. One
     * method for every call, reached from the call's object (no closures per call).
     * @param {FastCall} call @param {Error | null} err @param {any} value
     */
    #answer (call, err, value) {
      if (err) {
        this.#observe(err)
        return call.reply(err)
      }
      let result
      try {
        // A skipped touch answered by the shim is no word from the server.
        if (!call.skipped) this.#observe(null)
        if (call.op === GET) result = this.#session(value)
        else if (call.op === SET || (call.op === TOUCH && value && !call.skipped)) this.#rememberWrite(call.sid, call.expireAt)
      } catch (thrown) {
        return call.reply(/** @type {Error} */ (thrown))
      }
      call.reply(null, result)
    }

    /** @type {(call: FastCall, err: Error | null, value: any) => void} */
    #answerFn = (call, err, value) => this.#answer(call, err, value)

    /**
     * A new fast-path call (the prune timer started on the first).
     * @param {number} op @param {string} sid @param {unknown} cb
     */
    #begin (op, sid, cb) {
      if (this.#pruneTimer === undefined) this.#schedulePrune()
      return new FastCall(this.#answerFn, op, sid, cb)
    }

    /**
     * A call whose start threw (a bad id, a bad session, a closed store): the caller's error.
     * @param {FastCall} call @param {unknown} err
     */
    #failStart (call, err) {
      if (call.id !== 0) calls.forget(call.id)
      call.reply(fromNative(err))
    }

    /**
     * The end of a call's start: later answers go to the callback directly.
     * @param {FastCall} call
     */
    #started (call) {
      call.starting = false
      return call.promise
    }

    /**
     * A get's text as the session: null for no session (none stored, unreadable data, sealed
     * data no secret opens).
     * @param {any} text
     */
    #session (text) {
      if (text === false) {
        // Sealed data no secret opens: no session, and the row stays (a secret may be missing).
        if (!this.#unreadableLogged) {
          this.#unreadableLogged = true
          this.#errorLog('express-pg-session: a session could not be decrypted with any `secret`; it reads as no session (was a secret removed from the list?)')
        }
        return null
      }
      if (text === null || text === undefined) return null
      // Unreadable data reads as no session. The row is left alone (connect-pg-simple destroys
      // it, which could wipe a session written since): the next set overwrites it, prune ends it.
      const sess = this.#parse(text)
      return sess === undefined ? null : sess
    }

    // The fast path (get, set, touch, destroy, clear): each call is one FastCall object, given an
    // id (lib/calls.js) and started on the native store; what the start throws (a bad id, a bad
    // session) is the caller's error.

    /**
     * @param {string} sid
     * @param {(err: Error | null, session?: any) => void} [cb]
     */
    get (sid, cb) {
      const call = this.#begin(GET, sid, cb)
      try {
        checkSid(sid)
        this.#native.startGet(call.track(), sid, Date.now())
        this.#flushSoon()
      } catch (err) {
        this.#failStart(call, err)
      }
      return this.#started(call)
    }

    /**
     * @param {string} sid
     * @param {any} sess
     * @param {(err?: Error | null) => void} [cb]
     * @param {number} [expireAtMs] internal (lib/koa.js): the expiry, over `ttl` and the cookie
     */
    set (sid, sess, cb, expireAtMs) {
      const call = this.#begin(SET, sid, cb)
      try {
        checkSid(sid)
        const text = this.#stringify(sess)
        let expireAt = expireAtMs === undefined ? this.#expireAt(sess) : expireAtMs
        // The expiry written before, unchanged within the touch bound: the row's indexed expiry
        // then stays the same and PostgreSQL can update the row in place (a HOT update).
        if (this.#touchCanWait(sid, expireAt)) expireAt = /** @type {number} */ (this.#lastWrite.get(sid))
        call.expireAt = expireAt
        const owner = this.#owner(sess)
        const extra = this.#extraValues(sess)
        this.#native.startSet(call.track(), sid, text, expireAt, owner, Date.now(), extra)
        this.#flushSoon()
      } catch (err) {
        this.#failStart(call, err)
      }
      return this.#started(call)
    }

    /**
     * @param {string} sid
     * @param {any} sess
     * @param {(err?: Error | null) => void} [cb]
     * @param {number} [expireAtMs] internal (lib/koa.js): the expiry, over `ttl` and the cookie
     */
    touch (sid, sess, cb, expireAtMs) {
      const call = this.#begin(TOUCH, sid, cb)
      try {
        checkSid(sid)
        let expireAt = 0
        if (!this.#disableTouch) expireAt = expireAtMs === undefined ? this.#expireAt(sess) : expireAtMs
        call.expireAt = expireAt
        const id = call.track()
        // A closed store answers every call with its error, skipped or not.
        if (this.#disableTouch || (!this.#closed && this.#touchCanWait(sid, expireAt))) {
          call.skipped = true
          // Nothing to send: answered after the session's calls still pending, or now.
          if (!this.#native.startSkippedTouch(id, sid)) calls.answerNow(id, null)
        } else {
          this.#native.startTouch(id, sid, expireAt, Date.now())
        }
        this.#flushSoon()
      } catch (err) {
        this.#failStart(call, err)
      }
      return this.#started(call)
    }

    /**
     * @param {string} sid
     * @param {(err?: Error | null) => void} [cb]
     */
    destroy (sid, cb) {
      const call = this.#begin(DESTROY, sid, cb)
      try {
        checkSid(sid)
        this.#lastWrite.delete(sid)
        this.#native.startDestroy(call.track(), sid, Date.now())
        this.#flushSoon()
      } catch (err) {
        this.#failStart(call, err)
      }
      return this.#started(call)
    }

    /** @param {(err: Error | null, sessions?: any[]) => void} [cb] */
    all (cb) {
      return settle(this.#call(async () => {
        const rows = await this.#native.all(Date.now())
        const sessions = []
        for (const row of rows) {
          const sess = this.#parse(row.data)
          if (sess !== undefined && sess !== null) sessions.push(sess)
        }
        return sessions
      }), cb)
    }

    /**
     * The live sessions of one user (`columns.user_id`), the latest activity first (last_seen
     * when configured, else expiry); with createdAt, lastSeen and extra when configured.
     * @param {string | number | bigint} userId
     * @param {(err: Error | null, sessions?: Record<string, any>[]) => void} [cb]
     */
    listUserSessions (userId, cb) {
      return settle(this.#call(async () => {
        const rows = await this.#native.listUserSessions(userText(userId), Date.now())
        const date = (/** @type {number | null | undefined} */ ms) => ms === null || ms === undefined ? null : new Date(ms)
        const sessions = []
        for (const row of rows) {
          const session = this.#parse(row.data)
          if (session === undefined || session === null) continue
          /** @type {Record<string, any>} */
          const listed = { sid: row.sid, session, expires: new Date(row.expires) }
          if (this.#times.createdAt) listed.createdAt = date(row.createdAt)
          if (this.#times.lastSeen) listed.lastSeen = date(row.lastSeen)
          if (this.#extras) listed.extra = row.extra ? JSON.parse(row.extra) : {}
          sessions.push(listed)
        }
        return sessions
      }), cb)
    }

    /**
     * Destroys the live sessions of one user (sign out everywhere): all but `except` (a session
     * id, as `req.sessionID`), or only `sids` (ids as listUserSessions gives them); resolves how many.
     * @param {string | number | bigint} userId
     * @param {{ except?: string | null, sids?: string[] } | null | ((err: Error | null, destroyed?: number) => void)} [options]
     * @param {(err: Error | null, destroyed?: number) => void} [cb]
     */
    destroyUserSessions (userId, options, cb) {
      if (typeof options === 'function') {
        cb = options
        options = undefined
      }
      return settle(this.#call(async () => {
        if (options !== undefined && options !== null && !isObject(options)) {
          throw codedError('ERR_PG_SESSION_INVALID_ARG', 'express-pg-session: the second argument of destroyUserSessions is { except: sid } or { sids: [...] }', TypeError)
        }
        const { except = null, sids } = options || {}
        if (except !== null) checkSid(except)
        // Given, `sids` must list ids: a null there must not widen the call to every session.
        if (sids !== undefined && !(Array.isArray(sids) && sids.every((s) => typeof s === 'string'))) {
          throw codedError('ERR_PG_SESSION_INVALID_ARG', 'express-pg-session: `sids` must be an array of session ids as listUserSessions gives them (leave it out to destroy all of the user\'s sessions)', TypeError)
        }
        return this.#native.destroyUserSessions(userText(userId), except, sids === undefined ? null : sids, Date.now())
      }), cb)
    }

    /** @param {(err: Error | null, ids?: string[]) => void} [cb] */
    ids (cb) {
      return settle(this.#call(() => this.#native.ids(Date.now())), cb)
    }

    /** @param {(err: Error | null, length?: number) => void} [cb] */
    length (cb) {
      return settle(this.#call(() => this.#native.length(Date.now())), cb)
    }

    /** @param {(err?: Error | null) => void} [cb] */
    clear (cb) {
      const call = this.#begin(CLEAR, '', cb)
      try {
        this.#lastWrite.clear()
        this.#native.startClear(call.track())
        this.#flushSoon()
      } catch (err) {
        this.#failStart(call, err)
      }
      return this.#started(call)
    }

    /**
     * Deletes expired sessions now, then re-arms the timer.
     * @param {(err: Error | null, deleted?: number) => void} [cb]
     */
    pruneSessions (cb) {
      clearTimeout(this.#pruneTimer)
      this.#pruneTimer = undefined
      const run = this.#call(() => this.#native.prune(Date.now()))
      run.then(() => this.#schedulePrune(), (err) => {
        if (typeof cb !== 'function') this.#errorLog('Failed to prune sessions:', err)
        this.#schedulePrune()
      })
      return settle(run, cb)
    }

    /**
     * Resolves once the database answers and the table is usable (created first with
     * `createTableIfMissing`); rejects with the coded error calls would meet. Call it at boot.
     * @param {(err?: Error | null) => void} [cb]
     */
    ready (cb) {
      return settle(this.#call(() => this.#native.ready()), cb)
    }

    /** Pool sizes and call counters. */
    stats () {
      return this.#native.stats()
    }

    /**
     * Stops the timers and closes the store's connections (never a pool passed in).
     * @param {(err?: Error | null) => void} [cb]
     */
    close (cb) {
      this.#closed = true
      clearTimeout(this.#pruneTimer)
      clearTimeout(this.#probeTimer)
      this.#pruneTimer = undefined
      this.#probeTimer = undefined
      return settle(this.#native.close().catch((err) => { throw fromNative(err) }), cb)
    }

    get closed () {
      return this.#closed
    }

    #schedulePrune () {
      if (this.#pruneIntervalMs === false || this.#closed || this.#pruneTimer) return
      let delay = this.#randomizePrune ? this.#randomizePrune(this.#pruneIntervalMs) : this.#pruneIntervalMs
      // setTimeout fires after 1 ms for a delay it cannot hold (NaN, past 2^31-1 ms, as 150 % of
      // a long interval is): that would prune every millisecond.
      if (!(delay >= 0)) delay = this.#pruneIntervalMs
      delay = Math.min(delay, MAX_TIMER_MS)
      this.#pruneTimer = setTimeout(() => {
        this.#pruneTimer = undefined
        this.pruneSessions()
      }, delay)
      this.#pruneTimer.unref()
    }

    /** @param {Error} err */
    #markDisconnected (err) {
      if (!this.#connectionEvents || !this.#connected || this.#closed) return
      this.#connected = false
      this.emit('disconnect', err)
      this.#probe()
    }

    #markConnected () {
      this.#connected = true
      clearTimeout(this.#probeTimer)
      this.#probeTimer = undefined
      this.emit('connect')
    }

    // While disconnected, express-session stops calling the store, so the store looks itself.
    #probe () {
      this.#probeTimer = setTimeout(() => {
        if (this.#closed || this.#connected) return
        this.#native.ping().then(() => this.#markConnected(), () => this.#probe())
      }, HEALTH_PROBE_MS)
      this.#probeTimer.unref()
    }
  }

  return PGStore
}
