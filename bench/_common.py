"""Shared machinery of the bench scripts: servers, load-generator processes, CPU, tables.

Every scenario script starts the server under test (our daemon, then the bare-Twisted
baseline of ``bench/baseline_server.py``) pinned to CPU 0, drives it from load-generator
processes pinned to the other CPU(s), measures both sides' CPU time, and prints one table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import re
import resource
import select
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DOCS = os.path.join(ROOT, "docs")
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import psutil  # noqa: E402

from rendezvous.varint import encode_uvarint  # noqa: E402
from tests import helpers  # noqa: E402

SERVER_CPUS = {0}
_ALL = set(range(os.cpu_count() or 1))
CLIENT_CPUS = (_ALL - SERVER_CPUS) or _ALL
_LISTENING = re.compile(rb"listening on tcp [0-9.]+:(\d+)")
_children: list[Any] = []


class BenchTimeout(Exception):
    pass


# -- process hygiene -----------------------------------------------------------------


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _alarm(signum: int, frame: Any) -> None:
    raise BenchTimeout("hard timeout reached")


def install_timeout(seconds: float) -> None:
    """Bound the whole script: SIGALRM raises, ``cleanup`` kills what we started."""
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    signal.signal(signal.SIGTERM, _alarm)


def cleanup() -> None:
    while _children:
        child = _children.pop()
        try:
            if isinstance(child, subprocess.Popen):
                if child.poll() is None:
                    child.kill()
                child.wait(5)
            else:
                if child.is_alive():
                    child.kill()
                child.join(5)
        except Exception:
            pass


def pin(cpus: Iterable[int], pid: int = 0) -> None:
    with contextlib.suppress(OSError):
        os.sched_setaffinity(pid, set(cpus))


# -- servers -------------------------------------------------------------------------


PROFILE: dict[str, str] = {}
"""Set "cpu" (cProfile stats path) or "memory" (tracemalloc report path) to profile our
daemon in the servers started while it is set."""

_TRACEMALLOC = """import signal, tracemalloc
tracemalloc.start(4)
_base = []
def _dump(*_):
    snap = tracemalloc.take_snapshot()
    if not _base:
        _base.append(snap)
        return
    diff = snap.compare_to(_base[0], "lineno")
    with open({path!r}, "w") as f:
        total = sum(d.size_diff for d in diff)
        f.write(f"traced growth since the empty server: {{total / 2**20:.1f}} MiB\\n")
        for d in diff[:20]:
            f.write(f"{{d.size_diff / 1024:10.0f}} KiB {{d.count_diff:+9d}} blocks  "
                    f"{{d.traceback[0]}}\\n")
signal.signal(signal.SIGUSR2, _dump)
"""


def profiled(kind: str, path: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` with our daemon profiled: ``kind`` is "cpu" or "memory"."""
    PROFILE[kind] = path = os.path.abspath(path)
    if os.path.exists(path):
        os.unlink(path)
    try:
        return fn()
    finally:
        PROFILE.pop(kind, None)


TWISTD_CODE = "from twisted.scripts.twistd import run; run()"


def twistd_argv(*args: str, code: str = TWISTD_CODE) -> list[str]:
    """``twistd -n`` with ``args``, logging to standard output (``code`` starts it:
    a profiler or tracemalloc may come first)."""
    return [sys.executable, "-c", code, "-n", "--pidfile=", "--logfile=-", *args]


def child_env() -> dict[str, str]:
    """Our environment, with this checkout first on the children's path."""
    return dict(os.environ, PYTHONPATH=ROOT)


def spawn_logged(
    argv: Sequence[str],
    prefix: str,
    *,
    cwd: str = "/tmp",
    env: dict[str, str] | None = None,
    log_dir: str | None = None,
    keep: bool = False,
    pinned: bool = True,
) -> tuple[subprocess.Popen[bytes], Any]:
    """Start ``argv`` with its output in a temporary log file (gone with the file object
    returned, unless ``keep``), its descriptor limit raised, on `SERVER_CPUS` when
    ``pinned``, and killed by `cleanup`."""
    import tempfile

    log = tempfile.NamedTemporaryFile(  # noqa: SIM115
        prefix=prefix, suffix=".log", dir=log_dir, delete=not keep
    )
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=raise_fd_limit,
    )
    _children.append(proc)
    if pinned:
        pin(SERVER_CPUS, proc.pid)
    return proc, log


class Server:
    """A server process under test: ours (``twistd rendezvous``) or the baseline."""

    def __init__(
        self,
        kind: str,
        extra: Sequence[str] = (),
        profile: str | None = None,
        workers: int = 0,
        unpinned: bool = False,
    ):
        """``workers``: our daemon with that many worker processes, left free to use
        every CPU (a single process is pinned to `SERVER_CPUS`, unless ``unpinned``)."""
        self.kind = kind
        self.graceful = bool(profile or PROFILE)
        if kind == "rendezvous":
            profile = profile or PROFILE.get("cpu")
            code = TWISTD_CODE
            if PROFILE.get("memory"):
                code = _TRACEMALLOC.format(path=PROFILE["memory"]) + code
            argv = twistd_argv(code=code)
            if profile:
                argv += ["--profile", profile, "--profiler", "cprofile", "--savestats"]
            argv += [
                "rendezvous",
                "--listen",
                "tcp:0:interface=127.0.0.1:backlog=4096",
                "--max-sessions",
                "1000000",
                *extra,
            ]
            if workers:
                argv += ["--workers", str(workers)]
        elif kind in ("baseline", "baseline-idle"):
            argv = [sys.executable, os.path.join(HERE, "baseline_server.py"), "--port", "0"]
            if kind == "baseline-idle":
                argv.append("--idle")
        else:
            raise ValueError(kind)
        # The log goes with this object; the server's log is read back by log_text().
        self.proc, self.log = spawn_logged(
            argv, f"bench-{kind}-", env=child_env(), pinned=not (workers or unpinned)
        )
        self.port = self._wait_listening()
        self.ps = psutil.Process(self.proc.pid)
        self.workers = workers
        if workers:
            self._wait_workers(workers)

    def _wait_workers(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.log_text().count(" started (pid ") < count:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"{count} workers did not start:\n{self.log_text()}")
            time.sleep(0.05)

    def processes(self) -> list[psutil.Process]:
        """The daemon and its worker processes."""
        if not self.workers:
            return [self.ps]
        return [self.ps, *self.ps.children(recursive=True)]

    def log_text(self) -> str:
        with open(self.log.name, "rb") as f:
            return f.read().decode(errors="replace")

    def _wait_listening(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = _LISTENING.search(self.log_text().encode())
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"{self.kind} did not start:\n{self.log_text()}")

    def cpu(self) -> float:
        """CPU seconds of the daemon (and its workers)."""
        total = 0.0
        for ps in self.processes():
            with contextlib.suppress(psutil.Error):
                t = ps.cpu_times()
                total += t.user + t.system
        return total

    def rss(self) -> int:
        """Resident bytes of the daemon (and its workers)."""
        return sum(ps.memory_info().rss for ps in self.processes())

    def main_rss(self) -> int:
        """Resident bytes of the daemon's main process alone."""
        return self.ps.memory_info().rss

    def stop(self) -> None:
        if self.proc.poll() is None and not self.graceful:
            self.proc.kill()  # nothing to save: skip closing every session one by one
        if self.proc.poll() is None:
            # SIGTERM: a shell starts background jobs with SIGINT ignored, and so would we.
            self.proc.send_signal(signal.SIGTERM)
            try:
                # A profiled daemon writes its stats on the way out, which takes a while.
                self.proc.wait(240 if self.graceful else 20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc in _children:
            _children.remove(self.proc)

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            tail = "\n".join(self.log_text().splitlines()[-20:])
            raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}:\n{tail}")


# -- load generator processes ----------------------------------------------------------


class Worker:
    """A load-generator process pinned to the client CPU(s); commands over a pipe."""

    def __init__(self, target: Callable[..., None], *args: Any):
        ctx = multiprocessing.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(target, child, *args), daemon=True)
        self.proc.start()
        _children.append(self.proc)

    def send(self, *msg: Any) -> None:
        self.conn.send(msg)

    def recv(self, timeout: float = 120) -> Any:
        if not self.conn.poll(timeout):
            raise BenchTimeout("load generator did not answer")
        reply = self.conn.recv()
        if isinstance(reply, tuple) and reply and reply[0] == "error":
            raise RuntimeError(f"load generator failed: {reply[1]}")
        return reply

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(("quit",))
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        if self.proc in _children:
            _children.remove(self.proc)


def _worker_main(target: Callable[..., None], conn: Any, *args: Any) -> None:
    import traceback

    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.setitimer(signal.ITIMER_REAL, 0)
    pin(CLIENT_CPUS)
    raise_fd_limit()
    try:
        target(conn, *args)
    except Exception:
        conn.send(("error", traceback.format_exc()))


def system_cpu() -> float:
    """CPU seconds used by everything on the machine so far (from /proc/stat)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
    except OSError:
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def broadcast(workers: Sequence[Worker], *msg: Any, timeout: float = 120) -> list[Any]:
    for w in workers:
        w.send(*msg)
    return [w.recv(timeout) for w in workers]


def split(n: int, parts: int) -> list[int]:
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


# -- client sockets ---------------------------------------------------------------------


def source_ip(index: int) -> str:
    """Spread connections over 127.0.0.2 … 127.0.0.201 so no source-port range runs dry."""
    return f"127.0.0.{2 + index % 200}"


def connect(port: int, index: int = 0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.bind((source_ip(index), 0))
    s.connect(("127.0.0.1", port))
    s.setblocking(False)
    return s


class FrameCounter:
    """Counts whole varint-framed messages in a byte stream; keeps the last complete one."""

    __slots__ = ("buf", "frames")

    def __init__(self) -> None:
        self.buf = b""
        self.frames = 0

    def feed(self, data: bytes) -> int:
        buf = self.buf + data if self.buf else data
        offset, end, n = 0, len(buf), 0
        while offset < end:
            length, shift, i = 0, 0, offset
            while True:
                if i >= end:
                    length = -1
                    break
                b = buf[i]
                length |= (b & 0x7F) << shift
                i += 1
                if b < 0x80:
                    break
                shift += 7
            if length < 0 or i + length > end:
                break
            offset = i + length
            n += 1
        self.buf = buf[offset:] if offset < end else b""
        self.frames += n
        return n


def frame(message: Any) -> bytes:
    payload = message.SerializeToString()
    return encode_uvarint(len(payload)) + payload


def marker(request_id: int = 1, namespace: str = "bench-marker") -> bytes:
    """A DISCOVER in an empty namespace: its reply proves every earlier frame was handled."""
    return frame(helpers.discover(namespace, limit=1, request_id=request_id))


class Epoll:
    """Minimal epoll loop over many non-blocking sockets."""

    def __init__(self) -> None:
        self.ep = select.epoll()
        self.socks: dict[int, socket.socket] = {}

    def add(self, s: socket.socket, events: int = select.EPOLLIN) -> None:
        self.socks[s.fileno()] = s
        self.ep.register(s.fileno(), events)

    def modify(self, s: socket.socket, events: int) -> None:
        self.ep.modify(s.fileno(), events)

    def poll(self, timeout: float) -> list[tuple[int, int]]:
        return self.ep.poll(timeout, 4096)

    def close(self) -> None:
        for s in self.socks.values():
            s.close()
        self.socks.clear()
        self.ep.close()


def send_all(s: socket.socket, data: bytes, deadline: float) -> None:
    """Blocking-style send on a non-blocking socket."""
    view = memoryview(data)
    while view:
        try:
            n = s.send(view)
            view = view[n:]
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise BenchTimeout("send stalled") from None
            select.select([], [s], [], 0.5)


def wait_frames(
    ep: Epoll, counters: dict[int, FrameCounter], want: dict[int, int], deadline: float
) -> None:
    """Read until every fd in ``want`` has seen at least that many frames."""
    missing = {fd for fd, n in want.items() if counters[fd].frames < n}
    while missing:
        if time.monotonic() > deadline:
            raise BenchTimeout(f"{len(missing)} sockets still waiting for replies")
        for fd, _ev in ep.poll(0.5):
            s = ep.socks[fd]
            try:
                data = s.recv(262144)
            except BlockingIOError:
                continue
            if not data:
                raise RuntimeError("server closed a connection")
            c = counters[fd]
            c.feed(data)
            if fd in missing and c.frames >= want[fd]:
                missing.discard(fd)


# -- results -----------------------------------------------------------------------------


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def percentile(xs: Sequence[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def fmt(v: Any) -> str:
    if isinstance(v, float):
        if v != v:
            return "-"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "+".join("-" * (w + 2) for w in widths)
    out = [title, line]
    out.append("|".join(f" {h:<{w}} " for h, w in zip(headers, widths, strict=True)))
    out.append(line.replace("-", "="))
    for r in cells:
        out.append("|".join(f" {c:>{w}} " for c, w in zip(r, widths, strict=True)))
    out.append(line)
    return "\n".join(out)


def machine() -> dict[str, Any]:
    import platform

    from google.protobuf import __version__ as pbv
    from google.protobuf.internal import api_implementation

    import twisted

    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    revision = "?"
    try:
        head = subprocess.run(
            ["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", ROOT, "diff-index", "--quiet", "HEAD", "--", "rendezvous"],
            capture_output=True,
        ).returncode
        revision = head + (" + uncommitted changes in rendezvous/" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        pass
    return {
        "revision": revision,
        "nproc": os.cpu_count(),
        "cpu": model,
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "twisted": twisted.__version__,
        "protobuf": pbv,
        "protobuf_backend": api_implementation.Type(),
    }


def base_parser(doc: str, timeout: float, profile: bool = True) -> argparse.ArgumentParser:
    """The options every scenario has; ``profile``: whether it can profile our daemon."""
    p = argparse.ArgumentParser(description=doc)
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    p.add_argument("--runs", type=int, default=3, help="runs per server; medians are quoted")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON here")
    p.add_argument("--plot", metavar="PNG", help="write a plot here (needs matplotlib)")
    p.add_argument("--timeout", type=float, default=timeout, help="hard limit, seconds")
    p.add_argument(
        "--servers", default="rendezvous,baseline", help="comma-separated: rendezvous, baseline"
    )
    if profile:
        p.add_argument(
            "--profile",
            metavar="PATH",
            help="run our daemon under cProfile once more and save the stats here",
        )
    return p


def write_json(path: str | None, data: dict[str, Any]) -> None:
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump({"machine": machine(), **data}, f, indent=2)


def pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed: no plot written)", file=sys.stderr)
        return None
    return plt


def median_round(rounds: Sequence[dict[str, Any]], key: str = "max_ms") -> dict[str, Any]:
    """The round whose ``key`` is the median: the one a plot shows as typical."""
    ordered = sorted(rounds, key=lambda r: r[key])
    return ordered[len(ordered) // 2]


def plot_deliveries(
    path: str, series: dict[str, list[float]], title: str, target_ms: float | None = None
) -> None:
    """Delivery times as cumulative curves (share of subscribers reached), one per series."""
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for label, latencies in series.items():
        ax.plot(
            latencies, [(i + 1) / len(latencies) * 100 for i in range(len(latencies))], label=label
        )
    if target_ms is not None:
        ax.axvline(target_ms, color="grey", ls="--", label="target")
    ax.set_xlabel("delivery time after the REGISTER was sent (ms)")
    ax.set_ylabel("subscribers reached (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def summarise_profile(path: str, top: int = 15) -> str:
    import io
    import pstats

    if not os.path.exists(path):
        return "(the profiled daemon wrote no stats)"
    out = io.StringIO()
    stats = pstats.Stats(path, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main_wrapper(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> None:
    install_timeout(args.timeout)
    code = 1
    try:
        code = run(args)
    except BenchTimeout as e:
        print(f"bench aborted: {e}", file=sys.stderr)
        code = 2
    finally:
        cleanup()
    sys.exit(code)
