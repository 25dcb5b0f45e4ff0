// A js-libp2p peer with identify and ping that listens on loopback until killed.
// Prints `listening on <multiaddr>/p2p/<peer-id>` once ready. `node listen.mjs ws` listens
// on a WebSocket (`/ws`) instead of plain TCP.
import './polyfills.mjs'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { webSockets } from '@libp2p/websockets'
import { createLibp2p } from 'libp2p'

const ws = process.argv[2] === 'ws'
const node = await createLibp2p({
  addresses: { listen: [ws ? '/ip4/127.0.0.1/tcp/0/ws' : '/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp(), webSockets()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify(), ping: ping() }
})
for (const addr of node.getMultiaddrs()) console.log(`listening on ${addr}`)
const stop = async () => { await node.stop(); process.exit(0) }
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
