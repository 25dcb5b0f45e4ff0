// A js-libp2p 2.x rendezvous server (@canvas-js/libp2p-rendezvous, in-memory) on loopback
// until killed. Prints `listening on <multiaddr>/p2p/<peer-id>` once ready.
// Usage: node server.mjs [PROTOCOL]   (canvas's own id by default)
import './polyfills.mjs'
import { RendezvousServer, rendezvousServer } from '@canvas-js/libp2p-rendezvous/server'
import { node } from './node.mjs'

const [protocol] = process.argv.slice(2)
if (protocol) RendezvousServer.protocol = protocol
const server = await node({ rendezvous: rendezvousServer({ path: null }) })
for (const addr of server.getMultiaddrs()) console.log(`listening on ${addr}`)
const stop = async () => { await server.stop(); process.exit(0) }
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
