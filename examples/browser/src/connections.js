// Which kind each connection is, and how to reach a member: a direct WebRTC
// connection when the two browsers can make one (the relay carries only the
// signalling), through the relay otherwise.

const WEBRTC_ATTEMPTS = 2
// js-libp2p gives up on one address after 6 s, but not always on a set-up stuck later
const WEBRTC_DIAL_MS = 8000
const RANK = { webrtc: 0, direct: 1, relay: 2 }

/** 'webrtc', 'relay' (a circuit through the relay) or 'direct' (any other transport). */
export function kindOf (connection) {
  const address = connection.remoteAddr.toString()
  if (address.includes('/webrtc')) return 'webrtc'
  if (address.includes('/p2p-circuit') || connection.limits != null) return 'relay'
  return 'direct'
}

/** The best open connection to `peerId` (WebRTC first), or undefined. */
export function bestConnection (node, peerId) {
  return node.getConnections(peerId)
    .filter((connection) => connection.status === 'open')
    .sort((a, b) => RANK[kindOf(a)] - RANK[kindOf(b)])[0]
}

/** Rejects when `signal` aborts (for a promise that may not heed it). */
function aborted (signal) {
  return new Promise((resolve, reject) => {
    if (signal.aborted) reject(signal.reason)
    else signal.addEventListener('abort', () => reject(signal.reason), { once: true })
  })
}

/** `ma` ending in /p2p/<id>: registrations carry addresses without it. */
export function withPeer (ma, id) {
  const last = ma.getComponents().at(-1)
  return last?.name === 'p2p' ? ma : ma.encapsulate(`/p2p/${id}`)
}

export function relayAddresses (multiaddrs) {
  return multiaddrs.filter((ma) => {
    const text = ma.toString()
    return text.includes('/p2p-circuit') && !text.includes('/webrtc')
  })
}

export function webrtcAddresses (multiaddrs) {
  return multiaddrs.filter((ma) => /\/p2p-circuit\/webrtc(\/|$)/.test(ma.toString()))
}

/**
 * A connection to `member` ({ id, multiaddrs }): an open WebRTC one, else a new
 * WebRTC one (unless `options.webrtc` is false), else one through the relay.
 */
export async function connect (node, member, options = {}) {
  const existing = bestConnection(node, member.id)
  if (existing != null && kindOf(existing) !== 'relay') return existing
  const addresses = member.multiaddrs.map((ma) => withPeer(ma, member.id))
  const webrtc = webrtcAddresses(addresses)
  // a set-up between two browsers now and then fails (js-libp2p races): try again
  for (let attempt = 0; options.webrtc !== false && webrtc.length > 0 && attempt < WEBRTC_ATTEMPTS; attempt++) {
    try {
      const signals = [AbortSignal.timeout(WEBRTC_DIAL_MS), options.signal].filter((signal) => signal != null)
      const signal = AbortSignal.any(signals)
      return await Promise.race([node.dial(webrtc, { signal }), aborted(signal)])
    } catch (error) {
      if (options.signal?.aborted) throw error
      options.onWebrtcFailed?.(error, attempt + 1)
    }
  }
  const relayedNow = bestConnection(node, member.id)
  if (relayedNow != null) return relayedNow
  const relayed = relayAddresses(addresses)
  return node.dial(relayed.length > 0 ? relayed : member.id, { signal: options.signal, runOnLimitedConnection: true })
}
