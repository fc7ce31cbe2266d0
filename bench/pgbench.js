'use strict'

// PostgreSQL's own limit for the store's read statement, measured with pgbench: prepared
// (what express-pg-session sends) and extended/unnamed (what pg sends for connect-pg-simple).

const { execFile } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const { seedTable } = require('./lib')

function findPgbench () {
  const candidates = [process.env.PGBENCH, 'pgbench', '/usr/lib/postgresql/17/bin/pgbench',
    '/usr/lib/postgresql/16/bin/pgbench', '/usr/lib/postgresql/15/bin/pgbench']
  for (const c of candidates) {
    if (!c) continue
    if (!c.includes('/')) {
      const dirs = (process.env.PATH || '').split(':')
      if (dirs.some((d) => fs.existsSync(path.join(d, c)))) return c
    } else if (fs.existsSync(c)) return c
  }
  return null
}

function pgbench (bin, url, mode, clients, seconds) {
  const args = ['-n', '-M', mode, '-c', String(clients), '-j', '2', '-T', String(seconds),
    '-f', path.join(__dirname, 'pgbench-get.sql'), url]
  return new Promise((resolve, reject) => {
    execFile(bin, args, (err, stdout, stderr) => {
      if (err) return reject(new Error(`pgbench failed: ${stderr || err.message}`))
      const m = /tps = ([\d.]+) \(without initial connection time\)/.exec(stdout)
      if (!m) return reject(new Error(`pgbench printed no tps: ${stdout}`))
      resolve(Number(m[1]))
    })
  })
}

/** Resolves null when pgbench is not installed. */
async function runPgbench ({ url, seconds, clients = 10, log }) {
  const bin = findPgbench()
  if (!bin) {
    log('  pgbench not found (set PGBENCH=/path/to/pgbench): skipped')
    return null
  }
  await seedTable(url, 'bench_pgbench', 10000)
  const result = { clients }
  for (const mode of ['prepared', 'extended']) {
    result[mode] = await pgbench(bin, url, mode, clients, seconds)
    log(`  pgbench -M ${mode.padEnd(8)} -c ${clients}: ${result[mode].toFixed(0)} SELECTs/s`)
  }
  return result
}

module.exports = { runPgbench }
