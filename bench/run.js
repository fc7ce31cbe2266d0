'use strict'

// `[PIN=1] npm run bench [-- --quick] [-- --only=store,latency,hot,locked,express,memory,size,pgbench] [-- --no-readme]
//   [-- --vs=cps,eager,redis]`
// Every benchmark, against DATABASE_URL or an embedded PostgreSQL started here. The store and
// Express benchmarks also run connect-redis on a Redis started here (bench/redis.js), skipped
// with a message where that cannot be done; --vs picks their contenders beside ours (default
// all three, `eager` being ours with touchAfter: 0; `--only=store,express --vs=redis` is the
// quick comparison with connect-redis). Writes
// bench/results/results.json, results.md and chart.svg (bench/results/partial/ for --only), and
// the documents' performance sections between their markers (not for --only or --no-readme):
// the full section in docs/benchmarks.md, the short table in README.md (bench/publish.js, which
// also re-renders them from a saved results.json). PIN=1 (Linux, ≥ 2 CPUs, with --only=express)
// puts each Express app process alone on CPU 0 and everything else (this process and its load
// generator, the embedded PostgreSQL, Redis) on CPU 1, as if the database had its own host; a full
// run ends with such an Express pass against connect-redis (Linux, ≥ 2 CPUs, taskset).

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { sql, pin, pinTree, unpinnable } = require('./lib')
const { runStoreOps, runLatency, runMemory } = require('./store-ops')
const { runHot } = require('./hot')
const { runLocked } = require('./locked')
const { runExpress } = require('./express')
const { runTableSize } = require('./table-size')
const { runPgbench } = require('./pgbench')
const { summarize, markdown } = require('./report')
const { saveResults, writeDocs } = require('./publish')
const { startRedis } = require('./redis')

const args = process.argv.slice(2)
const quick = args.includes('--quick')
const onlyArg = args.find((a) => a.startsWith('--only='))
const only = onlyArg ? new Set(onlyArg.slice(7).split(',')) : null
const wants = (name) => !only || only.has(name)
// --no-readme: results only, the documents are left as they are.
const vsArg = args.find((a) => a.startsWith('--vs='))
// eager: ours with every touch written (touchAfter: 0), beside the default's bounded skipping.
// sealed: ours with `secret` (encryption at rest), on store ops and the write route.
const vs = vsArg ? vsArg.slice(5).split(',') : ['cps', 'eager', 'redis', 'sealed']
const writeDocuments = !args.includes('--no-readme') && !only && !vsArg
const pinned = !!process.env.PIN && process.env.PIN !== '0'

// Full: ≈ 22 minutes on a 2-core machine (hot + locked ≈ 3.7 of them, connect-redis and touchAfter: 0 ≈ 4, the
// pinned Express pass ≈ 4); quick: ≈ 9 minutes (hot + locked ≈ 1.7).
const plan = quick
  ? { rounds: 2, storeSeconds: 3, latencySeconds: 2, hotSeconds: 4, lockHoldSeconds: 3, expressSeconds: 4, memoryOps: 200000, expired: 200000, sizeSeconds: 2, pgbenchSeconds: 3 }
  : { rounds: 3, storeSeconds: 5, latencySeconds: 3, hotSeconds: 10, lockHoldSeconds: 3, expressSeconds: 8, memoryOps: 1000000, expired: 1000000, sizeSeconds: 4, pgbenchSeconds: 5 }

const log = (line) => process.stdout.write(line + '\n')

async function main () {
  if (pinned) {
    // The other benchmarks' own processes would all share CPU 1 with the databases.
    if (!only || [...only].some((name) => name !== 'express')) throw new Error('PIN=1 is for the Express benchmark: add --only=express')
    const why = unpinnable()
    if (why) throw new Error(`PIN=1 cannot pin here: ${why}`)
    // Before anything starts, so the embedded PostgreSQL and Redis inherit CPU 1 (the apps are moved to CPU 0).
    pin(process.pid, 1)
    if (process.env.DATABASE_URL) log('PIN=1: the server at DATABASE_URL is not started here, so it is not pinned; unset DATABASE_URL to have an embedded one on CPU 1')
  }
  let server
  let url = process.env.DATABASE_URL
  if (!url) {
    log('DATABASE_URL is not set: starting an embedded PostgreSQL for the benchmarks')
    const { startServer } = require('../__test__/pg-server')
    server = await startServer()
    url = server.url
  }
  const started = Date.now()
  let redis = null
  try {
    const version = (await sql(url, 'SHOW server_version')).rows[0].server_version
    const cpus = os.cpus()
    const raw = {
      date: new Date().toISOString().slice(0, 16).replace('T', ' ') + ' UTC',
      machine: `${cpus.length} × ${cpus[0].model.trim()}, ${Math.round(os.totalmem() / 2 ** 30)} GB RAM, ${os.type()} ${os.release()}, Node ${process.version}`,
      postgres: `PostgreSQL ${version.split(' ')[0]} (${server ? 'embedded' : 'DATABASE_URL'})`,
      command: `${pinned ? 'PIN=1 ' : ''}npm run bench${args.length ? ' -- ' + args.join(' ') : ''}`,
      plan,
    }
    if (pinned) raw.pinned = `PIN=1: each Express app alone on CPU 0; ${server ? 'PostgreSQL, ' : ''}Redis and the load generator on CPU 1`
    let others = vs.filter((k) => k !== 'redis')
    if (vs.includes('redis') && (wants('store') || wants('express'))) {
      const r = await startRedis(log)
      if (r.skip) {
        log(`connect-redis contender SKIPPED: ${r.skip}`)
      } else {
        redis = r
        others = [...others, 'redis']
        raw.redis = `${redis.version}, no persistence; connect-redis ${packageVersion('connect-redis')}, redis ${packageVersion('redis')}`
        log(`connect-redis contender: ${raw.redis} at ${redis.url}`)
      }
    }
    if (wants('pgbench')) { log('PostgreSQL\'s own limit (pgbench)'); raw.pgbench = await runPgbench({ url, seconds: plan.pgbenchSeconds, log }) }
    if (wants('store')) { log('Store operations'); raw.store = await runStoreOps({ url, rounds: plan.rounds, seconds: plan.storeSeconds, others, redis, log }) }
    if (wants('latency')) { log('Single-operation latency'); raw.latency = await runLatency({ url, rounds: plan.rounds, seconds: plan.latencySeconds, log }) }
    if (wants('hot')) { log('Hot sessions'); raw.hot = await runHot({ url, rounds: plan.rounds, seconds: plan.hotSeconds, log }) }
    if (wants('locked')) { log('One row locked'); raw.locked = await runLocked({ url, rounds: plan.rounds, holdSeconds: plan.lockHoldSeconds, log }) }
    if (wants('express')) { log('Express end to end'); raw.express = await runExpress({ url, rounds: plan.rounds, seconds: plan.expressSeconds, others, redis, pinApp: pinned, log }) }
    if (wants('memory')) { log('Memory over a long run'); raw.memory = await runMemory({ url, totalOps: plan.memoryOps, log }) }
    if (wants('size')) { log('Cost with table size'); raw.tableSize = await runTableSize({ url, expired: plan.expired, seconds: plan.sizeSeconds, rounds: plan.rounds, log }) }
    // A full run's Express apps once more, each alone on CPU 0 against connect-redis: the app CPU
    // and throughput users get with the database on another machine (issue 20). Last, since it
    // moves this process, PostgreSQL and Redis to CPU 1.
    if (!only && !pinned) {
      const why = redis ? unpinnable() : 'connect-redis did not run'
      if (why) {
        log(`Express with each app alone on one core SKIPPED: ${why}`)
      } else {
        log('Express, each app alone on CPU 0')
        if (!server) log('The server at DATABASE_URL is not started here, so it is not pinned: it may share CPU 0 with the apps')
        try {
          pin(process.pid, 1)
          pinTree(redis.pid, 1)
          if (server) pinTree(Number(fs.readFileSync(path.join(server.databaseDir, 'postmaster.pid'), 'utf8').split('\n')[0]), 1)
          raw.expressPinned = await runExpress({ url, rounds: plan.rounds, seconds: plan.expressSeconds, others: ['redis'], redis, pinApp: true, log })
          raw.pinnedPass = `"App alone on a core": each Express app on CPU 0, ${server ? 'PostgreSQL, ' : ''}Redis and the load generator on CPU 1`
        } catch (err) {
          // The rest of the run's results are kept.
          log(`Express with each app alone on one core FAILED, left out: ${/** @type {Error} */ (err).message}`)
        }
      }
    }

    const summary = summarize(raw)
    // A partial run (--only) must not overwrite the results the documents show.
    const dir = path.join(__dirname, 'results', only ? 'partial' : '')
    saveResults(dir, { summary, raw })
    log('\n' + markdown(summary) + '\n')
    if (writeDocuments) writeDocs(summary, log)
    log(`done in ${((Date.now() - started) / 1000).toFixed(0)} s; results in ${path.relative(path.join(__dirname, '..'), dir)}/`)
  } finally {
    if (redis) await redis.stop()
    await cleanUp(url)
    if (server) await server.destroy()
  }
}

/** An installed package's version (connect-redis exports no package.json). */
function packageVersion (name) {
  return JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'node_modules', name, 'package.json'), 'utf8')).version
}

async function cleanUp (url) {
  const tables = ['bench_ops_ours', 'bench_ops_cps', 'bench_ops_eager', 'bench_ops_sealed', 'bench_express_sealed', 'bench_express_ours', 'bench_express_cps', 'bench_express_eager', 'bench_pgbench', 'bench_size',
    'bench_hot_ours', 'bench_hot_cps', 'bench_locked_ours', 'bench_locked_cps']
  await sql(url, tables.map((t) => `DROP TABLE IF EXISTS "${t}";`).join('\n')).catch(() => {})
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
