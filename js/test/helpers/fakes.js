// Fake libp2p components, streams and timers: the service driven byte by byte, with no
// network and no real time.
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { decodeMessage, encodeFrame, FrameDecoder, LiveRendezvous } from 'libp2p-live-rendezvous'
import { Recorder, SERVICE_EVENTS } from './recorder.js'

export const IDS = {
  self: '12D3KooWJbBEmMXT3hiCjYwtnxFByvRw1iEkvp6PDcSqy7GrQszM',
  p: '12D3KooWGKi1gdaPnFPBXKk41P5uJfYdzLJdkngDUcePqpxG7KG1',
  q: '12D3KooWHFQ1dVjxi1YdTFkoxR5kDgxPZuPGncY3gM2yp2XfFaRV',
  r: 'QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N',
  serverA: '12D3KooWMRYp3pzEc9RLVfJYQ6ZwVvYdXQuTE41WHh76MZ2uHKHA',
  serverB: '12D3KooWSu9mgYLSD2sj4NcEVN134uoS578842dyQbo5bLnD8EJV'
}
export const SERVER_A = `/ip4/127.0.0.1/tcp/4002/p2p/${IDS.serverA}`
export const SERVER_B = `/ip4/127.0.0.1/tcp/4003/ws/p2p/${IDS.serverB}`

/** setTimeout/clearTimeout that only fire when told. */
export class FakeTimers {
  constructor () {
    this.time = 0
    this.nextHandle = 1
    /** @type {Map<number, { fn: () => void, at: number, ms: number }>} */
    this.pending = new Map()
    /** @type {number[]} every delay asked for, in order */
    this.delays = []
  }

  /** @param {() => void} fn @param {number} ms */
  setTimeout (fn, ms) {
    const handle = this.nextHandle++
    this.pending.set(handle, { fn, at: this.time + ms, ms })
    this.delays.push(ms)
    return handle
  }

  /** @param {number} handle */
  clearTimeout (handle) { this.pending.delete(handle) }

  /** The fake clock, in ms: it moves only when a timer fires. */
  now () { return this.time }

  /** Fires the earliest timer, advancing the clock to it; false when none is pending. */
  fireNext () {
    let first
    for (const [handle, t] of this.pending) if (first == null || t.at < first[1].at) first = [handle, t]
    if (first == null) return false
    this.pending.delete(/** @type {number} */ (first[0]))
    this.time = first[1].at
    first[1].fn()
    return true
  }
}

/** A libp2p Stream as the service uses it: send/abort/close and its events. */
export class FakeStream extends EventTarget {
  /** @param {string} protocol */
  constructor (protocol) {
    super()
    this.protocol = protocol
    this.status = 'open'
    this.decoder = new FrameDecoder()
    /** @type {import('libp2p-live-rendezvous').WireMessage[]} what the service sent */
    this.sent = []
    /** @type {Error | undefined} */
    this.abortedWith = undefined
  }

  /** @param {Uint8Array} data */
  send (data) {
    if (this.status !== 'open') throw new Error(`stream is ${this.status}`)
    for (const f of this.decoder.push(data)) this.sent.push(decodeMessage(f))
    return true
  }

  /** @param {Error} err */
  abort (err) {
    if (this.status !== 'open') return
    this.status = 'aborted'
    this.abortedWith = err
    this.dispatchEvent(Object.assign(new Event('close'), { error: err, local: true }))
  }

  async close () {
    this.status = 'closed'
    this.dispatchEvent(new Event('close'))
  }

  /** The daemon sends bytes. @param {Uint8Array} bytes */
  receive (bytes) {
    this.dispatchEvent(Object.assign(new Event('message'), { data: bytes }))
  }

  /** The daemon sends messages. @param {...import('libp2p-live-rendezvous').WireMessage} messages */
  push (...messages) {
    for (const m of messages) this.receive(encodeFrame(m))
  }

  /** The connection dies. @param {string} [why] */
  die (why = 'connection reset') {
    this.status = 'reset'
    this.dispatchEvent(Object.assign(new Event('close'), { error: new Error(why) }))
  }

  /** The last message sent of a type. @param {number} type */
  lastSent (type) {
    return this.sent.findLast((m) => m.type === type)
  }
}

/**
 * libp2p components enough for the service: dials answered by a script.
 */
export class FakeComponents {
  constructor () {
    this.peerId = peerIdFromString(IDS.self)
    this.events = new EventTarget()
    /** @type {import('@multiformats/multiaddr').Multiaddr[]} */
    this.addresses = [multiaddr(`/ip4/127.0.0.1/tcp/5000/p2p/${IDS.self}`), multiaddr(`/ip4/127.0.0.1/tcp/5001/ws/p2p/${IDS.self}`)]
    /** @type {Array<{ target: string, force: boolean }>} */
    this.dials = []
    /** @type {FakeStream[]} */
    this.streams = []
    /** @type {Array<(target: string) => { limits?: object } | Error | undefined>} */
    this.script = []
    /** @type {((target: string) => void) | undefined} */
    this.onDial = undefined
    const self = this
    this.addressManager = { getAddresses: () => [...self.addresses] }
    /** @type {Array<[string, unknown]>} */
    this.merged = []
    this.peerStore = {
      /** @param {import('@libp2p/interface').PeerId} id @param {unknown} data */
      async merge (id, data) { self.merged.push([id.toString(), data]) }
    }
    this.connectionManager = {
      /** @param {import('@multiformats/multiaddr').Multiaddr} target @param {{ force?: boolean }} [options] */
      async openConnection (target, options = {}) {
        self.dials.push({ target: target.toString(), force: options.force === true })
        const step = self.script.shift()?.(target.toString())
        if (step instanceof Error) throw step
        return {
          remotePeer: peerIdFromString(target.getComponents().findLast((c) => c.name === 'p2p')?.value ?? ''),
          limits: step?.limits,
          direct: step?.limits == null,
          remoteAddr: target,
          /** @param {string} protocol */
          async newStream (protocol) {
            const stream = new FakeStream(protocol)
            self.streams.push(stream)
            return stream
          }
        }
      }
    }
  }

  /** Addresses changed. @param {string[]} addrs */
  setAddresses (addrs) {
    this.addresses = addrs.map((a) => multiaddr(a))
    this.events.dispatchEvent(new CustomEvent('self:peer:update', { detail: {} }))
  }

  get stream () { return this.streams[this.streams.length - 1] }
}

/**
 * A started service over fake components and timers, with a recorder of its events.
 *
 * @param {Partial<import('libp2p-live-rendezvous').LiveRendezvousInit>} [init]
 */
export function fakeService (init = {}) {
  const components = new FakeComponents()
  const timers = new FakeTimers()
  const service = new LiveRendezvous(/** @type {any} */ (components), {
    servers: [SERVER_A, SERVER_B],
    namespaces: ['app'],
    timers,
    backoff: { random: () => 0.5 },
    ...init
  })
  const events = new Recorder(service, SERVICE_EVENTS)
  service.start()
  return { components, timers, service, events }
}

/** Lets pending promise callbacks (the fake dial) run. */
export const settle = () => new Promise((resolve) => setImmediate(resolve))

/**
 * A REGISTER entry as the daemon sends it.
 *
 * @param {string} ns
 * @param {string} id
 * @param {string[]} [addrs]
 */
export const entry = (ns, id, addrs = ['/ip4/192.0.2.1/tcp/4001']) =>
  ({ ns, peer: { id, addrs: addrs.map((a) => multiaddr(a).bytes) } })
