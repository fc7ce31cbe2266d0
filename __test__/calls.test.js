'use strict'

// The JS call bookkeeping (lib/calls.js): ids of calls in flight, wrap-around, delivery.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { CallTable } = require('../lib/calls')

test('call ids wrap to 1 after the largest id, skipping ids still in flight', () => {
  // A small wrap point walks the same code the real one (2³¹ − 1) does.
  const table = new CallTable(5)
  const answered = []
  const ids = []
  for (let i = 0; i < 5; i++) ids.push(table.track((err, value) => answered.push([i, value])))
  assert.deepEqual(ids, [1, 2, 3, 4, 5])
  // Calls 1, 3 and 5 are answered; 2 and 4 stay in flight while the ids wrap.
  table.deliver([1, 'a', 3, 'c', 5, 'e'])
  const next = [table.track(() => {}), table.track(() => {}), table.track(() => {})]
  assert.deepEqual(next, [1, 3, 5], 'an id still in flight was handed out again')
  // The answer for 2 reaches the call that owns id 2, not a newer one.
  table.deliver([2, 'b'])
  assert.deepEqual(answered, [[0, 'a'], [2, 'c'], [4, 'e'], [1, 'b']])
  assert.equal(table.track(() => {}), 2)
  assert.throws(() => table.track(() => {}), RangeError, 'a full table must refuse, not loop forever')
})

test('a failed answer reaches its call as a coded Error', () => {
  const table = new CallTable()
  let got
  const id = table.track((err) => { got = err })
  table.deliver([-id, 'ERR_PG_SESSION_TIMEOUT: no answer'])
  assert.equal(got.code, 'ERR_PG_SESSION_TIMEOUT')
  assert.equal(got.message, 'no answer')
  assert.equal(table.inFlight.size, 0)
})
