"""Scenario 6: circuit relay v2, bytes per second through one circuit and circuits per second.

Our relay (``twistd rendezvous-relay``) against the js-libp2p 3.x relay
(``bench/js/relay_server.mjs``: no data or duration limit on circuits, the connection
manager's inbound rate limit raised), both pinned to CPU 0, with the same two peers: our
own client code (Noise, yamux, hop and stop) in two load-generator processes pinned to the
other CPU. Bob reserves on the relay; alice dials it and CONNECTs to bob:

* throughput: alice sends ``--megabytes`` MiB through one circuit, bob answers one byte
  once all arrived; the relay decrypts and re-encrypts every byte (two Noise sessions);
* circuits: for ``--seconds``, alice opens circuits to bob one at a time, then ten at a time
  (``--parallel``): CONNECT, the relay's STOP to bob, OK back, then alice closes it.

Raw loopback TCP between the same two processes is the ceiling: the same bytes over one
plain TCP connection, and TCP connections opened and closed per second. Every relay runs
for the whole script and each of the ``--runs`` rounds measures them in turn, so that a
noisy spell of the machine falls on all of them alike.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as c
from libp2p_path import P2PProcess, js_server, node_modules_missing, nodelay, reactor_worker

JS_RELAY = os.path.join(c.ROOT, "interop", "js-relay")
CHUNK = 64 * 1024


def start_relay(kind: str, profile: str | None = None) -> P2PProcess:
    """``profile``: run our relay under cProfile, its stats saved there once stopped."""
    if kind == "js":
        return js_server("relay_server.mjs", JS_RELAY)
    argv = c.twistd_argv()
    if profile:
        argv += ["--profile", profile, "--profiler", "cprofile", "--savestats"]
    argv += [
        "rendezvous-relay",
        "--p2p-listen",
        "/ip4/127.0.0.1/tcp/0",
        "--circuit-bytes",
        str(1 << 40),
        "--circuit-duration",
        "86400",
        "--max-circuits",
        "100000",
        "--max-circuits-per-peer",
        "100000",
        "--p2p-max-connections-per-ip",
        "100000",
    ]
    return P2PProcess(argv, "/tmp", c.child_env())


def bob(conn: Any) -> None:
    """The reserving peer: counts what circuits bring, answers b"k" once ``expect`` came."""
    from twisted.internet import protocol, reactor

    from rendezvous.p2p.host import Host
    from rendezvous.p2p.keys import PrivateKey
    from rendezvous.p2p.stream import StreamProtocol
    from rendezvous.p2p.transport import TCPAddress
    from rendezvous.relay import client, codec
    from rendezvous.relay.client import StopHandler

    key = PrivateKey.generate()
    state: dict[str, Any] = {"expect": 0}
    relays: dict[str, Any] = {}
    """Bob's connection to each relay he reserved on (all of them at once)."""

    class Sink(StreamProtocol):
        def __init__(self) -> None:
            self.received = 0

        def data_received(self, data: bytes) -> None:
            self.received += len(data)
            if state["expect"] and self.received >= state["expect"]:
                self.received = -(1 << 62)
                self.stream.write(b"k")

        def end_received(self) -> None:
            self.stream.close()

    class TcpSink(protocol.Protocol):
        received = 0

        def dataReceived(self, data: bytes) -> None:
            self.received += len(data)
            if state["expect"] and self.received >= state["expect"]:
                self.received = -(1 << 62)
                self.transport.write(b"k")

    host = Host(key, reactor)
    host.set_handler(codec.STOP_PROTOCOL_ID, lambda: StopHandler(lambda src, lim: Sink()))
    factory = protocol.Factory.forProtocol(TcpSink)
    port = reactor.listenTCP(0, factory, backlog=4096, interface="127.0.0.1")

    async def reserve(address_text: str) -> dict:
        if address_text in relays:
            relays.pop(address_text).close()
        address = TCPAddress.parse(address_text)
        relays[address_text] = connection = await host.dial(
            address.client_endpoint(reactor), address.peer_id
        )
        nodelay(connection)
        await client.reserve(connection)
        return {"peer": key.peer_id(), "tcp_port": port.getHost().port}

    def expect(n: int) -> None:
        state["expect"] = n

    from twisted.internet.defer import Deferred

    reactor_worker(
        conn,
        {
            "reserve": lambda a: Deferred.fromCoroutine(reserve(a)),
            "expect": expect,
            "cpu": c.self_cpu,
            "tcp_port": lambda: port.getHost().port,
        },
    )


def alice(conn: Any) -> None:
    """The dialling peer: pushes bytes through a circuit, or opens circuits in a loop."""
    from twisted.internet import protocol, reactor
    from twisted.internet.defer import Deferred, gatherResults
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    from rendezvous.p2p.host import Host
    from rendezvous.p2p.keys import PrivateKey
    from rendezvous.p2p.stream import StreamProtocol
    from rendezvous.p2p.transport import TCPAddress
    from rendezvous.relay import client

    host = Host(PrivateKey.generate(), reactor)
    relays: dict[str, Any] = {}
    """Alice's connection to each relay (all of them at once)."""
    payload = bytes(range(256)) * (CHUNK // 256)

    class Sender(StreamProtocol):
        def __init__(self, size: int) -> None:
            self.left = size
            self.paused = False
            self.done: Deferred[None] = Deferred()

        def push(self) -> None:
            while self.left > 0 and not self.paused:
                n = min(CHUNK, self.left)
                self.left -= n
                self.stream.write(payload[:n])

        def pause_writing(self) -> None:
            self.paused = True

        def resume_writing(self) -> None:
            self.paused = False
            self.push()

        def data_received(self, data: bytes) -> None:
            if not self.done.called:
                self.done.callback(None)

    class TcpSender(protocol.Protocol):
        def __init__(self) -> None:
            self.done: Deferred[None] = Deferred()

        def dataReceived(self, data: bytes) -> None:
            if not self.done.called:
                self.done.callback(None)

    async def dial(address_text: str) -> None:
        if address_text in relays:
            relays.pop(address_text).close()
        address = TCPAddress.parse(address_text)
        relays[address_text] = await host.dial(address.client_endpoint(reactor), address.peer_id)
        nodelay(relays[address_text])

    async def throughput(relay: str, peer: bytes, size: int) -> dict:
        t0, cpu0 = time.monotonic(), c.self_cpu()
        circuit = await client.connect(relays[relay], peer)
        sender = Sender(size)
        circuit.attach(sender)
        sender.push()
        await sender.done
        result = {"seconds": time.monotonic() - t0, "cpu": c.self_cpu() - cpu0}
        circuit.stream.close()
        return result

    async def tcp_throughput(port: int, size: int) -> dict:
        t0, cpu0 = time.monotonic(), c.self_cpu()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        sender = await connectProtocol(endpoint, TcpSender())
        for offset in range(0, size, CHUNK):
            sender.transport.write(payload[: min(CHUNK, size - offset)])
        await sender.done
        result = {"seconds": time.monotonic() - t0, "cpu": c.self_cpu() - cpu0}
        sender.transport.loseConnection()
        return result

    async def circuits(
        relay: str | None, target: Any, parallel: int, t_start: float, t_end: float
    ) -> dict:
        """Open circuits through ``relay`` (or TCP connections, ``target`` a port) back
        to back in ``parallel`` loops; count those established between the two marks."""
        counts = {"all": 0}
        marks: dict[str, tuple[int, float, float]] = {}

        async def loop() -> None:
            while "end" not in marks:
                if isinstance(target, int):
                    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", target)
                    p = await connectProtocol(endpoint, protocol.Protocol())
                    p.transport.loseConnection()
                else:
                    circuit = await client.connect(relays[relay], target)
                    circuit.stream.close()
                counts["all"] += 1

        def mark(name: str) -> None:
            marks[name] = (counts["all"], time.monotonic(), c.self_cpu())

        reactor.callLater(max(0.0, t_start - time.time()), mark, "start")
        reactor.callLater(max(0.0, t_end - time.time()), mark, "end")
        await gatherResults(
            [Deferred.fromCoroutine(loop()) for _ in range(parallel)], consumeErrors=True
        )
        (n0, t0, cpu0), (n1, t1, cpu1) = marks["start"], marks["end"]
        return {"count": n1 - n0, "seconds": t1 - t0, "cpu": cpu1 - cpu0}

    def run(fn: Any) -> Any:
        return lambda *a: Deferred.fromCoroutine(fn(*a))

    reactor_worker(
        conn,
        {
            "dial": run(dial),
            "throughput": run(throughput),
            "tcp_throughput": run(tcp_throughput),
            "circuits": run(circuits),
        },
    )


def steal_softirq() -> tuple[float, float]:
    """CPU seconds the machine spent stolen by the hypervisor and in softirq so far."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[7]) / tick, int(fields[6]) / tick


def stop_relay(relay: P2PProcess, profile: str | None) -> None:
    """Kill the relay, or let a profiled one write its stats (SIGTERM) first."""
    if profile and relay.proc.poll() is None:
        relay.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            relay.proc.wait(240)
    relay.stop()


class Relay:
    """One relay under test (None for raw TCP), with bob reserved on it and alice connected."""

    def __init__(self, kind: str, bob_w: c.Worker, alice_w: c.Worker, profile: str | None = None):
        self.kind = kind
        self.profile = profile
        self.process = None if kind == "tcp" else start_relay(kind, profile)
        self.target: Any = None
        if self.process is not None:
            bob_w.send("reserve", self.process.address)
            self.target = bob_w.recv(60)["peer"]
            alice_w.send("dial", self.process.address)
            alice_w.recv(60)

    def stop(self) -> None:
        if self.process is not None:
            stop_relay(self.process, self.profile)


def measure(relay: Relay, args: Any, bob_w: c.Worker, alice_w: c.Worker) -> dict:
    """One round of every phase against ``relay``."""
    kind, process = relay.kind, relay.process
    address = process.address if process is not None else None
    size = int(args.megabytes * 2**20)
    out: dict[str, Any] = {"relay": kind}
    phases: list[tuple[str, tuple]] = [("throughput", ())]
    phases += [(f"circuits_{n}", (n,)) for n in (1, args.parallel)]
    for name, extra in phases:
        relay_cpu0 = process.cpu() if process else 0.0
        all0 = c.system_cpu()
        steal0, softirq0 = steal_softirq()
        bob_w.send("cpu")
        bob0 = bob_w.recv()
        if name == "throughput":
            bob_w.send("expect", size)
            bob_w.recv()
            if kind == "tcp":
                alice_w.send("tcp_throughput", args.tcp_port, size)
            else:
                alice_w.send("throughput", address, relay.target, size)
            r = alice_w.recv(args.timeout)
            value = size / r["seconds"] / 2**20
            seconds = r["seconds"]
        else:
            bob_w.send("expect", 0)
            bob_w.recv()
            t_start = time.time() + 0.3
            t_end = t_start + args.seconds
            tgt = args.tcp_port if kind == "tcp" else relay.target
            alice_w.send("circuits", address, tgt, extra[0], t_start, t_end)
            r = alice_w.recv(args.seconds + 60)
            value = r["count"] / r["seconds"]
            seconds = args.seconds + 0.3
        bob_w.send("cpu")
        bob1 = bob_w.recv()
        relay_cpu = (process.cpu() - relay_cpu0) if process else 0.0
        gen = (bob1 - bob0) + r["cpu"]
        out[name] = value
        out[f"{name}_relay_cpu"] = relay_cpu / seconds
        out[f"{name}_gen_cpu"] = gen / seconds
        out[f"{name}_others_cpu"] = max(0.0, c.system_cpu() - all0 - relay_cpu - gen) / seconds
        steal1, softirq1 = steal_softirq()
        out[f"{name}_steal_cpu"] = (steal1 - steal0) / seconds
        out[f"{name}_softirq_cpu"] = (softirq1 - softirq0) / seconds
        if process is not None:
            process.check_alive()
    return out


PHASES = ("throughput", "circuits_1", "circuits_p")


def main(args: Any) -> int:
    if args.quick:
        args.megabytes, args.seconds, args.runs = 2, 0.5, 1
    kinds = [k for k in args.servers.split(",") if k]
    if "js" in kinds and (why := node_modules_missing(JS_RELAY)):
        print(f"(js baseline skipped: {why})", file=sys.stderr)
        kinds.remove("js")
    bob_w, alice_w = c.Worker(bob), c.Worker(alice)
    bob_w.recv()
    alice_w.recv()
    samples: dict[str, list[dict]] = {kind: [] for kind in kinds}
    relays: list[Relay] = []
    try:
        bob_w.send("tcp_port")
        args.tcp_port = bob_w.recv()
        # Every relay runs from the start (an idle one costs nothing) and the rounds
        # take them in turn: a noisy spell of the machine falls on all of them alike.
        for kind in kinds:
            relays.append(Relay(kind, bob_w, alice_w))
        for _ in range(args.runs):
            for relay in relays:
                samples[relay.kind].append(measure(relay, args, bob_w, alice_w))
        if args.profile:
            path = os.path.abspath(args.profile)
            if os.path.exists(path):
                os.unlink(path)
            profiled = Relay("rendezvous", bob_w, alice_w, profile=path)
            relays.append(profiled)
            for _ in range(args.runs):
                measure(profiled, args, bob_w, alice_w)
    finally:
        for relay in relays:
            relay.stop()
        bob_w.stop()
        alice_w.stop()
    return report(args, kinds, samples)


def report(args: Any, kinds: list[str], samples: dict[str, list[dict]]) -> int:
    rename = {f"circuits_{args.parallel}": "circuits_p"}
    for rs in samples.values():
        for r in rs:
            for k in list(r):
                for old, new in rename.items():
                    if k.startswith(old):
                        r[new + k[len(old) :]] = r.pop(k)
    keys = [k for k in samples[kinds[0]][0] if k != "relay"]
    med = {k: {m: c.median([r[m] for r in rs]) for m in keys} for k, rs in samples.items()}
    ours, js = med.get("rendezvous"), med.get("js")
    names = {"rendezvous": "ours", "js": "js-libp2p", "tcp": "raw loopback TCP"}
    labels = {
        "throughput": f"MiB/s through one circuit ({args.megabytes:g} MiB)",
        "circuits_1": "circuits/s, one at a time",
        "circuits_p": f"circuits/s, {args.parallel} in parallel",
    }
    rows = []
    for phase, label in labels.items():
        for kind in kinds:
            m = med[kind]
            ratio = ours[phase] / js[phase] if ours and js else float("nan")
            verdict = ""
            if kind == "rendezvous" and js:
                verdict = f">= {args.target:g}x: " + ("met" if ratio >= args.target else "MISSED")
            rows.append(
                [
                    label,
                    names[kind],
                    m[phase],
                    f"{m[f'{phase}_relay_cpu']:.0%}" if kind != "tcp" else "",
                    f"{m[f'{phase}_gen_cpu']:.0%}",
                    f"{m[f'{phase}_others_cpu']:.0%}",
                    ratio if kind == "rendezvous" else "",
                    verdict,
                ]
            )
    print(
        c.table(
            f"Scenario 6: circuit relay v2, the same two peers (our client code, 2 generator "
            f"processes), median of {args.runs} run(s), circuits counted over "
            f"{args.seconds:g} s; raw TCP is the ceiling (TCP connections/s for circuits)",
            [
                "measure",
                "relay",
                "value",
                "relay CPU",
                "peers' CPU",
                "other processes' CPU",
                "ours/js",
                "target",
            ],
            rows,
        )
    )
    c.write_json(
        args.json,
        {"scenario": "relay_path", "args": vars(args), "median": med, "samples": samples},
    )
    return 0


if __name__ == "__main__":
    p = c.base_parser(__doc__, timeout=600)
    p.set_defaults(servers="rendezvous,js,tcp")
    p.add_argument("--megabytes", type=float, default=64, help="MiB through one circuit")
    p.add_argument("--seconds", type=float, default=3.0, help="per circuits measurement")
    p.add_argument("--parallel", type=int, default=10, help="circuits opened at once")
    p.add_argument("--target", type=float, default=2.0, help="ours/js on every measure")
    c.main_wrapper(main, p.parse_args())
