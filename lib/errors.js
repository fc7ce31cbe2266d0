// @ts-check
'use strict'

// Coded errors: every failure the store reports is an Error with a stable `code`.

/**
 * An Error with a stable `code`.
 * @param {string} code
 * @param {string} message
 * @param {ErrorConstructor} [Kind]
 * @param {unknown} [cause]
 */
function codedError (code, message, Kind = Error, cause) {
  const err = cause === undefined ? new Kind(message) : new Kind(message, { cause })
  // @ts-ignore
  err.code = code
  return err
}

/**
 * Native rejections carry their code as the message's first word (napi only lets
 * async calls reject with its own status); move it to `code`.
 * @param {any} err
 * @returns {Error}
 */
function fromNative (err) {
  if (!(err instanceof Error)) {
    return codedError('ERR_PG_SESSION_UNKNOWN', `express-pg-session: ${String(err)}`)
  }
  const match = /^([0-9A-Z_]{5,}): ([\s\S]*)$/.exec(err.message)
  if (!match || ('code' in err && err.code !== 'GenericFailure')) return err
  // Bad options are the caller's mistake, reported as pg reports them: a TypeError.
  const coded = codedError(match[1], match[2], match[1] === 'ERR_PG_SESSION_INVALID_OPTION' ? TypeError : Error)
  // @ts-ignore
  if (/^[0-9A-Z]{5}$/.test(match[1])) coded.sqlState = match[1]
  // connect-pg-simple apps test `err.code === '42P01'` (undefined_table): keep it findable.
  // @ts-ignore
  if (match[1] === 'ERR_PG_SESSION_NO_TABLE') coded.sqlState = '42P01'
  return coded
}

/**
 * A bad option: a TypeError (wrong type), or a RangeError (pass it as `Kind`) for a value out of
 * range. `got`, when given, is what was passed, already described (see lib/options.js `describe`).
 * @param {string} option @param {string} expected
 * @param {{ got?: string, Kind?: ErrorConstructor }} [detail]
 */
function badOption (option, expected, { got, Kind = TypeError } = {}) {
  const tail = got === undefined ? '' : `, got ${got}`
  return codedError('ERR_PG_SESSION_INVALID_OPTION', `express-pg-session: option \`${option}\` must be ${expected}${tail}`, Kind)
}

module.exports = { codedError, fromNative, badOption }
