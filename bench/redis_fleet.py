"""Scenario 7: the Redis store beside the memory store: REGISTER/s, DISCOVER/s, fan-out,
and the ceiling of the same Redis for the scripts the daemon runs.

A private ``redis-server`` (no persistence, temporary directory, free loopback port) is
started for the run and flushed before every measurement.

(a) REGISTER/s: the load of scenario 1 (``register_throughput.py``: pipelined chunks of
REGISTER frames per session, each closed by a DISCOVER in an empty namespace whose reply
proves it was handled), against one daemon with ``--store redis://…`` and against one
with the memory store. The first pass registers every session's ids once (new
registrations, timed on their own); later passes repeat them (counted for ``--seconds``
after a warm-up). The default is smaller than scenario 1's (100 sessions x 50 ids x 2
chunks: 10,000 REGISTERs in flight, not 200,000).

(a') DISCOVER/s: scenario 3's load (``discover_latency.py``): ``--clients`` sessions with
``--depth`` DISCOVERs (limit ``--limit``) in flight each, in a namespace of
``--discover-size`` registrations.

(c) the ceiling: ``redis-benchmark`` runs the daemon's own scripts on the same
``redis-server`` (pinned where the daemon runs, 16 commands pipelined on 2 connections):
the REGISTER batch script with the batch sizes the daemon sent (repeated ids, and new
ones), and the DISCOVER script. ``INFO commandstats`` gives redis-server's time per call.

(b) fan-out: subscribers in one namespace spread evenly over ``--daemons`` daemons sharing
the Redis (one generator process per daemon); one REGISTER sent to the first daemon; each
subscriber's delivery time is measured as in ``fanout.py`` (kernel receive timestamp,
SO_TIMESTAMPNS, minus the moment the publisher sent). The same subscribers on one daemon
with the memory store, and on one daemon with the Redis store, are the references.

(d) with ``--cluster`` (or ``--cluster-only``: this part alone; needs ``redis-cli``): a
Redis Cluster of ``--shards`` masters (private cluster-enabled redis-servers, no
replicas, joined by ``redis-cli --cluster create``) beside one ``redis-server``, 1 to
``--daemons`` daemons on each. The load is (a)'s, spread over namespaces, since a
cluster spreads namespaces, not the ids of one: ``--cluster-sessions`` sessions, each
registering its ``--per-session`` ids in a namespace of its own (and closing each chunk
with a DISCOVER in another empty namespace of its own), sessions dealt round-robin to
the daemons; the single-Redis rows run the same load. New registrations and repeats on
their rows, with the daemons' CPU per REGISTER, each redis-server's, and the
generators'; the registrations Redis holds at the end are counted. From the CPU per
REGISTER a model gives what N cores would do (every process within N cores, each
redis-server, one thread, within one).

(e) with (d): the cluster's ceiling, ``redis-benchmark`` running the REGISTER batch
script in one partition, on the shard serving it (the batch size the daemons sent there,
and a full batch).

Every daemon is pinned to CPU 0 (a fleet shares one core: on a machine with two cores
nothing else is fair to the single-daemon references); ``redis-server`` and the load
generators are pinned to the other CPU(s). Daemon, redis-server, generator and other
processes' CPU are reported separately, and the daemon's and redis-server's CPU per
operation (µs) beside each rate.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as c
import discover_latency as dl
import fanout
import register_throughput as rt
from _common import helpers

_READY = b"Ready to accept connections"
_STORE_READY = "redis store ready"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A private redis-server process, killed and its directory removed by ``stop``."""

    def __init__(self, path: str, extra: tuple[str, ...] = ()):
        self.dir = tempfile.mkdtemp(prefix="bench-redis-")
        self.port = free_port()
        self.log = os.path.join(self.dir, "redis.log")
        argv = [path, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "no", "--dir", self.dir, "--daemonize", "no", *extra]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv, cwd=self.dir, stdout=log, stderr=subprocess.STDOUT)
        c._children.append(self.proc)
        c.pin(c.CLIENT_CPUS, self.proc.pid)
        deadline = time.monotonic() + 20
        while True:
            with open(self.log, "rb") as f:
                if _READY in f.read():
                    break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                with open(self.log, "rb") as f:
                    text = f.read().decode(errors="replace")
                raise RuntimeError(f"redis-server did not start:\n{text}")
            time.sleep(0.05)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.conn: socket.socket | None = None

    def command(self, *words: str) -> bytes:
        """One command in RESP; its reply: a bulk string's content, else the first line."""
        out = f"*{len(words)}\r\n".encode()
        for w in words:
            out += f"${len(w.encode())}\r\n{w}\r\n".encode()
        if self.conn is None:  # one connection, kept: probes cost redis-server little CPU
            self.conn = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        s = self.conn
        s.sendall(out)
        reply = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
            head, sep, rest = reply.partition(b"\r\n")
            if not sep:
                continue
            if not head.startswith(b"$"):
                return head
            if len(rest) >= int(head[1:]) + 2:
                return rest[: int(head[1:])]
        raise RuntimeError(f"redis-server closed the connection: {reply!r}")

    def flush(self) -> None:
        self.command("FLUSHALL")

    def calls(self, command: str) -> int:
        """How many times ``command`` ran since the server started (or CONFIG RESETSTAT)."""
        for line in self.command("INFO", "commandstats").decode().splitlines():
            if line.startswith(f"cmdstat_{command}:"):
                return int(line.split("calls=")[1].split(",")[0])
        return 0

    def cpu(self) -> float:
        """CPU seconds redis-server used (its own getrusage, in µs: finer than /proc)."""
        info = self.command("INFO", "cpu").decode()
        fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
        return float(fields["used_cpu_user"]) + float(fields["used_cpu_sys"])

    def stop(self) -> None:
        if self.conn is not None:
            self.conn.close()
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        if self.proc in c._children:
            c._children.remove(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


def redis_server_path() -> str | None:
    return os.environ.get("RENDEZVOUS_REDIS_SERVER") or shutil.which("redis-server")


def daemon(store: str, extra: list[str] | None = None) -> c.Server:
    """Our daemon on ``store`` ("memory" or a redis URL), ready to serve."""
    server = c.Server("rendezvous", ["--store", store, *(extra or [])])
    if store != "memory":
        deadline = time.monotonic() + 30
        while _STORE_READY not in server.log_text():
            server.check_alive()
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"the redis store never got ready:\n{server.log_text()}")
            time.sleep(0.05)
    return server


def errors_logged(server: c.Server) -> int:
    """Lines of the daemon's log saying a request was refused or failed."""
    return sum(
        1
        for line in server.log_text().splitlines()
        if "refused" in line or "failed" in line or "Traceback" in line
    )


# -- (a) REGISTER/s ---------------------------------------------------------------------


def us_per(cpu_seconds: float, ops: float) -> float:
    """CPU microseconds per operation (NaN when nothing was done)."""
    return cpu_seconds / ops * 1e6 if ops else float("nan")


def measure_register(store: str, redis: RedisServer, args) -> dict:
    redis.flush()
    extra = ["--max-registrations-per-session", str(max(256, args.per_session))]
    server = daemon(redis.url if store == "redis" else "memory", extra)
    workers = []
    try:
        first = 0
        for n in c.split(args.sessions, min(args.generators, args.sessions)):
            workers.append(
                c.Worker(rt.worker, server.port, n, first, args.per_session, args.window)
            )
            first += n
        sizes = [w.recv()[1] for w in workers]  # every generator says it is ready
        frame_bytes = sizes[0]
        # The first pass: every id is new to the registry.
        cpu0, r0, all0 = server.cpu(), redis.cpu(), c.system_cpu()
        for w in workers:
            w.send("create")
        created = [w.recv(120) for w in workers]
        cpu1, r1, all1 = server.cpu(), redis.cpu(), c.system_cpu()
        new = args.sessions * args.per_session
        create_seconds = max(r["seconds"] for r in created)
        create_gen = sum(r["cpu"] for r in created)
        create = {
            "rate": new / create_seconds,
            "daemon_us": us_per(cpu1 - cpu0, new),
            "redis_us": us_per(r1 - r0, new) if store == "redis" else float("nan"),
            "others_cpu": max(0.0, (all1 - all0) - (cpu1 - cpu0) - (r1 - r0) - create_gen)
            / create_seconds,
        }
        # Later passes: the same ids again.
        t_start = time.monotonic() + args.warmup
        t_end = t_start + args.seconds
        for w in workers:
            w.send("run", t_start, t_end)
        time.sleep(max(0.0, t_start - time.monotonic()))
        cpu0, r0, all0 = server.cpu(), redis.cpu(), c.system_cpu()
        calls0 = redis.calls("evalsha") if store == "redis" else 0
        time.sleep(max(0.0, t_end - time.monotonic()))
        cpu1, r1, all1 = server.cpu(), redis.cpu(), c.system_cpu()
        calls1 = redis.calls("evalsha") if store == "redis" else 0
        results = [w.recv(args.seconds + 60) for w in workers]
        server.check_alive()
        refused = errors_logged(server)
        held = redis.command("HLEN", "rendezvous:r:bench")
    finally:
        for w in workers:
            w.stop()
        server.stop()
    seconds = c.median([r["seconds"] for r in results])
    regs = sum(r["chunks"] for r in results) * args.per_session
    gen_cpu = sum(r["cpu"] for r in results)
    daemon_cpu, redis_cpu = cpu1 - cpu0, r1 - r0
    # script runs: REGISTER batches, and the reads of the chunks' closing DISCOVERs
    scripts_run = calls1 - calls0
    batch = regs * args.seconds / seconds / max(1, scripts_run) if store == "redis" else 0
    return {
        "store": store,
        "create": create,
        "rate": regs / seconds,
        "daemon_cpu": daemon_cpu / args.seconds,
        "daemon_us": us_per(daemon_cpu, regs * args.seconds / seconds),
        "redis_cpu": redis_cpu / args.seconds if store == "redis" else float("nan"),
        "redis_us": us_per(redis_cpu, regs * args.seconds / seconds)
        if store == "redis"
        else float("nan"),
        "batch": batch,
        "gen_cpu": gen_cpu / seconds,
        "others_cpu": max(0.0, (all1 - all0) - daemon_cpu - redis_cpu - gen_cpu) / args.seconds,
        "frame_bytes": frame_bytes,
        "refusals_logged": refused,
        "redis_held": held.decode(errors="replace"),
    }


# -- (a') DISCOVER/s -----------------------------------------------------------------------


def measure_discover(store: str, redis: RedisServer, args) -> dict:
    redis.flush()
    extra = ["--max-registrations-per-session", str(args.discover_size + 1)]
    server = daemon(redis.url if store == "redis" else "memory", extra)
    workers = []
    try:
        first = 1
        for n in c.split(args.clients, min(args.generators, args.clients)):
            workers.append(c.Worker(dl.worker, server.port, n, first, args.limit))
            first += n
        for w in workers:
            w.recv()
        loader = c.connect(server.port, 150)
        dl.fill(loader, 0, args.discover_size)
        time.sleep(0.2)
        cpu0, r0, t0, all0 = server.cpu(), redis.cpu(), time.monotonic(), c.system_cpu()
        for w in workers:
            w.send("run", args.depth, t0 + args.seconds)
        res = [w.recv(args.seconds + 60) for w in workers]
        cpu1, r1, t1, all1 = server.cpu(), redis.cpu(), time.monotonic(), c.system_cpu()
        server.check_alive()
        loader.close()
    finally:
        for w in workers:
            w.stop()
        server.stop()
    done = sum(len(r["latencies"]) for r in res)
    gen_cpu = sum(r["cpu"] for r in res)
    daemon_cpu, redis_cpu = cpu1 - cpu0, (r1 - r0) if store == "redis" else 0.0
    lat = sorted(x * 1000 for r in res for x in r["latencies"])
    return {
        "store": store,
        "rate": done / (t1 - t0),
        "p50_ms": c.percentile(lat, 50),
        "daemon_cpu": daemon_cpu / (t1 - t0),
        "daemon_us": us_per(daemon_cpu, done),
        "redis_us": us_per(redis_cpu, done) if store == "redis" else float("nan"),
        "gen_cpu": gen_cpu / (t1 - t0),
        "others_cpu": max(0.0, (all1 - all0) - daemon_cpu - redis_cpu - gen_cpu) / (t1 - t0),
    }


# -- (c) the ceiling: redis-benchmark with the daemon's scripts ---------------------------


def redis_benchmark_path() -> str | None:
    path = redis_server_path()
    if path:
        sibling = os.path.join(os.path.dirname(path), "redis-benchmark")
        if os.path.exists(sibling):
            return sibling
    return shutil.which("redis-benchmark")


def run_benchmark(
    redis: RedisServer, bench: str, label: str, per: int, requests: int, words: list[str]
) -> dict:
    """``redis-benchmark`` sending ``words`` (an EVALSHA of ``per`` operations) to ``redis``
    (16 pipelined on 2 connections, pinned to CPU 0); calls/s and redis-server's µs each."""
    redis.command("CONFIG", "RESETSTAT")
    argv = [bench, "-p", str(redis.port), "-n", str(requests), "-P", "16", "-c", "2"]
    argv += ["-r", "100000000", "-q", *words]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    c.pin(c.SERVER_CPUS, proc.pid)  # where the daemon runs, idle now
    out = proc.communicate(timeout=120)[0].decode(errors="replace")
    fields = out.rsplit(": ", 1)[-1].split()
    rate = float(fields[0]) if fields and fields[0][0].isdigit() else float("nan")
    stats = redis.command("INFO", "commandstats").decode()
    usec = float("nan")
    for line in stats.splitlines():
        if line.startswith("cmdstat_evalsha:"):
            usec = float(line.split("usec_per_call=")[1].split(",")[0])
    return {
        "what": label,
        "per_call": per,
        "calls_per_s": rate,
        "rate": rate * per,
        "redis_us": usec / per,
    }


_KEY_BYTES, _ENTRY_BYTES = 38, 70
"""A peer key (multihash of an Ed25519 id) and a live-dialect entry of these loads."""


def register_items(batch: int, mode: str) -> list[str]:
    """REGISTER_MANY's five arguments for each of ``batch`` REGISTERs in namespace
    "bench": the same ids each call ("repeated"), or ids new each time ("new")."""
    items: list[str] = []
    for i in range(batch):
        if mode == "repeated":
            key = (f"k{i:04d}" + "k" * _KEY_BYTES)[:_KEY_BYTES]
        else:
            key = "k" * (_KEY_BYTES - 16) + "__rand_int__" + f"{i:04d}"
        items += [str(i % 50), "bench", key, "e" * _ENTRY_BYTES, "1"]
    return items


def ceiling(redis: RedisServer, args) -> list[dict]:
    """``redis-benchmark`` running the REGISTER batch and DISCOVER scripts on ``redis``."""
    from rendezvous.store.redis import scripts

    bench = redis_benchmark_path()
    if not bench:
        return []
    daemon_id = "d" * 32
    prefix, channels = "rendezvous:", "rendezvous:0:c:"

    def run(label: str, per: int, requests: int, script, *script_args: str) -> dict:
        redis.command("SCRIPT", "LOAD", script.source)
        words = ["EVALSHA", script.sha, "0", prefix, "PUBLISH", channels, *script_args]
        return run_benchmark(redis, bench, label, per, requests, words)

    out = []
    for batch in args.ceiling_batches:
        for mode in ("repeated", "new"):
            redis.flush()
            redis.command("SET", f"{prefix}lease:{daemon_id}", "1")
            items = register_items(batch, mode)
            requests = max(200, args.ceiling_registrations // batch)
            out.append(
                run(
                    f"REGISTER x{batch}, {mode} ids",
                    batch,
                    requests,
                    scripts.REGISTER_MANY,
                    daemon_id,
                    "1000000000",
                    "1000000000",
                    *items,
                )
            )
    redis.flush()
    redis.command("SET", f"{prefix}lease:{daemon_id}", "1")
    size = args.discover_size
    for start in range(0, size, 200):
        items = []
        for i in range(start, min(size, start + 200)):
            items += ["1", "discover", f"{i:038d}", "e" * _ENTRY_BYTES, "1"]
        redis.command(
            "EVALSHA",
            scripts.REGISTER_MANY.sha,
            "0",
            prefix,
            "PUBLISH",
            channels,
            daemon_id,
            "1000000000",
            "1000000000",
            *items,
        )
    version = redis.command("GET", f"{prefix}v:discover").decode()
    out.append(
        run(
            f"DISCOVER limit {args.limit} of {size}, unchanged",
            1,
            args.ceiling_registrations // 2,
            scripts.DISCOVER,
            "discover",
            str(args.limit),
            version,
        )
    )
    out.append(
        run(
            f"DISCOVER limit {args.limit} of {size}, read",
            1,
            args.ceiling_registrations // 10,
            scripts.DISCOVER,
            "discover",
            str(args.limit),
            "none",  # never a version: every call reads the registrations
        )
    )
    redis.flush()
    return out


# -- (d) a Redis Cluster: REGISTER/s over many namespaces ---------------------------------

CLUSTER_ARGS = (
    "--cluster-enabled",
    "yes",
    "--cluster-config-file",
    "nodes.conf",
    "--cluster-node-timeout",
    "2000",
)


def redis_cli_path() -> str | None:
    path = redis_server_path()
    if path:
        sibling = os.path.join(os.path.dirname(path), "redis-cli")
        if os.path.exists(sibling):
            return sibling
    return shutil.which("redis-cli")


class RedisCluster:
    """``masters`` private cluster-enabled redis-servers (no replicas) joined by
    ``redis-cli --cluster create``, each serving an equal share of the slots."""

    def __init__(self, path: str, cli: str, masters: int = 3):
        self.nodes: list[RedisServer] = []
        try:
            for _ in range(masters):
                # the bus port given: PORT + 10000 might not exist
                bus = ("--cluster-port", str(free_port()))
                self.nodes.append(RedisServer(path, (*CLUSTER_ARGS, *bus)))
            addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
            argv = [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0"]
            subprocess.run([*argv, "--cluster-yes"], check=True, capture_output=True, timeout=60)
            deadline = time.monotonic() + 30
            while not all(b"cluster_state:ok" in n.command("CLUSTER", "INFO") for n in self.nodes):
                if time.monotonic() > deadline:
                    raise RuntimeError("the cluster did not become ok")
                time.sleep(0.05)
            self.ranges = [self._own_slots(n) for n in self.nodes]
        except BaseException:
            self.stop()
            raise
        self.url = "redis-cluster://" + ",".join(addresses)

    @staticmethod
    def _own_slots(node: RedisServer) -> list[tuple[int, int]]:
        for line in node.command("CLUSTER", "NODES").decode().splitlines():
            words = line.split()
            if "myself" in words[2]:
                spans = [w.split("-") for w in words[8:] if w[0].isdigit()]
                return [(int(s[0]), int(s[-1])) for s in spans]
        raise RuntimeError("CLUSTER NODES without myself")

    def owner(self, slot: int) -> int:
        """The index of the node serving ``slot``."""
        return next(i for i, r in enumerate(self.ranges) if any(a <= slot <= b for a, b in r))

    def flush(self) -> None:
        for node in self.nodes:
            node.flush()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


_SPREAD: dict[tuple[int, int], bytes] = {}


def spread_chunk(i: int, per_session: int) -> bytes:
    """Session ``i``'s REGISTERs, all in a namespace of its own (``s7d-I``), then the
    marker DISCOVER in another (empty) namespace of its own."""
    chunk = _SPREAD.get((i, per_session))
    if chunk is None:
        ns = f"s7d-{i}"
        frames = [
            c.frame(helpers.register(ns, f"s7d-{i}-{j}", helpers.tcp_addr(j % 250, 4001)))
            for j in range(per_session)
        ]
        chunk = _SPREAD[(i, per_session)] = b"".join(frames) + c.marker(namespace=f"{ns}-m")
    return chunk


def spread_worker(
    conn, ports: list[int], count: int, first: int, per_session: int, window: int
) -> None:
    """Scenario 1's generator (`register_throughput.worker`) with a namespace per
    session; session ``i`` talks to the daemon ``ports[i % len(ports)]``."""
    chunks = [spread_chunk(i, per_session) for i in range(first, first + count)]
    ep = c.Epoll()
    socks = [c.connect(ports[(first + k) % len(ports)], first + k) for k in range(count)]
    for s in socks:
        ep.add(s)
    conn.send(("ready", len(chunks[0]) // (per_session + 1)))
    while True:
        cmd = conn.recv()
        if cmd[0] == "quit":
            ep.close()
            return
        if cmd[0] == "create":
            conn.send(rt.create(ep, socks, chunks))
            continue
        _, t_start, t_end = cmd
        conn.send(rt.run(ep, socks, chunks, window, t_start, t_end))


_NOTEWORTHY = ("refused", "failed", "traceback", "error", "lost", "moved", "unreachable", "busy")


def noteworthy(server: c.Server) -> list[str]:
    """The daemon's log lines that are more than its start and stop."""
    return [
        line
        for line in server.log_text().splitlines()
        if any(word in line.lower() for word in _NOTEWORTHY)
    ]


def measure_spread(nodes: list[RedisServer], url: str, count: int, args) -> dict:
    """``count`` daemons on ``url`` (served by ``nodes``): the new registrations of
    ``--cluster-sessions`` sessions (a namespace each), then their repeats."""
    for node in nodes:
        node.flush()
    sessions, per = args.cluster_sessions, args.per_session
    extra = ["--max-registrations-per-session", str(max(256, per))]
    servers: list[c.Server] = []
    workers: list[c.Worker] = []

    def snapshot() -> tuple[float, list[float], float]:
        return sum(s.cpu() for s in servers), [n.cpu() for n in nodes], c.system_cpu()

    def costs(before, after, ops: float, seconds: float, gen: float) -> dict:
        daemons = after[0] - before[0]
        redis = [b - a for a, b in zip(before[1], after[1], strict=True)]
        return {
            "rate": ops / seconds,
            "daemon_us": us_per(daemons, ops),
            "redis_us": [us_per(r, ops) for r in redis],
            "gen_us": us_per(gen, ops),
            "daemon_cpu": daemons / seconds,
            "redis_cpu": [r / seconds for r in redis],
            "gen_cpu": gen / seconds,
            "others_cpu": max(0.0, (after[2] - before[2]) - daemons - sum(redis) - gen) / seconds,
        }

    try:
        for _ in range(count):
            servers.append(daemon(url, extra))
        ports = [s.port for s in servers]
        first = 0
        for n in c.split(sessions, min(args.generators, sessions)):
            workers.append(c.Worker(spread_worker, ports, n, first, per, args.window))
            first += n
        for w in workers:
            w.recv()
        # The first pass: every id is new to the registry.
        before, calls0 = snapshot(), sum(n.calls("evalsha") for n in nodes)
        for w in workers:
            w.send("create")
        created = [w.recv(120) for w in workers]
        after, calls1 = snapshot(), sum(n.calls("evalsha") for n in nodes)
        new = sessions * per
        seconds = max(r["seconds"] for r in created)
        create = costs(before, after, new, seconds, sum(r["cpu"] for r in created))
        create["batch"] = new / max(1, calls1 - calls0)  # claims too, on a cluster
        # Later passes: the same ids again.
        t_start = time.monotonic() + args.warmup
        t_end = t_start + args.seconds
        for w in workers:
            w.send("run", t_start, t_end)
        time.sleep(max(0.0, t_start - time.monotonic()))
        before, calls0 = snapshot(), sum(n.calls("evalsha") for n in nodes)
        time.sleep(max(0.0, t_end - time.monotonic()))
        after, calls1 = snapshot(), sum(n.calls("evalsha") for n in nodes)
        results = [w.recv(args.seconds + 60) for w in workers]
        for s in servers:
            s.check_alive()
        held = held_registrations(nodes, sessions)
        notes = [line for s in servers for line in noteworthy(s)]
    finally:
        for w in workers:
            w.stop()
        for s in servers:
            s.stop()
    seconds = c.median([r["seconds"] for r in results])
    regs = sum(r["chunks"] for r in results) * per
    # REGISTERs in the counted window; the generators count slightly different windows
    ops = regs * args.seconds / seconds
    repeat = costs(before, after, ops, args.seconds, sum(r["cpu"] for r in results))
    repeat["rate"] = regs / seconds
    # script runs: REGISTER batches, and the chunks' closing DISCOVERs
    repeat["batch"] = ops / max(1, calls1 - calls0)
    return {"create": create, "repeat": repeat, "log_lines": notes, "held": held}


def held_registrations(nodes: list[RedisServer], sessions: int) -> int:
    """The registrations Redis holds in the sessions' namespaces (each read where it is)."""
    from rendezvous.store.redis.cluster import PARTITIONS, key_slot, partition_tags

    if len(nodes) == 1:
        return sum(
            int(nodes[0].command("HLEN", f"rendezvous:r:s7d-{i}")[1:]) for i in range(sessions)
        )
    tags = partition_tags(PARTITIONS)
    total = 0
    for i in range(sessions):
        tag = tags[key_slot(f"s7d-{i}".encode()) * PARTITIONS // 16384]
        key = f"rendezvous:{{{tag}}}:r:s7d-{i}"
        for node in nodes:  # the one serving it answers; the others say MOVED
            reply = node.command("HLEN", key)
            if reply.startswith(b":"):
                total += int(reply[1:])
                break
    return total


def cluster_ceiling(cluster: RedisCluster, batches: list[int], args) -> list[dict]:
    """``redis-benchmark`` running the REGISTER batch script in one partition of the
    cluster, on the shard serving it, as the daemons run it there (its ``seq`` key
    named, the partition's prefix, sharded publish)."""
    from rendezvous.store.redis import scripts
    from rendezvous.store.redis.cluster import PARTITIONS, key_slot, partition_tags

    bench = redis_benchmark_path()
    if not bench:
        return []
    tag = partition_tags(PARTITIONS)[0]
    node = cluster.nodes[cluster.owner(key_slot(tag.encode()))]
    prefix, daemon_id = f"rendezvous:{{{tag}}}:", "d" * 32
    out = []
    for batch in batches:
        for mode in ("repeated", "new"):
            cluster.flush()
            node.command("SET", f"{prefix}lease:{daemon_id}", "1")
            node.command("SCRIPT", "LOAD", scripts.REGISTER_MANY.source)
            words = ["EVALSHA", scripts.REGISTER_MANY.sha, "1", prefix + "seq", prefix]
            words += ["SPUBLISH", prefix + "c:", daemon_id, "1000000000", "1000000000"]
            words += register_items(batch, mode)
            requests = max(200, args.ceiling_registrations // batch)
            label = f"REGISTER x{batch}, {mode} ids, one shard"
            out.append(run_benchmark(node, bench, label, batch, requests, words))
    cluster.flush()
    return out


def shares(values: list[float], fmt) -> str:
    return "/".join(fmt(v) for v in values)


def model(daemon_us: float, redis_us: list[float], cores: int) -> tuple[float, str]:
    """The REGISTERs a second ``cores`` cores could do at these CPU costs per REGISTER:
    every process together within the cores, each redis-server (one thread) within one
    core, daemons as many as wanted; and which of the two binds."""
    machine = cores * 1e6 / (daemon_us + sum(redis_us))
    shard = 1e6 / max(redis_us)
    return (machine, "cores") if machine <= shard else (shard, "busiest redis-server")


def cluster_part(path: str, args) -> tuple[dict, str] | None:
    """(d) REGISTER/s of 1..3 daemons on one Redis and on a three-shard cluster, the load
    over a namespace per session; (e) the cluster's ceiling on one shard. The results,
    and the tables as text (None: no redis-cli)."""
    from rendezvous.store.redis.cluster import PARTITIONS, key_slot, partition_tags

    cli = redis_cli_path()
    if not cli:
        print("(redis-cli not found: the Redis Cluster part, 7d, skipped)")
        return None
    for i in range(args.cluster_sessions):  # encoded once, inherited by the generators
        spread_chunk(i, args.per_session)
    single = RedisServer(path)
    cluster: RedisCluster | None = None
    try:
        cluster = RedisCluster(path, cli, args.shards)
        counts = list(range(1, args.daemons + 1))
        setups = [("1 Redis", n) for n in counts] + [
            (f"cluster of {args.shards}", n) for n in counts
        ]
        samples: dict[str, list[dict]] = {}
        for _ in range(args.runs):
            for kind, n in setups:
                nodes, url = (
                    ([single], single.url) if kind == "1 Redis" else (cluster.nodes, cluster.url)
                )
                label = f"{kind}, {n} daemon{'s' if n > 1 else ''}"
                samples.setdefault(label, []).append(measure_spread(nodes, url, n, args))
        # namespaces per shard: a namespace's partition, the partition's slot, its node
        tags = partition_tags(PARTITIONS)
        per_shard = [0] * args.shards
        for i in range(args.cluster_sessions):
            partition = key_slot(f"s7d-{i}".encode()) * PARTITIONS // 16384
            per_shard[cluster.owner(key_slot(tags[partition].encode()))] += 1
        last = samples[
            f"cluster of {args.shards}, {counts[-1]} daemon{'s' if counts[-1] > 1 else ''}"
        ]
        sent = c.median([r["repeat"]["batch"] for r in last])
        batches = sorted({max(1, round(min(sent, args.batch_size))), args.batch_size})
        ceilings = cluster_ceiling(cluster, batches, args)
    finally:
        single.stop()
        if cluster is not None:
            cluster.stop()

    def med(rows: list[dict], key: str) -> float | list[float]:
        if isinstance(rows[0][key], list):
            return [c.median([r[key][i] for r in rows]) for i in range(len(rows[0][key]))]
        return c.median([r[key] for r in rows])

    keys = ("rate", "daemon_us", "redis_us", "gen_us", "daemon_cpu", "redis_cpu", "gen_cpu")
    medians_d: dict[str, dict[str, dict]] = {}
    for label, runs in samples.items():
        medians_d[label] = {
            phase: {k: med([r[phase] for r in runs], k) for k in (*keys, "others_cpu")}
            for phase in ("create", "repeat")
        }
        for phase in ("create", "repeat"):
            medians_d[label][phase]["batch"] = med([r[phase] for r in runs], "batch")
    rows = []
    for phase, name in (("create", "new ids"), ("repeat", "repeats")):
        for label, m in medians_d.items():
            x = m[phase]
            rows.append(
                [
                    f"{label}, {name}",
                    x["rate"],
                    us(x["daemon_us"]),
                    shares(x["redis_us"], us),
                    pct(x["daemon_cpu"]),
                    shares(x["redis_cpu"], pct),
                    us(x["gen_us"]),
                    pct(x["others_cpu"]),
                    x["batch"],
                ]
            )
    text = [
        c.table(
            f"Scenario 7d: REGISTER throughput over {args.cluster_sessions} namespaces (one per "
            f"session, {args.per_session} ids each; namespaces per shard: "
            f"{shares(per_shard, str)}), sessions spread evenly over the daemons, "
            f"median of {args.runs} run(s) x {args.seconds:g} s",
            [
                "setup, REGISTERs",
                "registrations/s",
                "daemons' µs CPU each",
                "redis µs CPU each (per server)",
                "daemons' CPU",
                "redis-servers' CPU",
                "generators' µs CPU each",
                "other processes' CPU",
                "REGISTERs per script run",
            ],
            rows,
        )
    ]
    # the model: N cores, at the CPU per REGISTER of the rows with the most daemons
    cores_list = (2, 4, 8, 16, 32)
    rows = []
    for phase, name in (("create", "new ids"), ("repeat", "repeats")):
        for kind in ("1 Redis", f"cluster of {args.shards}"):
            label = f"{kind}, {counts[-1]} daemon{'s' if counts[-1] > 1 else ''}"
            x = medians_d[label][phase]
            cells = []
            for n in cores_list:
                rate, bound = model(x["daemon_us"], x["redis_us"], n)
                cells.append(f"{rate:,.0f}" + ("*" if bound != "cores" else ""))
            rows.append([f"{kind}, {name}", *cells])
    text.append(
        c.table(
            "Scenario 7d model: REGISTERs/s on N cores at the CPU per REGISTER measured with "
            f"{counts[-1]} daemons (all processes within N cores, each redis-server within one; "
            "* = the busiest redis-server binds; generators elsewhere)",
            ["setup", *(f"{n} cores" for n in cores_list)],
            rows,
        )
    )
    if ceilings:
        rows = [[x["what"], x["calls_per_s"], x["rate"], us(x["redis_us"])] for x in ceilings]
        text.append(
            c.table(
                "Scenario 7e: the ceiling of one shard of the cluster, redis-benchmark running the "
                "REGISTER batch script in one partition (-P 16 -c 2, pinned to CPU 0)",
                ["script", "calls/s", "operations/s", "redis µs each"],
                rows,
            )
        )
    expected = args.cluster_sessions * args.per_session
    short = [
        f"{label}: {r['held']:,}"
        for label, runs in samples.items()
        for r in runs
        if r["held"] != expected
    ]
    text.append(
        f"(registrations held in Redis at the end of each run: {expected:,} expected; "
        + (f"short: {'; '.join(short)})" if short else "all there)")
    )
    notes = [line for runs in samples.values() for r in runs for line in r["log_lines"]]
    if notes:
        text.append(
            f"({len(notes)} noteworthy lines in the daemons' logs; the first:)\n"
            + "\n".join("  " + line for line in notes[:10])
        )
    result = {
        "namespaces": args.cluster_sessions,
        "namespaces_per_shard": per_shard,
        "medians": medians_d,
        "samples": samples,
        "ceiling": ceilings,
        "log_lines": notes,
    }
    return result, "\n\n".join(text)


# -- (b) fan-out ------------------------------------------------------------------------


def measure_fanout(store: str, count: int, redis: RedisServer, args) -> list[dict]:
    """``count`` daemons on ``store``; one generator process per daemon, even split."""
    redis.flush()
    url = redis.url if store == "redis" else "memory"
    servers: list[c.Server] = []
    workers: list[c.Worker] = []
    label = f"{store}, {count} daemon{'s' if count > 1 else ''}"
    try:
        for _ in range(count):
            servers.append(daemon(url))
        first = 0
        gens = max(count, args.generators)
        for i, n in enumerate(c.split(args.subscribers, gens)):
            port = servers[i % count].port
            workers.append(c.Worker(fanout.worker, port, n, first, args.batch))
            first += n
        ready = sum(w.recv(300)[1] for w in workers)
        assert ready == args.subscribers, ready
        pub = c.connect(servers[0].port, 199)
        pub.setblocking(True)
        rounds = []
        for r in range(args.rounds):
            time.sleep(args.pause)
            frame = c.frame(helpers.register(fanout.NS, f"s7-pub-{r}", helpers.tcp_addr(r % 250)))
            c.broadcast(workers, "round", 60)
            cpu0 = sum(s.cpu() for s in servers)
            r0, all0 = redis.cpu(), c.system_cpu()
            t0 = time.time()
            pub.sendall(frame)
            results = [w.recv(90) for w in workers]
            cpu1 = sum(s.cpu() for s in servers)
            r1, all1 = redis.cpu(), c.system_cpu()
            gen_cpu = sum(res[2] for res in results)
            lat = sorted((a - t0) * 1000 for res in results for a in res[1])
            daemons_cpu, redis_cpu = cpu1 - cpu0, r1 - r0
            rounds.append(
                {
                    "setup": label,
                    "p50_ms": c.percentile(lat, 50),
                    "p99_ms": c.percentile(lat, 99),
                    "max_ms": lat[-1],
                    "min_ms": lat[0],
                    "deliveries_per_s": len(lat) / (lat[-1] / 1000),
                    "daemons_cpu_ms": daemons_cpu * 1000,
                    "redis_cpu_ms": redis_cpu * 1000 if store == "redis" else float("nan"),
                    "gen_cpu_ms": gen_cpu * 1000,
                    "others_cpu_ms": max(0.0, (all1 - all0) - daemons_cpu - redis_cpu - gen_cpu)
                    * 1000,
                    "latencies_ms": lat,
                }
            )
        for s in servers:
            s.check_alive()
        pub.close()
        return rounds
    finally:
        for w in workers:
            w.stop()
        for s in servers:
            s.stop()


REG_KEYS = (
    "rate",
    "daemon_cpu",
    "daemon_us",
    "redis_cpu",
    "redis_us",
    "batch",
    "gen_cpu",
    "others_cpu",
)
CREATE_KEYS = ("rate", "daemon_us", "redis_us", "others_cpu")
DISCOVER_KEYS = ("rate", "p50_ms", "daemon_cpu", "daemon_us", "redis_us", "gen_cpu", "others_cpu")
FAN_KEYS = (
    "p50_ms",
    "p99_ms",
    "max_ms",
    "deliveries_per_s",
    "daemons_cpu_ms",
    "redis_cpu_ms",
    "gen_cpu_ms",
    "others_cpu_ms",
)


def pct(v: float) -> str:
    return "-" if v != v else f"{v:.0%}"


def us(v: float) -> str:
    return "-" if v != v else f"{v:.1f}"


def medians(samples: dict[str, list[dict]], keys: tuple[str, ...]) -> dict[str, dict]:
    return {s: {k: c.median([r[k] for r in rs]) for k in keys} for s, rs in samples.items()}


def main(args) -> int:
    if args.quick:
        args.sessions, args.per_session, args.seconds, args.warmup = 10, 20, 0.5, 0.3
        args.subscribers, args.rounds, args.pause, args.runs = 60, 2, 0.05, 1
        args.clients, args.discover_size, args.ceiling_registrations = 6, 200, 20000
        args.cluster_sessions = 12
    path = redis_server_path()
    if not path:
        print("redis-server not found (PATH or $RENDEZVOUS_REDIS_SERVER)", file=sys.stderr)
        return 3
    started = time.monotonic()
    if args.cluster_only:
        done = cluster_part(path, args)
        if done is None:
            return 3
        print(done[1])
        elapsed = time.monotonic() - started
        print(
            f"\n({elapsed:.0f} s; every daemon on CPU 0, redis-servers and generators on the rest)"
        )
        c.write_json(
            args.json,
            {"scenario": "redis_fleet", "args": vars(args), "cluster": done[0], "seconds": elapsed},
        )
        return 0
    for i in range(args.sessions):  # encoded once here, inherited by the forked generators
        rt.session_chunk(i, args.per_session)
    dl.fill_frames(0, args.discover_size)
    redis = RedisServer(path)
    try:
        reg: dict[str, list[dict]] = {"memory": [], "redis": []}
        disc: dict[str, list[dict]] = {"memory": [], "redis": []}
        setups = [("memory", 1), ("redis", 1), ("redis", args.daemons)]
        fan: dict[str, list[dict]] = {}
        for _ in range(args.runs):
            for store in reg:
                reg[store].append(measure_register(store, redis, args))
            for store in disc:
                disc[store].append(measure_discover(store, redis, args))
            for store, count in setups:
                rounds = measure_fanout(store, count, redis, args)
                fan.setdefault(rounds[0]["setup"], []).extend(rounds)
        sent = c.median([r["batch"] for r in reg["redis"]])
        sent = min(sent, args.batch_size)  # (counted from script runs: a little off)
        args.ceiling_batches = sorted({max(1, round(sent)), args.batch_size})
        ceilings = ceiling(redis, args)
    finally:
        redis.stop()
    clustered = cluster_part(path, args) if args.cluster else None
    elapsed = time.monotonic() - started

    reg_med = medians(reg, REG_KEYS)
    create_med = medians({s: [r["create"] for r in rs] for s, rs in reg.items()}, CREATE_KEYS)
    mem = reg_med["memory"]
    rows = []
    for store in reg:
        m, n = reg_med[store], create_med[store]
        rows.append(
            [
                f"{store}, new ids",
                n["rate"],
                us(n["daemon_us"]),
                us(n["redis_us"]),
                "-",
                "-",
                pct(n["others_cpu"]),
                n["rate"] / create_med["memory"]["rate"],
            ]
        )
        rows.append(
            [
                f"{store}, repeated",
                m["rate"],
                us(m["daemon_us"]),
                us(m["redis_us"]),
                pct(m["daemon_cpu"]),
                pct(m["redis_cpu"]),
                pct(m["others_cpu"]),
                m["rate"] / mem["rate"],
            ]
        )
    frame_bytes = reg["memory"][0]["frame_bytes"]
    print(
        c.table(
            f"Scenario 7a: REGISTER throughput, one daemon, {args.sessions:,} sessions x "
            f"{args.per_session} ids ({args.sessions * args.per_session:,} new, then repeated), "
            f"~{frame_bytes}-byte frames, median of {args.runs} run(s) x {args.seconds:g} s; "
            f"Redis: {sent:.0f} REGISTERs per script run (DISCOVER reads counted as runs)",
            [
                "store, REGISTERs",
                "registrations/s",
                "daemon µs CPU each",
                "redis µs CPU each",
                "daemon CPU",
                "redis-server CPU",
                "other processes' CPU",
                "vs memory",
            ],
            rows,
        )
    )
    refusals = sum(r["refusals_logged"] for rs in reg.values() for r in rs)
    if refusals:
        print(f"(warning: {refusals} refusal or failure lines in the daemons' logs)")

    disc_med = medians(disc, DISCOVER_KEYS)
    rows = [
        [
            store,
            m["rate"],
            m["p50_ms"],
            us(m["daemon_us"]),
            us(m["redis_us"]),
            pct(m["daemon_cpu"]),
            pct(m["gen_cpu"]),
            pct(m["others_cpu"]),
            m["rate"] / disc_med["memory"]["rate"],
        ]
        for store, m in disc_med.items()
    ]
    print()
    print(
        c.table(
            f"Scenario 7a': DISCOVER throughput, one daemon, {args.clients} sessions x "
            f"{args.depth} in flight, limit {args.limit} of {args.discover_size:,} "
            f"registrations, median of {args.runs} run(s) x {args.seconds:g} s",
            [
                "store",
                "DISCOVERs/s",
                "p50 ms",
                "daemon µs CPU each",
                "redis µs CPU each",
                "daemon CPU",
                "generator CPU",
                "other processes' CPU",
                "vs memory",
            ],
            rows,
        )
    )

    fan_med = medians(fan, FAN_KEYS)
    mem_fan = fan_med["memory, 1 daemon"]
    rows = []
    for setup, m in fan_med.items():
        rows.append(
            [
                setup,
                m["p50_ms"],
                m["p99_ms"],
                m["max_ms"],
                m["deliveries_per_s"],
                m["daemons_cpu_ms"],
                m["redis_cpu_ms"],
                m["gen_cpu_ms"],
                m["others_cpu_ms"],
                m["max_ms"] / mem_fan["max_ms"],
            ]
        )
    print()
    print(
        c.table(
            f"Scenario 7b: fan-out of one REGISTER to {args.subscribers:,} subscribers spread "
            f"over the daemons, median of {args.runs} run(s) x {args.rounds} rounds",
            [
                "setup",
                "p50 ms",
                "p99 ms",
                "max ms",
                "deliveries/s",
                "daemons' CPU ms",
                "redis-server CPU ms",
                "generator CPU ms",
                "other processes' CPU ms",
                "max vs memory",
            ],
            rows,
        )
    )
    if ceilings:
        ours = {"repeated": reg_med["redis"]["rate"], "new": create_med["redis"]["rate"]}
        rows = []
        for x in ceilings:
            kind = "new" if "new" in x["what"] else "repeated"
            mine = disc_med["redis"]["rate"] if "DISCOVER" in x["what"] else ours[kind]
            rows.append(
                [x["what"], x["calls_per_s"], x["rate"], us(x["redis_us"]), mine, mine / x["rate"]]
            )
        print()
        print(
            c.table(
                "Scenario 7c: the ceiling, redis-benchmark running the daemon's scripts on the "
                "same redis-server (-P 16 -c 2, pinned to CPU 0)",
                [
                    "script",
                    "calls/s",
                    "operations/s",
                    "redis µs each",
                    "the daemon's rate",
                    "daemon / ceiling",
                ],
                rows,
            )
        )
    if clustered is not None:
        print()
        print(clustered[1])
    print(f"\n({elapsed:.0f} s; every daemon on CPU 0, redis-server and generators on the rest)")

    c.write_json(
        args.json,
        {
            "scenario": "redis_fleet",
            "args": vars(args),
            "register_median": [{"store": s, **m} for s, m in reg_med.items()],
            "create_median": [{"store": s, **m} for s, m in create_med.items()],
            "register_samples": reg,
            "discover_median": [{"store": s, **m} for s, m in disc_med.items()],
            "discover_samples": disc,
            "ceiling": ceilings,
            "fanout_median": [{"setup": s, **m} for s, m in fan_med.items()],
            "fanout_samples": {
                s: [{x: y for x, y in r.items() if x != "latencies_ms"} for r in rs]
                for s, rs in fan.items()
            },
            "typical_latencies_ms": {s: c.median_round(fan[s])["latencies_ms"] for s in fan},
            "cluster": clustered[0] if clustered is not None else None,
            "seconds": elapsed,
        },
    )
    if args.plot:
        c.plot_deliveries(
            args.plot,
            {setup: c.median_round(rounds)["latencies_ms"] for setup, rounds in fan.items()},
            f"Scenario 7: fan-out to {args.subscribers:,} subscribers (median round)",
        )
    return 0


if __name__ == "__main__":
    p = c.base_parser(__doc__, timeout=400, profile=False)
    for action in p._actions:  # the common option this scenario has no use for
        if action.dest == "servers":
            action.help = argparse.SUPPRESS
    p.add_argument("--sessions", type=int, default=100, help="(a) pipelining sessions")
    p.add_argument("--per-session", type=int, default=50, help="(a) peer ids per session")
    p.add_argument("--window", type=int, default=2, help="(a) chunks in flight per session")
    p.add_argument("--seconds", type=float, default=2.0, help="(a) measured seconds")
    p.add_argument("--warmup", type=float, default=1.0, help="(a) seconds before measuring")
    p.add_argument("--clients", type=int, default=30, help="(a') DISCOVER sessions")
    p.add_argument("--depth", type=int, default=8, help="(a') DISCOVERs in flight per session")
    p.add_argument("--limit", type=int, default=100, help="(a') DISCOVER limit")
    p.add_argument("--discover-size", type=int, default=1000, help="(a') registrations")
    p.add_argument(
        "--ceiling-registrations", type=int, default=400000, help="(c) per redis-benchmark run"
    )
    p.add_argument(
        "--batch-size", type=int, default=256, help="(c) a full batch (the daemon's BATCH_SIZE)"
    )
    p.add_argument("--daemons", type=int, default=3, help="(b) daemons in the fleet")
    p.add_argument("--subscribers", type=int, default=3000, help="(b) subscribers in all")
    p.add_argument("--rounds", type=int, default=5, help="(b) REGISTERs per run")
    p.add_argument("--pause", type=float, default=0.3, help="(b) seconds between rounds")
    p.add_argument("--generators", type=int, default=3, help="load-generator processes")
    p.add_argument("--batch", type=int, default=500, help="(b) connections opened at once")
    p.add_argument(
        "--cluster",
        action="store_true",
        help="(d, e) also: 1..--daemons daemons on one Redis and on a cluster (needs redis-cli)",
    )
    p.add_argument("--cluster-only", action="store_true", help="(d, e) only")
    p.add_argument(
        "--cluster-sessions",
        type=int,
        default=192,
        help="(d) pipelining sessions, each in a namespace of its own",
    )
    p.add_argument("--shards", type=int, default=3, help="(d) masters of the cluster")
    c.main_wrapper(main, p.parse_args())
