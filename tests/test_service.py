"""Options, metrics, logs and socket activation of `twistd rendezvous`."""

from __future__ import annotations

import os
import socket

from twisted.application.service import Service
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, readBody

from rendezvous import _tap
from rendezvous.client.live import connect
from rendezvous.limits import Limits
from rendezvous.loglimit import LogLimiter
from rendezvous.logs import show_addresses
from rendezvous.service import Daemon, DaemonConfig, with_backlog

from .helpers import peer_id
from .processes import TWISTD, Process, spawn


class OptionsTests(SynchronousTestCase):
    def parse(self, *args: str) -> _tap.Options:
        options = _tap.Options()
        options.parseOptions(list(args))
        return options

    def test_defaults_and_repeated_listen(self) -> None:
        options = self.parse()
        self.assertEqual(options["listen"], [])
        self.assertEqual(options["limits"], Limits())
        options = self.parse("--listen", "tcp:1", "--listen", "unix:/tmp/x.sock")
        self.assertEqual(options["listen"], ["tcp:1", "unix:/tmp/x.sock"])

    def test_limit_flags(self) -> None:
        options = self.parse(
            "--max-sessions",
            "7",
            "--discover-max-limit",
            "20",
            "--discover-default-limit",
            "5",
            "--max-pending-bytes",
            "4096",
        )
        limits = options["limits"]
        self.assertEqual(
            (
                limits.max_sessions,
                limits.discover_max_limit,
                limits.discover_default_limit,
                limits.max_pending_bytes,
            ),
            (7, 20, 5, 4096),
        )

    def test_bad_values_are_usage_errors(self) -> None:
        for args in (
            ["--max-sessions", "0"],
            ["--max-sessions", "many"],
            ["--discover-default-limit", "2000"],
            ["--store", "redis-ish"],
            ["--workers", "-1"],
            ["--workers", "257"],
            ["--workers", "two"],
            ["--flood-refusals", "0"],
            ["--flood-pause-max", "-1"],
            ["--flood-pause-max", "61"],
        ):
            self.assertRaises(usage.UsageError, self.parse, *args)

    def test_flood_options_reach_the_live_listeners(self) -> None:
        options = self.parse("--flood-refusals", "300", "--flood-pause-max", "0")
        service = _tap.makeService(options)
        flood = service.live_factory.flood  # type: ignore[attr-defined]
        self.assertEqual((flood.guard.budget, flood.guard.max_pause), (30, 0.0))
        self.assertIs(flood.ports, service.live_ports)  # type: ignore[attr-defined]

    def test_libp2p_only_daemon_opens_no_default_port(self) -> None:
        service = _tap.makeService(self.parse("--p2p-listen", "/ip4/127.0.0.1/tcp/0"))
        self.assertEqual(service.live_ports, [])  # type: ignore[attr-defined]
        self.assertEqual(
            [
                s
                for s in service
                if getattr(s, "endpoint", None) is not None  # type: ignore[attr-defined]
                and getattr(s.endpoint, "_what", "") == "live dialect"
            ],
            [],
        )

    def test_make_service_listens_on_default_port(self) -> None:
        service = _tap.makeService(self.parse())
        self.assertEqual(
            [
                s.endpoint._description
                for s in service  # type: ignore[attr-defined]
                if hasattr(s, "endpoint")
            ],
            ["tcp:4001:backlog=4096"],
        )


class LogLimiterTests(SynchronousTestCase):
    def test_burst_then_quiet_then_summary(self) -> None:
        clock = Clock()
        limiter = LogLimiter(clock.seconds, burst=2, interval=10)
        self.assertEqual(
            [limiter.allow() for _ in range(4)], [(True, 0), (True, 0), (False, 0), (False, 0)]
        )
        clock.advance(10)
        self.assertEqual(limiter.allow(), (True, 2))
        self.assertEqual(limiter.allow(), (True, 0))


class MetricsAndLogsTests(TestCase):
    def setUp(self) -> None:
        self.events: list[dict[str, object]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.daemon = Daemon(
            DaemonConfig(
                listen=("tcp:0:interface=127.0.0.1",), metrics="tcp:0:interface=127.0.0.1"
            ),
            reactor,
        )
        self.daemon.startService()
        self.addCleanup(self.daemon.stopService)
        self.target = f"127.0.0.1:{self.daemon.live_ports[0].getHost().port}"  # type: ignore[attr-defined]

    def formatted(self) -> list[str]:
        return [
            str(e.get("log_format", "")).format(**e)
            for e in self.events
            if e.get("log_namespace", "").startswith("rendezvous")
        ]  # type: ignore[union-attr]

    @inlineCallbacks
    def test_metrics_endpoint(self):  # type: ignore[no-untyped-def]
        client = yield connect(reactor, self.target)
        self.addCleanup(client.transport.loseConnection)
        yield client.register("ns", peer_id("A"))
        yield client.rendezvous("ns", lambda event: None)
        yield self.assertFailure(client.discover(""), Exception)
        port = self.daemon.metrics_ports[0].getHost().port  # type: ignore[attr-defined]
        response = yield Agent(reactor).request(b"GET", f"http://127.0.0.1:{port}/metrics".encode())
        body = (yield readBody(response)).decode()
        for line in [
            "rendezvous_sessions 1.0",
            "rendezvous_registrations 1.0",
            "rendezvous_namespaces 1.0",
            "rendezvous_subscriptions 1.0",
            'rendezvous_messages_received_total{type="register"} 1.0',
            'rendezvous_refusals_total{reason="invalid_namespace"} 1.0',
            "rendezvous_slow_subscribers_dropped_total 0.0",
        ]:
            self.assertIn(line + "\n", body)

    def test_listen_and_start_logged(self) -> None:
        lines = self.formatted()
        port = self.daemon.live_ports[0].getHost().port  # type: ignore[attr-defined]
        self.assertIn(
            f"live dialect listening on tcp 127.0.0.1:{port} "
            "(tcp:0:interface=127.0.0.1:backlog=4096)",
            lines,
        )
        self.assertTrue(any(line.startswith("rendezvous 0.1.0 starting") for line in lines))

    @inlineCallbacks
    def test_refusals_logged_with_reason_and_rate_limited(self):  # type: ignore[no-untyped-def]
        self.addCleanup(show_addresses, show_addresses(True))  # as with --log-addresses
        client = yield connect(reactor, self.target)
        self.addCleanup(client.transport.loseConnection)
        for _ in range(50):
            yield self.assertFailure(client.discover(""), Exception)
        refusals = [line for line in self.formatted() if line.startswith("refused")]
        self.assertEqual(len(refusals), 20)
        self.assertIn("INVALID_NAMESPACE (100) namespace is empty", refusals[0])
        self.assertIn("tcp 127.0.0.1:", refusals[0])
        self.assertTrue(
            all(
                e["log_level"] in (LogLevel.info, LogLevel.debug, LogLevel.warn)
                for e in self.events
                if "log_level" in e
            )
        )


class SocketActivationTests(TestCase):
    @inlineCallbacks
    def test_systemd_socket(self):  # type: ignore[no-untyped-def]
        """The daemon serves a listening socket handed over as systemd does (fd 3)."""
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        cwd = os.path.abspath(self.mktemp())
        os.makedirs(cwd)
        args = [
            "/bin/sh",
            "-c",
            'export LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=rendezvous; exec "$@"',
            "sh",
            *TWISTD,
            "-n",
            "--pidfile=",
            "rendezvous",
            "--listen",
            "systemd:domain=INET:index=0",
        ]
        process = Process()
        reactor.spawnProcess(
            process,
            args[0],
            args,
            env=_env(),
            path=cwd,  # type: ignore[attr-defined]
            childFDs={0: "w", 1: "r", 2: "r", 3: listener.fileno()},
        )
        self.addCleanup(process.kill)
        yield process.wait_for("live dialect listening on")
        client = yield connect(reactor, f"127.0.0.1:{port}")
        self.addCleanup(client.transport.loseConnection)
        entries = yield client.discover("ns")
        self.assertEqual(entries, [])


def _env() -> dict[str, str]:
    from .processes import environment

    return environment()


__all__ = ["spawn"]


class _Stuck(Service):
    """A part whose stop never finishes."""

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return Deferred()


class ShutdownGraceTests(SynchronousTestCase):
    def test_a_stop_ends_within_the_grace(self) -> None:
        clock = Clock()
        daemon = Daemon(DaemonConfig(listen=(), shutdown_grace=3.0), clock)
        _Stuck().setServiceParent(daemon)
        daemon.startService()
        stopped = daemon.stopService()
        clock.advance(2.9)
        self.assertNoResult(stopped)
        clock.advance(0.1)
        self.successResultOf(stopped)

    def test_a_quick_stop_is_not_held(self) -> None:
        clock = Clock()
        daemon = Daemon(DaemonConfig(listen=(), shutdown_grace=3.0), clock)
        daemon.startService()
        self.successResultOf(daemon.stopService())
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_option_bounds(self) -> None:
        options = _tap.Options()
        self.assertRaises(usage.UsageError, options.parseOptions, ["--shutdown-grace", "0"])
        options = _tap.Options()
        options.parseOptions(["--shutdown-grace", "12"])
        self.assertEqual(options["shutdown-grace"], 12.0)


class BacklogTests(SynchronousTestCase):
    def test_listeners_queue_a_crowd_unless_told(self) -> None:
        self.assertEqual(with_backlog("tcp:4001"), "tcp:4001:backlog=4096")
        self.assertEqual(
            with_backlog("haproxy:tcp:4001:interface=10.0.0.1"),
            "haproxy:tcp:4001:interface=10.0.0.1:backlog=4096",
        )
        self.assertEqual(with_backlog("unix:/run/r.sock"), "unix:/run/r.sock:backlog=4096")
        self.assertEqual(with_backlog("tcp:4001:backlog=64"), "tcp:4001:backlog=64")
        self.assertEqual(with_backlog("systemd:domain=INET:index=0"), "systemd:domain=INET:index=0")
