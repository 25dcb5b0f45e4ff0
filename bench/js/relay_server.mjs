// Baseline for bench/relay_path.py: a js-libp2p 3.x circuit relay v2 server with no data
// or duration limit on circuits and the connection manager's inbound rate limit raised.
// Run from interop/js-relay (ES modules resolve packages from there):
//   node --input-type=module -e "$(cat bench/js/relay_server.mjs)"
import './polyfills.mjs'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { circuitRelayServer } from '@libp2p/circuit-relay-v2'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { createLibp2p } from 'libp2p'

const node = await createLibp2p({
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  connectionManager: {
    maxConnections: 100000,
    inboundConnectionThreshold: 100000,
    maxIncomingPendingConnections: 10000
  },
  services: {
    identify: identify(),
    relay: circuitRelayServer({
      maxInboundHopStreams: 1024,
      maxOutboundStopStreams: 1024,
      reservations: { maxReservations: 1024, applyDefaultLimit: false }
    })
  }
})
for (const addr of node.getMultiaddrs()) console.log(`listening on ${addr}`)
const stop = async () => { await node.stop(); process.exit(0) }
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
