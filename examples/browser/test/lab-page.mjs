// Drives one page of the example in its own headless Chromium, for tests that run one
// browser per host (tests/test_lab_browser.py: each inside a NATed home of the network
// lab), and coordinate them through this script's output and input.
//
//   node test/lab-page.mjs <page url with ?rdv=…&ns=…>
//
// Prints JSON lines, each with a `step`:
//   registered  {id, relay}: the page reserved on a relay and registered
//   listed      {other}: the page lists another member (the first one)
//   connected   {other, connection, pair, pairs, console}: the member's connection is
//               `webrtc`, with the selected ICE candidate pair (`pair`, from getStats;
//               `pairs`: every peer connection's) and the page's warnings so far
//   no webrtc   {other, connection, pairs, console}: it did not become `webrtc` in
//               WEBRTC_MS (default 45000)
// (neither of the last two with ?webrtc=0 in the url: that page connects when it sends)
// and answers commands read from stdin, one a line:
//   send COUNT BYTES  sends COUNT messages of BYTES characters to the other member,
//                     one after the other; prints `sent` {notes}: what the page says
//                     of each (`to … via webrtc`)
//   receive COUNT     waits for COUNT messages from the other member; prints
//                     `received` {count, characters, via: {kind: count}}
//   stats             prints `stats` {pairs}: every peer connection's selected pair
//   quit              closes the browser and exits
// Exits non-zero when the browser or the page cannot be driven at all (then prints
// `error` {error}). Environment: CHROMIUM (default /usr/bin/chromium), CHROMIUM_ARGS
// (more flags, separated by spaces), VERBOSE=1 (the page's console on stderr).
// Each run has a profile of its own (playwright makes a temporary user-data-dir).
import { createInterface } from 'node:readline'
import { chromium } from 'playwright-core'

const [url] = process.argv.slice(2)
if (url == null) {
  console.error('usage: lab-page.mjs <page url>')
  process.exit(2)
}
const STEP_MS = 30000
const WEBRTC_MS = Number(process.env.WEBRTC_MS ?? 45000)
const print = (step, fields = {}) => console.log(JSON.stringify({ step, ...fields }))

const args = [
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  // host candidates as addresses, not mDNS names (across NATs the server-reflexive
  // ones, from the fleet's STUN, are what connect; this keeps the candidates legible)
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  ...(process.env.CHROMIUM_ARGS ?? '').split(' ').filter((arg) => arg !== '')
]
if (process.getuid?.() === 0) args.push('--no-sandbox')

// Keeps every RTCPeerConnection the page makes, for getStats.
function recordPeerConnections () {
  const Original = globalThis.RTCPeerConnection
  const made = []
  globalThis.peerConnections = made
  globalThis.RTCPeerConnection = class extends Original {
    constructor (...rest) {
      super(...rest)
      made.push(this)
    }
  }
}

// The selected candidate pair of each peer connection, with both candidates.
async function selectedPairs () {
  const pairs = []
  for (const connection of globalThis.peerConnections ?? []) {
    const report = await connection.getStats()
    const byId = new Map([...report.values()].map((stat) => [stat.id, stat]))
    const candidate = (id) => {
      const c = byId.get(id)
      return c && { type: c.candidateType, address: c.address, port: c.port, protocol: c.protocol }
    }
    for (const stat of report.values()) {
      if (stat.type !== 'transport' || stat.selectedCandidatePairId == null) continue
      const pair = byId.get(stat.selectedCandidatePairId)
      pairs.push({
        state: connection.connectionState,
        iceServers: connection.getConfiguration().iceServers.flatMap((server) => [server.urls].flat()),
        pairState: pair?.state,
        local: candidate(pair?.localCandidateId),
        remote: candidate(pair?.remoteCandidateId),
        bytesSent: pair?.bytesSent,
        bytesReceived: pair?.bytesReceived
      })
    }
    if (!pairs.some((pair) => pair.state === connection.connectionState)) {
      // not connected (yet): what was gathered, for the report
      const local = [...report.values()].filter((stat) => stat.type === 'local-candidate')
        .map((c) => `${c.candidateType} ${c.address}:${c.port}`)
      const remote = [...report.values()].filter((stat) => stat.type === 'remote-candidate')
        .map((c) => `${c.candidateType} ${c.address}:${c.port}`)
      pairs.push({ state: connection.connectionState, iceState: connection.iceConnectionState, local, remote })
    }
  }
  return pairs
}

const consoleLines = []
let browser
try {
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args })
  const page = await browser.newPage()
  await page.addInitScript(recordPeerConnections)
  page.on('pageerror', (error) => consoleLines.push(`error: ${error.message}`))
  page.on('console', (message) => {
    if (['error', 'warning'].includes(message.type())) consoleLines.push(`${message.type()}: ${message.text().slice(0, 300)}`)
    if (process.env.VERBOSE) console.error(`${message.type()}: ${message.text()}`)
  })
  await page.goto(url)
  await page.waitForFunction(() => ['registered', 'error'].includes(document.body.dataset.state), null, { timeout: STEP_MS })
  const [state, status, relay] = await page.evaluate(() => [
    document.body.dataset.state, document.getElementById('status').textContent, document.getElementById('relay').textContent
  ])
  if (state !== 'registered') throw new Error(`the page did not register: ${status}`)
  const id = await page.getAttribute('[data-self-id]', 'data-self-id')
  print('registered', { id, relay })

  const member = await page.waitForSelector('[data-peer-id]', { timeout: STEP_MS })
  const other = await member.getAttribute('data-peer-id')
  print('listed', { other })

  const connection = `[data-peer-id="${other}"]`
  // with ?webrtc=0 the page connects only when it sends, through the relay
  if (new URL(url).searchParams.get('webrtc') !== '0') {
    try {
      await page.waitForSelector(`${connection}[data-connection="webrtc"]`, { timeout: WEBRTC_MS })
      const pairs = await page.evaluate(selectedPairs)
      const pair = pairs.find((pair) => pair.state === 'connected') ?? null
      print('connected', { other, connection: 'webrtc', pair, pairs, console: consoleLines })
    } catch {
      print('no webrtc', {
        other,
        connection: await page.getAttribute(connection, 'data-connection'),
        pairs: await page.evaluate(selectedPairs),
        console: consoleLines
      })
    }
  }

  const commands = createInterface({ input: process.stdin })
  for await (const line of commands) {
    const [command, ...numbers] = line.trim().split(/\s+/)
    if (command === 'quit') break
    if (command === 'stats') {
      print('stats', { pairs: await page.evaluate(selectedPairs) })
    } else if (command === 'send') {
      const [count, size] = numbers.map(Number)
      await page.click(`${connection} button`)
      const notes = []
      const before = await page.locator('li.mine .meta').count()
      for (let n = before; n < before + count; n++) {
        // the input's maxlength is for people: a message may have up to 4096 bytes
        const text = `${n} `.padEnd(size, 'x')
        await page.evaluate((value) => { document.getElementById('text').value = value }, text)
        await page.click('#send')
        // one at a time: wait until the page says how it went
        const meta = page.locator('li.mine .meta').nth(n)
        await page.waitForFunction((index) => {
          const note = document.querySelectorAll('li.mine .meta')[index]?.textContent ?? 'sending…'
          return note !== 'sending…'
        }, n, { timeout: STEP_MS })
        notes.push(await meta.textContent())
      }
      print('sent', { notes })
    } else if (command === 'receive') {
      const [count] = numbers.map(Number)
      const messagesFrom = (sender) => [...document.querySelectorAll('[data-message]')]
        .filter((m) => m.dataset.from === sender)
        .map((m) => [m.textContent.length, m.closest('[data-via]')?.dataset.via])
      await page.waitForFunction(([sender, count]) => [...document.querySelectorAll('[data-message]')]
        .filter((m) => m.dataset.from === sender).length >= count, [other, count], { timeout: STEP_MS })
      const received = await page.evaluate(messagesFrom, other)
      const via = {}
      for (const [, kind] of received) via[kind] = (via[kind] ?? 0) + 1
      print('received', { count: received.length, characters: received.reduce((sum, [length]) => sum + length, 0), via })
    } else {
      print('unknown', { line })
    }
  }
} catch (error) {
  print('error', { error: error.message, console: consoleLines })
  process.exitCode = 1
} finally {
  await browser?.close()
  // stdin may still be open (the test's pipe): leave anyway
  process.exit()
}
