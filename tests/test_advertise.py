"""What a host advertises: unspecified listen addresses expanded to the interfaces'
addresses, kept current, or replaced by ``--p2p-announce``; and the flag itself."""

from __future__ import annotations

import ipaddress
from typing import Any

from twisted.application.service import IService
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from rendezvous import _relay_tap, _tap
from rendezvous.addrs import InvalidMultiaddr, multiaddr_from_text, multiaddr_to_text
from rendezvous.p2p.advertise import (
    InterfaceError,
    IPAddress,
    expand,
    interface_expander,
    is_unspecified,
    parse_announce,
    read_interface_ips,
)
from rendezvous.p2p.envelope import open_peer_record
from rendezvous.p2p.host import Host
from rendezvous.p2p.identify import identify_message
from rendezvous.p2p.keys import PrivateKey
from rendezvous.p2p.listen import REFRESH_INTERVAL, advertising
from rendezvous.relay.renewal import Renewal
from rendezvous.relay.service import RelayConfig, RelayDaemon
from rendezvous.service import Daemon

KEY = PrivateKey.from_seed(b"h" * 32)


def ips(*texts: str) -> list[IPAddress]:
    return [ipaddress.ip_address(text) for text in texts]


def binary(*texts: str) -> list[bytes]:
    return [multiaddr_from_text(text) for text in texts]


def texts(addrs: list[bytes]) -> list[str]:
    return [multiaddr_to_text(addr) for addr in addrs]


class ExpandTests(SynchronousTestCase):
    def expand(self, bound: list[str], interfaces: list[str]) -> list[str]:
        return texts(expand(binary(*bound), ips(*interfaces)))

    def test_only_loopback(self) -> None:
        self.assertEqual(
            self.expand(["/ip4/0.0.0.0/tcp/4010"], ["127.0.0.1", "::1"]),
            ["/ip4/127.0.0.1/tcp/4010"],
        )

    def test_loopback_and_one(self) -> None:
        self.assertEqual(
            self.expand(
                ["/ip4/0.0.0.0/tcp/4010", "/ip4/0.0.0.0/tcp/4011/ws"], ["127.0.0.1", "192.0.2.7"]
            ),
            ["/ip4/192.0.2.7/tcp/4010", "/ip4/192.0.2.7/tcp/4011/ws"],
        )

    def test_several_in_order(self) -> None:
        self.assertEqual(
            self.expand(["/ip4/0.0.0.0/tcp/1"], ["10.1.0.1", "127.0.0.1", "192.0.2.7"]),
            ["/ip4/10.1.0.1/tcp/1", "/ip4/192.0.2.7/tcp/1"],
        )

    def test_ipv6(self) -> None:
        interfaces = ["127.0.0.1", "192.0.2.7", "::1", "fe80::1", "2001:db8::5"]
        self.assertEqual(
            self.expand(["/ip6/::/tcp/4010"], interfaces), ["/ip6/2001:db8::5/tcp/4010"]
        )
        # Link-local needs a zone: never advertised; loopback when nothing else is left.
        self.assertEqual(
            self.expand(["/ip6/::/tcp/4010"], ["::1", "fe80::1", "192.0.2.7"]),
            ["/ip6/::1/tcp/4010"],
        )

    def test_no_address_of_the_family(self) -> None:
        self.assertEqual(self.expand(["/ip6/::/tcp/4010"], ["192.0.2.7"]), [])
        self.assertEqual(self.expand(["/ip4/0.0.0.0/tcp/4010"], []), [])

    def test_specific_kept_and_no_duplicates(self) -> None:
        self.assertEqual(
            self.expand(
                ["/ip4/192.0.2.7/tcp/4010", "/ip4/0.0.0.0/tcp/4010", "/ip4/127.0.0.1/tcp/9"],
                ["127.0.0.1", "192.0.2.7"],
            ),
            ["/ip4/192.0.2.7/tcp/4010", "/ip4/127.0.0.1/tcp/9"],
        )

    def test_is_unspecified(self) -> None:
        self.assertTrue(is_unspecified(multiaddr_from_text("/ip4/0.0.0.0/tcp/1")))
        self.assertTrue(is_unspecified(multiaddr_from_text("/ip6/::/tcp/1/ws")))
        self.assertFalse(is_unspecified(multiaddr_from_text("/ip4/0.0.0.1/tcp/1")))
        self.assertFalse(is_unspecified(multiaddr_from_text("/dns4/a.example/tcp/1")))

    def test_expander_reads_only_when_needed(self) -> None:
        reads: list[int] = []

        def read() -> list[IPAddress]:
            reads.append(1)
            return ips("192.0.2.7")

        expander = interface_expander(read)
        self.assertEqual(texts(expander(binary("/ip4/10.0.0.1/tcp/1"))), ["/ip4/10.0.0.1/tcp/1"])
        self.assertEqual(reads, [])
        self.assertEqual(texts(expander(binary("/ip4/0.0.0.0/tcp/1"))), ["/ip4/192.0.2.7/tcp/1"])
        self.assertEqual(reads, [1])


class AnnounceParsingTests(SynchronousTestCase):
    def test_accepted(self) -> None:
        for text in [
            "/dns4/relay1.example.org/tcp/443/tls/ws",
            "/dns6/relay1.example.org/tcp/443/wss",
            "/dnsaddr/fleet.example.org",
            "/dns4/relay1.example.org/tcp/443/tls/sni/relay1.example.org/ws",
            "/ip4/203.0.113.9/tcp/4010",
            "/ip6/2001:db8::1/tcp/4010/ws",
        ]:
            self.assertEqual(multiaddr_to_text(parse_announce(text)), text)

    def test_refused(self) -> None:
        for text, words in [
            ("/ip4/0.0.0.0/tcp/4010", "unspecified"),
            ("/ip6/::/tcp/4010", "unspecified"),
            ("/ip4/203.0.113.9/tcp/4010/p2p/" + KEY.peer_id_text(), "without /p2p"),
            ("dns4/relay.example.org", "start with '/'"),
            ("/dns4/relay.example.org/tcp/99999", "cannot parse"),
            ("/dns9/relay.example.org", "cannot parse"),
        ]:
            with self.assertRaises(InvalidMultiaddr) as caught:
                parse_announce(text)
            self.assertIn(words, str(caught.exception))

    def test_options_of_both_commands(self) -> None:
        announce = "/dns4/relay1.example.org/tcp/443/tls/ws"
        for options, extra in [
            (_relay_tap.Options(), []),
            (_tap.Options(), ["--p2p-listen=/ip4/127.0.0.1/tcp/0"]),
        ]:
            options.parseOptions(
                [*extra, f"--p2p-announce={announce}", "--p2p-announce=/ip4/203.0.113.9/tcp/1"]
            )
            self.assertEqual(options["p2p-announce"], [announce, "/ip4/203.0.113.9/tcp/1"])
            service: IService = (
                _relay_tap.makeService(options)
                if isinstance(options, _relay_tap.Options)
                else _tap.makeService(options)
            )
            host = service.host if isinstance(service, RelayDaemon) else service.p2p_host  # type: ignore[union-attr]
            assert isinstance(service, (RelayDaemon, Daemon)) and host is not None
            self.assertEqual(texts(list(host.announce)), [announce, "/ip4/203.0.113.9/tcp/1"])

    def test_bad_options(self) -> None:
        for options, extra in [
            (_relay_tap.Options(), []),
            (_tap.Options(), ["--p2p-listen=/ip4/127.0.0.1/tcp/0"]),
        ]:
            with self.assertRaises(usage.UsageError) as caught:
                options.parseOptions([*extra, "--p2p-announce=/ip4/0.0.0.0/tcp/1"])
            self.assertIn("--p2p-announce: ", str(caught.exception))
            self.assertIn("unspecified", str(caught.exception))
        with self.assertRaises(usage.UsageError) as caught:
            _tap.Options().parseOptions(["--p2p-announce=/dnsaddr/x.example"])
        self.assertEqual(str(caught.exception), "--p2p-announce needs --p2p-listen")


class ReadInterfacesTests(SynchronousTestCase):
    def test_reads_this_machine(self) -> None:
        """Every machine has a loopback interface that is up."""
        found = read_interface_ips()
        self.assertIn(ipaddress.ip_address("127.0.0.1"), found)
        self.assertEqual(len(found), len(set(found)))


class HostAdvertisingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.interfaces = ips("127.0.0.1", "192.0.2.7")
        self.host = Host(KEY, self.clock)
        self.changes: list[list[str]] = []
        self.host.addrs_changed.append(lambda: self.changes.append(texts(self.host.listen_addrs)))

    def read(self) -> list[IPAddress]:
        if isinstance(self.interfaces, Exception):
            raise self.interfaces
        return list(self.interfaces)

    def record_addrs(self) -> list[str]:
        record, _ = open_peer_record(self.host.signed_peer_record())
        return texts(list(record.addrs))

    def test_a_bare_host_never_advertises_unspecified(self) -> None:
        self.host.add_listen_addr(multiaddr_from_text("/ip4/0.0.0.0/tcp/4010"))
        self.host.add_listen_addr(multiaddr_from_text("/ip4/10.0.0.1/tcp/4011"))
        self.assertEqual(texts(self.host.listen_addrs), ["/ip4/10.0.0.1/tcp/4011"])
        self.assertEqual(
            texts(self.host.bound_addrs), ["/ip4/0.0.0.0/tcp/4010", "/ip4/10.0.0.1/tcp/4011"]
        )

    def test_expanded_logged_and_kept_current(self) -> None:
        refresh = advertising(self.host, (), self.clock, self.read)
        with capturedLogs() as events:
            self.host.add_listen_addr(multiaddr_from_text("/ip4/0.0.0.0/tcp/4010"))
        advertised = ["/ip4/192.0.2.7/tcp/4010"]
        self.assertEqual(texts(self.host.listen_addrs), advertised)
        self.assertEqual(self.record_addrs(), advertised)
        message = identify_message(self.host, None)
        self.assertEqual(texts(list(message.listenAddrs)), advertised)
        self.assertEqual(
            [e["log_format"].format(**e) for e in events],
            [f"advertising /ip4/192.0.2.7/tcp/4010/p2p/{KEY.peer_id_text()}"],
        )
        refresh.startService()
        self.addCleanup(refresh.stopService)
        self.assertEqual(self.changes, [advertised])
        first_record = self.host.signed_peer_record()
        self.interfaces = ips("127.0.0.1", "192.0.2.7", "198.51.100.3")
        self.clock.advance(REFRESH_INTERVAL - 1)
        self.assertEqual(len(self.changes), 1)
        self.clock.advance(1)
        advertised = ["/ip4/192.0.2.7/tcp/4010", "/ip4/198.51.100.3/tcp/4010"]
        self.assertEqual(self.changes[-1], advertised)
        self.assertEqual(self.record_addrs(), advertised)
        self.assertNotEqual(self.host.signed_peer_record(), first_record)
        with capturedLogs() as events:
            self.interfaces = ips("127.0.0.1", "198.51.100.3")
            self.clock.advance(REFRESH_INTERVAL)
        self.assertEqual(self.changes[-1], ["/ip4/198.51.100.3/tcp/4010"])
        self.assertEqual(
            [e["log_format"].format(**e) for e in events],
            [f"no longer advertising /ip4/192.0.2.7/tcp/4010/p2p/{KEY.peer_id_text()}"],
        )
        self.clock.advance(REFRESH_INTERVAL)
        self.assertEqual(len(self.changes), 3)

    def test_interfaces_unreadable(self) -> None:
        refresh = advertising(self.host, (), self.clock, self.read)
        self.interfaces = InterfaceError("no getifaddrs")  # type: ignore[assignment]
        with capturedLogs() as events:
            self.host.add_listen_addr(multiaddr_from_text("/ip4/0.0.0.0/tcp/4010"))
            refresh.startService()
            self.addCleanup(refresh.stopService)
            self.clock.advance(REFRESH_INTERVAL)
        self.assertEqual(self.host.listen_addrs, [])
        self.assertEqual([e["log_level"].name for e in events], ["warn"])
        self.interfaces = ips("192.0.2.7")
        self.clock.advance(REFRESH_INTERVAL)
        self.assertEqual(texts(self.host.listen_addrs), ["/ip4/192.0.2.7/tcp/4010"])

    def test_announce_replaces(self) -> None:
        announce = ["/dns4/relay1.example.org/tcp/443/tls/ws", "/ip4/203.0.113.9/tcp/4010"]
        advertising(self.host, announce, self.clock, self.read)
        with capturedLogs() as events:
            self.host.add_listen_addr(multiaddr_from_text("/ip4/0.0.0.0/tcp/4010"))
            self.host.add_listen_addr(multiaddr_from_text("/ip4/127.0.0.1/tcp/4011"))
        self.assertEqual(texts(self.host.listen_addrs), announce)
        self.assertEqual(self.record_addrs(), announce)
        self.assertEqual(self.changes, [announce])
        self.assertEqual(
            [e["log_format"].format(**e) for e in events],
            [f"advertising {text}/p2p/{KEY.peer_id_text()}" for text in announce],
        )

    def test_bad_announce(self) -> None:
        self.assertRaises(
            InvalidMultiaddr, advertising, self.host, ["/ip4/0.0.0.0/tcp/1"], self.clock
        )


class _Counting(Renewal):
    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.attempts: list[Deferred[Any]] = []
        self.done = 0

    def attempt(self) -> Deferred[Any]:
        self.attempts.append(Deferred())
        return self.attempts[-1]

    def succeeded(self, result: Any) -> float:
        self.done += 1
        return 100.0

    def retrying(self, why: str, delay: float) -> None:
        pass


class RenewNowTests(SynchronousTestCase):
    """What the relay does when its advertised addresses change: register again."""

    def test_renew_now(self) -> None:
        clock = Clock()
        renewal = _Counting(clock)
        renewal.renew_now()  # not started: nothing
        self.assertEqual(renewal.attempts, [])
        renewal.start()
        renewal.renew_now()  # in flight: once more after it
        self.assertEqual(len(renewal.attempts), 1)
        renewal.attempts[0].callback(None)
        self.assertEqual((len(renewal.attempts), renewal.done), (2, 1))
        renewal.attempts[1].callback(None)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        renewal.renew_now()  # waiting: at once, the timer cancelled
        self.assertEqual(len(renewal.attempts), 3)
        self.assertEqual(clock.getDelayedCalls(), [])
        renewal.attempts[2].callback(None)
        clock.advance(100)
        self.assertEqual(len(renewal.attempts), 4)
        renewal.stop()
        renewal.attempts[3].callback(None)
        self.assertEqual(clock.getDelayedCalls(), [])


class RelayReRegistersTests(SynchronousTestCase):
    def test_changed_addresses_register_again(self) -> None:
        rendezvous = f"/ip4/127.0.0.1/tcp/4002/p2p/{KEY.peer_id_text()}"
        daemon = RelayDaemon(RelayConfig(announce_to=(rendezvous,)), Clock())
        (announcer,) = daemon.announcers
        renewed: list[int] = []
        announcer.renew_now = lambda: renewed.append(1)  # type: ignore[method-assign]
        daemon.host.add_listen_addr(multiaddr_from_text("/ip4/10.0.0.1/tcp/4010"))
        self.assertEqual(renewed, [1])
        self.assertFalse(daemon.host.update_addrs())
        self.assertEqual(renewed, [1])
