"""Relay addresses named by DNS (``/dns4``, ``/dns6``, ``/dns``, ``/dnsaddr``), resolved
with fake lookups: no query leaves the machine."""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.names.error import DNSNameError
from twisted.trial.unittest import TestCase

from rendezvous.addrs import InvalidMultiaddr
from rendezvous.p2p.keys import PrivateKey
from rendezvous.relay.resolve import MAX_DEPTH, DnsResolver, Unresolvable

RELAY = PrivateKey.generate().peer_id_text()
OTHER = PrivateKey.generate().peer_id_text()

HOSTS = {
    ("relay1.example.org", 4): ["192.0.2.1", "192.0.2.2"],
    ("relay1.example.org", 6): ["2001:db8::1"],
    ("v4only.example.org", 4): ["192.0.2.9"],
}
TXT = {
    "_dnsaddr.fleet.example.org": [
        f"dnsaddr=/ip4/192.0.2.5/tcp/4010/p2p/{OTHER}",
        f"dnsaddr=/dns4/relay1.example.org/tcp/443/tls/ws/p2p/{RELAY}",
        f"dnsaddr=/ip6/2001:db8::5/tcp/4010/p2p/{RELAY}",
        "some=thing-else",
    ],
    "_dnsaddr.nested.example.org": [f"dnsaddr=/dnsaddr/fleet.example.org/p2p/{RELAY}"],
    "_dnsaddr.loop.example.org": [f"dnsaddr=/dnsaddr/loop.example.org/p2p/{RELAY}"],
    "_dnsaddr.empty.example.org": [f"dnsaddr=/ip4/192.0.2.5/tcp/4010/p2p/{OTHER}"],
}


class FakeDns:
    def __init__(self) -> None:
        self.asked: list[tuple[str, int | str]] = []

    def hosts(self, name: str, family: int) -> Deferred[list[str]]:
        self.asked.append((name, family))
        return succeed(list(HOSTS.get((name, family), [])))

    def txt(self, name: str) -> Deferred[list[str]]:
        self.asked.append((name, "TXT"))
        if name not in TXT:
            return fail(DNSNameError(name))
        return succeed(list(TXT[name]))


class ResolveTests(TestCase):
    def setUp(self) -> None:
        self.dns = FakeDns()
        self.resolver = DnsResolver(self.dns.hosts, self.dns.txt)

    def resolve(self, text: str, peer: str = RELAY) -> list[str]:
        targets = self.successResultOf(Deferred.fromCoroutine(self.resolver.resolve(text, peer)))
        return [f"{t.text()} {t.tls_name}" for t in targets]

    def fails(self, text: str, kind: type[Exception]) -> str:
        d = Deferred.fromCoroutine(self.resolver.resolve(text, RELAY))
        return str(self.failureResultOf(d, kind).value)

    def test_ip_addresses_need_no_lookup(self) -> None:
        self.assertEqual(self.resolve("/ip4/192.0.2.7/tcp/4010"), ["/ip4/192.0.2.7/tcp/4010 None"])
        self.assertEqual(
            self.resolve(f"/ip6/::1/tcp/4010/ws/p2p/{RELAY}"), ["/ip6/::1/tcp/4010/ws None"]
        )
        self.assertEqual(self.dns.asked, [])

    def test_dns4_dns6_and_dns(self) -> None:
        self.assertEqual(
            self.resolve("/dns4/relay1.example.org/tcp/4010"),
            ["/ip4/192.0.2.1/tcp/4010 None", "/ip4/192.0.2.2/tcp/4010 None"],
        )
        self.assertEqual(
            self.resolve(f"/dns6/relay1.example.org/tcp/4010/p2p/{RELAY}"),
            ["/ip6/2001:db8::1/tcp/4010 None"],
        )
        self.assertEqual(
            self.resolve("/dns/relay1.example.org/tcp/443/tls/ws"),
            [
                "/ip4/192.0.2.1/tcp/443/tls/ws relay1.example.org",
                "/ip4/192.0.2.2/tcp/443/tls/ws relay1.example.org",
                "/ip6/2001:db8::1/tcp/443/tls/ws relay1.example.org",
            ],
        )
        self.assertEqual(
            self.resolve("/dns4/v4only.example.org/tcp/443/wss"),
            ["/ip4/192.0.2.9/tcp/443/wss v4only.example.org"],
        )

    def test_dnsaddr_keeps_the_relays_records_only(self) -> None:
        self.assertEqual(
            self.resolve("/dnsaddr/fleet.example.org"),
            [
                "/ip4/192.0.2.1/tcp/443/tls/ws relay1.example.org",
                "/ip4/192.0.2.2/tcp/443/tls/ws relay1.example.org",
                "/ip6/2001:db8::5/tcp/4010 None",
            ],
        )
        self.assertEqual(self.dns.asked[0], ("_dnsaddr.fleet.example.org", "TXT"))
        self.assertEqual(
            self.resolve("/dnsaddr/nested.example.org")[-1], "/ip6/2001:db8::5/tcp/4010 None"
        )
        self.assertEqual(
            self.resolve("/dnsaddr/fleet.example.org", OTHER), ["/ip4/192.0.2.5/tcp/4010 None"]
        )

    def test_names_that_do_not_resolve(self) -> None:
        self.assertEqual(
            self.fails("/dns4/nowhere.example.org/tcp/4010", Unresolvable),
            "nowhere.example.org does not resolve",
        )
        self.assertEqual(
            self.fails("/dns6/v4only.example.org/tcp/4010", Unresolvable),
            "v4only.example.org does not resolve",
        )
        self.assertIn(
            "_dnsaddr.nowhere.example.org has no TXT record",
            self.fails("/dnsaddr/nowhere.example.org", Unresolvable),
        )
        self.assertEqual(
            self.fails("/dnsaddr/empty.example.org", Unresolvable),
            f"/dnsaddr/empty.example.org: no dnsaddr= record for {RELAY}",
        )
        self.assertIn(
            f"more than {MAX_DEPTH} levels of /dnsaddr",
            self.fails("/dnsaddr/loop.example.org", Unresolvable),
        )

    def test_lookup_errors_are_unresolvable(self) -> None:
        def broken(name: str, family: int) -> Deferred[list[str]]:
            return fail(OSError("no network"))

        self.resolver = DnsResolver(broken, self.dns.txt)
        self.assertEqual(
            self.fails("/dns4/relay1.example.org/tcp/1", Unresolvable),
            "relay1.example.org does not resolve: no network",
        )

    def test_addresses_we_cannot_dial(self) -> None:
        for text in [
            "/ip4/192.0.2.1/udp/4001/quic-v1",
            "/dns4/relay1.example.org/udp/4001",
            "/unix/tmp/sock",
            "not-a-multiaddr",
            f"/ip4/192.0.2.1/tcp/4001/p2p/{OTHER}",
        ]:
            self.fails(text, InvalidMultiaddr)
        self.assertEqual(self.dns.asked, [])  # refused before any lookup


class ReactorResolverTests(TestCase):
    @inlineCallbacks
    def test_localhost_through_the_reactors_name_resolver(self):  # type: ignore[no-untyped-def]
        """``localhost`` comes from the hosts file: nothing leaves the machine."""
        resolver = DnsResolver.from_reactor(reactor)
        ips = yield resolver.hosts("localhost", 4)
        self.assertIn("127.0.0.1", ips)
        targets = yield Deferred.fromCoroutine(resolver.resolve("/dns4/localhost/tcp/4010", RELAY))
        self.assertIn("/ip4/127.0.0.1/tcp/4010", [t.text() for t in targets])
