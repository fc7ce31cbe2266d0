'use strict'

// Hot sessions, one contender in its own process: `concurrency` callers loop set (80 %) and
// touch (20 %) on the same few sessions, as an app does when many requests share a session
// (tabs, polling, an API client with one cookie). Every write contends for a handful of rows,
// so a store that sends several of them in one statement, in varying order, makes PostgreSQL
// detect deadlocks between its own statements. Prints one JSON line.
//
// Bounded whatever the store does: callers stop starting calls when the measurement ends (by
// the clock, so even a store that answers synchronously cannot keep the loop going), calls
// still out `graceMs` later are counted as stalled, and close() gets `closeMs`.

const { makeStore, sessionObject, sid, percentile, settlesWithin } = require('./lib')

const input = JSON.parse(process.argv[2])
const {
  kind, url, table, max = 10, concurrency = 64, sessions = 30, setShare = 80,
  warmupMs = 1000, durationMs = 10000, graceMs = 10000, closeMs = 5000,
} = input

async function main () {
  const { store, close } = makeStore(kind, { url, table, max })
  const bodies = Array.from({ length: sessions }, (_, i) => sessionObject(i))
  // Resolves the error or null: a failed call is counted, never thrown out of the loop.
  const call = (op, i) => new Promise((resolve) => {
    const done = (err) => resolve(err || null)
    try {
      if (op === 'set') store.set(sid(i), bodies[i], done)
      else store.touch(sid(i), bodies[i], done)
    } catch (err) {
      resolve(err)
    }
  })

  const now = () => performance.now()
  const t0 = now() + warmupMs // the measurement starts after a warm-up (pool opened, code warm)
  const t1 = t0 + durationMs
  let calls = 0
  let errors = 0
  let warmupErrors = 0
  const errorMessages = {}
  const latencies = []
  const inFlight = new Set()
  const worker = async () => {
    while (now() < t1) {
      const i = Math.floor(Math.random() * sessions)
      const op = Math.random() * 100 < setShare ? 'set' : 'touch'
      const started = now()
      const token = { started }
      inFlight.add(token)
      const err = await call(op, i)
      inFlight.delete(token)
      const ended = now()
      // Throughput: successful calls that returned inside the window. Latency and errors:
      // calls started inside it, however long they took (those returning after it included).
      if (!err && ended >= t0 && ended <= t1) calls++
      if (started < t0) {
        if (err) warmupErrors++
        continue
      }
      latencies.push(ended - started)
      if (err) {
        errors++
        const key = String(err.message || err).slice(0, 120)
        errorMessages[key] = (errorMessages[key] || 0) + 1
      }
    }
  }
  const workers = Promise.all(Array.from({ length: concurrency }, worker))
  const drained = await settlesWithin(workers, t1 - now() + graceMs)
  // Calls still out: counted as stalled, their wait so far as a (lower bound of their) latency.
  const stalled = inFlight.size
  for (const { started } of inFlight) if (started >= t0) latencies.push(now() - started)
  const closed = await settlesWithin(close(), closeMs)
  process.stdout.write(JSON.stringify({
    kind,
    calls,
    seconds: durationMs / 1000,
    callsPerSec: calls / (durationMs / 1000),
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    maxMs: latencies.reduce((a, b) => Math.max(a, b), 0),
    errors,
    warmupErrors,
    errorMessages,
    stalled,
    drained,
    closed,
  }) + '\n')
  // A store that did not close (or calls still out) would keep the process alive.
  process.exit(0)
}

main().catch((err) => { console.error(err); process.exit(1) })
