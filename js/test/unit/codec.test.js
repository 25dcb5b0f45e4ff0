import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { multiaddr } from '@multiformats/multiaddr'
import {
  CodecError, decodeMessage, decodeVarint, encodeFrame, encodeMessage, encodeVarint, frame, FrameDecoder, MessageType
} from 'libp2p-live-rendezvous'

const hex = (/** @type {string} */ s) => Uint8Array.from(s.replace(/\s+/g, '').match(/../g) ?? [], (b) => parseInt(b, 16))
const toHex = (/** @type {Uint8Array} */ b) => Buffer.from(b).toString('hex')
const utf8 = (/** @type {string} */ s) => new TextEncoder().encode(s)

describe('varints', () => {
  it('round-trip from 0 to 2^64-1', () => {
    const cases = [[0, '00'], [1, '01'], [127, '7f'], [128, '8001'], [300, 'ac02'], [2 ** 28, '8080808001'],
      [2 ** 32, '8080808010'], [Number.MAX_SAFE_INTEGER, 'ffffffffffffff0f'], [(1n << 64n) - 1n, 'ffffffffffffffffff01']]
    for (const [value, bytes] of cases) {
      assert.equal(toHex(encodeVarint(value)), bytes, String(value))
      assert.deepEqual(decodeVarint(hex(bytes), 0), [value, bytes.length / 2], String(value))
    }
  })

  it('tell a truncated varint from a bad one', () => {
    assert.equal(decodeVarint(hex('80'), 0), null)
    assert.equal(decodeVarint(hex('ffffffffff'), 0), null)
    assert.throws(() => decodeVarint(hex('ffffffffffffffffffff01'), 0), CodecError) // 11 bytes
    assert.throws(() => decodeVarint(hex('ffffffffffffffffff02'), 0), CodecError) // 2^64
    assert.throws(() => encodeVarint(-1), RangeError)
    assert.throws(() => encodeVarint(1n << 64n), RangeError)
    assert.throws(() => encodeVarint(0.5), RangeError)
  })
})

describe('Message', () => {
  it('encodes the worked example of docs/protocol.rst byte for byte', () => {
    const id = 'QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N'
    const bytes = encodeFrame({
      type: MessageType.REGISTER,
      register: [{ ns: 'my-app', peer: { id, addrs: [multiaddr('/ip4/192.0.2.1/tcp/4001').bytes] } }]
    })
    const expected = '48 0800 1244 0a06' + toHex(utf8('my-app')) + '123a 0a2e' + toHex(utf8(id)) + '1208 04c0000201060fa1'
    assert.equal(toHex(bytes), expected.replace(/\s+/g, ''))
    assert.equal(bytes.length, 73)
    const decoded = decodeMessage(bytes.subarray(1))
    assert.equal(decoded.type, MessageType.REGISTER)
    assert.equal(decoded.register?.[0].ns, 'my-app')
    assert.equal(decoded.register?.[0].peer?.id, id)
    assert.equal(multiaddr(decoded.register?.[0].peer?.addrs[0]).toString(), '/ip4/192.0.2.1/tcp/4001')
  })

  it('encodes the framing example: a DISCOVER with one empty entry', () => {
    assert.equal(toHex(encodeFrame({ type: MessageType.DISCOVER, discovery: [{}] })), '0408032a00')
    assert.deepEqual(decodeMessage(hex('08032a00')).discovery, [{ ns: undefined, limit: undefined }])
  })

  it('round-trips every field', () => {
    /** @type {import('libp2p-live-rendezvous').WireMessage} */
    const message = {
      type: MessageType.UNREGISTER,
      register: [{ ns: 'a', peer: { id: 'x', addrs: [Uint8Array.of(1, 2)], signedPeerRecord: Uint8Array.of(9) } }],
      unregister: [{ ns: 'b', peer: { id: 'y', addrs: [] } }, { ns: 'c', peer: undefined }],
      rendezvous: [{ ns: 'r' }],
      discovery: [{ ns: 'd', limit: 5 }],
      error: { status: 1003, text: 'too many' },
      requestId: 2 ** 40
    }
    assert.deepEqual(decodeMessage(encodeMessage(message)), message)
    assert.deepEqual(decodeMessage(encodeMessage({ type: 4, requestId: (1n << 64n) - 1n })).requestId, (1n << 64n) - 1n)
  })

  it('reads an absent type as REGISTER and skips unknown fields', () => {
    // field 99 varint, field 100 bytes, field 101 fixed64, field 102 fixed32, then a register entry
    const bytes = hex('98 06 07  a2 06 02 abcd  a9 06 0102030405060708  b5 06 01020304  12 03 0a 01 61')
    const message = decodeMessage(bytes)
    assert.equal(message.type, MessageType.REGISTER)
    assert.deepEqual(message.register, [{ ns: 'a', peer: undefined }])
    assert.equal(decodeMessage(new Uint8Array()).type, MessageType.REGISTER)
  })

  it('decodes an ERROR with its request_id', () => {
    const message = decodeMessage(encodeMessage({ type: MessageType.ERROR, error: { status: 100, text: 'bad namespace' }, requestId: 7 }))
    assert.deepEqual({ type: message.type, error: message.error, requestId: message.requestId },
      { type: 4, error: { status: 100, text: 'bad namespace' }, requestId: 7 })
  })

  it('refuses what is not a valid Message', () => {
    const bad = {
      'a truncated tag': '08 00 92',
      'a truncated varint': '08 80',
      'a field past the end': '12 05 0a 01',
      'a group': '13',
      'field number 0': '00 00',
      'a varint where bytes belong': '10 01',
      'bytes where a varint belongs': '0a 00',
      'a namespace that is not UTF-8': '12 03 0a 01 ff',
      'a peer id that is not UTF-8': '12 05 12 03 0a 01 c3',
      'an out-of-range type': '08 ffffffff0f',
      'an out-of-range status': '32 06 08 8080808010',
      'a malformed nested peer': '12 04 12 02 0a 05'
    }
    for (const [what, bytes] of Object.entries(bad)) {
      assert.throws(() => decodeMessage(hex(bytes)), CodecError, what)
    }
  })
})

describe('FrameDecoder', () => {
  const a = encodeFrame({ type: MessageType.RENDEZVOUS, rendezvous: [{ ns: 'a' }] })
  const b = encodeFrame({ type: MessageType.REGISTER, register: [{ ns: 'x'.repeat(200) }] }) // two-byte length

  it('splits frames however the bytes arrive', () => {
    const all = new Uint8Array([...a, ...b, ...a])
    const decoder = new FrameDecoder()
    const frames = []
    for (const byte of all) frames.push(...decoder.push(Uint8Array.of(byte)))
    assert.deepEqual(frames.map((f) => toHex(f)), [a, b, a].map((f) => toHex(f.subarray(f.length - decodeMessageLength(f)))))
    assert.deepEqual(new FrameDecoder().push(all).length, 3)
    assert.deepEqual(new FrameDecoder().push(frame(new Uint8Array())), [new Uint8Array()])
  })

  it('refuses a frame over the limit, or a varint no frame can have', () => {
    assert.throws(() => new FrameDecoder({ maxFrameBytes: 100 }).push(b.subarray(0, 2)), CodecError)
    assert.deepEqual(new FrameDecoder({ maxFrameBytes: 300 }).push(b.subarray(0, 2)), [])
    assert.throws(() => new FrameDecoder().push(hex('ffffffffffffffffffff01')), CodecError)
  })
})

/** The message length a frame announces. @param {Uint8Array} f */
function decodeMessageLength (f) {
  const header = decodeVarint(f, 0)
  assert.ok(header)
  return Number(header[0])
}

describe('the package', () => {
  it('exports what index.d.ts declares', async () => {
    const api = await import('libp2p-live-rendezvous')
    assert.deepEqual(Object.keys(api).sort(), [
      'CodecError', 'DEFAULT_RELAY_NAMESPACE', 'DEFAULT_STUN_NAMESPACE', 'FrameDecoder', 'LiveRendezvous',
      'MessageType', 'PROTOCOL', 'RendezvousError', 'Status', 'backoffDelay', 'decodeMessage', 'decodeVarint',
      'encodeFrame', 'encodeMessage', 'encodeVarint', 'frame', 'liveRendezvous', 'stunUrl'
    ])
    assert.equal(api.PROTOCOL, '/rendezvous/live/1.0.0')
    assert.equal(api.DEFAULT_RELAY_NAMESPACE, 'rendezvous/relays')
    assert.equal(api.DEFAULT_STUN_NAMESPACE, 'rendezvous/stun')
  })
})
