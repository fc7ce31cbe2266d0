'use strict'

// Shared by the spec files: the store class, a database URL, unique table names, a pg client.

const crypto = require('node:crypto')
const session = require('express-session')
const pg = require('pg')
const PGStore = require('..')(session)

const DATABASE_URL = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test'

/** A table name no other test uses. */
function uniqueName (prefix = 'sess') {
  return `${prefix}_${crypto.randomBytes(5).toString('hex')}`
}

/**
 * SQL: the row is a session, not a tombstone. A destroyed session's row stays as a tombstone
 * (expiry moved before 1900, see docs/security.md), so tests counting sessions skip those.
 */
function notTombstone (column = 'expire') {
  return `"${column}" >= '1900-01-01'`
}

/** A store on a fresh table of its own; `close()` it when done. */
function makeStore (options = {}) {
  return new PGStore({
    conString: DATABASE_URL,
    tableName: uniqueName(),
    createTableIfMissing: true,
    pruneSessionInterval: false,
    ...options,
  })
}

/** Runs `fn` with a pg client on the test database. */
async function withClient (fn, url = DATABASE_URL) {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return await fn(client)
  } finally {
    await client.end()
  }
}

/**
 * Registers, for the file that calls it, an `after` hook that closes `stores` (each within 10 s)
 * and drops `tables`; both arrays may grow while the file runs.
 * @param {any[]} stores @param {string[]} tables
 */
function cleanUpAfter (stores, tables) {
  require('node:test').after(async () => {
    await Promise.allSettled(stores.map((s) => Promise.race([s.close(), new Promise((resolve) => setTimeout(resolve, 10000).unref())])))
    await withClient(async (client) => {
      for (const table of tables) await client.query(`DROP TABLE IF EXISTS "${table}" CASCADE`)
    })
  })
}

/**
 * For the file that calls it: `storeOn(options, table)` makes a store on `table` (a fresh one
 * named after `prefix` by default, created on first use), closed and dropped after the file.
 * @param {string} prefix
 */
function storesOnTables (prefix) {
  /** @type {any[]} */
  const stores = []
  /** @type {string[]} */
  const tables = []
  cleanUpAfter(stores, tables)
  /** @param {Record<string, any>} [options] @param {string} [table] */
  return function storeOn (options = {}, table = uniqueName(prefix)) {
    const store = new PGStore({ conString: DATABASE_URL, tableName: table, createTableIfMissing: true, pruneSessionInterval: false, ...options })
    stores.push(store)
    tables.push(table)
    return store
  }
}

/** A session expiring at `expiresMs` (an hour from now by default), with `extra` fields. */
function sessionWith (extra = {}, expiresMs = Date.now() + 3600000) {
  return { cookie: { expires: new Date(expiresMs).toISOString() }, ...extra }
}

/**
 * A table's rows as stored: sid, sess (as text) and expire, or the `select` list given.
 * @param {string} table @param {string} [where] @param {any[]} [params] @param {string} [select]
 */
async function rawRows (table, where = 'true', params = [], select = 'sid::text AS sid, sess::text AS sess, expire') {
  return withClient(async (c) => (await c.query(`SELECT ${select} FROM "${table}" WHERE ${where}`, params)).rows)
}

/** The unsigned session id in a response's Set-Cookie. @param {any} res */
function cookieSid (res) {
  const cookie = [].concat(res.headers['set-cookie'] || []).find((/** @type {string} */ c) => c.startsWith('connect.sid='))
  return decodeURIComponent(cookie.split(';')[0].split('=')[1]).slice(2).split('.')[0]
}

/** Resolves with [err, value] from a Node-style callback method. */
function callback (fn) {
  return new Promise((resolve) => fn((err, value) => resolve([err, value])))
}

module.exports = { PGStore, DATABASE_URL, uniqueName, makeStore, withClient, callback, cleanUpAfter, storesOnTables, sessionWith, rawRows, cookieSid, session, notTombstone }
