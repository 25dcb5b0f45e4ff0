"""Headless Chromium gathers server-reflexive ICE candidates from the STUN listeners of a
real ``twistd rendezvous-relay --stun``, found at the addresses the relay advertises for
them (what a client turns into ``iceServers``)."""

from __future__ import annotations

import json
import os
import shutil

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.web.client import Agent, readBody

from rendezvous.p2p.advertise import expand, read_interface_ips
from rendezvous.stun.fleet import udp_multiaddr

from .processes import ROOT, ProcessTestCase

NODE = shutil.which("node")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
PLAYWRIGHT = os.path.join(ROOT, "examples", "browser", "node_modules", "playwright-core")
GATHER = os.path.join(ROOT, "tests", "stun_gather.mjs")
METRICS_LISTENING = r"metrics listening on tcp 127\.0\.0\.1:(\d+)"


def browser_missing() -> str | None:
    if NODE is None:
        return "node is not installed"
    if not os.path.isdir(PLAYWRIGHT):
        return "examples/browser/node_modules is missing: run `npm ci` in examples/browser"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM)"
    return None


def ice_server(multiaddr: str) -> tuple[str, str]:
    """``/ip4/A/udp/P`` -> (``stun:A:P``, A); ``/ip6/A/udp/P`` -> (``stun:[A]:P``, A)."""
    _, family, host, _, port = multiaddr.split("/")
    return (f"stun:[{host}]:{port}" if family == "ip6" else f"stun:{host}:{port}"), host


class BrowserStunTests(ProcessTestCase):
    timeout = 120
    skip = browser_missing()

    @inlineCallbacks
    def test_chromium_gathers_server_reflexive_candidates(self):  # type: ignore[no-untyped-def]
        relay = self.twistd(
            "rendezvous-relay",
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/0",
            "--stun",
            "udp:0",
            "--stun",
            r"udp:0:interface=\:\:",
            "--metrics",
            "tcp:0:interface=127.0.0.1",
        )
        four = yield relay.wait_for(r"advertising stun (/ip4/\S+)")
        metrics = yield relay.wait_for(METRICS_LISTENING)
        servers = [ice_server(four.group(1))]
        if expand([udp_multiaddr(bytes(16), 1)], read_interface_ips()):  # a usable IPv6
            six = yield relay.wait_for(r"advertising stun (/ip6/\S+)")
            servers.append(ice_server(six.group(1)))
        assert NODE is not None
        gather = self.spawn([NODE, GATHER, PLAYWRIGHT, *(url for url, _ in servers)])
        code = yield gather.ended
        self.assertEqual(code, 0, gather.output + gather.errors)
        candidates = json.loads(gather.output.strip().splitlines()[-1])
        reflexive = {c.split()[4] for c in candidates if " typ srflx " in c}
        # On this host each server sees the browser at the address it was reached at.
        self.assertEqual(reflexive, {host for _, host in servers}, candidates)
        print(f"\nChromium's server-reflexive candidates: {sorted(reflexive)}")

        url = f"http://127.0.0.1:{metrics.group(1)}/metrics".encode()
        response = yield Agent(reactor).request(b"GET", url)
        text = (yield readBody(response)).decode()
        answered = next(
            line for line in text.splitlines() if line.startswith("stun_requests_answered_total")
        )
        self.assertGreaterEqual(float(answered.split()[1]), len(servers))
        self.assertNotIn("stun_dropped_total{", text)
        self.assertIn("stun_rate_limited_total 0.0", text)
        yield relay.interrupt("TERM")
        self.assertNotIn("Traceback", relay.output + relay.errors)
