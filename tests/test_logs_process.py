"""``twistd --logger rendezvous.logs.json rendezvous …``: a real daemon's JSON lines."""

from __future__ import annotations

import json
import re
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory
from twisted.web.client import Agent, readBody

from rendezvous.client.errors import InvalidNamespace
from rendezvous.client.live import LiveClientProtocol

from .helpers import peer_id, tcp_addr
from .processes import TWISTD, Process, ProcessTestCase

FIXED = ["time", "level", "event", "text", "logger"]
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
LISTENING = (
    r'"event": "listener.started", "text": "live dialect listening on tcp 127\.0\.0\.1:(\d+)'
)
METRICS_LISTENING = r'"text": "metrics listening on tcp 127\.0\.0\.1:(\d+)'


class JSONLogsTests(ProcessTestCase):
    timeout = 60

    def daemon(self, *options: str, level: str | None = None) -> Process:
        return self.spawn(
            [
                *TWISTD,
                "-n",
                "--pidfile=",
                "--logger",
                "rendezvous.logs.json",
                "rendezvous",
                "--listen",
                "tcp:0:interface=127.0.0.1",
                *options,
            ],
            env={} if level is None else {"RENDEZVOUS_LOG_LEVEL": level},
        )

    @inlineCallbacks
    def session(self, daemon: Process):  # type: ignore[no-untyped-def]
        """REGISTER, DISCOVER, a refused REGISTER, disconnect, stop: the daemon's lines
        (parsed, each checked for the fixed fields) and the client's port."""
        port = int((yield daemon.wait_for(LISTENING)).group(1))
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        client = yield endpoint.connect(Factory.forProtocol(LiveClientProtocol))
        client_port = client.transport.getHost().port
        yield client.register("apps", peer_id("A"), [tcp_addr(7)])
        self.assertEqual(len((yield client.discover("apps"))), 1)
        yield self.assertFailure(client.register("", peer_id("A")), InvalidNamespace)
        yield daemon.wait_for(r'"event": "request.refused"')
        client.disconnect()
        yield client.closed
        yield daemon.interrupt("TERM")
        self.assertNotIn("Traceback", daemon.output + daemon.errors)
        lines: list[dict[str, Any]] = []
        for text in daemon.output.splitlines():
            line = json.loads(text)  # every line is JSON
            self.assertEqual(list(line)[:5], FIXED, text)
            self.assertRegex(line["time"], TIME)
            self.assertIn(line["level"], ["debug", "info", "warn", "error", "critical"])
            lines.append(line)
        events = [line["event"] for line in lines]
        for event in ("listener.started", "daemon.starting", "daemon.collector", "request.refused"):
            self.assertIn(event, events)
        # The REGISTER, and the DISCOVER the client sends after it to know it is done.
        refused, _ = [line for line in lines if line["event"] == "request.refused"]
        self.assertEqual(
            {k: refused[k] for k in ("level", "dialect", "status", "code", "reason")},
            {
                "level": "info",
                "dialect": "live",
                "status": "INVALID_NAMESPACE",
                "code": 100,
                "reason": "namespace is empty",
            },
        )
        return lines, f"127.0.0.1:{client_port}"

    @inlineCallbacks
    def test_addresses_only_in_debug_lines(self):  # type: ignore[no-untyped-def]
        daemon = self.daemon(level="debug")
        lines, address = yield self.session(daemon)
        self.assertEqual(
            [line["level"] for line in lines if address in json.dumps(line)],
            ["debug", "debug"],
        )
        opened, closed = (x for x in lines if x["event"] in ("session.opened", "session.closed"))
        self.assertEqual((opened["event"], opened["peer"]), ("session.opened", f"tcp {address}"))
        self.assertEqual((closed["event"], closed["dialect"]), ("session.closed", "live"))
        refused, _ = [line for line in lines if line["event"] == "request.refused"]
        self.assertEqual(refused["peer"], "a client")
        self.assertEqual(
            refused["text"], "refused a client: INVALID_NAMESPACE (100) namespace is empty"
        )

    @inlineCallbacks
    def test_log_addresses(self):  # type: ignore[no-untyped-def]
        daemon = self.daemon("--log-addresses")
        lines, address = yield self.session(daemon)
        self.assertEqual([line for line in lines if line["level"] == "debug"], [])
        refused, _ = [line for line in lines if line["event"] == "request.refused"]
        self.assertEqual(refused["peer"], f"tcp {address}")

    @inlineCallbacks
    def test_no_address_at_the_default_level(self):  # type: ignore[no-untyped-def]
        daemon = self.daemon("--metrics", "tcp:0:interface=127.0.0.1")
        metrics = yield daemon.wait_for(METRICS_LISTENING)
        url = f"http://127.0.0.1:{metrics.group(1)}/metrics".encode()
        response = yield Agent(reactor).request(b"GET", url)
        self.assertIn("rendezvous_sessions", (yield readBody(response)).decode())
        lines, address = yield self.session(daemon)
        self.assertNotIn(address, daemon.output)
        self.assertNotIn("GET /metrics", daemon.output)  # no access line names the scraper
        self.assertEqual([line for line in lines if line["level"] == "debug"], [])

    @inlineCallbacks
    def test_workers_follow_the_rule(self):  # type: ignore[no-untyped-def]
        for options, shown in [((), False), (("--log-addresses",), True)]:
            daemon = self.daemon("--workers", "1", "--shutdown-grace", "0.5", *options)
            port = int((yield daemon.wait_for(LISTENING)).group(1))
            yield daemon.wait_for(r'"event": "worker.started"')
            # The worker sets the main process's collector policy in its own process too.
            yield daemon.wait_for(r'"text": "worker 1: collector: \d+ start-up objects frozen')
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
            client = yield endpoint.connect(Factory.forProtocol(LiveClientProtocol))
            address = f"tcp 127.0.0.1:{client.transport.getHost().port}"
            yield self.assertFailure(client.discover(""), InvalidNamespace)
            match = yield daemon.wait_for(
                r'"event": "worker.output", "text": "worker 1: refused ([^:]*(:\d+)?):'
            )
            self.assertEqual(match.group(1), address if shown else "a client")
            client.disconnect()
            yield daemon.interrupt("TERM")
