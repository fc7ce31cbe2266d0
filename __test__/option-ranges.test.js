'use strict'

// Every numeric option has a range, checked in JS before the native store sees it (napi wraps
// numbers to u32: `max: -1` used to abort the process, `queryTimeout: 4294967297` became 1 ms).
// Each store is made in a child process, so a crash fails the test instead of the runner.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { execFile } = require('node:child_process')
const path = require('node:path')
const { uniqueName, withClient } = require('./helpers')

const ROOT = path.join(__dirname, '..')
const DATABASE_URL = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test'
// Nothing listens there: a call that gets past the checks fails fast with ERR_PG_SESSION_CONNECT.
const NOWHERE = 'postgres://nobody@127.0.0.1:1/nothing'
const MAX_TIMER_MS = 2 ** 31 - 1
const DAYS_30 = 30 * 86400

/**
 * Runs `body` in a child node with `PGStore` and `print(err)` (writes one JSON line: the error's
 * name, code and message) in scope; resolves with its exit status, signal and output.
 * @param {string} body
 */
function child (body) {
  const script = `
const PGStore = require(${JSON.stringify(ROOT)})(require('express-session'))
const print = (e) => console.log(JSON.stringify(e instanceof Error ? { name: e.name, code: e.code, message: e.message } : { value: e }))
${body}`
  return new Promise((resolve) => {
    execFile(process.execPath, ['-e', script], { cwd: ROOT, timeout: 20000 }, (err, stdout, stderr) => {
      resolve({ status: err ? (/** @type {any} */ (err).code ?? null) : 0, signal: err ? /** @type {any} */ (err).signal : null, stdout, stderr })
    })
  })
}

/** The JSON lines a child printed. */
const printed = (/** @type {string} */ stdout) => stdout.trim().split('\n').filter(Boolean).map((line) => JSON.parse(line))

/**
 * Constructs a store from `options` (JS source) in a child; resolves with what the constructor
 * threw (or `{ value: 'constructed' }`).
 * @param {string} options
 */
async function construct (options) {
  const r = await child(`
try {
  const store = new PGStore({ conString: ${JSON.stringify(NOWHERE)}, pruneSessionInterval: false, ...(${options}) })
  print('constructed')
  store.close()
} catch (e) {
  print(e)
}`)
  assert.equal(r.signal, null, `the child was killed by ${r.signal}: ${r.stderr.slice(-300)}`)
  assert.equal(r.status, 0, `the child exited with ${r.status}: ${r.stderr.slice(-300)}`)
  const [out] = printed(r.stdout)
  assert.ok(out, `the child printed nothing: ${r.stderr.slice(-300)}`)
  return out
}

/**
 * @param {any} out what the child printed
 * @param {string} name the option, as the message names it
 * @param {'RangeError' | 'TypeError'} kind
 */
function assertRefused (out, name, kind) {
  assert.notDeepEqual(out, { value: 'constructed' }, 'the store was constructed')
  assert.equal(out.code, 'ERR_PG_SESSION_INVALID_OPTION', out.message)
  assert.equal(out.name, kind, out.message)
  assert.ok(out.message.startsWith(`express-pg-session: option \`${name}\` must be `), out.message)
  assert.match(out.message, /from -?[\d.]+ to [\d.]+/, 'the message gives the range')
  assert.match(out.message, /, got .+$/, 'the message says what was given')
}

// [options (JS source), the option the message names, the error's class]
const refused = [
  // What issue 18 found.
  ['{ conObject: { max: -1 } }', 'conObject.max', 'RangeError'],
  ['{ conObject: { max: 2 ** 31 } }', 'conObject.max', 'RangeError'],
  ['{ conObject: { connectionTimeoutMillis: -1 } }', 'conObject.connectionTimeoutMillis', 'RangeError'],
  ['{ conObject: { query_timeout: -1 } }', 'conObject.query_timeout', 'RangeError'],
  ['{ queryTimeout: 4294967297 }', 'queryTimeout', 'RangeError'],
  [`{ pruneSessionInterval: ${DAYS_30} }`, 'pruneSessionInterval', 'RangeError'],
  // max
  ['{ conObject: { max: 0 } }', 'conObject.max', 'RangeError'],
  ['{ conObject: { max: 10001 } }', 'conObject.max', 'RangeError'],
  ['{ conObject: { max: 2 ** 30 } }', 'conObject.max', 'RangeError'],
  ['{ conObject: { max: 2.5 } }', 'conObject.max', 'RangeError'],
  ['{ conObject: { max: NaN } }', 'conObject.max', 'RangeError'],
  ['{ conObject: { max: Infinity } }', 'conObject.max', 'RangeError'],
  ['{ conObject: { max: "10" } }', 'conObject.max', 'TypeError'],
  // the other pg settings, from each place they are read
  ['{ conObject: { connectionTimeoutMillis: 2 ** 31 } }', 'conObject.connectionTimeoutMillis', 'RangeError'],
  ['{ conObject: { connectionTimeoutMillis: NaN } }', 'conObject.connectionTimeoutMillis', 'RangeError'],
  ['{ conObject: { connectionTimeoutMillis: "5000" } }', 'conObject.connectionTimeoutMillis', 'TypeError'],
  ['{ conObject: { query_timeout: 4294967297 } }', 'conObject.query_timeout', 'RangeError'],
  ['{ conObject: { query_timeout: Infinity } }', 'conObject.query_timeout', 'RangeError'],
  ['{ conObject: { idleTimeoutMillis: -1 } }', 'conObject.idleTimeoutMillis', 'RangeError'],
  ['{ conObject: { idleTimeoutMillis: 2 ** 32 } }', 'conObject.idleTimeoutMillis', 'RangeError'],
  ['{ conObject: { idleTimeoutMillis: 0.5 } }', 'conObject.idleTimeoutMillis', 'RangeError'],
  ['{ conObject: { idleTimeoutMillis: "10s" } }', 'conObject.idleTimeoutMillis', 'TypeError'],
  ['{ conObject: { statement_timeout: -1 } }', 'conObject.statement_timeout', 'RangeError'],
  ['{ conObject: { statement_timeout: 2 ** 31 } }', 'conObject.statement_timeout', 'RangeError'],
  ['{ conObject: { statement_timeout: NaN } }', 'conObject.statement_timeout', 'RangeError'],
  ['{ conObject: { statement_timeout: "1000" } }', 'conObject.statement_timeout', 'TypeError'],
  ['{ conObject: { port: 0 } }', 'conObject.port', 'RangeError'],
  ['{ conObject: { port: 65536 } }', 'conObject.port', 'RangeError'],
  ['{ conObject: { port: 5432.5 } }', 'conObject.port', 'RangeError'],
  ['{ conObject: { port: NaN } }', 'conObject.port', 'RangeError'],
  ['{ conObject: { port: "70000" } }', 'conObject.port', 'RangeError'],
  ['{ conObject: { port: "http" } }', 'conObject.port', 'TypeError'],
  ['{ pool: { options: { max: -1 } } }', 'pool.options.max', 'RangeError'],
  ['{ pool: { options: { connectionTimeoutMillis: -1 } } }', 'pool.options.connectionTimeoutMillis', 'RangeError'],
  ['{ pgPromise: { any () {}, $cn: { query_timeout: -1 } } }', 'pgPromise.$cn.query_timeout', 'RangeError'],
  ['{ pgPromise: { any () {}, $cn: { max: 2 ** 31 } } }', 'pgPromise.$cn.max', 'RangeError'],
  [`{ replicas: [${JSON.stringify(NOWHERE)}, { connectionString: ${JSON.stringify(NOWHERE)}, max: -1 }] }`, 'replicas[1].max', 'RangeError'],
  ['{ replicas: [{ idleTimeoutMillis: Infinity }] }', 'replicas[0].idleTimeoutMillis', 'RangeError'],
  // the store's own
  ['{ queryTimeout: 0 }', 'queryTimeout', 'RangeError'],
  ['{ queryTimeout: -1 }', 'queryTimeout', 'RangeError'],
  ['{ queryTimeout: NaN }', 'queryTimeout', 'RangeError'],
  ['{ queryTimeout: "1000" }', 'queryTimeout', 'TypeError'],
  ['{ pruneBatchSize: 0 }', 'pruneBatchSize', 'RangeError'],
  ['{ pruneBatchSize: 1.5 }', 'pruneBatchSize', 'RangeError'],
  ['{ pruneBatchSize: 1000001 }', 'pruneBatchSize', 'RangeError'],
  ['{ pruneBatchSize: 2 ** 32 + 1 }', 'pruneBatchSize', 'RangeError'],
  ['{ pruneBatchSize: Infinity }', 'pruneBatchSize', 'RangeError'],
  ['{ pruneBatchSize: "100" }', 'pruneBatchSize', 'TypeError'],
  ['{ pruneSessionInterval: 2147484 }', 'pruneSessionInterval', 'RangeError'],
  ['{ pruneSessionInterval: -5 }', 'pruneSessionInterval', 'RangeError'],
  ['{ pruneSessionInterval: NaN }', 'pruneSessionInterval', 'RangeError'],
  ['{ pruneSessionInterval: Infinity }', 'pruneSessionInterval', 'RangeError'],
  ['{ pruneSessionInterval: "often" }', 'pruneSessionInterval', 'TypeError'],
  ['{ ttl: -1 }', 'ttl', 'RangeError'],
  ['{ ttl: NaN }', 'ttl', 'RangeError'],
  ['{ ttl: Infinity }', 'ttl', 'RangeError'],
  ['{ ttl: 1e300 }', 'ttl', 'RangeError'],
  ['{ ttl: 3155760001 }', 'ttl', 'RangeError'],
  ['{ ttl: "1h" }', 'ttl', 'TypeError'],
  ['{ touchAfter: -1 }', 'touchAfter', 'RangeError'],
  ['{ touchAfter: NaN }', 'touchAfter', 'RangeError'],
  ['{ touchAfter: Infinity }', 'touchAfter', 'RangeError'],
  [`{ touchAfter: ${DAYS_30} }`, 'touchAfter', 'RangeError'],
  ['{ touchAfter: "10" }', 'touchAfter', 'TypeError'],
]

for (const [options, name, kind] of refused) {
  test(`${options} is refused with a ${kind} naming \`${name}\` and its range`, async () => {
    assertRefused(await construct(options), name, kind)
  })
}

test('a connection string\'s bad numbers are refused with the coded error, not a crash', async () => {
  for (const query of ['port=0', 'port=70000', 'connect_timeout=-1', 'connect_timeout=soon', 'statement_timeout=-5', 'statement_timeout=99999999999']) {
    const out = await construct(`{ conString: 'postgres://nobody@127.0.0.1:1/nothing?${query}' }`)
    assert.equal(out.code, 'ERR_PG_SESSION_INVALID_OPTION', `${query}: ${JSON.stringify(out)}`)
  }
})

test('a ttl function\'s result is checked at call time: NaN, Infinity, past 100 years, not a number', async () => {
  for (const [result, kind] of [['NaN', 'RangeError'], ['Infinity', 'RangeError'], ['1e300', 'RangeError'], ['3155760001', 'RangeError'], ['-3155760001', 'RangeError'], ['"1h"', 'TypeError']]) {
    const r = await child(`
const store = new PGStore({ conString: ${JSON.stringify(NOWHERE)}, pruneSessionInterval: false, ttl: () => ${result} })
store.set('s', { cookie: {} }).then(() => print('stored'), print).finally(() => store.close())`)
    assert.equal(r.signal, null, r.stderr)
    assert.equal(r.status, 0, r.stderr)
    const [out] = printed(r.stdout)
    assert.equal(out.code, 'ERR_PG_SESSION_INVALID_OPTION', `ttl () => ${result}: ${JSON.stringify(out)}`)
    assert.equal(out.name, kind, out.message)
    assert.ok(out.message.includes('`ttl`') && out.message.includes('3155760000'), out.message)
  }
})

test('a prune delay past setTimeout\'s limit waits that limit instead of firing after 1 ms', async () => {
  // 150 % of a long interval (the default randomization can reach it) is past 2^31-1 ms.
  const r = await child(`
let prunes = 0
const store = new PGStore({
  conString: ${JSON.stringify(NOWHERE)}, pruneSessionInterval: 2000000,
  pruneSessionRandomizedInterval: (delay) => delay * 1.5, errorLog: () => { prunes++ },
})
store.get('s').catch(() => {})
setTimeout(() => { print(prunes); store.close() }, 500)`)
  assert.equal(r.status, 0, r.stderr)
  assert.deepEqual(printed(r.stdout), [{ value: 0 }], 'a prune ran right away')
  assert.ok(!r.stderr.includes('TimeoutOverflowWarning'), r.stderr)
})

test('the bounds themselves are accepted; a store on them works and closes', async () => {
  const bounds = [
    '{ conObject: { max: 1 } }',
    '{ conObject: { max: 10000 } }',
    `{ conObject: { connectionTimeoutMillis: 0, query_timeout: 0, idleTimeoutMillis: 0, statement_timeout: 0 } }`,
    `{ conObject: { connectionTimeoutMillis: ${MAX_TIMER_MS}, query_timeout: ${MAX_TIMER_MS}, idleTimeoutMillis: ${MAX_TIMER_MS}, statement_timeout: ${MAX_TIMER_MS} } }`,
    // pg's "not set"
    '{ conObject: { statement_timeout: false, query_timeout: false, port: null, max: null } }',
    '{ conObject: { port: 1 } }',
    '{ conObject: { port: 65535 } }',
    '{ conObject: { port: "5432" } }',
    `{ pool: { options: { max: 10000, connectionTimeoutMillis: 0, idleTimeoutMillis: ${MAX_TIMER_MS} } } }`,
    `{ replicas: [{ port: 65535, max: 1, query_timeout: ${MAX_TIMER_MS} }] }`,
    `{ queryTimeout: 1 }`,
    `{ queryTimeout: ${MAX_TIMER_MS} }`,
    '{ pruneBatchSize: 1 }',
    '{ pruneBatchSize: 1000000 }',
    '{ pruneSessionInterval: 0 }',
    '{ pruneSessionInterval: 0.05 }',
    `{ pruneSessionInterval: ${MAX_TIMER_MS / 1000} }`,
    '{ ttl: 0 }',
    '{ ttl: 0.5 }',
    '{ ttl: 3155760000 }',
    '{ touchAfter: 0 }',
    `{ touchAfter: ${MAX_TIMER_MS / 1000} }`,
  ]
  for (const options of bounds) {
    assert.deepEqual(await construct(options), { value: 'constructed' }, options)
  }
  const table = uniqueName('option_ranges')
  // On the real database: the widest timeouts and the smallest pool (PostgreSQL takes a
  // statement_timeout of 2^31-1 ms), and ttl functions at both ends of their range.
  const r = await child(`
const store = new PGStore({
  conObject: { connectionString: ${JSON.stringify(DATABASE_URL)}, max: 1, connectionTimeoutMillis: ${MAX_TIMER_MS}, query_timeout: ${MAX_TIMER_MS}, statement_timeout: ${MAX_TIMER_MS} },
  tableName: ${JSON.stringify(table)}, createTableIfMissing: true, pruneSessionInterval: false,
  ttl: (sess) => sess.ttl,
})
;(async () => {
  try {
    await store.ready()
    await store.set('long', { cookie: {}, ttl: 3155760000 })
    await store.set('gone', { cookie: {}, ttl: -3155760000 })
    print([await store.get('long') !== null, await store.get('gone')])
  } catch (e) {
    print(e)
  } finally {
    await store.clear().catch(() => {})
    await store.close()
  }
})()`)
  await withClient((c) => c.query(`DROP TABLE IF EXISTS "${table}"`))
  assert.equal(r.status, 0, r.stderr)
  assert.deepEqual(printed(r.stdout), [{ value: [true, null] }])
})
