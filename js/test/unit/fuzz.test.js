// Random and mutated input: the decoder either decodes or throws CodecError, nothing else.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { multiaddr } from '@multiformats/multiaddr'
import { CodecError, decodeMessage, encodeMessage, FrameDecoder, MessageType } from 'libp2p-live-rendezvous'

/** A small deterministic PRNG (mulberry32), so a failure can be replayed. @param {number} seed */
function prng (seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** @param {Uint8Array} bytes */
function decodeOrCodecError (bytes) {
  try {
    decodeMessage(bytes)
  } catch (err) {
    assert.ok(err instanceof CodecError, `${Buffer.from(bytes).toString('hex')}: ${err}`)
  }
}

const valid = [
  encodeMessage({
    type: MessageType.REGISTER,
    register: [{ ns: 'app', peer: { id: '12D3KooWGKi1gdaPnFPBXKk41P5uJfYdzLJdkngDUcePqpxG7KG1', addrs: [multiaddr('/ip4/192.0.2.1/tcp/4001').bytes], signedPeerRecord: Uint8Array.of(1, 2, 3) } }],
    requestId: 300
  }),
  encodeMessage({ type: MessageType.UNREGISTER, unregister: [{ ns: 'app', peer: { id: 'x', addrs: [] } }] }),
  encodeMessage({ type: MessageType.ERROR, error: { status: 1001, text: 'bad' }, requestId: 1 }),
  encodeMessage({ type: MessageType.DISCOVER, discovery: [{ ns: 'a', limit: 10 }], rendezvous: [{ ns: 'b' }] })
]

describe('decoding arbitrary bytes', () => {
  it('random bytes', () => {
    const random = prng(1)
    for (let i = 0; i < 20000; i++) {
      decodeOrCodecError(Uint8Array.from({ length: Math.floor(random() * 40) }, () => Math.floor(random() * 256)))
    }
  })

  it('valid messages with bytes flipped, cut short or inserted', () => {
    const random = prng(2)
    for (let i = 0; i < 20000; i++) {
      const bytes = [...valid[i % valid.length]]
      const edits = 1 + Math.floor(random() * 3)
      for (let e = 0; e < edits; e++) {
        const at = Math.floor(random() * bytes.length)
        const kind = random()
        if (kind < 0.5) bytes[at] = Math.floor(random() * 256)
        else if (kind < 0.75) bytes.splice(at)
        else bytes.splice(at, 0, Math.floor(random() * 256))
      }
      decodeOrCodecError(Uint8Array.from(bytes))
    }
  })

  it('frames of random bytes: frames or CodecError', () => {
    const random = prng(3)
    for (let i = 0; i < 5000; i++) {
      const decoder = new FrameDecoder({ maxFrameBytes: 64 })
      try {
        for (let c = 0; c < 4; c++) {
          for (const f of decoder.push(Uint8Array.from({ length: Math.floor(random() * 20) }, () => Math.floor(random() * 256)))) {
            assert.ok(f.length <= 64)
          }
        }
      } catch (err) {
        assert.ok(err instanceof CodecError, String(err))
      }
    }
  })
})
