"""A real Redis Cluster for tests: three masters (``redis-server --cluster-enabled yes``)
on free loopback ports, joined by ``redis-cli --cluster create``; skipped, or failed
under ``$RENDEZVOUS_REQUIRE_REDIS``, as `redis_server` says."""

from __future__ import annotations

import os
import shutil
import socket
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue

from .redis_server import RedisServer, unavailable

CLUSTER_ARGS = (
    "--cluster-enabled",
    "yes",
    "--cluster-config-file",
    "nodes.conf",
    "--cluster-node-timeout",
    "2000",
)


def redis_cli() -> str:
    cli = shutil.which("redis-cli")
    if cli is None:
        raise unavailable("redis-cli not found (the redis-tools package)")
    return cli


async def cli(*args: str) -> str:
    """Run ``redis-cli`` with ``args``; its output (failing on a non-zero exit)."""
    run = getProcessOutputAndValue(redis_cli(), args, env=dict(os.environ))  # type: ignore[no-untyped-call]
    out, err, code = await run
    if code != 0:
        raise RuntimeError(f"redis-cli {' '.join(args)} failed ({code}): {err!r} {out!r}")
    return str(out.decode())


class RedisCluster:
    """``masters`` cluster nodes, each serving an equal share of the slots."""

    def __init__(self, directory: str, masters: int = 3) -> None:
        self.servers = [RedisServer(os.path.join(directory, f"node{i}")) for i in range(masters)]
        self._assign_ports()

    def _assign_ports(self) -> None:
        """Distinct free ports for every node and its cluster bus (taken together, so
        no two are the same)."""
        sockets = [socket.socket() for _ in range(2 * len(self.servers))]
        try:
            for s in sockets:
                s.bind(("127.0.0.1", 0))
            ports = [s.getsockname()[1] for s in sockets]
        finally:
            for s in sockets:
                s.close()
        for i, server in enumerate(self.servers):
            server.port = ports[2 * i]
            server.extra_args = (*CLUSTER_ARGS, "--cluster-port", str(ports[2 * i + 1]))

    @property
    def url(self) -> str:
        return "redis-cluster://" + ",".join(f"127.0.0.1:{s.port}" for s in self.servers)

    async def start(self, *, assign: bool = True) -> None:
        """Start the nodes; ``assign``: and make them a cluster, every slot served."""
        for attempt in range(3):
            try:
                for server in self.servers:
                    await server.start()
                break
            except Exception as e:  # a port taken meanwhile by another process: others
                if "Address already in use" not in str(e) or attempt == 2:
                    raise
                await self.stop()
                self._assign_ports()
        if not assign:
            return
        nodes = [f"127.0.0.1:{s.port}" for s in self.servers]
        await cli("--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes")
        await self.until_ok()

    async def until_ok(self, attempts: int = 200) -> None:
        """Wait until every node says the cluster is ok (polled every 50 ms)."""
        for _ in range(attempts):
            states = [await self.ask(s.port, "CLUSTER", "INFO") for s in self.servers]
            if all("cluster_state:ok" in state for state in states):
                return
            await deferLater(reactor, 0.05, lambda: None)
        raise RuntimeError(f"the cluster did not become ok: {states}")

    async def ask(self, port: int, *command: str) -> str:
        return await cli("-p", str(port), *command)

    async def node_id(self, port: int) -> str:
        return (await self.ask(port, "CLUSTER", "MYID")).strip()

    async def stop(self) -> Any:
        for server in self.servers:
            stopped = server.stop()
            if stopped is not None:
                await stopped
