"""Scenario 5: REGISTER and DISCOVER per second over `/rendezvous/1.0.0` (Noise, yamux).

Our daemon (``--p2p-listen``) against the js-libp2p rendezvous server
`@canvas-js/libp2p-rendezvous` (``bench/js/canvas_server.mjs``: js-libp2p 2.x, in-memory,
its connection manager's 5-connections-per-second-per-host limit raised), both pinned to
CPU 0 and driven by the same load generator: Python processes pinned to the other CPU, each
running our own libp2p stack (Noise, yamux) with signed peer records sealed beforehand.

For each server: ``--registrations`` peers, each its own key and signed record, connect,
REGISTER in namespace ``bench`` and disconnect (the preload; memory per stored registration
is the server's RSS growth over it divided by their number). Then ``--peers`` more peers
stay connected and, for ``--seconds`` each, pipeline ``--window`` requests on their stream:
REGISTER of their own record again (a refresh), then DISCOVER ``bench`` with limit 64 (the
js server's cap) among the ``--registrations`` held. Requests are pre-encoded frames and
replies are counted by framing, so the generator spends its CPU on Noise and yamux.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as c

JS_CANVAS = os.path.join(c.ROOT, "interop", "js-canvas")
NAMESPACE = "bench"
DISCOVER_LIMIT = 64
P2P_LISTENING = re.compile(r"listening on (/ip4/127\.0\.0\.1/tcp/\d+/p2p/\w+)")


def node_modules_missing(folder: str) -> str | None:
    """Why the js side cannot run (None when it can)."""
    import shutil

    if shutil.which("node") is None:
        return "node is not installed"
    if not os.path.isdir(os.path.join(folder, "node_modules")):
        rel = os.path.relpath(folder, c.ROOT)
        return f"{rel}/node_modules is missing: run `npm ci` in {rel}"
    return None


class P2PProcess:
    """A libp2p process under test, pinned to the server CPU; ``address`` is its /p2p addr."""

    def __init__(self, argv: list[str], cwd: str, env: dict[str, str] | None = None) -> None:
        self.proc, self.log = c.spawn_logged(argv, "bench-p2p-", cwd=cwd, env=env)
        self.address = wait_p2p(self, 30)
        import psutil

        self.ps = psutil.Process(self.proc.pid)

    def log_text(self) -> str:
        with open(self.log.name, "rb") as f:
            return f.read().decode(errors="replace")

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system

    def rss(self) -> int:
        return self.ps.memory_info().rss

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"js server exited:\n{self.log_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        if self.proc in c._children:
            c._children.remove(self.proc)


def wait_p2p(server: Any, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = P2P_LISTENING.search(server.log_text())
        if m:
            return m.group(1)
        if server.proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"no libp2p listening address:\n{server.log_text()[-2000:]}")


def js_server(script: str, cwd: str, *args: str) -> P2PProcess:
    """``bench/js/<script>`` run by node from ``cwd``, whose node_modules it imports."""
    with open(os.path.join(c.HERE, "js", script)) as f:
        code = f.read()
    return P2PProcess(["node", "--input-type=module", "-e", code, *args], cwd)


def start_server(kind: str) -> Any:
    if kind == "js":
        return js_server("canvas_server.mjs", JS_CANVAS, "/rendezvous/1.0.0")
    server = c.Server(
        "rendezvous",
        [
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/0",
            "--p2p-max-connections",
            "1000000",
            "--p2p-max-connections-per-ip",
            "1000000",
        ],
    )
    server.address = wait_p2p(server, 30)
    return server


# -- the load generator: a Twisted reactor in a forked process, commands from a thread -----


def nodelay(connection: Any) -> Any:
    """TCP_NODELAY on a connection of the generator's peers (our stack leaves Nagle on)."""
    transport = getattr(connection, "transport", None)
    if transport is not None and hasattr(transport, "setTcpNoDelay"):
        transport.setTcpNoDelay(True)
    return connection


def reactor_worker(conn: Any, handlers: dict[str, Any]) -> None:
    """Run a reactor; each command ``(name, *args)`` calls ``handlers[name](*args)`` in it
    (a value or a Deferred) and sends back the result."""
    import traceback

    from twisted.internet import reactor
    from twisted.internet.defer import maybeDeferred

    def dispatch(cmd: tuple) -> None:
        d = maybeDeferred(handlers[cmd[0]], *cmd[1:])
        d.addCallbacks(conn.send, lambda f: conn.send(("error", f.getTraceback())))

    def read() -> None:
        while True:
            try:
                cmd = conn.recv()
            except EOFError:
                cmd = ("quit",)
            if cmd[0] == "quit":
                reactor.callFromThread(reactor.stop)
                return
            reactor.callFromThread(dispatch, cmd)

    threading.Thread(target=read, daemon=True).start()
    conn.send(("ready",))
    try:
        reactor.run(installSignalHandlers=False)
    except Exception:
        conn.send(("error", traceback.format_exc()))


def _records(first: int, count: int) -> list[tuple[Any, bytes]]:
    from rendezvous.p2p.envelope import PeerRecord, seal_peer_record
    from rendezvous.p2p.keys import PrivateKey
    from tests.helpers import tcp_addr

    out = []
    for i in range(first, first + count):
        key = PrivateKey.from_seed(i.to_bytes(8, "big") * 4)
        out.append((key, seal_peer_record(key, PeerRecord(key.peer_id(), 1, (tcp_addr(i % 250),)))))
    return out


def first_frame(buf: bytes) -> bytes | None:
    """The payload of the first varint-framed message in ``buf``, once it is whole."""
    length, shift, i = 0, 0, 0
    while i < len(buf):
        b = buf[i]
        length |= (b & 0x7F) << shift
        i += 1
        if b < 0x80:
            return buf[i : i + length] if len(buf) >= i + length else None
        shift += 7
    return None


def _frame(message: Any) -> bytes:
    return c.frame(message)


def register_frame(record: bytes) -> bytes:
    from rendezvous.pb.rendezvous_pb2 import Message

    m = Message(type=Message.REGISTER)
    m.register.ns = NAMESPACE
    m.register.signedPeerRecord = record
    m.register.ttl = 7200
    return _frame(m)


def discover_frame() -> bytes:
    from rendezvous.pb.rendezvous_pb2 import Message

    m = Message(type=Message.DISCOVER)
    m.discover.ns = NAMESPACE
    m.discover.limit = DISCOVER_LIMIT
    return _frame(m)


def generator(conn: Any, first: int, preload: int, peers: int, concurrency: int) -> None:
    """Load generator for one server: ``preload`` peers register once; ``peers`` stay."""
    from twisted.internet import reactor
    from twisted.internet.defer import DeferredSemaphore, gatherResults

    from rendezvous.client.standard import open_point
    from rendezvous.p2p.host import Host
    from rendezvous.p2p.stream import StreamProtocol
    from rendezvous.p2p.transport import TCPAddress
    from rendezvous.pb.rendezvous_pb2 import Message

    once = _records(first, preload)
    kept = _records(first + preload, peers)
    state: dict[str, Any] = {}

    class Pump(StreamProtocol):
        """Keeps ``window`` pre-encoded requests in flight; counts the replies."""

        def __init__(self) -> None:
            self.counter = c.FrameCounter()
            self.request = b""
            self.sending = False
            self.inflight = 0
            self.first: bytes | None = None
            self.head = b""

        def data_received(self, data: bytes) -> None:
            if self.first is None:
                self.head += data
                self.first = first_frame(self.head)
            n = self.counter.feed(data)
            self.inflight -= n
            state["done"] += n
            if self.sending and n:
                self.stream.write(self.request * n)
                self.inflight += n
            if not self.sending and self.inflight == 0 and state["drained"] is not None:
                state["left"] -= 1
                if state["left"] == 0:
                    d, state["drained"] = state["drained"], None
                    d.callback(None)

    def dial(address: TCPAddress, key: Any) -> Any:
        d = Host(key, reactor).dial(address.client_endpoint(reactor), address.peer_id)
        return d.addCallback(nodelay)

    def preload_all(address_text: str) -> Any:
        address = TCPAddress.parse(address_text)
        sem = DeferredSemaphore(concurrency)
        t0, cpu0 = time.monotonic(), c.self_cpu()

        async def one(key: Any, record: bytes) -> None:
            connection = await dial(address, key)
            try:
                point = await open_point(connection)
                answer = await point.register(NAMESPACE, record, 7200)
                if answer.registerResponse.status != Message.OK:
                    raise RuntimeError(f"REGISTER refused: {answer.registerResponse}")
            finally:
                connection.close()

        from twisted.internet.defer import Deferred

        ds = [sem.run(lambda k=k, r=r: Deferred.fromCoroutine(one(k, r))) for k, r in once]
        return gatherResults(ds, consumeErrors=True).addCallback(
            lambda _: {"seconds": time.monotonic() - t0, "cpu": c.self_cpu() - cpu0}
        )

    def connect(address_text: str) -> Any:
        address = TCPAddress.parse(address_text)
        state["pumps"] = pumps = []
        state["connections"] = connections = []

        async def one(key: Any) -> None:
            connection = await dial(address, key)
            connections.append(connection)
            pump = Pump()
            await connection.open_stream("/rendezvous/1.0.0", pump)
            pumps.append((pump, record_of[key.peer_id()]))

        from twisted.internet.defer import Deferred

        record_of = {k.peer_id(): register_frame(r) for k, r in kept}
        sem = DeferredSemaphore(concurrency)
        ds = [sem.run(lambda k=k: Deferred.fromCoroutine(one(k))) for k, _ in kept]
        return gatherResults(ds, consumeErrors=True).addCallback(lambda _: len(pumps))

    def load(kind: str, window: int, t_start: float, t_end: float) -> Any:
        from twisted.internet.defer import Deferred

        state["done"], state["drained"], state["undrained"] = 0, None, 0
        discover = discover_frame()
        for pump, register in state["pumps"]:
            pump.request = register if kind == "register" else discover
            pump.sending, pump.first, pump.head = True, None, b""
            pump.stream.write(pump.request * window)
            pump.inflight = window
        marks: dict[str, tuple[int, float, float]] = {}
        finished: Deferred[dict] = Deferred()

        def mark(name: str) -> None:
            marks[name] = (state["done"], time.monotonic(), c.self_cpu())
            if name == "end":
                for pump, _ in state["pumps"]:
                    pump.sending = False
                state["left"] = sum(1 for p, _ in state["pumps"] if p.inflight)
                state["drained"] = d = Deferred()
                if state["left"] == 0:
                    d.callback(None)
                d.addCallback(result)
                reactor.callLater(30, give_up, d)

        def give_up(d: Deferred) -> None:
            # Replies still missing 30 s after the end mark: report what was counted.
            if state["drained"] is d:
                state["drained"] = None
                state["undrained"] = sum(1 for p, _ in state["pumps"] if p.inflight)
                d.callback(None)

        def result(_: object) -> None:
            (d0, t0, cpu0), (d1, t1, cpu1) = marks["start"], marks["end"]
            statuses = set()
            for pump, _ in state["pumps"]:
                if pump.first is not None:
                    m = Message()
                    m.ParseFromString(pump.first)
                    r = m.registerResponse if kind == "register" else m.discoverResponse
                    statuses.add(r.status)
                    if kind == "discover":
                        statuses.add(f"{len(r.registrations)} returned")
            finished.callback(
                {
                    "requests": d1 - d0,
                    "seconds": t1 - t0,
                    "cpu": cpu1 - cpu0,
                    "statuses": sorted(map(str, statuses)),
                    "undrained": state["undrained"],
                }
            )

        reactor.callLater(max(0.0, t_start - time.time()), mark, "start")
        reactor.callLater(max(0.0, t_end - time.time()), mark, "end")
        return finished

    def close() -> None:
        for connection in state.get("connections", ()):
            connection.close()

    reactor_worker(conn, {"preload": preload_all, "connect": connect, "load": load, "close": close})


def progress(text: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def measure(kind: str, args: Any, rnd: int) -> list[dict]:
    """Preload one server once, then ``args.runs`` rounds of the REGISTER and DISCOVER load."""
    server = start_server(kind)
    gens = args.generators
    workers: list[c.Worker] = []
    try:
        first = rnd * 10_000_000
        per_pre, per_peer = c.split(args.registrations, gens), c.split(args.peers, gens)
        for i in range(gens):
            workers.append(c.Worker(generator, first, per_pre[i], per_peer[i], args.concurrency))
            first += per_pre[i] + per_peer[i]
        for w in workers:
            w.recv()
        time.sleep(0.5)
        rss0 = server.rss()
        cpu0, all0 = server.cpu(), c.system_cpu()
        t0 = time.monotonic()
        pre = c.broadcast(workers, "preload", server.address, timeout=args.timeout)
        preload_s = time.monotonic() - t0
        progress(f"{kind}: {args.registrations:,} registrations preloaded in {preload_s:.1f} s")
        cpu1, all1 = server.cpu(), c.system_cpu()
        time.sleep(0.5)
        rss1 = server.rss()
        c.broadcast(workers, "connect", server.address, timeout=120)
        progress(f"{kind}: {args.peers} peers connected")
        out = {
            "server": kind,
            "registrations": args.registrations,
            "bytes_per_registration": (rss1 - rss0) / max(1, args.registrations),
            "preload_rate": args.registrations / preload_s,
            "preload_server_cpu": (cpu1 - cpu0) / preload_s,
            "preload_gen_cpu": sum(r["cpu"] for r in pre) / preload_s,
            "preload_per_cpu_second": args.registrations / max(1e-9, cpu1 - cpu0),
            "preload_others_cpu": max(
                0.0, (all1 - all0) - (cpu1 - cpu0) - sum(r["cpu"] for r in pre)
            )
            / preload_s,
        }
        samples = []
        for r in range(args.runs):
            sample = dict(out)
            try:
                load_phases(sample, server, workers, args)
            except Unanswered as e:  # it stopped answering: keep the rounds it finished
                progress(f"{kind}: round {r + 1} abandoned: {e}")
                ABANDONED.append(f"{kind}, round {r + 1} of {args.runs}: {e}")
                break
            samples.append(sample)
        c.broadcast(workers, "close")
        return samples
    finally:
        for w in workers:
            w.stop()
        server.stop()


class Unanswered(RuntimeError):
    """A load round got no OK reply: the server stopped answering."""


ABANDONED: list[str] = []
"""Rounds a server did not finish, said under the table."""


def load_phases(out: dict, server: Any, workers: list[c.Worker], args: Any) -> None:
    kind = out["server"]
    for op in ("register", "discover"):
        t_start = time.time() + args.warmup
        t_end = t_start + args.seconds
        for w in workers:
            w.send("load", op, args.window, t_start, t_end)
        time.sleep(max(0.0, t_start - time.time()))
        cpu0, all0 = server.cpu(), c.system_cpu()
        time.sleep(max(0.0, t_end - time.time()))
        cpu1, all1 = server.cpu(), c.system_cpu()
        results = [w.recv(args.seconds + 90) for w in workers]
        server.check_alive()
        seconds = c.median([r["seconds"] for r in results])
        gen_cpu = sum(r["cpu"] for r in results)
        statuses = sorted({s for r in results for s in r["statuses"]})
        if "0" not in statuses:  # Message.OK
            raise Unanswered(f"{kind} {op}: replies were not OK: {statuses}")
        out[f"{op}_rate"] = sum(r["requests"] for r in results) / seconds
        out[f"{op}_server_cpu"] = (cpu1 - cpu0) / args.seconds
        out[f"{op}_gen_cpu"] = gen_cpu / seconds
        out[f"{op}_others_cpu"] = max(0.0, (all1 - all0) - (cpu1 - cpu0) - gen_cpu) / (args.seconds)
        out[f"{op}_statuses"] = statuses
        out[f"{op}_undrained"] = sum(r["undrained"] for r in results)
        progress(f"{kind}: {op} {out[f'{op}_rate']:,.0f}/s ({out[f'{op}_undrained']} undrained)")
        out[f"{op}_per_cpu_second"] = out[f"{op}_rate"] / max(1e-9, out[f"{op}_server_cpu"])


MEDIANS = (
    "bytes_per_registration",
    "preload_rate",
    "preload_per_cpu_second",
    "preload_server_cpu",
    "preload_gen_cpu",
    "preload_others_cpu",
    "register_rate",
    "register_per_cpu_second",
    "discover_per_cpu_second",
    "register_server_cpu",
    "register_gen_cpu",
    "register_others_cpu",
    "discover_rate",
    "discover_server_cpu",
    "discover_gen_cpu",
    "discover_others_cpu",
)


def main(args: Any) -> int:
    if args.quick:
        args.registrations, args.peers, args.window = 60, 8, 4
        args.seconds, args.warmup, args.runs = 0.5, 0.3, 1
    kinds = [k for k in args.servers.split(",") if k]
    if "js" in kinds and (why := node_modules_missing(JS_CANVAS)):
        print(f"(js baseline skipped: {why})", file=sys.stderr)
        kinds.remove("js")
    samples: dict[str, list[dict]] = {k: [] for k in kinds}
    for kind in kinds:
        samples[kind] = measure(kind, args, kinds.index(kind))
    kinds = [k for k in kinds if samples[k]]  # a server that finished no round has no row
    med = {k: {m: c.median([r[m] for r in samples[k]]) for m in MEDIANS} for k in kinds}
    ours, js = med.get("rendezvous"), med.get("js")
    rows = []
    targets = {"register_rate": args.register_target, "discover_rate": args.discover_target}
    labels = {
        "preload_rate": "connect + REGISTER + close",
        "register_rate": "REGISTER (refresh)",
        "discover_rate": f"DISCOVER limit {DISCOVER_LIMIT}",
    }
    for metric, label in labels.items():
        op = metric.split("_")[0]
        for kind in kinds:
            m = med[kind]
            ratio = ours[metric] / js[metric] if ours and js else float("nan")
            per = f"{op}_per_cpu_second"
            cpu_ratio = ours[per] / js[per] if ours and js else float("nan")
            target = targets.get(metric)
            verdict = ""
            if kind == "rendezvous" and target and js:
                verdict = f">= {target:g}x: " + ("met" if ratio >= target else "MISSED")
                if (ratio >= target) != (cpu_ratio >= target):
                    verdict += " (per CPU-s: " + ("met" if cpu_ratio >= target else "missed") + ")"
            rows.append(
                [
                    label,
                    "ours" if kind == "rendezvous" else "js (canvas)",
                    m[metric],
                    f"{m[f'{op}_server_cpu']:.0%}",
                    m[f"{op}_per_cpu_second"],
                    f"{m[f'{op}_gen_cpu']:.0%}",
                    f"{m[f'{op}_others_cpu']:.0%}",
                    ratio if kind == "rendezvous" else "",
                    cpu_ratio if kind == "rendezvous" else "",
                    verdict,
                ]
            )
    for kind in kinds:
        rows.append(
            [
                "memory per registration (B)",
                "ours" if kind == "rendezvous" else "js (canvas)",
                med[kind]["bytes_per_registration"],
                "",
                "",
                "",
                "",
                ours["bytes_per_registration"] / js["bytes_per_registration"]
                if kind == "rendezvous" and ours and js and js["bytes_per_registration"] > 0
                else "",
                "",
                "",
            ]
        )
    print(
        c.table(
            f"Scenario 5: /rendezvous/1.0.0 over Noise + yamux, {args.registrations:,} "
            f"registrations held, {args.peers} connected peers x {args.window} in flight, "
            f"{args.generators} generator process(es); one preload per server, then median of "
            f"{args.runs} round(s) x {args.seconds:g} s",
            [
                "operation",
                "server",
                "per second",
                "server CPU",
                "per server CPU-s",
                "generator CPU",
                "other processes' CPU",
                "ours/js",
                "ours/js per CPU-s",
                "target",
            ],
            rows,
        )
    )
    for line in ABANDONED:
        print(f"(medians of the rounds finished; abandoned: {line})")
    c.write_json(
        args.json,
        {
            "scenario": "libp2p_path",
            "args": vars(args),
            "median": med,
            "samples": samples,
            "abandoned": ABANDONED,
        },
    )
    return 0


if __name__ == "__main__":
    p = c.base_parser(__doc__, timeout=1200, profile=False)
    p.set_defaults(servers="rendezvous,js")
    p.add_argument("--registrations", type=int, default=10_000, help="registrations held")
    p.add_argument("--peers", type=int, default=50, help="connected peers driving the load")
    p.add_argument("--window", type=int, default=8, help="requests in flight per peer")
    p.add_argument("--concurrency", type=int, default=32, help="dials in flight per generator")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--generators", type=int, default=2, help="load-generator processes")
    p.add_argument("--register-target", type=float, default=5.0, help="ours/js REGISTER")
    p.add_argument("--discover-target", type=float, default=50.0, help="ours/js DISCOVER")
    c.main_wrapper(main, p.parse_args())
