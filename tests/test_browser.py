"""The browser example (examples/browser) in headless Chromium against real processes: a
daemon serving the page with --web, a relay announced to it, two pages that meet, chat and
part (`npm ci && npm run build` in examples/browser first)."""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from .processes import ROOT, Process, ProcessTestCase

EXAMPLE = os.path.join(ROOT, "examples", "browser")
DIST = os.path.join(EXAMPLE, "dist")
NODE = shutil.which("node")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
WS_LISTENING = r"listening on (/ip4/127\.0\.0\.1/tcp/\d+/ws/p2p/(\w+))\n"
WEB_LISTENING = r"web listening on tcp 127\.0\.0\.1:(\d+)"
NAMESPACE = "browser-test"
LISTED_MS = 2000
GONE_MS = 2000


def browser_missing() -> str | None:
    """Why the example cannot run here (a skip reason), or None."""
    if NODE is None:
        return "node is not installed"
    if not os.path.isdir(os.path.join(EXAMPLE, "node_modules")):
        return "examples/browser/node_modules is missing: run `npm ci` in examples/browser"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM)"
    return None


def check_pages_met(test: TestCase, result: dict[str, Any]) -> None:
    """What every run of the two-pages driver must show."""
    test.assertNotIn("error", result, result)
    a, b = result["a"], result["b"]
    test.assertTrue(a.startswith("12D3KooW") and b.startswith("12D3KooW"), result)
    test.assertNotEqual(a, b)
    # each lists the other within 2 s of B's registration
    test.assertTrue(result["aListsB"] and result["bListsA"], result)
    test.assertLessEqual(result["listedMs"], LISTED_MS, result)
    # a message from A reaches B, and B's answer reaches A
    test.assertIsNotNone(result["messageMs"], result)
    test.assertIsNotNone(result["replyMs"], result)
    # B leaves: the daemon's pushed UNREGISTER removes it from A's list within 2 s
    test.assertIsNotNone(result["goneMs"], result)
    test.assertLessEqual(result["goneMs"], GONE_MS, result)
    test.assertEqual(result["problems"], [], result)


def check_logs(test: TestCase, daemon: Process, relay: Process, result: dict[str, Any]) -> None:
    """Both pages reserved on the relay, and neither process logged a traceback."""
    relay_log = relay.output + relay.errors
    for side in ("a", "b"):
        test.assertIn(f"reservation made for {result[side]}", relay_log)
    for log in (daemon.output + daemon.errors, relay_log):
        test.assertNotIn("Traceback", log)


class BrowserExampleTests(ProcessTestCase):
    timeout = 180
    skip = browser_missing()

    def setUp(self) -> None:
        super().setUp()
        if not os.path.isfile(os.path.join(DIST, "index.html")):
            self.fail("examples/browser/dist is not built: run `npm run build` in examples/browser")

    @inlineCallbacks
    def start_fleet(self):  # type: ignore[no-untyped-def]
        """A daemon serving dist/ under /app/, and a relay registered at it."""
        daemon = self.twistd(
            "rendezvous",
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/0/ws",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--web",
            "tcp:0:interface=127.0.0.1",
            "--web-root",
            DIST,
        )
        listening = yield daemon.wait_for(WS_LISTENING)
        web = yield daemon.wait_for(WEB_LISTENING)
        rdv = listening.group(1)
        relay = self.twistd(
            "rendezvous-relay", "--p2p-listen", "/ip4/127.0.0.1/tcp/0/ws", "--announce-to", rdv
        )
        yield relay.wait_for(WS_LISTENING)
        yield relay.wait_for(r"registered in rendezvous/relays at ")
        return daemon, relay, rdv, f"http://127.0.0.1:{web.group(1)}/app/"

    @inlineCallbacks
    def run_pages(self, namespace: str, *query: str):  # type: ignore[no-untyped-def]
        """Runs the driver against a fresh fleet; checks what any run must show and
        returns the driver's figures."""
        daemon, relay, rdv, page = yield self.start_fleet()
        assert NODE is not None
        driver = self.spawn([NODE, "test/two-pages.mjs", page, rdv, namespace, *query], EXAMPLE)
        code = yield driver.ended
        self.assertEqual(code, 0, driver.output + driver.errors)
        result = json.loads(driver.output.strip().splitlines()[-1])
        print(f"\nbrowser example ({namespace}): {json.dumps(result)}")
        check_pages_met(self, result)
        yield relay.interrupt("TERM")
        yield daemon.interrupt("TERM")
        check_logs(self, daemon, relay, result)
        return result

    @inlineCallbacks
    def test_two_pages_meet_chat_and_part(self):  # type: ignore[no-untyped-def]
        """WebRTC between the pages when Chromium makes it (here: host candidates on one
        machine), the relay otherwise; the kind is shown on both pages either way."""
        result = yield self.run_pages("browser-test")
        kinds = result["connection"]
        print(f"connection kind: A sees {kinds['a']}, B sees {kinds['b']}")
        self.assertIn(kinds["a"], ("webrtc", "relay"), result)
        self.assertIn(kinds["b"], ("webrtc", "relay"), result)
        self.assertIn(result["messageVia"], ("webrtc", "relay"), result)

    @inlineCallbacks
    def test_relay_only(self):  # type: ignore[no-untyped-def]
        """With WebRTC off (?webrtc=0) the pages chat through the relay and say so."""
        result = yield self.run_pages("browser-relay-test", "webrtc=0")
        self.assertEqual(result["connection"], {"a": "relay", "b": "relay"}, result)
        self.assertEqual(result["messageVia"], "relay", result)
