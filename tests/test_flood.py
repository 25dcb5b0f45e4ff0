"""Under a flood of refused connections the live listeners stop accepting for a while,
and the sessions already open keep being served."""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys

from twisted.internet import tcp
from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.defer import inlineCallbacks
from twisted.internet.interfaces import IAddress, IListeningPort, IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from rendezvous import twisted_internals
from rendezvous.live.flood import (
    ACCEPTS_PER_TURN,
    FIRST_PAUSE,
    WINDOW,
    FloodGuard,
    ListenerPause,
)
from rendezvous.metrics import Metrics
from rendezvous.store.base import StoreStats

from .netlab import LabTestCase, unavailable
from .processes import ROOT, TWISTD, environment


class FloodGuardTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.guard = FloodGuard(self.clock.seconds, refusals_per_second=100, max_pause=1.0)

    def refuse(self, times: int) -> list[float]:
        return [pause for _ in range(times) if (pause := self.guard.refused()) is not None]

    def test_a_trickle_never_pauses(self) -> None:
        for _ in range(50):
            self.assertEqual(self.refuse(10), [])  # the budget of a tenth of a second
            self.clock.advance(0.11)

    def test_a_burst_over_the_budget_pauses(self) -> None:
        self.assertEqual(self.refuse(11), [FIRST_PAUSE])
        self.assertEqual(self.refuse(100), [])  # paused already
        self.assertEqual(self.guard.pauses, 1)

    def test_pauses_double_while_the_flood_lasts_up_to_the_cap(self) -> None:
        pauses = []
        for _ in range(8):
            (pause,) = self.refuse(11)
            pauses.append(pause)
            self.clock.advance(pause)  # the listeners resume; the flood is still there
        self.assertEqual(pauses, [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])

    def test_a_new_flood_after_a_calm_starts_short_again(self) -> None:
        for _ in range(3):
            (pause,) = self.refuse(11)
            self.clock.advance(pause)
        self.clock.advance(1.0)  # longer than the last pause: calm
        self.assertEqual(self.refuse(11), [FIRST_PAUSE])

    def test_max_pause_zero_turns_it_off(self) -> None:
        guard = FloodGuard(self.clock.seconds, refusals_per_second=1, max_pause=0)
        self.assertEqual([guard.refused() for _ in range(1000)], [None] * 1000)
        self.assertFalse(guard.flooding())

    def test_a_flood_lasts_from_its_first_pause_until_a_calm(self) -> None:
        self.refuse(10)
        self.assertFalse(self.guard.flooding())  # within the budget: no flood
        (pause,) = self.refuse(1)
        self.assertTrue(self.guard.flooding())  # paused
        self.clock.advance(pause)
        self.assertTrue(self.guard.flooding())  # resumed: it may come back
        self.clock.advance(WINDOW - 0.01)
        self.assertTrue(self.guard.flooding())
        self.clock.advance(0.01)
        self.assertFalse(self.guard.flooding())  # calm for the last pause (or a window)


@implementer(IListeningPort, IPushProducer)
class _Port:
    def __init__(self, address: IAddress) -> None:
        self.address = address
        self.reading = True

        self.events: list[str] = []

    def getHost(self) -> IAddress:
        return self.address

    def pauseProducing(self) -> None:
        self.reading = False
        self.events.append("pause")

    def resumeProducing(self) -> None:
        self.reading = True
        self.events.append("resume")

    def startListening(self) -> None:
        pass

    def stopListening(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class ListenerPauseTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.tcp = _Port(IPv4Address("TCP", "0.0.0.0", 4001))
        self.unix = _Port(UNIXAddress(b"/run/rendezvous.sock"))
        self.metrics = Metrics(lambda: StoreStats(0, 0, 0, 0))
        guard = FloodGuard(self.clock.seconds, refusals_per_second=10, max_pause=1.0)
        self.pause = ListenerPause(
            self.clock, [self.tcp, self.unix], guard, self.metrics, bound=self.bound
        )

    def bound(self, port: object, most: int) -> bool:
        assert isinstance(port, _Port)
        port.events.append(f"bound {most}")
        return True

    def test_ip_listeners_pause_then_resume(self) -> None:
        self.pause.refused()
        self.assertTrue(self.tcp.reading)
        self.pause.refused()  # over the budget of one per tenth of a second
        self.assertFalse(self.tcp.reading)
        self.assertTrue(self.unix.reading)  # nobody is refused on a UNIX socket
        self.assertEqual(self.metrics.listener_pauses, 1)
        self.clock.advance(FIRST_PAUSE)
        self.assertTrue(self.tcp.reading)
        self.assertIn(
            b"rendezvous_listener_pauses_total 1.0",
            _exposition(self.metrics),
        )

    def test_a_resume_bounds_the_accepts_of_its_first_turn(self) -> None:
        self.pause.refused()
        self.pause.refused()
        self.clock.advance(FIRST_PAUSE)
        bound = f"bound {ACCEPTS_PER_TURN}"
        self.assertEqual(self.tcp.events, ["pause", bound, "resume"])  # bound, then resumed
        self.assertEqual(self.unix.events, [])

    def test_while_the_flood_lasts_each_turn_with_refusals_is_bounded(self) -> None:
        guard = FloodGuard(self.clock.seconds, refusals_per_second=100, max_pause=1.0)
        pause = ListenerPause(self.clock, [self.tcp], guard, bound=self.bound)
        for _ in range(11):  # over the budget of 10 per tenth of a second
            pause.refused()
        self.clock.advance(FIRST_PAUSE)
        del self.tcp.events[:]
        bound = f"bound {ACCEPTS_PER_TURN}"
        for turn in range(1, 4):
            pause.refused()  # a turn's accepts: refused, within the budget
            pause.refused()
            self.assertEqual(len(self.clock.getDelayedCalls()), 1)  # bounded once,
            self.assertEqual(self.tcp.events, [bound] * (turn - 1))  # when it is over
            self.clock.advance(0)
            self.assertEqual(self.tcp.events, [bound] * turn)

    def test_no_bound_without_a_flood(self) -> None:
        self.pause.refused()  # within the budget
        self.clock.advance(1.0)
        self.pause.refused()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.tcp.events, [])

    def test_a_calm_ends_the_bounds(self) -> None:
        self.pause.refused()
        self.pause.refused()
        self.clock.advance(FIRST_PAUSE + WINDOW)  # resumed, and no refusal since
        del self.tcp.events[:]
        self.pause.refused()
        self.clock.advance(0)
        self.assertEqual(self.tcp.events, [])

    def test_no_ports_yet_is_harmless(self) -> None:
        guard = FloodGuard(self.clock.seconds, refusals_per_second=10, max_pause=1.0)
        pause = ListenerPause(self.clock, [], guard, self.metrics)
        for _ in range(5):
            pause.refused()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.metrics.listener_pauses, 0)


class _Refusing(Factory):
    """Closes every connection its port accepts (as an early refusal does), counting."""

    def __init__(self) -> None:
        self.accepted = 0

    def buildProtocol(self, addr: IAddress) -> Protocol | None:
        self.accepted += 1
        return None


class AcceptBoundTests(SynchronousTestCase):
    """`twisted_internals.bound_accepts` on this Twisted's own listening port, over
    loopback (a reactor that never runs: the test calls the port's ``doRead``)."""

    def setUp(self) -> None:
        self.factory = _Refusing()
        self.port = tcp.Port(0, self.factory, interface="127.0.0.1", reactor=MemoryReactor())
        self.port.startListening()
        self.addCleanup(self.port.socket.close)
        address = self.port.getHost()
        self.clients = []
        for _ in range(30):  # queued by the kernel, none accepted yet
            client = socket.create_connection((address.host, address.port))
            self.addCleanup(client.close)
            self.clients.append(client)

    def turns(self, most: int | None) -> list[int]:
        """Accepts of each turn (one ``doRead``) until all 30 are accepted."""
        turns = []
        while self.factory.accepted < len(self.clients):
            select.select([self.port.socket], [], [], 10)  # some are queued
            if most is not None:
                self.assertTrue(twisted_internals.bound_accepts(self.port, most))
            before = self.factory.accepted
            self.port.doRead()
            turns.append(self.factory.accepted - before)
        return turns

    def test_this_twisted_lets_accepts_be_bounded(self) -> None:
        self.assertTrue(twisted_internals.ACCEPTS_BOUNDED)

    def test_a_bounded_port_accepts_at_most_that_many_a_turn(self) -> None:
        turns = self.turns(4)
        self.assertLessEqual(max(turns), 4)
        self.assertEqual(sum(turns), 30)

    def test_a_resume_after_a_pause_bounds_the_port(self) -> None:
        clock = Clock()
        guard = FloodGuard(clock.seconds, refusals_per_second=10, max_pause=1.0)
        pause = ListenerPause(clock, [self.port], guard)
        pause.refused()
        pause.refused()
        clock.advance(FIRST_PAUSE)
        self.assertEqual(self.port.numberAccepts, ACCEPTS_PER_TURN)

    def test_the_public_path_leaves_the_port_alone(self) -> None:
        self.patch(twisted_internals, "ACCEPTS_BOUNDED", False)
        self.assertFalse(twisted_internals.bound_accepts(self.port, 4))
        self.assertEqual(self.port.numberAccepts, 100)
        self.assertEqual(sum(self.turns(None)), 30)

    def test_other_ports_are_left_alone(self) -> None:
        self.assertFalse(twisted_internals.bound_accepts(_Port(UNIXAddress(b"/x")), 4))

    def test_the_environment_turns_it_off_with_a_reason(self) -> None:
        code = (
            "import rendezvous.twisted_internals as t; print(t.ACCEPTS_BOUNDED, t._WHY_NOT_ACCEPTS)"
        )
        for value, expected in (("1", "False RENDEZVOUS_PUBLIC_TWISTED=1"), ("0", "True None")):
            done = subprocess.run(
                [sys.executable, "-c", code],
                env={**environment(), "RENDEZVOUS_PUBLIC_TWISTED": value},
                capture_output=True,
                text=True,
                check=True,
            )
            self.assertEqual(done.stdout.strip(), expected)


def _exposition(metrics: Metrics) -> bytes:
    from prometheus_client import generate_latest

    return generate_latest(metrics.registry)


class FloodAcrossHostsTests(LabTestCase):
    """A real daemon on one lab host; a flooder on another (so the per-address limits
    apply: loopback is exempt), and a session that was open before the flood."""

    timeout = 90
    skip = unavailable()

    @inlineCallbacks
    def test_the_flood_is_paused_and_open_sessions_are_served(self):  # type: ignore[no-untyped-def]
        lab = self.lab
        server = lab.public_host("rdv")
        daemon = self.spawn(
            server.command(
                [
                    *TWISTD,
                    "-n",
                    "--pidfile=",
                    "rendezvous",
                    "--listen",
                    "tcp:4001",
                    "--max-sessions-per-ip",
                    "4",
                    "--session-rate-per-ip",
                    "4",
                    "--flood-refusals",
                    "20",
                    "--flood-pause-max",
                    "0.4",
                ]
            )
        )
        yield daemon.wait_for(r"live dialect listening on tcp 0\.0\.0\.0:4001")
        python = [sys.executable, "-m", "tests.flood_peer"]
        steady = self.spawn(
            lab.public_host("old").command([*python, "steady", server.address, "4001", "4"]),
            ROOT,
        )
        yield steady.wait_for(r"(?m)^connected$")
        flooder = self.spawn(
            lab.public_host("bad").command([*python, "flood", server.address, "4001", "3"]),
            ROOT,
        )
        yield daemon.wait_for(r"flood: \d+ connections refused .* not accepting new sessions")
        flood = json.loads((yield flooder.wait_for(r"(\{.*\})")).group(1))
        kept = json.loads((yield steady.wait_for(r"(\{.*\})")).group(1))
        self.assertGreaterEqual(flood["answered"], 1)  # admitted within its limits
        self.assertGreaterEqual(flood["told"], 1)  # refused with an ERROR, once a second
        self.assertGreater(flood["dropped"], flood["told"])  # the rest closed at once
        self.assertGreater(kept["asked"], 0)
        self.assertEqual(kept["answered"], kept["asked"])  # served all along
        # After the flood a newcomer from a third address is admitted.
        newcomer = self.spawn(
            lab.public_host("new").command([*python, "steady", server.address, "4001", "0"]),
            ROOT,
        )
        yield newcomer.wait_for(r"(?m)^connected$")
