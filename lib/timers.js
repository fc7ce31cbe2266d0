// @ts-check
'use strict'

// The scheduling the store relies on, out of reach of an app's fake timers (jest, sinon,
// node:test `mock.timers` replace the globals, and node:test also `node:timers`): the flush of
// each turn's calls goes through a MessageChannel, and the store's own timers are node:timers'
// functions as they were when this module loaded. Expiry arithmetic keeps the app's `Date.now`.

const timers = require('node:timers')
const { MessageChannel } = require('node:worker_threads')

const { setTimeout, clearTimeout } = timers
const nextTick = process.nextTick

/** @type {(() => void)[]} what runs after this turn */
const pending = []
let posted = false
const { port1, port2 } = new MessageChannel()
port1.on('message', () => {
  posted = false
  for (const fn of pending.splice(0)) {
    try {
      fn()
    } catch (err) {
      nextTick(() => { throw err })
    }
  }
})
// The port never holds the process open: a call in flight does (the native relay).
port1.unref()

/**
 * Runs `fn` once the current turn's callbacks have run, like setImmediate: one message to
 * ourselves per turn, which no timer fake intercepts.
 * @param {() => void} fn
 */
function afterTurn (fn) {
  pending.push(fn)
  if (posted) return
  posted = true
  port2.postMessage(null)
}

module.exports = { setTimeout, clearTimeout, nextTick, afterTurn }
