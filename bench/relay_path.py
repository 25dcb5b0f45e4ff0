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

``--generator js`` (or ``both``, the default) has js-libp2p 3.x peers with the circuit relay
transport do the same (``bench/js/relay_load.mjs``, bob and alice each a node process pinned
to the generators' CPU, with identify, which the transport requires): bob reserves by
listening on the relay's ``/p2p-circuit`` address, alice dials his circuit address, which in
js-libp2p is a connection of its own through the circuit (CONNECT, then Noise and yamux
end to end, then identify), opens a stream and sends the bytes; a circuit is counted when
that connection is up, then alice closes it (``--parallel`` alice nodes for circuits in
parallel: js-libp2p keeps one connection per peer). Every measure has the relay's and the
peers' CPU per operation (per MiB, per circuit) beside it, and which side set the pace.
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
from libp2p_path import (
    JSWorker,
    P2PProcess,
    js_server,
    node_modules_missing,
    nodelay,
    reactor_worker,
    server_cpu,
)

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


class PyPeers:
    """Bob and alice in our two generator processes (our client code)."""

    load = "py"

    def __init__(self) -> None:
        self.bob, self.alice = c.Worker(bob), c.Worker(alice)
        self.bob.recv()
        self.alice.recv()
        self.bob.send("tcp_port")
        self.tcp_port = self.bob.recv()

    def attach(self, relay: Relay) -> None:
        """Bob reserves on ``relay``, alice connects to it."""
        assert relay.process is not None
        self.bob.send("reserve", relay.process.address)
        relay.target[self.load] = self.bob.recv(60)["peer"]
        self.alice.send("dial", relay.process.address)
        self.alice.recv(60)

    def bob_cpu(self) -> float:
        self.bob.send("cpu")
        return float(self.bob.recv())

    def expect(self, size: int) -> None:
        self.bob.send("expect", size)
        self.bob.recv()

    def throughput(self, relay: Relay, size: int, timeout: float) -> dict:
        if relay.process is None:
            self.alice.send("tcp_throughput", self.tcp_port, size)
        else:
            self.alice.send("throughput", relay.process.address, relay.target[self.load], size)
        return dict(self.alice.recv(timeout))

    def circuits(self, relay: Relay, parallel: int, t_start: float, t_end: float) -> dict:
        address = relay.process.address if relay.process is not None else None
        target = self.tcp_port if relay.process is None else relay.target[self.load]
        self.alice.send("circuits", address, target, parallel, t_start, t_end)
        return dict(self.alice.recv(t_end - time.time() + 60))

    def stop(self) -> None:
        self.bob.stop()
        self.alice.stop()


class JSPeers:
    """Bob and alice as js-libp2p 3.x nodes with the circuit relay transport
    (``bench/js/relay_load.mjs``), one node process each."""

    load = "js"

    def __init__(self, parallel: int) -> None:
        self.parallel = parallel
        self.bob = JSWorker("relay_load.mjs", JS_RELAY)
        self.alice = JSWorker("relay_load.mjs", JS_RELAY)
        for w in (self.bob, self.alice):
            w.command("cpu", timeout=60)  # node started and its modules loaded

    def attach(self, relay: Relay) -> None:
        assert relay.process is not None
        address = relay.process.address
        relay.target[self.load] = self.bob.command("reserve", 60, relay=address)["circuit"]
        self.alice.command("dial", 60, relay=address, nodes=self.parallel)

    def bob_cpu(self) -> float:
        return float(self.bob.command("cpu")["cpu"])

    def expect(self, size: int) -> None:
        self.bob.command("expect", bytes=size)

    def throughput(self, relay: Relay, size: int, timeout: float) -> dict:
        assert relay.process is not None
        return self.alice.command(
            "throughput",
            timeout,
            relay=relay.process.address,
            circuit=relay.target[self.load],
            bytes=size,
        )

    def circuits(self, relay: Relay, parallel: int, t_start: float, t_end: float) -> dict:
        assert relay.process is not None
        return self.alice.command(
            "circuits",
            t_end - time.time() + 60,
            relay=relay.process.address,
            circuit=relay.target[self.load],
            parallel=parallel,
            start=t_start,
            end=t_end,
        )

    def stop(self) -> None:
        self.bob.stop()
        self.alice.stop()


Peers = PyPeers | JSPeers
LOADS = {"py": "our Python clients", "js": "js-libp2p clients"}
"""The load generators, as the table names them."""


class Relay:
    """One relay under test (None for raw TCP), with every load's bob reserved on it and
    alice connected; ``target``: what each load's alice dials (bob's id, or his circuit
    address)."""

    def __init__(self, kind: str, peers: list[Peers], profile: str | None = None):
        self.kind = kind
        self.profile = profile
        self.process = None if kind == "tcp" else start_relay(kind, profile)
        self.target: dict[str, Any] = {}
        if self.process is not None:
            for p in peers:
                p.attach(self)

    def stop(self) -> None:
        if self.process is not None:
            stop_relay(self.process, self.profile)


def measure(relay: Relay, args: Any, peers: Peers) -> dict:
    """One round of every phase against ``relay``, ``peers`` the load."""
    kind, process = relay.kind, relay.process
    size = int(args.megabytes * 2**20)
    out: dict[str, Any] = {"relay": kind, "load": peers.load}
    phases: list[tuple[str, tuple]] = [("throughput", ())]
    phases += [(f"circuits_{n}", (n,)) for n in (1, args.parallel)]
    for name, extra in phases:
        relay_cpu0 = server_cpu(process) if process else 0.0
        all0 = c.system_cpu()
        steal0, softirq0 = steal_softirq()
        bob0 = peers.bob_cpu()
        if name == "throughput":
            peers.expect(size)
            r = peers.throughput(relay, size, args.timeout)
            value = size / r["seconds"] / 2**20
            ops = size / 2**20
            seconds = r["seconds"]
        else:
            peers.expect(0)
            t_start = time.time() + 0.3
            t_end = t_start + args.seconds
            r = peers.circuits(relay, extra[0], t_start, t_end)
            value = r["count"] / r["seconds"]
            ops = r["count"]
            seconds = args.seconds + 0.3
        bob1 = peers.bob_cpu()
        relay_cpu = (server_cpu(process) - relay_cpu0) if process else 0.0
        gen = (bob1 - bob0) + r["cpu"]
        out[name] = value
        out[f"{name}_relay_cpu"] = relay_cpu / seconds
        out[f"{name}_gen_cpu"] = gen / seconds
        # per operation (a MiB, or a circuit): CPU over the whole phase, set-up included
        out[f"{name}_relay_us"] = relay_cpu / ops * 1e6 if ops and process else float("nan")
        out[f"{name}_gen_us"] = gen / ops * 1e6 if ops else float("nan")
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
    loads = ["py", "js"] if args.generator == "both" else [args.generator]
    kinds = [k for k in args.servers.split(",") if k]
    why = node_modules_missing(JS_RELAY)
    if why and "js" in kinds:
        print(f"(js baseline skipped: {why})", file=sys.stderr)
        kinds.remove("js")
    if why and "js" in loads:
        print(f"(js-libp2p clients skipped: {why})", file=sys.stderr)
        loads.remove("js")
    if "py" not in loads and "tcp" in kinds:
        kinds.remove("tcp")  # raw TCP is between our generator's processes
    pairs = [(k, g) for k in kinds for g in loads if g == "py" or k != "tcp"]
    samples: dict[tuple[str, str], list[dict]] = {pair: [] for pair in pairs}
    peers: dict[str, Peers] = {}
    relays: list[Relay] = []
    try:
        for load in loads:
            peers[load] = PyPeers() if load == "py" else JSPeers(args.parallel)
        # Every relay runs from the start (an idle one costs nothing) and the rounds
        # take them in turn: a noisy spell of the machine falls on all of them alike.
        for kind in kinds:
            relays.append(Relay(kind, list(peers.values())))
        for _ in range(args.runs):
            for relay in relays:
                for load, p in peers.items():
                    if (relay.kind, load) in samples:
                        samples[(relay.kind, load)].append(measure(relay, args, p))
        if args.profile and "py" in peers:
            path = os.path.abspath(args.profile)
            if os.path.exists(path):
                os.unlink(path)
            profiled = Relay("rendezvous", [peers["py"]], profile=path)
            relays.append(profiled)
            for _ in range(args.runs):
                measure(profiled, args, peers["py"])
    finally:
        for relay in relays:
            relay.stop()
        for p in peers.values():
            p.stop()
    return report(args, pairs, samples)


def pace(relay_cpu: float, gen_cpu: float) -> str:
    """Which side set the pace: the one nearer a full share of its CPUs (the relay: one
    CPU; the two peers: `c.CLIENT_CPUS`), if it had at least half; else neither."""
    s, g = relay_cpu, gen_cpu / len(c.CLIENT_CPUS)
    if max(s, g) < 0.5:
        return "neither"
    return "relay" if s >= g else "peers"


def report(args: Any, pairs: list[tuple[str, str]], samples: dict[tuple[str, str], list]) -> int:
    rename = {f"circuits_{args.parallel}": "circuits_p"}
    for rs in samples.values():
        for r in rs:
            for k in list(r):
                for old, new in rename.items():
                    if k.startswith(old):
                        r[new + k[len(old) :]] = r.pop(k)
    keys = [k for k in samples[pairs[0]][0] if k not in ("relay", "load")]
    med = {pair: {m: c.median([r[m] for r in samples[pair]]) for m in keys} for pair in pairs}
    names = {"rendezvous": "ours", "js": "js-libp2p", "tcp": "raw loopback TCP"}
    labels = {
        "throughput": f"MiB/s through one circuit ({args.megabytes:g} MiB)",
        "circuits_1": "circuits/s, one at a time",
        "circuits_p": f"circuits/s, {args.parallel} in parallel",
    }
    rows = []
    for phase, label in labels.items():
        for kind, load in pairs:
            m = med[(kind, load)]
            ours, js = med.get(("rendezvous", load)), med.get(("js", load))
            ratio = ours[phase] / js[phase] if ours and js and js[phase] else float("nan")
            per = f"{phase}_relay_us"
            cpu_ratio = js[per] / ours[per] if ours and js and ours[per] else float("nan")
            verdict = ""
            if kind == "rendezvous" and load == "py" and js:
                verdict = f">= {args.target:g}x: " + ("met" if ratio >= args.target else "MISSED")
            relay = kind != "tcp"
            rows.append(
                [
                    label,
                    names[kind],
                    LOADS[load],
                    m[phase],
                    f"{m[f'{phase}_relay_cpu']:.0%}" if relay else "",
                    m[f"{phase}_relay_us"] if relay else "",
                    f"{m[f'{phase}_gen_cpu']:.0%}",
                    m[f"{phase}_gen_us"],
                    f"{m[f'{phase}_others_cpu']:.0%}",
                    pace(m[f"{phase}_relay_cpu"], m[f"{phase}_gen_cpu"]) if relay else "",
                    ratio if kind == "rendezvous" else "",
                    cpu_ratio if kind == "rendezvous" else "",
                    verdict,
                ]
            )
    loads = " and ".join(dict.fromkeys(LOADS[g] for _, g in pairs))
    print(
        c.table(
            f"Scenario 6: circuit relay v2, the same two peers for every relay (load: {loads}; "
            f"2 generator processes each), median of {args.runs} run(s), circuits counted over "
            f"{args.seconds:g} s; raw TCP is the ceiling (TCP connections/s for circuits); "
            f"µs/op: CPU time per MiB (throughput) or per circuit",
            [
                "measure",
                "relay",
                "load",
                "value",
                "relay CPU",
                "relay µs/op",
                "peers' CPU",
                "peers' µs/op",
                "other processes' CPU",
                "pace",
                "ours/js",
                "ours/js per CPU-s",
                "target",
            ],
            rows,
        )
    )
    c.write_json(
        args.json,
        {
            "scenario": "relay_path",
            "args": vars(args),
            "median": {f"{k},{g}": med[(k, g)] for k, g in pairs},
            "samples": {f"{k},{g}": samples[(k, g)] for k, g in pairs},
        },
    )
    return 0


if __name__ == "__main__":
    p = c.base_parser(__doc__, timeout=900)
    p.set_defaults(servers="rendezvous,js,tcp")
    p.add_argument("--megabytes", type=float, default=64, help="MiB through one circuit")
    p.add_argument("--seconds", type=float, default=3.0, help="per circuits measurement")
    p.add_argument("--parallel", type=int, default=10, help="circuits opened at once")
    p.add_argument("--target", type=float, default=2.0, help="ours/js on every measure")
    p.add_argument(
        "--generator",
        choices=("py", "js", "both"),
        default="both",
        help="the peers: our Python client code, js-libp2p's (the circuit relay transport), "
        "or both",
    )
    c.main_wrapper(main, p.parse_args())
