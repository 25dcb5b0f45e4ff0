"""`twistd rendezvous-relay` options: limits, ACL and announce flags."""

from __future__ import annotations

import ipaddress

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from rendezvous._relay_tap import Options, makeService
from rendezvous.p2p.keys import PrivateKey
from rendezvous.relay.resources import RelayLimits
from rendezvous.relay.service import RelayDaemon

KEY = PrivateKey.from_seed(b"k" * 32)


class OptionsTests(SynchronousTestCase):
    def parse(self, *args: str) -> Options:
        options = Options()
        options.parseOptions(list(args))
        return options

    def test_defaults(self) -> None:
        options = self.parse()
        self.assertEqual(options["limits"], RelayLimits())
        self.assertEqual(options["acl"].peers, frozenset())
        self.assertEqual(options["announce-to"], [])
        service = makeService(options)
        assert isinstance(service, RelayDaemon)
        self.assertEqual(service.announcers, [])

    def test_limits_and_acl(self) -> None:
        options = self.parse(
            "--p2p-listen=/ip4/127.0.0.1/tcp/0",
            "--reservation-ttl=60",
            "--max-reservations=5",
            "--max-reservations-per-ip=2",
            "--max-circuits=7",
            "--max-circuits-per-peer=3",
            "--circuit-duration=30",
            "--circuit-bytes=1000",
            f"--allow-peer={KEY.peer_id_text()}",
            "--allow-subnet=10.0.0.0/8",
            "--allow-subnet=fd00::/8",
        )
        self.assertEqual(
            options["limits"],
            RelayLimits(
                reservation_ttl=60,
                max_reservations=5,
                max_reservations_per_ip=2,
                max_circuits=7,
                max_circuits_per_peer=3,
                circuit_duration=30,
                circuit_bytes=1000,
            ),
        )
        acl = options["acl"]
        self.assertEqual(acl.peers, frozenset([KEY.peer_id()]))
        self.assertEqual(
            acl.subnets, (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))
        )
        self.assertTrue(acl.allows(KEY.peer_id(), "10.1.2.3"))
        self.assertFalse(acl.allows(KEY.peer_id(), "192.0.2.1"))

    def test_announce(self) -> None:
        target = f"/ip4/127.0.0.1/tcp/4002/p2p/{KEY.peer_id_text()}"
        options = self.parse(f"--announce-to={target}", "--namespace=fleet", "--announce-ttl=600")
        service = makeService(options)
        assert isinstance(service, RelayDaemon)
        (announcer,) = service.announcers
        self.assertEqual((announcer.namespace, announcer.ttl), ("fleet", 600))
        self.assertEqual(announcer.target.peer_id, KEY.peer_id())

    def test_bad_values(self) -> None:
        for args in [
            ["--max-reservations=0"],
            ["--circuit-bytes=-1"],
            ["--allow-peer=nope"],
            ["--allow-subnet=10.0.0.0/33"],
            ["--p2p-listen=/ip4/1.2.3.4/udp/1"],
            ["--announce-to=/ip4/127.0.0.1/tcp/4002"],
            ["--namespace="],
            ["--announce-ttl=0"],
        ]:
            self.assertRaises(usage.UsageError, self.parse, *args)
