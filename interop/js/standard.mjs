// A js-libp2p peer speaks the standard dialect (/rendezvous/1.0.0, libp2p rendezvous
// spec) to a daemon: it signs a peer record of its own id and listen address, REGISTERs
// it under <ns> (TTL 7200), then DISCOVERs <ns> on the same stream and opens every
// returned envelope. Prints one JSON line: its id and addresses, the REGISTER_RESPONSE,
// the DISCOVER_RESPONSE's registrations (opened records) and whether its own is among them.
// Usage: node standard.mjs /ip4/127.0.0.1/tcp/4002[/ws]/p2p/12D3KooW... <ns> [ws]
// With `ws` the peer listens on (and signs) a WebSocket address instead of plain TCP.
import './polyfills.mjs'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPublicKey } from '@libp2p/peer-id'
import { PeerRecord, RecordEnvelope } from '@libp2p/peer-record'
import { tcp } from '@libp2p/tcp'
import { webSockets } from '@libp2p/websockets'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { concat, decodeFields, fieldBytes, fieldString, fieldVarint, frame, readFrames, text } from './messages.mjs'

const PROTOCOL = '/rendezvous/1.0.0'
const [REGISTER, REGISTER_RESPONSE, , DISCOVER, DISCOVER_RESPONSE] = [0, 1, 2, 3, 4]
const TTL = 7200
const target = multiaddr(process.argv[2])
const ns = process.argv[3]
const ws = process.argv[4] === 'ws'
if (!ns) { console.error('usage: node standard.mjs <multiaddr> <ns> [ws]'); process.exit(64) }

// Message{type=1; register=2; registerResponse=3; unregister=4; discover=5; discoverResponse=6}
// Register{ns=1; signedPeerRecord=2; ttl=3}  Discover{ns=1; limit=2; cookie=3}
const register = (namespace, envelope, ttl) => concat([
  fieldVarint(1, REGISTER),
  fieldBytes(2, concat([fieldString(1, namespace), fieldBytes(2, envelope), fieldVarint(3, ttl)]))
])
const discover = (namespace, limit) => concat([
  fieldVarint(1, DISCOVER),
  fieldBytes(5, concat([fieldString(1, namespace), fieldVarint(2, limit)]))
])

function decodeMessage (buf) {
  const f = decodeFields(buf)
  const type = f[1]?.[0] ?? REGISTER
  if (type === REGISTER_RESPONSE) {
    // RegisterResponse{status=1; statusText=2; ttl=3}
    const r = decodeFields(f[3]?.[0] ?? new Uint8Array())
    return { type, status: r[1]?.[0] ?? 0, statusText: text.decode(r[2]?.[0]), ttl: r[3]?.[0] }
  }
  if (type === DISCOVER_RESPONSE) {
    // DiscoverResponse{registrations=1 (Register); cookie=2; status=3; statusText=4}
    const r = decodeFields(f[6]?.[0] ?? new Uint8Array())
    const registrations = (r[1] ?? []).map((entry) => {
      const e = decodeFields(entry)
      return { ns: text.decode(e[1]?.[0]), signedPeerRecord: e[2]?.[0], ttl: e[3]?.[0] }
    })
    return {
      type,
      status: r[3]?.[0] ?? 0,
      statusText: text.decode(r[4]?.[0]),
      cookie: r[2]?.[0],
      registrations
    }
  }
  return { type }
}

// Opens a signed envelope as a peer record: checks the signature and the domain, and
// that the record's peer id is the signer's.
async function openRecord (bytes) {
  const envelope = await RecordEnvelope.openAndCertify(bytes, PeerRecord.DOMAIN)
  const record = PeerRecord.createFromProtobuf(envelope.payload)
  if (!record.peerId.equals(peerIdFromPublicKey(envelope.publicKey))) {
    throw new Error('peer record signed by another key')
  }
  return { id: record.peerId.toString(), addrs: record.multiaddrs.map(String), seq: Number(record.seqNumber) }
}

// -- one stream: REGISTER then DISCOVER ------------------------------------------
const timeout = setTimeout(() => { console.error('timed out'); process.exit(2) }, 20000)
const privateKey = await generateKeyPair('Ed25519')
const node = await createLibp2p({
  privateKey,
  addresses: { listen: [ws ? '/ip4/127.0.0.1/tcp/0/ws' : '/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp(), webSockets()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()]
})
try {
  const id = node.peerId.toString()
  // The record names the listen addresses without their /p2p/<id> suffix (the record's peer id).
  const addrs = node.getMultiaddrs().map((a) => multiaddr(String(a).split('/p2p/')[0]))
  const envelope = await RecordEnvelope.seal(new PeerRecord({ peerId: node.peerId, multiaddrs: addrs }), privateKey)

  const stream = await node.dialProtocol(target, PROTOCOL)
  const received = []
  const waiting = []
  readFrames(stream, decodeMessage, (message) => {
    const w = waiting.shift()
    if (w) w.resolve(message); else received.push(message)
  })
  const next = () => {
    if (received.length > 0) return Promise.resolve(received.shift())
    const { promise, resolve } = Promise.withResolvers()
    waiting.push({ resolve })
    return promise
  }

  // Requests share the stream; each is answered in order.
  stream.send(frame(register(ns, envelope.marshal(), TTL)))
  const registered = await next()
  if (registered.type !== REGISTER_RESPONSE) throw new Error(`expected REGISTER_RESPONSE, got ${registered.type}`)
  stream.send(frame(discover(ns, 100)))
  const discovered = await next()
  if (discovered.type !== DISCOVER_RESPONSE) throw new Error(`expected DISCOVER_RESPONSE, got ${discovered.type}`)
  await stream.close()

  const registrations = []
  for (const r of discovered.registrations) {
    registrations.push({ ns: r.ns, ttl: r.ttl, ...(await openRecord(r.signedPeerRecord)) })
  }
  const own = registrations.find((r) => r.id === id)
  console.log(JSON.stringify({
    id,
    addrs: addrs.map(String),
    register: { status: registered.status, statusText: registered.statusText, ttl: registered.ttl },
    discover: {
      status: discovered.status,
      statusText: discovered.statusText,
      cookie: discovered.cookie != null && discovered.cookie.length > 0,
      registrations
    },
    foundSelf: own != null && JSON.stringify(own.addrs) === JSON.stringify(addrs.map(String))
  }))
} finally {
  clearTimeout(timeout)
  await node.stop()
}
