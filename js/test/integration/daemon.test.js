// The service against real `twistd rendezvous` and `twistd rendezvous-relay` processes.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { RendezvousError, Status } from 'libp2p-live-rendezvous'
import { startNode } from '../helpers/nodes.js'
import { Processes } from '../helpers/processes.js'

const TIMEOUT = 60_000

/**
 * Runs `fn` with a fresh set of processes and nodes, all ended afterwards.
 *
 * @param {(ctx: { processes: Processes, node: typeof startNode }) => Promise<void>} fn
 */
async function withWorld (fn) {
  const processes = new Processes()
  /** @type {Array<{ node: import('libp2p').Libp2p }>} */
  const nodes = []
  try {
    await fn({
      processes,
      node: async (...args) => {
        const n = await startNode(...args)
        nodes.push(n)
        return n
      }
    })
  } finally {
    await Promise.all(nodes.map((n) => n.node.stop()))
    await processes.stopAll()
  }
}

/** The node's own addresses as the service registers them: without /p2p/<self>. */
const ownAddrs = (/** @type {any} */ n) =>
  n.node.getMultiaddrs().map((/** @type {any} */ a) => a.decapsulateCode(421).toString()).sort()

const ids = (/** @type {Array<{ id: any }>} */ list) => list.map((p) => p.id.toString()).sort()

describe('against a live daemon', { timeout: TIMEOUT }, () => {
  it('two nodes see each other (TCP and WebSocket), and one that stops is gone', () => withWorld(async ({ processes, node }) => {
    const daemon = await processes.daemon()
    const alice = await node({ servers: [daemon.tcp], namespaces: ['app'] })
    const bob = await node({ servers: [daemon.ws], namespaces: ['app'] })

    const [seenByAlice, seenByBob] = await Promise.all([
      alice.events.next('peer', (d) => d.id.toString() === bob.id),
      bob.events.next('peer', (d) => d.id.toString() === alice.id)
    ])
    assert.deepEqual(seenByAlice.detail.multiaddrs.map(String).sort(), ownAddrs(bob))
    assert.deepEqual(seenByBob.detail.multiaddrs.map(String).sort(), ownAddrs(alice))
    const registered = await alice.events.next('register', (d) => d.id.toString() === bob.id)
    assert.equal(registered.detail.namespace, 'app')
    // libp2p itself reports the peer found
    await alice.discovery.next('peer:discovery', (d) => d.id.toString() === bob.id)
    await bob.discovery.next('peer:discovery', (d) => d.id.toString() === alice.id)
    assert.deepEqual(ids(alice.rendezvous.members('app')), [bob.id])
    assert.equal(alice.rendezvous.server.toString(), daemon.tcp)
    const daemonPeer = await alice.node.peerStore.get(peerIdFromString(daemon.id))
    assert.equal(daemonPeer.tags.get('live-rendezvous-server')?.value, 100, 'the daemon connection is pruned last')
    assert.equal(bob.rendezvous.server.toString(), daemon.ws)
    // never oneself
    for (const n of [alice, bob]) {
      assert.equal(n.events.all('peer', (d) => d.id.toString() === n.id).length, 0)
    }

    await bob.node.stop()
    const unregistered = await alice.events.next('unregister', (d) => d.id.toString() === bob.id)
    assert.equal(unregistered.detail.namespace, 'app')
    const gone = await alice.events.next('peer:gone')
    assert.equal(gone.detail.toString(), bob.id)
    assert.deepEqual(alice.rendezvous.members('app'), [])
    assert.equal(alice.events.all('error').length, 0)
  }))

  it('a refusal by the daemon is one typed error event, and the rest goes on', () => withWorld(async ({ processes, node }) => {
    const daemon = await processes.daemon()
    const tooLong = 'x'.repeat(300)
    const bob = await node({ servers: [daemon.tcp], namespaces: ['app'] })
    const alice = await node({ servers: [daemon.tcp], namespaces: [tooLong, 'app'] })
    const { detail: err } = await alice.events.next('error')
    assert.ok(err instanceof RendezvousError)
    assert.equal(err.status, Status.E_INVALID_NAMESPACE)
    assert.equal(err.namespace, tooLong)
    assert.equal(err.operation, 'register')
    assert.match(err.text, /./)
    // the good namespace works: bob sees alice; and a DISCOVER answered after it all
    // shows the REGISTER, RENDEZVOUS and DISCOVER refused in that namespace were one event
    await bob.events.next('peer', (d) => d.id.toString() === alice.id)
    assert.deepEqual(ids(await alice.rendezvous.discover('app')), [bob.id])
    assert.equal(alice.events.all('error').length, 1)
    // a refused discover() rejects (and is an error event too)
    await assert.rejects(alice.rendezvous.discover(''), (e) => e instanceof RendezvousError && e.status === 100 && e.operation === 'discover')
    assert.equal(alice.events.all('error').length, 2)
    assert.equal(alice.events.all('server:lost').length, 0)
  }))

  it('fails over to the next daemon, registers and follows again, and reconciles its view', () => withWorld(async ({ processes, node }) => {
    const [first, second] = await Promise.all([processes.daemon(), processes.daemon()])
    const backoff = { initial: 50, cap: 200 }
    const bob = await node({ servers: [first.tcp], namespaces: ['app'], backoff }) // only at the first
    const carol = await node({ servers: [second.ws], namespaces: ['app'], backoff }) // only at the second
    const alice = await node({ servers: [first.tcp, second.tcp], namespaces: ['app'], backoff })
    await alice.events.next('register', (d) => d.id.toString() === bob.id)
    assert.deepEqual(ids(alice.rendezvous.members('app')), [bob.id])
    const before = alice.events.events.length

    await first.process.kill()
    const lost = await alice.events.next('server:lost', () => true, { from: before })
    assert.equal(lost.detail.server.toString(), first.tcp)
    assert.ok(lost.detail.retryInMs >= 0 && lost.detail.retryInMs < 50, String(lost.detail.retryInMs))
    assert.equal(typeof lost.detail.reason, 'string')
    const connected = await alice.events.next('server:connected', () => true, { from: before })
    assert.equal(connected.detail.server.toString(), second.tcp)
    // the fresh snapshot has carol and not bob
    const gone = await alice.events.next('peer:gone', () => true, { from: before })
    assert.equal(gone.detail.toString(), bob.id)
    await alice.events.next('unregister', (d) => d.id.toString() === bob.id && d.namespace === 'app', { from: before })
    await alice.events.next('register', (d) => d.id.toString() === carol.id, { from: before })
    assert.deepEqual(ids(alice.rendezvous.members('app')), [carol.id])
    // and alice registered at the second daemon: carol sees her
    await carol.events.next('peer', (d) => d.id.toString() === alice.id)
    assert.equal(alice.events.all('register', (d) => d.id.toString() === bob.id).length, 1)
  }))

  it('retries a daemon that is down with capped backoff, not a busy loop', () => withWorld(async ({ processes, node }) => {
    const daemon = await processes.daemon()
    await daemon.process.kill()
    const alice = await node({
      servers: [daemon.tcp],
      namespaces: ['app'],
      backoff: { initial: 40, cap: 160, random: () => 0.999 }
    })
    const lost = []
    for (let i = 0; i < 5; i++) lost.push(await alice.events.next('server:lost', () => true, { from: i }))
    // windows 40, 80, 160 and then the cap, each also at most the outage so far (at
    // least 40), so the delays grow with the outage up to the cap
    const delays = lost.map((e) => e.detail.retryInMs)
    const ceilings = [40, 80, 160, 160, 160]
    for (let i = 0; i < delays.length; i++) {
      assert.ok(delays[i] < ceilings[i], `delay ${i} is ${delays[i]} ms, over ${ceilings[i]}`)
      const outage = lost[i].at - lost[0].at
      assert.ok(delays[i] <= Math.max(40, outage + 5), `delay ${i} is ${delays[i]} ms, ${outage} ms into the outage`)
      if (i > 0) assert.ok(delays[i] >= delays[i - 1], `delays shrank: ${delays}`)
    }
    assert.deepEqual(delays.slice(-2), [159, 159], 'the outage is past the cap by then')
    for (let i = 1; i < lost.length; i++) {
      const waited = lost[i].at - lost[i - 1].at
      assert.ok(waited >= lost[i - 1].detail.retryInMs - 2, `attempt ${i} came after ${waited} ms, before its ${lost[i - 1].detail.retryInMs} ms delay`)
    }
    assert.equal(alice.events.all('server:connected').length, 0)
  }))

  it('finds the relay, and re-registers when a reservation adds /p2p-circuit addresses', () => withWorld(async ({ processes, node }) => {
    const daemon = await processes.daemon()
    const relay = await processes.relay(daemon.tcp)
    await relay.process.waitFor(/registered in rendezvous\/relays at /)
    const bob = await node({ servers: [daemon.tcp], namespaces: ['app'] })
    const alice = await node({ servers: [daemon.ws], namespaces: ['app'] }, {
      listen: ['/ip4/127.0.0.1/tcp/0', '/p2p-circuit'],
      relay: true
    })
    await bob.events.next('register', (d) => d.id.toString() === alice.id)

    const relays = await alice.rendezvous.findRelays()
    assert.deepEqual(ids(relays), [relay.id])
    const relayAddrs = relays[0].multiaddrs.map(String)
    for (const want of [relay.tcp, relay.ws]) assert.ok(relayAddrs.includes(want.split('/p2p/')[0]), `${want} in ${relayAddrs}`)

    // a reservation at the relay: alice's addresses change and she registers them again
    await alice.node.dial(multiaddr(relay.tcp))
    const update = await bob.events.next('register', (d) => d.id.toString() === alice.id &&
      d.multiaddrs.some((/** @type {any} */ a) => a.toString().includes('/p2p-circuit')))
    const registered = update.detail.multiaddrs.map(String)
    assert.ok(registered.includes(`${relay.tcp}/p2p-circuit`), registered.join(' '))
    assert.ok(registered.every((/** @type {string} */ a) => !a.endsWith(`/p2p/${alice.id}`)), registered.join(' '))
    assert.equal(bob.events.all('peer:gone').length, 0)
  }))

  it('a node with no address yet (as in a browser) follows at once and registers once a relay gives it one', () => withWorld(async ({ processes, node }) => {
    const daemon = await processes.daemon()
    const relay = await processes.relay(daemon.tcp)
    await relay.process.waitFor(/registered in rendezvous\/relays at /)
    const bob = await node({ servers: [daemon.tcp], namespaces: ['app'] })
    const carol = await node({ servers: [daemon.ws], namespaces: ['app'] }, { listen: ['/p2p-circuit'], relay: true })
    assert.deepEqual(carol.node.getMultiaddrs(), [])
    await carol.events.next('register', (d) => d.id.toString() === bob.id)
    // carol's session is open and she follows 'app', but registered nothing
    assert.deepEqual(ids(await carol.rendezvous.discover('app')), [bob.id])
    assert.deepEqual(ids(await bob.rendezvous.discover('app')), [])

    const [found] = await carol.rendezvous.findRelays()
    await carol.node.dial(found.multiaddrs.map((a) => a.encapsulate(`/p2p/${found.id}`)))
    const seen = await bob.events.next('peer', (d) => d.id.toString() === carol.id)
    const registered = seen.detail.multiaddrs.map(String)
    assert.ok(registered.length > 0 && registered.every((/** @type {string} */ a) => a.includes(`/p2p/${relay.id}/p2p-circuit`)), registered.join(' '))
    assert.equal(carol.events.all('error').length, 0)
  }))
})
