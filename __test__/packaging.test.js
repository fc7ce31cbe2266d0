'use strict'

// The published shape: `npm pack` of this checkout, installed into a fresh app with no Rust
// toolchain on PATH, used from CommonJS, ESM and TypeScript (CommonJS with esModuleInterop, and
// ESM through the `import` types), each doing a real set/get against DATABASE_URL. Also: what the
// tarball carries, and the loader's error when the binary is missing.

const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { DATABASE_URL, uniqueName } = require('./helpers')

const ROOT = path.join(__dirname, '..')
const rootPackage = require('../package.json')
const TSC = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm'
// node and npm, but no cargo/rustc (rustup puts them in ~/.cargo/bin): the install must not need Rust.
const PATH_WITHOUT_RUST = [
  path.dirname(process.execPath),
  ...['/usr/local/bin', '/usr/bin', '/bin'].filter((dir) => !fs.existsSync(path.join(dir, 'cargo'))),
].join(path.delimiter)

let workDir = ''
let tarball = ''
let appDir = ''
/** @type {Array<{ path: string }>} */
let packedFiles = []

/** @param {string} file @param {string[]} args @param {string} cwd */
function runIn (cwd, file, args) {
  return execFileSync(file, args, {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, PATH: PATH_WITHOUT_RUST, DATABASE_URL, npm_config_update_notifier: 'false' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
}

/** The app's scripts print one JSON line: the session they read back. */
function lastJsonLine (/** @type {string} */ output) {
  const lines = output.trim().split('\n')
  return JSON.parse(lines[lines.length - 1])
}

const CJS_APP = `
const session = require('express-session')
const pgSession = require('express-pg-session')
const PGStore = pgSession(session)
const store = new PGStore({ conString: process.env.DATABASE_URL, tableName: process.argv[2], createTableIfMissing: true, pruneSessionInterval: false })
;(async () => {
  await store.set('cjs', { cookie: { maxAge: 60000 }, from: 'cjs' })
  const sess = await store.get('cjs')
  await store.close()
  console.log(JSON.stringify({ from: sess.from, resolved: require.resolve('express-pg-session') }))
})().catch((err) => { console.error(err); process.exit(1) })
`

const ESM_APP = `
import { createRequire } from 'node:module'
import session from 'express-session'
import pgSession from 'express-pg-session'
const PGStore = pgSession(session)
const sameAsRequire = createRequire(import.meta.url)('express-pg-session') === pgSession
const store = new PGStore({ conString: process.env.DATABASE_URL, tableName: process.argv[2], pruneSessionInterval: false })
await store.set('esm', { cookie: { maxAge: 60000 }, from: 'esm' })
const sess = await store.get('esm')
await store.close()
console.log(JSON.stringify({ from: sess.from, sameAsRequire, resolved: import.meta.resolve('express-pg-session') }))
`

// Checked by tsc: a wrong option must be an error, so the typings are really applied.
const TS_APP = (/** @type {string} */ from) => `
import session from 'express-session'
import pgSession from 'express-pg-session'
import type { Options } from 'express-pg-session'

declare module 'express-session' {
  interface SessionData {
    from: string
  }
}

const PGStore = pgSession(session)
const options: Options & pgSession.Options = {
  conString: process.env.DATABASE_URL,
  tableName: process.argv[2],
  pruneSessionInterval: false,
  columns: { session_id: 'sid', session_data: 'sess', expire: 'expire' },
}
// @ts-expect-error tableName is a string
const wrong: pgSession.Options = { tableName: 42 }
void wrong
const store = new PGStore(options)

async function main (): Promise<void> {
  await store.set('${from}', { cookie: new session.Cookie(), from: '${from}' })
  const sess = await store.get('${from}')
  // get() is typed SessionData | null: a missing session must be handled.
  if (sess === null) throw new Error('no session')
  const stats = store.stats()
  const sets: number = stats.operations.set
  await store.close()
  console.log(JSON.stringify({ from: sess.from, sets }))
}
main().catch((err) => { console.error(err); process.exit(1) })
`

before(async () => {
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'express-pg-session-pack-'))
  // The tests run after a build: pack what is there instead of building again (prepare).
  const packed = JSON.parse(execFileSync(NPM, ['pack', '--ignore-scripts', '--json', '--pack-destination', workDir], { cwd: ROOT, encoding: 'utf8' }))
  tarball = path.join(workDir, packed[0].filename)
  packedFiles = packed[0].files

  appDir = path.join(workDir, 'app')
  fs.mkdirSync(appDir)
  const devVersion = (/** @type {string} */ name) => rootPackage.devDependencies[name]
  fs.writeFileSync(path.join(appDir, 'package.json'), JSON.stringify({
    name: 'fresh-app',
    private: true,
    dependencies: {
      'express-pg-session': `file:${tarball}`,
      'express-session': devVersion('express-session'),
      '@types/express-session': devVersion('@types/express-session'),
      '@types/node': devVersion('@types/node'),
    },
  }, null, 2))
  fs.writeFileSync(path.join(appDir, 'cjs.cjs'), CJS_APP)
  fs.writeFileSync(path.join(appDir, 'esm.mjs'), ESM_APP)
  fs.writeFileSync(path.join(appDir, 'app.ts'), TS_APP('ts'))
  fs.writeFileSync(path.join(appDir, 'app-esm.mts'), TS_APP('mts'))
  // Install scripts run (none may need Rust); PATH has no cargo.
  runIn(appDir, NPM, ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'])
})

after(() => {
  if (workDir) fs.rmSync(workDir, { recursive: true, force: true })
})

test('the tarball carries what runs and nothing else', () => {
  const paths = packedFiles.map((f) => f.path).sort()
  const localBinary = fs.readdirSync(ROOT).filter((f) => f.endsWith('.node'))
  assert.ok(localBinary.length >= 1, 'a build ran before the tests')
  for (const needed of ['package.json', 'index.js', 'lib/store.js', 'lib/calls.js', 'lib/options.js', 'lib/errors.js', 'lib/native.js', 'lib/koa.js', 'index.mjs', 'index.d.ts', 'index.d.mts', 'koa.js', 'koa.mjs', 'koa.d.ts', 'koa.d.mts', 'binding.js', 'binding.d.ts', 'table.sql', ...localBinary]) {
    assert.ok(paths.includes(needed), `${needed} is packed`)
  }
  const unexpected = paths.filter((p) => /^(src|__test__|bench|examples|npm|target|docs)\/|^Cargo\.|\.rs$/.test(p))
  assert.deepEqual(unexpected, [])
  assert.equal(runIn(appDir, '/bin/sh', ['-c', 'command -v cargo rustc || echo none']).trim(), 'none', 'the install ran without Rust on PATH')
  const installed = require(path.join(appDir, 'node_modules', 'express-pg-session', 'package.json'))
  const scripts = installed.scripts || {}
  for (const hook of ['preinstall', 'install', 'postinstall']) assert.equal(scripts[hook], undefined, `no ${hook} script`)
  assert.deepEqual(installed.exports['.'].import, { types: './index.d.mts', default: './index.mjs' })
  assert.deepEqual(installed.exports['.'].require, { types: './index.d.ts', default: './index.js' })
  assert.ok(installed.engines && installed.engines.node)
  assert.deepEqual(installed.exports['./koa'], { import: { types: './koa.d.mts', default: './koa.mjs' }, require: { types: './koa.d.ts', default: './koa.js' } })
  // express-pg-session/koa loads without koa or koa-session installed, from require and import alike.
  const koaEntry = 'const k = require("express-pg-session/koa"); import("express-pg-session/koa").then((m) => console.log(typeof k, m.default === k))'
  assert.equal(runIn(appDir, process.execPath, ['-e', koaEntry]).trim(), 'function true')
})

test('CommonJS: require() in the installed app, real set/get', () => {
  const out = lastJsonLine(runIn(appDir, process.execPath, ['cjs.cjs', uniqueName('pack_cjs')]))
  assert.equal(out.from, 'cjs')
  assert.equal(out.resolved, fs.realpathSync(path.join(appDir, 'node_modules', 'express-pg-session', 'index.js')), 'the installed copy, not this checkout')
})

test('ESM: import default, the same class as require', () => {
  const tableName = uniqueName('pack_esm')
  // The ESM script does not create its table: make it through CommonJS first.
  runIn(appDir, process.execPath, ['cjs.cjs', tableName])
  const out = lastJsonLine(runIn(appDir, process.execPath, ['esm.mjs', tableName]))
  assert.equal(out.from, 'esm')
  assert.equal(out.sameAsRequire, true)
  assert.ok(out.resolved.endsWith('/node_modules/express-pg-session/index.mjs'), out.resolved)
})

test('TypeScript (CommonJS output, esModuleInterop) compiles with the typings and runs', () => {
  const tableName = uniqueName('pack_ts')
  runIn(appDir, process.execPath, ['cjs.cjs', tableName])
  const explained = runIn(appDir, process.execPath, [TSC, '--strict', '--esModuleInterop', '--module', 'commonjs', '--target', 'es2022',
    '--moduleResolution', 'node10', '--types', 'node', '--outDir', 'out-cjs', '--explainFiles', 'app.ts'])
  assert.match(explained, /node_modules\/express-pg-session\/index\.d\.ts/, 'the require typings were used')
  const out = lastJsonLine(runIn(appDir, process.execPath, ['out-cjs/app.js', tableName]))
  assert.deepEqual(out, { from: 'ts', sets: 1 })
})

test('TypeScript (ESM, module nodenext) resolves the import types and runs', () => {
  const tableName = uniqueName('pack_mts')
  runIn(appDir, process.execPath, ['cjs.cjs', tableName])
  const explained = runIn(appDir, process.execPath, [TSC, '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022',
    '--types', 'node', '--outDir', 'out-esm', '--explainFiles', 'app-esm.mts'])
  assert.match(explained, /node_modules\/express-pg-session\/index\.d\.mts/, 'the import typings were used')
  const out = lastJsonLine(runIn(appDir, process.execPath, ['out-esm/app-esm.mjs', tableName]))
  assert.deepEqual(out, { from: 'mts', sets: 1 })
})

test('without its binary the installed package fails with ERR_PG_SESSION_NO_BINARY and says how to build', () => {
  const pkgDir = path.join(appDir, 'node_modules', 'express-pg-session')
  for (const f of fs.readdirSync(pkgDir).filter((name) => name.endsWith('.node'))) fs.rmSync(path.join(pkgDir, f))
  const probe = `
    try { require('express-pg-session'); console.log(JSON.stringify({ loaded: true })) }
    catch (err) { console.log(JSON.stringify({ code: err.code, message: err.message })) }`
  const out = lastJsonLine(runIn(appDir, process.execPath, ['-e', probe]))
  assert.equal(out.code, 'ERR_PG_SESSION_NO_BINARY')
  assert.ok(out.message.includes(`${process.platform}-${process.arch}`), out.message)
  assert.match(out.message, /npm run build/)
  assert.match(out.message, /rustup\.rs/)
})

test('with the binary in its per-platform package (npm/<platform>), the installed package loads it from there', () => {
  // What a published install looks like: the root package without a binary, plus the one
  // platform package npm picked from optionalDependencies. Built here from npm/<platform>.
  const [binary] = fs.readdirSync(ROOT).filter((f) => /^express-pg-session\..+\.node$/.test(f))
  const platform = binary.replace(/^express-pg-session\.|\.node$/g, '')
  const platformDir = path.join(workDir, `platform-${platform}`)
  fs.cpSync(path.join(ROOT, 'npm', platform), platformDir, { recursive: true })
  fs.copyFileSync(path.join(ROOT, binary), path.join(platformDir, binary))
  const platformPackage = require(path.join(platformDir, 'package.json'))
  assert.equal(platformPackage.name, `express-pg-session-${platform}`)
  assert.equal(platformPackage.version, rootPackage.version, 'npm/<platform> versions follow the root (napi version)')
  const packed = JSON.parse(runIn(platformDir, NPM, ['pack', '--json', '--pack-destination', workDir]))
  runIn(appDir, NPM, ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', path.join(workDir, packed[0].filename)])

  // A published root package carries no binary (the previous test removed it already).
  const rootCopy = path.join(appDir, 'node_modules', 'express-pg-session')
  for (const f of fs.readdirSync(rootCopy).filter((name) => name.endsWith('.node'))) fs.rmSync(path.join(rootCopy, f))
  const probe = `
    const session = require('express-session')
    const PGStore = require('express-pg-session')(session)
    const loaded = Object.keys(require.cache).filter((f) => f.endsWith('.node'))
    const store = new PGStore({ conString: process.env.DATABASE_URL, tableName: process.argv[1], createTableIfMissing: true, pruneSessionInterval: false })
    store.set('p', { cookie: {}, via: 'platform package' })
      .then(() => store.get('p'))
      .then(async (sess) => { await store.close(); console.log(JSON.stringify({ loaded, via: sess.via })) })
      .catch((err) => { console.error(err); process.exit(1) })`
  const out = lastJsonLine(runIn(appDir, process.execPath, ['-e', probe, uniqueName('pack_platform')]))
  assert.equal(out.via, 'platform package')
  assert.equal(out.loaded.length, 1)
  assert.ok(out.loaded[0].includes(`node_modules/express-pg-session-${platform}/${binary}`), out.loaded[0])
})

test('the README stays a door, not a manual: at most 16 KB, 16,000 bytes (depth goes to docs/)', () => {
  const bytes = fs.statSync(path.join(ROOT, 'README.md')).size
  assert.ok(bytes <= 16000, `README.md is ${bytes} bytes; move depth to docs/`)
})
