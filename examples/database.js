'use strict'

// Where the examples keep their sessions: DATABASE_URL when set, otherwise a throw-away
// embedded PostgreSQL (the same one the tests use), removed again when the example stops.

const { startServer } = require('../__test__/pg-server')

/** @returns {Promise<{ url: string, stop(): Promise<void>, embedded: boolean }>} */
async function database () {
  if (process.env.DATABASE_URL) return { url: process.env.DATABASE_URL, async stop () {}, embedded: false }
  console.log('DATABASE_URL is not set: starting an embedded PostgreSQL (deleted when this stops)…')
  const server = await startServer()
  return { url: server.url, stop: () => server.destroy(), embedded: true }
}

/**
 * Stops cleanly on Ctrl-C or SIGTERM: the HTTP server, then the store, then the database.
 * @param {Array<() => Promise<unknown> | unknown>} steps
 */
function closeOnSignal (steps) {
  let closing = false
  const close = async () => {
    if (closing) return
    closing = true
    for (const step of steps) {
      try { await step() } catch (err) { console.error(err) }
    }
    process.exit(0)
  }
  process.once('SIGINT', close)
  process.once('SIGTERM', close)
}

module.exports = { database, closeOnSignal }
