"""The seed's interaction, byte for byte, against every way of running the registry:
one daemon on the in-memory store, a daemon with two worker processes, and three
daemons sharing one Redis (the four clients spread over them), and three daemons
on a three-master Redis Cluster. Each frame a client
receives is compared, as bytes, with the one the protocol documentation gives."""

from __future__ import annotations

import os

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory
from twisted.trial.unittest import TestCase

from rendezvous.pb.live_pb2 import Message
from rendezvous.service import Daemon, DaemonConfig
from rendezvous.store.redis import RedisStore

from .helpers import (
    discover,
    expected_register,
    expected_unregister,
    register,
    rendezvous,
    unregister,
)
from .processes import TWISTD, spawn
from .redis_cluster import RedisCluster
from .redis_server import RedisServer
from .test_loopback_raw import ADDR, RawClient


def _bytes(*messages: Message) -> list[bytes]:
    return [m.SerializeToString() for m in messages]


class SeedEverywhere:
    """The seed's interaction; `start` gives the live ports, the clients take them in
    turn (A, B, C and D on the first, second, third and first again)."""

    timeout = 60

    def start(self) -> Deferred[list[int]]:
        raise NotImplementedError

    @inlineCallbacks
    def connect(self, port: int):  # type: ignore[no-untyped-def]
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        client = yield endpoint.connect(Factory.forProtocol(RawClient))
        self.addCleanup(self.close, client)  # type: ignore[attr-defined]
        return client

    @staticmethod
    def close(client: RawClient) -> Deferred[None] | None:
        if client.lost.called:
            return None
        client.transport.loseConnection()  # type: ignore[union-attr]
        return client.lost

    @inlineCallbacks
    def test_seed_interaction_byte_for_byte(self):  # type: ignore[no-untyped-def]
        ports = yield self.start()
        clients = []
        for n in (0, 1, 2, 0):
            clients.append((yield self.connect(ports[n % len(ports)])))
        a, b, c, d = clients
        eq = self.assertEqual  # type: ignore[attr-defined]

        a.send(register("my-app", "A", ADDR["A"]), rendezvous("my-app"))
        yield a.settle()
        eq(a.take_bytes(), [])  # nobody else yet, and never its own registration

        b.send(register("my-app", "B", ADDR["B"]), rendezvous("my-app"))
        yield b.settle()
        yield a.until(1)
        eq(b.take_bytes(), _bytes(expected_register("my-app", ("A", (ADDR["A"],)))))
        eq(a.take_bytes(), _bytes(expected_register("my-app", ("B", (ADDR["B"],)))))

        c.send(register("my-app", "C", ADDR["C"]), rendezvous("my-app"))
        yield c.settle()
        yield a.until(1)
        yield b.until(1)
        snapshot = expected_register("my-app", ("A", (ADDR["A"],)), ("B", (ADDR["B"],)))
        eq(c.take_bytes(), _bytes(snapshot))
        eq(a.take_bytes(), _bytes(expected_register("my-app", ("C", (ADDR["C"],)))))
        eq(b.take_bytes(), _bytes(expected_register("my-app", ("C", (ADDR["C"],)))))

        d.send(discover("my-app", request_id=1))
        yield d.settle()
        everyone = [(n, (ADDR[n],)) for n in "ABC"]
        eq(d.take_bytes(), _bytes(expected_register("my-app", *everyone, request_id=1)))

        # C disconnects, B unregisters: A is told both, B is told of C; D sees only A.
        yield self.close(c)
        yield b.until(1)
        b.send(unregister("my-app", "B"))
        yield b.settle()
        yield a.until(2)
        eq(
            a.take_bytes(),
            _bytes(
                expected_unregister("my-app", "C", ADDR["C"]),
                expected_unregister("my-app", "B", ADDR["B"]),
            ),
        )
        eq(b.take_bytes(), _bytes(expected_unregister("my-app", "C", ADDR["C"])))
        d.send(discover("my-app", request_id=2))
        yield d.settle()
        eq(
            d.take_bytes(),
            _bytes(expected_register("my-app", ("A", (ADDR["A"],)), request_id=2)),
        )


class InMemoryTests(SeedEverywhere, TestCase):
    def start(self) -> Deferred[list[int]]:
        daemon = Daemon(DaemonConfig(listen=("tcp:0:interface=127.0.0.1",)), reactor)
        daemon.startService()
        self.addCleanup(daemon.stopService)
        port = daemon.live_ports[0].getHost().port  # type: ignore[attr-defined]
        return Deferred.fromCoroutine(_value([port]))


class WorkersTests(SeedEverywhere, TestCase):
    """``twistd rendezvous --workers 2``: connections alternate between the workers."""

    @inlineCallbacks
    def start(self):  # type: ignore[no-untyped-def]
        cwd = os.path.abspath(self.mktemp())
        os.makedirs(cwd)
        daemon = spawn(
            [
                *TWISTD,
                "-n",
                "--pidfile=",
                "rendezvous",
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--workers",
                "2",
            ],
            cwd,
        )
        self.addCleanup(daemon.kill)
        match = yield daemon.wait_for(r"live dialect listening on tcp 127\.0\.0\.1:(\d+)")
        yield daemon.wait_for("worker 2 started")
        return [int(match.group(1))]


class ThreeDaemonsOnRedisTests(SeedEverywhere, TestCase):
    @inlineCallbacks
    def start(self):  # type: ignore[no-untyped-def]
        redis = RedisServer(os.path.abspath(self.mktemp()))
        yield redis.start()
        self.addCleanup(redis.stop)
        return (yield self.daemons(redis.url))

    @inlineCallbacks
    def daemons(self, url: str):  # type: ignore[no-untyped-def]
        ports = []
        for _ in range(3):
            daemon = Daemon(DaemonConfig(listen=("tcp:0:interface=127.0.0.1",), store=url), reactor)
            daemon.startService()
            self.addCleanup(daemon.stopService)
            store = daemon.store
            assert isinstance(store, RedisStore)
            yield store.when(ready=True)
            ports.append(daemon.live_ports[0].getHost().port)  # type: ignore[attr-defined]
        return ports


class ThreeDaemonsOnRedisClusterTests(ThreeDaemonsOnRedisTests):
    timeout = 60

    @inlineCallbacks
    def start(self):  # type: ignore[no-untyped-def]
        cluster = RedisCluster(os.path.abspath(self.mktemp()))
        self.addCleanup(lambda: Deferred.fromCoroutine(cluster.stop()))
        yield Deferred.fromCoroutine(cluster.start())
        return (yield self.daemons(cluster.url))


async def _value(value: list[int]) -> list[int]:
    return value
