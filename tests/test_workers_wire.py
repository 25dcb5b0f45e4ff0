"""The hub <-> worker channel's schema: every message round-trips, a worker of another
version is refused with a clear error, malformed input is an error, never a crash."""

from __future__ import annotations

import contextlib
from array import array
from types import SimpleNamespace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from rendezvous import __version__
from rendezvous.limits import Limits
from rendezvous.metrics import Counts
from rendezvous.model import Announcement, Change, Peer, Refused, Registration, Status
from rendezvous.pb import workers_pb2 as pb
from rendezvous.registry import Session
from rendezvous.store.memory import MemoryStore
from rendezvous.workers.hub import Hub
from rendezvous.workers.hubstore import HubStore
from rendezvous.workers.pool import _Channel
from rendezvous.workers.wire import (
    VERSION,
    ChannelError,
    Kind,
    VersionMismatch,
    announcement_of,
    counters_record,
    counts_of,
    define_record,
    fill_registration,
    hello_record,
    message_record,
    push_record,
    record,
    registration_of,
    sids_of,
)

from .helpers import peer

_text = st.text(max_size=20)
_bytes = st.binary(max_size=40)
_u64 = st.integers(min_value=0, max_value=2**64 - 1)
_request_ids = st.none() | _u64
peers = st.builds(
    Peer,
    _text,
    _bytes,
    st.lists(_bytes, max_size=3).map(tuple),
    st.none() | _bytes,
)
registrations = st.builds(
    Registration,
    _text,
    peers,
    st.none() | st.floats(allow_nan=False),
    _u64,
    st.none() | _bytes,
)
announcements = st.builds(
    Announcement, st.sampled_from(list(Change)), registrations, st.none() | _bytes
)
_tallies = st.dictionaries(_text, _u64, max_size=4)
counts = st.builds(
    Counts,
    received=_tallies,
    sent=_tallies,
    refusals=_tallies,
    slow_subscribers_dropped=_u64,
    sessions_opened=_u64,
)


class _RecordingStore:
    """A `Store` that keeps each request made of it, as (method, args...)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def open_session(self, client: Any, identity: bytes | None = None) -> Session:
        self.calls.append(("open", identity))
        return Session(client, identity)

    def close_session(self, session: Session) -> None:
        self.calls.append(("close",))

    def __getattr__(self, method: str) -> Any:
        def call(session: Session, *args: Any, **kwargs: Any) -> None:
            self.calls.append((method, *args, *sorted(kwargs.items())))

        return call


class _Client:
    """A worker session's client, keeping each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __getattr__(self, method: str) -> Any:
        return lambda *args: self.calls.append((method, *args))


class RoundTripTests(TestCase):
    def pair(self) -> tuple[HubStore, _RecordingStore, Hub, Clock]:
        """A worker's store and the hub's store behind it, wired in memory."""
        clock = Clock()
        store = _RecordingStore()
        hub = Hub(store, clock)  # type: ignore[arg-type]
        worker = HubStore(10)
        link = hub.link("1", worker.feed)
        worker.attach(link.feed)
        return worker, store, hub, clock

    @given(registrations)
    def test_registrations(self, registration: Registration) -> None:
        message = pb.Registration()
        fill_registration(message, registration)
        decoded = registration_of(pb.Registration.FromString(message.SerializeToString()))
        self.assertEqual(decoded, registration)
        self.assertEqual(decoded.wire, registration.wire)

    @given(announcements)
    def test_announcements(self, announcement: Announcement) -> None:
        decoded = announcement_of(define_record(announcement)[5:])
        self.assertEqual(decoded, announcement)
        self.assertEqual(decoded.encoded, announcement.encoded)

    @given(counts)
    def test_counters(self, figures: Counts) -> None:
        self.assertEqual(counts_of(counters_record(figures)[5:]), figures)

    @given(st.lists(_u64, max_size=50))
    def test_pushes_are_the_schemas_push(self, sids: list[int]) -> None:
        body = push_record(array("Q", sids))[5:]
        self.assertEqual(list(pb.Push.FromString(body).sids), sids)
        self.assertEqual(list(sids_of(body)), sids)
        # Any other valid encoding of the same Push reads the same.
        split = b"".join(pb.Push(sids=[sid]).SerializeToString() for sid in sids)
        self.assertEqual(list(sids_of(split)), sids)

    @given(_text, peers, _bytes, _u64, _u64, st.none() | _text, st.booleans(), _request_ids)
    def test_every_request(
        self,
        namespace: str,
        who: Peer,
        key: bytes,
        number: int,
        other: int,
        maybe_namespace: str | None,
        signed_only: bool,
        request_id: int | None,
    ) -> None:
        worker, store, _, _ = self.pair()
        session = worker.open_session(_Client(), key)
        worker.register(session, namespace, who, request_id)
        worker.unregister(session, namespace, key, request_id)
        worker.subscribe(session, namespace, request_id)
        worker.discover(session, namespace, number, request_id)
        worker.register_ttl(session, namespace, who, number, request_id)
        worker.discover_since(
            session, maybe_namespace, number, other, request_id, signed_only=signed_only
        )
        worker.close_session(session)
        self.assertEqual(
            store.calls,
            [
                ("open", key),
                ("register", namespace, who, request_id),
                ("unregister", namespace, key, request_id),
                ("subscribe", namespace, request_id),
                ("discover", namespace, number, request_id),
                ("register_ttl", namespace, who, number, request_id),
                (
                    "discover_since",
                    maybe_namespace,
                    number,
                    other,
                    request_id,
                    ("signed_only", signed_only),
                ),
                ("close",),
            ],
        )

    @given(_text, st.lists(registrations, max_size=3), registrations, _request_ids)
    def test_every_answer(
        self,
        namespace: str,
        found: list[Registration],
        made: Registration,
        request_id: int | None,
    ) -> None:
        worker, _, hub, clock = self.pair()
        client = _Client()
        worker.open_session(client)
        (link,) = hub.links
        (remote,) = [session.subscriber for session in link.sessions.values()]
        announcement = Announcement(Change.UNREGISTER, made)
        remote.snapshot(namespace, found)
        remote.discovered(request_id, namespace, found)
        remote.refused(request_id, Refused(Status.NOT_AUTHORIZED, namespace))
        remote.registered(request_id, made)
        remote.announce(announcement)
        clock.advance(0)
        calls = [  # a Refused compares by its status and text
            (c[0], c[1], (c[2].status, c[2].text)) if c[0] == "refused" else c for c in client.calls
        ]
        self.assertEqual(
            calls,
            [
                ("snapshot", namespace, found),
                ("discovered", request_id, namespace, found),
                ("refused", request_id, (Status.NOT_AUTHORIZED, namespace)),
                ("registered", request_id, made),
                ("announce", announcement),
            ],
        )


@implementer(ITCPTransport)
class _Transport(StringTransport):
    pass


class VersionTests(TestCase):
    def channel(self, hub: Hub, name: str) -> tuple[_Channel, _Transport, list[bytes]]:
        """The main process's end of worker ``name``'s channel, as the pool makes it."""
        written: list[bytes] = []
        worker = SimpleNamespace(index=name, channel=None, link=hub.link(name, written.append))
        worker.channel_lost = lambda: None
        channel = _Channel(worker)  # type: ignore[arg-type]
        transport = _Transport()
        channel.makeConnection(transport)
        return channel, transport, written

    def test_a_worker_of_another_version_is_refused_and_the_hub_keeps_serving(self) -> None:
        clock = Clock()
        hub = Hub(MemoryStore(Limits(), clock), clock)
        other, other_transport, _ = self.channel(hub, "2")
        ours, ours_transport, written = self.channel(hub, "1")
        stranger = message_record(Kind.HELLO, pb.Hello(version=VERSION + 1, release="9.9"))
        with capturedLogs() as events:
            other.dataReceived(stranger + message_record(Kind.OPEN, pb.Open(sid=1)))
        self.assertTrue(other_transport.disconnecting)
        (event,) = [e for e in events if e["log_level"] >= LogLevel.error]
        text = formatEvent(event)
        self.assertIn(f"worker 2 speaks channel version {VERSION + 1} (rendezvous 9.9)", text)
        self.assertIn(f"this process version {VERSION} (rendezvous {__version__})", text)
        self.assertIn("restart the daemon", text)
        self.assertEqual(hub.store.stats().sessions, 0)  # nothing it said was read

        # The hub goes on serving the worker of its own version.
        worker = HubStore(10)
        worker.attach(ours.dataReceived)
        client = _Client()
        session = worker.open_session(client)
        worker.discover(session, "ns", 10, 5)
        clock.advance(0)
        worker.feed(b"".join(written))
        self.assertEqual(client.calls, [("discovered", 5, "ns", [])])
        self.assertFalse(ours_transport.disconnecting)

    def test_a_worker_that_says_no_hello_is_refused(self) -> None:
        clock = Clock()
        hub = Hub(MemoryStore(Limits(), clock), clock)
        channel, transport, _ = self.channel(hub, "3")
        with capturedLogs() as events:
            channel.dataReceived(message_record(Kind.OPEN, pb.Open(sid=1)))
        self.assertTrue(transport.disconnecting)
        text = " ".join(formatEvent(e) for e in events)
        self.assertIn("worker 3 did not begin with a hello (record kind 1)", text)

    def test_a_worker_refuses_a_main_process_of_another_version(self) -> None:
        worker = HubStore(10, send=lambda data: None)
        with self.assertRaises(VersionMismatch) as caught:
            worker.feed(message_record(Kind.HELLO, pb.Hello(version=0)))
        self.assertIn("the main process speaks channel version 0", str(caught.exception))

    def test_hello_is_the_first_record_each_end_sends(self) -> None:
        sent: list[bytes] = []
        HubStore(10, send=sent.append)
        self.assertEqual(sent, [hello_record()])
        self.assertEqual(hello_record()[4], Kind.HELLO)
        self.assertEqual(pb.Hello.FromString(hello_record()[5:]).version, VERSION)


class MalformedTests(TestCase):
    """Whatever bytes come, the only exception is `ChannelError`."""

    @given(st.binary(max_size=200))
    def test_any_bytes_to_the_hub(self, data: bytes) -> None:
        clock = Clock()
        hub = Hub(MemoryStore(Limits(), clock), clock)
        link = hub.link("1", lambda data: None)
        link.feed(hello_record())
        with contextlib.suppress(ChannelError):
            link.feed(data)

    @given(st.sampled_from(list(Kind)), st.binary(max_size=200))
    def test_any_record_to_the_hub(self, kind: Kind, body: bytes) -> None:
        clock = Clock()
        hub = Hub(MemoryStore(Limits(), clock), clock)
        link = hub.link("1", lambda data: None)
        link.feed(hello_record())
        with contextlib.suppress(ChannelError):
            link.feed(record(kind, body))

    @given(st.sampled_from(list(Kind)), st.binary(max_size=200))
    def test_any_record_to_a_worker(self, kind: Kind, body: bytes) -> None:
        worker = HubStore(10, send=lambda data: None)
        worker.open_session(_Client())
        worker.feed(hello_record())
        worker.feed(define_record(Announcement(Change.REGISTER, Registration("ns", peer("a")))))
        with contextlib.suppress(ChannelError):
            worker.feed(record(kind, body))

    def test_the_schemas_kinds_are_the_channels(self) -> None:
        self.assertEqual(
            {kind.name: int(kind) for kind in Kind},
            {name.removeprefix("KIND_"): value for name, value in pb.Kind.items()},
        )
