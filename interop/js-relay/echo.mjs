// A js-libp2p peer speaking /rendezvous-test/echo/1.0.0 over circuit relay v2.
//   node echo.mjs listen <relay-multiaddr>/p2p/<relay-id>
//     reserves on the relay, echoes every stream, prints `listening on <circuit-addr>`.
//   node echo.mjs dial <circuit-multiaddr> BYTES
//     dials through the relay, sends BYTES, waits for them back; prints one JSON line.
import './polyfills.mjs'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { webSockets } from '@libp2p/websockets'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'

const PROTOCOL = '/rendezvous-test/echo/1.0.0'
const [mode, address, bytes] = process.argv.slice(2)
const node = await createLibp2p({
  addresses: { listen: mode === 'listen' ? [`${address}/p2p-circuit`] : [] },
  transports: [tcp(), webSockets(), circuitRelayTransport()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify() }
})

if (mode === 'listen') {
  await node.handle(PROTOCOL, (stream) => {
    stream.addEventListener('message', (event) => {
      stream.send(event.data.subarray ? event.data.subarray() : event.data)
    })
  }, { runOnLimitedConnection: true })
  let circuit
  for (let i = 0; i < 200 && circuit == null; i++) {
    circuit = node.getMultiaddrs().map(String).find((a) => a.includes('/p2p-circuit'))
    if (circuit == null) await new Promise((resolve) => setTimeout(resolve, 50))
  }
  if (circuit == null) { console.error('no reservation'); process.exit(3) }
  console.log(`listening on ${circuit}`)
  const stop = async () => { await node.stop(); process.exit(0) }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
} else {
  const timeout = setTimeout(() => { console.error('timed out'); process.exit(2) }, 30000)
  const size = Number(bytes)
  const sent = Buffer.from(Array.from({ length: size }, (_, i) => (i * 13 + 5) % 251))
  try {
    const stream = await node.dialProtocol(multiaddr(address), PROTOCOL, { runOnLimitedConnection: true })
    const { promise, resolve } = Promise.withResolvers()
    const chunks = []
    let length = 0
    stream.addEventListener('message', (event) => {
      const data = event.data.subarray ? event.data.subarray() : event.data
      chunks.push(data)
      length += data.length
      if (length >= size) resolve(Buffer.concat(chunks))
    })
    stream.addEventListener('close', () => resolve(Buffer.concat(chunks)))
    for (let offset = 0; offset < size; offset += 4096) stream.send(sent.subarray(offset, offset + 4096))
    const echoed = await promise
    const connection = node.getConnections().find((c) => c.remoteAddr.toString().includes('/p2p-circuit'))
    console.log(JSON.stringify({
      peer: node.peerId.toString(),
      remote: connection?.remotePeer.toString(),
      echoedOk: Buffer.compare(echoed, sent) === 0
    }))
  } finally {
    clearTimeout(timeout)
    await node.stop()
  }
}
