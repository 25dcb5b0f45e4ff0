"""The namespace lab itself: separate hosts, and homes behind NAT."""

from __future__ import annotations

import sys

from twisted.internet.defer import inlineCallbacks

from .netlab import LabTestCase, unavailable

SERVER = """
import socket, sys
s = socket.socket()
s.bind(("0.0.0.0", 5000))
s.listen()
print("listening", flush=True)
conn, peer = s.accept()
print("peer", peer[0], flush=True)
"""
CLIENT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], 5000), timeout=10).close()
    print("connected", flush=True)
except OSError as e:
    print("failed", e.errno, flush=True)
"""


class LabTests(LabTestCase):
    timeout = 60
    skip = unavailable()

    @inlineCallbacks
    def test_a_home_reaches_the_public_side_through_its_nat(self):  # type: ignore[no-untyped-def]
        server = self.lab.public_host("srv")
        home = self.lab.home()
        laptop = self.lab.home_host(home, "pc")
        listening = self.spawn(server.command([sys.executable, "-c", SERVER]))
        yield listening.wait_for("listening")
        client = self.spawn(laptop.command([sys.executable, "-c", CLIENT, server.address]))
        yield client.wait_for("connected")
        seen = yield listening.wait_for(r"peer (\S+)")
        # The server sees the router's public address, not the laptop's own.
        self.assertEqual(seen.group(1), home.router.address)
        self.assertNotEqual(laptop.address, home.router.address)

    @inlineCallbacks
    def test_the_public_side_cannot_reach_into_a_home(self):  # type: ignore[no-untyped-def]
        outsider = self.lab.public_host("out")
        home = self.lab.home()
        laptop = self.lab.home_host(home, "pc")
        client = self.spawn(outsider.command([sys.executable, "-c", CLIENT, laptop.address]))
        line = yield client.wait_for(r"(connected|failed \d+)")
        self.assertEqual(line.group(1), "failed 101")  # ENETUNREACH: no route into a home
