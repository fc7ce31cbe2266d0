'use strict'

// `npm test`: runs every __test__/*.test.js with node's test runner against DATABASE_URL,
// or, when it is not set, against an embedded PostgreSQL started here and stopped after.

const { spawn } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const { startServer } = require('./pg-server')

async function main () {
  const env = { ...process.env }
  let server
  if (!env.DATABASE_URL) {
    process.stdout.write('DATABASE_URL is not set: starting an embedded PostgreSQL for the tests\n')
    server = await startServer()
    env.DATABASE_URL = server.url
  }
  const only = process.argv.slice(2)
  const files = only.length > 0
    ? only
    : fs.readdirSync(__dirname).filter((f) => f.endsWith('.test.js')).sort().map((f) => path.join(__dirname, f))
  const code = await new Promise((resolve) => {
    const child = spawn(process.execPath, ['--test', '--test-concurrency=1', ...files], { stdio: 'inherit', env })
    child.on('exit', (status, signal) => resolve(signal ? 1 : status))
  })
  if (server) await server.destroy()
  process.exit(code)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
