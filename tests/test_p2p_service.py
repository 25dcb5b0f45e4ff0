"""`twistd rendezvous` options and service wiring for libp2p (--p2p-listen, --identity, limits)."""

from __future__ import annotations

import os
import stat

from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from rendezvous import _tap
from rendezvous.live.stream import PROTOCOL_ID as LIVE
from rendezvous.p2p.host import HostLimits
from rendezvous.p2p.keys import load_or_create_identity
from rendezvous.service import Daemon, DaemonConfig


class P2POptionsTests(SynchronousTestCase):
    def parse(self, *args: str) -> _tap.Options:
        options = _tap.Options()
        options.parseOptions(list(args))
        return options

    def test_defaults(self) -> None:
        options = self.parse()
        self.assertEqual((options["p2p-listen"], options["identity"]), ([], None))
        self.assertEqual(options["p2p-limits"], HostLimits())

    def test_repeated_listen_and_limits(self) -> None:
        options = self.parse(
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/4002",
            "--p2p-listen",
            "/ip6/::1/tcp/0",
            "--p2p-max-streams",
            "9",
            "--p2p-max-connections-per-ip",
            "3",
            "--p2p-negotiation-timeout",
            "2.5",
        )
        self.assertEqual(options["p2p-listen"], ["/ip4/127.0.0.1/tcp/4002", "/ip6/::1/tcp/0"])
        limits = options["p2p-limits"]
        self.assertEqual(
            (limits.max_streams_per_connection, limits.max_connections_per_ip),
            (9, 3),
        )
        self.assertEqual(limits.negotiation_timeout, 2.5)

    def test_bad_values(self) -> None:
        for args in (
            ["--p2p-listen", "/ip4/127.0.0.1/udp/1"],
            ["--p2p-listen", "tcp:4002"],
            ["--p2p-max-streams", "0"],
            ["--p2p-negotiation-timeout", "-1"],
        ):
            self.assertRaises(usage.UsageError, self.parse, *args)

    def test_identity_is_created_private(self) -> None:
        path = os.path.abspath(self.mktemp())
        self.parse("--identity", path)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        with open(path, "wb") as f:
            f.write(b"garbage")
        self.assertRaises(usage.UsageError, self.parse, "--identity", path)


class P2PDaemonTests(TestCase):
    def test_no_host_without_p2p_listen(self) -> None:
        daemon = Daemon(DaemonConfig(listen=()), Clock())
        self.assertIsNone(daemon.p2p_host)

    def test_host_serves_the_live_dialect_with_the_identity(self) -> None:
        path = os.path.abspath(self.mktemp())
        config = DaemonConfig(
            listen=(),
            p2p_listen=("/ip4/127.0.0.1/tcp/0",),
            identity=path,
            p2p_limits=HostLimits(max_streams_per_connection=5),
        )
        daemon = Daemon(config, Clock())
        host = daemon.p2p_host
        assert host is not None
        self.assertEqual(host.peer_id, load_or_create_identity(path).peer_id())
        self.assertEqual(host.limits.max_streams_per_connection, 5)
        self.assertIn(LIVE, host.handlers)

    def test_listening_logs_the_bound_address(self) -> None:
        config = DaemonConfig(listen=(), p2p_listen=("/ip4/127.0.0.1/tcp/0",))
        daemon = Daemon(config, reactor)
        with capturedLogs() as events:
            daemon.startService()
            self.addCleanup(daemon.stopService)
        host = daemon.p2p_host
        assert host is not None
        [port] = daemon.p2p_ports
        address = f"/ip4/127.0.0.1/tcp/{port.getHost().port}"
        lines = [e for e in events if e.get("multiaddr")]
        self.assertEqual(
            [(e["multiaddr"], e["peer_id"]) for e in lines],
            [(address, host.identity.peer_id_text())],
        )
        self.assertEqual(len(host.listen_addrs), 1)
