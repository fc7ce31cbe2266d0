'use strict'

// `node bench/profile.js [ours|eager|cps|redis] [read|write] [seconds]`: where one Express request's
// time goes, for one store. Starts an embedded PostgreSQL with pg_stat_statements (and a Redis for
// `redis`), the app of bench/express-app.js, drives one route with autocannon (50 connections, 1000
// sessions), then prints CPU per request of each app thread (main = the JS thread, node = V8's and
// libuv's helpers, tokio-rt-worker = the addon's worker), of PostgreSQL's processes, of Redis and of
// the load generator; how busy the JS thread was (event-loop utilization: below 1, every request was
// waiting on the store while the JS thread idled); WAL bytes and HOT updates per request, and the
// statements PostgreSQL spent its time on. Env: PERF=1 records `perf record -e cpu-clock
// --per-thread` of the app into bench/results/partial/; STRACE=1 writes `strace -c -f` of the app
// there; CPUPROF=1 writes the JS thread's V8 profile (.cpuprofile) there; SCHEMA=brin|ff50 changes
// the table's expire index / fillfactor before the run; PIN=1 runs the app alone on CPU 0 and
// everything else (databases, load generator) on CPU 1 (Linux `taskset`), as if the database had its
// own host. Numbers of one run only: compare contenders side by side with run.js.

const fs = require('node:fs')
const path = require('node:path')
const { fork, execSync } = require('node:child_process')
const autocannon = require('autocannon')
const signature = require('cookie-signature')
const { seedTable, sid, sql, ask, pin, threadTimes, isCpuTime, TICK_US } = require('./lib')
const { startServer } = require('../__test__/pg-server')
const { startRedis } = require('./redis')

const [kind = 'ours', route = 'read', secondsArg = '8'] = process.argv.slice(2)
const seconds = Number(secondsArg)
const OUT = path.join(__dirname, 'results', 'partial')

/** CPU µs so far of every process whose command line matches. */
function processTimes (pattern) {
  let total = 0
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue
    try {
      if (!pattern.test(fs.readFileSync(`/proc/${p}/cmdline`, 'utf8'))) continue
      const st = fs.readFileSync(`/proc/${p}/stat`, 'utf8')
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ')
      total += (Number(f[11]) + Number(f[12])) * TICK_US
    } catch {}
  }
  return total
}

async function main () {
  fs.mkdirSync(OUT, { recursive: true })
  // Set before anything starts, so the database, Redis and the app inherit CPU 1 (the app is moved).
  if (process.env.PIN) pin(process.pid, 1)
  const server = await startServer({ postgresFlags: ['-c', 'shared_preload_libraries=pg_stat_statements', '-c', 'pg_stat_statements.track=all'] })
  let redis = null
  let child = null
  try {
    const url = server.url
    await sql(url, 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements')
    const table = `profile_${kind}`
    await seedTable(url, table, 0)
    if (process.env.SCHEMA === 'brin') await sql(url, `DROP INDEX "IDX_${table}_expire"; CREATE INDEX ON "${table}" USING brin (expire); ALTER TABLE "${table}" SET (fillfactor = 50)`)
    if (process.env.SCHEMA === 'ff50') await sql(url, `ALTER TABLE "${table}" SET (fillfactor = 50)`)
    if (kind === 'redis') {
      redis = await startRedis(console.log)
      if (redis.skip) throw new Error(redis.skip)
    }
    child = fork(path.join(__dirname, 'express-app.js'), [JSON.stringify({ kind, url, table, redisUrl: redis && redis.url, sessions: 1000, secret: 's' })],
      { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: process.env.CPUPROF ? ['--cpu-prof', `--cpu-prof-dir=${OUT}`] : [] })
    const { port } = await new Promise((resolve) => child.once('message', resolve))
    if (process.env.PIN) pin(/** @type {number} */ (child.pid), 0)
    const cookies = Array.from({ length: 1000 }, (_, i) => 'connect.sid=' + encodeURIComponent('s:' + signature.sign(sid(i), 's')))
    let next = 0
    const drive = (s) => new Promise((resolve, reject) => autocannon({
      url: `http://127.0.0.1:${port}`,
      connections: 50,
      duration: s,
      requests: [{ method: 'GET', path: `/${route}`, setupRequest: (req) => ({ ...req, headers: { ...req.headers, cookie: cookies[next++ % 1000] } }) }],
    }, (err, r) => (err ? reject(err) : resolve(r))))
    await drive(3)
    await sql(url, 'SELECT pg_stat_statements_reset()')
    child.send('mark')
    const tableStats = `SELECT n_tup_upd AS upd, n_tup_hot_upd AS hot FROM pg_stat_user_tables WHERE relname = '${table}'`
    const wal0 = (await sql(url, 'SELECT pg_current_wal_lsn() AS l')).rows[0].l
    const stats0 = (await sql(url, tableStats)).rows[0]
    const app0 = threadTimes(child.pid)
    const pg0 = processTimes(/^postgres/)
    const redis0 = processTimes(/redis-server/)
    const self0 = process.cpuUsage()
    if (process.env.PERF) execSync(`timeout -s INT ${seconds - 1} perf record -F 2000 -e cpu-clock --per-thread -p ${child.pid} -o ${OUT}/perf-${kind}-${route}.data > /dev/null 2>&1 &`)
    if (process.env.STRACE) execSync(`timeout ${seconds - 1} strace -c -f -p ${child.pid} -o ${OUT}/strace-${kind}-${route}.txt > /dev/null 2>&1 &`)
    const r = await drive(seconds)
    const app1 = threadTimes(child.pid)
    const { busy } = await ask(child, 'stats')
    const n = r.requests.total
    const perRequest = (us) => Number((us / n).toFixed(1))
    const threads = {}
    for (const name of Object.keys(app1)) if (isCpuTime(name) && app1[name] - (app0[name] || 0) > 0.2 * n) threads[name] = perRequest(app1[name] - (app0[name] || 0))
    const self = process.cpuUsage(self0)
    const wal = (await sql(url, `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '${wal0}') AS b`)).rows[0].b
    const stats1 = (await sql(url, tableStats)).rows[0]
    console.log(JSON.stringify({
      kind,
      route,
      reqPerSec: r.requests.average,
      requests: n,
      appCpuUsPerRequestByThread: threads,
      jsThreadBusy: Number(busy.toFixed(3)),
      postgresCpuUsPerRequest: perRequest(processTimes(/^postgres/) - pg0),
      redisCpuUsPerRequest: perRequest(processTimes(/redis-server/) - redis0),
      autocannonCpuUsPerRequest: perRequest(self.user + self.system),
      walBytesPerRequest: Math.round(wal / n),
      updates: stats1 ? stats1.upd - stats0.upd : 0,
      hotUpdates: stats1 ? stats1.hot - stats0.hot : 0,
    }, null, 1))
    const top = await sql(url, `SELECT calls, round(total_exec_time::numeric, 1) AS ms, round((total_exec_time / calls * 1000)::numeric, 1) AS us_per_call,
      rows, wal_bytes, left(regexp_replace(query, '\\s+', ' ', 'g'), 100) AS query FROM pg_stat_statements WHERE calls > 10 ORDER BY total_exec_time DESC LIMIT 8`)
    console.table(top.rows)
  } finally {
    // Asked to exit, the app writes its profile (CPUPROF); a kill would lose it.
    if (child) await new Promise((resolve) => { child.once('exit', resolve); child.send('exit') })
    if (redis && redis.stop) await redis.stop()
    await server.destroy()
  }
}

main().catch((err) => { console.error(err); process.exit(1) })
