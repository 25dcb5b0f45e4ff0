"""`StandardClient`: the live client's API over /rendezvous/1.0.0, with fakes and a Clock."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rendezvous.client.errors import InvalidNamespace, NotAuthorized
from rendezvous.client.standard import StandardClient, entries
from rendezvous.p2p.envelope import open_peer_record
from rendezvous.p2p.keys import PrivateKey
from rendezvous.pb.rendezvous_pb2 import Message

from .helpers import peer_id, tcp_addr

KEY = PrivateKey.from_seed(b"k" * 32)


class FakePoint:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []
        self.answers: list[Deferred[Message]] = []
        self.closed: Deferred[None] = Deferred()
        self.was_closed = False

    def _request(self, *what: Any) -> Deferred[Message]:
        self.sent.append(what)
        d: Deferred[Message] = Deferred()
        self.answers.append(d)
        return d

    def register(self, namespace: str, record: bytes, ttl: int = 0) -> Deferred[Message]:
        return self._request("register", namespace, record)

    def discover(self, namespace: str = "", limit: int = 0) -> Deferred[Message]:
        return self._request("discover", namespace, limit)

    def unregister(self, namespace: str) -> None:
        self.sent.append(("unregister", namespace))

    def close(self) -> None:
        self.was_closed = True


class FakeConnection:
    closed = False

    def close(self) -> None:
        self.closed = True


def registered(ttl: int, status: int = Message.OK) -> Message:
    message = Message(type=Message.REGISTER_RESPONSE)
    message.registerResponse.status = status  # type: ignore[assignment]
    message.registerResponse.ttl = ttl
    return message


class StandardClientTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.point = FakePoint()
        self.connection = FakeConnection()
        self.client = StandardClient(
            self.point,  # type: ignore[arg-type]
            self.connection,  # type: ignore[arg-type]
            KEY,
            self.clock,
        )

    def test_register_sends_a_signed_record_and_renews_at_half_the_ttl(self) -> None:
        d = self.client.register("ns", KEY.peer_id_text(), [tcp_addr(1)])
        [(kind, namespace, record_bytes)] = self.point.sent
        record, _ = open_peer_record(record_bytes)
        self.assertEqual((kind, namespace, record.peer_id), ("register", "ns", KEY.peer_id()))
        self.assertEqual(record.addrs, (tcp_addr(1),))
        self.point.answers.pop().callback(registered(ttl=60))
        self.assertIsNone(self.successResultOf(d))
        self.clock.advance(29)
        self.assertEqual(len(self.point.sent), 1)
        self.clock.advance(1)
        self.assertEqual(len(self.point.sent), 2)
        renewed, _ = open_peer_record(self.point.sent[1][2])
        self.assertGreater(renewed.seq, record.seq)

    def test_unregister_stops_renewals_and_waits_for_the_server(self) -> None:
        self.client.register("ns", KEY.peer_id_text())
        self.point.answers.pop().callback(registered(ttl=60))
        d = self.client.unregister("ns", KEY.peer_id_text())
        self.assertEqual([s[0] for s in self.point.sent], ["register", "unregister", "discover"])
        self.assertNoResult(d)
        self.point.answers.pop().callback(Message(type=Message.DISCOVER_RESPONSE))
        self.successResultOf(d)
        self.clock.advance(3600)
        self.assertEqual(len(self.point.sent), 3)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_refusals(self) -> None:
        self.failureResultOf(self.client.register("ns", peer_id("other")), NotAuthorized)
        d = self.client.register("", KEY.peer_id_text())
        self.point.answers.pop().callback(registered(0, Message.E_INVALID_NAMESPACE))
        self.failureResultOf(d, InvalidNamespace)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_discover_and_disconnect(self) -> None:
        d = self.client.discover("ns", 5)
        response = Message(type=Message.DISCOVER_RESPONSE)
        self.client.register("ns", KEY.peer_id_text(), [tcp_addr(2)])
        good = self.point.sent[-1][2]
        response.discoverResponse.registrations.add(ns="ns", signedPeerRecord=good, ttl=60)
        response.discoverResponse.registrations.add(ns="ns", signedPeerRecord=b"junk", ttl=60)
        self.point.answers[0].callback(response)
        [entry] = self.successResultOf(d)
        self.assertEqual((entry.peer_id, entry.addrs), (KEY.peer_id_text(), (tcp_addr(2),)))
        self.assertEqual(entry.signed_peer_record, good)
        self.assertEqual(entries(response.discoverResponse), [entry])
        self.point.answers[1].callback(registered(ttl=60))
        self.client.disconnect()
        self.assertTrue(self.point.was_closed and self.connection.closed)
        self.assertEqual(self.clock.getDelayedCalls(), [])
