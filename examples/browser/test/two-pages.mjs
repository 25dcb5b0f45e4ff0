// Drives the example page in headless Chromium: two pages (A and B) in separate
// browser contexts meet through the rendezvous daemon, chat, and B leaves.
//
//   node test/two-pages.mjs <page url> <daemon /ws multiaddr> <namespace> [webrtc=0]
//
// Prints one JSON line of measurements; exits non-zero only when the browser or a
// page cannot be driven at all (the caller asserts on the figures). Environment:
// CHROMIUM (default /usr/bin/chromium), BROWSER_SCREENSHOT=path.png (a third page C
// joins so that A lists two members, and A's page is saved there),
// CHROMIUM_MDNS=1 (leave Chromium's mDNS host-candidate hiding on), CHROMIUM_ARGS
// (more Chromium flags, separated by spaces), VERBOSE=1 (the pages' console on
// stderr), LIBP2P_DEBUG=names (js-libp2p's debug logs, with VERBOSE).
import { chromium } from 'playwright-core'

const [pageUrl, rdv, namespace, query] = process.argv.slice(2)
if (namespace == null) {
  console.error('usage: two-pages.mjs <page url> <daemon multiaddr> <namespace> [more query, e.g. webrtc=0]')
  process.exit(2)
}
const STEP_MS = 15000
const POLL = { polling: 25, timeout: STEP_MS }
const extra = query ? `&${query}` : ''
const url = `${pageUrl}?rdv=${encodeURIComponent(rdv)}&ns=${encodeURIComponent(namespace)}${extra}`
const args = ['--disable-gpu', '--no-first-run']
if (process.getuid?.() === 0) args.push('--no-sandbox')
// Chromium hides host candidates behind mDNS .local names; two contexts of one
// browser on one machine connect on the host address once it is shown.
if (process.env.CHROMIUM_MDNS !== '1') args.push('--disable-features=WebRtcHideLocalIpsWithMdns')
args.push(...(process.env.CHROMIUM_ARGS ?? '').split(' ').filter((arg) => arg !== ''))

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args })
const problems = []
const watchdog = setTimeout(() => {
  console.error('timed out')
  process.exit(3)
}, 120000)

async function open (name) {
  const context = await browser.newContext({ viewport: { width: 960, height: 640 } })
  if (process.env.LIBP2P_DEBUG) await context.addInitScript((names) => localStorage.setItem('debug', names), process.env.LIBP2P_DEBUG)
  const page = await context.newPage()
  page.on('pageerror', (error) => problems.push(`${name}: ${error.message}`))
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`${name}: ${message.text().slice(0, 300)}`)
    if (process.env.VERBOSE) console.error(`${name} ${message.type()}: ${message.text()}`)
  })
  await page.goto(url)
  await page.waitForFunction(() => ['registered', 'error'].includes(document.body.dataset.state), null, POLL)
  const state = await page.evaluate(() => [document.body.dataset.state, document.getElementById('status').textContent])
  if (state[0] !== 'registered') throw new Error(`page ${name} did not register: ${state[1]}`)
  const id = await page.getAttribute('[data-self-id]', 'data-self-id')
  return { name, context, page, id }
}

/** Milliseconds until `predicate(arg)` holds in `page`, or null past STEP_MS. */
async function within (page, predicate, arg) {
  const start = Date.now()
  try {
    await page.waitForFunction(predicate, arg, POLL)
    return Date.now() - start
  } catch {
    return null
  }
}

const lists = (id) => document.querySelector(`[data-peer-id="${id}"]`) != null
const connectionOf = (page, id) => page.getAttribute(`[data-peer-id="${id}"]`, 'data-connection')

async function send (from, to, text) {
  await from.page.click(`[data-peer-id="${to.id}"] button`)
  await from.page.fill('#text', text)
  await from.page.click('#send')
  const ms = await within(to.page, ([sender, message]) => [...document.querySelectorAll('[data-message]')]
    .some((m) => m.textContent === message && m.closest('[data-from]')?.dataset.from === sender), [from.id, text])
  if (ms == null) {
    const notes = await from.page.evaluate(() => [...document.querySelectorAll('li.mine .meta')].map((m) => m.textContent))
    problems.push(`${from.name} -> ${to.name} not received; the sender says: ${notes.join(' | ')}`)
  }
  return ms
}

const result = { problems }
try {
  const a = await open('A')
  const b = await open('B')
  result.a = a.id
  result.b = b.id
  // each lists the other, counted from B's registered state
  const start = Date.now()
  await Promise.all([within(a.page, lists, b.id), within(b.page, lists, a.id)])
  result.listedMs = Date.now() - start
  result.aListsB = await a.page.evaluate(lists, b.id)
  result.bListsA = await b.page.evaluate(lists, a.id)
  // what each page says of its relay (the address it reserved on)
  const relayText = (page) => page.evaluate(() => document.getElementById('relay').textContent)
  result.relay = { a: await relayText(a.page), b: await relayText(b.page) }

  const text = `hello from A at ${new Date().toISOString()}`
  result.messageMs = await send(a, b, text)
  result.messageVia = await b.page.evaluate((m) => [...document.querySelectorAll('[data-message]')]
    .find((e) => e.textContent === m)?.closest('[data-via]')?.dataset.via ?? null, text)
  result.replyMs = await send(b, a, 'hello back from B')

  const connected = (id) => document.querySelector(`[data-peer-id="${id}"]`)?.dataset.connection != null
  await Promise.all([within(a.page, connected, b.id), within(b.page, connected, a.id)])
  result.connection = { a: await connectionOf(a.page, b.id), b: await connectionOf(b.page, a.id) }

  if (process.env.BROWSER_SCREENSHOT) {
    const c = await open('C')
    await within(a.page, lists, c.id)
    result.thirdMessageMs = await send(c, a, 'hi A, C here')
    await within(a.page, (id) => document.querySelector(`[data-peer-id="${id}"]`)?.dataset.connection != null, c.id)
    await a.page.click(`[data-peer-id="${b.id}"] button`)
    await a.page.fill('#text', 'see you, B')
    await a.page.locator('body').screenshot({ path: process.env.BROWSER_SCREENSHOT })
    result.screenshot = process.env.BROWSER_SCREENSHOT
    await c.context.close()
  }

  // B leaves: the daemon pushes UNREGISTER and A drops B from the list
  const goneStart = Date.now()
  await b.context.close()
  result.goneMs = await within(a.page, (id) => document.querySelector(`[data-peer-id="${id}"]`) == null, b.id)
  if (result.goneMs != null) result.goneMs = Date.now() - goneStart
  await a.context.close()
} catch (error) {
  result.error = error.message
} finally {
  clearTimeout(watchdog)
  await browser.close()
}
console.log(JSON.stringify(result))
