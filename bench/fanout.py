"""Scenario 2: fan-out. Many live subscribers in one namespace, one REGISTER.

Subscribers send RENDEZVOUS (and a DISCOVER whose reply proves the subscription is in
place) from load-generator processes. Then, once per round, a publisher session sends one
REGISTER. A subscriber's delivery time is the kernel's receive timestamp of the pushed
message (SO_TIMESTAMPNS, so the generators' own speed does not enter the figure) minus the
moment the publisher sent the REGISTER. Deliveries per second = subscribers / last delivery.
The generators read only after ``--settle`` seconds, so that on a small machine they do not
take the CPU the server is pushing with (real subscribers are on other machines); the
timestamps are taken by the kernel as each message arrives, whenever it is read.

Servers: ``rendezvous`` (one process, pinned to one CPU, ``--fanout-threads 1``),
``threads`` (one process free to use every CPU, its pushes' ``send`` calls from two
threads: ``--fanout-threads 2``, the default), ``workers`` (our daemon with
``--workers`` processes, free to use every CPU) and ``baseline`` (a bare Twisted server).
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as c
from _common import helpers

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
NS = "fanout"


def worker(conn, port: int, count: int, first: int, batch: int, settle: float = 0.0) -> None:
    ep = c.Epoll()
    counters: dict[int, c.FrameCounter] = {}
    subscribe = c.frame(helpers.rendezvous(NS)) + c.marker()
    deadline = time.monotonic() + 120
    for start in range(0, count, batch):
        want = {}
        for k in range(start, min(count, start + batch)):
            s = c.connect(port, first + k)
            s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            ep.add(s)
            counters[s.fileno()] = c.FrameCounter()
            c.send_all(s, subscribe, deadline)
            want[s.fileno()] = 1
        c.wait_frames(ep, counters, want, deadline)
    conn.send(("ready", len(ep.socks)))
    expected = 1
    while True:
        cmd = conn.recv()
        if cmd[0] == "quit":
            ep.close()
            return
        expected += 1
        cpu0 = c.self_cpu()
        conn.send(("armed",))
        time.sleep(settle)  # not synchronisation: arrival times are the kernel's
        arrivals: list[float] = []
        waiting = set(ep.socks)
        limit = time.monotonic() + cmd[1]
        while waiting:
            if time.monotonic() > limit:
                raise c.BenchTimeout(f"{len(waiting)} subscribers never got the push")
            for fd, _ev in ep.poll(0.2):
                data, anc, _flags, _addr = ep.socks[fd].recvmsg(65536, 256)
                if not data:
                    raise RuntimeError("server closed a subscriber")
                counter = counters[fd]
                counter.feed(data)
                if fd in waiting and counter.frames >= expected:
                    waiting.discard(fd)
                    stamp = None
                    for level, kind, cdata in anc:
                        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                            sec, nsec = struct.unpack("qq", cdata[:16])
                            stamp = sec + nsec / 1e9
                    arrivals.append(stamp if stamp is not None else time.time())
        conn.send(("arrivals", arrivals, c.self_cpu() - cpu0))


def start(kind: str, args) -> c.Server:
    if kind == "workers":
        return c.Server("rendezvous", workers=args.workers)
    if kind == "threads":
        # One process allowed every CPU, its pushes' send calls from two threads.
        return c.Server("rendezvous", ["--fanout-threads", "2"], unpinned=True)
    if kind == "rendezvous":
        return c.Server("rendezvous", ["--fanout-threads", "1"])
    return c.Server(kind)


def measure(kind: str, args) -> list[dict]:
    server = start(kind, args)
    workers = []
    try:
        first = 0
        for n in c.split(args.subscribers, min(args.generators, args.subscribers)):
            workers.append(c.Worker(worker, server.port, n, first, args.batch, args.settle))
            first += n
        ready = sum(w.recv(300)[1] for w in workers)
        assert ready == args.subscribers, ready
        pub = c.connect(server.port, 199)
        pub.setblocking(True)
        rounds = []
        for r in range(args.rounds):
            time.sleep(args.pause)
            frame = c.frame(helpers.register(NS, f"s2-pub-{r}", helpers.tcp_addr(r % 250)))
            c.broadcast(workers, "round", 60)
            cpu0, all0 = server.cpu(), c.system_cpu()
            t0 = time.time()
            pub.sendall(frame)
            results = [w.recv(90) for w in workers]
            cpu1, all1 = server.cpu(), c.system_cpu()
            gen_cpu = sum(res[2] for res in results)
            lat = sorted((a - t0) * 1000 for res in results for a in res[1])
            rounds.append(
                {
                    "server": kind,
                    "p50_ms": c.percentile(lat, 50),
                    "p99_ms": c.percentile(lat, 99),
                    "max_ms": lat[-1],
                    "min_ms": lat[0],
                    "deliveries_per_s": len(lat) / (lat[-1] / 1000),
                    "server_cpu_ms": (cpu1 - cpu0) * 1000,
                    "gen_cpu_ms": gen_cpu * 1000,
                    "others_cpu_ms": max(0.0, (all1 - all0) - (cpu1 - cpu0) - gen_cpu) * 1000,
                    "latencies_ms": lat,
                }
            )
        server.check_alive()
        pub.close()
        return rounds
    finally:
        for w in workers:
            w.stop()
        server.stop()


KEYS = (
    "p50_ms",
    "p99_ms",
    "max_ms",
    "deliveries_per_s",
    "server_cpu_ms",
    "gen_cpu_ms",
    "others_cpu_ms",
)


def main(args) -> int:
    if args.quick:
        args.subscribers, args.rounds, args.runs, args.pause = 50, 2, 1, 0.05
    kinds = args.servers.split(",")
    samples: dict[str, list[dict]] = {k: [] for k in kinds}
    for _ in range(args.runs):
        for kind in kinds:
            samples[kind].extend(measure(kind, args))
    med = {k: {key: c.median([r[key] for r in rs]) for key in KEYS} for k, rs in samples.items()}
    profile_text = None
    if args.profile and "rendezvous" in kinds:
        c.profiled("cpu", args.profile, lambda: measure("rendezvous", args))
        profile_text = c.summarise_profile(args.profile)
    rows = []
    base = med.get("baseline")
    labels = {
        "rendezvous": "rendezvous, 1 process, 1 thread (pinned)",
        "threads": "rendezvous, 1 process, --fanout-threads 2",
        "workers": f"rendezvous, --workers {args.workers}",
        "baseline": "bare Twisted baseline",
    }
    for kind in ("rendezvous", "threads", "workers", "baseline"):
        if kind not in med:
            continue
        m = med[kind]
        ours = kind != "baseline"
        rows.append(
            [
                labels[kind],
                m["p50_ms"],
                m["p99_ms"],
                m["max_ms"],
                m["deliveries_per_s"],
                m["server_cpu_ms"],
                m["gen_cpu_ms"],
                m["others_cpu_ms"],
                m["max_ms"] / base["max_ms"] if ours and base else "",
                ("met" if m["max_ms"] <= args.target_ms else "MISSED") if ours else "",
            ]
        )
    print(
        c.table(
            f"Scenario 2: fan-out of one REGISTER to {args.subscribers:,} subscribers, median of "
            f"{args.runs} run(s) x {args.rounds} rounds; target: all within {args.target_ms:g} ms",
            [
                "server",
                "p50 ms",
                "p99 ms",
                "max ms",
                "deliveries/s",
                "server CPU ms",
                "generator CPU ms",
                "other processes' CPU ms",
                "ours/baseline (max)",
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
            "scenario": "fanout",
            "args": vars(args),
            "median": [{"server": k, **m} for k, m in med.items()],
            "samples": {
                k: [{x: y for x, y in r.items() if x != "latencies_ms"} for r in rs]
                for k, rs in samples.items()
            },
            "typical_latencies_ms": {k: c.median_round(samples[k])["latencies_ms"] for k in kinds},
            "profile": profile_text,
        },
    )
    if args.plot:
        c.plot_deliveries(
            args.plot,
            {labels[kind]: c.median_round(samples[kind])["latencies_ms"] for kind in kinds},
            f"Scenario 2: fan-out to {args.subscribers:,} subscribers (median round)",
            args.target_ms,
        )
    return 0


if __name__ == "__main__":
    p = c.base_parser(__doc__, timeout=300)
    p.add_argument("--subscribers", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=5, help="REGISTERs per run")
    p.add_argument("--pause", type=float, default=0.3, help="seconds between rounds")
    p.add_argument("--generators", type=int, default=2, help="subscriber processes")
    p.add_argument("--batch", type=int, default=500, help="connections opened at once")
    p.add_argument("--target-ms", type=float, default=100)
    p.add_argument("--workers", type=int, default=2, help="worker processes of 'workers'")
    p.add_argument(
        "--settle", type=float, default=0.3, help="seconds generators wait before reading"
    )
    p.set_defaults(servers="rendezvous,threads,workers,baseline")
    c.main_wrapper(main, p.parse_args())
