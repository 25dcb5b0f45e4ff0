// The example page: a js-libp2p node per tab finds a relay through the rendezvous
// daemon, reserves a slot on it, registers in a namespace, lists the other members
// live, and chats with them (over WebRTC when it can, through the relay otherwise).
//
// URL: index.html?rdv=<daemon /ws or /wss multiaddr ending in /p2p/ID>&ns=<namespace>
//      [&stun=stun:HOST:PORT] (repeatable; besides the fleet's, from findStunServers())
//      [&webrtc=0] (no WebRTC: every message goes through the relay)
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { identify } from '@libp2p/identify'
import { webRTC } from '@libp2p/webrtc'
import { webSockets } from '@libp2p/websockets'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { liveRendezvous } from 'libp2p-live-rendezvous'
import { handleMessages, sendMessage } from './chat.js'
import { bestConnection, connect, kindOf } from './connections.js'
import { View, shortId } from './view.js'

const RESERVATION_TIMEOUT_MS = 10000
const SEND_TIMEOUT_MS = 5000
// how long after losing its reservation the page asks the daemon for relays again
const RELAY_RETRY_MS = 5000
// how long a message waits for a WebRTC connection being made before taking the relay
const WEBRTC_WAIT_MS = 3000

/** What `promise` resolves to within `ms`, else undefined (a rejection too). */
function orNothing (promise, ms) {
  let timer
  const timeout = new Promise((resolve) => { timer = setTimeout(resolve, ms) })
  return Promise.race([promise.catch(() => undefined), timeout]).finally(() => clearTimeout(timer))
}

function readParameters () {
  const query = new URLSearchParams(location.search)
  const rdv = query.get('rdv')
  if (rdv == null || rdv === '') throw new Error('add ?rdv=<the daemon\'s /ws multiaddr>&ns=<namespace> to the address')
  let server
  try {
    server = multiaddr(rdv)
  } catch (error) {
    throw new Error(`rdv is not a multiaddr: ${error.message}`)
  }
  if (server.getComponents().find((c) => c.name === 'p2p') == null) throw new Error('rdv must end in /p2p/<peer id>')
  const namespace = query.get('ns') || 'rendezvous-example'
  const iceServers = query.getAll('stun').map((urls) => ({ urls }))
  const webrtc = query.get('webrtc') !== '0'
  return { server, namespace, iceServers, webrtc }
}

/** A relay's WebSocket addresses, the secure ones first, each ending in /p2p/<id>. */
function webSocketAddresses (relay) {
  const id = relay.id.toString()
  return relay.multiaddrs
    .map((ma) => ma.toString())
    .filter((text) => /\/(wss|tls\/ws|ws)(\/|$)/.test(text) && !text.includes('/p2p-circuit'))
    .sort((a, b) => Number(/\/(wss|tls)/.test(b)) - Number(/\/(wss|tls)/.test(a)))
    .map((text) => multiaddr(text.includes('/p2p/') ? text : `${text}/p2p/${id}`))
}

function circuitAddress (node) {
  return node.getMultiaddrs().find((ma) => {
    const text = ma.toString()
    return text.includes('/p2p-circuit') && !text.includes('/webrtc')
  })
}

/** Resolves once the node holds a reservation (a /p2p-circuit address of its own). */
function reserved (node, timeoutMs) {
  return new Promise((resolve, reject) => {
    const check = () => {
      const address = circuitAddress(node)
      if (address == null) return
      done()
      resolve(address)
    }
    const timer = setTimeout(() => { done(); reject(new Error('no reservation in time')) }, timeoutMs)
    const done = () => { clearTimeout(timer); node.removeEventListener('self:peer:update', check) }
    node.addEventListener('self:peer:update', check)
    check()
  })
}

async function reserveOnARelay (node, relays, view) {
  const failures = []
  for (const relay of relays) {
    for (const address of webSocketAddresses(relay)) {
      try {
        view.setState('reserving', `reserving a slot on relay ${address}…`)
        await Promise.all([
          reserved(node, RESERVATION_TIMEOUT_MS),
          node.dial(address, { signal: AbortSignal.timeout(RESERVATION_TIMEOUT_MS) })
        ])
        return address
      } catch (error) {
        failures.push(`${address}: ${error.message}`)
      }
    }
  }
  throw new Error(relays.length === 0
    ? 'no relay is registered at the rendezvous daemon'
    : `no relay took a reservation (${failures.join('; ') || 'none has a WebSocket address'})`)
}

async function main (view) {
  const { server, namespace, iceServers, webrtc } = readParameters()
  let fleetStun = [] // the relays' STUN servers (`twistd rendezvous-relay --stun`)
  const node = await createLibp2p({
    start: false,
    addresses: { listen: webrtc ? ['/p2p-circuit', '/webrtc'] : ['/p2p-circuit'] },
    transports: [
      webSockets(),
      // asked for every WebRTC connection: the page's own STUN servers and the fleet's
      ...(webrtc ? [webRTC({ rtcConfiguration: () => ({ iceServers: [...iceServers, ...fleetStun] }) })] : []),
      circuitRelayTransport()
    ],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    // the browser default refuses ws:// and private addresses; a local daemon has both
    connectionGater: { denyDialMultiaddr: () => false },
    services: {
      identify: identify(),
      rendezvous: liveRendezvous({ servers: [server], namespaces: [namespace] })
    }
  })
  globalThis.node = node // for the console
  const rdv = node.services.rendezvous
  view.setSelf(node.peerId, namespace)

  const members = new Map() // id string -> { id, multiaddrs }
  const pending = new Map() // id string -> Promise<Connection>
  const selfId = node.peerId.toString()
  const showConnection = (id) => {
    const connection = bestConnection(node, id)
    view.setConnection(id.toString(), connection == null ? undefined : kindOf(connection))
  }
  // Only the smaller id of two sets up WebRTC, so that two set-ups never cross; the
  // other side uses the relay if it must send before that connection arrives.
  const reach = (member) => {
    const id = member.id.toString()
    const current = bestConnection(node, member.id)
    const initiator = webrtc && selfId < id
    if (current != null && (kindOf(current) !== 'relay' || !initiator)) return Promise.resolve(current)
    if (pending.has(id)) return pending.get(id)
    const onWebrtcFailed = (error, attempt) => console.warn(`WebRTC to ${id} failed (attempt ${attempt}): ${error.message}`)
    const connecting = connect(node, member, { webrtc: initiator, onWebrtcFailed })
      .finally(() => { pending.delete(id); showConnection(member.id) })
    pending.set(id, connecting)
    return connecting
  }

  rdv.addEventListener('register', ({ detail }) => {
    if (detail.namespace !== namespace || detail.id.toString() === selfId) return
    const member = { id: detail.id, multiaddrs: detail.multiaddrs }
    members.set(detail.id.toString(), member)
    view.addMember(detail.id.toString())
    showConnection(detail.id)
    if (webrtc && selfId < detail.id.toString()) reach(member).catch((error) => console.warn(`cannot reach ${detail.id}: ${error.message}`))
  })
  const forget = (id) => {
    members.delete(id.toString())
    view.removeMember(id.toString())
  }
  rdv.addEventListener('unregister', ({ detail }) => { if (detail.namespace === namespace) forget(detail.id) })
  rdv.addEventListener('peer:gone', ({ detail }) => forget(detail))
  rdv.addEventListener('server:lost', ({ detail }) => {
    view.setState('reconnecting', `lost the rendezvous daemon (${detail.reason}); retrying in ${Math.round(detail.retryInMs / 1000)} s…`)
  })
  rdv.addEventListener('error', ({ detail }) => {
    view.setState('error', `the rendezvous daemon refused: ${detail.text} (${detail.status})`)
  })
  node.addEventListener('connection:open', ({ detail }) => showConnection(detail.remotePeer))
  node.addEventListener('connection:close', ({ detail }) => showConnection(detail.remotePeer))

  await handleMessages(node, ({ from, text, connection }) => {
    view.addMessage({ from: from.toString(), text, via: kindOf(connection) })
  })
  // A WebRTC connection can be half made (one side up, the other still waiting): a
  // message it cannot carry in time goes through the relay instead.
  const deliver = async (member, text) => {
    const connection = bestConnection(node, member.id) ??
      await orNothing(reach(member), WEBRTC_WAIT_MS) ??
      await connect(node, member, { webrtc: false })
    try {
      await sendMessage(connection, text, { signal: AbortSignal.timeout(SEND_TIMEOUT_MS) })
      return connection
    } catch (error) {
      if (kindOf(connection) !== 'webrtc') throw error
      console.warn(`the WebRTC connection to ${member.id} failed (${error.message}): sending through the relay`)
      connection.abort(error)
      const relayed = await connect(node, member, { webrtc: false })
      await sendMessage(relayed, text, { signal: AbortSignal.timeout(SEND_TIMEOUT_MS) })
      return relayed
    }
  }
  view.onSend = async (id, text) => {
    const member = members.get(id)
    if (member == null) return
    const meta = view.addMessage({ to: id, text, note: 'sending…' })
    try {
      const connection = await deliver(member, text)
      meta.textContent = `to ${shortId(id)} via ${kindOf(connection)}`
    } catch (error) {
      meta.textContent = `not sent: ${error.message}`
    }
  }

  view.setState('connecting', 'connecting to the rendezvous daemon…')
  let connected
  const serverConnected = new Promise((resolve) => { connected = resolve })
  rdv.addEventListener('server:connected', () => connected(), { once: true })
  await node.start()
  view.setState('finding', 'finding relays…')
  const [relays, stun] = await Promise.all([
    rdv.findRelays(),
    webrtc ? rdv.findStunServers().catch(() => []) : []
  ])
  fleetStun = stun
  const stunText = () => {
    const count = fleetStun.length + iceServers.length
    return !webrtc ? 'WebRTC off' : count > 0 ? `${count} STUN server(s)` : 'no STUN server: WebRTC on host addresses only'
  }
  const reserve = async (relays) => {
    const relay = await reserveOnARelay(node, relays, view)
    view.setRelay(`relay ${relay.toString()} · ${relays.length} relay(s) registered · ${stunText()}`)
  }
  await reserve(relays)
  await serverConnected

  // registered while the daemon's session is open and the reservation holds (the
  // package registers the node's addresses again whenever they change); a lost
  // reservation is made again, on whichever relay the fleet has then
  let recovering = false
  const recover = async () => {
    recovering = true
    while (circuitAddress(node) == null) {
      await new Promise((resolve) => setTimeout(resolve, RELAY_RETRY_MS))
      if (circuitAddress(node) != null) break
      try {
        await reserve(await rdv.findRelays())
      } catch (error) {
        view.setState('reserving', `no relay yet (${error.message}); trying again…`)
      }
    }
    recovering = false
    showRegistration()
  }
  const showRegistration = () => {
    if (rdv.server == null || recovering) return
    if (circuitAddress(node) != null) {
      view.setState('registered', `registered in ${namespace}`)
      return
    }
    view.setState('reserving', 'lost the relay reservation; looking for a relay…')
    recover().catch((error) => view.setState('error', error.message))
  }
  rdv.addEventListener('server:connected', showRegistration)
  node.addEventListener('self:peer:update', showRegistration)
  showRegistration()
}

const view = new View((id, text) => view.onSend?.(id, text))
main(view).catch((error) => {
  console.error(error)
  view.setState('error', error.message)
})
