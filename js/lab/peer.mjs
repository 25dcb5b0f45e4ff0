// A js-libp2p peer for the network lab (tests/test_lab_fleet.py): it knows only a
// rendezvous daemon. It finds the relay fleet there (findRelays), reserves on a relay,
// registers in NAMESPACE through the live dialect (its /p2p-circuit address), and
//  - as "answer": answers every hello with its own id;
//  - as "ask": waits to be pushed another peer, dials its circuit address, says hello.
// One JSON line per step on stdout; exits non-zero on failure or after 60 s.
//
//   node lab/peer.mjs DAEMON_MULTIADDR NAMESPACE ask|answer
import '../test/helpers/polyfills.js'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { liveRendezvous } from 'libp2p-live-rendezvous'

const HELLO = '/rendezvous-lab/hello/1.0.0'
const [daemon, namespace, role] = process.argv.slice(2)
const say = (record) => console.log(JSON.stringify(record))
setTimeout(() => { say({ step: 'timeout' }); process.exit(2) }, 60_000).unref()

const node = await createLibp2p({
  addresses: { listen: ['/p2p-circuit'] },
  transports: [tcp(), circuitRelayTransport()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: {
    identify: identify(),
    rendezvous: liveRendezvous({ servers: [daemon], namespaces: [namespace] })
  }
})
const rendezvous = node.services.rendezvous
rendezvous.addEventListener('error', (e) => say({ step: 'error', text: String(e.detail) }))

// One line of text from a stream (the hello protocol is one line each way).
const line = async (stream) => {
  const chunks = []
  const { promise, resolve } = Promise.withResolvers()
  stream.addEventListener('message', (event) => {
    chunks.push(Buffer.from(event.data.subarray ? event.data.subarray() : event.data))
    if (chunks.at(-1).includes(10)) resolve()
  })
  stream.addEventListener('close', () => resolve())
  await promise
  return Buffer.concat(chunks).toString().split('\n')[0]
}

await node.handle(HELLO, async (stream) => {
  const hello = await line(stream)
  say({ step: 'hello received', hello })
  stream.send(Buffer.from(`hello back from ${node.peerId}\n`))
  await stream.close()
}, { runOnLimitedConnection: true })

const reserved = new Promise((resolve) => {
  node.addEventListener('self:peer:update', () => {
    const circuit = node.getMultiaddrs().map(String).find((a) => a.includes('/p2p-circuit'))
    if (circuit) resolve(circuit)
  })
})
const relays = await rendezvous.findRelays()
say({ step: 'relays', relays: relays.map((r) => ({ id: r.id.toString(), addrs: r.multiaddrs.map(String) })) })
if (relays.length === 0) process.exit(3)
const relay = relays[0]
const dialable = relay.multiaddrs.find((a) => String(a).includes('/tcp/') && !String(a).includes('/ws'))
await node.dial(multiaddr(`${dialable}/p2p/${relay.id}`))
const circuit = await reserved
say({ step: 'reserved', id: node.peerId.toString(), circuit })

if (role === 'ask') {
  const other = await new Promise((resolve) => {
    const check = (e) => {
      const addr = e.detail.multiaddrs.map(String).find((a) => a.includes('/p2p-circuit'))
      // registered addresses name no peer: the circuit ends in the peer's id
      if (addr) resolve({ id: e.detail.id.toString(), addr: `${addr}/p2p/${e.detail.id}` })
    }
    rendezvous.addEventListener('peer', check)
    for (const member of rendezvous.members(namespace)) check({ detail: member })
  })
  say({ step: 'pushed', other })
  const stream = await node.dialProtocol(multiaddr(other.addr), HELLO, { runOnLimitedConnection: true })
  const answer = line(stream)
  stream.send(Buffer.from(`hello from ${node.peerId}\n`))
  say({ step: 'answered', answer: await answer })
  await node.stop()
  process.exit(0)
}
