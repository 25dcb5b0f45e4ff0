"""Restart drill (issue #20): live clients built on the client library survive a restart.

(a) One daemon (``--store memory``) on a fixed port holds ``--clients`` live clients, each
a `ReconnectingClient` (``rendezvous.client.live.connect`` as its connect function) holding
one registration in namespace ``drill``, spread over ``--generators`` load-generator
processes, and ``--watchers`` watchers (a `ReconnectingClient` in ``rendezvous()`` of
``drill``) in processes of their own (niced: on a small machine their pushes must not
take the CPU the clients reconnect with). The daemon is stopped (SIGTERM: it says goodbye; or
kill -9: the connections just drop) and started again on the same port at once, with each
listen backlog of ``--backlogs`` in turn (0: Twisted's default, 50). Measured from the
moment the new daemon listens: until every registration is back (each client's REGISTER
accepted again: the reply to the DISCOVER the library sends behind it proves the daemon
holds it) and until every watcher has subscribed again and its view equals the truth (all
the ids); the connections per 100 ms bucket (the generators time every attempt, and the
daemon's ``rendezvous_sessions_opened`` counter is scraped every 100 ms), their peak, the
failed (refused) connects and the kernel's listen-queue overflows. Beside them, what the
library's backoff alone allows: each client's schedule drawn again with `Backoff` for the
outage it saw, at no cost. At the end the daemon's registry is read with one DISCOVER
(``--discover-max-limit`` raised for the drill; its reply spans several messages) and
compared with the ids.

(b) Three daemons sharing a private ``redis-server`` (``--store redis://…``); each client
lists all three, rotated so that each daemon is the first of a third of them (the two
others in alternating order, so that a daemon's clients split over the survivors); one
daemon is killed with kill -9 and not restarted. Measured from the kill, the same figures,
for at least ``--lease`` x 1.5 + 1 s (the killed daemon's registrations stay in Redis until
its lease runs out and another daemon reaps them). Run twice: with the library as it is,
and with the generators registering a refused registration again after
``--retry-refused`` seconds, as an application can on `RegistrationRefused`.

The daemons run as operators run them (``twistd -n rendezvous --listen
tcp:PORT:interface=127.0.0.1[:backlog=N]``), pinned to CPU 0; the generators (Twisted,
epoll) to the other CPU(s). The server's CPU per reconnect is its CPU time
(``/proc/PID/stat``; ``wait4`` for the one that exits) from listening (or the kill) until
all is back, divided by the connections it accepted.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gc
import http.client
import itertools
import os
import re
import signal
import socket
import sys
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as c
from _common import helpers

NS = "drill"
BUCKET = 0.1
"""Seconds per bucket of the attempt-rate histograms."""
_LISTENING = re.compile(r"live dialect listening on tcp [0-9.]+:(\d+)")
_STORE_READY = "redis store ready"


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (held together while chosen, so none repeats)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            s = stack.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            ports.append(int(s.getsockname()[1]))
        return ports


_TCP_COUNTERS = ("ListenOverflows", "ListenDrops", "TCPSynRetrans", "TCPTimeouts")


def tcp_counters() -> dict[str, int]:
    """The kernel's TcpExt counters of listen-queue overflows and retransmissions (the
    whole network namespace: other processes' connections count too)."""
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return {k: int(table[k]) for k in _TCP_COUNTERS if k in table}
    return {}


# -- the daemon -------------------------------------------------------------------------


class Daemon:
    """``twistd rendezvous`` on a fixed port (so it can be started again on it)."""

    def __init__(self, port: int, metrics: int, store: str, args: Any, backlog: int = 0) -> None:
        """``backlog``: the listen backlog; 0: Twisted's default (50), named explicitly
        since the daemon's own default is 4096."""
        self.port, self.metrics, self.store, self.backlog = port, metrics, store, backlog
        listen = f"tcp:{port}:interface=127.0.0.1:backlog={backlog or 50}"
        argv = c.twistd_argv(
            "rendezvous",
            "--listen",
            listen,
            "--metrics",
            f"tcp:{metrics}:interface=127.0.0.1",
            "--discover-max-limit",
            str(max(1000, args.clients + 1000)),
            "--store",
            store,
        )
        if store != "memory":
            argv += ["--lease", str(args.lease)]
        keep = bool(args.keep_logs)
        if keep:
            os.makedirs(args.keep_logs, exist_ok=True)
        self.started = time.time()
        self.proc, self.log = c.spawn_logged(
            argv,
            f"daemon-{port}-",
            env=c.child_env(),
            log_dir=args.keep_logs or None,
            keep=keep,
        )
        self.listening = self._wait_for(_LISTENING)
        if store != "memory":
            self._wait_for(re.compile(re.escape(_STORE_READY)))
        self.exit_cpu = float("nan")

    def log_text(self) -> str:
        with open(self.log.name, "rb") as f:
            return f.read().decode(errors="replace")

    def _wait_for(self, pattern: re.Pattern[str], timeout: float = 60) -> float:
        """The moment ``pattern`` was seen in the log (polled every 5 ms)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pattern.search(self.log_text()):
                return time.time()
            if self.proc.poll() is not None:
                break
            time.sleep(0.005)
        raise RuntimeError(f"the daemon did not start:\n{self.log_text()}")

    def cpu(self) -> float:
        """CPU seconds so far, from /proc/PID/stat."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def end(self, sig: int, timeout: float = 60) -> float:
        """Send ``sig`` and reap the process; when it exited (its total CPU: exit_cpu)."""
        self.proc.send_signal(sig)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                self.proc.returncode = os.waitstatus_to_exitcode(status)
                self.exit_cpu = usage.ru_utime + usage.ru_stime
                break
            if time.monotonic() > deadline:
                self.proc.kill()
                deadline += 10
            time.sleep(0.002)
        if self.proc in c._children:
            c._children.remove(self.proc)
        return time.time()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc in c._children:
            c._children.remove(self.proc)

    def scrape(self) -> dict[str, float]:
        """The daemon's /metrics (unlabelled series only); empty when it does not answer."""
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.metrics, timeout=2)
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
            conn.close()
        except (OSError, http.client.HTTPException):
            return {}
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#") and "{" not in line:
                name, _, value = line.partition(" ")
                out[name] = float(value)
        return out

    def registry(self, limit: int) -> set[str]:
        """The ids registered in ``drill``, by one DISCOVER."""
        from rendezvous.framing import FrameDecoder
        from rendezvous.pb.live_pb2 import Message

        s = c.connect(self.port, 199)
        s.setblocking(True)
        s.settimeout(30)
        found: set[str] = set()
        try:
            # A reply over the frame limit comes as several REGISTER messages with the
            # request's id; a second DISCOVER's reply marks the end of the first's.
            s.sendall(c.frame(helpers.discover(NS, limit=limit, request_id=7)) + c.marker(8))
            decoder = FrameDecoder(1 << 30)
            while True:
                data = s.recv(1 << 20)
                if not data:
                    raise RuntimeError("the daemon closed the DISCOVER session")
                for payload in decoder.feed(data):
                    message = Message()
                    message.ParseFromString(payload)
                    if message.type == Message.ERROR:
                        raise RuntimeError(f"DISCOVER refused: {message.error.text}")
                    if message.type == Message.REGISTER and message.request_id == 7:
                        found.update(item.peer.id for item in message.register)
                    elif message.type == Message.REGISTER and message.request_id == 8:
                        return found
        finally:
            s.close()


# -- load generators --------------------------------------------------------------------


def generator(conn: Any, clients: list[tuple[int, list[str]]], watchers: list[list[str]],
              expected: list[str], ramp: int, retry: float, cap: float) -> None:  # fmt: skip
    """A load-generator process: ReconnectingClients on a Twisted reactor; commands over
    ``conn``. ``clients``: (peer index, server list) each; ``watchers``: server lists;
    ``retry``: seconds after which a refused registration is registered again (0: never,
    as the library does; an application can do it on `RegistrationRefused`); ``cap``: the
    clients' backoff cap (0: the library's)."""
    from twisted.internet import epollreactor

    if watchers:
        # On a small machine the watchers' pushes (every registration, to each of them)
        # must not take the CPU the clients reconnect with: real watchers have their own.
        os.nice(10)
    epollreactor.install()
    from twisted.internet import reactor

    load = Load(conn, reactor, clients, watchers, expected, ramp, retry, cap)
    reactor.addReader(_Pipe(conn, load.command))  # type: ignore[attr-defined]
    reactor.run(installSignalHandlers=False)  # type: ignore[attr-defined]


class _Pipe:
    """The driver's pipe as a reactor reader (an IReadDescriptor)."""

    def __init__(self, conn: Any, handle: Any) -> None:
        self.conn, self.handle = conn, handle

    def fileno(self) -> int:
        return int(self.conn.fileno())

    def doRead(self) -> None:
        while self.conn.poll():
            try:
                message = self.conn.recv()
            except EOFError:
                os._exit(0)
            self.handle(message)

    def connectionLost(self, reason: Any) -> None:
        os._exit(0)

    def logPrefix(self) -> str:
        return "driver"


def _short(reason: str) -> str:
    if "shutting down" in reason:
        return "goodbye (ERROR 400)"
    if "non-clean" in reason:
        return "connection lost (non-clean)"
    if "cleanly" in reason or "closed" in reason:
        return "connection closed"
    return reason[:60]


class Load:
    """The clients and watchers of one generator process, and what they saw, timed."""

    def __init__(self, conn: Any, reactor: Any, clients: list[tuple[int, list[str]]],
                 watchers: list[list[str]], expected: list[str], ramp: int,
                 retry: float, cap: float) -> None:  # fmt: skip
        from rendezvous.client import live

        self.conn, self.reactor, self.live = conn, reactor, live
        self.client_specs, self.watcher_specs = clients, watchers
        self.expected = frozenset(expected)
        self.ids = expected
        self.ramp, self.retry, self.cap = ramp, retry, cap
        self.mark = 0.0
        n, w = len(clients), len(watchers)
        self.clients: list[Any] = []
        self.reg_at = [0.0] * n  # latest REGISTER accepted
        self.lost_at = [0.0] * n  # latest session lost
        self.reg_refused = [False] * n  # refused, not (yet) registered again
        self.refusals = 0
        self.refusal_texts: collections.Counter[str] = collections.Counter()
        self.watchers: list[Any] = []
        self.w_ids: list[set[str]] = [set() for _ in range(w)]
        self.w_other: list[set[str]] = [set() for _ in range(w)]
        self.w_snap_at = [0.0] * w  # latest snapshot delivered
        self.w_lost_at = [0.0] * w
        self.w_right_since = [0.0] * w
        self.w_right = [False] * w
        self.in_flight = 0
        self.attempts: list[float] = []  # every connection attempt, when it started
        self.opened: list[float] = []  # attempts the daemon accepted, when
        self.failed: list[float] = []  # failed attempts (Lost, was_connected=False)
        self.lost_reasons: list[tuple[float, str]] = []  # sessions lost: when, why
        self.failures: list[tuple[float, str]] = []  # failed attempts: when, why

    def reply(self, *message: Any) -> None:
        self.conn.send(message)

    def command(self, message: tuple[Any, ...]) -> None:
        import traceback

        try:
            kind = message[0]
            if kind == "start":
                self.start().addErrback(lambda f: self.reply("error", f.getTraceback()))
            elif kind == "mark":
                self.mark = message[1]
                self.cpu_mark = c.self_cpu()
                self.reply("marked")
            elif kind == "status":
                self.reply("status", self.status())
            elif kind == "report":
                self.reply("report", self.report(message[1]))
            elif kind == "quit":
                os._exit(0)
        except Exception:
            self.reply("error", traceback.format_exc())

    # -- set-up ---------------------------------------------------------------------

    def dial(self, target: str, instrument: Any) -> Any:
        t = time.time()
        self.attempts.append(t)
        self.in_flight += 1
        d = self.live.connect(self.reactor, target)

        def opened(session: Any) -> Any:
            self.in_flight -= 1
            self.opened.append(time.time())
            instrument(session)
            return session

        def failed(failure: Any) -> Any:
            self.in_flight -= 1
            return failure

        return d.addCallbacks(opened, failed)

    def start(self) -> Any:
        from twisted.internet.defer import gatherResults, inlineCallbacks

        from rendezvous.client.reconnect import Backoff, ReconnectingClient

        @inlineCallbacks
        def run() -> Any:
            for first in range(0, len(self.client_specs), self.ramp):
                accepted = []
                for k in range(first, min(len(self.client_specs), first + self.ramp)):
                    index, servers = self.client_specs[k]
                    client = ReconnectingClient(
                        self.reactor,
                        servers,
                        lambda target, k=k: self.dial(target, lambda s, k=k: self._client(s, k)),
                        on_state=lambda event, k=k: self._client_state(event, k),
                        backoff=Backoff(cap=self.cap) if self.cap else None,
                    )
                    self.clients.append(client)
                    addr = helpers.tcp_addr(index % 250)
                    accepted.append(client.register(NS, self.ids[index], [addr]))
                    client.start()
                yield gatherResults(accepted, consumeErrors=True)
            ready = []
            for w, servers in enumerate(self.watcher_specs):
                watcher = ReconnectingClient(
                    self.reactor,
                    servers,
                    lambda target, w=w: self.dial(target, lambda s, w=w: self._watcher(s, w)),
                    on_state=lambda event, w=w: self._watcher_state(event, w),
                    backoff=Backoff(cap=self.cap) if self.cap else None,
                )
                self.watchers.append(watcher)
                ready.append(watcher.rendezvous(NS, lambda event, w=w: self._pushed(event, w)))
                watcher.start()
            yield gatherResults(ready, consumeErrors=True)
            gc.collect()
            gc.freeze()  # the population is long-lived: keep full collections off the drill
            self.reply("started", len(self.clients), len(self.watchers))

        return run()

    def _client(self, session: Any, k: int) -> None:
        register = session.register

        def stamp(result: Any) -> Any:
            self.reg_at[k] = time.time()
            self.reg_refused[k] = False
            return result

        session.register = lambda *a, **kw: register(*a, **kw).addCallback(stamp)

    def _client_state(self, event: Any, k: int) -> None:
        from rendezvous.client.reconnect import Lost, RegistrationRefused

        if isinstance(event, Lost):
            if event.was_connected:
                self.lost_at[k] = time.time()
                self.lost_reasons.append((time.time(), _short(event.reason)))
            else:
                self.failed.append(time.time())
                self.failures.append((time.time(), event.reason[:60]))
        elif isinstance(event, RegistrationRefused):
            # With retry_in the library asks again itself; without, it has let go.
            self.reg_refused[k] = event.retry_in is None
            self.refusals += 1
            self.refusal_texts[str(event.error)[:80]] += 1
            if self.retry:
                index = self.client_specs[k][0]
                client = self.clients[k]
                addr = helpers.tcp_addr(index % 250)
                self.reactor.callLater(
                    self.retry,
                    lambda: client.register(NS, self.ids[index], [addr]).addErrback(
                        lambda _: None  # told by another RegistrationRefused
                    ),
                )

    def _watcher(self, session: Any, w: int) -> None:
        rendezvous = session.rendezvous

        def stamp(result: Any) -> Any:
            self.w_snap_at[w] = time.time()
            return result

        session.rendezvous = lambda *a, **kw: rendezvous(*a, **kw).addCallback(stamp)

    def _watcher_state(self, event: Any, w: int) -> None:
        from rendezvous.client.reconnect import Lost

        if isinstance(event, Lost):
            if event.was_connected:
                self.w_lost_at[w] = time.time()
                self.lost_reasons.append((time.time(), _short(event.reason) + ", watcher"))
            else:
                self.failed.append(time.time())
                self.failures.append((time.time(), event.reason[:60] + ", watcher"))

    def _pushed(self, event: Any, w: int) -> None:
        peer_id = event.entry.peer_id
        ids = self.w_ids[w] if peer_id in self.expected else self.w_other[w]
        if event.kind == "register":
            ids.add(peer_id)
        else:
            ids.discard(peer_id)
        right = len(self.w_ids[w]) == len(self.expected) and not self.w_other[w]
        if right and not self.w_right[w]:
            self.w_right_since[w] = time.time()
        self.w_right[w] = right

    # -- what the driver asks -------------------------------------------------------------

    def _back(self, k: int) -> bool:
        return not self.reg_refused[k] and self.reg_at[k] >= self.lost_at[k]

    def _watcher_ok(self, w: int) -> bool:
        return self.w_right[w] and self.w_snap_at[w] >= self.w_lost_at[w]

    def status(self) -> dict[str, int]:
        n, w = len(self.clients), len(self.watchers)
        return {
            "clients_back": sum(1 for k in range(n) if self._back(k)),
            "watchers_right": sum(1 for i in range(w) if self._watcher_ok(i)),
            "refused": sum(self.reg_refused),
            "clients_up": sum(1 for client in self.clients if client.server is not None),
            "watchers_up": sum(1 for watcher in self.watchers if watcher.server is not None),
            "watchers_snapshot": sum(1 for i in range(w) if self.w_snap_at[i] >= self.w_lost_at[i]),
            "in_flight": self.in_flight,
        }

    def report(self, registry: frozenset[str]) -> dict[str, Any]:
        """``registry``: what the daemons hold at the end."""
        mark = self.mark
        moved = [k for k in range(len(self.clients)) if self.lost_at[k] >= mark]
        back = [self.reg_at[k] if self._back(k) else None for k in moved]
        lost = [self.lost_at[k] for k in moved]
        ready = []
        consistent = 0
        for w, watcher in enumerate(self.watchers):
            view = set(watcher.view(NS))
            consistent += view == registry
            # The view must match the library's own, not just this mirror of it.
            if not self._watcher_ok(w) or view != self.w_ids[w] | self.w_other[w]:
                ready.append(None)
            else:
                ready.append(max(mark, self.w_snap_at[w], self.w_right_since[w]))
        return {
            "back": back,
            "lost": lost,
            "not_back": sum(1 for k in range(len(self.clients)) if not self._back(k)),
            "watchers_consistent": consistent,
            "watchers_ready": ready,
            "attempts": [t for t in self.attempts if t >= mark],
            "opened": [t for t in self.opened if t >= mark],
            "failed": [t for t in self.failed if t >= mark],
            "lost_reasons": collections.Counter(r for t, r in self.lost_reasons if t >= mark),
            "failures": collections.Counter(r for t, r in self.failures if t >= mark),
            "refused": self.refusals,
            "refusal_texts": dict(self.refusal_texts),
            "cpu": c.self_cpu() - self.cpu_mark,
            "watchers": len(self.watchers),
        }


# -- the driver -------------------------------------------------------------------------


def rotate(items: list[str], first: int, flip: bool) -> list[str]:
    """``items`` starting at ``first``; the others reversed when ``flip``."""
    rest = [items[(first + j) % len(items)] for j in range(1, len(items))]
    return [items[first], *(reversed(rest) if flip else rest)]


def targets(ports: list[int], index: int) -> list[str]:
    """Client strports for ``ports``, bound to one of 127.0.0.2-201 (no source port runs dry)."""
    bind = c.source_ip(index)
    return [f"tcp:host=127.0.0.1:port={p}:bindAddress={bind}" for p in ports]


class Population:
    """The generator processes and what they hold."""

    def __init__(
        self, ports: list[int], n: int, watchers: int, args: Any, ids: list[str], retry: float = 0
    ):
        # Clients and watchers in separate processes: the watchers' pushes (every
        # registration, to each of them) must not delay the clients' reconnections.
        gens = max(1, min(args.generators, n))
        wgens = max(1, min(args.watcher_generators, watchers)) if watchers else 0
        specs: list[list[tuple[int, list[str]]]] = [[] for _ in range(gens)]
        wspecs: list[list[list[str]]] = [[] for _ in range(wgens)]
        for i in range(n):
            servers = rotate(targets(ports, i), i % len(ports), (i // len(ports)) % 2 == 1)
            specs[i % gens].append((i, servers))
        for w in range(watchers):
            servers = rotate(targets(ports, n + w), w % len(ports), (w // len(ports)) % 2 == 1)
            wspecs[w % wgens].append(servers)
        cap = args.backoff_cap
        self.workers = [c.Worker(generator, spec, [], ids, args.ramp, retry, cap) for spec in specs]
        self.workers += [
            c.Worker(generator, [], spec, ids, args.ramp, retry, cap) for spec in wspecs
        ]
        self.watcher_workers = self.workers[gens:]
        self.n, self.watchers, self.retry = n, watchers, retry

    def start(self, timeout: float) -> None:
        c.broadcast(self.workers, "start", timeout=timeout)

    def status(self) -> dict[str, int]:
        total: collections.Counter[str] = collections.Counter()
        for s in c.broadcast(self.workers, "status"):
            total.update(s[1])
        return dict(total)

    def wait_steady(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            s = self.status()
            if s["clients_back"] == self.n and s["watchers_right"] == self.watchers:
                return
            if time.monotonic() > deadline:
                raise c.BenchTimeout(f"the population never settled: {s}")
            time.sleep(0.05)

    def stop(self) -> None:
        for w in self.workers:
            w.stop()


def backoff_floor(downs: list[float], cap: float = 0, seed: int = 20) -> list[float]:
    """When each client would be back, in seconds after the daemon listens again, if
    connecting cost nothing: its schedule drawn with the library's own `Backoff` after
    losing a session that served (an immediate retry, refused, then full jitter from the
    1 s window on), the daemon gone for ``downs[k]`` seconds from client k's view."""
    import random

    from rendezvous.client.reconnect import Backoff

    rng = random.Random(seed)
    late = []
    for down in downs:
        backoff = Backoff(cap=cap, random=rng.random) if cap else Backoff(random=rng.random)
        backoff.attempts = 1  # what ReconnectingClient sets for its immediate retry
        t = 0.0
        while t < down:
            t += backoff.next_delay(t)  # the client's outage: t since it lost its session
        late.append(t - down)
    return sorted(late)


def histogram(times: list[float], t0: float) -> list[int]:
    """Counts per `BUCKET` from ``t0``."""
    if not times:
        return []
    last = max(0, int((max(times) - t0) / BUCKET))
    buckets = [0] * (last + 1)
    for t in times:
        if t >= t0:
            buckets[int((t - t0) / BUCKET)] += 1
    return buckets


def drill(
    kind: str,
    daemons: list[Daemon],
    victim: int,
    pop: Population,
    args: Any,
    restart: bool,
    backlog: int = 0,
) -> tuple[dict[str, Any], Daemon | None]:
    """One drill: end daemon ``victim`` (``kind``: term or kill), start it again (with
    ``backlog``) when ``restart``; measure until everything is back or ``--settle`` runs
    out."""
    old = daemons[victim]
    survivors = [d for i, d in enumerate(daemons) if i != victim]
    time.sleep(args.pause)  # every session up for over min_uptime: an immediate first retry
    t_mark = time.time()
    c.broadcast(pop.workers, "mark", t_mark)
    cpu_before = old.cpu()
    surv_cpu0 = sum(d.cpu() for d in survivors)
    base = sum(d.scrape().get("rendezvous_sessions_opened_total", 0) for d in survivors)
    others0 = c.system_cpu()
    kernel0 = tcp_counters()
    t_signal = time.time()
    t_exit = old.end(signal.SIGTERM if kind == "term" else signal.SIGKILL)
    shutdown_cpu = old.exit_cpu - cpu_before
    new = None
    if restart:
        new = Daemon(old.port, old.metrics, old.store, args, backlog)
        t0 = new.listening
        cpu0 = new.cpu()
        watched = [new, *survivors]
    else:
        t0 = t_signal
        cpu0 = 0.0
        watched = survivors
    # (t, sessions opened, registrations): what the daemons saw, scraped every BUCKET by
    # a thread of its own (the generators' status answers are late when they are busy).
    scrapes: list[tuple[float, float, float]] = [(t_signal, base, float("nan"))]
    stop_scraping = threading.Event()

    def scrape() -> None:
        while not stop_scraping.wait(max(0.0, scrapes[-1][0] + BUCKET - time.time())):
            t = time.time()
            metrics = [d.scrape() for d in watched]
            opened = sum(m.get("rendezvous_sessions_opened_total", 0) for m in metrics)
            scrapes.append((t, opened, metrics[0].get("rendezvous_registrations", float("nan"))))

    scraper = threading.Thread(target=scrape, daemon=True)
    scraper.start()
    # Poll the generators until all is back.
    min_wait = args.lease * 1.5 + 1 if not restart else 0.0
    deadline = time.monotonic() + args.settle
    done_at = None
    while time.monotonic() < deadline:
        time.sleep(0.05)
        s = pop.status()
        if s["clients_back"] == pop.n and s["watchers_right"] == pop.watchers:
            if done_at is None:
                done_at = time.time()
                cpu_done = (new.cpu() - cpu0) if new else 0.0
                surv_done = sum(d.cpu() for d in survivors) - surv_cpu0
            if time.time() - t_signal >= min_wait:
                break
        elif s["refused"] and not pop.retry and time.time() - t_signal >= min_wait:
            break  # refused registrations are dropped by the library: they never come back
        else:
            done_at = None
    if done_at is None:
        cpu_done = (new.cpu() - cpu0) if new else 0.0
        surv_done = sum(d.cpu() for d in survivors) - surv_cpu0
    stop_scraping.set()
    scraper.join()
    t_end = time.time()
    ours = shutdown_cpu + (new.cpu() if new else 0.0) + sum(d.cpu() for d in survivors) - surv_cpu0
    others = c.system_cpu() - others0
    kernel = {k: v - kernel0.get(k, 0) for k, v in tcp_counters().items()}
    registry = watched[0].registry(pop.n + 1000)
    reports = [r[1] for r in c.broadcast(pop.workers, "report", frozenset(registry))]
    final = [d.scrape() for d in watched]

    back = [t for r in reports for t in r["back"]]
    ready = [t for r in reports for t in r["watchers_ready"]]
    moved = len(back)
    attempts = sorted(t for r in reports for t in r["attempts"])
    opened = sorted(t for r in reports for t in r["opened"])
    failed = sorted(t for r in reports for t in r["failed"])
    reasons: collections.Counter[str] = collections.Counter()
    texts: collections.Counter[str] = collections.Counter()
    failures: collections.Counter[str] = collections.Counter()
    for r in reports:
        reasons.update(r["lost_reasons"])
        failures.update(r["failures"])
        texts.update(r["refusal_texts"])
    missing = sum(r["not_back"] for r in reports)
    wrong = sum(1 for t in ready if t is None)
    back_s = sorted(t - t0 for t in back if t is not None)
    ready_s = sorted(t - t0 for t in ready if t is not None)
    accepted_hist = histogram(opened, t0)
    attempt_hist = histogram(attempts, t_signal)
    daemon_hist = [max(0.0, b[1] - a[1]) / (b[0] - a[0]) for a, b in itertools.pairwise(scrapes)]
    opened_after = sum(1 for t in opened if t >= t0)
    cpu = cpu_done + surv_done
    span = max(back_s[-1] if back_s else 0.0, ready_s[-1] if ready_s else 0.0)
    # The same clients, the same outage as each saw it (from its loss to the new daemon
    # listening), at no cost: what the backoff alone allows.
    floor = backoff_floor([max(0.0, t0 - t) for r in reports for t in r["lost"]], args.backoff_cap)
    result = {
        "floor_p50_s": c.percentile(floor, 50) if restart else float("nan"),
        "floor_p99_s": c.percentile(floor, 99) if restart else float("nan"),
        "floor_max_s": floor[-1] if floor and restart else float("nan"),
        "floor_over_target": sum(1 for t in floor if t > args.target) if restart else 0,
        "over_target": sum(1 for t in back_s if t > args.target),
        "drill": kind,
        "backlog": backlog,
        "restart": restart,
        "downtime_s": (t0 - t_signal) if restart else float("nan"),
        "exit_s": t_exit - t_signal,
        "shutdown_cpu_s": shutdown_cpu,
        "moved": moved,
        "back_max_s": back_s[-1] if back_s and not missing else float("inf"),
        "back_p50_s": c.percentile(back_s, 50),
        "back_p99_s": c.percentile(back_s, 99),
        "views_max_s": ready_s[-1] if ready_s and not wrong else float("inf"),
        "views_p50_s": c.percentile(ready_s, 50),
        "not_back": missing,
        "watchers_wrong": wrong,
        "watchers_inconsistent": pop.watchers - sum(r["watchers_consistent"] for r in reports),
        "registry_size": len(registry),
        "registry_right": registry == set(pop_ids(pop.n)),
        "accepted": opened_after,
        "attempts": len(attempts),
        "failed_connects": len(failed),
        "accepted_peak_per_s": max(accepted_hist, default=0) / BUCKET,
        "attempt_peak_per_s": max(attempt_hist, default=0) / BUCKET,
        "daemon_peak_per_s": max(daemon_hist, default=0.0),
        "accepted_mean_per_s": opened_after / span if span > 0 else float("nan"),
        "daemon_cpu_s": cpu,
        "cpu_per_reconnect_ms": cpu / opened_after * 1000 if opened_after else float("nan"),
        "generator_cpu_s": sum(r["cpu"] for r in reports if not r["watchers"]),
        "watcher_process_cpu_s": sum(r["cpu"] for r in reports if r["watchers"]),
        "others_cpu_s": others - ours - sum(r["cpu"] for r in reports),
        "others_share": (others - ours - sum(r["cpu"] for r in reports)) / (t_end - t_signal),
        "registrations_refused": sum(r["refused"] for r in reports),
        "refusal_texts": dict(texts),
        "lost_reasons": dict(reasons),
        "failures": dict(failures),
        "kernel": kernel,
        "last_status": s,
        "slow_subscribers_dropped": sum(
            m.get("rendezvous_slow_subscribers_dropped_total", 0) for m in final
        ),
        "accepted_per_bucket": accepted_hist,
        "attempts_per_bucket": attempt_hist,
        "failed_per_bucket": histogram(failed, t_signal),
        "daemon_opened_per_s": daemon_hist,
        "scrapes": scrapes,
        "settled": done_at is not None,
    }
    return result, new


_IDS: dict[int, list[str]] = {}


def pop_ids(n: int) -> list[str]:
    if n not in _IDS:
        _IDS[n] = [helpers.peer_id(f"drill-{i}") for i in range(n)]
    return _IDS[n]


def single(args: Any) -> list[dict[str, Any]]:
    """(a): one daemon, restarted --runs times each way."""
    port, metrics = free_ports(2)
    daemon = Daemon(port, metrics, "memory", args)

    def populate() -> Population:
        pop = Population([port], args.clients, args.watchers, args, pop_ids(args.clients))
        pop.start(args.settle + args.clients / 100)
        pop.wait_steady(args.settle)
        return pop

    results = []
    pop = None
    try:
        pop = populate()
        for _ in range(args.runs):
            for backlog in args.backlogs:
                for kind in ("term", "kill"):
                    result, new = drill(kind, [daemon], 0, pop, args, True, backlog)
                    assert new is not None
                    daemon = new
                    results.append(result)
                    print(
                        f"  (a) {kind}, backlog {backlog or 50}: {summary(result)}",
                        file=sys.stderr,
                        flush=True,
                    )
                    if not result["settled"]:
                        # What did not come back may take minutes: start afresh.
                        pop.stop()
                        pop = None
                        pop = populate()
    finally:
        if pop is not None:
            pop.stop()
        daemon.stop()
    return results


def fleet(args: Any, redis_path: str) -> list[dict[str, Any]]:
    """(b): three daemons on one Redis, one killed per run."""
    import redis_fleet

    results = []
    variants = [0.0, args.retry_refused] if args.retry_refused else [0.0]
    for _, retry in ((r, v) for r in range(args.runs) for v in variants):
        redis = redis_fleet.RedisServer(redis_path)
        daemons: list[Daemon] = []
        pop = None
        try:
            ports = free_ports(6)
            for p, m in zip(ports[:3], ports[3:], strict=True):
                daemons.append(Daemon(p, m, redis.url, args, args.backlogs[0]))
            ports = ports[:3]
            n = args.fleet_clients
            pop = Population(ports, n, args.watchers, args, pop_ids(n), retry)
            pop.start(args.settle + n / 50)
            pop.wait_steady(args.settle)
            redis_cpu0 = redis.cpu()
            result, _ = drill("kill", daemons, 0, pop, args, restart=False)
            result["redis_cpu_s"] = redis.cpu() - redis_cpu0
            result["retry_refused_s"] = retry
            results.append(result)
            print(f"  (b) kill 1 of 3, retry {retry:g}: {summary(result)}", file=sys.stderr)
        finally:
            if pop is not None:
                pop.stop()
            for d in daemons:
                d.stop()
            redis.stop()
    return results


def summary(r: dict[str, Any]) -> str:
    return (
        f"back {r['back_max_s']:.2f} s, views {r['views_max_s']:.2f} s, "
        f"{r['not_back']} not back, {r['watchers_wrong']} watchers wrong, "
        f"{r['registrations_refused']} refused, peak {r['accepted_peak_per_s']:.0f}/s, "
        f"kernel {r['kernel']}"
        + ("" if r["settled"] else f"; NOT SETTLED: {r['last_status']}, {r['failures']}")
    )


def secs(v: float) -> str:
    if v == float("inf"):
        return "never"
    return "-" if v != v else f"{v:.2f}"


KEYS = (
    "downtime_s",
    "floor_p50_s",
    "floor_p99_s",
    "floor_max_s",
    "floor_over_target",
    "over_target",
    "back_p50_s",
    "back_max_s",
    "views_max_s",
    "not_back",
    "watchers_wrong",
    "accepted",
    "failed_connects",
    "accepted_mean_per_s",
    "accepted_peak_per_s",
    "daemon_peak_per_s",
    "attempt_peak_per_s",
    "overflows",
    "daemon_cpu_s",
    "cpu_per_reconnect_ms",
    "exit_s",
    "shutdown_cpu_s",
    "generator_cpu_s",
    "watcher_process_cpu_s",
    "registrations_refused",
    "others_share",
)


def med(results: list[dict[str, Any]]) -> dict[str, float]:
    for r in results:
        r["overflows"] = r["kernel"].get("ListenOverflows", float("nan"))
    return {k: c.median([r[k] for r in results]) for k in KEYS}


def outcome_row(label: str, results: list[dict[str, Any]], target: float) -> list[list[Any]]:
    if not results:
        return []
    m = med(results)
    worst_back = max(r["back_max_s"] for r in results)
    worst_views = max(r["views_max_s"] for r in results)
    met = (
        "yes"
        if worst_back <= target
        and worst_views <= target
        and all(not r["watchers_wrong"] and r["registry_right"] for r in results)
        else "no"
    )
    return [
        [
            label,
            secs(m["downtime_s"]),
            secs(m["back_p50_s"]),
            secs(m["back_max_s"]),
            secs(m["views_max_s"]),
            f"{secs(m['floor_p50_s'])} / {secs(m['floor_p99_s'])} / {secs(m['floor_max_s'])}",
            f"{int(m['over_target'])} / "
            + (str(int(m["floor_over_target"])) if m["downtime_s"] == m["downtime_s"] else "-"),
            int(m["not_back"]),
            int(m["watchers_wrong"]),
            f"{secs(worst_back)} / {secs(worst_views)}",
            met,
        ]
    ]


OUTCOME = [
    "drill",
    "down s",
    "regs back p50 s",
    "all regs back s",
    "all views right s",
    "backoff alone: p50 / p99 / all s",
    "clients back late: measured / backoff alone",
    "regs not back",
    "watchers wrong",
    "worst run: regs / views s",
    "<= target",
]


def storm_row(label: str, results: list[dict[str, Any]]) -> list[list[Any]]:
    if not results:
        return []
    m = med(results)
    return [
        [
            label,
            int(m["accepted"]),
            int(m["failed_connects"]),
            m["accepted_mean_per_s"],
            m["accepted_peak_per_s"],
            m["daemon_peak_per_s"],
            int(m["overflows"]) if m["overflows"] == m["overflows"] else "-",
            m["daemon_cpu_s"],
            m["cpu_per_reconnect_ms"],
            secs(m["exit_s"]),
            m["shutdown_cpu_s"],
            f"{m['generator_cpu_s']:.1f} / {m['watcher_process_cpu_s']:.1f}",
            f"{m['others_share']:.0%}",
        ]
    ]


STORM = [
    "drill",
    "accepted conns",
    "failed connects",
    "mean accepted/s",
    "peak accepted/s",
    "peak opened/s (/metrics)",
    "listen overflows",
    "daemon CPU s",
    "CPU ms per reconnect",
    "old daemon exit s",
    "its shutdown CPU s",
    "generator CPU s: clients / watchers",
    "other processes' CPU (of a core)",
]


def main(args: Any) -> int:
    if args.quick:
        args.clients, args.watchers, args.fleet_clients, args.runs = 50, 5, 30, 1
        args.lease, args.pause = 1.5, 1.2
        args.generators = min(args.generators, 2)
    started = time.monotonic()
    for n in {args.clients, args.fleet_clients}:
        pop_ids(n)  # computed once here, inherited by the forked generators
    results: dict[str, list[dict[str, Any]]] = {}
    if "single" in args.drills:
        results["single"] = single(args)
    if "fleet" in args.drills:
        import redis_fleet

        redis_path = redis_fleet.redis_server_path()
        if redis_path:
            results["fleet"] = fleet(args, redis_path)
        else:
            print("(redis-server not found: the fleet drill is skipped)", file=sys.stderr)
    elapsed = time.monotonic() - started

    groups: list[tuple[str, str, list[dict[str, Any]]]] = []
    single_results = results.get("single", [])
    for backlog in args.backlogs:
        for kind, label in (("term", "SIGTERM"), ("kill", "kill -9")):
            picked = [r for r in single_results if r["drill"] == kind and r["backlog"] == backlog]
            groups.append(("a", f"{label}, backlog {backlog or 50}", picked))
    fleet_results = results.get("fleet", [])
    groups.append(("b", "kill -9 1 of 3", [r for r in fleet_results if not r["retry_refused_s"]]))
    groups.append(
        (
            "b",
            f"same, refused retried after {args.retry_refused:g} s",
            [r for r in fleet_results if r["retry_refused_s"]],
        )
    )
    outcome = list(OUTCOME)
    outcome[-1] = f"<= {args.target:g} s"
    late = outcome.index("clients back late: measured / backoff alone")
    outcome[late] = f"clients back after {args.target:g} s: measured / backoff alone"
    for part, title in (
        (
            "a",
            f"Restart drill (a): one daemon restarted on its port, {args.clients:,} clients + "
            f"{args.watchers} watchers, median of {args.runs} run(s); times from the new "
            "daemon listening"
            + (
                f"; the clients' backoff capped at {args.backoff_cap:g} s"
                if args.backoff_cap
                else ""
            ),
        ),
        (
            "b",
            f"Restart drill (b): 3 daemons on Redis (--lease {args.lease:g}), "
            f"{args.fleet_clients:,} clients + {args.watchers} watchers, one killed (kill -9), "
            f"median of {args.runs} run(s); times from the kill",
        ),
    ):
        rows = [
            row
            for g, label, rs in groups
            if g == part
            for row in outcome_row(label, rs, args.target)
        ]
        if rows:
            print(c.table(title, outcome, rows))
            storm = [row for g, label, rs in groups if g == part for row in storm_row(label, rs)]
            print(c.table("  the reconnections, as the daemons saw them", STORM, storm))
            print()
    for label, rs in (("(a)", single_results), ("(b)", fleet_results)):
        for r in rs:
            notes = []
            if r["registrations_refused"]:
                notes.append(
                    f"{r['registrations_refused']} registrations refused {r['refusal_texts']}"
                )
            if r["slow_subscribers_dropped"]:
                notes.append(f"{r['slow_subscribers_dropped']:.0f} slow subscribers dropped")
            if not r["registry_right"]:
                notes.append(f"registry holds {r['registry_size']} ids, not the expected set")
            if r["watchers_inconsistent"]:
                notes.append(
                    f"{r['watchers_inconsistent']} watchers' views differ from the registry"
                )
            if notes:
                retry = f", retry {r['retry_refused_s']:g} s" if r.get("retry_refused_s") else ""
                where = f", backlog {r['backlog'] or 50}" if label == "(a)" else retry
                print(f"{label} {r['drill']}{where}: " + "; ".join(notes))
    print(
        f"({elapsed:.0f} s; daemons on CPU 0, generators on the rest; failed connects: "
        "attempts refused while no daemon listened; listen overflows: the kernel's "
        "TcpExt ListenOverflows over the drill)"
    )
    c.write_json(
        args.json,
        {"scenario": "restart_drill", "args": vars(args), "results": results, "seconds": elapsed},
    )
    return 0  # the figures are the result: no target is asserted


if __name__ == "__main__":
    p = c.base_parser(__doc__, timeout=900, profile=False)
    for action in p._actions:  # common options this scenario has no use for
        if action.dest in ("servers", "plot"):
            action.help = argparse.SUPPRESS
    p.add_argument("--clients", type=int, default=10_000, help="(a) live clients")
    p.add_argument("--watchers", type=int, default=100, help="watchers (RENDEZVOUS)")
    p.add_argument("--fleet-clients", type=int, default=3_000, help="(b) live clients")
    p.add_argument("--generators", type=int, default=2, help="load-generator processes")
    p.add_argument("--ramp", type=int, default=200, help="clients started at once at set-up")
    p.add_argument(
        "--backlogs",
        default="4096,0",
        help="(a) comma-separated listen backlogs of the restarted daemon, a drill each "
        "(0: Twisted's default, 50)",
    )
    p.add_argument(
        "--watcher-generators", type=int, default=1, help="load-generator processes of watchers"
    )
    p.add_argument("--lease", type=float, default=10.0, help="(b) the daemons' --lease")
    p.add_argument(
        "--retry-refused",
        type=float,
        default=1.0,
        help="(b) also run the drill with refused registrations registered again after this "
        "many seconds, as an application can on RegistrationRefused (0: not)",
    )
    p.add_argument("--settle", type=float, default=30.0, help="longest wait for a drill, s")
    p.add_argument("--pause", type=float, default=2.0, help="seconds steady before a drill")
    p.add_argument("--target", type=float, default=5.0, help="seconds (issue #20)")
    p.add_argument(
        "--backoff-cap",
        type=float,
        default=0,
        help="the clients' Backoff cap in seconds (0: the library's default, 30)",
    )
    p.add_argument("--keep-logs", metavar="DIR", help="keep the daemons' logs in DIR")
    p.add_argument("--drills", default="single,fleet", help="comma-separated: single, fleet")
    parsed = p.parse_args()
    parsed.backlogs = [int(b) for b in parsed.backlogs.split(",") if b.strip()]
    c.main_wrapper(main, parsed)
