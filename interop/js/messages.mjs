// Protobuf fields and varint-length-prefixed frames by hand: just what the interop
// scripts need to speak the live and standard dialects' Message, without a codegen step.
export const utf8 = new TextEncoder()
export const text = new TextDecoder()

export function varint (value) {
  const out = []
  let n = BigInt(value)
  while (n >= 0x80n) { out.push(Number(n & 0x7fn) | 0x80); n >>= 7n }
  out.push(Number(n))
  return Uint8Array.from(out)
}

export function concat (parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let offset = 0
  for (const p of parts) { out.set(p, offset); offset += p.length }
  return out
}

export const fieldVarint = (n, v) => concat([varint(n << 3), varint(v)])
export const fieldBytes = (n, b) => concat([varint((n << 3) | 2), varint(b.length), b])
export const fieldString = (n, s) => fieldBytes(n, utf8.encode(s))
export const frame = (message) => concat([varint(message.length), message])

// [value, next offset], or null when buf ends inside the varint.
export function readVarint (buf, offset) {
  let value = 0n
  let shift = 0n
  for (;;) {
    if (offset >= buf.length) return null
    const byte = buf[offset++]
    value |= BigInt(byte & 0x7f) << shift
    if (byte < 0x80) return [Number(value), offset]
    shift += 7n
  }
}

// Field number -> list of values (numbers for varints, byte arrays for the rest).
export function decodeFields (buf) {
  const fields = {}
  let offset = 0
  while (offset < buf.length) {
    let tag;
    [tag, offset] = readVarint(buf, offset)
    const [number, wire] = [tag >> 3, tag & 7]
    let value
    if (wire === 0) {
      [value, offset] = readVarint(buf, offset)
    } else if (wire === 2) {
      let length;
      [length, offset] = readVarint(buf, offset)
      value = buf.subarray(offset, offset + length)
      offset += length
    } else {
      throw new Error(`unexpected wire type ${wire}`)
    }
    (fields[number] ??= []).push(value)
  }
  return fields
}

// Splits what a libp2p stream receives into frames and calls onMessage(decode(frame)).
export function readFrames (stream, decode, onMessage) {
  let buffer = new Uint8Array()
  stream.addEventListener('message', (event) => {
    const data = event.data.subarray ? event.data.subarray() : event.data
    buffer = concat([buffer, data])
    for (;;) {
      const header = readVarint(buffer, 0)
      if (header == null || buffer.length < header[1] + header[0]) break
      const message = decode(buffer.subarray(header[1], header[1] + header[0]))
      buffer = buffer.slice(header[1] + header[0])
      onMessage(message)
    }
  })
}
