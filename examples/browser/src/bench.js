// A page for bench/browser_membership.py, not part of the chat: one js-libp2p node in
// one role, times taken with performance.timeOrigin + performance.now() (one clock for
// every page of the machine) and handed to the driver through `benchReport`, a function
// the driver exposes (playwright's exposeFunction).
//
// URL: bench.html?rdv=<daemon /ws multiaddr ending in /p2p/ID>&ns=<namespace>&role=ROLE
//   role=observer  follows ns: reports every `peer` and `peer:gone` event
//   role=poller    follows nothing: DISCOVER ns every `interval` ms (default 10000),
//                  websocket-star style, reports each answer
//   role=member    reserves on a relay of the fleet and registers in ns (follows it, as
//                  the chat page does); reports when its REGISTER is sent; answers
//                  messages and sends them (globalThis.bench.send)
//   [&webrtc=1]    member: listen on /webrtc too, so others can reach it over WebRTC
// <body data-state> is `ready` once the role is in place (`error` with data-error).
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { identify } from '@libp2p/identify'
import { webRTC } from '@libp2p/webrtc'
import { webSockets } from '@libp2p/websockets'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { FrameDecoder, MessageType, PROTOCOL, decodeMessage, liveRendezvous } from 'libp2p-live-rendezvous'

const MESSAGE_PROTOCOL = '/rendezvous-bench/message/1.0.0'
const DIAL_TIMEOUT_MS = 10000
const now = () => performance.timeOrigin + performance.now()
const report = (event) => { globalThis.benchReport?.(event) }
const encoder = new TextEncoder()
const decoder = new TextDecoder()

const query = new URLSearchParams(location.search)
const server = multiaddr(query.get('rdv'))
const namespace = query.get('ns') ?? 'bench'
const role = query.get('role') ?? 'member'
const webrtc = query.get('webrtc') === '1'
const interval = Number(query.get('interval') ?? 10000)

/** 'webrtc', 'relay' or 'direct', as the chat page tells them. */
function kindOf (connection) {
  const address = connection.remoteAddr.toString()
  if (address.includes('/webrtc')) return 'webrtc'
  if (address.includes('/p2p-circuit') || connection.limits != null) return 'relay'
  return 'direct'
}

/**
 * liveRendezvous(init), with `onRegister(time)` called just before the service writes
 * its first REGISTER in `namespace`: its session stream's send is watched.
 */
function watchedRendezvous (init, onRegister) {
  const factory = liveRendezvous(init)
  let seen = false
  const watch = (stream) => {
    const send = stream.send.bind(stream)
    const frames = new FrameDecoder()
    stream.send = (data) => {
      const t = now()
      if (!seen) {
        for (const bytes of frames.push(data instanceof Uint8Array ? data : data.subarray())) {
          const message = decodeMessage(bytes)
          if (message.type === MessageType.REGISTER && message.register?.some((e) => e.ns === namespace)) {
            seen = true
            onRegister(t)
          }
        }
      }
      return send(data)
    }
    return stream
  }
  return (components) => {
    const cm = components.connectionManager
    const connectionManager = {
      openConnection: async (...args) => {
        const connection = await cm.openConnection(...args)
        const newStream = connection.newStream
        if (!connection.benchWatched) {
          connection.benchWatched = true
          connection.newStream = async function (protocols, options) {
            const stream = await newStream.call(this, protocols, options)
            return [protocols].flat().includes(PROTOCOL) ? watch(stream) : stream
          }
        }
        return connection
      }
    }
    return factory(new Proxy(components, {
      get: (target, key) => key === 'connectionManager' ? connectionManager : target[key]
    }))
  }
}

/** Resolves once the node has a /p2p-circuit address of its own (a reservation). */
function reserved (node) {
  return new Promise((resolve) => {
    const check = () => {
      if (node.getMultiaddrs().some((ma) => ma.toString().includes('/p2p-circuit'))) {
        node.removeEventListener('self:peer:update', check)
        resolve()
      }
    }
    node.addEventListener('self:peer:update', check)
    check()
  })
}

async function start () {
  const member = role === 'member'
  let registered
  const registerSent = new Promise((resolve) => { registered = resolve })
  const init = { servers: [server], namespaces: member || role === 'observer' ? [namespace] : [] }
  const node = await createLibp2p({
    start: false,
    addresses: { listen: member ? (webrtc ? ['/p2p-circuit', '/webrtc'] : ['/p2p-circuit']) : [] },
    transports: [
      webSockets(),
      ...(webrtc ? [webRTC({ rtcConfiguration: { iceServers: [] } })] : []),
      circuitRelayTransport()
    ],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionGater: { denyDialMultiaddr: () => false },
    services: {
      identify: identify(),
      rendezvous: member ? watchedRendezvous(init, (t) => registered(t)) : liveRendezvous(init)
    }
  })
  const rdv = node.services.rendezvous
  const id = node.peerId.toString()
  document.body.dataset.selfId = id
  globalThis.node = node

  if (role === 'observer') {
    rdv.addEventListener('peer', ({ detail }) => report({ kind: 'peer', id: detail.id.toString(), t: now() }))
    rdv.addEventListener('peer:gone', ({ detail }) => report({ kind: 'gone', id: detail.toString(), t: now() }))
  }
  if (member) {
    await node.handle(MESSAGE_PROTOCOL, async (stream, connection) => {
      const chunks = []
      for await (const chunk of stream) chunks.push(chunk.subarray())
      const t = now()
      await stream.close().catch(() => {})
      const text = decoder.decode(chunks.length === 1 ? chunks[0] : new Uint8Array(chunks.flatMap((c) => [...c])))
      report({ kind: 'message', to: id, from: connection.remotePeer.toString(), text, via: kindOf(connection), t })
    }, { runOnLimitedConnection: true })
  }
  const connected = new Promise((resolve) => rdv.addEventListener('server:connected', resolve, { once: true }))
  await node.start()
  await connected
  // the daemon answers in order: once this is answered, the RENDEZVOUS is in place
  await rdv.discover(namespace, { limit: 1 })

  if (role === 'poller') {
    // a random phase, then every `interval` ms on a fixed schedule
    const first = now() + Math.random() * interval
    const poll = async (k) => {
      const at = first + k * interval
      setTimeout(() => poll(k + 1), Math.max(0, at + interval - now()))
      const sent = now()
      try {
        const peers = await rdv.discover(namespace, { limit: 1000 })
        report({ kind: 'poll', sent, t: now(), ids: peers.map((p) => p.id.toString()) })
      } catch (error) {
        report({ kind: 'poll-failed', sent, t: now(), error: error.message })
      }
    }
    setTimeout(() => poll(0), first - now())
  }
  if (member) {
    const relays = await rdv.findRelays()
    const relay = relays[0]
    if (relay == null) throw new Error('no relay is registered')
    const addresses = relay.multiaddrs.filter((ma) => ma.toString().includes('/ws'))
      .map((ma) => ma.encapsulate(`/p2p/${relay.id}`))
    await Promise.all([reserved(node), node.dial(addresses, { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) })])
    report({ kind: 'register', id, t: await registerSent })
  }
  globalThis.bench = { id, send: (to, text, via) => send(node, rdv, to, text, via) }
}

/**
 * Sends `text` to member `to` over a connection of kind `via` ('relay' or 'webrtc'),
 * dialling one if there is none; resolves to the times taken on this side.
 */
async function send (node, rdv, to, text, via) {
  const t0 = now()
  const peer = rdv.members(namespace).find((m) => m.id.toString() === to)
  if (peer == null) throw new Error(`${to} is not a member`)
  let connection = node.getConnections(peer.id).find((c) => c.status === 'open' && kindOf(c) === via)
  const dialled = connection == null
  if (dialled) {
    const addresses = peer.multiaddrs.map((ma) => ma.encapsulate(`/p2p/${to}`)).filter((ma) => {
      const text = ma.toString()
      return via === 'webrtc' ? text.includes('/p2p-circuit/webrtc') : text.includes('/p2p-circuit') && !text.includes('/webrtc')
    })
    if (addresses.length === 0) throw new Error(`${to} has no ${via} address`)
    connection = await node.dial(addresses, { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS), runOnLimitedConnection: true })
  }
  const tConnected = now()
  const stream = await connection.newStream(MESSAGE_PROTOCOL, { runOnLimitedConnection: true, signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) })
  stream.send(encoder.encode(text))
  await stream.close()
  return { t0, tConnected, tSent: now(), dialled, via: kindOf(connection) }
}

start().then(() => {
  document.body.dataset.state = 'ready'
}, (error) => {
  console.error(error)
  document.body.dataset.error = error.message
  document.body.dataset.state = 'error'
})
