'use strict'

// `[PIN=1] [CPUPROF=1] node bench/ab.js read|write rounds seconds dir:kind dir:kind …`: the Express app
// (bench/express-app.js) of other checkouts side by side, A B B A (A B C C B A …), on an embedded
// PostgreSQL (and a Redis for a `redis` kind): e.g. `/tmp/main:ours .:ours .:redis` compares a build of
// main (a copy of the tree with its own .node, node_modules linked) with this one and connect-redis.
// Prints each run's req/s, app CPU per request and each app thread's CPU per request (main = the JS
// thread; node, V8Worker on Node 24 = V8's helpers, mostly GC; tokio-rt-worker = the addon's worker;
// `<thread> sys` the part in the kernel, `<thread> switches` its context switches), the app's RSS and
// V8 heap in use, then medians and spreads. PIN=1 as in run.js: each app alone on CPU 0, everything else on CPU 1.
// CPUPROF=1 writes each app's V8 profile to bench/results/partial/ab-<n>/; NODE_ARGS='--trace-gc-nvp …'
// are the apps' node flags.

const path = require('node:path')
const { fork } = require('node:child_process')
const autocannon = require('autocannon')
const signature = require('cookie-signature')
const { seedTable, sid, ask, pin, alternateAll, median, threadTimes } = require('./lib')
const { startServer } = require('../__test__/pg-server')
const { startRedis } = require('./redis')
const [route, rounds, seconds, ...specs] = process.argv.slice(2)
const PIN = !!process.env.PIN
async function main () {
  if (PIN) pin(process.pid, 1)
  const server = await startServer()
  const redis = specs.some((s) => s.endsWith(':redis')) ? await startRedis(() => {}) : null
  const apps = {}
  try {
    for (const [i, spec] of specs.entries()) {
      const [dir, kind] = spec.split(':')
      if (!kind) throw new Error(`${spec}: expected dir:kind (ours, redis, eager, sealed, cps)`)
      const table = `ab_${i}`
      if (kind !== 'redis') await seedTable(server.url, table, 0)
      const child = fork(path.join(path.resolve(dir), 'bench', 'express-app.js'), [JSON.stringify({ kind, url: server.url, table, redisUrl: redis && redis.url, sessions: 1000, secret: 's' })], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: [...(process.env.CPUPROF ? ['--cpu-prof', `--cpu-prof-dir=${path.join(__dirname, 'results', 'partial', `ab-${i}`)}`] : []), ...(process.env.NODE_ARGS || '').split(' ').filter(Boolean)] })
      const { port } = await new Promise((resolve) => child.once('message', resolve))
      if (PIN) pin(child.pid, 0)
      apps[spec] = { child, port }
    }
    const cookies = Array.from({ length: 1000 }, (_, i) => 'connect.sid=' + encodeURIComponent('s:' + signature.sign(sid(i), 's')))
    let next = 0
    const drive = (port, s) => new Promise((resolve, reject) => autocannon({
      url: `http://127.0.0.1:${port}`, connections: 50, duration: s,
      requests: [{ method: 'GET', path: `/${route}`, setupRequest: (req) => ({ ...req, headers: { ...req.headers, cookie: cookies[next++ % 1000] } }) }],
    }, (err, r) => (err ? reject(err) : resolve(r))))
    for (const spec of specs) await drive(apps[spec].port, 3)
    const res = {}
    for (const spec of alternateAll(specs, Number(rounds))) {
      const { child, port } = apps[spec]
      child.send('mark')
      const t0 = threadTimes(child.pid)
      const r = await drive(port, Number(seconds))
      const t1 = threadTimes(child.pid)
      const { cpuUs, rssMB, heapMB } = await ask(child, 'stats')
      const n = r.requests.total
      const th = {}
      for (const k of Object.keys(t1)) {
        const d = (t1[k] - (t0[k] || 0)) / n
        if (d > (k.endsWith('switches') ? 0.01 : 0.5)) th[k] = Number(d.toFixed(k.endsWith('switches') ? 2 : 1))
      }
      if (!res[spec]) res[spec] = []
      res[spec].push({ rps: r.requests.average, cpu: cpuUs / n, th })
      console.log(`${route} ${spec.padEnd(30)} ${r.requests.average.toFixed(0).padStart(6)} req/s  p50/p99 ${r.latency.p50}/${r.latency.p99} ms  app CPU ${(cpuUs / n).toFixed(1)} µs/req  rss/heap ${rssMB.toFixed(0)}/${heapMB === undefined ? '–' : heapMB.toFixed(0)} MB  ${JSON.stringify(th)}`)
    }
    // Per round (each holds every contender twice): the mean of each, and its ratio to the first's.
    const perRound = (spec, k) => {
      const xs = res[spec].map(k)
      const out = []
      for (let r = 0; r < xs.length; r += 2) out.push((xs[r] + xs[r + 1]) / 2)
      return out
    }
    for (const spec of specs.slice(1)) {
      for (const [name, k] of [['app CPU/req', (x) => x.cpu], ['req/s', (x) => x.rps]]) {
        const a = perRound(spec, k)
        const b = perRound(specs[0], k)
        const ratios = a.map((x, i) => x / b[i])
        console.log(`RATIO ${route} ${name} ${spec} / ${specs[0]}: median ${median(ratios).toFixed(2)} (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}) over ${ratios.length} rounds`)
      }
    }
    for (const spec of specs) {
      const xs = res[spec]
      const c = xs.map((x) => x.cpu)
      const q = xs.map((x) => x.rps)
      console.log(`SUMMARY ${route} ${spec}: cpu median ${median(c).toFixed(1)} (${Math.min(...c).toFixed(1)}–${Math.max(...c).toFixed(1)}), req/s median ${median(q).toFixed(0)} (${Math.min(...q).toFixed(0)}–${Math.max(...q).toFixed(0)})`)
    }
  } finally {
    for (const { child } of Object.values(apps)) await new Promise((resolve) => { child.once('exit', resolve); child.send('exit') })
    if (redis && redis.stop) await redis.stop()
    await server.destroy()
  }
}
main().catch((e) => { console.error(e); process.exit(1) })
