// @canvas-js/libp2p-rendezvous clients against a rendezvous server, unchanged but for
// the protocol id (canvas's own by default). Prints one JSON line of what they saw.
// Usage: node client.mjs TARGET [PROTOCOL] [full|register] [NAMESPACE] [TTL]
//   full:     alice and bob register; bob discovers alice; a refused TTL; alice
//             unregisters and bob no longer discovers her.
//   register: alice registers once with TTL and exits (her registration stays).
import './polyfills.mjs'
import { RendezvousClient, rendezvousClient } from '@canvas-js/libp2p-rendezvous/client'
import { multiaddr } from '@multiformats/multiaddr'
import { node } from './node.mjs'

const [target, protocol, mode = 'full', ns = 'canvas-app', ttlText = '0'] = process.argv.slice(2)
if (protocol) RendezvousClient.protocol = protocol
const server = multiaddr(target)
const ttl = Number(ttlText) || null
const services = { rendezvous: rendezvousClient({ autoDiscover: false }) }
const ids = (peers) => peers.map((p) => ({ id: p.id.toString(), addrs: p.addresses.map((a) => a.multiaddr.toString()) }))

const alice = await node(services)
const result = { alice: alice.peerId.toString(), aliceAddrs: alice.getMultiaddrs().map(String) }
result.aliceTtl = (await alice.services.rendezvous.connect(server, (point) => point.register(ns, { ttl }))).ttl
if (mode === 'full') {
  const bob = await node(services)
  result.bob = bob.peerId.toString()
  await bob.services.rendezvous.connect(server, async (point) => {
    result.bobTtl = (await point.register(ns, { ttl })).ttl
    result.discovered = ids(await point.discover(ns))
    try {
      await point.register(ns, { ttl: 100 * 24 * 3600 })
      result.badTtl = 'accepted'
    } catch (err) {
      result.badTtl = err.message
    }
  })
  await alice.services.rendezvous.connect(server, async (point) => {
    await point.unregister(ns)
    await point.discover(ns) // the client drops a lone UNREGISTER when the stream closes at once
  })
  result.afterUnregister = await bob.services.rendezvous.connect(server, async (point) => ids(await point.discover(ns)))
  await bob.stop()
}
await alice.stop()
console.log(JSON.stringify(result))
process.exit(0)
