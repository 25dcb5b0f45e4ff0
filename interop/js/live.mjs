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

const PROTOCOL = '/rendezvous/live/1.0.0'
const [REGISTER, UNREGISTER, RENDEZVOUS, DISCOVER, ERROR] = [0, 1, 2, 3, 4]
const target = multiaddr(process.argv[2])

// -- protobuf by hand: just what the live dialect's Message needs --------------
const utf8 = new TextEncoder()
const text = new TextDecoder()

function varint (value) {
  const out = []
  let n = BigInt(value)
  while (n >= 0x80n) { out.push(Number(n & 0x7fn) | 0x80); n >>= 7n }
  out.push(Number(n))
  return Uint8Array.from(out)
}

function concat (parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let offset = 0
  for (const p of parts) { out.set(p, offset); offset += p.length }
  return out
}

const fieldVarint = (n, v) => concat([varint(n << 3), varint(v)])
const fieldBytes = (n, b) => concat([varint((n << 3) | 2), varint(b.length), b])
const fieldString = (n, s) => fieldBytes(n, utf8.encode(s))

function readVarint (buf, offset) {
  let value = 0n
  let shift = 0n
  for (;;) {
    if (offset >= buf.length) return null
    const byte = buf[offset++]
    value |= BigInt(byte & 0x7f) << shift
    if (byte < 0x80) return [Number(value), offset]
    shift += 7n
  }
}

function decodeFields (buf) {
  const fields = {}
  let offset = 0
  while (offset < buf.length) {
    let tag;
    [tag, offset] = readVarint(buf, offset)
    const [number, wire] = [tag >> 3, tag & 7]
    let value
    if (wire === 0) {
      [value, offset] = readVarint(buf, offset)
    } else if (wire === 2) {
      let length;
      [length, offset] = readVarint(buf, offset)
      value = buf.subarray(offset, offset + length)
      offset += length
    } else {
      throw new Error(`unexpected wire type ${wire}`)
    }
    (fields[number] ??= []).push(value)
  }
  return fields
}

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
const frame = (message) => concat([varint(message.length), message])

// -- a live session on one stream ---------------------------------------------
async function session () {
  const node = await createLibp2p({
    transports: [tcp(), webSockets()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()]
  })
  const stream = await node.dialProtocol(target, PROTOCOL)
  let buffer = new Uint8Array()
  const received = []
  const waiting = []
  stream.addEventListener('message', (event) => {
    const data = event.data.subarray ? event.data.subarray() : event.data
    buffer = concat([buffer, data])
    for (;;) {
      const header = readVarint(buffer, 0)
      if (header == null || buffer.length < header[1] + header[0]) break
      const message = decodeMessage(buffer.subarray(header[1], header[1] + header[0]))
      buffer = buffer.slice(header[1] + header[0])
      received.push(message)
      for (const w of [...waiting]) {
        if (w.test(message)) { waiting.splice(waiting.indexOf(w), 1); w.resolve(message) }
      }
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
