'use strict'

// The connect-redis contender's server: Debian's `redis-server` started by the benchmark on a free
// local port, with no persistence (no RDB snapshots, no AOF), and stopped at the end. When the
// binary is missing it is installed with apt-get (root only); where that cannot be done the
// contender is skipped with a message saying why, and the rest of the run goes on.

const { spawn, spawnSync } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const { sleep } = require('./lib')

const CANDIDATES = ['/usr/bin/redis-server', '/usr/local/bin/redis-server']

function findBinary () {
  for (const file of CANDIDATES) if (fs.existsSync(file)) return file
  const which = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' })
  return which.status === 0 ? which.stdout.trim() : null
}

/** The binary, installed with apt-get when missing and this process may; else { skip: why }. */
function ensureBinary (log) {
  const found = findBinary()
  if (found) return { bin: found }
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return { skip: 'redis-server is not installed and this is not root (apt-get install redis-server)' }
  if (spawnSync('sh', ['-c', 'command -v apt-get'], { encoding: 'utf8' }).status !== 0) return { skip: 'redis-server is not installed and there is no apt-get here' }
  log('  redis-server is missing: apt-get install -y redis-server')
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  const update = spawnSync('apt-get', ['update', '-qq'], { stdio: 'ignore', env })
  const install = update.status === 0 && spawnSync('apt-get', ['install', '-y', '-qq', 'redis-server'], { stdio: 'ignore', env })
  const bin = findBinary()
  return bin ? { bin } : { skip: `apt-get install redis-server failed (exit ${install ? install.status : update.status})` }
}

function freePort () {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

function ping (port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    let out = ''
    socket.setTimeout(500, () => socket.destroy())
    socket.on('connect', () => socket.write('PING\r\n'))
    socket.on('data', (d) => { out += d; if (out.includes('\r\n')) socket.end() })
    socket.on('close', () => resolve(out.startsWith('+PONG')))
    socket.on('error', () => {})
  })
}

/**
 * Starts a private Redis; resolves { url, version, stop } or { skip: why }. The packages the
 * contender needs (connect-redis, redis) are devDependencies; their absence is a skip too.
 */
async function startRedis (log) {
  try {
    require.resolve('connect-redis')
    require.resolve('redis')
  } catch {
    return { skip: 'the connect-redis and redis packages are not installed (npm install)' }
  }
  const { bin, skip } = ensureBinary(log)
  if (skip) return { skip }
  const port = await freePort()
  const child = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--daemonize', 'no', '--protected-mode', 'yes', '--dir', require('node:os').tmpdir(), '--logfile', ''], { stdio: 'ignore' })
  let exited = null
  child.once('exit', (code) => { exited = code })
  child.once('error', (err) => { exited = err.message })
  for (let i = 0; i < 50 && exited === null; i++) {
    if (await ping(port)) {
      const version = spawnSync(bin, ['--version'], { encoding: 'utf8' }).stdout.match(/v=(\S+)/)
      return {
        url: `redis://127.0.0.1:${port}`,
        pid: child.pid,
        version: `Redis ${version ? version[1] : '?'}`,
        stop: () => new Promise((resolve) => {
          if (exited !== null) return resolve()
          child.once('exit', resolve)
          child.kill('SIGTERM')
        }),
      }
    }
    await sleep(100)
  }
  child.kill('SIGKILL')
  return { skip: `redis-server did not answer on port ${port} (${exited === null ? 'no PONG within 5 s' : `exited: ${exited}`})` }
}

module.exports = { startRedis }
