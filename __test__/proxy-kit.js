'use strict'

// Network faults for the bound tests: a TCP proxy that can stall (every byte held, no socket
// closed, like a partition or a hung host) and a server that accepts connections and never answers.

const net = require('node:net')

/**
 * A TCP proxy on 127.0.0.1 in front of `targetPort`.
 *
 * `stall()` stops forwarding in both directions without closing anything: bytes (and a side's
 * end of stream) are held in order and delivered on `resume()`; connections accepted during the
 * stall stay silent (the upstream side is opened only on `resume()`). `close()` destroys every
 * socket, which is what frees calls still waiting on the proxy.
 * @param {number} targetPort
 * @param {string} [targetHost]
 */
async function startProxy (targetPort, targetHost = '127.0.0.1') {
  let stalled = false
  /** @type {Set<ReturnType<typeof makePair>>} */
  const pairs = new Set()

  function makePair (/** @type {net.Socket} */ client) {
    /** @type {net.Socket | null} */
    let upstream = null
    // Held while stalled: Buffers, or null for "end of stream".
    /** @type {(Buffer | null)[]} */
    const toUpstream = []
    /** @type {(Buffer | null)[]} */
    const toClient = []
    let dead = false
    // Held on its own (`stallOpen`): this connection is black-holed while new ones pass.
    let held = false
    const pair = {
      hold () { held = true },
      client,
      get upstream () { return upstream },
      open () {
        if (upstream || dead) return
        upstream = net.connect(targetPort, targetHost)
        upstream.setNoDelay(true)
        upstream.on('error', () => pair.destroy())
        upstream.on('close', () => { if (!stalled && !held) pair.destroy() })
        upstream.on('data', (chunk) => pipe(toClient, client, chunk))
        upstream.on('end', () => pipe(toClient, client, null))
        pair.flush()
      },
      flush () {
        held = false
        if (dead) return
        if (upstream) drain(toUpstream, upstream)
        drain(toClient, client)
      },
      /** Delivers what is held, then closes both sides gracefully. */
      finish () {
        if (dead) return
        pair.flush()
        dead = true
        pairs.delete(pair)
        client.end()
        if (upstream) upstream.end()
      },
      destroy () {
        if (dead) return
        dead = true
        pairs.delete(pair)
        client.destroy()
        if (upstream) upstream.destroy()
      },
    }
    function pipe (queue, socket, chunk) {
      if (stalled || held || queue.length > 0) {
        queue.push(chunk)
        return
      }
      send(socket, chunk)
    }
    function drain (queue, socket) {
      while (queue.length > 0) send(socket, queue.shift())
    }
    function send (socket, chunk) {
      if (socket.destroyed || socket.writableEnded) return
      if (chunk === null) socket.end()
      else socket.write(chunk)
    }
    client.setNoDelay(true)
    client.on('error', () => pair.destroy())
    client.on('close', () => { if (!stalled && !held) pair.destroy() })
    client.on('data', (chunk) => {
      if (!upstream) toUpstream.push(chunk)
      else pipe(toUpstream, upstream, chunk)
    })
    client.on('end', () => {
      if (!upstream) toUpstream.push(null)
      else pipe(toUpstream, upstream, null)
    })
    return pair
  }

  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    const pair = makePair(client)
    pairs.add(pair)
    if (!stalled) pair.open()
  })
  const port = await listenLocal(server)
  return {
    port,
    get stalled () { return stalled },
    /** Connections currently proxied (or accepted and held). */
    get connections () { return pairs.size },
    stall () { stalled = true },
    /** Stalls the connections open now (bytes held, nothing closed); later ones pass. */
    stallOpen () {
      for (const pair of pairs) pair.hold()
    },
    resume () {
      stalled = false
      for (const pair of Array.from(pairs)) {
        // A side that closed during the stall is closed now, as a healed network would show it:
        // what it held for the other side is delivered first (bytes already sent still arrive).
        if (pair.client.destroyed || (pair.upstream && pair.upstream.destroyed)) {
          pair.finish()
          continue
        }
        if (!pair.upstream) pair.open()
        else pair.flush()
      }
    },
    async close () {
      stalled = false
      for (const pair of Array.from(pairs)) pair.destroy()
      await new Promise((resolve) => server.close(() => resolve(undefined)))
    },
  }
}

/**
 * A server that accepts TCP connections and never says a word (a hung host, a black-holing firewall).
 * `close()` destroys the accepted sockets, so later connection attempts are refused.
 */
async function startSilentServer () {
  const sockets = new Set()
  const server = net.createServer((socket) => {
    sockets.add(socket)
    socket.on('error', () => {})
    socket.on('close', () => sockets.delete(socket))
  })
  const port = await listenLocal(server)
  return {
    port,
    get connections () { return sockets.size },
    async close () {
      for (const s of sockets) s.destroy()
      await new Promise((resolve) => server.close(() => resolve(undefined)))
    },
  }
}

/**
 * Listens on a free loopback port.
 * @param {net.Server} server
 * @returns {Promise<number>} the port
 */
async function listenLocal (server) {
  await new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve(undefined))
  })
  return /** @type {net.AddressInfo} */ (server.address()).port
}

module.exports = { startProxy, startSilentServer }
