"""A daemon that stops tells its live sessions (ERROR 400) before it goes, so their
clients reconnect elsewhere at once."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rendezvous.limits import Limits
from rendezvous.live.goodbye import FLUSH, GOING_AWAY, Goodbye
from rendezvous.live.protocol import LiveFactory
from rendezvous.pb.live_pb2 import Message
from rendezvous.service import live_dialect
from rendezvous.store.memory import MemoryStore

from .helpers import register, rendezvous
from .test_protocol import Client


class GoodbyeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.store = MemoryStore(Limits())
        self.dialect = live_dialect(self.store, Limits(), self.clock)
        self.factory = LiveFactory(self.dialect, self.clock)
        self.alice = Client(self.factory, 40001)
        self.bob = Client(self.factory, 40002)
        self.alice.send(register("app", "alice"))
        self.bob.send(rendezvous("app"))
        self.alice.received()
        self.bob.received()

    def test_every_session_is_told_and_closed(self) -> None:
        self.assertEqual(self.dialect.goodbye(GOING_AWAY), 2)
        for client in (self.alice, self.bob):
            (message,) = client.received()
            self.assertEqual(message.type, Message.ERROR)
            self.assertEqual((message.error.status, message.error.text), (400, GOING_AWAY))
            self.assertFalse(message.HasField("request_id"))
            self.assertTrue(client.transport.disconnecting)
        self.assertEqual(self.dialect.sessions, set())
        self.assertEqual(self.dialect.goodbye(GOING_AWAY), 0)

    def test_no_unregister_pushes_to_sessions_already_told(self) -> None:
        self.dialect.goodbye(GOING_AWAY)
        self.alice.disconnect()
        (message,) = self.bob.received()
        self.assertEqual(message.type, Message.ERROR)

    def test_closed_sessions_are_forgotten(self) -> None:
        self.alice.disconnect()
        self.assertEqual(len(self.dialect.sessions), 1)

    def test_stop_waits_for_connections_to_close(self) -> None:
        goodbye = Goodbye(self.dialect, self.factory, self.clock, grace=2.0)
        goodbye.startService()
        stopped = goodbye.stopService()
        self.assertFalse(goodbye.running)
        self.alice.disconnect()
        self.assertNoResult(stopped)
        self.bob.disconnect()
        self.assertNoResult(stopped)  # what was written on other streams leaves first
        self.clock.advance(FLUSH)
        self.successResultOf(stopped)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_is_bounded_by_the_grace(self) -> None:
        goodbye = Goodbye(self.dialect, self.factory, self.clock, grace=2.0)
        goodbye.startService()
        stopped = goodbye.stopService()
        self.clock.advance(2.0)
        self.assertNoResult(stopped)
        self.clock.advance(FLUSH)
        self.successResultOf(stopped)

    def test_stop_with_nobody_connected_is_immediate(self) -> None:
        self.alice.disconnect()
        self.bob.disconnect()
        goodbye = Goodbye(self.dialect, self.factory, self.clock)
        goodbye.startService()
        self.successResultOf(goodbye.stopService())
        self.assertEqual(self.factory.connections, 0)
