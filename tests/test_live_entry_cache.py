"""A session's entry cache: a cached REGISTER parses exactly as protobuf and the checks would."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rendezvous.limits import Limits
from rendezvous.live.codec import EntryCache, LiveCodec, LiveRegisterRequest, Parsed
from rendezvous.live.session import LiveDialect
from rendezvous.loglimit import LogLimiter
from rendezvous.metrics import Metrics
from rendezvous.model import Refused
from rendezvous.pb.live_pb2 import Message
from rendezvous.store.memory import MemoryStore
from rendezvous.varint import encode_uvarint
from rendezvous.workers.hubstore import HubStore

from .helpers import peer, peer_id, register, tcp_addr, unframe_all

LIMITS = Limits(max_addrs_per_peer=2, max_registrations_per_session=8)


def entry(namespace: str, name: str, *addrs: bytes) -> bytes:
    """One ``Message.register`` entry's bytes, as protobuf writes it."""
    return register(namespace, name, *addrs).register[0].SerializeToString()


def layout(entries: list[bytes], request_id: int | None = None) -> bytes:
    """``08 00``, the entries, then the request id: the layout the cache reads."""
    parts = [b"\x08\x00"]
    for item in entries:
        parts.append(b"\x12" + encode_uvarint(len(item)) + item)
    if request_id is not None:
        parts.append(b"\x38" + encode_uvarint(request_id))
    return b"".join(parts)


def summary(parsed: Parsed) -> tuple[object, ...]:
    """`Parsed` comparable by value (a `Refused` is an exception: by status and text)."""
    requests = [(r.status, r.text) if isinstance(r, Refused) else r for r in parsed.requests]
    return parsed.kind, parsed.request_id, requests


GOOD = [entry("app", name, tcp_addr(n)) for n, name in enumerate("ABCDEF")]
BAD = [
    entry("", "A"),  # empty namespace
    entry("app", "A", tcp_addr(1), tcp_addr(2), tcp_addr(3)),  # too many addresses
    b"\x0a\x03app",  # no peer
    b"\x0a\x02\xff\xfe\x12\x00",  # namespace not UTF-8
]
JUNK = [b"", b"\x00", b"\x12", b"\x12\x05ab", b"\x38", b"\x38\xff", b"\x1a\x00", b"\x08\x00"]


class EntryCacheTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.codec = LiveCodec(LIMITS)

    def test_cached_parse_is_the_plain_parse(self) -> None:
        cache = EntryCache()
        frame = layout(GOOD[:3], request_id=7)
        first = self.codec.parse(frame, cache)
        self.assertEqual(len(cache), 3)
        again = self.codec.parse(frame, cache)
        self.assertEqual(summary(again), summary(first))
        self.assertEqual(summary(again), summary(self.codec.parse(frame)))
        [request, *_] = again.requests
        assert isinstance(request, LiveRegisterRequest)
        self.assertEqual(request.peer, peer("A", tcp_addr(0)))

    def test_refusals_are_not_cached(self) -> None:
        cache = EntryCache()
        frame = layout([GOOD[0], *BAD, GOOD[1]])
        parsed = self.codec.parse(frame, cache)
        self.assertEqual(set(cache), {GOOD[0], GOOD[1]})
        self.assertEqual(summary(self.codec.parse(frame, cache)), summary(parsed))
        self.assertEqual(len([r for r in parsed.requests if isinstance(r, Refused)]), len(BAD))

    def test_other_layouts_take_the_protobuf_path(self) -> None:
        cache = EntryCache()
        self.codec.parse(layout(GOOD[:2]), cache)
        message = register("app", "A", tcp_addr(0))
        message.ClearField("type")  # no type field: the frame does not start 08 00
        frames = [
            message.SerializeToString(),
            layout(GOOD[:2]) + b"\x08\x00",  # the type twice
            layout(GOOD[:2]) + b"\x1a\x00",  # an UNREGISTER entry too
            layout(GOOD[:2]) + b"\x38" + b"\xff" * 10 + b"\x01",  # overlong request id
            layout(GOOD[:2])[:-1],  # truncated
        ]
        for frame in frames:
            self.assertEqual(
                summary(self.codec.parse(frame, cache)), summary(self.codec.parse(frame)), frame
            )

    def test_a_long_entry_behind_a_one_byte_length_is_malformed(self) -> None:
        long = entry("n" * 100, "A", tcp_addr(1))
        self.assertTrue(0x80 <= len(long) < 0x100)
        cache = EntryCache()
        self.codec.parse(layout([long]), cache)
        self.assertIn(long, cache)
        # The length byte 0x8N starts a longer varint: protobuf finds the frame truncated.
        frame = b"\x08\x00\x12" + bytes([len(long)]) + long
        parsed = self.codec.parse(frame, cache)
        self.assertEqual(summary(parsed), summary(self.codec.parse(frame)))
        self.assertIsNone(parsed.kind)

    def test_bounded(self) -> None:
        cache = EntryCache()
        for n in range(40):
            self.codec.parse(layout([entry("app", f"peer-{n}")]), cache)
            self.assertLessEqual(len(cache), LIMITS.max_registrations_per_session)

    @given(
        st.lists(st.sampled_from(GOOD + BAD), min_size=1, max_size=6),
        st.lists(
            st.tuples(
                st.lists(st.sampled_from(GOOD + BAD + JUNK), min_size=1, max_size=6),
                st.none() | st.integers(0, 2**64 - 1),
                st.binary(max_size=4),
            ),
            min_size=1,
            max_size=5,
        ),
    )
    def test_any_frame_parses_as_without_cache(
        self,
        warm: list[bytes],
        frames: list[tuple[list[bytes], int | None, bytes]],
    ) -> None:
        cache = EntryCache()
        self.codec.parse(layout(warm), cache)
        for entries, request_id, tail in frames:
            frame = layout(entries, request_id) + tail
            self.assertEqual(
                summary(self.codec.parse(frame, cache)), summary(self.codec.parse(frame))
            )

    @given(st.binary(max_size=200))
    def test_garbage_after_a_register_start(self, data: bytes) -> None:
        cache = EntryCache()
        self.codec.parse(layout(GOOD), cache)
        frame = b"\x08\x00\x12" + data
        self.assertEqual(summary(self.codec.parse(frame, cache)), summary(self.codec.parse(frame)))


class Output:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> bool:
        self.sent.append(data)
        return True

    def close(self, last: bytes | None = None, *, discard_pending: bool = False) -> None:
        pass


class SessionCacheTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = MemoryStore(LIMITS, Clock())
        self.dialect = LiveDialect(
            self.store, LiveCodec(LIMITS), Metrics(self.store.stats), LogLimiter(lambda: 0.0)
        )

    def test_only_sessions_that_register_again_keep_a_cache(self) -> None:
        """A session's first registration makes no cache (idle sessions stay small)."""
        session = self.dialect.session(Output(), "test")
        self.assertTrue(session.start())
        frame = encode_uvarint(len(layout(GOOD[:1]))) + layout(GOOD[:1])
        session.feed(frame)
        self.assertIsNone(session._entries)
        session.feed(frame)
        # The usual REGISTER (one short entry) is kept whole, its frame as the key.
        expected = {layout(GOOD[:1]): LiveRegisterRequest("app", peer("A", tcp_addr(0)))}
        self.assertEqual(session._entries, expected)
        session.feed(frame)
        self.assertEqual(session._entries, expected)
        self.assertEqual(self.dialect.metrics.received["register"], 3)
        self.assertEqual(self.store.stats().registrations, 1)

    def test_a_worker_session_keeps_a_cache_too(self) -> None:
        """In a worker the registrations are the hub's: the second REGISTER still caches."""
        store = HubStore(10, [].append)
        dialect = LiveDialect(
            store, LiveCodec(LIMITS), Metrics(store.stats), LogLimiter(lambda: 0.0)
        )
        session = dialect.session(Output(), "test")
        self.assertTrue(session.start())
        frame = encode_uvarint(len(layout(GOOD[:1]))) + layout(GOOD[:1])
        session.feed(frame)
        self.assertIsNone(session._entries)
        session.feed(frame)
        # The usual REGISTER (one short entry) is kept whole, its frame as the key.
        expected = {layout(GOOD[:1]): LiveRegisterRequest("app", peer("A", tcp_addr(0)))}
        self.assertEqual(session._entries, expected)

    def test_usual_registers_in_one_read_are_each_answered_and_counted(self) -> None:
        """One-entry REGISTERs read by hand: the good one is stored, the refused one
        (an empty namespace) answered with its ERROR, both counted as received."""
        output = Output()
        session = self.dialect.session(output, "test")
        self.assertTrue(session.start())
        data = b"".join(encode_uvarint(len(f)) + f for f in (layout([GOOD[0]]), layout([BAD[0]])))
        session.feed(data)
        self.assertEqual(self.store.stats().registrations, 1)
        [error] = [message for data in output.sent for message in unframe_all(data)]
        self.assertEqual(error.type, Message.ERROR)
        self.assertEqual(error.error.text, "namespace is empty")
        self.assertEqual(self.dialect.metrics.received["register"], 2)

    def test_cached_registers_still_meet_the_registry(self) -> None:
        """Ownership is the registry's: a cached entry of another session's id is refused."""
        outputs = [Output(), Output()]
        first, second = (self.dialect.session(c, f"s{n}") for n, c in enumerate(outputs))
        self.assertTrue(first.start() and second.start())
        body = layout(GOOD[:1])
        frame = encode_uvarint(len(body)) + body
        first.feed(frame * 3)
        second.feed(frame * 3)
        self.assertEqual(outputs[0].sent, [])
        errors = [unframe_all(data)[0] for data in outputs[1].sent]
        self.assertEqual(len(errors), 3)
        for error in errors:
            self.assertEqual(error.type, Message.ERROR)
            self.assertEqual(error.error.text, "peer id is registered by another session")
        self.assertNotEqual(peer_id("A"), "")
