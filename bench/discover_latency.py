"""Scenario 3: DISCOVER latency and throughput with a large namespace, limit 100.

A loader session fills one namespace step by step (``--sizes``); at each size:
  * latency: one client, one request at a time (closed loop), ``--seconds`` long;
    a request's time runs from the send until its whole reply has been read;
  * throughput: ``--clients`` sessions spread over the generator processes, each keeping
    ``--depth`` requests in flight, ``--seconds`` long.
The table quotes the largest size; the JSON and the plot keep every size, to show whether
the cost depends on the namespace size.
"""

from __future__ import annotations

import functools
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as c
from _common import helpers

NS = "discover"


def worker(conn, port: int, count: int, first: int, limit: int) -> None:
    request = c.frame(helpers.discover(NS, limit=limit, request_id=42))
    ep = c.Epoll()
    socks = [c.connect(port, first + k) for k in range(count)]
    for s in socks:
        ep.add(s)
    conn.send(("ready",))
    while True:
        cmd = conn.recv()
        if cmd[0] == "quit":
            ep.close()
            return
        _, depth, t_end = cmd
        conn.send(closed_loop(ep, socks, request, depth, t_end))


def closed_loop(ep, socks, request, depth, t_end) -> dict:
    counters = {s.fileno(): c.FrameCounter() for s in socks}
    sent_at: dict[int, list[float]] = {s.fileno(): [] for s in socks}
    latencies: list[float] = []
    cpu0, t0 = c.self_cpu(), time.monotonic()
    for s in socks:
        now = time.monotonic()
        s.send(request * depth)
        sent_at[s.fileno()].extend([now] * depth)
    outstanding = len(socks) * depth
    while outstanding:
        for fd, _ev in ep.poll(0.5):
            data = ep.socks[fd].recv(262144)
            if not data:
                raise RuntimeError("server closed a connection")
            n = counters[fd].feed(data)
            if not n:
                continue
            now = time.monotonic()
            times = sent_at[fd]
            for _ in range(n):
                latencies.append(now - times.pop(0))
            outstanding -= n
            if now < t_end:
                ep.socks[fd].send(request * n)
                times.extend([now] * n)
                outstanding += n
        if time.monotonic() > t_end + 30:
            raise c.BenchTimeout("replies stopped coming")
    return {"latencies": latencies, "seconds": time.monotonic() - t0, "cpu": c.self_cpu() - cpu0}


@functools.cache
def fill_frames(start: int, stop: int) -> bytes:
    return b"".join(
        c.frame(helpers.register(NS, f"s3-{i}", helpers.tcp_addr(i % 250), helpers.tcp_addr(7)))
        for i in range(start, stop)
    )


def fill(sock, start: int, stop: int) -> None:
    deadline = time.monotonic() + 120
    frames = fill_frames(start, stop)
    c.send_all(sock, frames + c.marker(), deadline)
    counter = c.FrameCounter()
    while not counter.frames:
        if time.monotonic() > deadline:
            raise c.BenchTimeout("fill did not finish")
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            time.sleep(0.01)
            continue
        if not data:
            raise RuntimeError("server closed the loader")
        counter.feed(data)


def measure(kind: str, args) -> list[dict]:
    server = c.Server(kind, ["--max-registrations-per-session", str(max(args.sizes) + 1)])
    workers = []
    try:
        single = c.Worker(worker, server.port, 1, 0, args.limit)
        workers.append(single)
        first = 1
        many = []
        for n in c.split(args.clients, min(args.generators, args.clients)):
            many.append(c.Worker(worker, server.port, n, first, args.limit))
            first += n
        workers.extend(many)
        for w in workers:
            w.recv()
        loader = c.connect(server.port, 150)
        out, have = [], 0
        for size in sorted(args.sizes):
            fill(loader, have, size)
            have = size
            time.sleep(0.2)
            single.send("run", 1, time.monotonic() + args.seconds)
            lat = single.recv(args.seconds + 60)
            cpu0, t0, all0 = server.cpu(), time.monotonic(), c.system_cpu()
            t_end = t0 + args.seconds
            for w in many:
                w.send("run", args.depth, t_end)
            res = [w.recv(args.seconds + 60) for w in many]
            cpu1, t1, all1 = server.cpu(), time.monotonic(), c.system_cpu()
            gen_cpu = sum(r["cpu"] for r in res)
            loaded = [x for r in res for x in r["latencies"]]
            ms = sorted(x * 1000 for x in lat["latencies"])
            out.append(
                {
                    "server": kind,
                    "size": size,
                    "p50_ms": c.percentile(ms, 50),
                    "p99_ms": c.percentile(ms, 99),
                    "single_rps": len(ms) / lat["seconds"],
                    "rps": len(loaded) / (t1 - t0),
                    "loaded_p99_ms": c.percentile(sorted(x * 1000 for x in loaded), 99),
                    "server_cpu": (cpu1 - cpu0) / (t1 - t0),
                    "gen_cpu": gen_cpu / (t1 - t0),
                    "per_cpu_second": len(loaded) / max(1e-9, cpu1 - cpu0),
                    "others_cpu": max(0.0, (all1 - all0) - (cpu1 - cpu0) - gen_cpu) / (t1 - t0),
                }
            )
        server.check_alive()
        loader.close()
        return out
    finally:
        for w in workers:
            w.stop()
        server.stop()


KEYS = (
    "p50_ms",
    "p99_ms",
    "single_rps",
    "rps",
    "loaded_p99_ms",
    "server_cpu",
    "gen_cpu",
    "per_cpu_second",
    "others_cpu",
)


def main(args) -> int:
    if args.quick:
        args.sizes, args.seconds, args.runs, args.clients = [50, 200], 0.3, 1, 4
    args.sizes = sorted(args.sizes)
    kinds = args.servers.split(",")
    samples: dict[tuple[str, int], list[dict]] = {}
    for _ in range(args.runs):
        for kind in kinds:
            for r in measure(kind, args):
                samples.setdefault((kind, r["size"]), []).append(r)
    med = {key: {k: c.median([r[k] for r in rs]) for k in KEYS} for key, rs in samples.items()}
    profile_text = None
    if args.profile and "rendezvous" in kinds:
        c.profiled("cpu", args.profile, lambda: measure("rendezvous", args))
        profile_text = c.summarise_profile(args.profile)
    rows = []
    for size in args.sizes:
        ours, base = med.get(("rendezvous", size)), med.get(("baseline", size))
        for kind, m in (("rendezvous", ours), ("baseline", base)):
            if m is None:
                continue
            mine = kind == "rendezvous"
            rows.append(
                [
                    kind,
                    size,
                    m["p50_ms"],
                    m["p99_ms"],
                    m["rps"],
                    m["loaded_p99_ms"],
                    f"{m['server_cpu']:.0%}",
                    m["per_cpu_second"],
                    f"{m['gen_cpu']:.0%}",
                    f"{m['others_cpu']:.0%}",
                    ours["p99_ms"] / base["p99_ms"] if mine and base else "",
                    ours["rps"] / base["rps"] if mine and base else "",
                    ("met" if m["p99_ms"] < args.target_ms else "MISSED") if mine else "",
                ]
            )
    print(
        c.table(
            f"Scenario 3: DISCOVER limit {args.limit}; latency = 1 client, 1 in flight; req/s = "
            f"{args.clients} clients x {args.depth} in flight; median of {args.runs} run(s) x "
            f"{args.seconds:g} s; target p99 < {args.target_ms:g} ms",
            [
                "server",
                "registrations",
                "p50 ms",
                "p99 ms",
                "req/s",
                "p99 ms loaded",
                "server CPU",
                "per server CPU-s",
                "generator CPU",
                "other processes' CPU",
                "p99 ours/base",
                "req/s ours/base",
                "target",
            ],
            rows,
        )
    )
    if profile_text:
        print("\nprofile of the daemon (cProfile, by own time):\n" + profile_text)
    c.write_json(
        args.json,
        {
            "profile": profile_text,
            "scenario": "discover_latency",
            "args": vars(args),
            "median": [{"server": k, "size": n, **m} for (k, n), m in med.items()],
            "samples": {f"{k}/{n}": rs for (k, n), rs in samples.items()},
        },
    )
    if args.plot and (plt := c.pyplot()):
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for kind in kinds:
            xs = [n for n in args.sizes if (kind, n) in med]
            ax.plot(xs, [med[(kind, n)]["p50_ms"] for n in xs], marker="o", label=f"{kind} p50")
            ax.plot(
                xs, [med[(kind, n)]["p99_ms"] for n in xs], marker="s", ls=":", label=f"{kind} p99"
            )
        ax.axhline(args.target_ms, color="grey", ls="--", label="p99 target")
        ax.set_xscale("log")
        ax.set_xlabel("registrations in the namespace")
        ax.set_ylabel(f"DISCOVER limit {args.limit} latency (ms)")
        ax.set_title("Scenario 3: DISCOVER latency against namespace size")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
    return 0


if __name__ == "__main__":
    p = c.base_parser(__doc__, timeout=300)
    p.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1000, 10_000, 100_000],
        help="namespace sizes, comma-separated",
    )
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--depth", type=int, default=4, help="requests in flight per client")
    p.add_argument("--generators", type=int, default=2)
    p.add_argument("--target-ms", type=float, default=2.0)
    c.main_wrapper(main, p.parse_args())
