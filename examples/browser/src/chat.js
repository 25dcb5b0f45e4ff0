// The example's own protocol: one stream per message, UTF-8 text, then the sender
// closes its end. Relayed connections are "limited", so both ends allow them.

export const CHAT_PROTOCOL = '/rendezvous-example/chat/1.0.0'
export const MAX_MESSAGE_BYTES = 4096

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** Sends `text` to the peer at the other end of `connection`. */
export async function sendMessage (connection, text, options = {}) {
  const bytes = encoder.encode(text)
  if (bytes.length > MAX_MESSAGE_BYTES) throw new Error(`a message is at most ${MAX_MESSAGE_BYTES} bytes`)
  const stream = await connection.newStream(CHAT_PROTOCOL, { ...options, runOnLimitedConnection: true })
  stream.send(bytes)
  await stream.close(options)
}

/** Calls `onMessage({ from, text, connection })` for every message received. */
export async function handleMessages (node, onMessage) {
  await node.handle(CHAT_PROTOCOL, async (stream, connection) => {
    const chunks = []
    let length = 0
    for await (const chunk of stream) {
      const bytes = chunk.subarray()
      length += bytes.length
      if (length > MAX_MESSAGE_BYTES) {
        stream.abort(new Error('message too long'))
        return
      }
      chunks.push(bytes)
    }
    await stream.close().catch(() => {})
    const all = new Uint8Array(length)
    let offset = 0
    for (const bytes of chunks) {
      all.set(bytes, offset)
      offset += bytes.length
    }
    onMessage({ from: connection.remotePeer, text: decoder.decode(all), connection })
  }, { runOnLimitedConnection: true })
}
