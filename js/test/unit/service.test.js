// The service over fake components, streams and timers: every message it sends and every
// event it emits, for crafted daemon input.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { peerDiscoverySymbol } from '@libp2p/interface'
import { MessageType, PROTOCOL, RendezvousError, Status, encodeVarint, frame } from 'libp2p-live-rendezvous'
import { multiaddr } from '@multiformats/multiaddr'
import { entry, fakeService, IDS, SERVER_A, SERVER_B, settle } from '../helpers/fakes.js'

const { REGISTER, UNREGISTER, RENDEZVOUS, DISCOVER, ERROR } = MessageType

/** A service with its session open at server A (snapshots not yet answered). */
async function connected (/** @type {Parameters<typeof fakeService>[0]} */ init) {
  const world = fakeService(init)
  world.service.afterStart()
  await settle()
  assert.ok(world.components.stream, 'a stream was opened')
  return world
}

/** Answers the snapshot DISCOVER (the sync barrier) of `ns` on `stream`. */
function endSnapshot (/** @type {import('../helpers/fakes.js').FakeStream} */ stream, ns = 'app') {
  const sync = stream.sent.find((m) => m.type === DISCOVER && m.discovery?.[0].ns === ns && m.discovery?.[0].limit === 1)
  assert.ok(sync, `a snapshot DISCOVER for ${ns} was sent`)
  stream.push({ type: REGISTER, register: [], requestId: sync.requestId })
}

/** The namespace a request is about. @param {import('libp2p-live-rendezvous').WireMessage} m */
const nsOf = (m) => [...(m.register ?? []), ...(m.unregister ?? []), ...(m.rendezvous ?? []), ...(m.discovery ?? [])][0]?.ns

const idsOf = (/** @type {Array<{ detail: any }>} */ events) => events.map((e) => String(e.detail.id ?? e.detail))

describe('the service', () => {
  it('is a libp2p peer discovery module', () => {
    const { service } = fakeService()
    assert.equal(service[peerDiscoverySymbol], service)
    assert.equal(Object.prototype.toString.call(service), '[object libp2p-live-rendezvous]')
  })

  it('refuses bad options clearly', () => {
    assert.throws(() => fakeService({ servers: [] }), /at least one daemon/)
    assert.throws(() => fakeService({ servers: ['/ip4/127.0.0.1/tcp/4002'] }), /must end in \/p2p/)
    assert.throws(() => fakeService({ servers: ['nonsense'] }), /not a multiaddr/)
    assert.throws(() => fakeService({ namespaces: /** @type {any} */ ('app') }), /array of strings/)
    assert.throws(() => fakeService({ backoff: { initial: 0 } }), /backoff.initial/)
    assert.throws(() => fakeService({ backoff: { initial: 100, cap: 10 } }), /backoff.cap/)
  })

  it('registers its addresses, enters rendezvous and asks for the end of the snapshot', async () => {
    const { components, events } = await connected({ namespaces: ['app', 'chat'] })
    assert.deepEqual(components.dials, [{ target: SERVER_A, force: false }])
    assert.deepEqual(components.merged, [[IDS.serverA, { tags: { 'live-rendezvous-server': { value: 100 } } }]])
    const stream = components.stream
    assert.equal(stream.protocol, PROTOCOL)
    assert.deepEqual(stream.sent.map((m) => [m.type, nsOf(m)]), [
      [REGISTER, 'app'], [REGISTER, 'chat'], [RENDEZVOUS, 'app'], [DISCOVER, 'app'], [RENDEZVOUS, 'chat'], [DISCOVER, 'chat']
    ])
    const register = stream.sent[0].register?.[0]
    assert.equal(register?.peer?.id, IDS.self)
    assert.deepEqual(register?.peer?.addrs.map((a) => multiaddr(a).toString()), ['/ip4/127.0.0.1/tcp/5000', '/ip4/127.0.0.1/tcp/5001/ws'])
    const requestIds = stream.sent.map((m) => m.requestId)
    assert.equal(new Set(requestIds).size, requestIds.length, 'every request has its own request_id')
    assert.equal(stream.sent[3].discovery?.[0].limit, 1)
    assert.deepEqual(events.all('server:connected').map((e) => e.detail.server.toString()), [SERVER_A])
  })

  it('reports a snapshot once it is complete, then pushes; never itself', async () => {
    const { components, events, service } = await connected({ namespaces: ['app', 'chat'] })
    const stream = components.stream
    stream.push({ type: REGISTER, register: [entry('app', IDS.p), entry('app', IDS.self)] })
    assert.equal(events.all('peer').length, 0, 'nothing before the snapshot ends')
    stream.push({ type: REGISTER, register: [entry('app', IDS.q, ['/ip4/192.0.2.2/tcp/1', '/ip4/192.0.2.2/tcp/2/ws'])] })
    endSnapshot(stream, 'app')
    endSnapshot(stream, 'chat')
    assert.deepEqual(idsOf(events.all('peer')), [IDS.p, IDS.q])
    assert.deepEqual(events.all('register').map((e) => [e.detail.namespace, String(e.detail.id), e.detail.multiaddrs.map(String)]), [
      ['app', IDS.p, ['/ip4/192.0.2.1/tcp/4001']],
      ['app', IDS.q, ['/ip4/192.0.2.2/tcp/1', '/ip4/192.0.2.2/tcp/2/ws']]
    ])
    assert.deepEqual(service.members('app').map((m) => String(m.id)), [IDS.p, IDS.q])
    assert.deepEqual(service.members('nope'), [])

    // pushes: a new peer, the same registration again (nothing), new addresses, leaving
    stream.push({ type: REGISTER, register: [entry('chat', IDS.p)] })
    stream.push({ type: REGISTER, register: [entry('app', IDS.p)] })
    stream.push({ type: REGISTER, register: [entry('app', IDS.q, ['/ip4/192.0.2.2/tcp/3'])] })
    stream.push({ type: REGISTER, register: [entry('other', IDS.r)] })
    assert.deepEqual(events.all('register').slice(2).map((e) => [e.detail.namespace, String(e.detail.id)]), [['chat', IDS.p], ['app', IDS.q]])
    assert.deepEqual(events.all('peer').at(-1)?.detail.multiaddrs.map(String), ['/ip4/192.0.2.2/tcp/3'])

    stream.push({ type: UNREGISTER, unregister: [entry('app', IDS.p)] })
    assert.deepEqual(events.all('unregister').map((e) => [e.detail.namespace, String(e.detail.id)]), [['app', IDS.p]])
    assert.equal(events.all('peer:gone').length, 0, 'p is still in chat')
    stream.push({ type: UNREGISTER, unregister: [entry('chat', IDS.p, [])] })
    assert.deepEqual(idsOf(events.all('peer:gone')), [IDS.p])
    stream.push({ type: UNREGISTER, unregister: [entry('chat', IDS.p, [])] })
    assert.equal(events.all('unregister').length, 2, 'unknown peers leave no trace')
    assert.equal(events.all('peer', (d) => String(d.id) === IDS.self).length, 0)
  })

  it('asks again to register when refused as another session\'s (its own, on a dead fleet member)', async () => {
    const { components, timers } = await connected()
    const stream = components.stream
    const register = stream.sent.find((m) => m.type === REGISTER)
    assert.ok(register)
    const pending = timers.pending.size
    stream.push({ type: ERROR, error: { status: 200, text: 'peer id is registered by another session' }, requestId: register.requestId })
    assert.equal(timers.pending.size, pending + 1, 'a retry is scheduled')
    const before = stream.sent.filter((m) => m.type === REGISTER).length
    let fired = 0
    while (stream.sent.filter((m) => m.type === REGISTER).length === before && timers.fireNext()) fired++
    assert.ok(fired > 0)
    assert.deepEqual(nsOf(stream.sent.at(-1) ?? {}), 'app')
    assert.equal(stream.sent.at(-1)?.type, REGISTER)
  })

  it('registers only with addresses: again when they change, away when none are left', async () => {
    const { components, service } = fakeService()
    components.addresses = []
    service.afterStart()
    await settle()
    const stream = components.stream
    assert.deepEqual(stream.sent.map((m) => m.type), [RENDEZVOUS, DISCOVER], 'no REGISTER of an empty list')
    const circuit = `/ip4/192.0.2.7/tcp/4010/p2p/${IDS.p}/p2p-circuit`
    components.setAddresses([`${circuit}/p2p/${IDS.self}`, `/ip4/127.0.0.1/tcp/6000/p2p/${IDS.self}`])
    const register = stream.sent.at(-1)
    assert.equal(register?.type, REGISTER)
    assert.deepEqual(register?.register?.map((e) => [e.ns, e.peer?.id, e.peer?.addrs.map((a) => multiaddr(a).toString())]),
      [['app', IDS.self, [circuit, '/ip4/127.0.0.1/tcp/6000']]])
    const sent = stream.sent.length
    components.setAddresses([`/ip4/127.0.0.1/tcp/6000/p2p/${IDS.self}`, `${circuit}/p2p/${IDS.self}`])
    assert.equal(stream.sent.length, sent, 'the same addresses are not registered again')
    components.setAddresses([`/ip4/127.0.0.1/tcp/6000/p2p/${IDS.self}`])
    assert.deepEqual(stream.sent.at(-1)?.register?.[0].peer?.addrs.map((a) => multiaddr(a).toString()), ['/ip4/127.0.0.1/tcp/6000'])
    components.setAddresses([])
    assert.deepEqual(stream.sent.at(-1), { type: UNREGISTER, register: [], unregister: [{ ns: 'app', peer: { id: IDS.self, addrs: [] } }], rendezvous: [], discovery: [], requestId: stream.sent.at(-1)?.requestId })
    assert.equal(stream.sent.length, sent + 2)
  })

  it('turns each ERROR into one typed error event', async () => {
    const tooLong = 'x'.repeat(300)
    const { components, events } = await connected({ namespaces: [tooLong, 'app'] })
    const stream = components.stream
    const forNs = stream.sent.filter((m) => nsOf(m) === tooLong)
    assert.deepEqual(forNs.map((m) => m.type), [REGISTER, RENDEZVOUS, DISCOVER])
    for (const m of forNs) {
      stream.push({ type: ERROR, error: { status: 100, text: 'invalid namespace' }, requestId: m.requestId })
    }
    const errors = events.all('error')
    assert.equal(errors.length, 1)
    const err = errors[0].detail
    assert.ok(err instanceof RendezvousError)
    assert.deepEqual([err.status, err.text, err.namespace, err.operation, err.server], [100, 'invalid namespace', tooLong, 'register', SERVER_A])
    assert.match(err.message, /refused register in "x+": invalid namespace \(status 100\)/)
    // an ERROR about the session itself, and one of another status, are reported too
    stream.push({ type: ERROR, error: { status: Status.E_UNAVAILABLE, text: 'too slow' } })
    assert.deepEqual(events.all('error').map((e) => [e.detail.status, e.detail.namespace]), [[100, tooLong], [400, undefined]])
    // the refused namespace's snapshot counts as done: the good one still reports
    stream.push({ type: REGISTER, register: [entry('app', IDS.p)] })
    endSnapshot(stream, 'app')
    assert.deepEqual(idsOf(events.all('peer')), [IDS.p])
    assert.equal(stream.status, 'open')
    // a later request refused again is a new event
    components.setAddresses([`/ip4/127.0.0.1/tcp/6000/p2p/${IDS.self}`])
    const again = stream.sent.filter((m) => m.type === REGISTER && nsOf(m) === tooLong).at(-1)
    assert.notEqual(again?.requestId, forNs[0].requestId)
    stream.push({ type: ERROR, error: { status: 100, text: 'invalid namespace' }, requestId: again?.requestId })
    assert.deepEqual(events.all('error').map((e) => [e.detail.status, e.detail.operation]), [[100, 'register'], [400, undefined], [100, 'register']])
  })

  it('drops a malformed message with one warning and goes on', async (t) => {
    const warn = t.mock.method(console, 'warn', () => {})
    const { components, events } = await connected()
    const stream = components.stream
    endSnapshot(stream)
    stream.receive(frame(Uint8Array.of(0x12, 0x05, 0x0a))) // a field past the end
    assert.equal(warn.mock.callCount(), 1)
    assert.match(String(warn.mock.calls[0].arguments[0]), /dropped a malformed message/)
    stream.receive(frame(Uint8Array.of(0x08, 0x09))) // type 9
    assert.equal(warn.mock.callCount(), 2)
    // one bad entry (an invalid peer id, an invalid address) among good ones: one warning, the rest kept
    stream.push({
      type: REGISTER,
      register: [entry('app', 'not-a-peer-id'), { ns: 'app', peer: { id: IDS.q, addrs: [Uint8Array.of(0xff, 0xff, 0xff)] } }, entry('app', IDS.p)]
    })
    assert.equal(warn.mock.callCount(), 3)
    assert.match(String(warn.mock.calls[2].arguments[0]), /invalid peer id.*invalid address/)
    assert.deepEqual(idsOf(events.all('peer')), [IDS.q, IDS.p])
    assert.equal(stream.status, 'open')
    assert.equal(events.all('server:lost').length, 0)
  })

  it('ends a session whose bytes cannot be framed, and tries the next server', async () => {
    const { components, events, timers } = await connected()
    components.stream.receive(Uint8Array.of(...encodeVarint(64 * 1024 * 1024)))
    assert.equal(components.streams[0].status, 'aborted')
    const [lost] = events.all('server:lost')
    assert.equal(lost.detail.server.toString(), SERVER_A)
    assert.match(lost.detail.reason, /unframeable/)
    assert.equal(lost.detail.retryInMs, 125)
    assert.deepEqual(timers.delays, [125])
    timers.fireNext()
    await settle()
    assert.deepEqual(components.dials.map((d) => d.target), [SERVER_A, SERVER_B])
  })

  it('fails over to the next server and reconciles its view with the fresh snapshot', async () => {
    const { components, events, timers, service } = await connected()
    const first = components.stream
    first.push({ type: REGISTER, register: [entry('app', IDS.p), entry('app', IDS.q)] })
    endSnapshot(first)
    assert.deepEqual(idsOf(events.all('peer')), [IDS.p, IDS.q])
    const before = events.events.length

    first.die('connection reset by peer')
    const lost = events.all('server:lost')
    assert.deepEqual(lost.map((e) => [String(e.detail.server), e.detail.reason, e.detail.retryInMs]), [[SERVER_A, 'connection reset by peer', 125]])
    timers.fireNext()
    await settle()
    const second = components.stream
    assert.notEqual(second, first)
    assert.deepEqual(components.dials.map((d) => d.target), [SERVER_A, SERVER_B])
    assert.deepEqual(second.sent.map((m) => m.type), [REGISTER, RENDEZVOUS, DISCOVER], 'registers and follows again')
    // the old view stands until the new snapshot is complete: q unchanged, r new, p gone
    second.push({ type: REGISTER, register: [entry('app', IDS.q), entry('app', IDS.r)] })
    second.push({ type: REGISTER, register: [entry('app', IDS.p)] })
    second.push({ type: UNREGISTER, unregister: [entry('app', IDS.p)] }) // p left meanwhile
    assert.equal(events.events.length, before + 2, 'only server:lost and server:connected so far')
    endSnapshot(second)
    const after = events.events.slice(before + 2)
    assert.deepEqual(after.map((e) => [e.type, String(e.detail.id ?? e.detail)]), [
      ['unregister', IDS.p], ['peer:gone', IDS.p], ['register', IDS.r], ['peer', IDS.r]
    ])
    assert.deepEqual(service.members('app').map((m) => String(m.id)), [IDS.q, IDS.r])
    // a stale push on the dead stream changes nothing
    first.push({ type: REGISTER, register: [entry('app', IDS.p)] })
    assert.equal(events.all('register', (d) => String(d.id) === IDS.p).length, 1)
  })

  it('backs off exponentially with full jitter up to the cap while daemons are down, alternating servers', async () => {
    const draws = [0.5, 0.999, 0, 0.25, 0.999, 0.999, 0.999]
    const { components, events, timers, service } = fakeService({ backoff: { initial: 100, cap: 1000, random: () => draws.shift() ?? 0.5 } })
    components.script = Array.from({ length: 7 }, () => () => new Error('ECONNREFUSED'))
    service.afterStart()
    await settle()
    for (let i = 0; i < 6; i++) {
      assert.equal(timers.pending.size, 1, 'one attempt waits at a time')
      assert.ok(timers.fireNext())
      await settle()
    }
    // ceilings 100, 200, 400, 800, then the cap, each at most the outage so far (at
    // least 100): 100 at 0 ms, 100 at 50, 149 at 149 (twice), 186, 371, 741
    assert.deepEqual(timers.delays, [50, 99, 0, 37, 185, 370, 740])
    assert.deepEqual(events.all('server:lost').map((e) => e.detail.retryInMs), timers.delays)
    assert.deepEqual(events.all('server:lost').map((e) => e.detail.reason), Array(7).fill('ECONNREFUSED'))
    assert.deepEqual(components.dials.map((d) => d.target), [SERVER_A, SERVER_B, SERVER_A, SERVER_B, SERVER_A, SERVER_B, SERVER_A])
    assert.equal(timers.now(), 50 + 99 + 0 + 37 + 185 + 370)
    // a session that completes its snapshot starts the backoff afresh
    timers.fireNext()
    await settle()
    assert.equal(components.dials.at(-1)?.target, SERVER_B)
    endSnapshot(components.stream)
    components.stream.die()
    assert.equal(events.all('server:lost').at(-1)?.detail.retryInMs, 50)
    // one that fails before its snapshot does not (attempt 1: a window of 200, bounded
    // by the 50 ms this outage has lasted, and at least 100)
    timers.fireNext()
    await settle()
    components.stream.die()
    assert.equal(events.all('server:lost').at(-1)?.detail.retryInMs, 50)
  })

  it('bounds each delay by how long the daemons have been unreachable', async () => {
    const { components, timers, service } = fakeService({ backoff: { initial: 10, cap: 100_000, random: () => 0.999 } })
    components.script = Array.from({ length: 8 }, () => () => new Error('ECONNREFUSED'))
    service.afterStart()
    await settle()
    for (let i = 0; i < 7; i++) {
      assert.ok(timers.fireNext())
      await settle()
    }
    // windows 10, 20, 40, ... each at most the outage so far (at least 10): the delays
    // keep up with the outage instead of running ahead of it
    assert.deepEqual(timers.delays, [9, 9, 17, 34, 68, 136, 272, 544])
    assert.equal(timers.now(), 9 + 9 + 17 + 34 + 68 + 136 + 272)
  })

  it('sends a dial over a relayed connection again, forced direct', async () => {
    const world = fakeService()
    world.components.script = [() => ({ limits: { bytes: 1n } }), () => ({})]
    world.service.afterStart()
    await settle()
    assert.deepEqual(world.components.dials, [{ target: SERVER_A, force: false }, { target: SERVER_A, force: true }])
    assert.equal(world.components.streams.length, 1)
  })

  it('stop() ends everything at once', async () => {
    const { components, events, timers, service } = await connected()
    const pending = service.findRelays()
    components.stream.die()
    assert.equal(timers.pending.size, 2, 'the retry and the discover timeout')
    service.stop()
    assert.equal(timers.pending.size, 0)
    await assert.rejects(pending, /stopped/)
    assert.equal(timers.fireNext(), false)
    await settle()
    assert.equal(components.dials.length, 1)
    assert.equal(events.all('server:lost').length, 1)
    assert.equal(service.isStarted(), false)
  })

  it('stop() closes the open stream and leaves no timer', async () => {
    const { components, timers, service, events } = await connected()
    endSnapshot(components.stream)
    service.stop()
    assert.equal(components.stream.status, 'aborted')
    assert.equal(timers.pending.size, 0)
    assert.equal(events.all('server:lost').length, 0)
  })
})

describe('findRelays() and discover()', () => {
  it('DISCOVER in the relay namespace, answered by request_id', async () => {
    const { components, service } = await connected({ relayNamespace: 'relays/test' })
    const found = service.findRelays()
    const request = components.stream.lastSent(DISCOVER)
    assert.deepEqual(request?.discovery, [{ ns: 'relays/test', limit: undefined }])
    // another answer, then the one with its request_id
    components.stream.push({ type: REGISTER, register: [entry('relays/test', IDS.q)] })
    components.stream.push({ type: REGISTER, register: [entry('relays/test', IDS.p, ['/ip4/192.0.2.9/tcp/4010', '/ip4/192.0.2.9/tcp/4011/ws']), entry('relays/test', IDS.self)], requestId: request?.requestId })
    const relays = await found
    assert.deepEqual(relays.map((r) => [String(r.id), r.multiaddrs.map(String)]), [[IDS.p, ['/ip4/192.0.2.9/tcp/4010', '/ip4/192.0.2.9/tcp/4011/ws']]])
  })

  it('findStunServers() turns the fleet\'s STUN registrations into ICE servers', async () => {
    const { components, service } = await connected()
    const found = service.findStunServers()
    const request = components.stream.lastSent(DISCOVER)
    assert.deepEqual(request?.discovery, [{ ns: 'rendezvous/stun', limit: undefined }])
    components.stream.push({
      type: REGISTER,
      register: [
        entry('rendezvous/stun', IDS.p, ['/ip4/192.0.2.9/udp/3478', '/ip6/2001:db8::9/udp/3478', '/ip4/192.0.2.9/tcp/4010']),
        entry('rendezvous/stun', IDS.q, ['/dns4/relay1.example.org/udp/3478']),
        entry('rendezvous/stun', IDS.r, ['/ip4/192.0.2.10/tcp/1'])
      ],
      requestId: request?.requestId
    })
    assert.deepEqual(await found, [
      { urls: ['stun:192.0.2.9:3478', 'stun:[2001:db8::9]:3478'] },
      { urls: ['stun:relay1.example.org:3478'] }
    ])
  })

  it('waits for a session, and asks again on the next one when the session is lost', async () => {
    const world = fakeService()
    world.components.script = [() => new Error('ECONNREFUSED')]
    world.service.afterStart()
    const found = world.service.discover('app', { limit: 3 })
    await settle()
    assert.equal(world.components.streams.length, 0)
    world.timers.fireNext() // the retry (the discover timeout is later)
    await settle()
    const first = world.components.stream
    assert.deepEqual(first.lastSent(DISCOVER)?.discovery, [{ ns: 'app', limit: 3 }])
    first.die()
    world.timers.fireNext()
    await settle()
    const second = world.components.stream
    const request = second.lastSent(DISCOVER)
    assert.deepEqual(request?.discovery, [{ ns: 'app', limit: 3 }])
    second.push({ type: REGISTER, register: [entry('app', IDS.r)], requestId: request?.requestId })
    assert.deepEqual((await found).map((p) => String(p.id)), [IDS.r])
  })

  it('rejects on refusal (with an error event), timeout and abort', async () => {
    const { components, events, timers, service } = await connected()
    const refused = service.discover('')
    components.stream.push({ type: ERROR, error: { status: 100, text: 'empty namespace' }, requestId: components.stream.lastSent(DISCOVER)?.requestId })
    await assert.rejects(refused, (err) => err instanceof RendezvousError && err.status === 100 && err.operation === 'discover' && err.namespace === '')
    assert.equal(events.all('error').length, 1)

    const late = service.findRelays({ timeout: 5000 })
    assert.equal(timers.delays.at(-1), 5000)
    timers.fireNext()
    await assert.rejects(late, { name: 'TimeoutError' })

    await assert.rejects(service.discover('app', { limit: -1 }), TypeError)
    await assert.rejects(service.discover('app', { limit: 1.5 }), TypeError)
    await assert.rejects(service.discover(/** @type {any} */ (7)), TypeError)
    await assert.rejects(service.discover('app', { signal: AbortSignal.abort(new Error('already')) }), /already/)
    assert.equal(timers.pending.size, 0)

    const controller = new AbortController()
    const aborted = service.findRelays({ signal: controller.signal })
    controller.abort(new Error('no longer needed'))
    await assert.rejects(aborted, /no longer needed/)
    assert.equal(timers.pending.size, 0)
  })
})

