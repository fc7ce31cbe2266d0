'use strict'

// Koa end to end: Koa 3 + koa-session 7 (rolling) on express-pg-session/koa and on koa-redis with
// a private Redis (bench/redis.js), one app process each, driven by autocannon from this process,
// A B B A per round. GET /write changes the session (get + set); GET /read leaves it as it was
// (get + koa-session's rolling set: ours a touch, skipped within its default bound; koa-redis a
// SETEX). Run: `node bench/koa.js [seconds] [rounds]` (default 5 s, 1 round) with DATABASE_URL set.

const { fork } = require('node:child_process')
const { createHmac } = require('node:crypto')
const autocannon = require('autocannon')
const { sid, sleep, ask, alternateAll, median } = require('./lib')
const { startRedis } = require('./redis')

const SESSIONS = 1000
const KEYS = ['bench koa key']
const MAX_AGE = 86400000
const LABELS = { ours: 'express-pg-session/koa', redis: 'koa-redis + Redis' }

/** A session as koa-session hands it to its store, about 150 bytes of JSON. */
const sessionData = (i) => ({ userId: `user-${i}`, roles: ['reader'], counter: 0, _expire: Date.now() + MAX_AGE, _maxAge: MAX_AGE })

// The app process: `node bench/koa.js app '{"kind":…}'`.
async function app ({ kind, url, table, redisUrl }) {
  const Koa = require('koa')
  const { createSession } = require('koa-session')
  const store = kind === 'ours'
    ? require('../koa')({ conObject: { connectionString: url, max: 10 }, tableName: table, createTableIfMissing: true, pruneSessionInterval: false })
    : require('koa-redis')({ url: redisUrl, keyPrefix: `${table}:` })
  if (kind === 'ours') await store.ready()
  // Every cookie the load generator sends names one of these sessions (koa-session adds 10 s).
  await Promise.all(Array.from({ length: SESSIONS }, (_, i) => store.set(sid(i), sessionData(i), MAX_AGE + 10000, { rolling: true, changed: true })))
  const server = new Koa()
  server.keys = KEYS
  server.use(createSession({ store, maxAge: MAX_AGE, rolling: true }, server))
  server.use((ctx) => {
    if (ctx.path === '/write') ctx.session.counter = (ctx.session.counter || 0) + 1
    ctx.body = String(ctx.session.userId)
  })
  const listening = server.listen(0, '127.0.0.1', () => process.send({ port: listening.address().port }))
  let cpu0 = process.cpuUsage()
  process.on('message', (msg) => {
    if (msg === 'mark') cpu0 = process.cpuUsage()
    if (msg === 'stats') {
      const cpu = process.cpuUsage(cpu0)
      process.send({ cpuUs: cpu.user + cpu.system, rssMB: process.memoryUsage.rss() / 2 ** 20 })
    }
    if (msg === 'exit') Promise.resolve(kind === 'ours' ? store.close() : store.quit()).finally(() => process.exit(0))
  })
}

function startApp (options) {
  const child = fork(__filename, ['app', JSON.stringify(options)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`koa app (${options.kind}) exited with ${code}`)))
    child.once('message', ({ port }) => resolve({
      port,
      mark: () => child.send('mark'),
      stats: () => ask(child, 'stats'),
      stop: () => new Promise((resolve) => { child.removeAllListeners('exit'); child.once('exit', resolve); child.send('exit') }),
    }))
  })
}

/** koa-session's signed cookie pair for session `i`, signed as Koa's cookies (keygrip) sign: HMAC-SHA1, base64url. */
function cookieOf (i) {
  const value = sid(i)
  const sig = createHmac('sha1', KEYS[0]).update(`koa.sess=${value}`).digest('base64').replace(/\/|\+|=/g, (c) => ({ '/': '_', '+': '-', '=': '' })[c])
  return `koa.sess=${value}; koa.sess.sig=${sig}`
}

function drive (port, route, seconds, connections = 50) {
  const cookies = Array.from({ length: SESSIONS }, (_, i) => cookieOf(i))
  let next = 0
  return new Promise((resolve, reject) => {
    autocannon({
      url: `http://127.0.0.1:${port}`,
      connections,
      duration: seconds,
      requests: [{ method: 'GET', path: `/${route}`, setupRequest: (req) => ({ ...req, headers: { ...req.headers, cookie: cookies[next++ % SESSIONS] } }) }],
    }, (err, result) => (err ? reject(err) : resolve(result)))
  })
}

async function main () {
  const seconds = Number(process.argv[2] || 5)
  const rounds = Number(process.argv[3] || 1)
  const url = process.env.DATABASE_URL
  if (!url) throw new Error('set DATABASE_URL (a PostgreSQL the benchmark may create a table in)')
  const log = (s) => console.log(s)
  const redis = await startRedis(log)
  const kinds = ['ours']
  if (redis.skip) log(`koa-redis skipped: ${redis.skip}`)
  else kinds.push('redis')
  if (kinds.length > 1) {
    try { require.resolve('koa-redis') } catch { kinds.splice(1); log('koa-redis skipped: not installed (npm install)') }
  }
  const table = `bench_koa_${process.pid}`
  const apps = {}
  const runs = []
  try {
    for (const kind of kinds) apps[kind] = await startApp({ kind, url, table, redisUrl: redis.url })
    for (const route of ['read', 'write']) {
      for (const kind of kinds) await drive(apps[kind].port, route, 2) // warm-up, not measured
      for (const kind of alternateAll(kinds, rounds)) {
        apps[kind].mark()
        const r = await drive(apps[kind].port, route, seconds)
        const { cpuUs } = await apps[kind].stats()
        const run = { kind, route, reqPerSec: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, errors: r.errors + r.non2xx + r.timeouts, appCpuUsPerReq: cpuUs / r.requests.total }
        runs.push(run)
        log(`  koa ${route.padEnd(5)} ${kind.padEnd(5)} ${run.reqPerSec.toFixed(0).padStart(6)} req/s  p50 ${run.p50} ms  p99 ${run.p99} ms  app CPU ${run.appCpuUsPerReq.toFixed(0)} µs/req${run.errors ? `  ERRORS ${run.errors}` : ''}`)
        await sleep(300)
      }
    }
  } finally {
    for (const a of Object.values(apps)) await a.stop()
    if (redis.stop) await redis.stop()
    const pg = require('pg')
    const client = new pg.Client({ connectionString: url })
    await client.connect()
    await client.query(`DROP TABLE IF EXISTS "${table}"`)
    await client.end()
  }
  log('\n| route | store | req/s (median) | p50 ms | p99 ms | app CPU µs/req |\n| --- | --- | ---: | ---: | ---: | ---: |')
  for (const route of ['read', 'write']) {
    for (const kind of kinds) {
      const mine = runs.filter((r) => r.route === route && r.kind === kind)
      const m = (key) => median(mine.map((r) => r[key]))
      log(`| ${route === 'read' ? 'read (rolling, unchanged)' : 'write (changed)'} | ${LABELS[kind]} | ${m('reqPerSec').toFixed(0)} | ${m('p50')} | ${m('p99')} | ${m('appCpuUsPerReq').toFixed(0)} |`)
    }
  }
}

if (process.argv[2] === 'app') {
  app(JSON.parse(process.argv[3])).catch((err) => { console.error(err); process.exit(1) })
} else {
  main().catch((err) => { console.error(err); process.exit(1) })
}
