'use strict'

// `node bench/citus.js [seconds=5] [rounds=1]`: express-pg-session on plain PostgreSQL
// (DATABASE_URL, default the machine's at 127.0.0.1:5432) and on a Citus table distributed on the
// session id (CITUS_URL, a coordinator: /work/shared/citus/start-cluster.sh prints one), side by
// side in one run. Three workloads, 64 callers each over 10k seeded sessions
// (bench/store-worker.js, each measurement in a fresh process): a get+set loop (half gets, half
// sets), get-only, and the README's store mix (get:touch:set 80:15:5); XSET=1 adds set-only. Runs
// alternate A B B A per round, so a drift of the machine cancels; prints ops/s of every run, the
// medians and Citus ÷ plain. CITUS_SHARDS=n distributes the table in n shards (Citus's default: 32);
// CITUS_WORKLOADS=get-only (names, comma-separated) runs only those workloads; CITUS_ONLY=1 skips the
// plain runs (to compare two builds on Citus alone, e.g. A B B A by swapping the .node between runs).
// CITUS_COORDINATOR=1 adds a third contender, the same Citus table with `routeToNodes: false` (every
// statement through the coordinator), in A B C C B A order.

const { seedTable, sql, runChild, alternateAll, median } = require('./lib')

const PLAIN = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test'
const CITUS = process.env.CITUS_URL
const seconds = Number(process.argv[2] || 5)
const rounds = Number(process.argv[3] || 1)
const SHARDS = process.env.CITUS_SHARDS ? Number(process.env.CITUS_SHARDS) : null
const SESSIONS = 10000
const TABLE = { plain: 'bench_citus_plain', citus: 'bench_citus_dist', coord: 'bench_citus_dist' }
const URL = { plain: PLAIN, citus: CITUS, coord: CITUS }
const KIND = { plain: 'ours', citus: 'ours', coord: 'coordinator' }
const CONTENDERS = [...(process.env.CITUS_ONLY ? [] : ['plain']), 'citus', ...(process.env.CITUS_COORDINATOR ? ['coord'] : [])]
const WORKLOADS = [
  { name: 'get+set loop', mix: { get: 50, touch: 0, set: 50 } },
  { name: 'get-only', mix: { get: 100, touch: 0, set: 0 } },
  { name: 'store mix', mix: { get: 80, touch: 15, set: 5 } },
]
if (process.env.XSET) WORKLOADS.push({ name: 'set-only', mix: { get: 0, touch: 0, set: 100 } })
const ONLY = process.env.CITUS_WORKLOADS ? process.env.CITUS_WORKLOADS.split(',') : null

async function main () {
  if (!CITUS) throw new Error('CITUS_URL is not set: a Citus coordinator URL (/work/shared/citus/start-cluster.sh WORK_DIR 5451 prints one)')
  await seedTable(PLAIN, TABLE.plain, SESSIONS)
  await seedTable(CITUS, TABLE.citus, SESSIONS)
  await sql(CITUS, `SELECT create_distributed_table('"${TABLE.citus}"', 'sid'${SHARDS ? `, shard_count => ${SHARDS}` : ''})`)
  const { rows } = await sql(CITUS, "SELECT count(*)::int AS n FROM pg_dist_shard WHERE logicalrelid = $1::regclass", [`"${TABLE.citus}"`])
  console.log(`plain: ${PLAIN}\ncitus: ${CITUS} (${rows[0].n} shards)\n${seconds} s per run, ${rounds} round(s) of A B B A, 64 callers, pool of 10\n`)
  const summary = []
  for (const { name, mix } of WORKLOADS.filter((w) => !ONLY || ONLY.includes(w.name))) {
    const ops = { plain: [], citus: [], coord: [] }
    for (const where of alternateAll(CONTENDERS, rounds)) {
      const r = await runChild('store-worker.js', {
        kind: KIND[where], url: URL[where], table: TABLE[where], concurrency: 64, sessions: SESSIONS, mix, durationMs: seconds * 1000,
      })
      ops[where].push(r.opsPerSec)
      console.log(`  ${name.padEnd(13)} ${where.padEnd(5)} ${r.opsPerSec.toFixed(0).padStart(7)} ops/s  p50 ${(r.p50 / 1000).toFixed(1)} ms  p99 ${(r.p99 / 1000).toFixed(1)} ms`)
    }
    summary.push({ name, plain: median(ops.plain), citus: median(ops.citus), coord: median(ops.coord) })
  }
  const coord = CONTENDERS.includes('coord')
  console.log(`\nworkload        plain ops/s   citus ops/s   citus ÷ plain${coord ? '   coordinator-only ops/s   ÷ plain' : ''}`)
  for (const s of summary) {
    const more = coord ? ` ${s.coord.toFixed(0).padStart(24)} ${(s.coord / s.plain).toFixed(3).padStart(9)}` : ''
    console.log(`${s.name.padEnd(14)} ${s.plain.toFixed(0).padStart(12)} ${s.citus.toFixed(0).padStart(13)} ${(s.citus / s.plain).toFixed(3).padStart(15)}${more}`)
  }
}

main().catch((err) => { console.error(err); process.exit(1) })
