// node stun_gather.mjs <playwright-core folder> <stun url>...
// Gathers the ICE candidates of one RTCPeerConnection in headless Chromium (CHROMIUM,
// default /usr/bin/chromium) with these STUN servers; prints them as a JSON list.
import { pathToFileURL } from 'node:url'

const [folder, ...urls] = process.argv.slice(2)
const { chromium } = await import(pathToFileURL(`${folder}/index.mjs`).href)
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox']
})
try {
  const page = await browser.newPage()
  const candidates = await page.evaluate(async (urls) => {
    const connection = new RTCPeerConnection({ iceServers: urls.map((url) => ({ urls: url })) })
    const found = []
    const gathered = new Promise((resolve) => {
      connection.onicecandidate = (event) => {
        if (event.candidate == null) resolve()
        else found.push(event.candidate.candidate)
      }
    })
    connection.createDataChannel('probe')
    await connection.setLocalDescription(await connection.createOffer())
    await gathered
    connection.close()
    return found
  }, urls)
  console.log(JSON.stringify(candidates))
} finally {
  await browser.close()
}
