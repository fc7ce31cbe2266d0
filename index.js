// @ts-check
'use strict'

// express-pg-session's entry: `require('express-pg-session')(session)` returns the store class.
// The shim is in lib/ (options.js, calls.js, store.js, errors.js); the engine is Rust (src/),
// loaded through the generated binding.js (lib/native.js). Koa's entry is koa.js.

const { codedError } = require('./lib/errors')
const storeClass = require('./lib/store')

const { NativeStore } = require('./lib/native')()

/**
 * @param {any} session express-session, or Express 3 / Connect (which keep it at `session.session`)
 */
module.exports = function expressPgSession (session) {
  const Store = (session && session.Store) || (session && session.session && session.session.Store)
  if (typeof Store !== 'function') {
    throw codedError('ERR_PG_SESSION_INVALID_ARG', 'express-pg-session: call the factory with express-session: require(\'express-pg-session\')(session)', TypeError)
  }
  return storeClass(Store, NativeStore)
}
