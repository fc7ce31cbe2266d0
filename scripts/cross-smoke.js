// @ts-check
'use strict'

// Run by scripts/cross.js inside a throw-away app, on another platform's Node (qemu, wine): loads
// express-pg-session as installed there, checks the native binary came from the platform package
// named on the command line, and does a real set/get/destroy against DATABASE_URL.
//   node smoke.js express-pg-session-linux-arm64-gnu

const assert = require('node:assert/strict')
const path = require('node:path')

async function main () {
  const platformPackage = process.argv[2]
  if (!platformPackage) throw new Error('usage: node smoke.js <platform package name>')
  if (!process.env.DATABASE_URL) throw new Error('DATABASE_URL is not set')
  const session = require('express-session')
  // A name, not a literal: it resolves in the app this runs in (tsc, over this checkout, finds none).
  const packageName = 'express-pg-session'
  const PGStore = require(packageName)(session)

  // binding.js first tries a binary next to itself; the root tarball has none for this platform,
  // so the one loaded must be the platform package's.
  const packageDir = path.dirname(require.resolve(`${platformPackage}/package.json`))
  const loaded = Object.keys(require.cache).filter((f) => f.endsWith('.node'))
  assert.ok(loaded.length === 1 && loaded[0].startsWith(packageDir + path.sep),
    `expected the binary from ${packageDir}, loaded: ${loaded.join(', ') || 'none'}`)

  const store = new PGStore({
    conString: process.env.DATABASE_URL,
    tableName: 'express_pg_session_cross_smoke',
    createTableIfMissing: true,
    pruneSessionInterval: false,
  })
  try {
    await store.ready()
    const sid = `smoke-${process.platform}-${process.arch}-${process.pid}`
    const data = { cookie: { maxAge: 60000 }, from: `${process.platform}-${process.arch}` }
    await store.set(sid, data)
    const read = await store.get(sid)
    assert.deepEqual(read && read.from, data.from, 'get after set returned another session')
    await store.destroy(sid)
    assert.equal(await store.get(sid), null, 'get after destroy found the session')
  } finally {
    await store.close()
  }
  console.log(`smoke ok: ${process.platform}-${process.arch} node ${process.version}, binary ${path.relative(process.cwd(), loaded[0])}: set/get/destroy against PostgreSQL`)
}

main().catch((err) => {
  // The cause carries binding.js's load errors: why the binary did not load.
  console.error(`smoke failed on ${process.platform}-${process.arch}: ${require('node:util').inspect(err, { depth: 6 })}`)
  process.exit(1)
})
