"""The daemons' cycle-collector policy (`rendezvous.collector`), with a fake collector."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from rendezvous import _relay_tap, _tap
from rendezvous.collector import FULL_EVERY, CollectorPolicy
from rendezvous.service import Daemon, DaemonConfig


class FakeCollector:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.threshold = (700, 10, 10)
        self.frozen = 0

    def collect(self) -> int:
        self.calls.append("collect")
        return 3

    def freeze(self) -> None:
        self.calls.append("freeze")
        self.frozen = 66_000

    def get_freeze_count(self) -> int:
        return self.frozen

    def get_threshold(self) -> tuple[int, int, int]:
        return self.threshold

    def set_threshold(self, threshold0: int, threshold1: int, threshold2: int) -> None:
        self.calls.append("set_threshold")
        self.threshold = (threshold0, threshold1, threshold2)


class CollectorPolicyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.collector = FakeCollector()
        self.policy = CollectorPolicy(self.clock, self.collector)

    def test_applied_in_the_first_turn_after_start_up(self) -> None:
        with capturedLogs() as events:
            self.policy.startService()
            self.assertEqual(self.collector.calls, [])  # start-up is not over yet
            self.clock.advance(0)
        self.assertEqual(self.collector.calls, ["collect", "freeze", "set_threshold"])
        self.assertEqual(self.collector.threshold, (700, 10, FULL_EVERY))
        self.assertTrue(self.policy.applied)
        [event] = [e for e in events if e.get("event") == "daemon.collector"]
        self.assertEqual((event["frozen"], event["freed"]), (66_000, 3))

    def test_once_only(self) -> None:
        self.policy.startService()
        self.clock.advance(0)
        self.policy.stopService()
        self.policy.startService()
        self.clock.advance(0)
        self.assertEqual(self.collector.calls, ["collect", "freeze", "set_threshold"])

    def test_a_stop_before_the_first_turn_leaves_the_defaults(self) -> None:
        self.policy.startService()
        self.policy.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(1)
        self.assertEqual(self.collector.calls, [])
        self.assertEqual(self.collector.threshold, (700, 10, 10))

    def test_only_the_twistd_plugins_add_it(self) -> None:
        for tap in (_tap, _relay_tap):
            options = tap.Options()
            options.parseOptions([])
            service = tap.makeService(options)
            policies = [s for s in service if isinstance(s, CollectorPolicy)]  # type: ignore[attr-defined]
            self.assertEqual(len(policies), 1, tap.__name__)
        daemon = Daemon(DaemonConfig(listen=()), Clock())  # as tests build one
        self.assertEqual([s for s in daemon if isinstance(s, CollectorPolicy)], [])  # type: ignore[attr-defined]
