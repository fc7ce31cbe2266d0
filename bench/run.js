'use strict'

// `npm run bench [-- --quick] [-- --only=store,latency,express,memory,size,pgbench] [-- --no-readme]`
// Every benchmark, against DATABASE_URL or an embedded PostgreSQL started here. Writes
// bench/results/results.json, results.md and chart.svg (bench/results/partial/ for --only), and
// the README's performance section between its markers (not for --only or --no-readme).

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { sql } = require('./lib')
const { runStoreOps, runLatency, runMemory } = require('./store-ops')
const { runExpress } = require('./express')
const { runTableSize } = require('./table-size')
const { runPgbench } = require('./pgbench')
const { summarize, markdown, svg } = require('./report')

const args = process.argv.slice(2)
const quick = args.includes('--quick')
const onlyArg = args.find((a) => a.startsWith('--only='))
const only = onlyArg ? new Set(onlyArg.slice(7).split(',')) : null
const wants = (name) => !only || only.has(name)
const writeReadme = !args.includes('--no-readme') && !only

// Full: ≈ 9 minutes on a 2-core machine; quick: ≈ 2.5 minutes.
const plan = quick
  ? { rounds: 2, storeSeconds: 3, latencySeconds: 2, expressSeconds: 4, memoryOps: 200000, expired: 200000, sizeSeconds: 2, pgbenchSeconds: 3 }
  : { rounds: 3, storeSeconds: 5, latencySeconds: 3, expressSeconds: 8, memoryOps: 1000000, expired: 1000000, sizeSeconds: 4, pgbenchSeconds: 5 }

const log = (line) => process.stdout.write(line + '\n')

async function main () {
  let server
  let url = process.env.DATABASE_URL
  if (!url) {
    log('DATABASE_URL is not set: starting an embedded PostgreSQL for the benchmarks')
    const { startServer } = require('../__test__/pg-server')
    server = await startServer()
    url = server.url
  }
  const started = Date.now()
  try {
    const version = (await sql(url, 'SHOW server_version')).rows[0].server_version
    const cpus = os.cpus()
    const raw = {
      date: new Date().toISOString().slice(0, 16).replace('T', ' ') + ' UTC',
      machine: `${cpus.length} × ${cpus[0].model.trim()}, ${Math.round(os.totalmem() / 2 ** 30)} GB RAM, ${os.type()} ${os.release()}, Node ${process.version}`,
      postgres: `PostgreSQL ${version.split(' ')[0]} (${server ? 'embedded' : 'DATABASE_URL'})`,
      command: `npm run bench${args.length ? ' -- ' + args.join(' ') : ''}`,
      plan,
    }
    if (wants('pgbench')) { log('PostgreSQL\'s own limit (pgbench)'); raw.pgbench = await runPgbench({ url, seconds: plan.pgbenchSeconds, log }) }
    if (wants('store')) { log('Store operations'); raw.store = await runStoreOps({ url, rounds: plan.rounds, seconds: plan.storeSeconds, log }) }
    if (wants('latency')) { log('Single-operation latency'); raw.latency = await runLatency({ url, rounds: plan.rounds, seconds: plan.latencySeconds, log }) }
    if (wants('express')) { log('Express end to end'); raw.express = await runExpress({ url, rounds: plan.rounds, seconds: plan.expressSeconds, log }) }
    if (wants('memory')) { log('Memory over a long run'); raw.memory = await runMemory({ url, totalOps: plan.memoryOps, log }) }
    if (wants('size')) { log('Cost with table size'); raw.tableSize = await runTableSize({ url, expired: plan.expired, seconds: plan.sizeSeconds, rounds: plan.rounds, log }) }

    const summary = summarize(raw)
    const table = markdown(summary)
    // A partial run (--only) must not overwrite the results the README shows.
    const dir = path.join(__dirname, 'results', only ? 'partial' : '')
    fs.mkdirSync(dir, { recursive: true })
    fs.writeFileSync(path.join(dir, 'results.json'), JSON.stringify({ summary, raw }, null, 2) + '\n')
    fs.writeFileSync(path.join(dir, 'results.md'), table + '\n')
    fs.writeFileSync(path.join(dir, 'chart.svg'), svg(summary))
    log('\n' + table + '\n')
    if (writeReadme) updateReadme(table)
    log(`done in ${((Date.now() - started) / 1000).toFixed(0)} s; results in ${path.relative(path.join(__dirname, '..'), dir)}/`)
  } finally {
    await cleanUp(url)
    if (server) await server.destroy()
  }
}

async function cleanUp (url) {
  const tables = ['bench_ops_ours', 'bench_ops_cps', 'bench_express_ours', 'bench_express_cps', 'bench_pgbench', 'bench_size']
  await sql(url, tables.map((t) => `DROP TABLE IF EXISTS "${t}";`).join('\n')).catch(() => {})
}

/** Replaces what sits between the README's performance markers with the generated section. */
function updateReadme (table) {
  const file = path.join(__dirname, '..', 'README.md')
  const text = fs.readFileSync(file, 'utf8')
  const start = '<!-- section:performance -->'
  const end = '<!-- /section:performance -->'
  const a = text.indexOf(start)
  const b = text.indexOf(end)
  if (a < 0 || b < a) return log('README.md has no performance markers: left alone')
  const intro = fs.readFileSync(path.join(__dirname, 'README-section.md'), 'utf8').trim()
  const section = `${start}\n${intro}\n\n${table}\n${end}`
  fs.writeFileSync(file, text.slice(0, a) + section + text.slice(b + end.length))
  log('README.md performance section updated')
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
