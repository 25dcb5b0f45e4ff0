// A js-libp2p load generator for bench/relay_path.py (scenario 6): js-libp2p 3.x peers
// with the @libp2p/circuit-relay-v2 transport, reserving on a relay and reaching each other
// through it. Run from interop/js-relay (ES modules resolve packages from there):
//
//   node --input-type=module -e "$(cat bench/js/relay_load.mjs)"
//
// One process plays bob (who reserves), another alice (who dials). Each reads one JSON
// command a line on stdin and answers it with one JSON line on stdout (times are the Unix
// clock's seconds, CPU is this process's process.cpuUsage(), seconds):
//   bob:   {"cmd": "reserve", "relay": MULTIADDR}: a node of its own for that relay
//              listens on MULTIADDR/p2p-circuit -> {"circuit": its circuit address}
//          {"cmd": "expect", "bytes": N}: a stream that brought N bytes is answered "k"
//   alice: {"cmd": "dial", "relay": MULTIADDR, "nodes": K}: K nodes connect to the relay
//              (and stay connected) -> {}
//          {"cmd": "throughput", "relay": R, "circuit": C, "bytes": N}: the first node dials
//              bob's circuit address C (CONNECT through the relay, then Noise and yamux
//              inside the circuit), opens a stream and sends N bytes in 64 KiB writes,
//              waits for bob's "k" and closes the connection -> {"seconds", "cpu"}
//          {"cmd": "circuits", "relay": R, "circuit": C, "parallel": P, "start": T0,
//              "end": T1}: P nodes each dial C and close the connection, back to back;
//              counts the connections made between T0 and T1 -> {"count", "seconds", "cpu"}
//   both:  {"cmd": "cpu"} -> {"cpu"};  {"cmd": "quit"}: exit.
// Errors are answered as {"error": TEXT}. The nodes run identify (the relay transport
// requires it), so a relayed connection carries Noise, yamux, identify and the stream;
// they run no connection monitor (its pings every 10 s), as our peers.
import './polyfills.mjs'
import { createInterface } from 'node:readline'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'

const PROTOCOL = '/rendezvous-bench/sink/1.0.0'
const CHUNK = 64 * 1024
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6 }
const now = () => Date.now() / 1000
const limited = { runOnLimitedConnection: true }

const node = (listen) => createLibp2p({
  addresses: { listen },
  transports: [tcp(), circuitRelayTransport({ maxInboundStopStreams: 10000, maxOutboundStopStreams: 10000 })],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  // a bob takes every circuit as an inbound connection from the relay's host: the
  // connection manager's 5 a second per host would be what we measured
  connectionManager: {
    maxConnections: 100000,
    inboundConnectionThreshold: 100000,
    maxIncomingPendingConnections: 10000
  },
  // no pings of their own every 10 s (our peers send none either)
  connectionMonitor: { enabled: false },
  services: { identify: identify() }
})

// -- bob ------------------------------------------------------------------------------
const bobs = new Map()
let expect = 0

async function reserve ({ relay }) {
  await bobs.get(relay)?.stop()
  const bob = await node([`${relay}/p2p-circuit`])
  bobs.set(relay, bob)
  await bob.handle(PROTOCOL, (stream) => {
    let received = 0
    stream.addEventListener('message', (event) => {
      received += event.data.byteLength
      if (expect > 0 && received >= expect) {
        received = -Infinity
        stream.send(Uint8Array.of(0x6b))
      }
    })
    stream.addEventListener('remoteCloseWrite', () => { stream.close().catch(() => {}) })
  }, { ...limited, maxInboundStreams: 1024 })
  for (let i = 0; i < 400; i++) {
    const circuit = bob.getMultiaddrs().map(String).find((a) => a.startsWith(relay) && a.includes('/p2p-circuit'))
    if (circuit != null) return { circuit }
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  throw new Error(`no reservation on ${relay}`)
}

// -- alice ----------------------------------------------------------------------------
const alices = new Map()

async function dial ({ relay, nodes }) {
  for (const alice of alices.get(relay) ?? []) await alice.stop()
  const list = await Promise.all(Array.from({ length: nodes }, async () => {
    const alice = await node([])
    await alice.dial(multiaddr(relay))
    return alice
  }))
  alices.set(relay, list)
  return {}
}

const payload = new Uint8Array(CHUNK).map((_, i) => i & 255)

async function throughput ({ relay, circuit, bytes }) {
  const alice = alices.get(relay)[0]
  const t0 = now()
  const cpu0 = cpu()
  const stream = await alice.dialProtocol(multiaddr(circuit), PROTOCOL, limited)
  const answered = new Promise((resolve, reject) => {
    stream.addEventListener('message', resolve, { once: true })
    stream.addEventListener('close', (event) => reject(event.error ?? new Error('stream closed unanswered')), { once: true })
  })
  for (let left = bytes; left > 0; left -= CHUNK) {
    if (!stream.send(left >= CHUNK ? payload : payload.subarray(0, left))) await stream.onDrain()
  }
  await answered
  const result = { seconds: now() - t0, cpu: cpu() - cpu0 }
  await Promise.all(alice.getConnections().filter((c) => c.remoteAddr.toString().includes('/p2p-circuit')).map((c) => c.close()))
  return result
}

async function circuits ({ relay, circuit, parallel, start, end }) {
  const target = multiaddr(circuit)
  const marks = {}
  let count = 0
  const mark = (name) => { if (marks[name] == null) marks[name] = [count, now(), cpu()] }
  const timers = [
    setTimeout(() => mark('start'), start * 1000 - Date.now()),
    setTimeout(() => mark('end'), end * 1000 - Date.now())
  ]
  const loop = async (alice) => {
    while (marks.end == null) {
      const connection = await alice.dial(target)
      await connection.close()
      count += 1
      const t = Date.now() / 1000
      if (t >= start) mark('start')
      if (t >= end) mark('end')
    }
  }
  try {
    await Promise.all(alices.get(relay).slice(0, parallel).map(loop))
  } finally {
    timers.forEach(clearTimeout)
  }
  const [[n0, t0, c0], [n1, t1, c1]] = [marks.start, marks.end]
  return { count: n1 - n0, seconds: t1 - t0, cpu: c1 - c0 }
}

const commands = {
  reserve,
  expect: async ({ bytes }) => { expect = bytes; return {} },
  dial,
  throughput,
  circuits,
  cpu: async () => ({ cpu: cpu() })
}
for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue
  const command = JSON.parse(line)
  if (command.cmd === 'quit') break
  let reply
  try {
    reply = await commands[command.cmd](command)
  } catch (err) {
    reply = { error: err.stack ?? String(err) }
  }
  process.stdout.write(JSON.stringify(reply) + '\n')
}
process.exit(0)
