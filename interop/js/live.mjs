// Two js-libp2p peers speak the live dialect (/rendezvous/live/1.0.0) to a daemon:
// bob enters rendezvous, alice registers herself (and tries to register bob: refused),
// then alice closes her stream. Prints one JSON line of what each peer was sent.
// Usage: node live.mjs /ip4/127.0.0.1/tcp/4002[/ws]/p2p/12D3KooW...
import './polyfills.mjs'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { tcp } from '@libp2p/tcp'
import { webSockets } from '@libp2p/websockets'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { concat, decodeFields, fieldBytes, fieldString, fieldVarint, frame, readFrames, text } from './messages.mjs'

const PROTOCOL = '/rendezvous/live/1.0.0'
const [REGISTER, UNREGISTER, RENDEZVOUS, DISCOVER, ERROR] = [0, 1, 2, 3, 4]
const target = multiaddr(process.argv[2])

function decodeMessage (buf) {
  const f = decodeFields(buf)
  const peers = (entries) => (entries ?? []).map((entry) => {
    const e = decodeFields(entry)
    const peer = decodeFields(e[2]?.[0] ?? new Uint8Array())
    return { ns: text.decode(e[1]?.[0]), id: text.decode(peer[1]?.[0]), addrs: (peer[2] ?? []).length }
  })
  const error = f[6] == null ? undefined : decodeFields(f[6][0])
  return {
    type: f[1]?.[0] ?? REGISTER,
    register: peers(f[2]),
    unregister: peers(f[3]),
    error: error && { status: error[1]?.[0], text: text.decode(error[2]?.[0]) },
    requestId: f[7]?.[0]
  }
}

const peerField = (id, addrs = []) =>
  concat([fieldString(1, id), ...addrs.map((a) => fieldBytes(2, a))])

function register (ns, id, addrs, requestId) {
  const entry = concat([fieldString(1, ns), fieldBytes(2, peerField(id, addrs))])
  const parts = [fieldVarint(1, REGISTER), fieldBytes(2, entry)]
  if (requestId != null) parts.push(fieldVarint(7, requestId))
  return concat(parts)
}
const rendezvous = (ns) => concat([fieldVarint(1, RENDEZVOUS), fieldBytes(4, fieldString(1, ns))])
const discover = (ns, requestId) =>
  concat([fieldVarint(1, DISCOVER), fieldBytes(5, fieldString(1, ns)), fieldVarint(7, requestId)])

// -- a live session on one stream ---------------------------------------------
async function session () {
  const node = await createLibp2p({
    transports: [tcp(), webSockets()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()]
  })
  const stream = await node.dialProtocol(target, PROTOCOL)
  const received = []
  const waiting = []
  readFrames(stream, decodeMessage, (message) => {
    received.push(message)
    for (const w of [...waiting]) {
      if (w.test(message)) { waiting.splice(waiting.indexOf(w), 1); w.resolve(message) }
    }
  })
  return {
    node,
    stream,
    id: node.peerId.toString(),
    received,
    send: (...messages) => stream.send(concat(messages.map(frame))),
    next (test) {
      const found = received.find(test)
      if (found) return Promise.resolve(found)
      const { promise, resolve } = Promise.withResolvers()
      waiting.push({ test, resolve })
      return promise
    }
  }
}

const timeout = setTimeout(() => { console.error('timed out'); process.exit(2) }, 20000)
const alice = await session()
const bob = await session()
try {
  bob.send(rendezvous('ns'), discover('ns', 1))
  await bob.next((m) => m.requestId === 1)
  const addr = Uint8Array.from([0x04, 192, 0, 2, 1, 0x06, 0x0f, 0xa1]) // /ip4/192.0.2.1/tcp/4001
  alice.send(register('ns', alice.id, [addr]), register('ns', bob.id, [], 9))
  const refused = await alice.next((m) => m.type === ERROR)
  const pushed = await bob.next((m) => m.type === REGISTER && m.requestId == null)
  await alice.stream.close()
  const gone = await bob.next((m) => m.type === UNREGISTER)
  console.log(JSON.stringify({ alice: alice.id, bob: bob.id, refused, pushed, gone }))
} finally {
  clearTimeout(timeout)
  await alice.node.stop()
  await bob.node.stop()
}
