"""`twistd rendezvous --web … --web-root …` as a real process."""

from __future__ import annotations

import json
import os
import re

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.web.client import Agent, readBody

from rendezvous.client.live import connect

from .helpers import peer_id, tcp_addr
from .processes import ProcessTestCase

WEB_LISTENING = r"web listening on tcp 127\.0\.0\.1:(\d+)"
LIVE_LISTENING = r"live dialect listening on tcp 127\.0\.0\.1:(\d+)"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


class WebProcessTests(ProcessTestCase):
    @inlineCallbacks
    def test_status_and_app(self):  # type: ignore[no-untyped-def]
        root = os.path.join(self.cwd, "dist")
        os.makedirs(root)
        with open(os.path.join(root, "index.html"), "w") as f:
            f.write("<!DOCTYPE html><title>example</title>")
        daemon = self.twistd(
            "rendezvous",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--web",
            "tcp:0:interface=127.0.0.1",
            "--web-root",
            "dist",
        )
        live = yield daemon.wait_for(LIVE_LISTENING)
        web = yield daemon.wait_for(WEB_LISTENING)
        base = f"http://127.0.0.1:{web.group(1)}"

        client = yield connect(reactor, f"127.0.0.1:{live.group(1)}")
        self.addCleanup(client.transport.loseConnection)
        yield client.register("web-test", peer_id("A"), [tcp_addr(1)])

        agent = Agent(reactor)
        response = yield agent.request(b"GET", f"{base}/status.json".encode())
        status = json.loads((yield readBody(response)))
        self.assertEqual(response.code, 200)
        self.assertEqual(
            status["namespaces"]["listed"],
            [{"name": "web-test", "registrations": 1, "subscribers": 0}],
        )
        self.assertEqual(status["sessions"]["live_raw"], 1)
        self.assertNotIn("10.0.0.1", json.dumps(status))

        response = yield agent.request(b"GET", f"{base}/app/index.html".encode())
        body = yield readBody(response)
        self.assertEqual((response.code, body), (200, b"<!DOCTYPE html><title>example</title>"))

    @inlineCallbacks
    def test_missing_root_is_a_usage_error(self):  # type: ignore[no-untyped-def]
        daemon = self.twistd(
            "rendezvous", "--web", "tcp:0:interface=127.0.0.1", "--web-root", "no-such-dir"
        )
        code = yield daemon.ended
        self.assertNotEqual(code, 0)
        self.assertIn("--web-root", daemon.output + daemon.errors)


class StatusPageInBrowserTests(ProcessTestCase):
    """The page in headless Chromium: its script runs under its own policy and writes
    attacker-chosen names as text."""

    timeout = 120
    skip = None if os.access(CHROMIUM, os.X_OK) else f"no Chromium at {CHROMIUM}"

    @inlineCallbacks
    def test_page_shows_namespaces_and_relays_as_text(self):  # type: ignore[no-untyped-def]
        daemon = self.twistd(
            "rendezvous",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--web",
            "tcp:0:interface=127.0.0.1",
        )
        live = yield daemon.wait_for(LIVE_LISTENING)
        web = yield daemon.wait_for(WEB_LISTENING)
        for namespace, name in [("<b>bold</b>", "A"), ("rendezvous/relays", "R")]:
            client = yield connect(reactor, f"127.0.0.1:{live.group(1)}")
            self.addCleanup(client.transport.loseConnection)
            yield client.register(namespace, peer_id(name), [tcp_addr(1)])
        browser = self.spawn(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                f"--user-data-dir={os.path.join(self.cwd, 'chromium')}",
                "--virtual-time-budget=5000",
                "--dump-dom",
                f"http://127.0.0.1:{web.group(1)}/",
            ]
        )
        code = yield browser.ended
        self.assertEqual(code, 0, browser.errors)
        dom = browser.output
        self.assertIn('<span id="state" class="ok">live, updated', dom)
        self.assertIn("<td>&lt;b&gt;bold&lt;/b&gt;</td>", dom)
        self.assertNotIn("<b>", dom)
        self.assertIn(f'<td class="id">{peer_id("R")}</td>', dom)
        self.assertEqual(re.findall(r'id="sessions-live_raw">(\d+)<', dom), ["2"])
