"""Two Chromium pages in two NATed homes of the network lab open a direct WebRTC
connection through both NATs, with only the fleet's own STUN (the relays' ``--stun``,
found through the daemon): on the public side a daemon serving the page and two
relays; in each home one headless Chromium (examples/browser/test/lab-page.mjs). The
pages meet by push, reach each other through a relay, upgrade to WebRTC, and then
exchange far more than the relay carries: its byte counters show only the signalling
(and, in the control with WebRTC off, every message)."""

from __future__ import annotations

import json
import os
import sys
import time

from twisted.internet.defer import Deferred, inlineCallbacks

from .netlab import PUBLIC_PREFIX, Host, LabTestCase, unavailable
from .processes import TWISTD, Process
from .test_browser import DIST, EXAMPLE, NODE, browser_missing

NAMESPACE = "lab"
MESSAGES = 50
MESSAGE_BYTES = 4000
PAYLOAD = MESSAGES * MESSAGE_BYTES
RELAYED_MESSAGES = 10
"""In the control through the relay: 40 kB, within its 128 KiB per circuit and direction."""
SCRAPE = """
import sys, urllib.request
print(urllib.request.urlopen("http://127.0.0.1:9100/metrics", timeout=10).read().decode())
"""


def _skip() -> str | None:
    """Why these pages cannot run here (a skip reason), or None."""
    reason = browser_missing()
    if reason is None and not os.path.isfile(os.path.join(DIST, "index.html")):
        reason = "examples/browser/dist is not built: run `npm run build` in examples/browser"
    return reason or unavailable()


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


class BrowsersAcrossNatsTests(LabTestCase):
    timeout = 180
    skip = _skip()

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
    def start_fleet(self):  # type: ignore[no-untyped-def]
        """On the public side, a daemon serving the page and two relays with STUN
        registered at it; returns the page's url (without query) and the daemon's
        address."""
        lab = self.lab
        server = lab.public_host("rdv")
        self.daemon = self.spawn(
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
        match = yield self.daemon.wait_for(r"listening on /ip4/0\.0\.0\.0/tcp/4003/ws/p2p/(\w+)")
        yield self.daemon.wait_for(r"web listening on tcp 0\.0\.0\.0:8080")
        rdv = f"/ip4/{server.address}/tcp/4003/ws/p2p/{match.group(1)}"
        self.relays: list[tuple[Host, Process]] = []
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
            self.relays.append((host, relay))
        for host, relay in self.relays:
            yield relay.wait_for(r"registered in rendezvous/relays at ")
            yield relay.wait_for(r"registered in rendezvous/stun at ")
            yield relay.wait_for(rf"advertising stun /ip4/{host.address}/udp/3478")
        return f"http://{server.address}:8080/app/?rdv={rdv}&ns={NAMESPACE}"

    @inlineCallbacks
    def start_pages(self, url: str):  # type: ignore[no-untyped-def]
        """One Chromium in each of two new homes, on ``url``; returns the drivers,
        the routers' public addresses and the pages' peer ids, once both registered
        (on a relay's public address) and list each other."""
        pages, routers = [], []
        assert NODE is not None
        for _ in (1, 2):
            home = self.lab.home()
            host = self.lab.home_host(home, "pc")
            pages.append(self.spawn(host.command([NODE, "test/lab-page.mjs", url]), EXAMPLE))
            routers.append(home.router.address)
        registered = []
        for page in pages:
            registered.append((yield step(page, "registered")))
        ids = [record["id"] for record in registered]
        for record in registered:
            self.assertIn(f"relay /ip4/{PUBLIC_PREFIX}.", record["relay"])
        for n, page in enumerate(pages):
            listed = yield step(page, "listed")
            self.assertEqual(listed["other"], ids[1 - n])
        return pages, routers, ids

    @inlineCallbacks
    def exchange(self, pages: list[Process], count: int):  # type: ignore[no-untyped-def]
        """The first page sends ``count`` messages of MESSAGE_BYTES to the second;
        returns what each says, and the relays' /metrics before and after."""
        hosts = [host for host, _ in self.relays]
        before = yield self.scrape_all(hosts)
        pages[1].transport.write(f"receive {count}\n".encode())
        pages[0].transport.write(f"send {count} {MESSAGE_BYTES}\n".encode())
        sent = yield step(pages[0], "sent")
        received = yield step(pages[1], "received")
        after = yield self.scrape_all(hosts)
        self.assertEqual(len(sent["notes"]), count, sent)
        self.assertEqual(received["count"], count, received)
        self.assertEqual(received["characters"], count * MESSAGE_BYTES, received)
        return sent, received, before, after

    @inlineCallbacks
    def stop(self, pages: list[Process]):  # type: ignore[no-untyped-def]
        for page in pages:
            page.transport.write(b"quit\n")
        for page in pages:
            self.assertEqual((yield page.ended), 0, page.errors[-3000:])
        for _, relay in self.relays:
            yield relay.interrupt("TERM")
        yield self.daemon.interrupt("TERM")
        for process in (self.daemon, *(relay for _, relay in self.relays)):
            self.assertNotIn("Traceback", process.output + process.errors)

    @inlineCallbacks
    def test_direct_webrtc_through_two_nats_with_the_fleets_stun(self):  # type: ignore[no-untyped-def]
        url = yield self.start_fleet()
        started = time.monotonic()
        pages, routers, _ = yield self.start_pages(url)
        relays = self.relays
        fleet_stun = {f"stun:{host.address}:3478" for host, _ in relays}
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

        sending = time.monotonic()
        sent, received, before, after = yield self.exchange(pages, MESSAGES)
        sent_in = time.monotonic() - sending
        pages[0].transport.write(b"stats\n")
        stats = yield step(pages[0], "stats")
        yield self.stop(pages)

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
        self.assertEqual({note.rsplit(" via ", 1)[-1] for note in sent["notes"]}, {"webrtc"}, sent)
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

    @inlineCallbacks
    def test_without_webrtc_the_relay_counters_show_the_messages(self):  # type: ignore[no-untyped-def]
        """The control: with ?webrtc=0 the same pages chat through the relay, and its
        counters grow by at least what was sent."""
        url = yield self.start_fleet()
        pages, _, _ = yield self.start_pages(f"{url}&webrtc=0")
        sent, received, before, after = yield self.exchange(pages, RELAYED_MESSAGES)
        yield self.stop(pages)
        during = sum(metric(text, "relay_bytes_relayed_total") for text in after) - sum(
            metric(text, "relay_bytes_relayed_total") for text in before
        )
        print(f"\n{RELAYED_MESSAGES * MESSAGE_BYTES} bytes sent, {during:.0f} relayed meanwhile")
        self.assertEqual({note.rsplit(" via ", 1)[-1] for note in sent["notes"]}, {"relay"}, sent)
        self.assertEqual(received["via"], {"relay": RELAYED_MESSAGES}, received)
        self.assertGreaterEqual(during, RELAYED_MESSAGES * MESSAGE_BYTES)
