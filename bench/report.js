'use strict'

// Turns the raw runs into medians and ratios, markdown tables (the full one and the README's
// short one) and an SVG chart.

const { median, LABELS } = require('./lib')

/**
 * Per round, `combine(mean of mine in the round, mean of other in the round)`: a ratio, or a
 * difference.
 */
function perRound (runs, metric, other, mine, combine) {
  const rounds = new Map()
  for (const r of runs) {
    // Only `mine` and `other` count; a run without this figure (null in JSON) is not a zero.
    if ((r.kind !== mine && r.kind !== other) || !Number.isFinite(r[metric])) continue
    if (!rounds.has(r.round)) rounds.set(r.round, { [mine]: [], [other]: [] })
    rounds.get(r.round)[r.kind].push(r[metric])
  }
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length
  return [...rounds.values()].filter((r) => r[mine].length && r[other].length).map((r) => combine(mean(r[mine]), mean(r[other])))
}
const ratio = (a, b) => a / b
const minus = (a, b) => a - b

/**
 * Median over rounds of (mean of ours in the round) − (mean of `other` in the round): a
 * difference of two runs side by side, steadier than the difference of two medians on a noisy machine.
 */
function roundDiff (runs, metric, other, mine = 'ours') {
  return median(perRound(runs, metric, other, mine, minus))
}

/** Median over rounds of (mean of ours in the round) / (mean of `other` in the round). */
function roundRatio (runs, metric, other = 'cps', mine = 'ours') {
  return median(perRound(runs, metric, other, mine, ratio))
}

/** The per-round ratios themselves, lowest and highest: the spread of `roundRatio`. */
function roundRatioSpread (runs, metric, other, mine = 'ours') {
  const ratios = perRound(runs, metric, other, mine, ratio)
  return ratios.length ? [Math.min(...ratios), Math.max(...ratios)] : [NaN, NaN]
}

const hasKind = (runs, kind) => runs.some((r) => r.kind === kind)

// Finite values only: a run that returned nothing for a metric (null in JSON) is not a zero.
const med = (runs, kind, metric) => median(runs.filter((r) => r.kind === kind).map((r) => r[metric]).filter(Number.isFinite))
const total = (runs, kind, metric) => runs.filter((r) => r.kind === kind).reduce((n, r) => n + (r[metric] || 0), 0)
const count = (runs, kind, test) => runs.filter((r) => r.kind === kind && test(r)).length

/**
 * One Express pass's runs (bench/express.js) per route: medians per contender, per-round ratios
 * to connect-pg-simple and connect-redis.
 */
function summarizeExpress (raw) {
  const s = {}
  for (const route of ['read', 'write']) {
    const runs = raw.filter((r) => r.route === route)
    // Rounds: each memory run opens a round.
    let round = -1
    for (const r of runs) { if (r.kind === 'memory') round++; r.round = round }
    const out = {}
    for (const kind of ['ours', 'cps', 'memory', ...['eager', 'redis', 'sealed'].filter((k) => hasKind(runs, k))]) {
      out[kind] = { reqPerSec: med(runs, kind, 'reqPerSec'), p99Ms: med(runs, kind, 'p99'), rssMB: med(runs, kind, 'rssMB'), cpuUsPerReq: med(runs, kind, 'appCpuUsPerReq') }
      // Linux runs split the app's CPU by thread (bench/lib.js byThread).
      if (runs.some((r) => r.kind === kind && r.jsUsPerReq !== undefined)) {
        out[kind].threads = { js: med(runs, kind, 'jsUsPerReq'), helpers: med(runs, kind, 'helpersUsPerReq'), worker: med(runs, kind, 'workerUsPerReq') }
      }
    }
    out.ratio = { reqPerSec: roundRatio(runs, 'reqPerSec'), p99: roundRatio(runs, 'p99'), cpuUsPerReq: roundRatio(runs, 'appCpuUsPerReq') }
    if (out.redis) {
      out.vsRedis = {
        reqPerSec: roundRatio(runs, 'reqPerSec', 'redis'),
        reqPerSecSpread: roundRatioSpread(runs, 'reqPerSec', 'redis'),
        p99: roundRatio(runs, 'p99', 'redis'),
        cpuUsPerReq: roundRatio(runs, 'appCpuUsPerReq', 'redis'),
        cpuUsPerReqSpread: roundRatioSpread(runs, 'appCpuUsPerReq', 'redis'),
      }
      if (out.ours.threads && out.redis.threads) {
        out.vsRedis.threadsDiff = { js: roundDiff(runs, 'jsUsPerReq', 'redis'), helpers: roundDiff(runs, 'helpersUsPerReq', 'redis'), worker: roundDiff(runs, 'workerUsPerReq', 'redis') }
      }
    }
    if (out.sealed) {
      out.sealedRatio = {
        reqPerSec: roundRatio(runs, 'reqPerSec', 'ours', 'sealed'),
        reqPerSecSpread: roundRatioSpread(runs, 'reqPerSec', 'ours', 'sealed'),
        cpuUsPerReq: roundRatio(runs, 'appCpuUsPerReq', 'ours', 'sealed'),
      }
    }
    if (out.eager) {
      out.eagerRatio = {
        reqPerSec: roundRatio(runs, 'reqPerSec', 'cps', 'eager'),
        cpuUsPerReq: roundRatio(runs, 'appCpuUsPerReq', 'cps', 'eager'),
        vsRedis: roundRatio(runs, 'reqPerSec', 'redis', 'eager'),
        vsRedisSpread: roundRatioSpread(runs, 'reqPerSec', 'redis', 'eager'),
        cpuVsRedis: roundRatio(runs, 'appCpuUsPerReq', 'redis', 'eager'),
        cpuVsRedisSpread: roundRatioSpread(runs, 'appCpuUsPerReq', 'redis', 'eager'),
      }
    }
    out.oursOfMemory = out.ours.reqPerSec / out.memory.reqPerSec
    out.errors = runs.reduce((n, r) => n + r.errors, 0)
    s[route] = out
  }
  return s
}

function summarize (raw) {
  const s = { machine: raw.machine, date: raw.date, command: raw.command, postgres: raw.postgres, redis: raw.redis, pinned: raw.pinned, pinnedPass: raw.pinnedPass }
  if (raw.store) {
    s.store = {}
    for (const kind of ['ours', 'cps', ...['eager', 'redis', 'sealed'].filter((k) => hasKind(raw.store, k))]) {
      s.store[kind] = {
        opsPerSec: med(raw.store, kind, 'opsPerSec'),
        cpuUsPerOp: med(raw.store, kind, 'cpuUsPerOp'),
        p99Ms: med(raw.store, kind, 'p99') / 1000,
        rssMB: med(raw.store, kind, 'rssMB'),
      }
    }
    s.store.ratio = { opsPerSec: roundRatio(raw.store, 'opsPerSec'), cpuUsPerOp: roundRatio(raw.store, 'cpuUsPerOp') }
    if (s.store.redis) {
      s.store.vsRedis = {
        opsPerSec: roundRatio(raw.store, 'opsPerSec', 'redis'),
        opsPerSecSpread: roundRatioSpread(raw.store, 'opsPerSec', 'redis'),
        cpuUsPerOp: roundRatio(raw.store, 'cpuUsPerOp', 'redis'),
      }
    }
    if (s.store.sealed) {
      // Encryption on / off: the same store with and without `secret`, in the same rounds.
      s.store.sealedRatio = {
        opsPerSec: roundRatio(raw.store, 'opsPerSec', 'ours', 'sealed'),
        opsPerSecSpread: roundRatioSpread(raw.store, 'opsPerSec', 'ours', 'sealed'),
        cpuUsPerOp: roundRatio(raw.store, 'cpuUsPerOp', 'ours', 'sealed'),
      }
    }
    if (s.store.eager) {
      s.store.eagerRatio = {
        opsPerSec: roundRatio(raw.store, 'opsPerSec', 'cps', 'eager'),
        vsRedis: roundRatio(raw.store, 'opsPerSec', 'redis', 'eager'),
        vsRedisSpread: roundRatioSpread(raw.store, 'opsPerSec', 'redis', 'eager'),
      }
    }
  }
  if (raw.latency) {
    s.latency = {}
    for (const kind of ['ours', 'cps']) s.latency[kind] = { p50Us: med(raw.latency, kind, 'p50'), p99Us: med(raw.latency, kind, 'p99') }
    s.latency.ratio = { p50: roundRatio(raw.latency, 'p50'), p99: roundRatio(raw.latency, 'p99') }
  }
  if (raw.hot) {
    // A failed run (crashed or killed) has no figures; it is counted, and fails the target.
    const ok = raw.hot.filter((r) => !r.failed)
    s.hot = { seconds: raw.plan.hotSeconds }
    for (const kind of ['ours', 'cps']) {
      s.hot[kind] = {
        callsPerSec: med(ok, kind, 'callsPerSec'),
        p50Ms: med(ok, kind, 'p50Ms'),
        p99Ms: med(ok, kind, 'p99Ms'),
        deadlocks: total(raw.hot, kind, 'deadlocks'),
        errors: total(ok, kind, 'errors'),
        stalled: total(ok, kind, 'stalled'),
        runs: count(raw.hot, kind, () => true),
        failed: count(raw.hot, kind, (r) => r.failed),
      }
    }
    s.hot.ratio = { callsPerSec: roundRatio(ok, 'callsPerSec'), p99: roundRatio(ok, 'p99Ms') }
  }
  if (raw.locked) {
    const ok = raw.locked.filter((r) => !r.failed)
    s.locked = { holdSeconds: raw.plan.lockHoldSeconds, others: ok.length ? ok[0].others : 100 }
    for (const phase of ['together', 'behind']) {
      const runs = ok.map((r) => ({ kind: r.kind, ...r[phase] }))
      s.locked[phase] = {}
      for (const kind of ['ours', 'cps']) {
        const slowest = runs.filter((r) => r.kind === kind).map((r) => r.slowestMs).filter(Number.isFinite)
        s.locked[phase][kind] = {
          // The worst run, not the median: one unrelated write held up by a lock is the failure.
          slowestMs: slowest.length ? Math.max(...slowest) : NaN,
          p50Ms: med(runs, kind, 'p50Ms'),
          blockedMs: med(runs, kind, 'blockedMs'),
          errors: total(runs, kind, 'errors'),
          stalled: total(runs, kind, 'stalled'),
          unseen: count(runs, kind, (r) => r.blockedSeen === false),
          runs: count(raw.locked, kind, () => true),
          failed: count(raw.locked, kind, (r) => r.failed),
        }
      }
    }
  }
  if (raw.express) s.express = summarizeExpress(raw.express)
  // A full run's second Express pass, each app alone on one core (bench/run.js).
  if (raw.expressPinned) s.expressPinned = summarizeExpress(raw.expressPinned)
  if (raw.memory) s.memory = raw.memory
  if (raw.tableSize) s.tableSize = raw.tableSize
  if (raw.pgbench) s.pgbench = raw.pgbench
  return s
}

const f0 = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '–')
const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : '–')
const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : '–')
const yes = (ok) => (ok ? '✅' : '❌')
/** What went wrong in a contender's runs, for a table cell: '' when nothing did. */
const trouble = (k) => [k.errors && `${f0(k.errors)} errors`, k.stalled && `${f0(k.stalled)} stalled`,
  k.unseen && `${k.unseen} runs without the wait seen`, k.failed && `${k.failed} of ${k.runs} runs failed`].filter(Boolean).join(', ')
const withTrouble = (text, k) => (trouble(k) ? `${text} (${trouble(k)})` : text)

/** A ratio with its spread over rounds: the lowest and highest per-round ratio. */
const withSpread = (ratio, spread) => `${f2(ratio)}×${spread && Number.isFinite(spread[0]) ? ` (${f2(spread[0])}–${f2(spread[1])})` : ''}`
/**
 * A ratio to connect-redis with its spread over rounds and its target (issues #13, #20): ✅ when the
 * median meets the bar, with "(not every round)" when some round's ratio does not, so that a ✅
 * within the run's noise does not read as a settled result.
 */
const vsCell = (ratio, spread, bar, atLeast) => {
  const meets = (x) => (atLeast ? x >= bar : x <= bar)
  const ok = meets(ratio)
  const everyRound = Boolean(spread) && spread.every(meets)
  const target = `${atLeast ? '≥' : '≤'} ${Number.isInteger(bar) ? bar.toFixed(1) : bar}×`
  return `**${withSpread(ratio, spread)}** ${target} ${yes(ok)}${ok && !everyRound ? ' (not every round)' : ''}`
}

/**
 * The table's rows, in order: `key` names what a row measures (for shortMarkdown's pick),
 * `cells` are measure, express-pg-session, connect-pg-simple, ratio, target; `redis` (when
 * connect-redis ran) its figure and our ratio to it.
 * @returns {{ key: string, cells: string[], redis?: string[] }[]}
 */
function tableRows (s) {
  const rows = []
  const row = (key, ...cells) => rows.push({ key, cells })
  const withRedis = (redis) => { rows[rows.length - 1].redis = redis }
  // Where an Express route's app CPU goes, by thread; against connect-redis, the difference of each.
  const threadsRow = (key, label, e, withCps) => {
    const t = e.ours.threads
    if (!t) return
    const split = (x) => (x ? `${f0(x.js)} · ${f0(x.helpers)} · ${f0(x.worker)}` : '')
    row(key, label, split(t), withCps ? split(e.cps.threads) : '', '', '')
    const r = e.redis && e.redis.threads
    const d = e.vsRedis && e.vsRedis.threadsDiff
    const plus = (x) => (Number.isFinite(x) ? `${Math.round(x) >= 0 ? '+' : '−'}${f0(Math.abs(x))}` : '–')
    if (r && d) withRedis([split(r), `${plus(d.js)} · ${plus(d.helpers)} · ${plus(d.worker)} µs (per-round differences)`])
  }
  if (s.store) {
    const { ours, cps, ratio } = s.store
    const r = s.store.redis
    const v = s.store.vsRedis
    row('store.opsPerSec', 'store ops/s (64 callers, get:touch:set 80:15:5, pool 10)', f0(ours.opsPerSec), f0(cps.opsPerSec), `**${f2(ratio.opsPerSec)}×**`, `≥ 2.5× ${yes(ratio.opsPerSec >= 2.5)}`)
    if (r) withRedis([f0(r.opsPerSec), vsCell(v.opsPerSec, v.opsPerSecSpread, 0.6, true)])
    row('store.cpuUsPerOp', 'Node CPU per operation (µs, whole process)', f1(ours.cpuUsPerOp), f1(cps.cpuUsPerOp), `**${f2(ratio.cpuUsPerOp)}×**`, `≤ 0.35× ${yes(ratio.cpuUsPerOp <= 0.35)}`)
    if (r) withRedis([f1(r.cpuUsPerOp), `${f2(v.cpuUsPerOp)}×`])
    const eager = s.store.eager
    if (eager) {
      const er = s.store.eagerRatio
      row('store.eager', 'store ops/s with every touch written (`touchAfter: 0`)', f0(eager.opsPerSec), f0(cps.opsPerSec), `${f2(er.opsPerSec)}×`, '')
      if (r) withRedis([f0(r.opsPerSec), withSpread(er.vsRedis, er.vsRedisSpread)])
    }
    const sealed = s.store.sealed
    if (sealed) {
      const sr = s.store.sealedRatio
      row('store.sealed', 'encryption on (`secret`) vs off: store ops/s, Node CPU per operation (µs); ratio = on / off',
        `${f0(sealed.opsPerSec)}, ${f1(sealed.cpuUsPerOp)} µs`, `off: ${f0(ours.opsPerSec)}, ${f1(ours.cpuUsPerOp)} µs`,
        `${withSpread(sr.opsPerSec, sr.opsPerSecSpread)}, ${f2(sr.cpuUsPerOp)}×`, '')
      if (r) withRedis(['', ''])
    }
    row('store.p99', 'store p99 latency under load (ms)', f1(ours.p99Ms), f1(cps.p99Ms), f2(ours.p99Ms / cps.p99Ms) + '×', '')
    row('store.rss', 'RSS under load (MB)', f0(ours.rssMB), f0(cps.rssMB), `${ours.rssMB - cps.rssMB >= 0 ? '+' : ''}${f0(ours.rssMB - cps.rssMB)} MB`, `≤ +30 MB ${yes(ours.rssMB - cps.rssMB <= 30)}`)
  }
  if (s.express) {
    for (const route of ['read', 'write']) {
      const e = s.express[route]
      const what = route === 'read' ? 'read route (get + touch)' : 'write route (get + set)'
      const v = e.vsRedis
      row(`express.${route}.reqPerSec`, `Express ${what}, req/s (50 connections)`, f0(e.ours.reqPerSec), f0(e.cps.reqPerSec), `**${f2(e.ratio.reqPerSec)}×**`, `≥ 1.5× ${yes(e.ratio.reqPerSec >= 1.5)}`)
      // Issue 20's bars for a shared machine: the write route's is lower.
      const bar = route === 'read' ? 1 : 0.85
      if (e.redis) withRedis([f0(e.redis.reqPerSec), vsCell(v.reqPerSec, v.reqPerSecSpread, bar, true)])
      row(`express.${route}.p99`, `Express ${route} p99 latency (ms)`, f0(e.ours.p99Ms), f0(e.cps.p99Ms), f2(e.ratio.p99) + '×', `≤ 1× ${yes(e.ratio.p99 <= 1)}`)
      if (e.redis) withRedis([f0(e.redis.p99Ms), `${f2(v.p99)}×`])
      row(`express.${route}.cpu`, `Express ${route}: app CPU per request (µs, all threads)`, f0(e.ours.cpuUsPerReq), f0(e.cps.cpuUsPerReq), f2(e.ratio.cpuUsPerReq) + '×', '')
      if (e.redis) withRedis([f0(e.redis.cpuUsPerReq), vsCell(v.cpuUsPerReq, v.cpuUsPerReqSpread, 1, false)])
      threadsRow(`express.${route}.threads`, `Express ${route}: app CPU per request by thread (µs): JS thread · V8 helpers (mostly GC) · the engine's worker`, e, true)
      if (e.eager) {
        const er = e.eagerRatio
        row(`express.${route}.eager`, `Express ${route} with every touch written (\`touchAfter: 0\`): req/s, app CPU per request (µs)`,
          `${f0(e.eager.reqPerSec)}, ${f0(e.eager.cpuUsPerReq)} µs`, `${f0(e.cps.reqPerSec)}, ${f0(e.cps.cpuUsPerReq)} µs`, `${f2(er.reqPerSec)}×, ${f2(er.cpuUsPerReq)}×`, '')
        if (e.redis) withRedis([`${f0(e.redis.reqPerSec)} · ${f0(e.redis.cpuUsPerReq)} µs`, `${withSpread(er.vsRedis, er.vsRedisSpread)}, ${withSpread(er.cpuVsRedis, er.cpuVsRedisSpread)}`])
      }
      if (e.sealed) {
        const sr = e.sealedRatio
        row(`express.${route}.sealed`, `Express ${route}, encryption on (\`secret\`) vs off: req/s, app CPU per request (µs); ratio = on / off`,
          `${f0(e.sealed.reqPerSec)}, ${f0(e.sealed.cpuUsPerReq)} µs`, `off: ${f0(e.ours.reqPerSec)}, ${f0(e.ours.cpuUsPerReq)} µs`,
          `${withSpread(sr.reqPerSec, sr.reqPerSecSpread)}, ${f2(sr.cpuUsPerReq)}×`, '')
        if (e.redis) withRedis(['', ''])
      }
      row(`express.${route}.ofMemory`, `Express ${route}: share of MemoryStore's ${f0(e.memory.reqPerSec)} req/s`, `${f0(100 * e.oursOfMemory)} %`, `${f0(100 * e.cps.reqPerSec / e.memory.reqPerSec)} %`, '', '≈ 80 %')
      if (e.redis) withRedis([`${f0(100 * e.redis.reqPerSec / e.memory.reqPerSec)} %`, ''])
    }
  }
  if (s.expressPinned) {
    for (const route of ['read', 'write']) {
      const e = s.expressPinned[route]
      const v = e.vsRedis
      row(`pinned.${route}`, `Express ${route}, app alone on a core: req/s · app CPU per request`, `${f0(e.ours.reqPerSec)} · ${f0(e.ours.cpuUsPerReq)} µs`, '', '', '')
      if (v) {
        const bar = route === 'read' ? 1 : 0.9
        withRedis([`${f0(e.redis.reqPerSec)} · ${f0(e.redis.cpuUsPerReq)} µs`,
          `${vsCell(v.reqPerSec, v.reqPerSecSpread, bar, true)} · ${vsCell(v.cpuUsPerReq, v.cpuUsPerReqSpread, 1, false)}`])
      }
      threadsRow(`pinned.${route}.threads`, `Express ${route}, app alone on a core: app CPU per request by thread (µs): JS thread · V8 helpers · worker`, e, false)
    }
  }
  if (s.latency) {
    const { ours, cps, ratio } = s.latency
    row('latency', 'single-operation latency p50 / p99 (µs, 1 caller, pool 1)', `${f0(ours.p50Us)} / ${f0(ours.p99Us)}`, `${f0(cps.p50Us)} / ${f0(cps.p99Us)}`, `${f2(ratio.p50)}× / ${f2(ratio.p99)}×`, `≤ 1× ${yes(ratio.p50 <= 1 && ratio.p99 <= 1)}`)
  }
  if (s.hot) {
    const { ours, cps, ratio } = s.hot
    row('hot.callsPerSec', `hot sessions: calls/s (64 callers, set:touch 80:20 on 30 sessions, pool 10, ${s.hot.seconds} s)`, f0(ours.callsPerSec), f0(cps.callsPerSec), `**${f2(ratio.callsPerSec)}×**`, `≥ 1.0× ${yes(ratio.callsPerSec >= 1 && ours.failed === 0 && ours.stalled === 0)}`)
    row('hot.latency', 'hot sessions: p50 / p99 latency (ms)', `${f1(ours.p50Ms)} / ${f0(ours.p99Ms)}`, `${f1(cps.p50Ms)} / ${f0(cps.p99Ms)}`, `${f2(ours.p50Ms / cps.p50Ms)}× / ${f2(ratio.p99)}×`, '')
    row('hot.deadlocks', `hot sessions: deadlocks PostgreSQL detected, total over ${ours.runs} runs`, withTrouble(f0(ours.deadlocks), ours), withTrouble(f0(cps.deadlocks), cps), '', `0 ${yes(ours.deadlocks === 0 && ours.failed === 0)}`)
  }
  if (s.locked) {
    const { holdSeconds, others } = s.locked
    const when = { together: 'in the same tick as its set', behind: 'once its set waits on the lock' }
    for (const phase of ['together', 'behind']) {
      const { ours, cps } = s.locked[phase]
      const ok = ours.slowestMs < 1000 && ours.errors === 0 && ours.stalled === 0 && ours.failed === 0
      row(`locked.${phase}`, `one row locked ${holdSeconds} s: ${others} sets of other sessions started ${when[phase]}, slowest (worst of ${ours.runs} runs) / p50 (ms)`,
        withTrouble(`${f0(ours.slowestMs)} / ${f0(ours.p50Ms)}`, ours), withTrouble(`${f0(cps.slowestMs)} / ${f0(cps.p50Ms)}`, cps),
        f2(ours.slowestMs / cps.slowestMs) + '×', `slowest < 1000 ms ${yes(ok)}`)
    }
  }
  if (s.memory) {
    const { ours, cps } = s.memory
    row('memory', 'RSS over a long run: first → half way → last of 20 samples (MB)', `${f0(ours.firstMB)} → ${f0(ours.midMB)} → ${f0(ours.lastMB)} over ${f0(ours.ops)} ops`, `${f0(cps.firstMB)} → ${f0(cps.midMB)} → ${f0(cps.lastMB)} over ${f0(cps.ops)} ops`, `${ours.lastMB - ours.midMB >= 0 ? '+' : ''}${f1(ours.lastMB - ours.midMB)} MB in the 2nd half`, `flat (< 5 MB in the 2nd half) ${yes(ours.lastMB - ours.midMB < 5)}`)
  }
  if (s.tableSize) {
    const t = s.tableSize
    row('tableSize.get', `get p50 / p99 (µs, ${t.callers} callers): ${f0(t.live)} rows → ${f0(t.live + t.expired)} rows`, `${f0(t.small.p50)} / ${f0(t.small.p99)} → ${f0(t.large.p50)} / ${f0(t.large.p99)}`, '', `${f2(t.large.p50 / t.small.p50)}× / ${f2(t.large.p99 / t.small.p99)}×`, 'flat')
    row('tableSize.prune', `prune ${f0(t.deleted)} expired rows (batches of ${f0(t.batchSize)}): time, concurrent get p99 vs idle`, `${f1(t.pruneSeconds)} s, ${f0(t.during.p99)} µs`, '', `${f2(t.during.p99 / t.large.p99)}×`, `≤ 2× ${yes(t.during.p99 / t.large.p99 <= 2)}`)
  }
  if (s.pgbench) {
    row('pgbench', `PostgreSQL's own limit, pgbench SELECT by id (${s.pgbench.clients} clients)`, `${f0(s.pgbench.prepared)}/s prepared`, `${f0(s.pgbench.extended)}/s unnamed`, '', 'reference')
  }
  return rows
}

const HEADER = ['measure', 'express-pg-session', 'connect-pg-simple', 'ratio', 'target']
const ALIGN = ['---', '---:', '---:', '---:', '---']
const REDIS_HEADER = ['connect-redis + Redis', 'ratio to connect-redis (lowest–highest round), target']
const REDIS_ALIGN = ['---:', '---']
const tableLine = (cells) => `| ${cells.join(' | ')} |`
/** The run's machine and command; `short` (the README) leaves how the figures are summarized to the full page. */
const measured = (s, short = false) => `Measured ${s.date} on ${s.machine}, ${s.postgres}${s.redis ? `, ${s.redis}` : ''}, with \`${s.command}\`${s.pinned ? ` (${s.pinned})` : ''}.${s.pinnedPass ? ` ${s.pinnedPass}.` : ''}${short ? '' : ' Medians over rounds; ratios are medians of per-round ratios, contenders alternated (A B B A, A B C C B A) in the same run.'}`

/** The table's lines; the connect-redis columns when it ran. `pick` keeps some rows, `cut` some columns. */
function tableLines (s, { pick = () => true, columns = HEADER.length } = {}) {
  const rows = tableRows(s).filter((r) => pick(r.key))
  const redis = rows.some((r) => r.redis)
  const cells = (r) => [...r.cells.slice(0, columns), ...(redis ? r.redis || ['', ''] : [])]
  return [
    tableLine([...HEADER.slice(0, columns), ...(redis ? REDIS_HEADER : [])]),
    tableLine([...ALIGN.slice(0, columns), ...(redis ? REDIS_ALIGN : [])]),
    ...rows.map((r) => tableLine(cells(r))),
  ]
}

/**
 * The full table and the chart. `chart` is the chart's path as seen from the page that shows it
 * (docs/benchmarks.md: ../bench/results/chart.svg).
 */
function markdown (s, { chart = 'bench/results/chart.svg' } = {}) {
  const lines = [
    measured(s),
    '',
    ...tableLines(s),
    '',
    `![benchmark chart](${chart})`,
  ]
  return lines.join('\n')
}

/** The rows the README shows, by key; each appears when the run measured it, in the full table's order. */
const SHORT_ROWS = ['store.opsPerSec', 'express.read.reqPerSec', 'express.write.reqPerSec', 'express.read.cpu', 'express.write.cpu', 'pinned.read', 'pinned.write', 'hot.callsPerSec']

/** The README's table: a few of the full table's rows, as they are there, without the target column. */
function shortMarkdown (s) {
  const lines = [
    measured(s, true),
    '',
    ...tableLines(s, { pick: (key) => SHORT_ROWS.includes(key), columns: 4 }),
  ]
  return lines.join('\n')
}

/** Bars per panel, each panel on its own scale; plain SVG text, no library. */
function svg (s) {
  const panels = []
  if (s.store) {
    panels.push({
      title: 'Store operations per second',
      bars: [
        [LABELS.cps, s.store.cps.opsPerSec],
        [LABELS.ours, s.store.ours.opsPerSec],
        ...(s.store.redis ? [[LABELS.redis, s.store.redis.opsPerSec]] : []),
        ...(s.pgbench ? [['pgbench -M prepared (SELECT only)', s.pgbench.prepared]] : []),
      ],
    })
  }
  if (s.hot) {
    panels.push({
      title: 'Hot sessions (set / touch on 30 sessions), calls per second',
      bars: [[LABELS.cps, s.hot.cps.callsPerSec], [LABELS.ours, s.hot.ours.callsPerSec]],
    })
  }
  for (const route of ['read', 'write']) {
    if (!s.express) break
    const e = s.express[route]
    panels.push({
      title: `Express ${route} route, requests per second`,
      bars: [[LABELS.cps, e.cps.reqPerSec], [LABELS.ours, e.ours.reqPerSec], ...(e.redis ? [[LABELS.redis, e.redis.reqPerSec]] : []),
        [LABELS.memory + ' (no database, reference)', e.memory.reqPerSec]],
    })
  }
  const colors = { [LABELS.cps]: '#9aa5b1', [LABELS.ours]: '#d9480f', [LABELS.redis]: '#a61e4d' }
  const width = 760
  const barH = 22
  const labelW = 250
  let y = 40
  const parts = [`<text x="10" y="24" font-size="16" font-weight="bold">express-pg-session vs connect-pg-simple${s.redis ? ' and connect-redis' : ''} — ${esc(s.date)}</text>`]
  for (const p of panels) {
    parts.push(`<text x="10" y="${y + 14}" font-size="13" font-weight="bold">${esc(p.title)}</text>`)
    y += 22
    const max = Math.max(...p.bars.map((b) => b[1]).filter(Number.isFinite))
    for (const [label, value] of p.bars) {
      const w = Number.isFinite(value) ? Math.max(1, ((width - labelW - 90) * value) / max) : 0
      parts.push(`<text x="10" y="${y + 15}" font-size="12">${esc(label)}</text>`)
      parts.push(`<rect x="${labelW}" y="${y}" width="${w.toFixed(1)}" height="${barH - 4}" fill="${colors[label] || '#4c6ef5'}"/>`)
      parts.push(`<text x="${(labelW + w + 6).toFixed(1)}" y="${y + 14}" font-size="12">${f0(value)}</text>`)
      y += barH
    }
    y += 12
  }
  parts.push(`<text x="10" y="${y + 8}" font-size="11" fill="#555">${esc(s.machine)}</text>`)
  y += 20
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" viewBox="0 0 ${width} ${y}" font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n${parts.join('\n')}\n</svg>\n`
}

const esc = (t) => String(t).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

module.exports = { summarize, markdown, shortMarkdown, svg }
