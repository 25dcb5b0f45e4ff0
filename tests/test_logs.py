"""JSON log lines (`rendezvous.logs`) and the rule for clients' addresses in log lines."""

from __future__ import annotations

import ast
import io
import json
import os
import pathlib
import re
from enum import IntEnum
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import (
    ILogObserver,
    LogEvent,
    Logger,
    LogLevel,
    capturedLogs,
    formatEvent,
)
from twisted.python import log as legacy_log
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from rendezvous import _relay_tap, _tap, logs
from rendezvous.limits import Limits
from rendezvous.live.protocol import LiveFactory
from rendezvous.logs import ClientAddress, emit, emit_failure, show_addresses
from rendezvous.p2p.host import Host
from rendezvous.p2p.keys import PrivateKey
from rendezvous.service import live_dialect
from rendezvous.store.memory import MemoryStore

from .helpers import discover, framed

FIXED = ["time", "level", "event", "text", "logger"]
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


class Colour(IntEnum):
    RED = 1


class Opaque:
    def __str__(self) -> str:
        return "opaque thing"


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no")


def captured_json(emitting: Any, **options: Any) -> list[dict[str, Any]]:
    """What `emitting()` logs, each event through `as_line` and back."""
    with capturedLogs() as events:
        emitting()
    return [json.loads(logs.as_line(e, **options)) for e in events]


class AddressRule(SynchronousTestCase):
    """Every test starts with the daemon's default (addresses hidden) and restores it."""

    def setUp(self) -> None:
        self.addCleanup(show_addresses, show_addresses(False))


class RecordTests(AddressRule):
    log = Logger()

    def test_fixed_fields_then_the_events_own(self) -> None:
        (line,) = captured_json(
            lambda: self.log.info(
                "refused {peer}: {reason}",
                peer="p2p 12D3KooWabc",
                reason="namespace is empty",
                event="request.refused",
                peer_id="12D3KooWabc",
                namespace="apps",
                count=3,
            )
        )
        self.assertEqual(list(line)[:5], FIXED)
        self.assertRegex(line["time"], TIME)
        self.assertEqual(line["level"], "info")
        self.assertEqual(line["event"], "request.refused")
        self.assertEqual(line["text"], "refused p2p 12D3KooWabc: namespace is empty")
        self.assertEqual(line["logger"], "tests.test_logs.RecordTests")
        self.assertEqual(
            {k: line[k] for k in ("peer_id", "namespace", "count", "reason")},
            {
                "peer_id": "12D3KooWabc",
                "namespace": "apps",
                "count": 3,
                "reason": "namespace is empty",
            },
        )
        self.assertFalse([key for key in line if key.startswith("log_")])
        self.assertNotIn("system", line)

    def test_time_is_utc_with_milliseconds(self) -> None:
        event = {"log_time": 0.5, "log_level": LogLevel.warn, "log_format": "x"}
        line = logs.record(event)
        self.assertEqual(line["time"], "1970-01-01T00:00:00.500Z")
        self.assertEqual(line["level"], "warn")

    def test_a_line_without_a_name(self) -> None:
        (line,) = captured_json(lambda: self.log.info("just {what}", what="text"))
        self.assertIsNone(line["event"])
        self.assertEqual(line["what"], "text")

    def test_values_json_cannot_hold_are_text(self) -> None:
        (line,) = captured_json(
            lambda: self.log.info(
                "odd values",
                thing=Opaque(),
                raw=b"\x01\xff",
                colour=Colour.RED,
                level_=LogLevel.error,
                ratio=float("nan"),
                many={"a", "b"},
                nested={"k": [1, (2, Opaque())], 3: None},
                bad=Unprintable(),
                nothing=None,
            )
        )
        self.assertEqual(line["thing"], "opaque thing")
        self.assertEqual(line["raw"], "01ff")
        self.assertEqual(line["colour"], "RED")
        self.assertEqual(line["level_"], "error")
        self.assertEqual(line["ratio"], "nan")
        self.assertEqual(sorted(line["many"]), ["a", "b"])
        self.assertEqual(line["nested"], {"k": [1, [2, "opaque thing"]], "3": None})
        self.assertEqual(line["bad"], "<unprintable Unprintable>")
        self.assertNotIn("nothing", line)  # None: left out

    def test_fields_named_like_fixed_ones_get_an_underscore(self) -> None:
        (line,) = captured_json(
            lambda: self.log.info("{text} at {time}", text="words", time=5, logger="x")
        )
        self.assertEqual(line["text"], "words at 5")
        self.assertEqual((line["text_"], line["time_"], line["logger_"]), ("words", 5, "x"))
        self.assertEqual(line["logger"], "tests.test_logs.RecordTests")

    def test_a_failure_has_its_traceback(self) -> None:
        def fail() -> None:
            try:
                1 / 0  # noqa: B018
            except ZeroDivisionError:
                self.log.failure("request from {peer} failed", peer="p2p x", event="request.failed")

        (line,) = captured_json(fail)
        self.flushLoggedErrors(ZeroDivisionError)
        self.assertEqual(line["level"], "critical")
        self.assertEqual(line["text"], "request from p2p x failed")
        self.assertEqual(line["failure"], "ZeroDivisionError: division by zero")
        self.assertIn("Traceback", line["traceback"])
        self.assertIn("1 / 0", line["traceback"])

    def test_an_unformattable_line_is_still_a_line(self) -> None:
        (line,) = captured_json(lambda: self.log.info("{missing} field"))
        self.assertEqual(line["level"], "info")
        self.assertIn("Unable to format event", line["text"])

    def test_legacy_lines_lose_their_legacy_keys(self) -> None:
        def legacy() -> None:
            legacy_log.callWithContext(
                {"system": "LiveFactory,7,198.51.100.7"}, legacy_log.msg, "hello", why="x"
            )
            legacy_log.err(Failure(ValueError("bad")), "it broke")

        hello, broke = captured_json(legacy)
        self.flushLoggedErrors(ValueError)
        self.assertEqual(hello["text"], "hello")
        self.assertEqual(hello["system"], "LiveFactory,7")  # the client's address is gone
        for key in ("message", "isError", "time_", "system_", "why", "format"):
            self.assertNotIn(key, hello)
        self.assertEqual(broke["level"], "critical")
        self.assertEqual(broke["failure"], "ValueError: bad")
        self.assertIn("it broke", broke["text"])
        (shown,) = captured_json(
            lambda: legacy_log.callWithContext(
                {"system": "LiveFactory,7,198.51.100.7"}, legacy_log.msg, "hello"
            ),
            addresses=True,
        )
        self.assertEqual(shown["system"], "LiveFactory,7,198.51.100.7")

    def test_a_client_address_logged_directly_is_hidden_above_debug(self) -> None:
        address = ClientAddress("tcp 198.51.100.7:4000")
        info, debug = captured_json(
            lambda: (
                self.log.info("from {peer}", peer=address),
                self.log.debug("from {peer}", peer=address),
            )
        )
        self.assertEqual((info["text"], info["peer"]), ("from a client", "a client"))
        self.assertEqual(debug["text"], "from tcp 198.51.100.7:4000")
        show_addresses(True)
        (shown,) = captured_json(lambda: self.log.info("from {peer}", peer=address))
        self.assertEqual(shown["peer"], "tcp 198.51.100.7:4000")


class ObserverTests(AddressRule):
    def test_one_flushed_line_per_event(self) -> None:
        out = io.StringIO()
        observer = logs.JSONLinesObserver(out)
        self.assertTrue(ILogObserver.providedBy(observer))
        log = Logger(observer=observer)
        log.info("one\ntwo", event="a.b")
        log.warn("three")
        lines = out.getvalue().splitlines()
        self.assertEqual(len(lines), 2)
        self.assertEqual([json.loads(x)["text"] for x in lines], ["one\ntwo", "three"])

    def test_the_level_comes_from_the_environment(self) -> None:
        for environ, expected in [
            ({}, ["info", "error"]),
            ({"RENDEZVOUS_LOG_LEVEL": "debug"}, ["debug", "info", "error"]),
            ({"RENDEZVOUS_LOG_LEVEL": "ERROR"}, ["error"]),
            ({"RENDEZVOUS_LOG_LEVEL": "warning"}, ["error"]),
        ]:
            out = io.StringIO()
            log = Logger(observer=logs.json(out, environ))
            log.debug("d")
            log.info("i")
            log.error("e")
            levels = [json.loads(x)["level"] for x in out.getvalue().splitlines()]
            self.assertEqual(levels, expected, environ)

    def test_an_unknown_level_is_said_and_info_used(self) -> None:
        out = io.StringIO()
        log = Logger(observer=logs.json(out, {"RENDEZVOUS_LOG_LEVEL": "loud"}))
        log.debug("d")
        log.info("i")
        first, second = (json.loads(x) for x in out.getvalue().splitlines())
        self.assertEqual((first["level"], first["event"]), ("warn", "logging.bad_level"))
        self.assertIn("unknown RENDEZVOUS_LOG_LEVEL 'loud'", first["text"])
        self.assertEqual(second["text"], "i")

    def test_debug_lines_dropped_before_they_are_built(self) -> None:
        """Called as twistd's --logger calls them (no arguments), the observers tell
        `emit` whether debug lines can be written at all."""
        self.addCleanup(setattr, logs._rule, "debug", logs.debug_logged())
        for factory in (logs.json, logs.text):
            for environ, expected in [
                ({}, ["i"]),
                ({"RENDEZVOUS_LOG_LEVEL": "debug"}, ["d", "f", "i"]),
            ]:
                self.patch(os, "environ", environ)
                factory()
                self.assertEqual(logs.debug_logged(), "d" in expected)
                seen: list[LogEvent] = []
                log = Logger(observer=seen.append)
                emit(log, LogLevel.debug, "d")
                emit_failure(log, "f", Failure(ValueError()), level=LogLevel.debug)
                emit(log, LogLevel.info, "i")
                self.assertEqual([e["log_format"] for e in seen], expected)

    def test_other_observers_keep_debug_lines(self) -> None:
        """An observer made for other ends (given where to write) changes nothing."""
        self.addCleanup(setattr, logs._rule, "debug", logs.debug_logged())
        logs.json(io.StringIO(), {})
        self.assertTrue(logs.debug_logged())

    def test_text_observer_leaves_out_debug(self) -> None:
        out = io.StringIO()
        log = Logger(observer=logs.text(out, {}))
        log.debug("quiet")
        log.info("said")
        self.assertNotIn("quiet", out.getvalue())
        self.assertIn("said", out.getvalue())


class EmitTests(AddressRule):
    log = Logger()

    def lines(self, emitting: Any) -> list[str]:
        with capturedLogs() as events:
            emitting()
        return [formatEvent(e) for e in events]

    def test_an_address_only_at_debug_by_default(self) -> None:
        address = ClientAddress("tcp 198.51.100.7:4000")
        lines = self.lines(
            lambda: (
                emit(self.log, LogLevel.info, "closing {peer}", peer=address),
                emit(self.log, LogLevel.warn, "closing {peer}", peer=address),
                emit(self.log, LogLevel.debug, "opened {peer}", peer=address),
                emit(self.log, LogLevel.info, "closing {peer}", peer="p2p 12D3KooW"),
            )
        )
        self.assertEqual(
            lines,
            [
                "closing a client",
                "closing a client",
                "opened tcp 198.51.100.7:4000",
                "closing p2p 12D3KooW",
            ],
        )

    def test_every_level_with_log_addresses(self) -> None:
        self.assertFalse(show_addresses(True))
        self.assertTrue(logs.addresses_shown())
        address = ClientAddress("tcp 198.51.100.7:4000")
        lines = self.lines(lambda: emit(self.log, LogLevel.info, "closing {peer}", peer=address))
        self.assertEqual(lines, ["closing tcp 198.51.100.7:4000"])

    def test_failures(self) -> None:
        def fail() -> None:
            try:
                raise ValueError("boom")
            except ValueError:
                emit_failure(self.log, "failed with {peer}", peer=ClientAddress("1.2.3.4:5"))

        with capturedLogs() as events:
            fail()
        self.flushLoggedErrors(ValueError)
        (event,) = events
        self.assertEqual(formatEvent(event), "failed with a client")
        self.assertEqual(event["log_level"], LogLevel.critical)
        self.assertIsInstance(event["log_failure"].value, ValueError)


class DaemonLinesTests(AddressRule):
    """The daemon's own lines that name a client follow the rule."""

    def live(self) -> tuple[LiveFactory, Clock]:
        clock = Clock()
        limits = Limits(max_sessions_per_ip=1, session_rate_per_ip=100)
        factory = LiveFactory(live_dialect(MemoryStore(limits), limits, clock), clock)
        return factory, clock

    def connect(self, factory: LiveFactory, port: int) -> tuple[Any, StringTransport]:
        transport = StringTransport(peerAddress=IPv4Address("TCP", "198.51.100.7", port))
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(transport)
        return protocol, transport

    def run_live_session(self) -> list[dict[str, Any]]:
        factory, _ = self.live()

        def session() -> None:
            first, _ = self.connect(factory, 40000)
            first.dataReceived(framed(discover("")))
            self.connect(factory, 40001)  # over --max-sessions-per-ip
            first.connectionLost()

        return captured_json(session)

    def test_live_sessions_without_log_addresses(self) -> None:
        lines = self.run_live_session()
        events = [(line["level"], line["event"]) for line in lines]
        self.assertIn(("debug", "session.opened"), events)
        self.assertIn(("debug", "session.closed"), events)
        refused = [line for line in lines if line["event"] == "request.refused"]
        self.assertEqual(len(refused), 2)  # an empty namespace, then too many sessions
        for line in refused:
            self.assertEqual((line["peer"], line["dialect"]), ("a client", "live"))
        self.assertEqual(refused[1]["reason"], "too many sessions from its address")
        for line in lines:
            if line["level"] != "debug":
                self.assertNotIn("198.51.100.7", json.dumps(line))
        opened = [line for line in lines if line["event"] == "session.opened"]
        self.assertEqual(opened[0]["peer"], "tcp 198.51.100.7:40000")

    def test_live_sessions_with_log_addresses(self) -> None:
        show_addresses(True)
        refused = [x for x in self.run_live_session() if x["event"] == "request.refused"]
        self.assertEqual(
            [x["peer"] for x in refused], ["tcp 198.51.100.7:40000", "tcp 198.51.100.7:40001"]
        )
        self.assertEqual(
            refused[0]["text"],
            "refused tcp 198.51.100.7:40000: INVALID_NAMESPACE (100) namespace is empty",
        )

    def test_libp2p_connections(self) -> None:
        def closing() -> None:
            host = Host(PrivateKey.from_seed(b"s" * 32), Clock())
            transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.9", 5000))
            connection = host.factory().buildProtocol(None)
            connection.makeConnection(transport)
            connection.dataReceived(b"\x05hello")
            connection.connectionLost()

        (line,) = [x for x in captured_json(closing) if x["event"] == "connection.closing"]
        self.assertEqual((line["level"], line["peer"]), ("info", "a client"))
        self.assertEqual(line["text"], f"closing the connection with a client: {line['reason']}")
        show_addresses(True)
        (line,) = [x for x in captured_json(closing) if x["event"] == "connection.closing"]
        self.assertEqual(line["peer"], "/ip4/10.0.0.9/tcp/5000")


class OptionTests(AddressRule):
    def test_both_commands_take_log_addresses(self) -> None:
        for tap in (_tap, _relay_tap):
            options = tap.Options()
            options.parseOptions(["--log-addresses"])
            self.assertTrue(options["log-addresses"])
            options = tap.Options()
            options.parseOptions([])
            self.assertFalse(options["log-addresses"])
            self.assertIn("--log-addresses", str(options))

    def test_the_daemon_sets_the_rule(self) -> None:
        options = _tap.Options()
        options.parseOptions(["--log-addresses", "--listen", "tcp:0:interface=127.0.0.1"])
        _tap.makeService(options)
        self.assertTrue(logs.addresses_shown())
        options = _relay_tap.Options()
        options.parseOptions([])
        _relay_tap.makeService(options)
        self.assertFalse(logs.addresses_shown())


class DocumentedTests(SynchronousTestCase):
    def test_every_event_name_has_a_sample_line(self) -> None:
        """docs/operations.rst shows a line of every event a log call names."""
        root = pathlib.Path(__file__).resolve().parent.parent
        documented = (root / "docs" / "operations.rst").read_text()
        names: set[str] = set()
        for path in (root / "rendezvous").rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.keyword) and node.arg == "event":
                    names.update(
                        value.value
                        for value in ast.walk(node.value)
                        if isinstance(value, ast.Constant) and isinstance(value.value, str)
                    )
        names = {name.lstrip(".") for name in names if name}
        self.assertIn("request.refused", names)
        missing = sorted(n for n in names if f'"event": "{n}"' not in documented and "." in n)
        self.assertEqual(missing, [])
        # f"{what}.refused": both kinds
        for name in ("reservation.refused", "circuit.refused"):
            self.assertIn(f'"event": "{name}"', documented)
