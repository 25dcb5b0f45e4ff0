"""The daemon gives glibc's free pages back once a minute, on its clock, and stops with it."""

from __future__ import annotations

import os

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rendezvous.malloctrim import TRIM_EVERY, MallocTrim, glibc_malloc_trim
from rendezvous.service import Daemon, DaemonConfig


class FakeTrim:
    """Stands for ``malloc_trim(0)``: counts the calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        return 1


class MallocTrimTests(SynchronousTestCase):
    def test_every_interval_while_running(self) -> None:
        clock, trim = Clock(), FakeTrim()
        service = MallocTrim(clock, trim, every=60)
        service.startService()
        self.assertEqual(trim.calls, 0)  # not at start-up
        clock.advance(59)
        self.assertEqual(trim.calls, 0)
        clock.advance(1)
        self.assertEqual(trim.calls, 1)
        clock.pump([60, 60])
        self.assertEqual(trim.calls, 3)
        service.stopService()
        self.assertEqual(clock.getDelayedCalls(), [])
        clock.advance(600)
        self.assertEqual(trim.calls, 3)

    def test_restart(self) -> None:
        clock, trim = Clock(), FakeTrim()
        service = MallocTrim(clock, trim, every=10)
        service.startService()
        service.stopService()
        service.startService()
        clock.advance(10)
        self.assertEqual(trim.calls, 1)
        service.stopService()

    def test_without_glibc_nothing_is_scheduled(self) -> None:
        clock = Clock()
        service = MallocTrim(clock, None)
        service.startService()
        self.assertEqual(clock.getDelayedCalls(), [])
        service.stopService()

    def test_the_daemon_trims_on_its_clock(self) -> None:
        clock, trim = Clock(), FakeTrim()
        daemon = Daemon(DaemonConfig(listen=()), clock)
        daemon.malloc_trim.trim = trim
        daemon.startService()
        clock.advance(TRIM_EVERY)
        self.assertEqual(trim.calls, 1)
        self.successResultOf(daemon.stopService())
        clock.advance(TRIM_EVERY)
        self.assertEqual(trim.calls, 1)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_glibc(self) -> None:
        trim = glibc_malloc_trim()
        try:
            version = os.confstr("CS_GNU_LIBC_VERSION")
        except (AttributeError, ValueError):
            version = None
        if not version or not version.startswith("glibc"):
            self.assertIsNone(trim)
            return
        assert trim is not None
        self.assertIn(trim(), (0, 1))
