'use strict'

// Express end to end: one app process per store, driven by autocannon from this process,
// contenders alternated (A B B A, or A B C C B A with connect-redis) on the read route and the
// write route; MemoryStore once per round as a reference (no database; connect-redis can beat it).

const { fork } = require('node:child_process')
const path = require('node:path')
const autocannon = require('autocannon')
const signature = require('cookie-signature')
const { seedTable, sid, alternateAll, sleep, ask, pin, threadTimes, byThread } = require('./lib')

const SECRET = 'bench-secret'
const SESSIONS = 1000

function startApp (kind, url, table, redisUrl, pinApp) {
  const child = fork(path.join(__dirname, 'express-app.js'),
    [JSON.stringify({ kind, url, table, redisUrl, sessions: SESSIONS, secret: SECRET })], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  return new Promise((resolve, reject) => {
    child.once('error', reject)
    child.once('exit', (code) => reject(new Error(`express app (${kind}) exited with ${code}`)))
    child.once('message', ({ port }) => {
      // Started on this process's CPU (the seeding shares it with the database), then moved alone to CPU 0.
      if (pinApp) pin(/** @type {number} */ (child.pid), 0)
      resolve(app(port))
    })
  })
  function app (port) {
    return {
      port,
      pid: /** @type {number} */ (child.pid),
      mark: () => child.send('mark'),
      stats: () => ask(child, 'stats'),
      stop: () => new Promise((resolve) => { child.removeAllListeners('exit'); child.once('exit', resolve); child.send('exit') }),
    }
  }
}

function drive (port, route, seconds, connections) {
  const cookies = Array.from({ length: SESSIONS }, (_, i) =>
    'connect.sid=' + encodeURIComponent('s:' + signature.sign(sid(i), SECRET)))
  let next = 0
  return new Promise((resolve, reject) => {
    autocannon({
      url: `http://127.0.0.1:${port}`,
      connections,
      duration: seconds,
      requests: [{
        method: 'GET',
        path: `/${route}`,
        setupRequest: (req) => ({ ...req, headers: { ...req.headers, cookie: cookies[next++ % SESSIONS] } }),
      }],
    }, (err, result) => (err ? reject(err) : resolve(result)))
  })
}

/**
 * `others`: the contenders beside express-pg-session ('cps', 'redis'); `redis` the server
 * bench/redis.js started; `pinApp`: each app process alone on CPU 0 (run.js's PIN=1, which has
 * put everything else on CPU 1).
 * @param {{ url: string, rounds: number, seconds: number, connections?: number, others?: string[], redis?: { url: string }, pinApp?: boolean, log: (s: string) => void }} o
 */
async function runExpress ({ url, rounds, seconds, warmupSeconds = 3, connections = 50, others = ['cps'], redis, pinApp = false, log }) {
  const apps = {}
  for (const kind of ['ours', ...others, 'memory']) {
    if (kind !== 'memory' && kind !== 'redis') await seedTable(url, `bench_express_${kind}`, 0)
    apps[kind] = await startApp(kind, url, `bench_express_${kind}`, redis && redis.url, pinApp)
  }
  const runs = []
  try {
    for (const route of ['read', 'write']) {
      // One short unmeasured run each: connections opened, code warmed up.
      // Ours with every touch written differs from ours only where there are touches; encryption
      // is measured where sessions are written (get + set).
      const runsOn = (k) => (route === 'read' ? k !== 'sealed' : k !== 'eager')
      for (const kind of Object.keys(apps)) if (runsOn(kind)) await drive(apps[kind].port, route, warmupSeconds, connections)
      const kinds = ['ours', ...others.filter(runsOn)]
      for (const kind of alternateWithMemory(kinds, rounds)) {
        apps[kind].mark()
        const t0 = threadTimes(apps[kind].pid)
        const r = await drive(apps[kind].port, route, seconds, connections)
        const t1 = threadTimes(apps[kind].pid)
        const { rssMB, cpuUs } = await apps[kind].stats()
        const run = {
          kind,
          route,
          reqPerSec: r.requests.average,
          p50: r.latency.p50,
          p99: r.latency.p99,
          errors: r.errors + r.non2xx + r.timeouts,
          appCpuUsPerReq: cpuUs / r.requests.total,
          rssMB,
          // Linux: the same CPU split by thread (JS thread, tokio worker, V8's helpers).
          ...byThread(t0, t1, r.requests.total),
        }
        runs.push(run)
        log(`  express ${route.padEnd(5)} ${kind.padEnd(6)} ${run.reqPerSec.toFixed(0).padStart(6)} req/s  p99 ${run.p99} ms  app CPU ${run.appCpuUsPerReq.toFixed(0)} µs/req${run.jsUsPerReq === undefined ? '' : ` (JS ${run.jsUsPerReq.toFixed(0)} · V8 helpers ${run.helpersUsPerReq.toFixed(0)} · worker ${run.workerUsPerReq.toFixed(0)})`}  rss ${rssMB.toFixed(0)} MB${run.errors ? `  ERRORS ${run.errors}` : ''}`)
        await sleep(300)
      }
    }
  } finally {
    for (const app of Object.values(apps)) await app.stop()
  }
  return runs
}

/** memory, then the contenders alternated (A B B A, A B C C B A), per round. */
function alternateWithMemory (kinds, rounds) {
  const order = []
  const each = alternateAll(kinds, rounds)
  const n = 2 * kinds.length
  for (let r = 0; r < rounds; r++) order.push('memory', ...each.slice(r * n, r * n + n))
  return order
}

module.exports = { runExpress }
