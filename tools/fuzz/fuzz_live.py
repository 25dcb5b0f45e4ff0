"""Fuzz the live dialect: framing (`FrameDecoder`) and the codec (`LiveCodec.parse`).

Bytes from a client, cut into reads, go through one session's frame decoder; each
frame is parsed twice, with and without the session's entry cache. The daemon
misbehaves if anything but `FramingError` escapes, if the two parses disagree (the
cached REGISTER path must answer as protobuf does), if an accepted registration does
not survive being encoded for subscribers and read back, or if the decoder or the
entry cache outgrows its bound.
"""

from __future__ import annotations

from _harness import chunks, instrumented, main, whole

with instrumented("rendezvous"):
    from rendezvous.entry import entry_bytes
    from rendezvous.framing import FrameDecoder, FramingError, frame
    from rendezvous.limits import Limits
    from rendezvous.live.codec import (
        EntryCache,
        LiveCodec,
        LiveDiscoverRequest,
        LiveRegisterRequest,
        LiveRendezvousRequest,
        LiveUnregisterRequest,
        Parsed,
    )
    from rendezvous.model import Refused, Registration
    from rendezvous.p2p.keys import PrivateKey
    from rendezvous.pb.live_pb2 import Message
    from rendezvous.peerid import parse_peer_id

LIMITS = Limits(max_frame_bytes=8192, max_registrations_per_session=8)
CODEC = LiveCodec(LIMITS)
PLAIN = LiveCodec(LIMITS)


def _summary(parsed: Parsed) -> tuple[object, ...]:
    requests: list[object] = []
    for request in parsed.requests:
        if isinstance(request, Refused):
            requests.append(("refused", request.status))
        else:
            requests.append(request)
    return parsed.kind, parsed.request_id, requests


def _check_register(request: LiveRegisterRequest) -> None:
    peer = request.peer
    assert peer.key == parse_peer_id(peer.id), "the key is not the id's"
    entry = entry_bytes(Registration(request.namespace, peer))
    back = Message.Register.FromString(entry)
    assert back.ns == request.namespace, "namespace changed in the encoding"
    assert back.peer.id == peer.id and tuple(back.peer.addrs) == peer.addrs, "peer changed"
    if peer.signed_peer_record is None:
        assert not back.peer.HasField("signed_peer_record")
    else:
        assert back.peer.signed_peer_record == peer.signed_peer_record


def test_one_input(data: bytes) -> None:
    decoder = FrameDecoder(LIMITS.max_frame_bytes)
    entries = EntryCache()
    for piece in chunks(data):
        try:
            frames = decoder.feed(piece)
        except FramingError:
            return
        assert decoder.buffered <= LIMITS.max_frame_bytes + 10, "decoder holds too much"
        for body in frames:
            cached = CODEC.parse(body, entries)
            plain = PLAIN.parse(body)
            assert _summary(cached) == _summary(plain), (cached, plain)
            assert len(entries) <= LIMITS.max_registrations_per_session
            assert plain.requests, "a frame with no answer"
            for request in plain.requests:
                if isinstance(request, LiveRegisterRequest):
                    _check_register(request)
                else:
                    assert isinstance(
                        request,
                        LiveUnregisterRequest
                        | LiveRendezvousRequest
                        | LiveDiscoverRequest
                        | Refused,
                    )
            # A session re-sends its frames: the cached answer must stay the same.
            again = CODEC.parse(body, entries)
            assert _summary(again) == _summary(plain), (again, plain)


def seeds() -> list[bytes]:
    peer_id = PrivateKey.from_seed(bytes(32)).peer_id_text()
    addr = bytes.fromhex("047f000001060fa1")  # /ip4/127.0.0.1/tcp/4001
    register = Message(type=Message.REGISTER, request_id=7)
    entry = register.register.add(ns="app")
    entry.peer.id = peer_id
    entry.peer.addrs.append(addr)
    entry.peer.signed_peer_record = b"\x0a\x00"
    short = Message(type=Message.REGISTER)
    short.register.add(ns="a").peer.id = peer_id
    unregister = Message(type=Message.UNREGISTER)
    unregister.unregister.add(ns="app").peer.id = peer_id
    rendezvous = Message(type=Message.RENDEZVOUS)
    rendezvous.rendezvous.add(ns="app")
    discover = Message(type=Message.DISCOVER, request_id=1)
    discover.discovery.add(ns="app", limit=5)
    messages = [m.SerializeToString() for m in (register, short, unregister, rendezvous, discover)]
    stream = b"".join(frame(m) for m in messages)
    return [whole(frame(m)) for m in messages] + [whole(stream + stream), b"\x03" + stream]


if __name__ == "__main__":
    main(test_one_input, seeds)
