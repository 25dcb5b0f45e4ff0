// Dial a rendezvous daemon at a /p2p multiaddr, ping and identify it, print one JSON line.
// Usage: node ping.mjs /ip4/127.0.0.1/tcp/4002[/ws]/p2p/12D3KooW...
import './polyfills.mjs'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { webSockets } from '@libp2p/websockets'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'

const target = multiaddr(process.argv[2])
const node = await createLibp2p({
  transports: [tcp(), webSockets()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify({ runOnConnectionOpen: false }), ping: ping() }
})
try {
  const connection = await node.dial(target)
  const rtt = await node.services.ping.ping(target)
  const info = await node.services.identify.identify(connection)
  const record = info.signedPeerRecord
  console.log(JSON.stringify({
    peerId: connection.remotePeer.toString(),
    rtt,
    protocols: info.protocols,
    protocolVersion: info.protocolVersion,
    agentVersion: info.agentVersion,
    listenAddrs: info.listenAddrs.map(String),
    observedAddr: info.observedAddr?.toString(),
    signedPeerRecord: record == null
      ? null
      : { seq: record.seq.toString(), addresses: record.addresses.map(String) }
  }))
} finally {
  await node.stop()
}
