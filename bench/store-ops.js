'use strict'

// Store operations alone: 64 callers, get:touch:set = 80:15:5 over 10k sessions, each
// measurement in a fresh process, express-pg-session, connect-pg-simple and (when its server
// could be started) connect-redis alternated A B C C B A.
// Also single-operation latency (1 caller, pool of 1) and a long run for memory.

const { seedTable, runChild, alternate, alternateAll, makeStore, sessionObject } = require('./lib')

/** Both stores' tables, 10k live sessions each. */
async function seedBoth (url) {
  await seedTable(url, 'bench_ops_ours', 10000)
  await seedTable(url, 'bench_ops_cps', 10000)
  await seedTable(url, 'bench_ops_eager', 10000)
  await seedTable(url, 'bench_ops_sealed', 10000)
  await sealAll(url, 'bench_ops_sealed', 10000)
}

/** Rewrites the seeded sessions through a store with `secret`, so its gets decrypt as they would. */
async function sealAll (url, table, live) {
  const { store, close } = makeStore('sealed', { url, table })
  const sess = sessionObject(0)
  for (let i = 0; i < live; i += 500) {
    await Promise.all(Array.from({ length: Math.min(500, live - i) }, (_, k) => store.set(`bench-session-${i + k}`, sess)))
  }
  await close()
}

/**
 * `others`: the contenders beside express-pg-session ('cps', 'redis'); `redis` the server
 * bench/redis.js started (its sessions are written by the warm-up, as connect-redis has no table).
 */
async function runStoreOps ({ url, rounds, seconds, concurrency = 64, max = 10, others = ['cps'], redis, log }) {
  await seedBoth(url)
  const runs = []
  const kinds = ['ours', ...others]
  const order = alternateAll(kinds, rounds)
  for (let i = 0; i < order.length; i++) {
    const kind = order[i]
    const r = await runChild('store-worker.js', {
      kind, url, table: `bench_ops_${kind}`, redisUrl: redis && redis.url, max, concurrency, durationMs: seconds * 1000,
    })
    r.round = Math.floor(i / (2 * kinds.length))
    runs.push(r)
    log(`  store ops ${kind.padEnd(4)} ${r.opsPerSec.toFixed(0).padStart(6)} ops/s  ${r.cpuUsPerOp.toFixed(1)} µs CPU/op  p99 ${(r.p99 / 1000).toFixed(1)} ms  rss ${r.rssMB.toFixed(0)} MB`)
  }
  return runs
}

/** One caller, pool of one: the latency of a lone get / touch / set. */
async function runLatency ({ url, rounds, seconds, log }) {
  await seedBoth(url)
  const runs = []
  const order = alternate('ours', 'cps', rounds)
  for (let i = 0; i < order.length; i++) {
    const kind = order[i]
    const r = await runChild('store-worker.js', {
      kind, url, table: `bench_ops_${kind}`, max: 1, concurrency: 1, durationMs: seconds * 1000,
    })
    r.round = Math.floor(i / 4)
    runs.push(r)
    log(`  latency   ${kind.padEnd(4)} p50 ${r.p50.toFixed(0)} µs  p99 ${r.p99.toFixed(0)} µs`)
  }
  return runs
}

/**
 * A long run of `totalOps` operations of express-pg-session, RSS sampled as it goes; then
 * connect-pg-simple for a quarter of that (at its speed the full count would take minutes).
 */
async function runMemory ({ url, totalOps, log }) {
  await seedBoth(url)
  const result = {}
  for (const kind of ['ours', 'cps']) {
    const ops = kind === 'ours' ? totalOps : Math.floor(totalOps / 4)
    const r = await runChild('store-worker.js', {
      kind, url, table: `bench_ops_${kind}`, totalOps: ops, rssEvery: Math.floor(ops / 20), warmupMs: 2000,
    })
    const samples = r.rssSamples
    const first = samples[0].rssMB
    // The first half includes V8 and pools growing to their working size; flat means the second half.
    const mid = samples[Math.floor(samples.length / 2)].rssMB
    const last = samples[samples.length - 1].rssMB
    result[kind] = { ops: r.ops, opsPerSec: r.opsPerSec, peakMB: r.rssMB, firstMB: first, midMB: mid, lastMB: last, samples }
    log(`  memory ${kind.padEnd(4)} ${r.ops} ops: RSS ${first.toFixed(0)} MB at ${samples[0].ops} ops, ${mid.toFixed(0)} MB half way, ${last.toFixed(0)} MB at the end, peak ${r.rssMB.toFixed(0)} MB`)
  }
  return result
}

module.exports = { runStoreOps, runLatency, runMemory }
