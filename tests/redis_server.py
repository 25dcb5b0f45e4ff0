"""A real ``redis-server`` for tests: on a free loopback port, in a temporary directory.

Tests that need it are skipped, with the reason, only when no ``redis-server`` can be
found (``$RENDEZVOUS_REDIS_SERVER`` or the PATH) or started; with
``$RENDEZVOUS_REQUIRE_REDIS`` set (CI) they fail instead.
"""

from __future__ import annotations

import os
import shutil
import socket

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import SkipTest

from .processes import Process, spawn

READY = r"Ready to accept connections"


def unavailable(reason: str) -> Exception:
    """A skip, or a failure where ``$RENDEZVOUS_REQUIRE_REDIS`` says Redis must be there (CI)."""
    if os.environ.get("RENDEZVOUS_REQUIRE_REDIS"):
        return RuntimeError(f"{reason} (and $RENDEZVOUS_REQUIRE_REDIS is set)")
    return SkipTest(reason)


def redis_server_path() -> str:
    path = os.environ.get("RENDEZVOUS_REDIS_SERVER") or shutil.which("redis-server")
    if not path:
        raise unavailable(
            "redis-server not found (install the redis-server package or set "
            "$RENDEZVOUS_REDIS_SERVER): the Redis store tests need a real server"
        )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process; `stop` and `start` again keep its port."""

    def __init__(
        self,
        directory: str,
        *,
        password: str | None = None,
        tls: tuple[str, str] | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        """``tls``: (certificate, key) PEM files to serve TLS only (without client
        certificates); ``extra_args``: more ``redis-server`` options (``--replicaof H P``)."""
        self.path = redis_server_path()
        self.password = password
        self.tls = tls
        self.extra_args = extra_args
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        self.port = free_port()
        self.process: Process | None = None

    @property
    def url(self) -> str:
        if self.tls:
            return f"rediss://localhost:{self.port}/0"
        return f"redis://127.0.0.1:{self.port}/0"

    @inlineCallbacks
    def start(self):  # type: ignore[no-untyped-def]
        args = [
            self.path,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self.directory,
            "--daemonize",
            "no",
        ]
        if self.password is not None:
            args += ["--requirepass", self.password]
        if self.tls is not None:
            cert, key = self.tls
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", cert]
            args += ["--tls-key-file", key, "--tls-auth-clients", "no"]
        args += self.extra_args
        process = self.process = spawn(args, self.directory)
        try:
            yield process.wait_for(READY)
        except RuntimeError as e:
            raise unavailable(f"redis-server could not start: {e}") from None

    def stop(self, signal_name: str = "KILL") -> Deferred[int] | None:
        """End the server (default: at once, like a crash); fires when it is gone."""
        process, self.process = self.process, None
        if process is None:
            return None
        return process.interrupt(signal_name)
