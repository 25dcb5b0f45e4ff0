// A js-libp2p load generator for bench/libp2p_path.py (scenario 5): js-libp2p 2.x peers
// with the @canvas-js/libp2p-rendezvous client, unchanged but for the protocol id, against
// a rendezvous server. Run from interop/js-canvas (ES modules resolve packages from there):
//
//   node --input-type=module -e "$(cat bench/js/rendezvous_load.mjs)" [PROTOCOL]
//
// It reads one JSON command a line on stdin and answers each with one JSON line on stdout
// (times are the Unix clock's seconds, CPU is this process's process.cpuUsage(), seconds):
//   {"cmd": "preload", "server": MULTIADDR, "count": N, "concurrency": C}
//       N peers, each a js-libp2p node of its own key (C at a time): connect (Noise,
//       yamux), REGISTER in the namespace through the client, close, stop
//       -> {"registered", "errors", "seconds", "cpu"}
//   {"cmd": "connect", "server": MULTIADDR, "peers": P}
//       P more peers connect and stay -> {"peers"}
//   {"cmd": "load", "op": "register"|"discover", "streams": W, "start": T0, "end": T1}
//       each held peer opens W rendezvous streams (the client's `connect`) and on each
//       sends requests one after the other, as the client does (it awaits every reply):
//       REGISTER of its own record, sealed again by the client each time, or DISCOVER
//       with limit 64, whose 64 records the client opens, checks and stores; counts the
//       replies handled between T0 and T1 -> {"requests", "seconds", "cpu", "statuses",
//       "returned"}
//   {"cmd": "close"} -> {}: the held peers stop;  {"cmd": "quit"}: exit.
// Errors are answered as {"error": TEXT}.
import './polyfills.mjs'
import { createInterface } from 'node:readline'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { RendezvousClient, rendezvousClient } from '@canvas-js/libp2p-rendezvous/client'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'

const NAMESPACE = 'bench'
const TTL = 7200
const LIMIT = 64
const [protocol] = process.argv.slice(1).filter((a) => a.startsWith('/'))
if (protocol) RendezvousClient.protocol = protocol

const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6 }
const now = () => Date.now() / 1000
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)))
let serial = 0

/** A peer as a js application has it: TCP, Noise, yamux, identify and the client. */
async function peer () {
  const n = serial++
  const node = await createLibp2p({
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    // a stream opened while the process is busy with DISCOVER replies (tens of ms each,
    // hundreds in flight) waits for its multistream answer longer than the default 10 s
    connectionManager: { maxConnections: 1000000, protocolNegotiationTimeout: 120000 },
    // no pings of its own every 10 s (our generator sends none either): a busy generator's
    // would time out and abort its connection
    connectionMonitor: { enabled: false },
    services: { identify: identify(), rendezvous: rendezvousClient({ autoDiscover: false }) }
  })
  // the address it registers (it listens nowhere): one per peer, as our generator's records
  node.benchAddrs = [multiaddr(`/ip4/10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}/tcp/4001`)]
  return node
}

async function preload ({ server, count, concurrency }) {
  const target = multiaddr(server)
  const t0 = now()
  const cpu0 = cpu()
  const errors = {}
  let next = 0
  let registered = 0
  const loop = async () => {
    while (next < count) {
      next += 1
      const node = await peer()
      try {
        await node.services.rendezvous.connect(target, (point) =>
          point.register(NAMESPACE, { multiaddrs: node.benchAddrs, ttl: TTL }))
        registered += 1
      } catch (err) {
        errors[err.message] = (errors[err.message] ?? 0) + 1
      } finally {
        await node.stop()
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, loop))
  return { registered, errors, seconds: now() - t0, cpu: cpu() - cpu0 }
}

let held = []
async function connect ({ server, peers }) {
  const target = multiaddr(server)
  held = await Promise.all(Array.from({ length: peers }, async () => {
    const node = await peer()
    await node.dial(target)
    return node
  }))
  return { peers: held.length }
}

async function load ({ server, op, streams, start, end }) {
  const target = multiaddr(server)
  const statuses = {}
  const returned = new Set()
  // when each reply was handled: a timer can fire late while replies keep the event loop
  // busy (a DISCOVER's 64 records take the client tens of ms), a reply's time cannot
  const times = []
  let stop = false
  const marks = {}
  const mark = (name) => { marks[name] = [now(), cpu()] }
  const stream = (node) => node.services.rendezvous.connect(target, async (point) => {
    while (!stop) {
      try {
        if (op === 'register') {
          await point.register(NAMESPACE, { multiaddrs: node.benchAddrs, ttl: TTL })
        } else {
          returned.add((await point.discover(NAMESPACE, { limit: LIMIT })).length)
        }
        statuses.OK = (statuses.OK ?? 0) + 1
      } catch (err) {
        statuses[err.message] = (statuses[err.message] ?? 0) + 1
        if (!/^E_|^\d+$/.test(err.message)) throw err
      }
      const t = now()
      times.push(t)
      if (t >= end) stop = true
    }
  })
  const timers = [
    setTimeout(() => mark('start'), start * 1000 - Date.now()),
    setTimeout(() => { mark('end'); stop = true }, end * 1000 - Date.now())
  ]
  try {
    await Promise.all(held.flatMap((node) => Array.from({ length: streams }, () => stream(node).catch((err) => {
      throw new Error(`${op} load: ${err.name}: ${err.message}`, { cause: err })
    }))))
  } finally {
    timers.forEach(clearTimeout)
    stop = true
  }
  if (marks.end == null) mark('end')
  const [[t0, c0], [t1, c1]] = [marks.start, marks.end]
  // CPU: its rate between the two timers, over the window
  const seconds = end - start
  return {
    requests: times.filter((t) => t >= start && t < end).length,
    seconds,
    cpu: (c1 - c0) / Math.max(1e-6, t1 - t0) * seconds,
    statuses,
    returned: [...returned]
  }
}

async function close () {
  await Promise.all(held.map((node) => node.stop()))
  held = []
  return {}
}

const commands = { preload, connect, load, close, cpu: async () => ({ cpu: cpu() }) }
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
await Promise.all(held.map((node) => node.stop()))
process.exit(0)
