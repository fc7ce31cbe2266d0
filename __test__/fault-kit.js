'use strict'

// Real parts for the reliability and security tests: certificates made with openssl, a PgBouncer
// started from a generated config, child node processes with a bounded run time, small waits.

const { execFileSync, spawn } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const { freePort } = require('./pg-server')

const FIXTURES = path.join(__dirname, 'fixtures')

/** @param {number} ms */
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * A directory the PostgreSQL server's OS user owns (servers started as root run as `postgres`).
 * @param {{ databaseDir: string }} server
 * @param {string} name
 */
function serverOwnedDir (server, name) {
  const { uid, gid } = fs.statSync(server.databaseDir)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `express-pg-session-${name}-`))
  fs.chmodSync(dir, 0o755)
  fs.chownSync(dir, uid, gid)
  return { dir, uid, gid }
}

/** @param {string[]} args @param {string} cwd */
function openssl (args, cwd) {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] })
}

/**
 * A CA, a server certificate it signs for `localhost` only, a client certificate for `clientUser`,
 * and a second CA nobody trusts. Files are owned by the server's user; keys are 0600.
 * @param {{ databaseDir: string }} server
 * @param {string} clientUser
 */
function makeCertificates (server, clientUser) {
  const { dir, uid, gid } = serverOwnedDir(server, 'tls')
  const ca = (name) => {
    openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${name}`,
      '-keyout', `${name}.key`, '-out', `${name}.crt`], dir)
  }
  const leaf = (name, subject, ext) => {
    openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', subject, '-keyout', `${name}.key`, '-out', `${name}.csr`], dir)
    fs.writeFileSync(path.join(dir, `${name}.ext`), ext)
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
      '-days', '2', '-extfile', `${name}.ext`, '-out', `${name}.crt`], dir)
  }
  ca('ca')
  ca('other-ca')
  // Only the DNS name: connecting to 127.0.0.1 is then a wrong host for verify-full.
  leaf('server', '/CN=localhost', 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n')
  leaf('client', `/CN=${clientUser}`, 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n')
  for (const file of fs.readdirSync(dir)) {
    const full = path.join(dir, file)
    fs.chownSync(full, uid, gid)
    fs.chmodSync(full, file.endsWith('.key') ? 0o600 : 0o644)
  }
  const read = (/** @type {string} */ f) => fs.readFileSync(path.join(dir, f), 'utf8')
  return {
    dir,
    caFile: path.join(dir, 'ca.crt'),
    serverCertFile: path.join(dir, 'server.crt'),
    serverKeyFile: path.join(dir, 'server.key'),
    clientCertFile: path.join(dir, 'client.crt'),
    clientKeyFile: path.join(dir, 'client.key'),
    ca: read('ca.crt'),
    otherCa: read('other-ca.crt'),
    clientCert: read('client.crt'),
    clientKey: read('client.key'),
  }
}

/** Where Debian puts pgbouncer, or undefined. */
function findPgbouncer () {
  return ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer', '/usr/local/bin/pgbouncer'].find((p) => fs.existsSync(p))
}

/** @param {string} command @returns {boolean} whether `command` runs */
function runs (command) {
  try {
    execFileSync(command, ['version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

const OPTIONAL_TOOLS = {
  pgbouncer: { found: () => findPgbouncer() !== undefined, install: 'apt-get install -y pgbouncer' },
  openssl: { found: () => runs('openssl'), install: 'apt-get install -y openssl' },
}

/**
 * For tests that need an optional system tool: false when it is there (run them); a skip reason
 * when it is missing on a developer's machine. Under CI (`CI` set) a missing tool is an error:
 * `.ci/run` installs it, so those tests must run there.
 * @param {keyof typeof OPTIONAL_TOOLS} tool
 * @returns {false | string}
 */
function skipWithout (tool) {
  const { found, install } = OPTIONAL_TOOLS[tool]
  if (found()) return false
  const why = `${tool} is not installed (${install}; .ci/run installs it)`
  if (process.env.CI) throw new Error(`${why}: under CI these tests must run`)
  return `${why}: skipped`
}

/** Where Debian puts pgbouncer; a missing binary is an error here (see `skipWithout`). */
function pgbouncerBinary () {
  const found = findPgbouncer()
  if (found) return found
  throw new Error('pgbouncer is not installed: `apt-get install -y pgbouncer` (.ci/run does it) before running this test')
}

/** Resolves once something accepts TCP connections on the port. */
async function waitForPort (port, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const open = await new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1')
      socket.once('connect', () => { socket.destroy(); resolve(true) })
      socket.once('error', () => resolve(false))
    })
    if (open) return
    if (Date.now() > deadline) throw new Error(`nothing listens on port ${port} after ${timeoutMs} ms`)
    await sleep(50)
  }
}

/**
 * A PgBouncer in transaction pooling in front of `server`, run as the server's OS user.
 * @param {{ databaseDir: string, port: number, user: string, password: string }} server
 * @param {Record<string, string | number>} [settings] extra `[pgbouncer]` settings
 */
async function startPgBouncer (server, settings = {}) {
  const binary = pgbouncerBinary()
  const { dir, uid, gid } = serverOwnedDir(server, 'pgbouncer')
  const port = await freePort()
  const ini = {
    listen_addr: '127.0.0.1',
    listen_port: port,
    unix_socket_dir: '',
    auth_type: 'scram-sha-256',
    auth_file: path.join(dir, 'userlist.txt'),
    pool_mode: 'transaction',
    // Lets the tests read SHOW POOLS on the admin console.
    admin_users: server.user,
    default_pool_size: 2,
    max_client_conn: 200,
    logfile: path.join(dir, 'pgbouncer.log'),
    pidfile: path.join(dir, 'pgbouncer.pid'),
    ...settings,
  }
  const text = [
    '[databases]',
    `* = host=127.0.0.1 port=${server.port}`,
    '[pgbouncer]',
    ...Object.entries(ini).map(([k, v]) => `${k} = ${v}`),
    '',
  ].join('\n')
  fs.writeFileSync(path.join(dir, 'pgbouncer.ini'), text)
  // A plain-text password lets PgBouncer do SCRAM both to the client and to the server.
  fs.writeFileSync(ini.auth_file, `"${server.user}" "${server.password}"\n`, { mode: 0o600 })
  for (const file of fs.readdirSync(dir)) fs.chownSync(path.join(dir, file), uid, gid)
  const child = spawn(binary, [path.join(dir, 'pgbouncer.ini')], { uid, gid, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (d) => { output += d })
  child.stderr.on('data', (d) => { output += d })
  const exited = new Promise((resolve) => child.once('exit', resolve))
  try {
    await Promise.race([
      waitForPort(port),
      exited.then((code) => { throw new Error(`pgbouncer exited with ${code}: ${output}`) }),
    ])
  } catch (err) {
    child.kill('SIGKILL')
    throw err
  }
  return {
    port,
    url: `postgres://${server.user}:${server.password}@127.0.0.1:${port}/postgres`,
    log: () => { try { return fs.readFileSync(ini.logfile, 'utf8') } catch { return output } },
    async stop () {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM')
        await exited
      }
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
}

/**
 * Runs `statement` in a transaction left open until `release()` (which may be called more than
 * once): its locks are held till then.
 * @param {string} url
 * @param {string} statement
 * @param {unknown[]} [params]
 */
async function holdLock (url, statement, params = []) {
  const pg = require('pg')
  const client = new pg.Client({ connectionString: url })
  client.on('error', () => {}) // the server may be torn down under a failed test
  await client.connect()
  await client.query('BEGIN')
  await client.query(statement, params)
  /** @type {Promise<void> | undefined} */
  let released
  return {
    release () {
      if (!released) released = client.query('ROLLBACK').then(() => client.end(), () => client.end())
      return released
    },
  }
}

/**
 * Waits until `n` backends of application `app` wait on a lock.
 * @param {string} url @param {string} app @param {number} n
 */
async function waitForLockWaiters (url, app, n) {
  const pg = require('pg')
  for (let i = 0; i < 200; i++) {
    const client = new pg.Client({ connectionString: url })
    await client.connect()
    try {
      const { rows } = await client.query(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'", [app])
      if (rows[0].n >= n) return
    } finally {
      await client.end()
    }
    await sleep(25)
  }
  throw new Error(`${n} calls never blocked on the lock`)
}

/**
 * Runs `node __test__/fixtures/<script> ...args`; kills it after `timeoutMs`.
 * @param {string} script
 * @param {string[]} args
 * @param {{ timeoutMs?: number, env?: Record<string, string> }} [options]
 * @returns {Promise<{ code: number | null, signal: string | null, stdout: string, stderr: string, ms: number, timedOut: boolean }>}
 */
function runFixture (script, args = [], options = {}) {
  const timeoutMs = options.timeoutMs || 20000
  const started = Date.now()
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(FIXTURES, script), ...args], {
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    let timedOut = false
    child.stdout.on('data', (d) => { stdout += d })
    child.stderr.on('data', (d) => { stderr += d })
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL') }, timeoutMs)
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started, timedOut })
    })
  })
}

/**
 * Settles `promise`; resolves with { err, value, ms } and never rejects.
 * @template T
 * @param {Promise<T> | undefined} promise
 */
async function outcome (promise) {
  const started = Date.now()
  try {
    return { err: null, value: await promise, ms: Date.now() - started }
  } catch (err) {
    return { err: /** @type {any} */ (err), value: undefined, ms: Date.now() - started }
  }
}

/**
 * Like `outcome`, but gives up after `ms`: { hung: true } instead of waiting forever.
 * @template T
 * @param {Promise<T> | undefined} promise
 * @param {number} ms
 */
async function within (promise, ms) {
  let timer
  const deadline = new Promise((resolve) => { timer = setTimeout(resolve, ms, { hung: true, err: null, value: undefined, ms }) })
  try {
    return /** @type {{ hung?: boolean, err: any, value: T | undefined, ms: number }} */ (await Promise.race([outcome(promise), deadline]))
  } finally {
    clearTimeout(timer)
  }
}

module.exports = {
  skipWithout,
  holdLock,
  waitForLockWaiters,
  within,
  sleep,
  serverOwnedDir,
  makeCertificates,
  pgbouncerBinary,
  startPgBouncer,
  waitForPort,
  runFixture,
  outcome,
}
