"""Scenario 1: REGISTER throughput, live dialect over TCP, pipelined from many sessions.

Every session owns ``--per-session`` peer ids and re-registers them over and over, in
chunks of that many REGISTER frames followed by a DISCOVER in an empty namespace whose reply
proves the chunk was handled; ``--window`` chunks are in flight per session. The first pass
(every session's chunk once, all sessions at the same time) creates the registrations
and is timed on its own: each id is new to the daemon. A second pass, timed the same
way, refreshes them: every session registers each of its ids again with another
address (what a peer sends when its addresses change). Later passes re-send the first
pass's frames byte for byte over and over (repeats: the daemon's per-session entry
cache answers them; it announces to subscribers, of which there are none here): after a
warm-up, handled registrations are counted for ``--seconds``.
"""

from __future__ import annotations

import functools
import json
import os
import select
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as c
from _common import helpers

CPU_TICK = 0.01
"""Server CPU below this (the kernel's clock tick) is too little to divide by."""


def per_cpu(rate: float | None) -> float | str:
    """A per-CPU-second rate for a table; "0 CPU" where the CPU measured was nothing."""
    return "0 CPU" if rate is None or rate != rate else rate  # None or NaN: no CPU seen


@functools.cache
def session_chunk(i: int, per_session: int, port: int = 4001) -> bytes:
    """Session ``i``'s REGISTER frames (addresses on ``port``), then the marker DISCOVER."""
    frames = [
        c.frame(helpers.register("bench", f"s1-{i}-{j}", helpers.tcp_addr(j % 250, port)))
        for j in range(per_session)
    ]
    return b"".join(frames) + c.marker()


def worker(conn, port: int, count: int, first: int, per_session: int, window: int) -> None:
    chunks = [session_chunk(i, per_session) for i in range(first, first + count)]
    ep = c.Epoll()
    socks = [c.connect(port, first + k) for k in range(count)]
    for s in socks:
        ep.add(s)
    conn.send(("ready", len(chunks[0]) // (per_session + 1)))
    while True:
        cmd = conn.recv()
        if cmd[0] == "quit":
            ep.close()
            return
        if cmd[0] == "create":
            conn.send(create(ep, socks, chunks))
            continue
        if cmd[0] == "refresh":
            moved = [session_chunk(i, per_session, 4002) for i in range(first, first + count)]
            conn.send(create(ep, socks, moved))
            continue
        _, t_start, t_end = cmd
        conn.send(run(ep, socks, chunks, window, t_start, t_end))


def create(ep, socks, chunks) -> dict:
    """One pass: every session sends its chunk once, all at the same time."""
    t0, cpu0 = time.monotonic(), c.self_cpu()
    deadline = t0 + 120
    for s, chunk in zip(socks, chunks, strict=True):
        c.send_all(s, chunk, deadline)
    counters = {s.fileno(): c.FrameCounter() for s in socks}
    c.wait_frames(ep, counters, dict.fromkeys(counters, 1), deadline)
    return {"seconds": time.monotonic() - t0, "cpu": c.self_cpu() - cpu0}


def run(ep, socks, chunks, window, t_start, t_end) -> dict:
    fds = [s.fileno() for s in socks]
    chunk_of = dict(zip(fds, chunks, strict=True))
    counter = {fd: c.FrameCounter() for fd in fds}
    inflight = dict.fromkeys(fds, 0)
    pending: dict[int, memoryview] = {}
    done = 0
    mark: dict[str, tuple[int, float, float]] = {}

    def push(fd: int, n: int) -> None:
        data = chunk_of[fd] * n
        if fd in pending:
            pending[fd] = memoryview(bytes(pending[fd]) + data)
            return
        try:
            sent = ep.socks[fd].send(data)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            pending[fd] = memoryview(data)[sent:]
            ep.modify(ep.socks[fd], select.EPOLLIN | select.EPOLLOUT)

    for fd in fds:
        push(fd, window)
        inflight[fd] = window
    sending = True
    while True:
        now = time.monotonic()
        if "start" not in mark and now >= t_start:
            mark["start"] = (done, now, c.self_cpu())
        if now >= t_end:
            if sending:
                mark["end"] = (done, now, c.self_cpu())
                sending = False
            if not any(inflight.values()) or now > t_end + 30:
                break
        for fd, ev in ep.poll(0.05):
            if ev & select.EPOLLOUT and fd in pending:
                view = pending[fd]
                try:
                    sent = ep.socks[fd].send(view)
                except BlockingIOError:
                    sent = 0
                if sent == len(view):
                    del pending[fd]
                    ep.modify(ep.socks[fd], select.EPOLLIN)
                else:
                    pending[fd] = view[sent:]
            if ev & select.EPOLLIN:
                data = ep.socks[fd].recv(65536)
                if not data:
                    raise RuntimeError("server closed a connection")
                n = counter[fd].feed(data)
                if n:
                    done += n
                    inflight[fd] -= n
                    if sending:
                        push(fd, n)
                        inflight[fd] += n
    d0, t0, cpu0 = mark["start"]
    d1, t1, cpu1 = mark["end"]
    return {"chunks": d1 - d0, "seconds": t1 - t0, "cpu": cpu1 - cpu0}


def measure(kind: str, args, sessions: int, profile: str | None = None) -> dict:
    extra = ["--max-registrations-per-session", str(max(256, args.per_session))]
    server = c.Server(kind, extra, profile=profile)
    gens = min(args.generators, sessions)
    workers = []
    try:
        first = 0
        for n in c.split(sessions, gens):
            workers.append(c.Worker(worker, server.port, n, first, args.per_session, args.window))
            first += n
        sizes = [w.recv()[1] for w in workers]
        frame_bytes = sizes[0]
        cpu0 = server.cpu()
        for w in workers:
            w.send("create")
        created = [w.recv(120) for w in workers]
        create_cpu = server.cpu() - cpu0
        create_seconds = max(r["seconds"] for r in created)
        cpu0 = server.cpu()
        for w in workers:
            w.send("refresh")
        refreshed = [w.recv(120) for w in workers]
        refresh_cpu = server.cpu() - cpu0
        refresh_seconds = max(r["seconds"] for r in refreshed)
        t_start = time.monotonic() + args.warmup
        t_end = t_start + args.seconds
        for w in workers:
            w.send("run", t_start, t_end)
    except Exception:
        server.stop()
        raise
    try:
        time.sleep(max(0.0, t_start - time.monotonic()))
        cpu0, all0 = server.cpu(), c.system_cpu()
        time.sleep(max(0.0, t_end - time.monotonic()))
        cpu1, all1 = server.cpu(), c.system_cpu()
        results = [w.recv(args.seconds + 60) for w in workers]
        server.check_alive()
    finally:
        for w in workers:
            w.stop()
        server.stop()
    seconds = c.median([r["seconds"] for r in results])
    regs = sum(r["chunks"] for r in results) * args.per_session
    gen_cpu = sum(r["cpu"] for r in results)
    new = sessions * args.per_session
    return {
        "create_rate": new / create_seconds,
        "create_cpu": create_cpu,
        "create_per_cpu_second": new / create_cpu if create_cpu >= CPU_TICK else None,
        "refresh_rate": new / refresh_seconds,
        "refresh_per_cpu_second": new / refresh_cpu if refresh_cpu >= CPU_TICK else None,
        "per_cpu_second": (
            regs / seconds / ((cpu1 - cpu0) / args.seconds) if cpu1 - cpu0 >= CPU_TICK else None
        ),
        "others_cpu": max(0.0, (all1 - all0) - (cpu1 - cpu0) - gen_cpu) / args.seconds,
        "server": kind,
        "sessions": sessions,
        "rate": regs / seconds,
        "server_cpu": (cpu1 - cpu0) / args.seconds,
        "gen_cpu": gen_cpu / seconds,
        "frame_bytes": frame_bytes,
    }


def plot(path: str, med: dict, kinds: list[str], counts: list[int], target: float) -> None:
    """Rate against session count: as measured (solid) and per server CPU-second (dashed)."""
    plt = c.pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for i, kind in enumerate(kinds):
        xs = [n for n in counts if (kind, n) in med]
        colour = f"C{i}"
        ax.plot(xs, [med[(kind, n)]["rate"] for n in xs], marker="o", color=colour, label=kind)
        ax.plot(
            xs,
            [med[(kind, n)]["per_cpu_second"] for n in xs],
            marker="o",
            ls=":",
            color=colour,
            label=f"{kind}, per server CPU-second",
        )
    ax.axhline(target, color="grey", ls="--", label="target")
    ax.set_xscale("log")
    ax.set_xlabel("pipelining sessions")
    ax.set_ylabel("REGISTER handled per second")
    ax.set_title("Scenario 1: REGISTER throughput against session count")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def replot(json_path: str, png: str) -> None:
    """Draw the plot again from a ``--json`` file, without measuring."""
    with open(json_path) as f:
        data = json.load(f)
    med = {(m["server"], m["sessions"]): m for m in data["median"]}
    kinds = list(dict.fromkeys(k for k, _ in med))
    counts = sorted({n for _, n in med})
    plot(png, med, kinds, counts, data["args"]["target"])


MEDIANS = (
    "rate",
    "server_cpu",
    "gen_cpu",
    "per_cpu_second",
    "others_cpu",
    "create_rate",
    "create_per_cpu_second",
    "refresh_rate",
    "refresh_per_cpu_second",
)


def main(args) -> int:
    if args.quick:
        args.sessions, args.sweep, args.per_session = 20, "", 20
        args.seconds, args.warmup, args.runs = 0.5, 0.3, 1
    kinds = args.servers.split(",")
    counts = sorted({int(x) for x in args.sweep.split(",") if x} | {args.sessions})
    samples: dict[tuple[str, int], list[dict]] = {}
    for i in range(max(counts)):  # encoded once here, inherited by the forked generators
        session_chunk(i, args.per_session)
        session_chunk(i, args.per_session, 4002)
    for _ in range(args.runs):
        for n in counts:
            for kind in kinds:
                samples.setdefault((kind, n), []).append(measure(kind, args, n))
    med = {
        key: {k: c.median([r[k] for r in rs if r[k] is not None]) for k in MEDIANS}
        for key, rs in samples.items()
    }
    rows = []
    for n in counts:
        ours = med.get(("rendezvous", n))
        base = med.get(("baseline", n))
        for kind, m in (("rendezvous", ours), ("baseline", base)):
            if m is None:
                continue
            ratio = ours["rate"] / base["rate"] if ours and base else float("nan")
            rows.append(
                [
                    kind,
                    n,
                    m["rate"],
                    f"{m['server_cpu']:.0%}",
                    per_cpu(m["per_cpu_second"]),
                    f"{m['gen_cpu']:.0%}",
                    f"{m['others_cpu']:.0%}",
                    ratio if kind == "rendezvous" else "",
                    ("met" if m["rate"] >= args.target else "MISSED")
                    if kind == "rendezvous"
                    else "",
                ]
            )
    print(
        c.table(
            f"Scenario 1: REGISTER throughput, pipelined, {args.per_session} ids per session, "
            f"~{samples[(kinds[0], counts[-1])][0]['frame_bytes']}-byte frames, median of "
            f"{args.runs} run(s) x {args.seconds:g} s; target >= {args.target:,} /s",
            [
                "server",
                "sessions",
                "registrations/s",
                "server CPU",
                "per server CPU-s",
                "generator CPU",
                "other processes' CPU",
                "ours/baseline",
                "target",
            ],
            rows,
        )
    )
    print(
        c.table(
            "Scenario 1, distinct work before the repeats above: every session registers its "
            "ids once (new ids), then each again with another address (refresh)",
            ["server", "sessions", "pass", "registrations/s", "per server CPU-s"],
            [
                [kind, n, label, m[f"{key}_rate"], per_cpu(m[f"{key}_per_cpu_second"])]
                for n in counts
                for kind in kinds
                if (m := med.get((kind, n))) is not None
                for label, key in (("new ids", "create"), ("refresh", "refresh"))
            ],
        )
    )
    profile_text = None
    if args.profile and "rendezvous" in kinds:
        c.profiled("cpu", args.profile, lambda: measure("rendezvous", args, args.sessions))
        profile_text = c.summarise_profile(args.profile)
        print("\nprofile of the daemon (cProfile, by own time):\n" + profile_text)
    c.write_json(
        args.json,
        {
            "scenario": "register_throughput",
            "args": vars(args),
            "median": [{"server": k, "sessions": n, **m} for (k, n), m in med.items()],
            "samples": {f"{k}/{n}": rs for (k, n), rs in samples.items()},
            "profile": profile_text,
        },
    )
    if args.plot:
        plot(args.plot, med, kinds, counts, args.target)
    return 0


if __name__ == "__main__":
    p = c.base_parser(__doc__, timeout=300)
    p.add_argument("--sessions", type=int, default=1000)
    p.add_argument("--sweep", default="10,100", help="more session counts, for the plot")
    p.add_argument("--per-session", type=int, default=100, help="peer ids per session")
    p.add_argument("--window", type=int, default=2, help="chunks in flight per session")
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--generators", type=int, default=2, help="load-generator processes")
    p.add_argument("--target", type=int, default=100_000)
    p.add_argument("--replot", metavar="JSON", help="only redraw --plot from this --json file")
    parsed = p.parse_args()
    if parsed.replot:
        replot(parsed.replot, parsed.plot or "bench-register-throughput.png")
    else:
        c.main_wrapper(main, parsed)
