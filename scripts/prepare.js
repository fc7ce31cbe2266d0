'use strict'

// `npm install` in a checkout runs this (package.json `prepare`): builds the native addon unless the
// binary already there is newer than every Rust source, and says what to install when Rust is missing.

const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const root = path.join(__dirname, '..')

/** Newest modification time under `file` (a file or a directory), in ms. */
function newest (file) {
  const stat = fs.statSync(file)
  if (!stat.isDirectory()) return stat.mtimeMs
  return Math.max(0, ...fs.readdirSync(file).map((name) => newest(path.join(file, name))))
}

function upToDate () {
  const binaries = fs.readdirSync(root).filter((f) => /^express-pg-session\..+\.node$/.test(f))
  if (binaries.length === 0) return false
  const built = Math.min(...binaries.map((f) => fs.statSync(path.join(root, f)).mtimeMs))
  const sources = ['src', 'Cargo.toml', 'Cargo.lock', 'build.rs'].map((f) => newest(path.join(root, f)))
  return built >= Math.max(...sources)
}

if (!process.env.EXPRESS_PG_SESSION_BUILD && upToDate()) {
  console.log('express-pg-session: the native binary is newer than the Rust sources; not rebuilding (npm run build forces it)')
  process.exit(0)
}
const cargo = spawnSync('cargo', ['--version'], { stdio: 'ignore' })
if (cargo.error || cargo.status !== 0) {
  console.error('express-pg-session: building the native addon from a checkout needs Rust (cargo). ' +
    'Install it from https://rustup.rs, open a new shell, then run `npm install` again.')
  process.exit(1)
}
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'
const build = spawnSync(npm, ['run', 'build'], { cwd: root, stdio: 'inherit' })
process.exit(build.status === null ? 1 : build.status)
