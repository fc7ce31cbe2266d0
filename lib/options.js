// @ts-check
'use strict'

// The user's options: checked, then turned into what the native store takes (connection
// settings in pg's shapes and precedence, the table and its columns).

const { badOption } = require('./errors')

const COLUMN_KEYS = ['session_id', 'session_data', 'expire', 'user_id', 'created_at', 'last_seen']
/** At most this many `extraColumns` (each is a parameter of every set). */
const MAX_EXTRA_COLUMNS = 20
const KNOWN_OPTIONS = [
  'pool', 'pgPromise', 'conObject', 'conString', 'replicas', 'schemaName', 'tableName', 'columns',
  'createTableIfMissing', 'ttl', 'disableTouch', 'touchAfter', 'pruneSessionInterval',
  'pruneSessionRandomizedInterval', 'pruneBatchSize', 'errorLog', 'serializer', 'preparedStatements',
  'connectionEvents', 'queryTimeout', 'tombstones', 'userId', 'secret', 'hashSessionIds', 'distributeTable', 'routeToNodes',
  'extraColumns', 'maxLifetime',
]
/** setTimeout's longest delay, 2^31-1 ms (about 24.8 days): a longer one fires after 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1
/** The longest `ttl`: 100 years (of 365.25 days), far below the year 2899 tombstones rely on. */
const MAX_TTL_SECONDS = 100 * 365.25 * 86400
/**
 * Every numeric option's range. `integer`: whole numbers only; `unit`: what the number counts;
 * `note`: what a special value means; `text`: a decimal string is taken too (pg takes the port
 * as text, PGPORT is one). The pg config keys (`conObject`, `pool.options`, …) read null and
 * false as "not set", as pg does (its defaults are `statement_timeout: false`, …).
 * @type {Record<string, { min: number, max: number, integer?: boolean, unit?: string, note?: string, text?: boolean }>}
 */
const RANGES = {
  max: { min: 1, max: 10000, integer: true },
  port: { min: 1, max: 65535, integer: true, text: true },
  connectionTimeoutMillis: { min: 0, max: MAX_TIMER_MS, integer: true, unit: 'milliseconds', note: '0: the default, 5000' },
  query_timeout: { min: 0, max: MAX_TIMER_MS, integer: true, unit: 'milliseconds', note: '0: the default, 10000' },
  idleTimeoutMillis: { min: 0, max: MAX_TIMER_MS, integer: true, unit: 'milliseconds', note: '0 keeps idle connections' },
  statement_timeout: { min: 0, max: MAX_TIMER_MS, integer: true, unit: 'milliseconds', note: '0: none' },
  queryTimeout: { min: 1, max: MAX_TIMER_MS, integer: true, unit: 'milliseconds' },
  pruneBatchSize: { min: 1, max: 1000000, integer: true },
  ttl: { min: 0, max: MAX_TTL_SECONDS, unit: 'seconds', note: '100 years' },
  touchAfter: { min: 0, max: MAX_TIMER_MS / 1000, unit: 'seconds', note: 'about 24.8 days' },
  pruneSessionInterval: { min: 0, max: MAX_TIMER_MS / 1000, unit: 'seconds', note: 'about 24.8 days; 0: the default, 60' },
  maxLifetime: { min: 1, max: MAX_TTL_SECONDS * 1000, integer: true, unit: 'milliseconds', note: '100 years' },
}

/**
 * What was passed, for an error message (a string is shortened, and other things named by type).
 * @param {unknown} value
 */
function describe (value) {
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return String(value)
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)
  if (value === null) return 'null'
  return Array.isArray(value) ? 'an array' : `a ${typeof value}`
}

/**
 * Checks a numeric option against its range in RANGES: a TypeError when it is no number, a
 * RangeError when it is out of range (NaN, ±Infinity, a fraction where an integer is needed).
 * @param {unknown} value undefined: not set
 * @param {string} name the option's name as the message shows it (`conObject.max`)
 * @param {string} [key] its entry in RANGES; default `name`
 * @returns {number | undefined}
 */
function numberOption (value, name, key = name) {
  if (value === undefined) return undefined
  const range = RANGES[key]
  const what = range.integer ? `an integer${range.unit ? ` number of ${range.unit}` : ''}` : `a number of ${range.unit}`
  const expected = `${what} from ${range.min} to ${range.max}${range.note ? ` (${range.note})` : ''}`
  const n = range.text && typeof value === 'string' && /^\d+$/.test(value.trim()) ? Number(value) : value
  if (typeof n !== 'number') throw badOption(name, expected, { got: describe(value) })
  if (!(range.integer ? Number.isInteger(n) : Number.isFinite(n)) || n < range.min || n > range.max) {
    throw badOption(name, expected, { got: describe(value), Kind: RangeError })
  }
  return n
}

/** Unknown option names already warned about: once per name and process. */
const warned = new Set()

/**
 * Edit distance between two names (case-insensitive), for "did you mean".
 * @param {string} a @param {string} b
 */
function distance (a, b) {
  a = a.toLowerCase()
  b = b.toLowerCase()
  let row = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const next = [i]
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    row = next
  }
  return row[b.length]
}

/**
 * Warns once per name about options the store does not know (a typo is otherwise silently
 * ignored: `tablename` would write to the default table), naming the closest known option.
 * @param {Record<string, any>} options
 */
function warnUnknown (options) {
  for (const key of Object.keys(options)) {
    if (KNOWN_OPTIONS.includes(key) || warned.has(key)) continue
    warned.add(key)
    const [best] = KNOWN_OPTIONS.map((name) => ({ name, d: distance(key, name) })).sort((x, y) => x.d - y.d)
    const hint = best.d <= Math.max(2, Math.floor(key.length / 3)) ? ` Did you mean \`${best.name}\`?` : ''
    process.emitWarning(`express-pg-session: unknown option \`${key}\` is ignored.${hint}`, { code: 'PG_SESSION_UNKNOWN_OPTION' })
  }
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
  // null and false are pg's "not set".
  const pgNumber = (/** @type {string} */ key) => config[key] === null || config[key] === false ? undefined : numberOption(config[key], `${option}.${key}`, key)
  const port = pgNumber('port')
  const statementTimeout = pgNumber('statement_timeout')
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
    max: pgNumber('max'),
    connectionTimeoutMillis: pgNumber('connectionTimeoutMillis'),
    queryTimeout: pgNumber('query_timeout'),
    idleTimeoutMillis: pgNumber('idleTimeoutMillis'),
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
    userIdColumn: columns.user_id,
    createdAtColumn: columns.created_at,
    lastSeenColumn: columns.last_seen,
    extraColumns: options.extraColumns === undefined ? undefined : Object.keys(options.extraColumns),
    maxLifetime: options.maxLifetime,
  }
}

/**
 * `secret` and `hashSessionIds` → the native settings.
 * @param {Record<string, any>} options
 */
function protectionFrom (options) {
  const secret = options.secret
  const secrets = secret === undefined ? [] : Array.isArray(secret) ? secret : [secret]
  if (secrets.some((s) => typeof s !== 'string' || s.length < 16)) {
    throw badOption('secret', 'a string of 16 or more characters (a long random one), or an array of them (the first encrypts)')
  }
  if (secret !== undefined && secrets.length === 0) throw badOption('secret', 'a string or a non-empty array of strings')
  return { secrets, hashSessionIds: !!options.hashSessionIds }
}

/** @param {Record<string, any>} options */
function validate (options) {
  if (!isObject(options)) throw badOption('options', 'an object')
  warnUnknown(options)
  for (const name of ['createTableIfMissing', 'distributeTable', 'routeToNodes', 'disableTouch', 'preparedStatements', 'connectionEvents', 'tombstones', 'hashSessionIds']) {
    checkType(options, name, 'boolean')
  }
  checkType(options, 'errorLog', 'function')
  checkType(options, 'userId', 'function')
  if (options.userId !== undefined && !(isObject(options.columns) && options.columns.user_id)) {
    throw badOption('userId', 'used with `columns.user_id` (the column it fills)')
  }
  checkType(options, 'conString', 'string')
  numberOption(options.queryTimeout, 'queryTimeout')
  if (typeof options.ttl !== 'function') numberOption(options.ttl, 'ttl')
  numberOption(options.touchAfter, 'touchAfter')
  if (options.pruneSessionInterval !== false) numberOption(options.pruneSessionInterval, 'pruneSessionInterval')
  const randomized = options.pruneSessionRandomizedInterval
  if (randomized !== undefined && randomized !== false && typeof randomized !== 'function') {
    throw badOption('pruneSessionRandomizedInterval', 'false or a function (delay) => delay')
  }
  const serializer = options.serializer
  if (serializer !== undefined && !(isObject(serializer) && typeof serializer.stringify === 'function' && typeof serializer.parse === 'function')) {
    throw badOption('serializer', 'an object with stringify and parse functions')
  }
  if (options.replicas !== undefined && !Array.isArray(options.replicas)) throw badOption('replicas', 'an array of connection strings or pg config objects')
  numberOption(options.pruneBatchSize, 'pruneBatchSize')
  numberOption(options.maxLifetime, 'maxLifetime')
  if (options.maxLifetime !== undefined && !(isObject(options.columns) && options.columns.created_at)) {
    throw badOption('maxLifetime', 'used with `columns.created_at` (the column it is judged by)')
  }
  const extra = options.extraColumns
  if (extra !== undefined) {
    const expected = `an object of at most ${MAX_EXTRA_COLUMNS} column names, each with a function (session) => string | number | boolean | null`
    if (!isObject(extra)) throw badOption('extraColumns', expected)
    const names = Object.keys(extra)
    if (names.length > MAX_EXTRA_COLUMNS) throw badOption('extraColumns', expected, { got: `${names.length} columns`, Kind: RangeError })
    for (const name of names) {
      if (typeof extra[name] !== 'function') throw badOption(`extraColumns.${name}`, 'a function (session) => string | number | boolean | null')
    }
  }
}

module.exports = { isObject, connectionFrom, primaryFrom, tableFrom, protectionFrom, validate, describe, MAX_TIMER_MS, MAX_TTL_SECONDS }
