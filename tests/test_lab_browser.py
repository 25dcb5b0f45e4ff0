"""Two Chromium pages in two NATed homes of the network lab open a direct WebRTC
connection through both NATs, with only the fleet's own STUN (the relays' ``--stun``,
found through the daemon): on the public side a daemon serving the page and two
relays; in each home one headless Chromium (examples/browser/test/lab-page.mjs). The
pages meet by push, reach each other through a relay, upgrade to WebRTC, and then
exchange far more than the relay carries: its byte counters show only the signalling."""

from __future__ import annotations

import json
import sys
import time

from twisted.internet.defer import Deferred, inlineCallbacks

from .netlab import PUBLIC_PREFIX, Host, Lab, unavailable
from .processes import TWISTD, Process, ProcessTestCase
from .test_browser import DIST, EXAMPLE, NODE, browser_missing

NAMESPACE = "lab"
MESSAGES = 50
MESSAGE_BYTES = 4000
PAYLOAD = MESSAGES * MESSAGE_BYTES
SCRAPE = """
import sys, urllib.request
print(urllib.request.urlopen("http://127.0.0.1:9100/metrics", timeout=10).read().decode())
"""


def _skip() -> str | None:
    return browser_missing() or unavailable()


def step(process: Process, name: str) -> Deferred[dict[str, object]]:
    """The first JSON line of ``process`` whose step is ``name`` (or ``error``: then
    the test fails with it)."""
    pattern = rf'^(\{{"step":"(?:{name}|error)".*\}})$'

    def parse(match):  # type: ignore[no-untyped-def]
        record = json.loads(match.group(1))
        if record["step"] == "error":
            raise AssertionError(f"the page failed: {record}\n{process.errors[-3000:]}")
        return record

    return process.wait_for(f"(?m){pattern}").addCallback(parse)


def metric(text: str, name: str) -> float:
    """The sum of ``name``'s samples in a Prometheus text exposition."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


class BrowsersAcrossNatsTests(ProcessTestCase):
    timeout = 180
    skip = _skip()

    def setUp(self) -> None:
        super().setUp()
        self.lab = Lab()
        self.addCleanup(self.lab.close)

    @inlineCallbacks
    def scrape(self, host: Host):  # type: ignore[no-untyped-def]
        """The relay's /metrics, fetched inside its own host."""
        scraper = self.spawn(host.command([sys.executable, "-c", SCRAPE]))
        code = yield scraper.ended
        self.assertEqual(code, 0, scraper.errors)
        return scraper.output

    @inlineCallbacks
    def scrape_all(self, hosts: list[Host]):  # type: ignore[no-untyped-def]
        texts = []
        for host in hosts:
            texts.append((yield self.scrape(host)))
        return texts

    @inlineCallbacks
    def test_direct_webrtc_through_two_nats_with_the_fleets_stun(self):  # type: ignore[no-untyped-def]
        lab = self.lab
        server = lab.public_host("rdv")
        daemon = self.spawn(
            server.command(
                [
                    *TWISTD,
                    "-n",
                    "--pidfile=",
                    "rendezvous",
                    "--p2p-listen",
                    "/ip4/0.0.0.0/tcp/4003/ws",
                    "--web",
                    "tcp:8080",
                    "--web-root",
                    DIST,
                ]
            )
        )
        match = yield daemon.wait_for(r"listening on /ip4/0\.0\.0\.0/tcp/4003/ws/p2p/(\w+)")
        yield daemon.wait_for(r"web listening on tcp 0\.0\.0\.0:8080")
        rdv = f"/ip4/{server.address}/tcp/4003/ws/p2p/{match.group(1)}"
        relays = []
        for n in (1, 2):
            host = lab.public_host(f"rl{n}")
            relay = self.spawn(
                host.command(
                    [
                        *TWISTD,
                        "-n",
                        "--pidfile=",
                        "rendezvous-relay",
                        "--p2p-listen",
                        "/ip4/0.0.0.0/tcp/4010",
                        "--p2p-listen",
                        "/ip4/0.0.0.0/tcp/4011/ws",
                        "--stun",
                        "udp:3478",
                        "--announce-to",
                        rdv,
                        "--metrics",
                        "tcp:9100",
                    ]
                )
            )
            relays.append((host, relay))
        for host, relay in relays:
            yield relay.wait_for(r"registered in rendezvous/relays at ")
            yield relay.wait_for(r"registered in rendezvous/stun at ")
            yield relay.wait_for(rf"advertising stun /ip4/{host.address}/udp/3478")

        url = f"http://{server.address}:8080/app/?rdv={rdv}&ns={NAMESPACE}"
        started = time.monotonic()
        pages, routers = [], []
        assert NODE is not None
        for _ in (1, 2):
            home = lab.home()
            host = lab.home_host(home, "pc")
            pages.append(self.spawn(host.command([NODE, "test/lab-page.mjs", url]), EXAMPLE))
            routers.append(home.router.address)
        registered = []
        for page in pages:
            registered.append((yield step(page, "registered")))
        ids = [record["id"] for record in registered]
        for record in registered:
            # the page reserved on a relay at one of its public addresses
            self.assertIn(f"relay /ip4/{PUBLIC_PREFIX}.", record["relay"])
        fleet_stun = {f"stun:{host.address}:3478" for host, _ in relays}
        for n, page in enumerate(pages):
            listed = yield step(page, "listed")
            self.assertEqual(listed["other"], ids[1 - n])
        connected = []
        for page in pages:
            record = yield step(page, "(?:connected|no webrtc)")
            self.assertEqual(record["step"], "connected", f"no WebRTC connection: {record}")
            connected.append(record)
        webrtc_after = time.monotonic() - started
        print(f"\nselected candidate pairs: {[record['pair'] for record in connected]}")
        print(f"the pages' warnings: {[record['console'] for record in connected]}")
        for n, record in enumerate(connected):
            pair = record["pair"]
            # direct between the two homes' public (NAT) addresses, not through a relay
            self.assertEqual(pair["remote"]["address"], routers[1 - n], record)
            self.assertEqual(pair["remote"]["protocol"], "udp", record)
            # the only ICE servers are the fleet's STUN, found through the daemon
            self.assertEqual(set(pair["iceServers"]), fleet_stun, record)
            self.assertEqual(len(pair["iceServers"]), len(fleet_stun), record)

        before = yield self.scrape_all([host for host, _ in relays])
        sending = time.monotonic()
        pages[1].transport.write(f"receive {MESSAGES}\n".encode())
        pages[0].transport.write(f"send {MESSAGES} {MESSAGE_BYTES}\n".encode())
        sent = yield step(pages[0], "sent")
        received = yield step(pages[1], "received")
        sent_in = time.monotonic() - sending
        after = yield self.scrape_all([host for host, _ in relays])
        pages[0].transport.write(b"stats\n")
        stats = yield step(pages[0], "stats")
        for page in pages:
            page.transport.write(b"quit\n")
        for page in pages:
            self.assertEqual((yield page.ended), 0, page.errors[-3000:])

        relayed = [metric(text, "relay_bytes_relayed_total") for text in after]
        during = sum(relayed) - sum(metric(text, "relay_bytes_relayed_total") for text in before)
        answered = [metric(text, "stun_requests_answered_total") for text in after]
        print(
            f"WebRTC up {webrtc_after:.1f} s after the browsers started;"
            f" {PAYLOAD} bytes sent in {sent_in:.1f} s;"
            f" relayed bytes by relay: {relayed} ({during:.0f} while {PAYLOAD} bytes were sent);"
            f" STUN requests answered: {answered}; after the messages: {stats['pairs']}"
        )
        # the sender's page says each message went over WebRTC, and the other got them so
        self.assertEqual(len(sent["notes"]), MESSAGES, sent)
        self.assertEqual({note.rsplit(" via ", 1)[-1] for note in sent["notes"]}, {"webrtc"}, sent)
        self.assertEqual(received["count"], MESSAGES, received)
        self.assertEqual(received["characters"], PAYLOAD, received)
        self.assertEqual(received["via"], {"webrtc": MESSAGES}, received)
        # the relays carried the signalling (a few kB: the pages met through a relay)
        # and none of the messages
        self.assertGreater(sum(relayed), 0)
        self.assertLess(sum(relayed), PAYLOAD / 10)
        self.assertLess(during, PAYLOAD / 20)
        # the browsers learnt their NAT's address from the fleet's STUN (both servers)
        self.assertTrue(all(count > 0 for count in answered), answered)
        # the direct pair carried the messages
        carried = [pair.get("bytesSent", 0) for pair in stats["pairs"] if "bytesSent" in pair]
        self.assertGreater(max(carried), PAYLOAD)

        for _, relay in relays:
            yield relay.interrupt("TERM")
        yield daemon.interrupt("TERM")
        for process in (daemon, *(relay for _, relay in relays)):
            self.assertNotIn("Traceback", process.output + process.errors)
