'use strict'

// One measurement in its own process (so RSS and CPU belong to one store): `concurrency` callers
// each loop get / touch / set on random sessions, for `durationMs` or until `totalOps` are done.
// Prints one JSON line: ops/s, Node CPU µs per op, latency percentiles, RSS.

const { makeStore, sessionObject, sid, percentile, sleep } = require('./lib')

const input = JSON.parse(process.argv[2])
const {
  kind, url, table, redisUrl, max = 10, concurrency = 64, sessions = 10000,
  mix = { get: 80, touch: 15, set: 5 }, warmupMs = 1000, durationMs = 5000, totalOps = 0, rssEvery = 0,
} = input

async function main () {
  const { store, close, ready } = makeStore(kind, { url, table, max, redisUrl })
  await ready
  const sess = sessionObject(1)
  // The PostgreSQL tables are seeded with these sessions by the parent; Redis gets them here.
  if (kind === 'redis') {
    for (let i = 0; i < sessions; i += 500) {
      await Promise.all(Array.from({ length: Math.min(500, sessions - i) }, (_, j) =>
        new Promise((resolve, reject) => store.set(sid(i + j), sessionObject(i + j), (err) => (err ? reject(err) : resolve())))))
    }
  }
  const pick = () => {
    const r = Math.random() * 100
    return r < mix.get ? 'get' : r < mix.get + mix.touch ? 'touch' : 'set'
  }
  const call = (op, id) => new Promise((resolve, reject) => {
    const done = (err) => (err ? reject(err) : resolve())
    if (op === 'get') store.get(id, done)
    else if (op === 'touch') store.touch(id, sess, done)
    else store.set(id, sess, done)
  })

  let measuring = false
  let stop = false
  let ops = 0
  let latencies = new Float64Array(totalOps ? 0 : 1 << 18)
  let n = 0
  const rssSamples = []
  const worker = async () => {
    while (!stop) {
      const id = sid(Math.floor(Math.random() * sessions))
      const t0 = process.hrtime.bigint()
      await call(pick(), id)
      if (!measuring) continue
      // A memory run keeps no latencies: their array would be the growth it measures.
      if (!totalOps) {
        if (n === latencies.length) latencies = grow(latencies)
        latencies[n++] = Number(process.hrtime.bigint() - t0) / 1000
      }
      ops++
      if (rssEvery && ops % rssEvery === 0) rssSamples.push({ ops, rss: process.memoryUsage.rss() })
      if (totalOps && ops >= totalOps) stop = true
    }
  }
  const workers = Array.from({ length: concurrency }, worker)
  await sleep(warmupMs)
  measuring = true
  const cpu0 = process.cpuUsage()
  const t0 = process.hrtime.bigint()
  if (!totalOps) {
    await sleep(durationMs)
    stop = true
  }
  let rssPeak = 0
  const sampler = setInterval(() => { rssPeak = Math.max(rssPeak, process.memoryUsage.rss()) }, 200)
  await Promise.all(workers)
  clearInterval(sampler)
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  const cpu = process.cpuUsage(cpu0)
  rssPeak = Math.max(rssPeak, process.memoryUsage.rss())
  await close()
  const lat = latencies.subarray(0, n)
  process.stdout.write(JSON.stringify({
    kind,
    ops,
    seconds,
    opsPerSec: ops / seconds,
    cpuUsPerOp: (cpu.user + cpu.system) / ops,
    p50: percentile(lat, 50),
    p99: percentile(lat, 99),
    rssMB: rssPeak / 2 ** 20,
    rssSamples: rssSamples.map((s) => ({ ops: s.ops, rssMB: s.rss / 2 ** 20 })),
  }) + '\n')
}

function grow (a) {
  const b = new Float64Array(Math.max(1024, a.length * 2))
  b.set(a)
  return b
}

main().catch((err) => { console.error(err); process.exit(1) })
