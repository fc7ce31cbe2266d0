'use strict'

// Each example in examples/ starts with its one command, serves two requests that share a
// session kept in PostgreSQL, and stops cleanly on SIGTERM; the TypeScript one also type-checks.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { spawn, execFileSync } = require('node:child_process')
const path = require('node:path')
const { DATABASE_URL, uniqueName, withClient } = require('./helpers')

const ROOT = path.join(__dirname, '..')
const TSX = path.join(ROOT, 'node_modules', '.bin', 'tsx')
const TSC = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')
const START_LIMIT_MS = 30000

/**
 * Starts an example on a free port; resolves with its URL once it says it is listening.
 * @param {string} command @param {string[]} args @param {string} tableName
 */
function startExample (command, args, tableName) {
  const child = spawn(command, args, {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL, PORT: '0', SESSION_TABLE: tableName },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })))
  const url = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "listening on" within ${START_LIMIT_MS} ms:\n${output}`)), START_LIMIT_MS)
    const onData = (/** @type {Buffer} */ chunk) => {
      output += chunk
      const found = /listening on (http:\/\/localhost:\d+)/.exec(output)
      if (found) {
        clearTimeout(timer)
        resolve(found[1])
      }
    }
    child.stdout.on('data', onData)
    child.stderr.on('data', onData)
    exited.then(() => { clearTimeout(timer); reject(new Error(`the example exited before listening:\n${output}`)) })
  })
  return { child, url, exited, output: () => output }
}

/** @param {string} command @param {string[]} args */
async function exerciseExample (command, args) {
  const tableName = uniqueName('example')
  const example = startExample(command, args, tableName)
  try {
    const base = /** @type {string} */ (await example.url)
    const first = await fetch(`${base}/`)
    assert.equal(first.status, 200)
    assert.deepEqual(await first.json(), { views: 1 })
    // Every cookie set (koa-session signs its cookie in a second one).
    const cookie = first.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ')
    const second = await fetch(`${base}/`, { headers: { cookie } })
    assert.deepEqual(await second.json(), { views: 2 }, 'the second request saw the session')
    const { rows } = await withClient((c) => c.query(`SELECT sess FROM ${tableName}`))
    assert.equal(rows.length, 1)
    assert.equal(rows[0].sess.views, 2, 'the session lives in PostgreSQL')
    const stats = await (await fetch(`${base}/stats`)).json()
    assert.ok(stats.operations.set >= 2, JSON.stringify(stats))
  } finally {
    example.child.kill('SIGTERM')
    const { code } = /** @type {any} */ (await example.exited)
    assert.equal(code, 0, `the example stops cleanly on SIGTERM:\n${example.output()}`)
    await withClient((c) => c.query(`DROP TABLE IF EXISTS ${tableName}`))
  }
}

test('npm run demo (examples/demo.js) counts visits and shows the session row', async () => {
  const tableName = uniqueName('demo')
  const demo = startExample(process.execPath, ['examples/demo.js'], tableName)
  try {
    const base = /** @type {string} */ (await demo.url)
    const first = await fetch(`${base}/`)
    assert.match(await first.text(), /visited 1 time</)
    // Every cookie set (koa-session signs its cookie in a second one).
    const cookie = first.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ')
    const page = await (await fetch(`${base}/`, { headers: { cookie } })).text()
    assert.match(page, /visited 2 times/)
    const sid = decodeURIComponent(cookie.split('=')[1]).slice(2).split('.')[0]
    assert.ok(page.includes(sid), 'the page shows the session row')
    const { rows } = await withClient((c) => c.query(`SELECT sess FROM ${tableName} WHERE sid = $1`, [sid]))
    assert.equal(rows[0].sess.visits, 2)
  } finally {
    demo.child.kill('SIGTERM')
    const { code } = /** @type {any} */ (await demo.exited)
    assert.equal(code, 0, `the demo stops cleanly on SIGTERM:\n${demo.output()}`)
    await withClient((c) => c.query(`DROP TABLE IF EXISTS ${tableName}`))
  }
})

test('examples/express.js', () => exerciseExample(process.execPath, ['examples/express.js']))

test('examples/fastify.js', () => exerciseExample(process.execPath, ['examples/fastify.js']))

test('examples/koa.js', () => exerciseExample(process.execPath, ['examples/koa.js']))

test('examples/typescript/app.ts runs with tsx', () => exerciseExample(TSX, ['examples/typescript/app.ts']))

test('examples/typescript type-checks (strict, esModuleInterop)', () => {
  execFileSync(process.execPath, [TSC, '-p', 'examples/typescript'], { cwd: ROOT, stdio: 'pipe' })
})

test('examples/devices.js lists a user\'s devices and signs out the others', async () => {
  const tableName = uniqueName('example_devices')
  const example = startExample(process.execPath, ['examples/devices.js'], tableName)
  try {
    const base = /** @type {string} */ (await example.url)
    const login = async (/** @type {string} */ ua) => {
      const res = await fetch(`${base}/login?user=ada`, { method: 'POST', headers: { 'user-agent': ua } })
      assert.equal(res.status, 200)
      return res.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ')
    }
    const laptop = await login('Laptop/1')
    const phone = await login('Phone/2')
    const devices = await (await fetch(`${base}/devices`, { headers: { cookie: laptop } })).json()
    assert.deepEqual(devices.map((d) => [d.device, d.current]), [['Phone/2', false], ['Laptop/1', true]])
    assert.ok(devices.every((d) => d.signedIn && d.lastActive && d.ip))
    const out = await (await fetch(`${base}/signout-others`, { method: 'POST', headers: { cookie: laptop } })).json()
    assert.deepEqual(out, { signedOut: 1 })
    assert.equal((await fetch(`${base}/devices`, { headers: { cookie: phone } })).status, 401)
    assert.equal((await fetch(`${base}/devices`, { headers: { cookie: laptop } })).status, 200)
  } finally {
    example.child.kill('SIGTERM')
    const { code } = /** @type {any} */ (await example.exited)
    assert.equal(code, 0, `the example stops cleanly on SIGTERM:\n${example.output()}`)
    await withClient((c) => c.query(`DROP TABLE IF EXISTS ${tableName}`))
  }
})
