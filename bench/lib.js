'use strict'

// Shared by the benchmarks: the contenders, seeding tables, child processes, per-thread CPU (/proc),
// pinning to a CPU and statistics.

const { spawn, spawnSync, execSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const pg = require('pg')

/** The session table connect-pg-simple documents (its table.sql), under another name. */
function createTableSql (table) {
  return `DROP TABLE IF EXISTS "${table}";
    CREATE TABLE "${table}" (
      "sid" varchar NOT NULL COLLATE "default" PRIMARY KEY,
      "sess" json NOT NULL,
      "expire" timestamp(6) NOT NULL);
    CREATE INDEX "IDX_${table}_expire" ON "${table}" ("expire");`
}

/** A session as express-session stores it, about 200 bytes of JSON. */
function sessionObject (i) {
  return {
    cookie: { originalMaxAge: 86400000, expires: new Date(Date.now() + 86400000).toISOString(), httpOnly: true, path: '/' },
    userId: `user-${i}`,
    roles: ['reader'],
    counter: 0,
  }
}

const sid = (i) => `bench-session-${i}`

/** Creates `table` with `live` sessions bench-session-0 … in one statement. */
async function seedTable (url, table, live) {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    await client.query(createTableSql(table))
    await client.query(
      `INSERT INTO "${table}" (sid, sess, expire)
       SELECT 'bench-session-' || i, $1::json, now() + interval '1 day' FROM generate_series(0, $2::int - 1) AS i`,
      [JSON.stringify(sessionObject(0)), live])
    await client.query(`ANALYZE "${table}"`)
  } finally {
    await client.end()
  }
}

async function sql (url, text, params) {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return await client.query(text, params)
  } finally {
    await client.end()
  }
}

/**
 * A store of the given kind with a pool of `max`: 'ours', 'eager' (ours with touchAfter: 0),
 * 'sealed' (ours with `secret`: data encrypted at rest), 'devices' (ours with every issue-21 option:
 * owner, created_at, last_seen, two extra columns, maxLifetime; its table needs those columns),
 * 'cps' (connect-pg-simple + pg), 'redis'
 * (connect-redis + node-redis on `redisUrl`, one connection as its README sets it up) or 'memory'.
 * `ready` settles once the store can take calls (node-redis refuses commands before connect()).
 * @returns {{ store: any, close: () => Promise<void>, ready: Promise<void> }}
 */
function makeStore (kind, { url, table, max = 10, redisUrl }) {
  const session = require('express-session')
  const ready = Promise.resolve()
  if (kind === 'ours' || kind === 'eager' || kind === 'sealed' || kind === 'devices' || kind === 'coordinator') {
    const PGStore = require('..')(session)
    // eager: every touch written (touchAfter: 0), the default's bounded skipping off.
    // sealed: the same store with encryption at rest on. coordinator: on Citus, no statement
    // sent straight to a worker node.
    const extra = kind === 'eager' ? { touchAfter: 0 } : kind === 'sealed' ? { secret: SEALED_SECRET } : kind === 'devices' ? DEVICES_OPTIONS : kind === 'coordinator' ? { routeToNodes: false } : {}
    const store = new PGStore({ conObject: { connectionString: url, max }, tableName: table, pruneSessionInterval: false, ...extra })
    return { store, close: () => store.close(), ready }
  }
  if (kind === 'redis') {
    const { RedisStore } = require('connect-redis')
    const { createClient } = require('redis')
    const client = createClient({ url: redisUrl })
    client.on('error', (err) => console.error('redis client:', err.message))
    // Defaults, as its README shows them; a prefix of its own per table so runs do not share keys.
    const store = new RedisStore({ client, prefix: `${table}:` })
    return { store, close: async () => { await client.quit() }, ready: client.connect().then(() => {}) }
  }
  if (kind === 'cps') {
    const PGStore = require('connect-pg-simple')(session)
    const pool = new pg.Pool({ connectionString: url, max })
    const store = new PGStore({ pool, tableName: table, pruneSessionInterval: false })
    return { store, close: async () => { store.close(); await pool.end() }, ready }
  }
  if (kind === 'memory') {
    const store = new session.MemoryStore()
    return { store, close: async () => {}, ready }
  }
  throw new Error(`unknown store kind ${kind}`)
}

/** The 'devices' contender's options (bench/devices.js adds the columns to its table). */
const DEVICES_OPTIONS = {
  columns: { user_id: 'uid', created_at: 'created_at', last_seen: 'last_seen' },
  userId: (/** @type {any} */ s) => s.userId,
  extraColumns: { ip: () => '203.0.113.7', user_agent: (/** @type {any} */ s) => `bench/${s.roles[0]}` },
  maxLifetime: 30 * 86400 * 1000,
}

/** The 'sealed' contender's secret (a benchmark's, not a real one). */
const SEALED_SECRET = 'benchmark secret: 32 random chars'

const LABELS = { ours: 'express-pg-session', eager: 'express-pg-session, touchAfter: 0', sealed: 'express-pg-session, secret (encrypted)', devices: 'express-pg-session, devices options', cps: 'connect-pg-simple', redis: 'connect-redis + Redis', memory: 'MemoryStore' }

/**
 * Runs `node file` with `input` as JSON in argv; resolves the JSON the child prints last.
 * With `timeoutMs`, a child still running then is killed and the promise rejects, so a
 * contender that hangs costs that long and is reported, instead of stalling the whole run.
 */
function runChild (file, input, { timeoutMs = 0 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--expose-gc', path.join(__dirname, file), JSON.stringify(input)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    let out = ''
    let timedOut = false
    const timer = timeoutMs ? setTimeout(() => { timedOut = true; child.kill('SIGKILL') }, timeoutMs) : null
    child.stdout.on('data', (d) => { out += d })
    child.on('error', reject)
    child.on('exit', (code) => {
      clearTimeout(timer)
      if (timedOut) return reject(new Error(`${file} (${input.kind}) was killed after ${timeoutMs / 1000} s`))
      const last = out.trim().split('\n').pop()
      if (code !== 0) return reject(new Error(`${file} exited with ${code}: ${out}`))
      try { resolve(JSON.parse(last)) } catch { reject(new Error(`${file} printed no result: ${out}`)) }
    })
  })
}

const sorted = (xs) => Float64Array.from(xs).sort()
/** The p-th percentile of `values` (any order). */
function percentile (values, p) {
  const s = sorted(values)
  if (s.length === 0) return NaN
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]
}
const median = (xs) => {
  const s = sorted(xs)
  if (s.length === 0) return NaN
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

/** A, B, B, A, A, B, B, A …: each contender as often first as second, so drift cancels. */
function alternate (a, b, rounds) {
  return alternateAll([a, b], rounds)
}

/**
 * The same for any number of contenders: A B C C B A, then C B A A B C, …; each round holds
 * every contender twice, at positions whose mean is the same for all, so a linear drift cancels.
 * A round is `2 * kinds.length` runs long.
 */
function alternateAll (kinds, rounds) {
  const order = []
  for (let r = 0; r < rounds; r++) {
    const first = r % 2 === 0 ? kinds : [...kinds].reverse()
    order.push(...first, ...[...first].reverse())
  }
  return order
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Sends `msg` to a forked child and resolves its next message (the app's 'stats', say). */
const ask = (child, msg) => new Promise((resolve) => { child.once('message', resolve); child.send(msg) })

/** True when `promise` settles (either way) within `ms`, false otherwise; it is left running. */
async function settlesWithin (promise, ms) {
  let timer
  const timeout = new Promise((resolve) => { timer = setTimeout(resolve, ms, false) })
  try {
    return await Promise.race([promise.then(() => true, () => true), timeout])
  } finally {
    clearTimeout(timer)
  }
}

const TICK_US = 1e6 / 100 // clock ticks of /proc/*/stat, USER_HZ = 100

/**
 * CPU µs so far of each thread of `pid`, by thread name (numbers dropped; the main thread as 'main'),
 * of it in the kernel as `<name> sys`, and its context switches (voluntary and not) as `<name> switches`.
 * Linux (/proc); {} elsewhere.
 */
function threadTimes (pid) {
  const out = {}
  let tasks = []
  try {
    tasks = fs.readdirSync(`/proc/${pid}/task`)
  } catch {}
  for (const t of tasks) {
    try {
      const st = fs.readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8')
      const name = t === String(pid) ? 'main' : st.slice(st.indexOf('(') + 1, st.lastIndexOf(')')).replace(/\d+$/, '')
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ')
      out[name] = (out[name] || 0) + (Number(f[11]) + Number(f[12])) * TICK_US
      out[`${name} sys`] = (out[`${name} sys`] || 0) + Number(f[12]) * TICK_US
      const status = fs.readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8')
      const switches = /voluntary_ctxt_switches:\s+(\d+)[\s\S]*nonvoluntary_ctxt_switches:\s+(\d+)/.exec(status)
      if (switches) out[`${name} switches`] = (out[`${name} switches`] || 0) + Number(switches[1]) + Number(switches[2])
    } catch {} // a thread that ended meanwhile
  }
  return out
}

/** Whether a threadTimes key is a thread's CPU time (not its ' sys' part or its ' switches'). */
const isCpuTime = (key) => !key.endsWith(' sys') && !key.endsWith(' switches')

/**
 * An app's CPU per request by thread between two threadTimes: the JS thread, the addon's tokio
 * worker, and the rest (V8's helper threads, mostly GC; libuv's pool). Undefined where /proc is not.
 * @returns {{ jsUsPerReq: number, workerUsPerReq: number, helpersUsPerReq: number } | undefined}
 */
function byThread (t0, t1, requests) {
  if (!('main' in t1)) return undefined
  const out = { jsUsPerReq: 0, workerUsPerReq: 0, helpersUsPerReq: 0 }
  for (const [name, us] of Object.entries(t1)) {
    if (!isCpuTime(name)) continue
    const key = name === 'main' ? 'jsUsPerReq' : name === 'tokio-rt-worker' ? 'workerUsPerReq' : 'helpersUsPerReq'
    out[key] += (us - (t0[name] || 0)) / requests
  }
  return out
}

/**
 * Moves every thread of `pid` to one CPU (Linux `taskset`). `PIN=1` uses it to put an app process
 * alone on CPU 0 and everything else (the databases, the load generator) on CPU 1, as if the
 * database had its own host.
 */
function pin (pid, cpu) {
  try {
    execSync(`taskset -a -c -p ${cpu} ${pid}`, { stdio: 'ignore' })
  } catch (err) {
    throw new Error(`PIN=1 needs taskset (util-linux) and at least 2 CPUs: ${/** @type {Error} */ (err).message}`)
  }
}

/**
 * Moves `pid` and its descendants (a PostgreSQL postmaster and its backends; new backends inherit
 * it) to `cpu`.
 */
function pinTree (pid, cpu) {
  pin(pid, cpu)
  const children = spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).stdout || ''
  for (const child of children.split('\n').filter(Boolean)) {
    try {
      pinTree(Number(child), cpu)
    } catch {} // a backend that ended meanwhile
  }
}

/** Why the app cannot be given a core of its own here ('' when it can): Linux, CPUs 0 and 1 allowed, taskset. */
function unpinnable () {
  if (process.platform !== 'linux') return 'not Linux'
  // The CPUs this process may use (a container's cpuset may leave out CPU 0 or 1).
  const allowed = /Cpus_allowed_list:\s*(\S+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))
  const cpus = new Set((allowed ? allowed[1] : '').split(',').flatMap((part) => {
    const [a, b = a] = part.split('-').map(Number)
    return Array.from({ length: b - a + 1 }, (_, i) => a + i)
  }))
  if (!cpus.has(0) || !cpus.has(1)) return `CPUs 0 and 1 are not both allowed (${allowed ? allowed[1] : 'unknown'})`
  if (spawnSync('sh', ['-c', 'command -v taskset && command -v pgrep']).status !== 0) return 'taskset or pgrep (util-linux, procps) is not installed'
  return ''
}

module.exports = { TICK_US, threadTimes, isCpuTime, byThread, pin, pinTree, unpinnable, createTableSql, sessionObject, sid, seedTable, sql, makeStore, LABELS, runChild, percentile, median, alternate, alternateAll, sleep, ask, settlesWithin }
