// @ts-check
'use strict'

// express-pg-session's entry: `require('express-pg-session')(session)` returns the store class.
// The shim is in lib/ (options.js, calls.js, store.js, errors.js); the engine is Rust (src/),
// loaded through the generated binding.js.

const { codedError } = require('./lib/errors')
const storeClass = require('./lib/store')

const { NativeStore } = loadBinding()

function loadBinding () {
  try {
    return require('./binding.js')
  } catch (cause) {
    const platform = `${process.platform}-${process.arch}`
    const err = new Error(
      `express-pg-session: no native binary for ${platform}. Looked for the package ` +
      `express-pg-session-${platform}(-gnu|-musl|-msvc) and a local express-pg-session.${platform}*.node. ` +
      'Reinstall without --no-optional, or build from source: install Rust (https://rustup.rs), ' +
      'then run `npm run build` in the package directory.',
      { cause }
    )
    // @ts-ignore
    err.code = 'ERR_PG_SESSION_NO_BINARY'
    throw err
  }
}

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
