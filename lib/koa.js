// @ts-check
'use strict'

// The koa-session external store: koa-session 7's get/set/destroy over the same Store class as
// Express (lib/store.js), on an EventEmitter base standing in for express-session's Store. Only
// the expiry differs: it comes from koa-session's maxAge argument (docs/koa.md).

const { EventEmitter } = require('node:events')
const storeClass = require('./store')
const { codedError } = require('./errors')
const { describe, MAX_TTL_SECONDS } = require('./options')

const MAX_AGE_LIMIT_MS = MAX_TTL_SECONDS * 1000

/** What lib/store.js extends in place of express-session's Store (an EventEmitter, nothing more). */
class KoaBase extends EventEmitter {
  // lib/store.js passes its options up, as express-session's Store takes them: EventEmitter must
  // not read them (it would take a `captureRejections` among them).
  constructor () {
    super()
  }
}

/**
 * The expiry koa-session's maxAge asks for, in ms since the epoch; undefined for `'session'` (and
 * no maxAge): the store's `ttl`, by default one day.
 * @param {unknown} maxAge
 */
function expireAtFrom (maxAge) {
  if (maxAge === 'session' || maxAge === undefined) return undefined
  if (typeof maxAge === 'number' && Number.isFinite(maxAge) && Math.abs(maxAge) <= MAX_AGE_LIMIT_MS) return Date.now() + maxAge
  const Kind = typeof maxAge === 'number' ? RangeError : TypeError
  throw codedError('ERR_PG_SESSION_INVALID_ARG', `express-pg-session: koa-session's maxAge must be 'session' or a number of milliseconds within 100 years, got ${describe(maxAge)}`, Kind)
}

/**
 * The koa-session store class on the native class (binding.js).
 * @param {any} NativeStore
 */
module.exports = function koaStoreClass (NativeStore) {
  const PGStore = storeClass(KoaBase, NativeStore)

  class KoaPGStore extends PGStore {
    /** @type {(sess: any) => string | undefined} the session as text without `_expire`; undefined when the serializer throws */ #stringify
    /**
     * With `rolling`, the session each request read (by its Koa context), as text without
     * `_expire`: a set of that same session with `changed: false` only moves the expiry.
     * @type {WeakMap<object, { key: string, text: string }>}
     */
    #read = new WeakMap()

    /** @param {Record<string, any>} [options] the Express store's options (docs/options.md) */
    constructor (options = {}) {
      super(options)
      const serializer = options.serializer || JSON
      this.#stringify = (sess) => {
        const { _expire, ...rest } = sess
        try {
          return serializer.stringify(rest)
        } catch {
          return undefined // the set that follows reports it, coded
        }
      }
    }

    /**
     * koa-session: the live session, or null. With `rolling` a touch moves the row's expiry and
     * not the `_expire` inside the data, so the session read leaves `_expire` out: the row's
     * expiry, which the engine has just checked, decides.
     * @param {string} key
     * @param {any} [_maxAge]
     * @param {{ rolling?: boolean, ctx?: any }} [options]
     * @returns {Promise<any>}
     */
    // @ts-ignore koa-session's signature, not express-session's
    async get (key, _maxAge, { rolling = false, ctx = undefined } = {}) {
      const sess = await super.get(key)
      if (sess && rolling) {
        delete sess._expire
        const text = ctx && typeof ctx === 'object' ? this.#stringify(sess) : undefined
        if (text !== undefined) this.#read.set(ctx, { key, text })
      }
      return sess
    }

    /**
     * koa-session: writes the session to expire `maxAge` ms from now (`'session'`: the `ttl`
     * option, by default one day). With `rolling` and `changed: false`, a session as this request
     * read it only has its expiry moved: a touch, within `touchAfter` like Express's.
     * @param {string} key
     * @param {any} sess
     * @param {any} maxAge
     * @param {{ rolling?: boolean, changed?: boolean, ctx?: any }} [options]
     * @returns {Promise<void>}
     */
    // @ts-ignore koa-session's signature, not express-session's
    async set (key, sess, maxAge, { rolling = false, changed = true, ctx = undefined } = {}) {
      const expireAt = expireAtFrom(maxAge)
      // changed: false also comes with save(), regenerate() and a new maxAge: only the text tells.
      const read = rolling && !changed && ctx && typeof ctx === 'object' ? this.#read.get(ctx) : undefined
      if (read && read.key === key && sess && typeof sess === 'object' && read.text === this.#stringify(sess)) {
        return super.touch(key, sess, undefined, expireAt)
      }
      return super.set(key, sess, undefined, expireAt)
    }

    /**
     * koa-session: destroys the session (a tombstone, unless `tombstones: false`).
     * @param {string} key
     * @param {{ ctx?: any }} [_options]
     * @returns {Promise<void>}
     */
    // @ts-ignore koa-session's signature, not express-session's
    async destroy (key, _options) {
      return super.destroy(key)
    }
  }

  /**
   * `require('express-pg-session/koa')(options)`: a koa-session external store.
   * @param {Record<string, any>} [options]
   */
  function koaStore (options) {
    return new KoaPGStore(options)
  }
  koaStore.KoaPGStore = KoaPGStore
  return koaStore
}
