"""Fuzz the standard dialect (`/rendezvous/1.0.0`): framing, `StandardCodec.parse` and
DISCOVER cookies, for one authenticated peer.

Every request the codec accepts must be answerable: a refusal encodes, a REGISTER's
response and a DISCOVER_RESPONSE listing it encode and parse back, a cookie either
decodes or is refused. Anything but `FramingError` and `Refused` (from a cookie)
escaping is a crash.
"""

from __future__ import annotations

import contextlib

from _harness import chunks, instrumented, main, whole

with instrumented("rendezvous"):
    from rendezvous.framing import FrameDecoder, FramingError, frame
    from rendezvous.limits import Limits
    from rendezvous.model import Refused, Registration
    from rendezvous.p2p.envelope import PeerRecord, seal_peer_record
    from rendezvous.p2p.keys import PrivateKey
    from rendezvous.pb import prespec_pb2
    from rendezvous.standard.codec import (
        DiscoverRequest,
        Invalid,
        Layout,
        Message,
        OldMessage,
        RegisterRequest,
        StandardCodec,
        UnregisterRequest,
    )
    from rendezvous.standard.cookie import decode_cookie, encode_cookie

LIMITS = Limits(max_frame_bytes=16384)
CODEC = StandardCodec(LIMITS)
KEY = PrivateKey.from_seed(bytes(range(32)))
IDENTITY = KEY.peer_id()
EPOCH = bytes(8)
ADDR = bytes.fromhex("047f000001060fa1")  # /ip4/127.0.0.1/tcp/4001


def _answer(layout: Layout | None, request: object) -> None:
    layout = layout or Layout.SPEC
    if isinstance(request, Invalid):
        if request.kind is not None:
            CODEC.refusal(layout, request.kind, request.refusal)
    elif isinstance(request, RegisterRequest):
        assert request.peer.key == IDENTITY, "registered for another peer"
        assert LIMITS.ttl_min <= request.ttl <= LIMITS.ttl_max
        response = CODEC.register_response(layout, request.ttl)
        Message.FromString(response)
        registration = Registration(request.namespace, request.peer, expires=10.0, seq=3)
        if layout is Layout.SPEC:
            assert request.peer.signed_peer_record is not None
        answer = CODEC.discover_response(
            layout, [registration], 0.0, 0, lambda n: encode_cookie(EPOCH, n, request.namespace)
        )
        parsed = (Message if layout is Layout.SPEC else OldMessage).FromString(answer)
        assert len(parsed.discoverResponse.registrations) == 1
        assert parsed.discoverResponse.registrations[0].ns == request.namespace
    elif isinstance(request, DiscoverRequest):
        assert 1 <= request.limit <= LIMITS.discover_max_limit
        if request.cookie is not None:
            with contextlib.suppress(Refused):
                decode_cookie(request.cookie, EPOCH, request.namespace)
    else:
        assert isinstance(request, UnregisterRequest)


def test_one_input(data: bytes) -> None:
    decoder = FrameDecoder(LIMITS.max_frame_bytes)
    for piece in chunks(data):
        try:
            frames = decoder.feed(piece)
        except FramingError:
            return
        assert decoder.buffered <= LIMITS.max_frame_bytes + 10
        for body in frames:
            layout, request = CODEC.parse(body, IDENTITY)
            _answer(layout, request)


def seeds() -> list[bytes]:
    record = seal_peer_record(KEY, PeerRecord(IDENTITY, 1, (ADDR,)))
    register = Message(type=Message.REGISTER)
    register.register.ns = "app"
    register.register.signedPeerRecord = record
    register.register.ttl = 7200
    old = prespec_pb2.Message(type=prespec_pb2.Message.REGISTER)
    old.register.ns = "app"
    old.register.peer.id = IDENTITY
    old.register.peer.addrs.append(ADDR)
    unregister = Message(type=Message.UNREGISTER)
    unregister.unregister.ns = "app"
    discover = Message(type=Message.DISCOVER)
    discover.discover.ns = "app"
    discover.discover.limit = 10
    discover.discover.cookie = encode_cookie(EPOCH, 5, "app")
    every = Message(type=Message.DISCOVER)
    every.discover.limit = 1
    messages = [m.SerializeToString() for m in (register, old, unregister, discover, every)]
    stream = b"".join(frame(m) for m in messages)
    return [whole(frame(m)) for m in messages] + [whole(stream), b"\x05" + stream]


if __name__ == "__main__":
    main(test_one_input, seeds)
