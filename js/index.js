// libp2p-live-rendezvous: js-libp2p 3.x peer discovery over the rendezvous daemon's live dialect.
export {
  liveRendezvous, LiveRendezvous, PROTOCOL, DEFAULT_RELAY_NAMESPACE, DEFAULT_STUN_NAMESPACE, stunUrl
} from './src/rendezvous.js'
export { RendezvousError, Status } from './src/errors.js'
export { backoffDelay } from './src/backoff.js'
export {
  CodecError, MessageType, decodeMessage, encodeMessage, encodeFrame, frame, FrameDecoder, encodeVarint, decodeVarint
} from './src/codec.js'
