"""Under a flood of refused connections the live listeners stop accepting for a while,
and the sessions already open keep being served."""

from __future__ import annotations

import json
import sys

from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.defer import inlineCallbacks
from twisted.internet.interfaces import IAddress, IListeningPort, IPushProducer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from rendezvous.live.flood import FIRST_PAUSE, FloodGuard, ListenerPause
from rendezvous.metrics import Metrics
from rendezvous.store.base import StoreStats

from .netlab import LabTestCase, unavailable
from .processes import ROOT, TWISTD


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


@implementer(IListeningPort, IPushProducer)
class _Port:
    def __init__(self, address: IAddress) -> None:
        self.address = address
        self.reading = True

    def getHost(self) -> IAddress:
        return self.address

    def pauseProducing(self) -> None:
        self.reading = False

    def resumeProducing(self) -> None:
        self.reading = True

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
        self.pause = ListenerPause(self.clock, [self.tcp, self.unix], guard, self.metrics)

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

    def test_no_ports_yet_is_harmless(self) -> None:
        guard = FloodGuard(self.clock.seconds, refusals_per_second=10, max_pause=1.0)
        pause = ListenerPause(self.clock, [], guard, self.metrics)
        for _ in range(5):
            pause.refused()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.metrics.listener_pauses, 0)


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
