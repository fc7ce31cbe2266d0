'use strict'

// What the devices options cost (issue 21): store ops (64 callers, get:touch:set = 80:15:5 over
// 10k sessions) with none of them set, and with the owner, created_at, last_seen, two extra
// columns and maxLifetime, each run in a fresh process, A B B A.
//   DATABASE_URL=… node bench/devices.js [seconds] [rounds]

const { seedTable, sql, runChild, alternate, median } = require('./lib')

const url = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test'
const seconds = Number(process.argv[2] || 5)
const rounds = Number(process.argv[3] || 2)

async function main () {
  await seedTable(url, 'bench_ops_ours', 10000)
  await seedTable(url, 'bench_ops_devices', 10000)
  await sql(url, `ALTER TABLE bench_ops_devices ADD COLUMN uid varchar NULL, ADD COLUMN created_at timestamp(6) NULL,
    ADD COLUMN last_seen timestamp(6) NULL, ADD COLUMN ip text NULL, ADD COLUMN user_agent text NULL;
    CREATE INDEX ON bench_ops_devices (uid); CREATE INDEX ON bench_ops_devices (created_at);
    UPDATE bench_ops_devices SET uid = 'user-1', created_at = now(), last_seen = now()`)
  await sql(url, 'VACUUM ANALYZE bench_ops_devices')
  const runs = { ours: [], devices: [] }
  for (const kind of alternate('ours', 'devices', rounds)) {
    const r = await runChild('store-worker.js', { kind, url, table: `bench_ops_${kind}`, max: 10, concurrency: 64, durationMs: seconds * 1000 })
    runs[kind].push(r)
    console.log(`${kind.padEnd(8)} ${r.opsPerSec.toFixed(0).padStart(6)} ops/s  ${r.cpuUsPerOp.toFixed(1)} µs CPU/op  p99 ${(r.p99 / 1000).toFixed(1)} ms`)
  }
  const ratio = (key) => {
    const each = runs.ours.map((o, i) => runs.devices[i][key] / o[key]).sort((a, b) => a - b)
    return `${median(each).toFixed(2)} (spread ${each[0].toFixed(2)}–${each[each.length - 1].toFixed(2)})`
  }
  console.log(`devices ÷ none: ops/s ${ratio('opsPerSec')}, Node CPU per op ${ratio('cpuUsPerOp')}`)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
