'use strict'

// The public typings (index.d.ts, koa.d.ts, and the ESM ones), checked by a strict tsc run over code written as users write it.
// usage.ts also holds @ts-expect-error lines, so typings that accept wrong options fail this test.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { execFileSync } = require('node:child_process')
const path = require('node:path')

test('index.d.ts type-checks against express-session, pg and user code (strict tsc)', () => {
  const tsc = path.join(__dirname, '..', 'node_modules', 'typescript', 'bin', 'tsc')
  let output = ''
  try {
    output = execFileSync(process.execPath, [tsc, '-p', path.join(__dirname, 'types', 'tsconfig.json')], { encoding: 'utf8' })
  } catch (err) {
    assert.fail(`tsc reported errors:\n${err.stdout}${err.stderr}`)
  }
  assert.equal(output.trim(), '')
})

test('index.d.mts and koa.d.mts type-check as an ESM app imports them, through the package exports (nodenext)', () => {
  const tsc = path.join(__dirname, '..', 'node_modules', 'typescript', 'bin', 'tsc')
  let output = ''
  try {
    output = execFileSync(process.execPath, [tsc, '-p', path.join(__dirname, 'types', 'esm', 'tsconfig.json')], { encoding: 'utf8' })
  } catch (err) {
    assert.fail(`tsc reported errors:\n${err.stdout}${err.stderr}`)
  }
  assert.equal(output.trim(), '')
})
