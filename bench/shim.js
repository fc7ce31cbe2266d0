'use strict'

// `node bench/shim.js [dir] [requests] [write|read]`: the JS shim alone (lib/store.js of `dir`, this
// checkout by default) over a fake native store that answers every call on the next turn: 50 callers,
// each a get then a set (write) or a touch, skipped within its bound (read), as express-session makes
// them. Prints CPU µs per request; for a repeatable figure run it under callgrind at two sizes and take
// the difference (start-up cancels):
//   valgrind --tool=callgrind --smc-check=all-non-file node bench/shim.js . 50000 write   (and 100000)

const path = require('node:path')
const dir = path.resolve(process.argv[2] || path.join(__dirname, '..'))
const N = Number(process.argv[3] || 200000)
const route = process.argv[4] || 'write'
const session = require('express-session')
const TEXT = JSON.stringify({ cookie: { originalMaxAge: 86400000, expires: new Date(Date.now() + 86400000).toISOString(), httpOnly: true, path: '/' }, userId: 'user-1', roles: ['reader'], counter: 0 })
class FakeNative {
  constructor (_options, deliver) {
    this.deliver = deliver
    this.out = []
    this.posted = false
  }

  post () {
    if (this.posted) return
    this.posted = true
    setImmediate(() => {
      this.posted = false
      const answers = this.out
      this.out = []
      this.deliver(answers)
    })
  }

  startGet (id) { this.out.push(id, TEXT) }
  startSet (id) { this.out.push(id, null) }
  startTouch (id) { this.out.push(id, true) }
  startSkippedTouch () { return false }
  startDestroy (id) { this.out.push(id, null) }
  flush () { this.post() }
  close () { return Promise.resolve() }
}
const PGStore = require(path.join(dir, 'lib', 'store.js'))(session.Store, FakeNative)
const store = new PGStore({ conString: 'postgres://x@127.0.0.1/x', pruneSessionInterval: false })
const CONC = 50
let done = 0
let started = 0
const t0 = process.cpuUsage()
function request (i) {
  const sid = 'bench-session-' + (i % 1000)
  store.get(sid, (err, sess) => {
    if (err) throw err
    if (route === 'write') {
      sess.counter++
      store.set(sid, sess, (err) => { if (err) throw err; next() })
    } else {
      store.touch(sid, sess, (err) => { if (err) throw err; next() })
    }
  })
}
function next () {
  done++
  if (started < N) request(started++)
  else if (done === N) {
    const c = process.cpuUsage(t0)
    clearInterval(keep); console.log(`${dir} ${route}: ${((c.user + c.system) / N).toFixed(3)} µs/request (${N})`)
  }
}
const keep = setInterval(() => {}, 1000)
for (let i = 0; i < CONC; i++) request(started++)
