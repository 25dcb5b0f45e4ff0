"""Flood (issue #14): one address opens sessions as fast as it can; do the others notice?

One daemon runs as operators run it (``twistd -n rendezvous --listen tcp:0:…``, the
per-IP limits at their defaults: ``--max-sessions-per-ip 256``, ``--session-rate-per-ip
50``), pinned to CPU 0, with two live listeners: one on loopback for the measured
sessions, one on the root-namespace end of a veth pair made by this script (198.18.200.x,
RFC 2544's benchmarking range) for the flooder. Loopback is exempt from the per-IP limits,
so the flooder runs in a network namespace of its own (``ip netns exec``; the namespace
has no route but the veth's /30: nothing leaves the machine) and the daemon sees it as
one foreign address. The namespace is removed at the end.

``--subscribers`` live sessions (raw TCP, the client library's `LiveClient` fed from
epoll load-generator processes) subscribe (RENDEZVOUS) over ``--namespaces`` namespaces.
A publisher session REGISTERs and UNREGISTERs fresh peer ids round-robin over those
namespaces at ``--rate`` operations per second (each confirmed by the library's DISCOVER
barrier). A subscriber's push latency is the kernel's receive timestamp of the push
(SO_TIMESTAMPNS) minus the moment the publisher sent the operation (the same machine
clock), so neither side's scheduling enters the figure. Phases of ``--duration`` s:

1. no flood;
2. flood, default limits: the flooder (one address) keeps ``--flood-inflight`` connection
   attempts going as fast as it can; each connection sends a DISCOVER; an answer means
   the session was admitted (held open, up to ``--flood-hold``, the oldest closed
   beyond), an ERROR or a close that it was refused; the daemon pauses its listeners
   while refusals pour in (``--flood-refusals``, ``--flood-pause-max``);
3. flood again, on a daemon started with ``--flood-pause-max 0``: what pausing buys;
4. flood again, on a daemon started with the limits lifted
   (``--max-sessions-per-ip 100000 --session-rate-per-ip 100000``): what the limits buy.

Throughout every phase a newcomer opens a session from loopback (never refused) every
0.1 s and times connect to DISCOVER answer: what pausing costs new sessions.
Per phase: the pushes' latency p50/p99/max, the daemon's CPU (and per publish operation),
its RSS (VmRSS at the end and the highest sampled every 0.25 s), the flooder's attempted,
admitted and refused sessions per second, the refusals by reason from /metrics
(``rendezvous_refusals_total``), and the CPU of everything else on the machine. Target:
the p99 with the flood (default limits) within 2x of the p99 without. ``--profile PATH``
adds one more flood phase (default limits) with the daemon under cProfile.

Needs root and iproute2 (``ip netns``). On a 2-core machine the flooder shares the load
generators' CPU; the daemon keeps CPU 0.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import json
import os
import re
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as c
from _common import helpers

from rendezvous.client.live import Event, LiveClient
from rendezvous.framing import FrameDecoder
from rendezvous.pb.live_pb2 import Message

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_LIVE = re.compile(r"live dialect listening on tcp ([0-9.]+):(\d+)")
_METRICS = re.compile(r"metrics listening on tcp [0-9.]+:(\d+)")
_REFUSAL = re.compile(r'^rendezvous_refusals_total\{reason="([^"]+)"\} ([0-9.e+]+)$', re.M)
LIFTED = ("--max-sessions-per-ip", "100000", "--session-rate-per-ip", "100000")
NO_PAUSING = ("--flood-pause-max", "0")
PHASES = ("no flood", "flood, default limits", "flood, pausing off", "flood, limits lifted")
DAEMONS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    ((), PHASES[:2]),
    (NO_PAUSING, PHASES[2:3]),
    (LIFTED, PHASES[3:]),
)
"""Each daemon's extra arguments, and the phases played against it."""


# -- the flooder's network namespace ------------------------------------------------------


def unavailable() -> str | None:
    """Why the flooder's namespace cannot be made here, or None."""
    if os.geteuid() != 0:
        return "a network namespace needs root"
    if subprocess.run(["ip", "-V"], capture_output=True).returncode != 0:
        return "`ip` (iproute2) is not installed"
    return None


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")


class FloodNet:
    """A namespace ``rdvflood<pid>`` joined to the root namespace by a veth pair on a
    198.18.200.x/30 no other interface here uses; `close` removes both."""

    def __init__(self) -> None:
        pid = os.getpid()
        self.namespace = f"rdvflood{pid}"
        self.link = f"rdvfl{pid % 100000}r"
        inner = f"rdvfl{pid % 100000}n"  # named eth0 once inside
        used = subprocess.run(["ip", "-br", "addr"], capture_output=True, text=True).stdout
        for i in range(64):
            n = (pid + i) % 64 * 4
            if f"198.18.200.{n + 1}/" not in used:
                break
        self.server, self.client = f"198.18.200.{n + 1}", f"198.18.200.{n + 2}"
        _ip("netns", "add", self.namespace)
        try:
            _ip("link", "add", self.link, "type", "veth", "peer", "name", inner)
            _ip("link", "set", inner, "netns", self.namespace)
            _ip("addr", "add", f"{self.server}/30", "dev", self.link)
            _ip("link", "set", self.link, "up")
            inside = ("-n", self.namespace)
            _ip(*inside, "link", "set", inner, "name", "eth0")
            _ip(*inside, "addr", "add", f"{self.client}/30", "dev", "eth0")
            _ip(*inside, "link", "set", "eth0", "up")
            _ip(*inside, "link", "set", "lo", "up")
            # The flooder's own namespace only: every port, TIME_WAIT ports reused.
            for setting in ("net.ipv4.ip_local_port_range=1024 65535", "net.ipv4.tcp_tw_reuse=1"):
                subprocess.run(self.command(["sysctl", "-qw", setting]), capture_output=True)
        except Exception:
            self.close()
            raise

    def command(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *argv]

    def close(self) -> None:
        subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True)
        subprocess.run(["ip", "link", "del", self.link], capture_output=True)


# -- the daemon ---------------------------------------------------------------------------


class Daemon:
    """``twistd -n rendezvous`` with a live listener on loopback, one on ``flood_ip``,
    and /metrics; pinned to `c.SERVER_CPUS`."""

    def __init__(self, flood_ip: str, extra: tuple[str, ...] = (), profile: str = "") -> None:
        """``profile``: run under cProfile, the stats saved there on `stop`."""
        self.profile = profile
        options = ("--profile", profile, "--profiler", "cprofile", "--savestats")
        argv = c.twistd_argv(
            *(options if profile else ()),
            "rendezvous",
            "--listen",
            "tcp:0:interface=127.0.0.1:backlog=4096",
            "--listen",
            f"tcp:0:interface={flood_ip}:backlog=4096",
            "--metrics",
            "tcp:0:interface=127.0.0.1",
            *extra,
        )
        self.proc, self.log = c.spawn_logged(argv, "flood-daemon-", env=c.child_env())
        deadline = time.monotonic() + 60
        while True:
            text = self.log_text()
            live = dict(_LIVE.findall(text))
            metrics = _METRICS.search(text)
            if "127.0.0.1" in live and flood_ip in live and metrics:
                break
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"the daemon did not start:\n{text}")
            time.sleep(0.05)
        self.port = int(live["127.0.0.1"])
        self.flood_port = int(live[flood_ip])
        self.metrics = int(metrics.group(1))
        import psutil

        self.ps = psutil.Process(self.proc.pid)

    def log_text(self) -> str:
        with open(self.log.name, "rb") as f:
            return f.read().decode(errors="replace")

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system

    def rss(self) -> int:
        """VmRSS in bytes."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def refusals(self) -> dict[str, float]:
        """``rendezvous_refusals_total`` by reason."""
        conn = http.client.HTTPConnection("127.0.0.1", self.metrics, timeout=10)
        try:
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
        finally:
            conn.close()
        return {reason: float(value) for reason, value in _REFUSAL.findall(text)}

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            tail = "\n".join(self.log_text().splitlines()[-20:])
            raise RuntimeError(f"the daemon exited with {self.proc.returncode}:\n{tail}")

    def stop(self) -> None:
        if self.proc.poll() is None and self.profile:
            self.proc.terminate()  # the stats are written on the way out
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(240)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc in c._children:
            c._children.remove(self.proc)


class RssSampler(threading.Thread):
    """The daemon's VmRSS every 0.25 s until `stop`; the highest seen."""

    def __init__(self, daemon: Daemon) -> None:
        super().__init__(daemon=True)
        self.target, self.peak = daemon, daemon.rss()
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.25):
            with contextlib.suppress(OSError, RuntimeError):
                self.peak = max(self.peak, self.target.rss())

    def stop(self) -> int:
        self._done.set()
        self.join(5)
        return self.peak


class Newcomers(threading.Thread):
    """A new session (from loopback, so never refused) every 0.1 s until `stop`: how long
    from its connect to the answer of its DISCOVER, in ms (the price of pausing)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.latencies: list[float] = []
        self.failed = 0
        self._done = threading.Event()

    def run(self) -> None:
        probe = c.marker(request_id=1, namespace="newcomer-probe")
        while not self._done.wait(0.1):
            start = time.monotonic()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
                    sock.sendall(probe)
                    decoder = FrameDecoder(65536)
                    while not decoder.feed(sock.recv(65536) or b"!"):
                        pass
            except (OSError, ValueError):
                self.failed += 1
                continue
            self.latencies.append((time.monotonic() - start) * 1000)

    def stop(self) -> dict[str, float]:
        self._done.set()
        self.join(15)
        found = sorted(self.latencies)
        return {
            "newcomers": len(found),
            "newcomers_failed": self.failed,
            "newcomer_p50_ms": c.percentile(found, 50) if found else float("nan"),
            "newcomer_max_ms": found[-1] if found else float("nan"),
        }


# -- measured sessions: the client library over epoll ---------------------------------------


class SocketClient(LiveClient):
    """A `LiveClient` over a non-blocking socket that the owner's epoll loop feeds;
    ``stamp`` is the kernel's receive time of the bytes being handled."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock
        self.stamp = 0.0
        self._opened()

    def _write(self, data: bytes) -> None:
        c.send_all(self.sock, data, time.monotonic() + 30)

    def disconnect(self) -> None:
        self.sock.close()

    def readable(self) -> bool:
        """Read what is there; False once the server has closed."""
        try:
            data, anc, _flags, _addr = self.sock.recvmsg(262144, 256)
        except BlockingIOError:
            return True
        if not data:
            self._lost("closed by the server")
            return False
        stamp = None
        for level, kind, cdata in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = struct.unpack("qq", cdata[:16])
                stamp = sec + nsec / 1e9
        self.stamp = stamp if stamp is not None else time.time()
        self._bytes_received(data)
        return True


def _loopback_socket(port: int, index: int) -> socket.socket:
    s = c.connect(port, index)
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    return s


def subscribers(conn: Any, port: int, count: int, first: int, namespaces: int) -> None:
    """A load-generator process: ``count`` subscribers; on "collect" the pushes they got
    since the last one, as (peer id, kind, kernel receive time)."""
    ep = c.Epoll()
    clients: dict[int, SocketClient] = {}
    arrivals: list[tuple[str, str, float]] = []
    subscribed: list[Any] = []

    def handler(client: SocketClient) -> Any:
        def pushed(event: Event) -> None:
            arrivals.append((event.entry.peer_id, event.kind, client.stamp))

        return pushed

    def pump(timeout: float) -> None:
        for fd, _ev in ep.poll(timeout):
            client = clients.get(fd)
            if client is not None and not client.readable():
                raise RuntimeError(f"the server closed a subscriber: {client.close_reason}")

    deadline = time.monotonic() + 120
    for start in range(0, count, 200):
        batch = []
        for k in range(start, min(count, start + 200)):
            client = SocketClient(_loopback_socket(port, first + k))
            ep.add(client.sock)
            clients[client.sock.fileno()] = client
            ns = f"flood-{(first + k) % namespaces}"
            d = client.rendezvous(ns, handler(client))
            d.addErrback(lambda f: subscribed.append(f))
            batch.append(d)
        while not all(d.called for d in batch):
            if time.monotonic() > deadline:
                raise c.BenchTimeout("subscriptions not confirmed")
            pump(0.2)
    failed = [r for r in subscribed if r is not None]
    if failed:
        raise RuntimeError(f"{len(failed)} subscriptions refused: {failed[0]}")
    conn.send(("ready", len(clients)))
    cpu0 = c.self_cpu()
    while True:
        pump(0.02)
        if conn.poll():
            cmd = conn.recv()
            if cmd[0] == "quit":
                ep.close()
                return
            if cmd[0] == "collect":
                cpu1 = c.self_cpu()
                conn.send(("arrivals", arrivals, cpu1 - cpu0))
                arrivals, cpu0 = [], cpu1


def publisher(conn: Any, port: int, namespaces: int, rate: float) -> None:
    """A load-generator process: on ("publish", tag, seconds), REGISTER and UNREGISTER
    fresh ids round-robin over the namespaces at ``rate`` per second; answers with the
    send time of each (peer id, kind), the operations confirmed and refused, its CPU."""
    sock = _loopback_socket(port, 199)
    client = SocketClient(sock)
    while True:
        cmd = conn.recv()
        if cmd[0] == "quit":
            sock.close()
            return
        tag, seconds = cmd[1], cmd[2]
        cpu0 = c.self_cpu()
        sent: dict[tuple[str, str], float] = {}
        outcome = {"confirmed": 0, "refused": 0}
        errors: list[str] = []

        def done(_: Any, outcome: dict[str, int] = outcome) -> None:
            outcome["confirmed"] += 1

        def refused(
            failure: Any, outcome: dict[str, int] = outcome, errors: list[str] = errors
        ) -> None:
            outcome["refused"] += 1
            errors.append(str(failure.value))

        start = time.monotonic()
        i = 0
        while True:
            due = start + i / rate
            now = time.monotonic()
            if due - start >= seconds:
                break
            if now < due:
                readable, _, _ = select.select([sock], [], [], due - now)
                if readable:
                    client.readable()
                continue
            n, r = i % namespaces, i // namespaces
            peer_id = helpers.peer_id(f"flood-{tag}-{n}-{r // 2}")
            ns = f"flood-{n}"
            if r % 2 == 0:
                sent[(peer_id, "register")] = time.time()
                d = client.register(ns, peer_id, [helpers.tcp_addr(1 + n % 250)])
            else:
                sent[(peer_id, "unregister")] = time.time()
                d = client.unregister(ns, peer_id)
            d.addCallbacks(done, refused)
            i += 1
        elapsed = time.monotonic() - start
        # Every registration left over is unregistered (uncounted), so phases start empty.
        for n in range(namespaces):
            r = (i - 1 - n) // namespaces if i > n else -1
            if r >= 0 and r % 2 == 0:
                client.unregister(f"flood-{n}", helpers.peer_id(f"flood-{tag}-{n}-{r // 2}"))
        deadline = time.monotonic() + 30
        while outcome["confirmed"] + outcome["refused"] < i and time.monotonic() < deadline:
            if select.select([sock], [], [], 0.2)[0]:
                client.readable()
        conn.send(("published", sent, elapsed, outcome, errors[:5], c.self_cpu() - cpu0))


# -- the flooder (runs inside the namespace) ----------------------------------------------


def flooder(target: str, port: int, inflight: int, hold: int) -> None:
    """Open sessions to ``target:port`` as fast as possible until standard input closes;
    print what happened as one JSON line."""
    c.raise_fd_limit()
    marker = c.marker(request_id=1, namespace="flood-probe")
    ep = select.epoll()
    stdin = sys.stdin.fileno()
    ep.register(stdin, select.EPOLLIN)
    pending: dict[int, tuple[socket.socket, FrameDecoder | None]] = {}
    held: dict[int, socket.socket] = {}
    order: deque[int] = deque()
    tally = dict.fromkeys(
        ("attempted", "connected", "admitted", "refused_error", "refused_closed",
         "dropped_held", "connect_failed", "closed_oldest"), 0)  # fmt: skip
    errors: dict[str, int] = {}
    peak = 0
    print("flooding", flush=True)
    start = time.monotonic()
    cpu0 = c.self_cpu()

    def finish(fd: int) -> None:
        sock, _ = pending.pop(fd)
        with contextlib.suppress(OSError):
            ep.unregister(fd)
        sock.close()

    while True:
        while len(pending) < inflight:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            tally["attempted"] += 1
            code = s.connect_ex((target, port))
            if code not in (0, errno.EINPROGRESS):
                name = errno.errorcode.get(code, str(code))
                errors[name] = errors.get(name, 0) + 1
                tally["connect_failed"] += 1
                s.close()
                time.sleep(0.001)  # out of ports, say: give them a moment
                break
            pending[s.fileno()] = (s, None)
            ep.register(s.fileno(), select.EPOLLOUT)
        stop = False
        for fd, _ev in ep.poll(0.05, 4096):
            if fd == stdin:
                stop = True
                continue
            if fd in held:
                # The server closed a held session (or sent something): let it go.
                sock = held.pop(fd)
                ep.unregister(fd)
                sock.close()
                tally["dropped_held"] += 1
                continue
            entry = pending.get(fd)
            if entry is None:
                continue
            sock, decoder = entry
            if decoder is None:  # connecting
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    name = errno.errorcode.get(code, str(code))
                    errors[name] = errors.get(name, 0) + 1
                    tally["connect_failed"] += 1
                    finish(fd)
                    continue
                tally["connected"] += 1
                try:
                    sock.send(marker)
                except OSError:
                    tally["refused_closed"] += 1
                    finish(fd)
                    continue
                pending[fd] = (sock, FrameDecoder(65536))
                ep.modify(fd, select.EPOLLIN)
                continue
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                tally["refused_closed"] += 1  # reset or closed before any answer
                finish(fd)
                continue
            frames = decoder.feed(data)
            if not frames:
                continue
            message = Message()
            message.ParseFromString(frames[0])
            if message.type == Message.ERROR:
                tally["refused_error"] += 1
                finish(fd)
                continue
            tally["admitted"] += 1
            pending.pop(fd)
            held[fd] = sock
            order.append(fd)
            while len(held) > hold:
                old = order.popleft()
                if old in held:
                    ep.unregister(old)
                    held.pop(old).close()
                    tally["closed_oldest"] += 1
            peak = max(peak, len(held))
        if len(order) > 4 * hold + 1000:
            order = deque(fd for fd in order if fd in held)
        if stop:
            break
    elapsed = time.monotonic() - start
    report = {
        **tally,
        "errors": errors,
        "held_at_end": len(held),
        "peak_held": peak,
        "seconds": elapsed,
        "cpu_s": c.self_cpu() - cpu0,
    }
    print(json.dumps(report), flush=True)
    for sock in held.values():
        sock.close()


class Flooder:
    """The flooder process inside ``net``'s namespace, pinned to the client CPU(s)."""

    def __init__(self, net: FloodNet, port: int, inflight: int, hold: int) -> None:
        argv = net.command(
            [sys.executable, os.path.abspath(__file__), "--flooder", net.server, str(port),
             str(inflight), str(hold)]
        )  # fmt: skip
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=c.child_env(),
            preexec_fn=c.raise_fd_limit,
        )
        c._children.append(self.proc)
        c.pin(c.CLIENT_CPUS, self.proc.pid)
        line = self._line(30)
        if line != "flooding":
            raise RuntimeError(f"the flooder did not start: {line!r}")

    def _line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise c.BenchTimeout("the flooder did not answer")
        return self.proc.stdout.readline().decode().strip()

    def stop(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        line = self._line(30)
        self.proc.wait(10)
        c._children.remove(self.proc)
        if not line.startswith("{"):
            raise RuntimeError(f"the flooder failed: {line!r}")
        return dict(json.loads(line))


# -- the driver ---------------------------------------------------------------------------


def start_generators(daemon: Daemon, args: Any) -> tuple[list[c.Worker], c.Worker]:
    subs = []
    first = 0
    for n in c.split(args.subscribers, min(args.generators, args.subscribers)):
        subs.append(c.Worker(subscribers, daemon.port, n, first, args.namespaces))
        first += n
    ready = sum(w.recv(300)[1] for w in subs)
    if ready != args.subscribers:
        raise RuntimeError(f"{ready} of {args.subscribers} subscribers ready")
    pub = c.Worker(publisher, daemon.port, args.namespaces, args.rate)
    return subs, pub


def phase(name: str, tag: str, daemon: Daemon, subs: list[c.Worker], pub: c.Worker,
          net: FloodNet | None, args: Any) -> dict[str, Any]:  # fmt: skip
    """One phase: the publisher for ``args.duration`` s, with the flood if ``net``."""
    refusals0 = daemon.refusals()
    c.broadcast(subs, "collect")  # forget anything earlier
    flood = Flooder(net, daemon.flood_port, args.flood_inflight, args.flood_hold) if net else None
    sampler = RssSampler(daemon)
    sampler.start()
    newcomers = Newcomers(daemon.port)
    newcomers.start()
    cpu0, all0 = daemon.cpu(), c.system_cpu()
    pub.send("publish", tag, args.duration)
    _, sent, elapsed, outcome, errors, pub_cpu = pub.recv(args.duration + 60)
    time.sleep(args.settle)  # the last pushes: the arrivals carry their own times
    cpu1, all1 = daemon.cpu(), c.system_cpu()
    window = elapsed + args.settle
    flooded = flood.stop() if flood else None
    newcomer = newcomers.stop()
    rss_peak = sampler.stop()
    rss_end = daemon.rss()
    collected = c.broadcast(subs, "collect")
    daemon.check_alive()
    refusals1 = daemon.refusals()
    latencies = []
    unknown = 0
    for _, arrivals, _cpu in collected:
        for peer_id, kind, stamp in arrivals:
            t0 = sent.get((peer_id, kind))
            if t0 is None:
                unknown += 1  # the clean-up UNREGISTERs of the phase's end
            else:
                latencies.append((stamp - t0) * 1000)
    latencies.sort()
    ops = len(sent)
    # Operation i goes to namespace i % namespaces; subscriber k listens to k % namespaces.
    listeners = [len(range(n, args.subscribers, args.namespaces)) for n in range(args.namespaces)]
    expected = sum(listeners[i % args.namespaces] for i in range(ops))
    gen_cpu = sum(r[2] for r in collected) + pub_cpu
    flood_cpu = flooded["cpu_s"] if flooded else 0.0
    server_cpu = cpu1 - cpu0
    others = max(0.0, (all1 - all0) - server_cpu - gen_cpu - flood_cpu)
    result: dict[str, Any] = {
        "phase": name,
        "ops": ops,
        "ops_per_s": ops / elapsed,
        "confirmed": outcome["confirmed"],
        "refused": outcome["refused"],
        "publisher_errors": errors,
        "deliveries": len(latencies),
        "expected": expected,
        "p50_ms": c.percentile(latencies, 50),
        "p99_ms": c.percentile(latencies, 99),
        "max_ms": latencies[-1] if latencies else float("nan"),
        "server_cpu_pct": server_cpu / window * 100,
        "server_us_per_op": server_cpu / ops * 1e6 if ops else float("nan"),
        "server_us_per_delivery": server_cpu / len(latencies) * 1e6 if latencies else float("nan"),
        "gen_cpu_pct": gen_cpu / window * 100,
        "flooder_cpu_pct": flood_cpu / flooded["seconds"] * 100 if flooded else 0.0,
        "others_cpu_pct": others / window * 100,
        "rss_end_mib": rss_end / 2**20,
        "rss_peak_mib": rss_peak / 2**20,
        "refusals": {
            k: v - refusals0.get(k, 0) for k, v in refusals1.items() if v - refusals0.get(k, 0)
        },
        "flood": flooded,
        **newcomer,
    }
    print(
        f"  {name}: {ops:,} operations, {len(latencies):,} pushes (p99 "
        f"{result['p99_ms']:.2f} ms), daemon {result['server_cpu_pct']:.0f} % CPU, "
        f"RSS {result['rss_end_mib']:.1f} MiB"
        + (
            f"; flooder {flooded['attempted'] / flooded['seconds']:,.0f} attempts/s, "
            f"{flooded['admitted']:,} admitted"
            if flooded
            else ""
        ),
        flush=True,
    )
    return result


def profiled_flood(net: FloodNet, args: Any) -> str:
    """One more flood phase (default limits) with the daemon under cProfile."""
    path = os.path.abspath(args.profile)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    daemon = Daemon(net.server, profile=path)
    subs: list[c.Worker] = []
    pub = None
    try:
        subs, pub = start_generators(daemon, args)
        phase(f"{PHASES[1]}, profiled", "profiled", daemon, subs, pub, net, args)
    finally:
        for w in [*subs, *([pub] if pub else [])]:
            w.stop()
        daemon.stop()
    return c.summarise_profile(path, 25)


def one_run(run: int, net: FloodNet, args: Any) -> list[dict[str, Any]]:
    results = []
    for d, (extra, names) in enumerate(DAEMONS):
        daemon = Daemon(net.server, extra)
        subs: list[c.Worker] = []
        pub = None
        try:
            subs, pub = start_generators(daemon, args)
            base_rss = daemon.rss()
            for i, name in enumerate(names):
                flood_net = None if name == PHASES[0] else net
                r = phase(name, f"{run}-{d}-{i}", daemon, subs, pub, flood_net, args)
                r["rss_subscribed_mib"] = base_rss / 2**20
                results.append(r)
        finally:
            for w in [*subs, *([pub] if pub else [])]:
                w.stop()
            daemon.stop()
    return results


KEYS = (
    "ops_per_s", "deliveries", "p50_ms", "p99_ms", "max_ms", "server_cpu_pct",
    "server_us_per_op", "rss_end_mib", "rss_peak_mib", "gen_cpu_pct", "flooder_cpu_pct",
    "others_cpu_pct", "newcomer_p50_ms", "newcomer_max_ms",
)  # fmt: skip
RATES = ("attempted", "admitted", "refused_error", "refused_closed", "connect_failed")
HEADERS_A = (
    "phase", "ops/s", "pushes", "p50 ms", "p99 ms", "max ms", "p99 / no flood", "daemon CPU %",
    "µs/op", "RSS MiB end / peak", "gens CPU %", "flooder CPU %", "others CPU %",
    "new session ms p50 / max",
)  # fmt: skip
HEADERS_B = (
    "phase", "attempted/s", "admitted/s", "refused/s", "failed/s", "held, peak",
    "refusals by reason", "daemon µs/attempt",
)  # fmt: skip
FLOOD_KEYS = ("attempted", "connected", "admitted", "refused_error", "refused_closed",
              "connect_failed", "peak_held", "seconds")  # fmt: skip


def main(args: Any) -> int:
    if args.quick:
        args.subscribers, args.namespaces, args.rate = 100, 10, 50.0
        args.duration, args.runs, args.flood_hold, args.flood_inflight = 3.0, 1, 500, 64
    if (why := unavailable()) is not None:
        print(f"flood: {why}", file=sys.stderr)
        return 1
    c.raise_fd_limit()
    net = FloodNet()
    runs: list[list[dict[str, Any]]] = []
    try:
        print(
            f"flooder namespace {net.namespace} ({net.client}) -> daemon {net.server}; "
            f"{args.subscribers:,} subscribers over {args.namespaces} namespaces, "
            f"{args.rate:g} operations/s, {args.duration:g} s per phase, {args.runs} run(s)",
            flush=True,
        )
        for run in range(args.runs):
            print(f"run {run + 1}:", flush=True)
            runs.append(one_run(run, net, args))
        profile_text = profiled_flood(net, args) if args.profile else None
    finally:
        net.close()
    med: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(PHASES):
        rs = [run[i] for run in runs]
        m = {k: c.median([r[k] for r in rs]) for k in KEYS}
        floods = [r["flood"] for r in rs if r["flood"]]
        if floods:
            m["flood"] = {k: c.median([f[k] for f in floods]) for k in FLOOD_KEYS}
            m["flood"]["per_s"] = {
                k: c.median([f[k] / f["seconds"] for f in floods]) for k in RATES
            }
        reasons = sorted({k for r in rs for k in r["refusals"]})
        m["refusals"] = {k: c.median([r["refusals"].get(k, 0) for r in rs]) for k in reasons}
        m["refusals_per_s"] = {
            k: c.median([r["refusals"].get(k, 0) / r["flood"]["seconds"] for r in rs if r["flood"]])
            for k in reasons
        }
        med[name] = m
    base = med[PHASES[0]]
    print()
    print(
        c.table(
            f"Flood (a): pushes to {args.subscribers:,} subscribers ({args.namespaces} "
            f"namespaces) while one other address opens sessions, median of {args.runs} run(s)",
            HEADERS_A,
            [
                [
                    name,
                    m["ops_per_s"],
                    int(m["deliveries"]),
                    m["p50_ms"],
                    m["p99_ms"],
                    m["max_ms"],
                    m["p99_ms"] / base["p99_ms"] if name != PHASES[0] else "",
                    m["server_cpu_pct"],
                    m["server_us_per_op"],
                    f"{m['rss_end_mib']:.1f} / {m['rss_peak_mib']:.1f}",
                    m["gen_cpu_pct"],
                    m["flooder_cpu_pct"] if name != PHASES[0] else "",
                    m["others_cpu_pct"],
                    f"{m['newcomer_p50_ms']:.1f} / {m['newcomer_max_ms']:.0f}",
                ]
                for name, m in med.items()
            ],
        )
    )
    print()
    rows = []
    for name in PHASES[1:]:
        m = med[name]
        f = m["flood"]
        extra_cpu = (m["server_cpu_pct"] - base["server_cpu_pct"]) / 100
        reasons = ", ".join(f"{k} {v:,.0f}/s" for k, v in m["refusals_per_s"].items()) or "none"
        rows.append(
            [
                name,
                f["per_s"]["attempted"],
                f["per_s"]["admitted"],
                f["per_s"]["refused_error"] + f["per_s"]["refused_closed"],
                f["per_s"]["connect_failed"],
                int(f["peak_held"]),
                reasons,
                extra_cpu / f["per_s"]["attempted"] * 1e6 if f["per_s"]["attempted"] else "",
            ]
        )
    print(
        c.table(
            "Flood (b): the flooder, sessions per second (refusals by reason: /metrics)",
            HEADERS_B,
            rows,
        )
    )
    limited = med[PHASES[1]]
    ratio = limited["p99_ms"] / base["p99_ms"]
    met = ratio <= args.target_ratio
    print()
    print(
        c.table(
            "Flood (c): target",
            ["target", "value", "met"],
            [
                [
                    f"p99 with flood (default limits) within {args.target_ratio:g}x of without",
                    f"{limited['p99_ms']:.2f} / {base['p99_ms']:.2f} ms = {ratio:.2f}x",
                    "yes" if met else "no",
                ]
            ],
        )
    )
    if profile_text:
        print(f"\nThe daemon under cProfile, flood with default limits:\n{profile_text}")
    c.write_json(args.json, {"args": vars(args), "runs": runs, "medians": med, "met": met})
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--flooder":
        flooder(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
        sys.exit(0)
    p = c.base_parser(__doc__, timeout=900)
    p.add_argument("--subscribers", type=int, default=1000)
    p.add_argument("--namespaces", type=int, default=100, help="the subscribers spread over")
    p.add_argument("--rate", type=float, default=200.0, help="publish operations per second")
    p.add_argument("--duration", type=float, default=15.0, help="seconds per phase")
    p.add_argument("--settle", type=float, default=0.5, help="wait for the last pushes, s")
    p.add_argument("--generators", type=int, default=2, help="subscriber processes")
    p.add_argument("--flood-inflight", type=int, default=256, help="connection attempts at once")
    p.add_argument("--flood-hold", type=int, default=10000, help="admitted sessions held, at most")
    p.add_argument("--target-ratio", type=float, default=2.0)
    c.main_wrapper(main, p.parse_args())
