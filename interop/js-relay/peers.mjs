// Two js-libp2p peers reach each other through a circuit relay v2 at argv[2]
// (/ip4/…/tcp/…/p2p/<relay-id>): bob reserves (listens on <relay>/p2p-circuit), alice
// dials bob's circuit address and they exchange data both ways. Prints one JSON line.
import './polyfills.mjs'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { webSockets } from '@libp2p/websockets'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'

const PROTOCOL = '/rendezvous-test/shout/1.0.0'
const relay = process.argv[2]
const size = Number(process.argv[3] ?? 16)
const timeout = setTimeout(() => { console.error('timed out'); process.exit(2) }, 30000)

const node = (listen) => createLibp2p({
  addresses: { listen },
  transports: [tcp(), webSockets(), circuitRelayTransport()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify() }
})
const bytes = (stream, want) => {
  const { promise, resolve } = Promise.withResolvers()
  const chunks = []
  let length = 0
  stream.addEventListener('message', (event) => {
    const data = event.data.subarray ? event.data.subarray() : event.data
    chunks.push(data)
    length += data.length
    if (length >= want) resolve(Buffer.concat(chunks))
  })
  stream.addEventListener('close', () => resolve(Buffer.concat(chunks)))
  return promise
}
const pattern = (n, seed) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + seed) % 251))

const bob = await node([`${relay}/p2p-circuit`])
const alice = await node([])
try {
  // bob: read `size` bytes, answer with them reversed
  await bob.handle(PROTOCOL, async (stream) => {
    const got = await bytes(stream, size)
    stream.send(Buffer.from(got).reverse())
    await stream.close()
  }, { runOnLimitedConnection: true })
  // wait for bob's reservation: a /p2p-circuit address of his own
  let circuit
  for (let i = 0; i < 200 && circuit == null; i++) {
    circuit = bob.getMultiaddrs().map(String).find((a) => a.includes('/p2p-circuit'))
    if (circuit == null) await new Promise((resolve) => setTimeout(resolve, 50))
  }
  if (circuit == null) throw new Error('bob got no relay reservation')
  const stream = await alice.dialProtocol(multiaddr(circuit), PROTOCOL, { runOnLimitedConnection: true })
  const sent = pattern(size, 3)
  const answer = bytes(stream, size)
  for (let offset = 0; offset < size; offset += 4096) stream.send(sent.subarray(offset, offset + 4096))
  const reply = await answer
  const connection = alice.getConnections().find((c) => c.remoteAddr.toString().includes('/p2p-circuit'))
  console.log(JSON.stringify({
    bob: bob.peerId.toString(),
    alice: alice.peerId.toString(),
    circuit,
    sent: size,
    replyBytes: reply.length,
    replyOk: Buffer.compare(reply, Buffer.from(sent).reverse()) === 0,
    limits: connection?.limits == null ? null : { bytes: String(connection.limits.bytes), seconds: connection.limits.seconds }
  }))
} finally {
  clearTimeout(timeout)
  await alice.stop()
  await bob.stop()
}
