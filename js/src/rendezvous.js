// The js-libp2p service: keeps one live-dialect session with one of the daemons, registers
// the node there, follows its namespaces and reports their members as discovered peers.

import { peerDiscoverySymbol, serviceCapabilities, TypedEventEmitter } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { backoffDelay, backoffOptions } from './backoff.js'
import { decodeMessage, encodeFrame, FrameDecoder, MessageType } from './codec.js'
import { RendezvousError, Status } from './errors.js'

/** The libp2p stream protocol of the live dialect. */
export const PROTOCOL = '/rendezvous/live/1.0.0'
export const DEFAULT_RELAY_NAMESPACE = 'rendezvous/relays'
export const DEFAULT_STUN_NAMESPACE = 'rendezvous/stun'
export const DEFAULT_DISCOVER_TIMEOUT_MS = 30_000
const P2P_CODE = 421
const MAX_PENDING_REQUESTS = 1024
const SERVER_TAG = 'live-rendezvous-server'
const CONTEST_MS = 30_000

/**
 * @typedef {import('@libp2p/interface').PeerId} PeerId
 * @typedef {import('@libp2p/interface').Stream} Stream
 * @typedef {import('@libp2p/interface').Connection} Connection
 * @typedef {import('@multiformats/multiaddr').Multiaddr} Multiaddr
 * @typedef {import('./codec.js').WireMessage} WireMessage
 * @typedef {import('./codec.js').WireEntry} WireEntry
 * @typedef {import('./backoff.js').BackoffOptions} BackoffOptions
 *
 * @typedef {object} PeerInfo
 * @property {PeerId} id
 * @property {Multiaddr[]} multiaddrs
 *
 * @typedef {object} Member a registration as this service knows it
 * @property {PeerId} id
 * @property {Multiaddr[]} multiaddrs
 * @property {string} key the addresses, for telling a change
 *
 * @typedef {object} Timers
 * @property {(fn: () => void, ms: number) => any} setTimeout
 * @property {(handle: any) => void} clearTimeout
 * @property {() => number} [now] the time in ms (default Date.now)
 *
 * @typedef {object} LiveRendezvousInit
 * @property {Array<string | Multiaddr>} servers daemons' libp2p addresses, each ending in /p2p/<id>
 * @property {string[]} namespaces namespaces to register in and follow
 * @property {string} [relayNamespace] where findRelays() looks (default 'rendezvous/relays')
 * @property {string} [stunNamespace] where findStunServers() looks (default 'rendezvous/stun')
 * @property {BackoffOptions} [backoff] reconnection delays
 * @property {number} [discoverTimeout] ms before discover()/findRelays() give up (default 30000)
 * @property {number} [maxFrameBytes] largest frame accepted from a daemon (default 4 MiB)
 * @property {Timers} [timers] setTimeout/clearTimeout to use (tests inject fakes)
 *
 * @typedef {object} LiveRendezvousComponents what the service uses of libp2p's components
 * @property {PeerId} peerId
 * @property {import('@libp2p/interface').TypedEventTarget<import('@libp2p/interface').Libp2pEvents>} events
 * @property {{ openConnection(target: Multiaddr, options?: { signal?: AbortSignal, force?: boolean }): Promise<Connection> }} connectionManager
 * @property {{ getAddresses(): Multiaddr[] }} addressManager
 * @property {{ merge(id: PeerId, data: { tags: Record<string, { value: number }> }): Promise<unknown> }} [peerStore]
 * @property {import('@libp2p/interface').ComponentLogger} [logger]
 *
 * @typedef {object} Op a request sent in a session, until its answer
 * @property {'register' | 'unregister' | 'rendezvous' | 'sync' | 'discover'} kind
 * @property {string} namespace
 * @property {Discovery} [discovery]
 * @property {number} batch the write it went out in
 *
 * @typedef {object} Discovery a discover() call waiting for its answer
 * @property {string} namespace
 * @property {number | undefined} limit
 * @property {(peers: PeerInfo[]) => void} resolve
 * @property {(err: Error) => void} reject
 * @property {any} timer
 * @property {() => void} [unlisten]
 *
 * @typedef {object} Session one stream to one daemon
 * @property {Multiaddr} server
 * @property {Stream} stream
 * @property {FrameDecoder} decoder
 * @property {Map<number, Op>} ops requests in flight, by request_id
 * @property {Map<string, Map<string, Member>>} syncing namespaces whose snapshot is arriving
 * @property {string | null} registered the addresses registered in this session (key), or null
 * @property {number} batch the number of the next write: requests sent together share it
 * @property {Set<string>} reported batch|namespace|status of the refusals reported
 * @property {Map<string, { since: number, tries: number, timer: any }>} contested namespaces
 *   whose REGISTER was refused as another session's: asked again for a while
 */

/**
 * The text form of the addresses, sorted: two registrations with the same key announce
 * the same thing.
 *
 * @param {Multiaddr[]} addrs
 */
const addrsKey = (addrs) => addrs.map(String).sort().join(' ')

/**
 * @param {unknown} err
 * @returns {string}
 */
const reasonOf = (err) => (err instanceof Error ? (err.message || err.name) : String(err ?? 'unknown'))

/**
 * A js-libp2p 3.x service and peer discovery module over the rendezvous daemon's live
 * dialect. Create it with `liveRendezvous(init)` in `createLibp2p({ services })`.
 *
 * @extends {TypedEventEmitter<any>}
 */
export class LiveRendezvous extends TypedEventEmitter {
  /** @type {LiveRendezvousComponents} */
  #components
  /** @type {Multiaddr[]} */
  #servers
  /** @type {string[]} */
  #namespaces
  /** @type {string} */
  #relayNamespace
  /** @type {string} */
  #stunNamespace
  /** @type {Required<BackoffOptions>} */
  #backoff
  /** @type {number} */
  #discoverTimeout
  /** @type {number | undefined} */
  #maxFrameBytes
  /** @type {Timers} */
  #timers
  /** @type {any} */
  #log

  #running = false
  #serverIndex = 0
  #attempt = 0
  /** @type {number | undefined} when the servers were first found unreachable, in a row */
  #outageSince
  #nextRequestId = 1
  /** @type {any} */
  #retryTimer
  /** @type {AbortController | undefined} */
  #dialing
  /** @type {Session | undefined} */
  #session
  /** @type {Map<string, Map<string, Member>>} namespace -> peer id -> member */
  #members = new Map()
  /** @type {Set<Discovery>} */
  #discoveries = new Set()

  /**
   * @param {LiveRendezvousComponents} components
   * @param {LiveRendezvousInit} init
   */
  constructor (components, init) {
    super()
    if (init == null || typeof init !== 'object') throw new TypeError('liveRendezvous needs { servers, namespaces }')
    const servers = Array.isArray(init.servers) ? init.servers : []
    if (servers.length === 0) throw new TypeError('liveRendezvous: `servers` must list at least one daemon multiaddr')
    this.#servers = servers.map((s) => {
      /** @type {Multiaddr} */
      let ma
      try {
        ma = multiaddr(s)
      } catch (err) {
        throw new TypeError(`liveRendezvous: server ${String(s)} is not a multiaddr: ${reasonOf(err)}`)
      }
      if (ma.getComponents().findLast((c) => c.code === P2P_CODE)?.value == null) {
        throw new TypeError(`liveRendezvous: server ${ma} must end in /p2p/<peer id>`)
      }
      return ma
    })
    if (!Array.isArray(init.namespaces) || init.namespaces.some((ns) => typeof ns !== 'string')) {
      throw new TypeError('liveRendezvous: `namespaces` must be an array of strings')
    }
    this.#namespaces = [...new Set(init.namespaces)]
    this.#relayNamespace = init.relayNamespace ?? DEFAULT_RELAY_NAMESPACE
    if (typeof this.#relayNamespace !== 'string') throw new TypeError('liveRendezvous: `relayNamespace` must be a string')
    this.#stunNamespace = init.stunNamespace ?? DEFAULT_STUN_NAMESPACE
    if (typeof this.#stunNamespace !== 'string') throw new TypeError('liveRendezvous: `stunNamespace` must be a string')
    this.#backoff = backoffOptions(init.backoff)
    this.#discoverTimeout = init.discoverTimeout ?? DEFAULT_DISCOVER_TIMEOUT_MS
    this.#maxFrameBytes = init.maxFrameBytes
    this.#timers = init.timers ?? {
      setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
      clearTimeout: (handle) => globalThis.clearTimeout(handle)
    }
    this.#components = components
    this.#log = components.logger?.forComponent('libp2p:live-rendezvous') ?? Object.assign(() => {}, { error: () => {} })
    for (const ns of this.#namespaces) this.#members.set(ns, new Map())
  }

  [peerDiscoverySymbol] = this;
  [Symbol.toStringTag] = 'libp2p-live-rendezvous';
  [serviceCapabilities] = ['@libp2p/peer-discovery']

  /** The namespaces followed. */
  get namespaces () { return [...this.#namespaces] }

  /** The daemon of the current session, if one is open. */
  get server () { return this.#session?.server }

  isStarted () { return this.#running }

  start () {
    if (this.#running) return
    this.#running = true
    this.#components.events.addEventListener('self:peer:update', this.#onSelfUpdate)
  }

  /** Connects once libp2p's transports listen, so the first REGISTER has addresses. */
  afterStart () {
    if (this.#running && this.#session == null && this.#dialing == null && this.#retryTimer == null) {
      void this.#connect()
    }
  }

  /** Ends everything at once: the stream, the dial, the timers, pending discover() calls. */
  stop () {
    if (!this.#running) return
    this.#running = false
    this.#components.events.removeEventListener('self:peer:update', this.#onSelfUpdate)
    if (this.#retryTimer != null) this.#timers.clearTimeout(this.#retryTimer)
    this.#retryTimer = undefined
    this.#dialing?.abort(new Error('stopped'))
    this.#dialing = undefined
    const session = this.#session
    this.#session = undefined
    if (session != null) {
      for (const { timer } of session.contested.values()) if (timer != null) this.#timers.clearTimeout(timer)
      session.stream.abort(new Error('rendezvous service stopped'))
    }
    for (const d of [...this.#discoveries]) this.#settle(d, new Error('rendezvous service stopped'))
    for (const members of this.#members.values()) members.clear()
    this.#serverIndex = 0
    this.#attempt = 0
    this.#outageSince = undefined
  }

  /**
   * The current members of a namespace this service follows (never this node).
   *
   * @param {string} namespace
   * @returns {PeerInfo[]}
   */
  members (namespace) {
    const members = this.#members.get(namespace)
    if (members == null) return []
    return [...members.values()].map((m) => ({ id: m.id, multiaddrs: [...m.multiaddrs] }))
  }

  /**
   * DISCOVER in the relay namespace: the relays registered there, with their addresses.
   *
   * @param {{ signal?: AbortSignal, timeout?: number, limit?: number }} [options]
   * @returns {Promise<PeerInfo[]>}
   */
  findRelays (options = {}) {
    return this.discover(this.#relayNamespace, options)
  }

  /**
   * DISCOVER in the STUN namespace, where the fleet's relays register their STUN
   * listeners (`twistd rendezvous-relay --stun`): ICE servers for WebRTC, such as
   * `{ urls: ['stun:198.51.100.7:3478'] }`, one per relay, so a page needs no third
   * party's STUN server.
   *
   * @param {{ signal?: AbortSignal, timeout?: number, limit?: number }} [options]
   * @returns {Promise<Array<{ urls: string[] }>>}
   */
  async findStunServers (options = {}) {
    const found = await this.discover(this.#stunNamespace, options)
    const servers = []
    for (const relay of found) {
      const urls = relay.multiaddrs.map(stunUrl).filter((url) => url != null)
      if (urls.length > 0) servers.push({ urls })
    }
    return servers
  }

  /**
   * One DISCOVER: the registrations of `namespace` (at most `limit`, the daemon's
   * default when absent), other than this node's. Waits for a session when none is
   * open, and asks again on the next one if the session is lost first. Rejects with a
   * RendezvousError when the daemon refuses (also an `error` event), or on timeout,
   * abort or stop().
   *
   * @param {string} namespace
   * @param {{ signal?: AbortSignal, timeout?: number, limit?: number }} [options]
   * @returns {Promise<PeerInfo[]>}
   */
  discover (namespace, options = {}) {
    return new Promise((resolve, reject) => {
      if (!this.#running) { reject(new Error('rendezvous service is not started')); return }
      if (typeof namespace !== 'string') { reject(new TypeError('namespace must be a string')); return }
      const { limit } = options
      if (limit != null && !(Number.isSafeInteger(limit) && limit >= 0)) {
        reject(new TypeError(`limit must be a non-negative integer, not ${limit}`))
        return
      }
      const timeout = options.timeout ?? this.#discoverTimeout
      if (!(typeof timeout === 'number' && timeout >= 0)) { reject(new TypeError(`timeout must be a number of ms, not ${timeout}`)); return }
      options.signal?.throwIfAborted()
      /** @type {Discovery} */
      const discovery = { namespace, limit, resolve, reject, timer: undefined }
      discovery.timer = this.#timers.setTimeout(() => {
        const err = new Error(`no answer to DISCOVER in "${namespace}" within ${timeout} ms`)
        err.name = 'TimeoutError'
        this.#settle(discovery, err)
      }, timeout)
      if (options.signal != null) {
        const signal = options.signal
        const onAbort = () => this.#settle(discovery, signal.reason ?? new Error('aborted'))
        signal.addEventListener('abort', onAbort, { once: true })
        discovery.unlisten = () => signal.removeEventListener('abort', onAbort)
      }
      this.#discoveries.add(discovery)
      if (this.#session != null) this.#sendDiscover(this.#session, discovery)
    })
  }

  // -- connection and sessions ------------------------------------------------

  async #connect () {
    const server = this.#servers[this.#serverIndex]
    const dialing = new AbortController()
    this.#dialing = dialing
    try {
      const cm = this.#components.connectionManager
      let connection = await cm.openConnection(server, { signal: dialing.signal })
      if (connection.limits != null || connection.direct === false || String(connection.remoteAddr).includes('/p2p-circuit')) {
        // only a direct connection will do: dial the daemon's own address anew
        connection = await cm.openConnection(server, { signal: dialing.signal, force: true })
      }
      // the connection manager prunes connections with the lowest tag values first
      this.#components.peerStore?.merge(connection.remotePeer, { tags: { [SERVER_TAG]: { value: 100 } } })
        .catch((err) => this.#log('could not tag %a: %s', server, reasonOf(err)))
      const stream = await connection.newStream(PROTOCOL, { signal: dialing.signal })
      if (this.#dialing !== dialing) { stream.abort(new Error('rendezvous service stopped')); return }
      this.#dialing = undefined
      this.#open(server, stream)
    } catch (err) {
      if (this.#dialing !== dialing) return // stopped meanwhile
      this.#dialing = undefined
      this.#log('could not open a session with %a: %s', server, reasonOf(err))
      this.#retry(server, reasonOf(err))
    }
  }

  /** The time in ms, from the injected timers if they tell it. */
  #now () {
    return this.#timers.now != null ? this.#timers.now() : Date.now()
  }

  /** A session got going: the next outage starts the backoff afresh. */
  #good () {
    this.#attempt = 0
    this.#outageSince = undefined
  }

  /**
   * Reports the server lost and schedules the next attempt, at the next server.
   *
   * @param {Multiaddr} server
   * @param {string} reason
   */
  #retry (server, reason) {
    if (!this.#running) return
    const now = this.#now()
    this.#outageSince ??= now
    const retryInMs = backoffDelay(this.#attempt, this.#backoff, now - this.#outageSince)
    this.#attempt += 1
    this.#serverIndex = (this.#serverIndex + 1) % this.#servers.length
    this.#retryTimer = this.#timers.setTimeout(() => {
      this.#retryTimer = undefined
      if (this.#running) void this.#connect()
    }, retryInMs)
    this.safeDispatchEvent('server:lost', { detail: { server, reason, retryInMs } })
  }

  /**
   * @param {Multiaddr} server
   * @param {Stream} stream
   */
  #open (server, stream) {
    /** @type {Session} */
    const session = {
      server,
      stream,
      decoder: new FrameDecoder({ maxFrameBytes: this.#maxFrameBytes }),
      ops: new Map(),
      syncing: new Map(),
      registered: null,
      batch: 0,
      reported: new Set(),
      contested: new Map()
    }
    this.#session = session
    stream.addEventListener('message', (event) => {
      if (this.#session !== session) return
      const data = /** @type {any} */ (event).data
      this.#receive(session, data instanceof Uint8Array ? data : data.subarray())
    })
    stream.addEventListener('close', (event) => {
      const error = /** @type {any} */ (event).error
      this.#end(session, error == null ? 'the daemon closed the stream' : reasonOf(error))
    })
    stream.addEventListener('remoteCloseWrite', () => {
      this.#end(session, 'the daemon closed the stream')
    })

    /** @type {Uint8Array[]} */
    const frames = []
    const addrs = this.#ownAddrs()
    if (addrs.length > 0) {
      session.registered = addrsKey(addrs)
      for (const ns of this.#namespaces) frames.push(this.#request(session, 'register', ns, { register: [this.#entry(ns, addrs)] }))
    }
    for (const ns of this.#namespaces) {
      frames.push(this.#request(session, 'rendezvous', ns, { rendezvous: [{ ns }] }))
      // the DISCOVER's answer comes after the whole snapshot: the view is then complete
      frames.push(this.#request(session, 'sync', ns, { discovery: [{ ns, limit: 1 }] }))
      session.syncing.set(ns, new Map())
    }
    if (!this.#send(session, frames)) return
    if (session.syncing.size === 0) this.#good() // no namespace: nothing more to wait for
    this.#log('session open with %a', server)
    this.safeDispatchEvent('server:connected', { detail: { server } })
    for (const d of this.#discoveries) {
      if (this.#session === session) this.#sendDiscover(session, d)
    }
  }

  /**
   * Ends a session once, whatever ended it, and schedules the next.
   *
   * @param {Session} session
   * @param {string} reason
   */
  #end (session, reason) {
    if (this.#session !== session) return
    this.#session = undefined
    for (const { timer } of session.contested.values()) if (timer != null) this.#timers.clearTimeout(timer)
    if (session.stream.status === 'open' || session.stream.status === 'closing') {
      session.stream.abort(new Error(reason))
    }
    this.#log('session with %a ended: %s', session.server, reason)
    this.#retry(session.server, reason)
  }

  /**
   * Writes frames; a stream that refuses them ends the session.
   *
   * @param {Session} session
   * @param {Uint8Array[]} frames
   * @returns {boolean} whether the session still stands
   */
  #send (session, frames) {
    if (frames.length === 0) return true
    try {
      let length = 0
      for (const f of frames) length += f.length
      const out = new Uint8Array(length)
      let offset = 0
      for (const f of frames) { out.set(f, offset); offset += f.length }
      session.stream.send(out)
      session.batch += 1
      return true
    } catch (err) {
      this.#end(session, `could not write to the daemon: ${reasonOf(err)}`)
      return false
    }
  }

  /**
   * A framed request with a fresh request_id, remembered until answered.
   *
   * @param {Session} session
   * @param {Op['kind']} kind
   * @param {string} namespace
   * @param {Omit<WireMessage, 'type'>} body
   * @param {Discovery} [discovery]
   */
  #request (session, kind, namespace, body, discovery) {
    const requestId = this.#nextRequestId++
    const type = {
      register: MessageType.REGISTER,
      unregister: MessageType.UNREGISTER,
      rendezvous: MessageType.RENDEZVOUS,
      sync: MessageType.DISCOVER,
      discover: MessageType.DISCOVER
    }[kind]
    session.ops.set(requestId, { kind, namespace, discovery, batch: session.batch })
    if (session.ops.size > MAX_PENDING_REQUESTS) {
      // answers come in order: the oldest unanswered REGISTER/RENDEZVOUS long succeeded
      for (const [id, op] of session.ops) {
        if (op.kind !== 'sync' && op.kind !== 'discover') { session.ops.delete(id); break }
      }
    }
    return encodeFrame({ type, ...body, requestId })
  }

  /**
   * @param {Session} session
   * @param {Discovery} discovery
   */
  #sendDiscover (session, discovery) {
    const limit = discovery.limit
    this.#send(session, [this.#request(session, 'discover', discovery.namespace, {
      discovery: [{ ns: discovery.namespace, ...(limit == null ? {} : { limit }) }]
    }, discovery)])
  }

  /**
   * Resolves or rejects a discover() call, once.
   *
   * @param {Discovery} discovery
   * @param {PeerInfo[] | Error} result
   */
  #settle (discovery, result) {
    if (!this.#discoveries.delete(discovery)) return
    this.#timers.clearTimeout(discovery.timer)
    discovery.unlisten?.()
    if (result instanceof Error) discovery.reject(result)
    else discovery.resolve(result)
  }

  // -- this node's registration -----------------------------------------------

  /** This node's addresses as it announces them, without the trailing /p2p/<self>. */
  #ownAddrs () {
    const self = this.#components.peerId.toString()
    const seen = new Set()
    /** @type {Multiaddr[]} */
    const addrs = []
    for (let ma of this.#components.addressManager.getAddresses()) {
      const components = ma.getComponents()
      const last = components[components.length - 1]
      if (last?.code === P2P_CODE && last.value === self) ma = multiaddr(components.slice(0, -1))
      const text = ma.toString()
      if (!seen.has(text)) { seen.add(text); addrs.push(ma) }
    }
    return addrs
  }

  /**
   * @param {string} ns
   * @param {Multiaddr[]} addrs
   * @returns {WireEntry}
   */
  #entry (ns, addrs) {
    return { ns, peer: { id: this.#components.peerId.toString(), addrs: addrs.map((a) => a.bytes) } }
  }

  /**
   * A REGISTER refused as another session's: on a fleet, that may be this node's own
   * session on a daemon that died, until the fleet's lease runs out. Ask again with a
   * growing pause, for CONTEST_MS.
   *
   * @param {Session} session
   * @param {string} ns
   */
  #contest (session, ns) {
    const now = Date.now()
    const state = session.contested.get(ns) ?? { since: now, tries: 0, timer: null }
    session.contested.set(ns, state)
    if (now - state.since >= CONTEST_MS || state.timer != null) return
    const delay = Math.min(2000, 500 * 2 ** Math.min(state.tries, 8)) * (0.5 + Math.random())
    state.tries += 1
    state.timer = this.#timers.setTimeout(() => {
      state.timer = null
      const addrs = this.#ownAddrs()
      if (this.#session !== session || addrs.length === 0) return
      this.#log('asking again to register in %s', ns)
      this.#send(session, [this.#request(session, 'register', ns, { register: [this.#entry(ns, addrs)] })])
    }, delay)
  }

  /** `self:peer:update`: register the new addresses (or unregister when none are left). */
  #onSelfUpdate = () => {
    const session = this.#session
    if (session == null) return
    const addrs = this.#ownAddrs()
    const key = addrs.length === 0 ? null : addrsKey(addrs)
    if (key === session.registered) return
    /** @type {Uint8Array[]} */
    const frames = []
    for (const ns of this.#namespaces) {
      frames.push(key == null
        ? this.#request(session, 'unregister', ns, { unregister: [{ ns, peer: { id: this.#components.peerId.toString(), addrs: [] } }] })
        : this.#request(session, 'register', ns, { register: [this.#entry(ns, addrs)] }))
    }
    session.registered = key
    this.#log('addresses changed: %s', key == null ? 'none left, unregistering' : 're-registering')
    this.#send(session, frames)
  }

  // -- what the daemon sends ----------------------------------------------------

  /**
   * Bytes from the daemon.
   *
   * @param {Session} session
   * @param {Uint8Array} chunk
   */
  #receive (session, chunk) {
    let frames
    try {
      frames = session.decoder.push(chunk)
    } catch (err) {
      this.#end(session, `unframeable bytes from the daemon: ${reasonOf(err)}`)
      return
    }
    for (const bytes of frames) {
      if (this.#session !== session) return
      /** @type {WireMessage} */
      let message
      try {
        message = decodeMessage(bytes)
      } catch (err) {
        console.warn(`libp2p-live-rendezvous: dropped a malformed message from ${session.server}: ${reasonOf(err)}`)
        continue
      }
      this.#handle(session, message)
    }
  }

  /**
   * @param {Session} session
   * @param {WireMessage} message
   */
  #handle (session, message) {
    /** @type {string[]} */
    const problems = []
    const requestId = typeof message.requestId === 'number' ? message.requestId : undefined
    const op = requestId == null ? undefined : session.ops.get(requestId)
    if (requestId != null) session.ops.delete(requestId)

    switch (message.type) {
      case MessageType.ERROR: {
        const status = message.error?.status
        const err = new RendezvousError(status ?? 0, message.error?.text ?? '', {
          namespace: op?.namespace,
          operation: op == null ? undefined : (op.kind === 'sync' ? 'rendezvous' : op.kind),
          server: session.server.toString()
        })
        if (op?.kind === 'sync') this.#finishSync(session, op.namespace, true)
        if (op?.discovery != null) this.#settle(op.discovery, err)
        if (op?.kind === 'register' && err.status === Status.E_NOT_AUTHORIZED) this.#contest(session, op.namespace)
        if (op != null) {
          // the REGISTER, RENDEZVOUS and DISCOVER of one bad namespace sent together: one event
          const key = `${op.batch}|${op.namespace}|${err.status}`
          if (session.reported.has(key)) return
          if (session.reported.size >= MAX_PENDING_REQUESTS) session.reported.clear()
          session.reported.add(key)
        }
        this.safeDispatchEvent('error', { detail: err })
        return
      }
      case MessageType.REGISTER: {
        const entries = this.#entries(message.register ?? [], problems)
        if (requestId != null) {
          if (op != null) this.#answered(session, requestId)
          if (op?.kind === 'sync') this.#finishSync(session, op.namespace, false)
          else if (op?.discovery != null) this.#settle(op.discovery, entries.map(({ member }) => ({ id: member.id, multiaddrs: member.multiaddrs })))
        } else {
          for (const { ns, member } of entries) this.#registered(session, ns, member)
        }
        break
      }
      case MessageType.UNREGISTER: {
        for (const { ns, member } of this.#entries(message.unregister ?? [], problems)) this.#unregistered(session, ns, member.id)
        break
      }
      default:
        problems.push(`unexpected message type ${message.type}`)
    }
    if (problems.length > 0) {
      console.warn(`libp2p-live-rendezvous: dropped from a message of ${session.server}: ${problems.join('; ')}`)
    }
  }

  /**
   * An answer to request `requestId` arrived: every earlier REGISTER, UNREGISTER and
   * RENDEZVOUS without an ERROR succeeded (the daemon answers in order).
   *
   * @param {Session} session
   * @param {number} requestId
   */
  #answered (session, requestId) {
    for (const [id, op] of session.ops) {
      if (id < requestId && op.kind !== 'sync' && op.kind !== 'discover') session.ops.delete(id)
    }
  }

  /**
   * Entries decoded into members; the bad ones are left out and described in `problems`.
   *
   * @param {WireEntry[]} entries
   * @param {string[]} problems
   * @returns {Array<{ ns: string, member: Member }>}
   */
  #entries (entries, problems) {
    const self = this.#components.peerId.toString()
    /** @type {Array<{ ns: string, member: Member }>} */
    const out = []
    for (const entry of entries) {
      if (entry.ns == null || entry.peer?.id == null) { problems.push('an entry without namespace or peer id'); continue }
      /** @type {PeerId} */
      let id
      try {
        id = peerIdFromString(entry.peer.id)
      } catch (err) {
        problems.push(`invalid peer id ${JSON.stringify(entry.peer.id)}: ${reasonOf(err)}`)
        continue
      }
      if (id.toString() === self) continue
      /** @type {Multiaddr[]} */
      const multiaddrs = []
      for (const bytes of entry.peer.addrs) {
        try {
          multiaddrs.push(multiaddr(bytes))
        } catch (err) {
          problems.push(`an invalid address of ${id}: ${reasonOf(err)}`)
        }
      }
      out.push({ ns: entry.ns, member: { id, multiaddrs, key: addrsKey(multiaddrs) } })
    }
    return out
  }

  /**
   * @param {Session} session
   * @param {string} ns
   * @param {Member} member
   */
  #registered (session, ns, member) {
    const pending = session.syncing.get(ns)
    if (pending != null) { pending.set(member.id.toString(), member); return }
    const members = this.#members.get(ns)
    if (members == null) return
    const known = members.get(member.id.toString())
    members.set(member.id.toString(), member)
    if (known == null || known.key !== member.key) this.#announce(ns, member)
  }

  /**
   * @param {Session} session
   * @param {string} ns
   * @param {PeerId} id
   */
  #unregistered (session, ns, id) {
    const pending = session.syncing.get(ns)
    if (pending != null) { pending.delete(id.toString()); return }
    const members = this.#members.get(ns)
    if (members?.delete(id.toString()) === true) this.#gone(ns, id)
  }

  /**
   * The snapshot of `ns` is complete, or was refused (the view then stays as it was).
   * The view becomes the snapshot: only the differences are announced.
   *
   * @param {Session} session
   * @param {string} ns
   * @param {boolean} refused
   */
  #finishSync (session, ns, refused) {
    const fresh = session.syncing.get(ns)
    if (fresh == null) return
    session.syncing.delete(ns)
    if (!refused) {
      const members = /** @type {Map<string, Member>} */ (this.#members.get(ns))
      for (const [key, old] of [...members]) {
        if (!fresh.has(key)) { members.delete(key); this.#gone(ns, old.id) }
      }
      for (const [key, member] of fresh) {
        const known = members.get(key)
        members.set(key, member)
        if (known == null || known.key !== member.key) this.#announce(ns, member)
      }
    }
    if (session.syncing.size === 0 && this.#session === session) {
      this.#good() // a session that got this far was a good one: start backoff afresh
    }
  }

  /**
   * @param {string} namespace
   * @param {Member} member
   */
  #announce (namespace, member) {
    this.safeDispatchEvent('register', { detail: { namespace, id: member.id, multiaddrs: [...member.multiaddrs] } })
    this.safeDispatchEvent('peer', { detail: { id: member.id, multiaddrs: [...member.multiaddrs] } })
  }

  /**
   * @param {string} namespace
   * @param {PeerId} id
   */
  #gone (namespace, id) {
    this.safeDispatchEvent('unregister', { detail: { namespace, id } })
    const key = id.toString()
    for (const members of this.#members.values()) if (members.has(key)) return
    this.safeDispatchEvent('peer:gone', { detail: id })
  }
}

/**
 * The service factory: `createLibp2p({ services: { rendezvous: liveRendezvous({ servers,
 * namespaces }) } })`.
 *
 * @param {LiveRendezvousInit} init
 * @returns {(components: any) => LiveRendezvous}
 */
export function liveRendezvous (init) {
  return (components) => new LiveRendezvous(components, init)
}

/**
 * The `stun:` URL of a `/ip4|ip6|dns4|dns6|dns/HOST/udp/PORT` address, or null.
 *
 * @param {Multiaddr} ma
 * @returns {string | null}
 */
export function stunUrl (ma) {
  const parts = ma.toString().split('/')
  if (parts.length !== 5 || parts[3] !== 'udp' || !/^\d+$/.test(parts[4])) return null
  const [, kind, host, , port] = parts
  if (kind === 'ip6') return `stun:[${host}]:${port}`
  if (['ip4', 'dns4', 'dns6', 'dns'].includes(kind)) return `stun:${host}:${port}`
  return null
}
