"""Scenario 4: idle sessions held, each with one registration and one subscription.

Load-generator processes open sessions in steps (``--steps``, up to ``--sessions``), each
from one of 127.0.0.2-201, and in each session send a REGISTER (its own peer id, in one
shared namespace), a RENDEZVOUS (a second namespace where nobody registers, so nothing is
pushed) and a DISCOVER whose reply proves both were handled. After each step the server's
RSS is read; per-session memory = (RSS - RSS with no session) / sessions, where "no
session" is read after ``--warm`` sessions per generator have come and gone (what serving
the first session costs once is not a cost per session). At the end every
session sends one more DISCOVER and must be answered.

A server process cannot hold more descriptors than its hard RLIMIT_NOFILE: for one
process (``rendezvous``, the baselines) ``--sessions`` defaults to what fits under it. The
``workers`` server is our daemon with ``--workers`` processes, each holding its share of
the connections (the main process keeps only the registry): it is grown to
``--workers-sessions`` (50,000), and its RSS is that of all its processes.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as c
from _common import helpers


def worker(conn, port: int, first: int, stride: int, batch: int, idle: bool) -> None:
    """Owns sessions first, first + stride, first + 2 * stride, ..."""
    ep = c.Epoll()
    counters: dict[int, c.FrameCounter] = {}
    index = first
    while True:
        cmd = conn.recv()
        if cmd[0] == "quit":
            ep.close()
            return
        deadline = time.monotonic() + 150
        if cmd[0] == "grow":
            target = cmd[1]
            while len(ep.socks) < target:
                want = {}
                for _ in range(min(batch, target - len(ep.socks))):
                    s = c.connect(port, index)
                    ep.add(s)
                    counters[s.fileno()] = c.FrameCounter()
                    if not idle:
                        c.send_all(
                            s,
                            b"".join(
                                [
                                    c.frame(
                                        helpers.register(
                                            "held", f"s4-{index}", helpers.tcp_addr(index % 250)
                                        )
                                    ),
                                    c.frame(helpers.rendezvous("held-watch")),
                                    c.marker(),
                                ]
                            ),
                            deadline,
                        )
                        want[s.fileno()] = 1
                    index += stride
                c.wait_frames(ep, counters, want, deadline)
            conn.send(("grown", len(ep.socks)))
        elif cmd[0] == "warm":
            # Sessions that come and go before the baseline is read: what serving the
            # first ones costs once (imports, caches, the allocator's first arenas) is
            # not a cost per session.
            socks, want = [], {}
            for k in range(cmd[1]):
                s = c.connect(port, first + k)
                socks.append(s)
                ep.add(s)
                counters[s.fileno()] = c.FrameCounter()
                hello = [c.frame(helpers.rendezvous("held-watch")), c.marker()]
                if not idle:
                    reg = helpers.register("warm", f"s4-warm-{first}-{k}", helpers.tcp_addr(1))
                    c.send_all(s, b"".join([c.frame(reg), *hello]), deadline)
                    want[s.fileno()] = 1
            c.wait_frames(ep, counters, want, deadline)
            for s in socks:
                fd = s.fileno()
                del counters[fd], ep.socks[fd]
                ep.ep.unregister(fd)
                s.close()
            conn.send(("warmed",))
        elif cmd[0] == "check":
            probe = c.marker(2)
            want = {}
            for fd, s in ep.socks.items():
                c.send_all(s, probe, deadline)
                want[fd] = counters[fd].frames + 1
            with contextlib.suppress(c.BenchTimeout):  # count who answered in time
                c.wait_frames(ep, counters, want, min(deadline, time.monotonic() + cmd[1]))
            answered = sum(counters[fd].frames >= n for fd, n in want.items())
            conn.send(("answered", answered))


def measure(kind: str, args) -> dict:
    workers = args.workers if kind == "workers" else 0
    server = c.Server("rendezvous" if workers else kind, workers=workers)
    steps = args.steps[kind]
    idle = kind == "baseline-idle"
    generators = [
        c.Worker(worker, server.port, k, args.generators, args.batch, idle)
        for k in range(args.generators)
    ]
    try:
        c.broadcast(generators, "warm", args.warm, timeout=60)
        time.sleep(0.5)
        base_rss, base_main = server.rss(), server.main_rss()
        report = c.PROFILE.get("memory")
        if report and kind == "rendezvous":
            server.proc.send_signal(signal.SIGUSR2)  # the baseline snapshot
            time.sleep(1)
        curve = [(0, base_rss)]
        t0 = time.monotonic()
        for step in steps:
            shares = c.split(step, args.generators)
            for w, n in zip(generators, shares, strict=True):
                w.send("grow", n)
            got = sum(w.recv(200)[1] for w in generators)
            assert got == step, (got, step)
            time.sleep(args.settle)
            server.check_alive()
            curve.append((step, server.rss()))
        grow_seconds = time.monotonic() - t0
        if report and kind == "rendezvous":
            if os.path.exists(report):
                os.unlink(report)
            server.proc.send_signal(signal.SIGUSR2)
            for _ in range(1200):
                time.sleep(0.1)
                if os.path.exists(report) and os.path.getsize(report):
                    time.sleep(0.5)
                    break
        answered = (
            step if idle else sum(r[1] for r in c.broadcast(generators, "check", 60, timeout=120))
        )
        server.check_alive()
        n, rss = curve[-1]
        main_growth = server.main_rss() - base_main
        return {
            "main_kib": main_growth / n / 1024,
            "server": kind,
            "sessions": n,
            "base_rss_mib": base_rss / 2**20,
            "rss_mib": rss / 2**20,
            "per_session_kib": (rss - base_rss) / n / 1024,
            "answered": answered,
            "grow_seconds": grow_seconds,
            "server_cpu_s": server.cpu(),
            "curve": curve,
        }
    finally:
        for w in generators:
            w.stop()
        server.stop()


KEYS = ("base_rss_mib", "rss_mib", "per_session_kib", "main_kib", "answered", "grow_seconds")


def main(args) -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if args.sessions is None:
        args.sessions = min(50_000, (hard - 1000) // 1000 * 1000)
    if args.quick:
        args.sessions, args.runs, args.settle = 60, 1, 0.1
    if args.sessions > hard - 100:
        print(
            f"note: {args.sessions} sessions do not fit under the server's hard fd limit "
            f"({hard}); using {hard - 1000}",
            file=sys.stderr,
        )
        args.sessions = hard - 1000
    if args.quick:
        args.workers_sessions = 90
    fractions = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0)
    kinds = args.servers.split(",")
    args.sizes = {k: args.workers_sessions if k == "workers" else args.sessions for k in kinds}
    args.steps = {k: sorted({max(1, int(n * f)) for f in fractions}) for k, n in args.sizes.items()}
    samples: dict[str, list[dict]] = {k: [] for k in kinds}
    for _ in range(args.runs):
        for kind in kinds:
            samples[kind].append(measure(kind, args))
    med = {k: {key: c.median([r[key] for r in rs]) for key in KEYS} for k, rs in samples.items()}
    profile_text = None
    if args.profile and "rendezvous" in kinds:
        c.profiled("memory", args.profile, lambda: measure("rendezvous", args))
        with open(args.profile) as f:
            profile_text = f.read()
    rows = []
    ours = med.get("rendezvous")
    labels = {"workers": f"rendezvous, --workers {args.workers}"}
    for kind, m in med.items():
        mine = kind in ("rendezvous", "workers")
        rows.append(
            [
                labels.get(kind, kind),
                args.sizes[kind],
                m["base_rss_mib"],
                m["rss_mib"],
                m["per_session_kib"],
                m["main_kib"] if kind == "workers" else "",
                f"{m['answered']:,.0f}" if kind != "baseline-idle" else "(not asked)",
                ours["per_session_kib"] / m["per_session_kib"] if ours and not mine else "",
                (
                    "met"
                    if m["per_session_kib"] < args.target_kib and m["answered"] == args.sizes[kind]
                    else "MISSED"
                )
                if mine
                else "",
            ]
        )
    print(
        c.table(
            f"Scenario 4: idle sessions with 1 registration + 1 subscription each, median of "
            f"{args.runs} run(s); target < {args.target_kib:g} KiB per session, all answered "
            f"(server fd hard limit {hard})",
            [
                "server",
                "sessions",
                "RSS empty MiB",
                "RSS full MiB",
                "KiB/session",
                "of which main process",
                "answered",
                "ours/this",
                "target",
            ],
            rows,
        )
    )
    if profile_text:
        print("\nmemory of the daemon (tracemalloc, biggest allocation sites):\n" + profile_text)
    c.write_json(
        args.json,
        {
            "profile": profile_text,
            "scenario": "sessions_held",
            "args": vars(args),
            "median": [{"server": k, **m} for k, m in med.items()],
            "samples": samples,
        },
    )
    if args.plot and (plt := c.pyplot()):
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for kind in kinds:
            curve = samples[kind][len(samples[kind]) // 2]["curve"]
            base = curve[0][1]
            ax.plot(
                [n for n, _ in curve],
                [(r - base) / 2**20 for _, r in curve],
                marker="o",
                label=labels.get(kind, kind),
            )
        xs = [0, max(args.sizes.values())]
        ax.plot(
            xs,
            [x * args.target_kib / 1024 for x in xs],
            color="grey",
            ls="--",
            label=f"target ({args.target_kib:g} KiB/session)",
        )
        ax.set_xlabel("sessions held")
        ax.set_ylabel("RSS above the empty server (MiB)")
        ax.set_title("Scenario 4: memory against sessions held")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
    return 0


if __name__ == "__main__":
    p = c.base_parser(__doc__, timeout=300)
    p.set_defaults(servers="rendezvous,workers,baseline,baseline-idle")
    p.add_argument(
        "--sessions",
        type=int,
        default=None,
        help="sessions at the last step (default: 50,000 or what the fd limit allows)",
    )
    p.add_argument(
        "--workers-sessions", type=int, default=50_000, help="sessions the workers server grows to"
    )
    p.add_argument("--workers", type=int, default=3, help="worker processes of 'workers'")
    p.add_argument("--generators", type=int, default=4, help="client processes")
    p.add_argument(
        "--warm", type=int, default=8, help="sessions per generator opened and closed first"
    )
    p.add_argument("--batch", type=int, default=500, help="connections opened at once")
    p.add_argument("--settle", type=float, default=0.5, help="seconds before reading RSS")
    p.add_argument("--target-kib", type=float, default=3.0)
    for action in p._actions:
        if action.dest == "profile":
            action.help = "run our daemon once more under tracemalloc; write its report here"
    c.main_wrapper(main, p.parse_args())
