// @ts-check
'use strict'

// The call bookkeeping of the native fast path (get, set, touch, destroy, clear): an id per
// call in flight, the native answers turned back into each caller's callback or promise.

const { fromNative } = require('./errors')
const { nextTick, afterTurn } = require('./timers')

// Answers delivered per turn of the event loop at most: 100k answers at once would block it for
// a second; the rest follow on the next turns, in order.
const DELIVER_SLICE = 8192

/**
 * Callback or promise: with a callback it is called once, on a later tick; without one the
 * promise is returned, and a rejection nobody awaits is never an unhandled rejection.
 * @template T
 * @param {Promise<T>} promise
 * @param {unknown} cb
 * @returns {Promise<T> | undefined}
 */
function settle (promise, cb) {
  if (typeof cb === 'function') {
    promise.then((value) => nextTick(cb, null, value), (err) => nextTick(cb, err))
    return undefined
  }
  promise.catch(() => {})
  return promise
}

const MAX_CALL_ID = 0x7fffffff

/** @typedef {(err: Error | null, value?: any) => void} Finish */

/**
 * The calls in flight, by id. One table serves every store of the process, so the native side
 * holds no reference to a store and an unused store can be garbage collected.
 */
class CallTable {
  /** @param {number} [maxId] the id after which ids start again at 1 */
  constructor (maxId = MAX_CALL_ID) {
    this.maxId = maxId
    this.lastId = 0
    /** @type {Map<number, Finish | { done: Finish }>} */
    this.inFlight = new Map()
    /** @type {any[][]} answers not yet delivered, oldest first */
    this.backlog = []
    this.backlogAt = 0
  }

  /**
   * Registers what to do with a call's answer (a function, or an object whose `done` method
   * takes it: the store's one object per call); returns the id to send with it. Ids wrap to 1
   * after `maxId`, skipping any still in flight: an id shared by two calls would hand one
   * caller another's session.
   * @param {Finish | { done: Finish }} finish
   */
  track (finish) {
    if (this.inFlight.size >= this.maxId) throw new RangeError('express-pg-session: too many calls in flight')
    do {
      this.lastId = this.lastId >= this.maxId ? 1 : this.lastId + 1
    } while (this.inFlight.has(this.lastId))
    this.inFlight.set(this.lastId, finish)
    return this.lastId
  }

  /** @param {number} id a call that will not be answered (its start threw) */
  forget (id) {
    this.inFlight.delete(id)
  }

  /**
   * Called by the native store with the answers that are ready: `[id, value, …]`, a failed
   * call's id negated and its value the coded message. Must never throw: a throw here would
   * lose the answers after it.
   * @param {any[]} answers
   */
  deliver (answers) {
    if (this.backlog.length > 0 || answers.length > DELIVER_SLICE * 2) {
      this.backlog.push(answers)
      if (this.backlog.length === 1) this.drain()
      return
    }
    this.settle(answers, 0, answers.length)
  }

  /**
   * The answer of a call the shim answers itself (a skipped touch with nothing pending): now,
   * unless answers wait in the backlog, which it then goes behind.
   * @param {number} id @param {any} value
   */
  answerNow (id, value) {
    if (this.backlog.length > 0) return this.deliver([id, value])
    this.settle1(id, null, value)
  }

  /** Delivers one slice of the backlog, then the rest on later turns. */
  drain () {
    const answers = this.backlog[0]
    const end = Math.min(answers.length, this.backlogAt + DELIVER_SLICE * 2)
    const from = this.backlogAt
    if (end >= answers.length) {
      this.backlog.shift()
      this.backlogAt = 0
    } else {
      this.backlogAt = end
    }
    if (this.backlog.length > 0) afterTurn(() => this.drain())
    this.settle(answers, from, end)
  }

  /** @param {any[]} answers @param {number} from @param {number} end */
  settle (answers, from, end) {
    for (let i = from; i < end; i += 2) {
      const failed = answers[i] < 0
      const id = failed ? -answers[i] : answers[i]
      this.settle1(id, failed ? answers[i + 1] : null, answers[i + 1])
    }
  }

  /**
   * One answer to its call (once: the call leaves the table).
   * @param {number} id @param {string | null} failure the coded message of a failed call
   * @param {any} value
   */
  settle1 (id, failure, value) {
    const call = this.inFlight.get(id)
    if (call === undefined) return
    this.inFlight.delete(id)
    try {
      const err = failure === null ? null : fromNative(new Error(failure))
      if (typeof call === 'function') call(err, value)
      else call.done(err, value)
    } catch (err) {
      nextTick(() => { throw err })
    }
  }
}

module.exports = { CallTable, calls: new CallTable(), settle }
