// Not run: `npm run check` type-checks this use of the public API against index.d.ts.
import { createLibp2p } from 'libp2p'
import { liveRendezvous, RendezvousError, type LiveRendezvous } from 'libp2p-live-rendezvous'

export async function example (): Promise<void> {
  const node = await createLibp2p({
    services: {
      rendezvous: liveRendezvous({ servers: ['/ip4/127.0.0.1/tcp/4002/ws/p2p/12D3KooWCKqmEFxLaxGVVBnFuS7k4BMGrQBaMuMA3fND1Bt8ktWK'], namespaces: ['app'] })
    }
  })
  const rendezvous: LiveRendezvous = node.services.rendezvous
  rendezvous.addEventListener('peer', (evt) => { console.log(evt.detail.id.toString(), evt.detail.multiaddrs.map(String)) })
  rendezvous.addEventListener('peer:gone', (evt) => { console.log(evt.detail.toString()) })
  rendezvous.addEventListener('register', (evt) => { console.log(evt.detail.namespace) })
  rendezvous.addEventListener('unregister', (evt) => { console.log(evt.detail.namespace, evt.detail.id) })
  rendezvous.addEventListener('server:connected', (evt) => { console.log(evt.detail.server.toString()) })
  rendezvous.addEventListener('server:lost', (evt) => { console.log(evt.detail.reason, evt.detail.retryInMs) })
  rendezvous.addEventListener('error', (evt) => {
    const err: RendezvousError = evt.detail
    console.log(err.status, err.text, err.namespace)
  })
  const relays = await rendezvous.findRelays({ timeout: 1000 })
  console.log(relays.map((r) => r.id.toString()), rendezvous.members('app').length)
}
