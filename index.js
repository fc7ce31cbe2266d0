// @ts-check
'use strict'

// The JS half of express-pg-session: options, the clock, JSON, callbacks and timers.
// Every database call goes to the native store (src/store.rs) through `binding.js`.

const { NativeStore } = loadBinding()

const ONE_DAY_SECONDS = 86400
const DEFAULT_PRUNE_INTERVAL_SECONDS = 60
const HEALTH_PROBE_MS = 1000
const TOUCH_MEMORY_LIMIT = 100000
const COLUMN_KEYS = ['session_id', 'session_data', 'expire']
// With the `u` flag a surrogate only matches when unpaired.
const UNSTORABLE_SID = /[\u0000\uD800-\uDFFF]/u
// Codes after which the database is unreachable rather than the call wrong.
const CONNECTION_CODES = new Set([
  'ERR_PG_SESSION_CONNECT',
  'ERR_PG_SESSION_TIMEOUT',
  'ERR_PG_SESSION_CONNECTION_LOST',
  '57P01',
  '57P02',
  '57P03',
])

function loadBinding () {
  try {
    return require('./binding.js')
  } catch (cause) {
    const platform = `${process.platform}-${process.arch}`
    const err = new Error(
      `express-pg-session: no native binary for ${platform}. Looked for the package ` +
      `express-pg-session-${platform}(-gnu|-musl|-msvc) and a local express-pg-session.${platform}*.node. ` +
      'Reinstall without --no-optional, or build from source: install Rust (https://rustup.rs), ' +
      'then run `npm run build` in the package directory.',
      { cause }
    )
    // @ts-ignore
    err.code = 'ERR_PG_SESSION_NO_BINARY'
    throw err
  }
}

/**
 * An Error with a stable `code`.
 * @param {string} code
 * @param {string} message
 * @param {ErrorConstructor} [Kind]
 * @param {unknown} [cause]
 */
function codedError (code, message, Kind = Error, cause) {
  const err = cause === undefined ? new Kind(message) : new Kind(message, { cause })
  // @ts-ignore
  err.code = code
  return err
}

/**
 * Native rejections carry their code as the message's first word (napi only lets
 * async calls reject with its own status); move it to `code`.
 * @param {any} err
 * @returns {Error}
 */
function fromNative (err) {
  if (!(err instanceof Error)) {
    return codedError('ERR_PG_SESSION_UNKNOWN', `express-pg-session: ${String(err)}`)
  }
  const match = /^([0-9A-Z_]{5,}): ([\s\S]*)$/.exec(err.message)
  if (!match || ('code' in err && err.code !== 'GenericFailure')) return err
  // Bad options are the caller's mistake, reported as pg reports them: a TypeError.
  const coded = codedError(match[1], match[2], match[1] === 'ERR_PG_SESSION_INVALID_OPTION' ? TypeError : Error)
  // @ts-ignore
  if (/^[0-9A-Z]{5}$/.test(match[1])) coded.sqlState = match[1]
  return coded
}

/** @param {string} option @param {string} expected */
function badOption (option, expected) {
  return codedError('ERR_PG_SESSION_INVALID_OPTION', `express-pg-session: option \`${option}\` must be ${expected}`, TypeError)
}

/** @param {unknown} value @returns {value is Record<string, any>} */
const isObject = (value) => typeof value === 'object' && value !== null && !Array.isArray(value)

/**
 * @param {Record<string, any>} options
 * @param {string} name
 * @param {string} type
 * @param {string} [expected]
 */
function checkType (options, name, type, expected = `a ${type}`) {
  if (options[name] !== undefined && typeof options[name] !== type) throw badOption(name, expected)
}

/** @param {unknown} pem */
function pemText (pem) {
  if (pem === undefined || pem === null) return undefined
  if (Array.isArray(pem)) return pem.map((p) => String(p)).join('\n')
  return String(pem)
}

/**
 * pg's `ssl` option → the native TLS settings.
 * @param {unknown} ssl
 */
function tlsFrom (ssl) {
  if (ssl === undefined || ssl === null) return undefined
  if (ssl === false) return { mode: 'disable' }
  if (ssl === true) return { mode: 'verify-full' }
  if (typeof ssl === 'string') return { mode: ssl }
  if (!isObject(ssl)) throw badOption('ssl', 'a boolean or an object')
  let mode = typeof ssl.mode === 'string' ? ssl.mode : 'verify-full'
  if (ssl.rejectUnauthorized === false) mode = 'no-verify'
  // A custom identity check means the user vouches for the host name; the chain is still checked.
  else if (typeof ssl.checkServerIdentity === 'function' && ssl.mode === undefined) mode = 'verify-ca'
  return { mode, ca: pemText(ssl.ca), cert: pemText(ssl.cert), key: pemText(ssl.key) }
}

/**
 * pg's connection config (`conObject`, `pool.options`, pg-promise's `$cn`) → native settings.
 * @param {string | Record<string, any>} config
 * @param {string} option
 */
function connectionFrom (config, option) {
  if (typeof config === 'string') return { connection: { connectionString: config } }
  if (!isObject(config)) throw badOption(option, 'a connection string or a pg config object')
  if (config.password !== undefined && typeof config.password !== 'string') {
    throw badOption(`${option}.password`, 'a string (password functions are not supported)')
  }
  const port = config.port === undefined || config.port === null ? undefined : Number(config.port)
  if (port !== undefined && !(Number.isInteger(port) && port > 0 && port < 65536)) {
    throw badOption(`${option}.port`, 'a port number')
  }
  const statementTimeout = typeof config.statement_timeout === 'number' ? config.statement_timeout : undefined
  return {
    connection: {
      connectionString: config.connectionString,
      host: config.host,
      port,
      user: config.user,
      password: config.password,
      database: config.database,
      applicationName: config.application_name,
      statementTimeout,
      ssl: tlsFrom(config.ssl),
    },
    max: typeof config.max === 'number' ? config.max : undefined,
    connectionTimeoutMillis: typeof config.connectionTimeoutMillis === 'number' ? config.connectionTimeoutMillis : undefined,
    idleTimeoutMillis: typeof config.idleTimeoutMillis === 'number' ? config.idleTimeoutMillis : undefined,
  }
}

/**
 * Where to connect, in connect-pg-simple's order of precedence.
 * @param {Record<string, any>} options
 */
function primaryFrom (options) {
  if (options.pool !== undefined) {
    if (!isObject(options.pool)) throw badOption('pool', 'a pg.Pool')
    return connectionFrom(options.pool.options || {}, 'pool.options')
  }
  if (options.pgPromise !== undefined) {
    if (!isObject(options.pgPromise) && typeof options.pgPromise !== 'function') throw badOption('pgPromise', 'a pg-promise database')
    if (typeof options.pgPromise.any !== 'function') {
      throw badOption('pgPromise', 'an existing and configured pg-promise database instance')
    }
    return connectionFrom(options.pgPromise.$cn || {}, 'pgPromise.$cn')
  }
  if (options.conObject !== undefined) return connectionFrom(options.conObject, 'conObject')
  const conString = options.conString || process.env.DATABASE_URL
  return connectionFrom(conString ? { connectionString: conString } : {}, 'conString')
}

/**
 * Table and column names, accepting connect-pg-simple's old `schema"."table` form.
 * @param {Record<string, any>} options
 */
function tableFrom (options) {
  checkType(options, 'schemaName', 'string')
  checkType(options, 'tableName', 'string')
  let schemaName = options.schemaName || undefined
  let tableName = options.tableName || 'session'
  const legacy = /^([^"]+)"\."([^"]+)$/.exec(tableName)
  if (!schemaName && legacy) {
    process.emitWarning(
      'Schema should be provided through its dedicated "schemaName" option rather than through "tableName"',
      'DeprecationWarning'
    )
    schemaName = legacy[1]
    tableName = legacy[2]
  }
  const columns = options.columns === undefined ? {} : options.columns
  if (!isObject(columns)) throw badOption('columns', 'an object')
  for (const key of Object.keys(columns)) {
    if (!COLUMN_KEYS.includes(key)) throw badOption(`columns.${key}`, `one of ${COLUMN_KEYS.join(', ')} (unknown key)`)
    if (typeof columns[key] !== 'string' || columns[key] === '') throw badOption(`columns.${key}`, 'a non-empty string')
  }
  return {
    schemaName,
    tableName,
    sessionIdColumn: columns.session_id || 'sid',
    sessionDataColumn: columns.session_data || 'sess',
    expireColumn: columns.expire || 'expire',
  }
}

/** @param {Record<string, any>} options */
function validate (options) {
  if (!isObject(options)) throw badOption('options', 'an object')
  for (const name of ['createTableIfMissing', 'disableTouch', 'preparedStatements', 'connectionEvents']) {
    checkType(options, name, 'boolean')
  }
  checkType(options, 'errorLog', 'function')
  checkType(options, 'conString', 'string')
  const seconds = (/** @type {string} */ name) => {
    const v = options[name]
    if (v !== undefined && !(typeof v === 'number' && Number.isFinite(v) && v >= 0)) throw badOption(name, 'a number of seconds, 0 or more')
  }
  if (typeof options.ttl !== 'function') seconds('ttl')
  seconds('touchAfter')
  if (options.pruneSessionInterval !== false) seconds('pruneSessionInterval')
  const randomized = options.pruneSessionRandomizedInterval
  if (randomized !== undefined && randomized !== false && typeof randomized !== 'function') {
    throw badOption('pruneSessionRandomizedInterval', 'false or a function (delay) => delay')
  }
  const serializer = options.serializer
  if (serializer !== undefined && !(isObject(serializer) && typeof serializer.stringify === 'function' && typeof serializer.parse === 'function')) {
    throw badOption('serializer', 'an object with stringify and parse functions')
  }
  if (options.replicas !== undefined && !Array.isArray(options.replicas)) throw badOption('replicas', 'an array of connection strings or pg config objects')
  const batch = options.pruneBatchSize
  if (batch !== undefined && !(Number.isInteger(batch) && batch > 0)) throw badOption('pruneBatchSize', 'a positive integer')
}

/**
 * Callback or promise: with a callback it is called once, on a later tick; without one the
 * promise is returned, and a rejection nobody awaits is never an unhandled rejection.
 * @template T
 * @param {Promise<T>} promise
 * @param {unknown} cb
 * @returns {Promise<T> | undefined}
 */
function settle (promise, cb) {
  if (typeof cb === 'function') {
    promise.then((value) => process.nextTick(cb, null, value), (err) => process.nextTick(cb, err))
    return undefined
  }
  promise.catch(() => {})
  return promise
}

// Answers of the native fast path (get, set, touch), by call id. Module-wide, so the native
// side holds no reference to a store and an unused store can be garbage collected.
/** @type {Map<number, (err: Error | null, value?: any) => void>} */
const inFlight = new Map()
const MAX_CALL_ID = 0x7fffffff
let lastCallId = 0

/**
 * Registers what to do with a call's answer; returns the id to send with it.
 * @param {(err: Error | null, value?: any) => void} finish
 */
function track (finish) {
  lastCallId = lastCallId === MAX_CALL_ID ? 1 : lastCallId + 1
  inFlight.set(lastCallId, finish)
  return lastCallId
}

/**
 * Called by the native store with the answers that are ready: `[id, value, …]`, a failed
 * call's id negated and its value the coded message. Must never throw: a throw here would
 * lose the answers after it.
 * @param {any[]} answers
 */
function deliver (answers) {
  for (let i = 0; i < answers.length; i += 2) {
    const failed = answers[i] < 0
    const id = failed ? -answers[i] : answers[i]
    const finish = inFlight.get(id)
    if (finish === undefined) continue
    inFlight.delete(id)
    try {
      if (failed) finish(fromNative(new Error(answers[i + 1])))
      else finish(null, answers[i + 1])
    } catch (err) {
      process.nextTick(() => { throw err })
    }
  }
}

/**
 * How a fast-path call answers its caller: the callback once, on a later tick, or a promise
 * that never becomes an unhandled rejection.
 * @param {unknown} cb
 * @returns {{ reply: (err: Error | null, value?: any) => void, promise: Promise<any> | undefined }}
 */
function replier (cb) {
  if (typeof cb === 'function') {
    return { reply: (err, value) => process.nextTick(/** @type {Function} */ (cb), err, value), promise: undefined }
  }
  /** @type {(err: Error | null, value?: any) => void} */
  let reply = () => {}
  const promise = new Promise((resolve, reject) => {
    reply = (err, value) => (err ? reject(err) : resolve(value))
  })
  promise.catch(() => {})
  return { reply, promise }
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
 * @param {any} session express-session, or Express 3 / Connect (which keep it at `session.session`)
 */
module.exports = function expressPgSession (session) {
  const Store = (session && session.Store) || (session && session.session && session.session.Store)
  if (typeof Store !== 'function') {
    throw codedError('ERR_PG_SESSION_INVALID_ARG', 'express-pg-session: call the factory with express-session: require(\'express-pg-session\')(session)', TypeError)
  }

  class PGStore extends Store {
    /** @type {InstanceType<typeof NativeStore>} */ #native
    /** @type {(typeof console.error)} */ #errorLog
    /** @type {{ stringify: (v: any) => string, parse: (s: string) => any }} */ #serializer
    /** @type {number | ((sess: any) => number) | undefined} */ #ttl
    /** @type {boolean} */ #disableTouch
    /** @type {number} */ #touchAfterMs
    /** @type {Map<string, number>} sid → when this store last wrote its expiry */ #lastWrite = new Map()
    /** @type {number | false} */ #pruneIntervalMs
    /** @type {((delay: number) => number) | undefined} */ #randomizePrune
    /** @type {NodeJS.Timeout | undefined} */ #pruneTimer
    /** @type {boolean} */ #closed = false
    /** @type {boolean} */ #connectionEvents
    /** @type {boolean} */ #connected = true
    /** @type {NodeJS.Timeout | undefined} */ #probeTimer

    /** @param {Record<string, any>} [options] */
    constructor (options = {}) {
      validate(options)
      super(options)
      const primary = primaryFrom(options)
      const replicas = (options.replicas || []).map((/** @type {any} */ r, /** @type {number} */ i) => connectionFrom(r, `replicas[${i}]`).connection)
      try {
        this.#native = new NativeStore({
          ...primary,
          replicas,
          ...tableFrom(options),
          createTableIfMissing: !!options.createTableIfMissing,
          preparedStatements: options.preparedStatements !== false,
          pruneBatchSize: options.pruneBatchSize,
        }, deliver)
      } catch (err) {
        throw fromNative(err)
      }
      this.#errorLog = options.errorLog || console.error.bind(console)
      this.#serializer = options.serializer || JSON
      this.#ttl = options.ttl
      this.#disableTouch = !!options.disableTouch
      this.#touchAfterMs = (options.touchAfter || 0) * 1000
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
      if (!err) {
        if (!this.#connected) this.#markConnected()
      } else if (CONNECTION_CODES.has(err.code)) {
        this.#markDisconnected(err)
      }
    }

    /** @param {any} sess @returns {number} ms since the epoch */
    #expireAt (sess) {
      if (this.#ttl !== undefined) {
        const ttl = typeof this.#ttl === 'function' ? this.#ttl(sess) : this.#ttl
        if (typeof ttl !== 'number' || !Number.isFinite(ttl)) {
          throw codedError('ERR_PG_SESSION_INVALID_OPTION', 'express-pg-session: the `ttl` function must return a number of seconds', TypeError)
        }
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
      if (typeof sess !== 'object' || sess === null) {
        throw codedError('ERR_PG_SESSION_INVALID_ARG', 'express-pg-session: the session must be an object', TypeError)
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

    /** @param {string} sid */
    #rememberWrite (sid) {
      if (this.#touchAfterMs <= 0) return
      this.#lastWrite.delete(sid)
      this.#lastWrite.set(sid, Date.now())
      if (this.#lastWrite.size > TOUCH_MEMORY_LIMIT) {
        // Maps iterate in insertion order: the first key is the oldest write.
        this.#lastWrite.delete(/** @type {string} */ (this.#lastWrite.keys().next().value))
      }
    }

    /**
     * One call on the native fast path. `send(id)` starts it; `then(value, reply)` turns the
     * native answer into the caller's. What `send` throws (a bad id, a bad session) is the
     * caller's error.
     * @param {unknown} cb
     * @param {(id: number) => void} send
     * @param {(value: any, reply: (err: Error | null, value?: any) => void) => void} then
     */
    #fast (cb, send, then) {
      this.#schedulePrune()
      const { reply, promise } = replier(cb)
      const finish = (/** @type {Error | null} */ err, /** @type {any} */ value) => {
        if (err) {
          this.#observe(err)
          return reply(err)
        }
        try {
          this.#observe(null)
          then(value, reply)
        } catch (thrown) {
          reply(/** @type {Error} */ (thrown))
        }
      }
      let id = 0
      try {
        id = track(finish)
        send(id)
      } catch (err) {
        inFlight.delete(id)
        reply(fromNative(err))
      }
      return promise
    }

    /**
     * @param {string} sid
     * @param {(err: Error | null, session?: any) => void} [cb]
     */
    get (sid, cb) {
      return this.#fast(cb, (id) => {
        checkSid(sid)
        this.#native.startGet(id, sid, Date.now())
      }, (text, reply) => {
        if (text === null || text === undefined) return reply(null, null)
        const sess = this.#parse(text)
        if (sess !== undefined && sess !== null) return reply(null, sess)
        // Unreadable data: drop the row and start afresh, as connect-pg-simple does.
        this.#native.destroy(sid).then(() => reply(null, null), (err) => reply(fromNative(err)))
      })
    }

    /**
     * @param {string} sid
     * @param {any} sess
     * @param {(err?: Error | null) => void} [cb]
     */
    set (sid, sess, cb) {
      return this.#fast(cb, (id) => {
        checkSid(sid)
        const text = this.#stringify(sess)
        this.#native.startSet(id, sid, text, this.#expireAt(sess))
      }, (_, reply) => {
        this.#rememberWrite(sid)
        reply(null)
      })
    }

    /**
     * @param {string} sid
     * @param {any} sess
     * @param {(err?: Error | null) => void} [cb]
     */
    touch (sid, sess, cb) {
      return this.#fast(cb, (id) => {
        checkSid(sid)
        const written = this.#lastWrite.get(sid)
        if (this.#disableTouch || (written !== undefined && Date.now() - written < this.#touchAfterMs)) {
          // Nothing to send: answer as if the native call had.
          deliver([id, null])
          return
        }
        this.#native.startTouch(id, sid, this.#expireAt(sess))
      }, (found, reply) => {
        if (found !== null) this.#rememberWrite(sid)
        reply(null)
      })
    }

    /**
     * @param {string} sid
     * @param {(err?: Error | null) => void} [cb]
     */
    destroy (sid, cb) {
      return settle(this.#call(async () => {
        checkSid(sid)
        this.#lastWrite.delete(sid)
        await this.#native.destroy(sid)
      }), cb)
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
      return settle(this.#call(async () => {
        this.#lastWrite.clear()
        await this.#native.clear()
      }), cb)
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
      const delay = this.#randomizePrune ? this.#randomizePrune(this.#pruneIntervalMs) : this.#pruneIntervalMs
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
