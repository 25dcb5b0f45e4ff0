// js-libp2p nodes with the live rendezvous service, and a recorder of their events.
import './polyfills.js'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { webSockets } from '@libp2p/websockets'
import { createLibp2p } from 'libp2p'
import { liveRendezvous } from 'libp2p-live-rendezvous'
import { Recorder, SERVICE_EVENTS } from './recorder.js'

/**
 * A started libp2p node listening on 127.0.0.1 TCP (unless `listen` says otherwise) with
 * `services.rendezvous = liveRendezvous(init)`, and recorders of its service's events and
 * of libp2p's `peer:discovery`.
 *
 * @param {import('libp2p-live-rendezvous').LiveRendezvousInit} init
 * @param {{ listen?: string[], relay?: boolean }} [options]
 */
export async function startNode (init, { listen = ['/ip4/127.0.0.1/tcp/0'], relay = false } = {}) {
  const node = await createLibp2p({
    start: false,
    addresses: { listen },
    transports: [tcp(), webSockets(), ...(relay ? [circuitRelayTransport()] : [])],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify(), rendezvous: liveRendezvous(init) }
  })
  const events = new Recorder(node.services.rendezvous, SERVICE_EVENTS)
  const discovery = new Recorder(node, ['peer:discovery'])
  await node.start()
  return { node, rendezvous: node.services.rendezvous, events, discovery, id: node.peerId.toString() }
}
