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

``--generator js`` (or ``both``, the default) drives each server with js-libp2p clients as
well (``bench/js/rendezvous_load.mjs``, ``--js-generators`` node processes pinned to the
generators' CPU): js-libp2p 2.x nodes, each its own key, with the rendezvous client of
`@canvas-js/libp2p-rendezvous` (no identify and no connection monitor pings, as our
generator). After our generator's rounds, ``--js-registrations`` more peers connect,
REGISTER through the client and close (the client seals its record each time; a node per
peer), then ``--peers`` js peers stay connected and hold ``--js-window`` streams each (1),
on which the client sends one request after the other: REGISTER (a record sealed again
each time: new bytes), then DISCOVER limit 64, whose records the client opens, verifies
and stores. The preload of ``--registrations`` is
our generator's in every case (a js peer's new connection costs its generator ~15 ms).
Every rate has the server's and the generators' CPU per operation beside it, and which of
the two set the pace.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import subprocess
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


def process_cpu(pid: int) -> float:
    """CPU seconds every thread of ``pid`` has run so far, to the microsecond: the sum of
    their ``se.sum_exec_runtime`` (/proc/PID/task/*/sched, in ms); /proc/PID/stat (psutil)
    counts in 10 ms ticks, too coarse for the few ms a server spends in a window of a slow
    load. Without /proc/PID/sched, psutil's figure."""
    total, found = 0.0, False
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        tasks = []
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/sched") as f:
                for line in f:
                    if line.startswith("se.sum_exec_runtime"):
                        total += float(line.split(":")[1]) / 1e3
                        found = True
                        break
        except (OSError, ValueError):
            pass  # a thread that ended meanwhile
    if found:
        return total
    import psutil

    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def workers_cpu(workers: list) -> float:
    """`process_cpu` of load-generator processes (`c.Worker` or `JSWorker`) together."""
    return sum(process_cpu(w.proc.pid) for w in workers)


def server_cpu(server: Any) -> float:
    """`process_cpu` of a server under test (ours, a `c.Server`, or a `P2PProcess`)."""
    return process_cpu(server.proc.pid)


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


def _client_process() -> None:
    """In a js generator before it runs node: its descriptor limit raised, and pinned to
    the generators' CPUs (before exec, so every thread node starts is pinned too)."""
    c.raise_fd_limit()
    c.pin(c.CLIENT_CPUS)


class JSWorker:
    """A js load generator (``bench/js/<script>`` run by node from ``cwd``), pinned to the
    generators' CPUs; one JSON command a line on its stdin, one JSON answer a line back."""

    def __init__(self, script: str, cwd: str, *args: str) -> None:
        import tempfile

        import psutil

        with open(os.path.join(c.HERE, "js", script)) as f:
            code = f.read()
        self.stderr = tempfile.NamedTemporaryFile(prefix="bench-js-load-", suffix=".log")  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["node", "--input-type=module", "-e", code, *args],
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            preexec_fn=_client_process,
        )
        c._children.append(self.proc)
        self.ps = psutil.Process(self.proc.pid)
        self.buffer = b""

    def send_json(self, cmd: str, **fields: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, **fields}).encode() + b"\n")
        self.proc.stdin.flush()

    def recv_json(self, timeout: float = 120) -> dict:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise c.BenchTimeout("js load generator did not answer")
            data = os.read(fd, 65536)
            if not data:
                raise RuntimeError(f"js load generator exited:\n{self.log_tail()}")
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"js load generator failed: {reply['error']}")
        return reply

    def command(self, cmd: str, timeout: float = 120, **fields: Any) -> dict:
        self.send_json(cmd, **fields)
        return self.recv_json(timeout)

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system

    def log_tail(self) -> str:
        with open(self.stderr.name, "rb") as f:
            return f.read().decode(errors="replace")[-2000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.send_json("quit")
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc in c._children:
            c._children.remove(self.proc)


class JSGenerator(JSWorker):
    """js-libp2p peers with canvas's rendezvous client (``rendezvous_load.mjs``), driven
    with `generator`'s commands: preload, connect, load, close."""

    def __init__(self, preload: int, peers: int, concurrency: int, streams: int) -> None:
        super().__init__("rendezvous_load.mjs", JS_CANVAS, "/rendezvous/1.0.0")
        self.preload, self.peers, self.concurrency = preload, peers, concurrency
        self.streams = streams
        """Streams a peer sends on, one request in flight on each (the client's way), in
        place of `generator`'s window of requests."""
        self.address = ""
        self.last = ""

    def send(self, cmd: str, *args: Any) -> None:
        self.last = cmd
        if cmd == "preload":
            self.send_json(cmd, server=args[0], count=self.preload, concurrency=self.concurrency)
        elif cmd == "connect":
            self.address = args[0]
            self.send_json(cmd, server=args[0], peers=self.peers)
        elif cmd == "load":
            op, _window, t_start, t_end = args
            self.send_json(
                cmd, server=self.address, op=op, streams=self.streams, start=t_start, end=t_end
            )
        else:
            self.send_json(cmd)

    def recv(self, timeout: float = 120) -> Any:
        reply = self.recv_json(timeout)
        if self.last == "preload" and reply["errors"]:
            raise RuntimeError(f"js peers' REGISTER failed: {reply['errors']}")
        if self.last == "connect":
            return reply["peers"]
        if self.last == "load":
            # the statuses as `generator` names them: "0" is OK
            statuses = {"0" if k == "OK" else k for k in reply["statuses"]}
            statuses |= {f"{n} returned" for n in reply["returned"]}
            return {**reply, "statuses": sorted(statuses), "undrained": 0}
        return reply


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


LOADS = {"py": "our Python clients", "js": "js-libp2p clients"}
"""The load generators, as the table names them."""


def preload_phase(out: dict, server: Any, workers: list, count: int, args: Any) -> None:
    """``count`` peers connect, REGISTER and close (split among ``workers``)."""
    cpu0, all0, gen0 = server_cpu(server), c.system_cpu(), workers_cpu(workers)
    t0 = time.monotonic()
    c.broadcast(workers, "preload", server.address, timeout=args.timeout)
    seconds = time.monotonic() - t0
    cpu1, all1, gen1 = server_cpu(server), c.system_cpu(), workers_cpu(workers)
    gen = gen1 - gen0
    used = cpu1 - cpu0
    out["preload_rate"] = count / seconds
    out["preload_server_cpu"] = used / seconds
    out["preload_gen_cpu"] = gen / seconds
    out["preload_per_cpu_second"] = count / max(1e-9, used)
    out["preload_server_us"] = used / max(1, count) * 1e6
    out["preload_gen_us"] = gen / max(1, count) * 1e6
    out["preload_others_cpu"] = max(0.0, (all1 - all0) - used - gen) / seconds
    progress(
        f"{out['server']}, {LOADS[out['load']]}: {count:,} connect + REGISTER + close "
        f"in {seconds:.1f} s"
    )


def idle_cpu(server: Any, seconds: float) -> float:
    """The server's CPU (of one core) over ``seconds`` with nothing sent, ``seconds`` after
    the peers connected (a js server identifies them for a second or two): what it spends
    anyway, which a per-operation figure at a low rate carries too."""
    time.sleep(seconds)
    cpu0, t0 = server_cpu(server), time.monotonic()
    time.sleep(seconds)
    return (server_cpu(server) - cpu0) / (time.monotonic() - t0)


def rounds(dest: list[dict], out: dict, server: Any, workers: list, args: Any) -> None:
    """``args.runs`` rounds of the REGISTER and DISCOVER load, each a sample in ``dest``."""
    kind, load = out["server"], LOADS[out["load"]]
    for r in range(args.runs):
        sample = dict(out)
        try:
            load_phases(sample, server, workers, args)
        except Unanswered as e:  # it stopped answering: keep the rounds it finished
            progress(f"{kind}, {load}: round {r + 1} abandoned: {e}")
            ABANDONED.append(f"{kind}, {load}, round {r + 1} of {args.runs}: {e}")
            break
        dest.append(sample)


def measure(kind: str, args: Any, rnd: int) -> dict[str, list[dict]]:
    """Preload one server once with our generator, then ``args.runs`` rounds of the
    REGISTER and DISCOVER load from each generator of ``args.loads`` in turn."""
    server = start_server(kind)
    gens = args.generators
    workers: list[Any] = []
    samples: dict[str, list[dict]] = {load: [] for load in args.loads}
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
        out = {"server": kind, "load": "py", "registrations": args.registrations}
        preload_phase(out, server, workers, args.registrations, args)
        time.sleep(0.5)
        out["bytes_per_registration"] = (server.rss() - rss0) / max(1, args.registrations)
        if "py" in args.loads:
            c.broadcast(workers, "connect", server.address, timeout=120)
            progress(f"{kind}, {LOADS['py']}: {args.peers} peers connected")
            out["idle_server_cpu"] = idle_cpu(server, args.idle)
            rounds(samples["py"], out, server, workers, args)
            c.broadcast(workers, "close")
        for w in workers:
            w.stop()
        if "js" in args.loads:
            js_pre = c.split(args.js_registrations, args.js_generators)
            js_peer = c.split(args.peers, args.js_generators)
            workers = [
                JSGenerator(js_pre[i], js_peer[i], args.js_concurrency, args.js_window)
                for i in range(args.js_generators)
            ]
            for w in workers:
                w.command("cpu", timeout=60)  # node started and its modules loaded
            time.sleep(0.5)
            out = {
                "server": kind,
                "load": "js",
                "registrations": args.registrations,
                "bytes_per_registration": float("nan"),
            }
            preload_phase(out, server, workers, args.js_registrations, args)
            c.broadcast(workers, "connect", server.address, timeout=120)
            progress(f"{kind}, {LOADS['js']}: {args.peers} peers connected")
            out["idle_server_cpu"] = idle_cpu(server, args.idle)
            rounds(samples["js"], out, server, workers, args)
            c.broadcast(workers, "close", timeout=60)
        return samples
    finally:
        for w in workers:
            w.stop()
        server.stop()


class Unanswered(RuntimeError):
    """A load round got no OK reply: the server stopped answering."""


ABANDONED: list[str] = []
"""Rounds a server did not finish, said under the table."""


def load_phases(out: dict, server: Any, workers: list, args: Any) -> None:
    kind, load = out["server"], LOADS[out["load"]]
    for op in ("register", "discover"):
        t_start = time.time() + args.warmup
        t_end = t_start + args.seconds
        for w in workers:
            w.send("load", op, args.window, t_start, t_end)
        time.sleep(max(0.0, t_start - time.time()))
        cpu0, all0, gen0 = server_cpu(server), c.system_cpu(), workers_cpu(workers)
        time.sleep(max(0.0, t_end - time.time()))
        cpu1, all1, gen1 = server_cpu(server), c.system_cpu(), workers_cpu(workers)
        results = [w.recv(args.seconds + 90) for w in workers]
        server.check_alive()
        seconds = c.median([r["seconds"] for r in results])
        # every generator's CPU read from outside, over the window the server's is read in
        gen_cpu = gen1 - gen0
        statuses = sorted({s for r in results for s in r["statuses"]})
        if "0" not in statuses:  # Message.OK
            raise Unanswered(f"{kind} {op}: replies were not OK: {statuses}")
        rate = sum(r["requests"] for r in results) / seconds if seconds > 0 else 0.0
        out[f"{op}_rate"] = rate
        out[f"{op}_server_cpu"] = (cpu1 - cpu0) / args.seconds
        out[f"{op}_gen_cpu"] = gen_cpu / args.seconds
        out[f"{op}_others_cpu"] = max(0.0, (all1 - all0) - (cpu1 - cpu0) - gen_cpu) / (args.seconds)
        out[f"{op}_statuses"] = statuses
        out[f"{op}_undrained"] = sum(r["undrained"] for r in results)
        progress(f"{kind}, {load}: {op} {rate:,.0f}/s ({out[f'{op}_undrained']} undrained)")
        out[f"{op}_per_cpu_second"] = rate / max(1e-9, out[f"{op}_server_cpu"])
        out[f"{op}_server_us"] = out[f"{op}_server_cpu"] / rate * 1e6 if rate else float("nan")
        out[f"{op}_gen_us"] = out[f"{op}_gen_cpu"] / rate * 1e6 if rate else float("nan")


OPS = ("preload", "register", "discover")
PER_OP = ("rate", "per_cpu_second", "server_cpu", "server_us", "gen_cpu", "gen_us", "others_cpu")
MEDIANS = (
    "bytes_per_registration",
    "idle_server_cpu",
    *(f"{op}_{m}" for op in OPS for m in PER_OP),
)


def quotient(ours: dict[str, Any] | None, js: dict[str, Any] | None, key: str) -> float:
    """ours[key] / js[key]; NaN without both, or when js's is 0."""
    if not ours or not js or not js[key]:
        return float("nan")
    return float(ours[key] / js[key])


def pace(server_cpu: float, gen_cpu: float) -> str:
    """Which side set the pace: the one nearer a full share of its CPUs (the server: one
    CPU; the generators: `c.CLIENT_CPUS`), if it had at least half; else neither."""
    s, g = server_cpu, gen_cpu / len(c.CLIENT_CPUS)
    if max(s, g) < 0.5:
        return "neither"
    return "server" if s >= g else "generator"


def main(args: Any) -> int:
    if args.quick:
        args.registrations, args.peers, args.window = 60, 8, 4
        args.seconds, args.warmup, args.runs = 0.5, 0.3, 1
        args.js_registrations, args.idle = 20, 0.3
    args.loads = ["py", "js"] if args.generator == "both" else [args.generator]
    kinds = [k for k in args.servers.split(",") if k]
    if "js" in kinds or "js" in args.loads:
        why = node_modules_missing(JS_CANVAS)
        if why and "js" in kinds:
            print(f"(js baseline skipped: {why})", file=sys.stderr)
            kinds.remove("js")
        if why and "js" in args.loads:
            print(f"(js-libp2p clients skipped: {why})", file=sys.stderr)
            args.loads.remove("js")
    samples: dict[str, dict[str, list[dict]]] = {}
    for kind in kinds:
        samples[kind] = measure(kind, args, kinds.index(kind))
    # a server and load with no round finished has no row
    pairs = [(k, g) for k in kinds for g in args.loads if samples[k][g]]
    med = {(k, g): {m: c.median([r[m] for r in samples[k][g]]) for m in MEDIANS} for k, g in pairs}
    rows = []
    targets = {"register": args.register_target, "discover": args.discover_target}
    labels = {
        "preload": "connect + REGISTER + close",
        "register": "REGISTER (refresh)",
        "discover": f"DISCOVER limit {DISCOVER_LIMIT}",
    }
    names = {"rendezvous": "ours", "js": "js (canvas)"}
    for op, label in labels.items():
        for k, g in pairs:
            m = med[(k, g)]
            ours, js = med.get(("rendezvous", g)), med.get(("js", g))
            ratio = quotient(ours, js, f"{op}_rate")
            cpu_ratio = quotient(ours, js, f"{op}_per_cpu_second")
            target = targets.get(op)
            verdict = ""
            if k == "rendezvous" and g == "py" and target and js:
                verdict = f">= {target:g}x: " + ("met" if ratio >= target else "MISSED")
                if (ratio >= target) != (cpu_ratio >= target):
                    verdict += " (per CPU-s: " + ("met" if cpu_ratio >= target else "missed") + ")"
            rows.append(
                [
                    label,
                    names[k],
                    LOADS[g],
                    m[f"{op}_rate"],
                    f"{m[f'{op}_server_cpu']:.0%}",
                    m[f"{op}_server_us"],
                    f"{m[f'{op}_gen_cpu']:.0%}",
                    m[f"{op}_gen_us"],
                    f"{m[f'{op}_others_cpu']:.0%}",
                    pace(m[f"{op}_server_cpu"], m[f"{op}_gen_cpu"]),
                    ratio if k == "rendezvous" else "",
                    cpu_ratio if k == "rendezvous" else "",
                    verdict,
                ]
            )
    mem = {k: med[(k, g)]["bytes_per_registration"] for k, g in pairs if g == "py"}
    for k, value in mem.items():
        rows.append(
            [
                "memory per registration (B)",
                names[k],
                LOADS["py"],
                value,
                *[""] * 6,
                mem["rendezvous"] / mem["js"]
                if k == "rendezvous" and "js" in mem and mem["js"] > 0
                else "",
                "",
                "",
            ]
        )
    loads = " and ".join(
        f"{LOADS[g]} ({args.generators if g == 'py' else args.js_generators} processes)"
        for g in args.loads
    )
    print(
        c.table(
            f"Scenario 5: /rendezvous/1.0.0 over Noise + yamux, {args.registrations:,} "
            f"registrations held (preloaded by our clients), {args.peers} connected peers x "
            f"{args.window} in flight (js: x {args.js_window}, the client waits for each "
            f"reply), load from {loads}; connect + REGISTER + close: "
            f"{args.registrations:,} peers of ours, {args.js_registrations:,} js; one preload "
            f"per server, then median of {args.runs} round(s) x {args.seconds:g} s; µs/op: "
            f"CPU time per operation",
            [
                "operation",
                "server",
                "load",
                "per second",
                "server CPU",
                "server µs/op",
                "generators' CPU",
                "generators' µs/op",
                "other processes' CPU",
                "pace",
                "ours/js",
                "ours/js per CPU-s",
                "target",
            ],
            rows,
        )
    )
    idle = ", ".join(
        f"{names[k]} under {LOADS[g]}: {med[(k, g)]['idle_server_cpu'] * 1e6:,.0f} µs a second"
        for k, g in pairs
    )
    print(f"(the server's CPU with the peers connected and silent, before the rounds: {idle})")
    for line in ABANDONED:
        print(f"(medians of the rounds finished; abandoned: {line})")
    c.write_json(
        args.json,
        {
            "scenario": "libp2p_path",
            "args": vars(args),
            "median": {k: {g: med[(k2, g)] for k2, g in pairs if k2 == k} for k in kinds},
            "samples": samples,
            "abandoned": ABANDONED,
        },
    )
    return 0


if __name__ == "__main__":
    p = c.base_parser(__doc__, timeout=1800, profile=False)
    p.set_defaults(servers="rendezvous,js")
    p.add_argument("--registrations", type=int, default=10_000, help="registrations held")
    p.add_argument("--peers", type=int, default=50, help="connected peers driving the load")
    p.add_argument("--window", type=int, default=8, help="requests in flight per peer")
    p.add_argument("--concurrency", type=int, default=32, help="dials in flight per generator")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--generators", type=int, default=2, help="our load-generator processes")
    p.add_argument(
        "--generator",
        choices=("py", "js", "both"),
        default="both",
        help="the load: our Python clients, js-libp2p's (canvas's rendezvous client), or both",
    )
    p.add_argument(
        "--idle", type=float, default=2.0, help="seconds of the server's idle CPU measured"
    )
    p.add_argument("--js-generators", type=int, default=2, help="js load-generator processes")
    p.add_argument(
        "--js-registrations",
        type=int,
        default=1000,
        help="js peers that connect, REGISTER and close (a node each)",
    )
    p.add_argument(
        "--js-window",
        type=int,
        default=1,
        help="streams per js peer, one request in flight on each: more only queue replies "
        "behind the client's checks of DISCOVER's records (~40 ms each), past js-libp2p's "
        "5 s ping timeout, and the js server then aborts the connection",
    )
    p.add_argument("--js-concurrency", type=int, default=16, help="js peers in flight each")
    p.add_argument("--register-target", type=float, default=5.0, help="ours/js REGISTER")
    p.add_argument("--discover-target", type=float, default=50.0, help="ours/js DISCOVER")
    c.main_wrapper(main, p.parse_args())
