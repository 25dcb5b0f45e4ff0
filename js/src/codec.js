// The live dialect's wire format, by hand: uvarint-length-prefixed frames, each one
// protobuf `Message` (docs/protocol.rst, proto/rendezvous/pb/live.proto).

/** Message types (`Message.MessageType`). */
export const MessageType = Object.freeze({
  REGISTER: 0,
  UNREGISTER: 1,
  RENDEZVOUS: 2,
  DISCOVER: 3,
  ERROR: 4
})

/** Largest frame accepted from a server unless told otherwise (the server's own default is 64 KiB). */
export const DEFAULT_MAX_FRAME_BYTES = 4 * 1024 * 1024

/** Raised for bytes that are not a valid frame or `Message`. */
export class CodecError extends Error {
  /** @param {string} message */
  constructor (message) {
    super(message)
    this.name = 'CodecError'
  }
}

const utf8 = new TextEncoder()
const strictUtf8 = new TextDecoder('utf-8', { fatal: true })
const TWO_POW_64 = 1n << 64n

// -- varints -------------------------------------------------------------------

/**
 * The unsigned LEB128 varint of a non-negative integer below 2^64.
 *
 * @param {number | bigint} value
 * @returns {Uint8Array}
 */
export function encodeVarint (value) {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`not a uint64: ${value}`)
    if (value < 0x80) return Uint8Array.of(value)
    value = BigInt(value)
  }
  if (value < 0n || value >= TWO_POW_64) throw new RangeError(`not a uint64: ${value}`)
  const out = []
  while (value >= 0x80n) {
    out.push(Number(value & 0x7fn) | 0x80)
    value >>= 7n
  }
  out.push(Number(value))
  return Uint8Array.from(out)
}

/**
 * Reads a varint at `offset`: `[value, next offset]`, or null when `buf` ends inside it.
 * Throws CodecError for a varint longer than 10 bytes or above 2^64-1.
 *
 * @param {Uint8Array} buf
 * @param {number} offset
 * @returns {[number | bigint, number] | null}
 */
export function decodeVarint (buf, offset) {
  let small = 0
  for (let i = 0; i < 4; i++) { // up to 28 bits with plain numbers
    if (offset + i >= buf.length) return null
    const byte = buf[offset + i]
    small += (byte & 0x7f) * 2 ** (7 * i)
    if (byte < 0x80) return [small, offset + i + 1]
  }
  let value = BigInt(small)
  for (let i = 4; ; i++) {
    if (i >= 10) throw new CodecError('varint longer than 10 bytes')
    if (offset + i >= buf.length) return null
    const byte = buf[offset + i]
    value |= BigInt(byte & 0x7f) << BigInt(7 * i)
    if (byte < 0x80) {
      if (value >= TWO_POW_64) throw new CodecError('varint above 2^64-1')
      return [value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value, offset + i + 1]
    }
  }
}

// -- protobuf fields -----------------------------------------------------------

/**
 * @param {Uint8Array[]} parts
 * @returns {Uint8Array}
 */
export function concat (parts) {
  let length = 0
  for (const p of parts) length += p.length
  const out = new Uint8Array(length)
  let offset = 0
  for (const p of parts) { out.set(p, offset); offset += p.length }
  return out
}

/** @param {number} field @param {number | bigint} value */
const varintField = (field, value) => concat([encodeVarint(field << 3), encodeVarint(value)])
/** @param {number} field @param {Uint8Array} bytes */
const bytesField = (field, bytes) => concat([encodeVarint((field << 3) | 2), encodeVarint(bytes.length), bytes])
/** @param {number} field @param {string} text */
const stringField = (field, text) => bytesField(field, utf8.encode(text))

/**
 * Field number -> values, in order: numbers (or bigints) for varints, byte arrays for
 * length-delimited fields. Fixed-width fields are skipped (none is used here).
 *
 * @param {Uint8Array} buf
 * @returns {Map<number, Array<number | bigint | Uint8Array>>}
 */
function readFields (buf) {
  /** @type {Map<number, Array<number | bigint | Uint8Array>>} */
  const fields = new Map()
  let offset = 0
  while (offset < buf.length) {
    const tag = decodeVarint(buf, offset)
    if (tag == null) throw new CodecError('truncated field tag')
    if (typeof tag[0] !== 'number' || tag[0] > 0xffffffff) throw new CodecError('field tag too large')
    offset = tag[1]
    const number = Math.floor(tag[0] / 8)
    const wire = tag[0] % 8
    if (number === 0) throw new CodecError('field number 0')
    /** @type {number | bigint | Uint8Array} */
    let value
    if (wire === 0) {
      const v = decodeVarint(buf, offset)
      if (v == null) throw new CodecError(`truncated varint in field ${number}`)
      ;[value, offset] = v
    } else if (wire === 2) {
      const length = decodeVarint(buf, offset)
      if (length == null) throw new CodecError(`truncated length of field ${number}`)
      if (typeof length[0] !== 'number' || length[1] + length[0] > buf.length) {
        throw new CodecError(`field ${number} runs past the end of the message`)
      }
      value = buf.subarray(length[1], length[1] + length[0])
      offset = length[1] + length[0]
    } else if (wire === 1 || wire === 5) {
      offset += wire === 1 ? 8 : 4
      if (offset > buf.length) throw new CodecError(`truncated fixed-width field ${number}`)
      continue
    } else {
      throw new CodecError(`unsupported wire type ${wire} in field ${number}`)
    }
    let values = fields.get(number)
    if (values == null) fields.set(number, values = [])
    values.push(value)
  }
  return fields
}

/**
 * @param {Map<number, Array<number | bigint | Uint8Array>>} fields
 * @param {number} number
 * @param {string} name
 * @returns {Uint8Array[]}
 */
function bytesValues (fields, number, name) {
  const values = fields.get(number) ?? []
  for (const v of values) {
    if (!(v instanceof Uint8Array)) throw new CodecError(`${name} is not length-delimited`)
  }
  return /** @type {Uint8Array[]} */ (values)
}

/**
 * @param {Map<number, Array<number | bigint | Uint8Array>>} fields
 * @param {number} number
 * @param {string} name
 * @returns {Uint8Array | undefined} the last value (protobuf: last one wins)
 */
function lastBytes (fields, number, name) {
  const values = bytesValues(fields, number, name)
  return values[values.length - 1]
}

/**
 * @param {Map<number, Array<number | bigint | Uint8Array>>} fields
 * @param {number} number
 * @param {string} name
 * @returns {number | bigint | undefined}
 */
function lastVarint (fields, number, name) {
  const values = fields.get(number) ?? []
  const value = values[values.length - 1]
  if (value instanceof Uint8Array) throw new CodecError(`${name} is not a varint`)
  return value
}

/**
 * @param {Map<number, Array<number | bigint | Uint8Array>>} fields
 * @param {number} number
 * @param {string} name
 * @returns {string | undefined}
 */
function lastString (fields, number, name) {
  const bytes = lastBytes(fields, number, name)
  if (bytes == null) return undefined
  try {
    return strictUtf8.decode(bytes)
  } catch {
    throw new CodecError(`${name} is not UTF-8`)
  }
}

// -- Message -------------------------------------------------------------------

/**
 * @typedef {object} WirePeer
 * @property {string} [id] libp2p peer id, text form
 * @property {Uint8Array[]} addrs binary multiaddrs
 * @property {Uint8Array} [signedPeerRecord] a libp2p signed envelope
 *
 * @typedef {object} WireEntry a Register or Unregister entry
 * @property {string} [ns]
 * @property {WirePeer} [peer]
 *
 * @typedef {object} WireMessage
 * @property {number} type one of MessageType (an absent type is REGISTER)
 * @property {WireEntry[]} [register]
 * @property {WireEntry[]} [unregister]
 * @property {Array<{ ns?: string }>} [rendezvous]
 * @property {Array<{ ns?: string, limit?: number | bigint }>} [discovery]
 * @property {{ status?: number, text?: string }} [error]
 * @property {number | bigint} [requestId]
 */

/** @param {WirePeer} peer */
function encodePeer (peer) {
  const parts = []
  if (peer.id != null) parts.push(stringField(1, peer.id))
  for (const addr of peer.addrs ?? []) parts.push(bytesField(2, addr))
  if (peer.signedPeerRecord != null) parts.push(bytesField(3, peer.signedPeerRecord))
  return concat(parts)
}

/** @param {WireEntry} entry */
function encodeEntry (entry) {
  const parts = []
  if (entry.ns != null) parts.push(stringField(1, entry.ns))
  if (entry.peer != null) parts.push(bytesField(2, encodePeer(entry.peer)))
  return concat(parts)
}

/**
 * The protobuf bytes of a Message (the type is always written, REGISTER included).
 *
 * @param {WireMessage} message
 * @returns {Uint8Array}
 */
export function encodeMessage (message) {
  const parts = [varintField(1, message.type)]
  for (const e of message.register ?? []) parts.push(bytesField(2, encodeEntry(e)))
  for (const e of message.unregister ?? []) parts.push(bytesField(3, encodeEntry(e)))
  for (const e of message.rendezvous ?? []) {
    parts.push(bytesField(4, e.ns == null ? new Uint8Array() : stringField(1, e.ns)))
  }
  for (const e of message.discovery ?? []) {
    const body = []
    if (e.ns != null) body.push(stringField(1, e.ns))
    if (e.limit != null) body.push(varintField(2, e.limit))
    parts.push(bytesField(5, concat(body)))
  }
  if (message.error != null) {
    const body = []
    if (message.error.status != null) body.push(varintField(1, message.error.status))
    if (message.error.text != null) body.push(stringField(2, message.error.text))
    parts.push(bytesField(6, concat(body)))
  }
  if (message.requestId != null) parts.push(varintField(7, message.requestId))
  return concat(parts)
}

/** @param {Uint8Array} buf @returns {WirePeer} */
function decodePeer (buf) {
  const f = readFields(buf)
  /** @type {WirePeer} */
  const peer = { id: lastString(f, 1, 'Peer.id'), addrs: bytesValues(f, 2, 'Peer.addrs') }
  const record = lastBytes(f, 3, 'Peer.signed_peer_record')
  if (record != null) peer.signedPeerRecord = record
  return peer
}

/** @param {Uint8Array} buf @param {string} name @returns {WireEntry} */
function decodeEntry (buf, name) {
  const f = readFields(buf)
  const peer = lastBytes(f, 2, `${name}.peer`)
  return { ns: lastString(f, 1, `${name}.ns`), peer: peer == null ? undefined : decodePeer(peer) }
}

/**
 * Decodes a Message. Throws CodecError for bytes that are not valid protobuf, wire
 * types that do not match the schema, strings that are not UTF-8, or enum and status
 * values out of their range. Unknown fields are skipped; an unknown type is kept.
 *
 * @param {Uint8Array} buf
 * @returns {WireMessage}
 */
export function decodeMessage (buf) {
  const f = readFields(buf)
  const type = lastVarint(f, 1, 'Message.type') ?? MessageType.REGISTER
  if (typeof type !== 'number' || type > 0x7fffffff) throw new CodecError('Message.type out of range')
  /** @type {WireMessage} */
  const message = {
    type,
    register: bytesValues(f, 2, 'Message.register').map((b) => decodeEntry(b, 'Register')),
    unregister: bytesValues(f, 3, 'Message.unregister').map((b) => decodeEntry(b, 'Unregister')),
    rendezvous: bytesValues(f, 4, 'Message.rendezvous').map((b) => ({ ns: lastString(readFields(b), 1, 'Rendezvous.ns') })),
    discovery: bytesValues(f, 5, 'Message.discovery').map((b) => {
      const d = readFields(b)
      return { ns: lastString(d, 1, 'Discover.ns'), limit: lastVarint(d, 2, 'Discover.limit') }
    })
  }
  const error = lastBytes(f, 6, 'Message.error')
  if (error != null) {
    const e = readFields(error)
    const status = lastVarint(e, 1, 'Error.status')
    if (status != null && (typeof status !== 'number' || status > 0xffffffff)) {
      throw new CodecError('Error.status out of range')
    }
    message.error = { status, text: lastString(e, 2, 'Error.text') }
  }
  const requestId = lastVarint(f, 7, 'Message.request_id')
  if (requestId != null) message.requestId = requestId
  return message
}

// -- frames --------------------------------------------------------------------

/**
 * A frame: uvarint(length) followed by the message.
 *
 * @param {Uint8Array} message
 * @returns {Uint8Array}
 */
export function frame (message) {
  return concat([encodeVarint(message.length), message])
}

/** Frames a Message: `frame(encodeMessage(message))`. @param {WireMessage} message */
export function encodeFrame (message) {
  return frame(encodeMessage(message))
}

/**
 * Splits a byte stream into frames. Push chunks in as they arrive; each call returns
 * the frames completed so far. Throws CodecError when the stream cannot be framed (a
 * bad varint, or a length over `maxFrameBytes`): the stream must then be abandoned.
 */
export class FrameDecoder {
  /** @param {{ maxFrameBytes?: number }} [options] */
  constructor (options = {}) {
    this.maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES
    /** @type {Uint8Array} */
    this.buffer = new Uint8Array()
  }

  /**
   * @param {Uint8Array} chunk
   * @returns {Uint8Array[]}
   */
  push (chunk) {
    const buf = this.buffer.length === 0 ? chunk : concat([this.buffer, chunk])
    /** @type {Uint8Array[]} */
    const frames = []
    let offset = 0
    for (;;) {
      const header = decodeVarint(buf, offset)
      if (header == null) break
      const [length, start] = header
      if (typeof length !== 'number' || length > this.maxFrameBytes) {
        throw new CodecError(`frame of ${length} bytes is over the limit of ${this.maxFrameBytes}`)
      }
      if (start + length > buf.length) break
      frames.push(buf.subarray(start, start + length))
      offset = start + length
    }
    // keep only the unfinished tail, copied so the frames returned stay valid
    this.buffer = offset === buf.length ? new Uint8Array() : buf.slice(offset)
    return frames
  }
}
