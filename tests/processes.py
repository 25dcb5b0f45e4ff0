"""Run the daemon and the command-line client as real processes, without sleeps."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import sys

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
CLI = [sys.executable, "-m", "rendezvous.client.cli"]
P2P_LISTENING = r"listening on (/ip4/127\.0\.0\.1/tcp/\d+/p2p/(\w+))"
"""A daemon's libp2p address as it logs it: (full multiaddr, peer id)."""


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Process(ProcessProtocol):
    """A child process whose output lines can be awaited."""

    def __init__(self) -> None:
        self.output = ""
        self.errors = ""
        self.ended: Deferred[int] = Deferred()
        self._waiting: list[tuple[re.Pattern[str], Deferred[re.Match[str]]]] = []
        self.exit_code: int | None = None

    def outReceived(self, data: bytes) -> None:
        self.output += data.decode(errors="replace")
        self._check()

    def errReceived(self, data: bytes) -> None:
        self.errors += data.decode(errors="replace")
        self._check()

    def _check(self) -> None:
        for pattern, d in list(self._waiting):
            match = pattern.search(self.output) or pattern.search(self.errors)
            if match:
                self._waiting.remove((pattern, d))
                d.callback(match)

    def wait_for(self, pattern: str) -> Deferred[re.Match[str]]:
        """Fires with the first match of ``pattern`` in the output, now or later."""
        d: Deferred[re.Match[str]] = Deferred()
        self._waiting.append((re.compile(pattern), d))
        self._check()
        return d

    def processEnded(self, reason: Failure) -> None:
        self.exit_code = getattr(reason.value, "exitCode", None)
        for _, d in self._waiting:
            d.errback(RuntimeError(f"process ended first:\n{self.output}\n{self.errors}"))
        self._waiting.clear()
        self.ended.callback(self.exit_code if self.exit_code is not None else -1)

    def interrupt(self, signal_name: str = "INT") -> Deferred[int]:
        """Send a signal; fires with the exit code, -1 when the signal ended the process."""
        if not self.ended.called and self.transport is not None:
            self.transport.signalProcess(signal_name)
        return self.ended

    def kill(self) -> Deferred[int] | None:
        if self.ended.called:
            return None
        with contextlib.suppress(Exception):
            self.transport.signalProcess("KILL")  # type: ignore[union-attr]
        return self.ended


def spawn(args: list[str], cwd: str, env: dict[str, str] | None = None) -> Process:
    """Run ``args`` in ``cwd``, with our environment plus ``env``."""
    process = Process()
    variables = {**environment(), **(env or {})}
    reactor.spawnProcess(process, args[0], args, env=variables, path=cwd)  # type: ignore[attr-defined]
    return process


class ProcessTestCase(TestCase):
    """A test that spawns processes, in a directory of its own (``cwd``) unless told
    otherwise, each killed at cleanup."""

    def setUp(self) -> None:
        self.cwd = os.path.abspath(self.mktemp())
        os.makedirs(self.cwd)

    def spawn(
        self, args: list[str], cwd: str | None = None, env: dict[str, str] | None = None
    ) -> Process:
        process = spawn(args, cwd or self.cwd, env)
        self.addCleanup(process.kill)
        return process

    def twistd(self, *args: str, cwd: str | None = None) -> Process:
        """``twistd -n --pidfile= ARGS``: a plugin's service in the foreground."""
        return self.spawn([*TWISTD, "-n", "--pidfile=", *args], cwd)

    @inlineCallbacks
    def assert_start_refused(self, store: str, reason: str):  # type: ignore[no-untyped-def]
        """``twistd rendezvous --store STORE`` exits non-zero, saying ``reason`` (a
        pattern) on standard error, before it listens."""
        daemon = self.twistd(
            "rendezvous", "--listen", "tcp:0:interface=127.0.0.1", "--store", store
        )
        code = yield daemon.ended
        self.assertNotEqual(code, 0)
        self.assertRegex(daemon.errors, reason)
        self.assertNotRegex(daemon.output + daemon.errors, "listening on")


def node_missing(folder: str) -> str | None:
    """Why the js peers of ``interop/<folder>`` cannot run here (a skip reason), or None."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not os.path.isdir(os.path.join(ROOT, "interop", folder, "node_modules")):
        return f"interop/{folder}/node_modules is missing: run `npm ci` in interop/{folder}"
    return None


__all__ = ["CLI", "TWISTD", "Process", "ProcessTestCase", "node_missing", "signal", "spawn"]
