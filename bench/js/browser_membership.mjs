// The browser side of bench/browser_membership.py: headless Chromium (playwright-core)
// drives pages of examples/browser/dist/bench.html (src/bench.js), each in its own
// browser context. Run by node from examples/browser (whose node_modules it imports):
//
//   node --input-type=module -e "$(cat bench/js/browser_membership.mjs)" '<config JSON>'
//
// config: { page, rdv, namespace, joins, spreadMs, pollMs, maxOpen, maxLoading, chatPages,
// chromium, timeoutMs }.
// 1. An observer page follows the namespace and a poller page DISCOVERs it every pollMs
//    (websocket-star style); `joins` member pages, started at random times over
//    spreadMs (at most maxOpen open and maxLoading loading at once: a page's start is
//    what costs the browser CPU), reserve on the relay and register; each
//    closes once the observer and the poller have seen it, after a further random wait
//    in [0, pollMs), so that leaves fall at random phases of the poll too.
// 2. `chatPages` relay-only members and as many WebRTC-capable ones: each pair sends
//    two messages, the first over a connection it dials (through the relay, or WebRTC
//    set up with the relay's signalling), the second over the connection made.
// Before and after phase 1 it prints {"phase": NAME} and waits for a line on stdin (the
// Python side reads CPU counters then). Last line on stdout: {"result": {...}} with every
// time as performance.timeOrigin + performance.now() (ms, one clock for every page).
import { createInterface } from 'node:readline'
import { chromium } from 'playwright-core'

const cfg = JSON.parse(process.argv[1])
const now = () => performance.timeOrigin + performance.now()
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)))
const stdin = createInterface({ input: process.stdin })[Symbol.asyncIterator]()
const READY_MS = 30000
const MESSAGE_MS = 15000

async function phase (name) {
  console.log(JSON.stringify({ phase: name }))
  await stdin.next()
}

const events = []
const waiters = new Set()
const problems = []
function record (event) {
  events.push(event)
  for (const waiter of [...waiters]) {
    if (waiter.test(event)) { waiters.delete(waiter); clearTimeout(waiter.timer); waiter.resolve(event) }
  }
}
/** The first event (already seen or to come) for which `test` holds, or null after `ms`. */
function waitEvent (test, ms) {
  const found = events.find(test)
  if (found != null) return Promise.resolve(found)
  return new Promise((resolve) => {
    const waiter = { test, resolve }
    waiter.timer = setTimeout(() => { waiters.delete(waiter); resolve(null) }, ms)
    waiters.add(waiter)
  })
}

const args = ['--disable-gpu', '--no-first-run']
if (process.getuid?.() === 0) args.push('--no-sandbox')
// host candidates shown as addresses: two contexts on one machine can use WebRTC
args.push('--disable-features=WebRtcHideLocalIpsWithMdns')
const browser = await chromium.launch({ executablePath: cfg.chromium, args })

/** At most `n` holders at once; the others wait in turn. */
function semaphore (n) {
  let held = 0
  const queue = []
  return {
    acquire: async () => {
      while (held >= n) await new Promise((resolve) => queue.push(resolve))
      held += 1
    },
    release: () => { held -= 1; queue.shift()?.() }
  }
}

function url (params) {
  const query = new URLSearchParams({ rdv: cfg.rdv, ...params })
  return `${cfg.page}?${query}`
}

async function open (name, params) {
  const context = await browser.newContext()
  await context.exposeFunction('benchReport', (event) => record({ page: name, ...event }))
  const page = await context.newPage()
  page.on('pageerror', (error) => problems.push(`${name}: ${error.message}`))
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`${name}: ${message.text().slice(0, 300)}`)
  })
  const tOpen = now()
  await page.goto(url(params))
  await page.waitForFunction(() => ['ready', 'error'].includes(document.body.dataset.state), null, { polling: 100, timeout: READY_MS })
  const [state, error, id] = await page.evaluate(() => [document.body.dataset.state, document.body.dataset.error, document.body.dataset.selfId])
  if (state !== 'ready') throw new Error(`page ${name} failed: ${error}`)
  return { name, context, page, id, tOpen, tReady: now() }
}

const result = { joins: [], messages: [], problems }
const watchdog = setTimeout(() => {
  console.error('browser_membership.mjs: timed out')
  process.exit(3)
}, cfg.timeoutMs)
try {
  // -- 1. membership -------------------------------------------------------
  const observer = await open('observer', { ns: cfg.namespace, role: 'observer' })
  const poller = await open('poller', { ns: cfg.namespace, role: 'poller', interval: String(cfg.pollMs) })
  const pollHas = (id, after) => (e) => e.kind === 'poll' && e.page === 'poller' && e.t >= after && e.ids.includes(id)
  const pollLacks = (id, after) => (e) => e.kind === 'poll' && e.page === 'poller' && e.sent >= after && !e.ids.includes(id)
  await phase('membership')
  const t0 = now()
  const starts = Array.from({ length: cfg.joins }, () => Math.random() * cfg.spreadMs).sort((a, b) => a - b)
  const opened = semaphore(cfg.maxOpen)
  const loading = semaphore(cfg.maxLoading)
  const join = async (i, start) => {
    await sleep(t0 + start - now())
    await opened.acquire()
    const name = `join${i}`
    const entry = { i, name, planned: t0 + start }
    result.joins.push(entry)
    let member
    try {
      await loading.acquire()
      try {
        member = await open(name, { ns: cfg.namespace, role: 'member' })
      } finally {
        loading.release()
      }
      Object.assign(entry, { id: member.id, tOpen: member.tOpen, tReady: member.tReady })
      const registered = await waitEvent((e) => e.kind === 'register' && e.page === name, 1000)
      entry.tRegister = registered?.t
      const seenBy = (test) => waitEvent(test, 2 * cfg.pollMs + 10000)
      await Promise.all([
        seenBy((e) => e.kind === 'peer' && e.id === member.id),
        seenBy(pollHas(member.id, entry.tRegister ?? 0))
      ])
      await sleep(Math.random() * cfg.pollMs)
    } catch (error) {
      entry.error = error.message
    } finally {
      entry.tClose = now()
      await (member?.context ?? null)?.close().catch(() => {})
      opened.release()
    }
  }
  await Promise.all(starts.map((start, i) => join(i, start)))
  // the leaves: the observer's peer:gone, and the poller's next answer without the member
  const last = Math.max(...result.joins.map((j) => j.tClose))
  await Promise.all(result.joins.filter((j) => j.id != null).map((j) => Promise.all([
    waitEvent((e) => e.kind === 'gone' && e.id === j.id, 10000),
    waitEvent(pollLacks(j.id, j.tClose), last - now() + cfg.pollMs + 10000)
  ])))
  result.membershipSeconds = (now() - t0) / 1000
  await phase('membership-done')
  result.observer = events.filter((e) => e.page === 'observer')
  result.polls = events.filter((e) => e.page === 'poller')
  await observer.context.close()
  await poller.context.close()

  // -- 2. the first message, through the relay and over WebRTC ---------------
  const chat = `${cfg.namespace}-chat`
  const pages = await Promise.all([
    ...Array.from({ length: cfg.chatPages }, (_, i) => open(`relay${i}`, { ns: chat, role: 'member' })),
    ...Array.from({ length: cfg.chatPages }, (_, i) => open(`webrtc${i}`, { ns: chat, role: 'member', webrtc: '1' }))
  ])
  for (const p of pages) {
    await p.page.waitForFunction((n) => globalThis.node.services.rendezvous.members(
      globalThis.node.services.rendezvous.namespaces[0]).length >= n, pages.length - 1, { polling: 50, timeout: READY_MS })
  }
  for (const via of ['relay', 'webrtc']) {
    const group = pages.filter((p) => p.name.startsWith(via))
    for (let a = 0; a < group.length; a++) {
      for (let b = a + 1; b < group.length; b++) {
        for (const seq of [1, 2]) {
          const text = `${via} message ${seq} from ${group[a].name} to ${group[b].name}`
          const entry = { via, seq, from: group[a].name, to: group[b].name }
          result.messages.push(entry)
          try {
            Object.assign(entry, await group[a].page.evaluate(([to, text, via]) => globalThis.bench.send(to, text, via), [group[b].id, text, via]))
          } catch (error) {
            entry.error = error.message.split('\n')[0]
            continue
          }
          const received = await waitEvent((e) => e.kind === 'message' && e.text === text, MESSAGE_MS)
          if (received == null) entry.error = 'not received'
          else Object.assign(entry, { t1: received.t, receivedVia: received.via })
        }
      }
    }
  }
  for (const p of pages) await p.context.close()
} catch (error) {
  result.error = error.stack ?? error.message
} finally {
  clearTimeout(watchdog)
  await browser.close()
}
console.log(JSON.stringify({ result }))
process.exit(0)
