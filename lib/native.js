// @ts-check
'use strict'

// Loads the native engine (the generated binding.js) for both entries, index.js and koa.js;
// without a binary for this platform, an error that says how to get one.

const { codedError } = require('./errors')

/** @returns {typeof import('../binding')} */
module.exports = function loadBinding () {
  try {
    return require('../binding.js')
  } catch (cause) {
    const platform = `${process.platform}-${process.arch}`
    throw codedError(
      'ERR_PG_SESSION_NO_BINARY',
      `express-pg-session: no native binary for ${platform}. Looked for the package ` +
      `express-pg-session-${platform}(-gnu|-musl|-msvc) and a local express-pg-session.${platform}*.node. ` +
      'Reinstall without --no-optional, or build from source: install Rust (https://rustup.rs), ' +
      'then run `npm run build` in the package directory.',
      Error,
      cause
    )
  }
}
