'use strict'

// An Express app with express-session on one store, in its own process. GET /read reads the
// session (express-session then calls get + touch); GET /write changes it (get + set).
// The parent drives it with autocannon; over IPC it answers { rss, cpu, busy } so memory, CPU
// and how busy the JS thread was (event-loop utilization) are measured per app.

const { performance } = require('node:perf_hooks')
const express = require('express')
const session = require('express-session')
const { makeStore, sessionObject, sid } = require('./lib')

const { kind, url, table, redisUrl, max = 10, sessions = 1000, secret } = JSON.parse(process.argv[2])

async function main () {
  const { store, ready } = makeStore(kind, { url, table, max, redisUrl })
  await ready
  // Every cookie the load generator sends names one of these sessions.
  await Promise.all(Array.from({ length: sessions }, (_, i) =>
    new Promise((resolve, reject) => store.set(sid(i), sessionObject(i), (err) => (err ? reject(err) : resolve())))))

  const app = express()
  app.use(session({ store, secret, resave: false, saveUninitialized: false, cookie: { maxAge: 86400000 } }))
  app.get('/read', (req, res) => res.end(String(req.session.userId)))
  app.get('/write', (req, res) => {
    req.session.counter = (req.session.counter || 0) + 1
    res.end(String(req.session.counter))
  })
  const server = app.listen(0, '127.0.0.1', () => {
    process.send({ ready: true, port: server.address().port })
  })
  let cpu0 = process.cpuUsage()
  let elu0 = performance.eventLoopUtilization()
  process.on('message', (msg) => {
    if (msg === 'mark') {
      cpu0 = process.cpuUsage()
      elu0 = performance.eventLoopUtilization()
    }
    if (msg === 'stats') {
      const cpu = process.cpuUsage(cpu0)
      const busy = performance.eventLoopUtilization(elu0).utilization
      process.send({ rssMB: process.memoryUsage.rss() / 2 ** 20, heapMB: process.memoryUsage().heapUsed / 2 ** 20, cpuUs: cpu.user + cpu.system, busy })
    }
    if (msg === 'exit') process.exit(0)
  })
}

main().catch((err) => { console.error(err); process.exit(1) })
