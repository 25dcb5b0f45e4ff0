// Types of libp2p-live-rendezvous (hand-written; `npm run check` checks the JS against them).
import type {
  ComponentLogger, Connection, Libp2pEvents, PeerDiscovery, PeerDiscoveryProvider, PeerId,
  PeerInfo, Startable, TypedEventTarget, peerDiscoverySymbol, serviceCapabilities
} from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** The libp2p stream protocol of the live dialect: `/rendezvous/live/1.0.0`. */
export declare const PROTOCOL: '/rendezvous/live/1.0.0'
/** Where relays register and findRelays() looks unless told: `rendezvous/relays`. */
export declare const DEFAULT_RELAY_NAMESPACE: 'rendezvous/relays'
/** Where relays register their STUN listeners: `rendezvous/stun`. */
export declare const DEFAULT_STUN_NAMESPACE: 'rendezvous/stun'
/** The `stun:` URL of a `/ip4|ip6|dns4|dns6|dns/HOST/udp/PORT` address, or null. */
export declare function stunUrl (ma: Multiaddr): string | null

export interface BackoffOptions {
  /** ms: the ceiling of the first delay (default 250) */
  initial?: number
  /** ms: no ceiling grows past this (default 30000) */
  cap?: number
  /** uniform in [0, 1) (default Math.random) */
  random?(): number
}

export interface Timers {
  setTimeout(fn: () => void, ms: number): any
  clearTimeout(handle: any): void
}

export interface LiveRendezvousInit {
  /** Daemons' libp2p addresses, each ending in `/p2p/<peer id>` (`…/tcp/…` or `…/ws`). */
  servers: Array<string | Multiaddr>
  /** Namespaces to register this node in and to follow. */
  namespaces: string[]
  /** Where findRelays() looks (default `rendezvous/relays`). */
  relayNamespace?: string
  /** Where findStunServers() looks (default `rendezvous/stun`). */
  stunNamespace?: string
  /** Reconnection delays: capped exponential with full jitter. */
  backoff?: BackoffOptions
  /** ms before discover() and findRelays() give up (default 30000). */
  discoverTimeout?: number
  /** Largest frame accepted from a daemon, in bytes (default 4 MiB). */
  maxFrameBytes?: number
  /** setTimeout/clearTimeout to use (tests inject fakes). */
  timers?: Timers
}

/** What the service uses of libp2p's components (libp2p passes them all). */
export interface LiveRendezvousComponents {
  peerId: PeerId
  events: TypedEventTarget<Libp2pEvents>
  connectionManager: {
    openConnection(target: Multiaddr, options?: { signal?: AbortSignal, force?: boolean }): Promise<Connection>
  }
  addressManager: { getAddresses(): Multiaddr[] }
  /** to tag the daemon's connection, which the connection manager then prunes last */
  peerStore?: { merge(id: PeerId, data: { tags: Record<string, { value: number }> }): Promise<unknown> }
  logger?: ComponentLogger
}

export interface RegisterDetail {
  namespace: string
  id: PeerId
  multiaddrs: Multiaddr[]
}

export interface UnregisterDetail {
  namespace: string
  id: PeerId
}

export interface ServerConnectedDetail {
  server: Multiaddr
}

export interface ServerLostDetail {
  server: Multiaddr
  /** why the session ended or could not be opened */
  reason: string
  /** ms until the next attempt (at the next server of the list) */
  retryInMs: number
}

export interface LiveRendezvousEvents {
  /** A peer registered, or re-registered with other addresses (PeerDiscovery). */
  peer: CustomEvent<PeerInfo>
  /** A peer left every namespace followed. */
  'peer:gone': CustomEvent<PeerId>
  register: CustomEvent<RegisterDetail>
  unregister: CustomEvent<UnregisterDetail>
  'server:connected': CustomEvent<ServerConnectedDetail>
  'server:lost': CustomEvent<ServerLostDetail>
  /** The daemon refused something. */
  error: CustomEvent<RendezvousError>
}

export interface DiscoverOptions {
  signal?: AbortSignal
  /** ms (default: the service's discoverTimeout) */
  timeout?: number
  /** at most this many registrations (default: the daemon's default, 100) */
  limit?: number
}

export declare class LiveRendezvous extends EventTarget implements TypedEventTarget<LiveRendezvousEvents>, PeerDiscovery, PeerDiscoveryProvider, Startable {
  constructor (components: LiveRendezvousComponents, init: LiveRendezvousInit)
  readonly [peerDiscoverySymbol]: PeerDiscovery
  readonly [Symbol.toStringTag]: string
  readonly [serviceCapabilities]: string[]
  /** The namespaces followed. */
  readonly namespaces: string[]
  /** The daemon of the current session, if one is open. */
  readonly server: Multiaddr | undefined
  isStarted (): boolean
  start (): void
  afterStart (): void
  stop (): void
  /** The current members of a followed namespace (never this node). */
  members (namespace: string): PeerInfo[]
  /** DISCOVER in the relay namespace: the relays registered there. */
  findRelays (options?: DiscoverOptions): Promise<PeerInfo[]>
  /** The fleet's STUN servers as ICE servers for WebRTC: `[{ urls: ['stun:H:P'] }]`. */
  findStunServers (options?: DiscoverOptions): Promise<Array<{ urls: string[] }>>
  /** DISCOVER in any namespace: its registrations other than this node's. */
  discover (namespace: string, options?: DiscoverOptions): Promise<PeerInfo[]>

  addEventListener<K extends keyof LiveRendezvousEvents>(type: K, listener: ((evt: LiveRendezvousEvents[K]) => void) | { handleEvent(evt: LiveRendezvousEvents[K]): void } | null, options?: boolean | AddEventListenerOptions): void
  removeEventListener<K extends keyof LiveRendezvousEvents>(type: K, listener?: ((evt: LiveRendezvousEvents[K]) => void) | { handleEvent(evt: LiveRendezvousEvents[K]): void } | null, options?: boolean | EventListenerOptions): void
  listenerCount (type: string): number
  safeDispatchEvent<Detail>(type: keyof LiveRendezvousEvents, detail?: CustomEventInit<Detail>): boolean
}

/** The service factory for `createLibp2p({ services: { rendezvous: liveRendezvous(init) } })`. */
export declare function liveRendezvous (init: LiveRendezvousInit): (components: LiveRendezvousComponents) => LiveRendezvous

/** ERROR statuses of the live dialect. */
export declare const Status: {
  readonly E_INVALID_NAMESPACE: 100
  readonly E_INVALID_SIGNED_PEER_RECORD: 101
  readonly E_NOT_AUTHORIZED: 200
  readonly E_INTERNAL_ERROR: 300
  readonly E_UNAVAILABLE: 400
  readonly INVALID_MESSAGE: 1001
  readonly INVALID_PEER: 1002
  readonly LIMIT_EXCEEDED: 1003
}

/** A refusal by the daemon (an ERROR message). */
export declare class RendezvousError extends Error {
  constructor (status: number, text: string, context?: { namespace?: string, operation?: string, server?: string })
  /** the ERROR status, see Status */
  status: number
  /** the daemon's explanation, for people */
  text: string
  /** the namespace of the refused request, when known */
  namespace: string | undefined
  /** 'register', 'unregister', 'rendezvous' or 'discover', when known */
  operation: string | undefined
  /** the daemon's address */
  server: string | undefined
}

/** The delay before retry number `attempt`: uniform in [0, min(cap, initial * 2^attempt)). */
export declare function backoffDelay (attempt: number, options: Required<BackoffOptions>, outageMs?: number): number

// -- the wire format --------------------------------------------------------------

export declare const MessageType: {
  readonly REGISTER: 0
  readonly UNREGISTER: 1
  readonly RENDEZVOUS: 2
  readonly DISCOVER: 3
  readonly ERROR: 4
}

export interface WirePeer {
  /** libp2p peer id, text form */
  id?: string
  /** binary multiaddrs */
  addrs: Uint8Array[]
  /** a libp2p signed envelope */
  signedPeerRecord?: Uint8Array
}

export interface WireEntry {
  ns?: string
  peer?: WirePeer
}

export interface WireMessage {
  /** one of MessageType; an absent type decodes as REGISTER */
  type: number
  register?: WireEntry[]
  unregister?: WireEntry[]
  rendezvous?: Array<{ ns?: string }>
  discovery?: Array<{ ns?: string, limit?: number | bigint }>
  error?: { status?: number, text?: string }
  requestId?: number | bigint
}

export declare class CodecError extends Error {}

export declare function encodeMessage (message: WireMessage): Uint8Array
/** Throws CodecError for bytes that are not a valid Message. */
export declare function decodeMessage (bytes: Uint8Array): WireMessage
/** uvarint(length) + message */
export declare function frame (message: Uint8Array): Uint8Array
export declare function encodeFrame (message: WireMessage): Uint8Array
export declare function encodeVarint (value: number | bigint): Uint8Array
/** `[value, next offset]`, or null when `bytes` ends inside the varint. */
export declare function decodeVarint (bytes: Uint8Array, offset: number): [number | bigint, number] | null

/** Splits a byte stream into frames; throws CodecError when it cannot be framed. */
export declare class FrameDecoder {
  constructor (options?: { maxFrameBytes?: number })
  maxFrameBytes: number
  push (chunk: Uint8Array): Uint8Array[]
}
