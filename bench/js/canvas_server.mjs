// Baseline for bench/libp2p_path.py: the @canvas-js/libp2p-rendezvous server (in-memory)
// on js-libp2p 2.x, with the connection manager's per-host inbound rate limit and caps
// raised so the load generator measures the server, not the limiter.
// Run from interop/js-canvas (ES modules resolve packages from there):
//   node --input-type=module -e "$(cat bench/js/canvas_server.mjs)" [PROTOCOL]
import './polyfills.mjs'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { RendezvousServer, rendezvousServer } from '@canvas-js/libp2p-rendezvous/server'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { createLibp2p } from 'libp2p'

const [protocol] = process.argv.slice(1).filter((a) => a.startsWith('/'))
if (protocol) RendezvousServer.protocol = protocol
const server = await createLibp2p({
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  connectionManager: {
    maxConnections: 1000000,
    inboundConnectionThreshold: 1000000,
    maxIncomingPendingConnections: 100000
  },
  services: { identify: identify(), rendezvous: rendezvousServer({ path: null }) }
})
for (const addr of server.getMultiaddrs()) console.log(`listening on ${addr}`)
const stop = async () => { await server.stop(); process.exit(0) }
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
