"""Reference for scenario 2: the cost of the fan-out's system calls alone, without Twisted.

One process pinned to CPU 0 accepts ``--subscribers`` loopback connections from a reader
process pinned to the other CPU, then, per round, calls ``socket.send`` of one ~75-byte
message on each accepted socket in a plain loop. The table gives the loop's wall time and
CPU time: no single-threaded server written in Python reaches every subscriber faster than
this here. A second row splits the same sends over ``--threads`` threads allowed every
core (the system call releases the GIL): what sending from threads could gain. A third
splits them over ``--processes`` processes allowed every core (what ``--workers`` does);
its loop time is that of the slowest. The reader drains its sockets only between rounds,
so that it does not compete for the CPUs while they send.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as c


def reader(conn, port: int, count: int) -> None:
    ep = c.Epoll()
    for k in range(count):
        ep.add(c.connect(port, k))
    conn.send(("ready",))
    while True:
        if conn.recv()[0] == "quit":
            ep.close()
            return
        for fd, _ev in ep.poll(0):
            with contextlib.suppress(BlockingIOError):
                ep.socks[fd].recv(65536)
        conn.send(("drained",))


def sender(conn, socks: list[socket.socket], message: bytes) -> None:
    """One of ``--processes``: sends ``message`` on each of ``socks`` when told to start."""
    os.sched_setaffinity(0, range(os.cpu_count() or 1))
    while True:
        cmd = conn.recv()
        if cmd[0] == "quit":
            return
        while time.time() < cmd[1]:
            pass
        cpu0 = c.self_cpu()
        for s in socks:
            s.send(message)
        conn.send(("sent", time.time() - cmd[1], c.self_cpu() - cpu0))


def main(args) -> int:
    if args.quick:
        args.subscribers, args.rounds = 50, 2
    c.pin(c.SERVER_CPUS)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    port = listener.getsockname()[1]
    r = c.Worker(reader, port, args.subscribers)
    accepted = []
    listener.settimeout(60)
    while len(accepted) < args.subscribers:
        accepted.append(listener.accept()[0])
    r.recv()
    message = b"\x4a" + b"x" * 74

    def send_each(socks: list[socket.socket]) -> None:
        for s in socks:
            s.send(message)

    setups = [("raw send loop", 1, sorted(c.SERVER_CPUS))]
    if args.threads > 1:
        setups.append((f"{args.threads} threads", args.threads, list(range(os.cpu_count() or 1))))
    rows, results = [], {}
    for label, threads, cpus_allowed in setups:
        os.sched_setaffinity(0, cpus_allowed)
        os.sched_setaffinity(0, cpus_allowed)
        pool = ThreadPoolExecutor(threads) if threads > 1 else None
        parts = [accepted[i::threads] for i in range(threads)]
        walls, cpus = [], []
        for _ in range(args.rounds):
            time.sleep(args.pause)
            cpu0, t0 = c.self_cpu(), time.perf_counter()
            if pool is None:
                send_each(accepted)
            else:
                list(pool.map(send_each, parts))
            walls.append((time.perf_counter() - t0) * 1000)
            cpus.append((c.self_cpu() - cpu0) * 1000)
            c.broadcast([r], "drain")
        if pool is not None:
            pool.shutdown()
        med_wall = c.median(walls)
        rows.append(
            [label, args.subscribers, med_wall, c.median(cpus), args.subscribers / med_wall * 1000]
        )
        results[label] = {"loop_ms": walls, "cpu_ms": cpus}
    if args.processes > 1:
        senders = [
            c.Worker(sender, accepted[i :: args.processes], message) for i in range(args.processes)
        ]
        walls, cpus = [], []
        for _ in range(args.rounds):
            time.sleep(args.pause)
            done = c.broadcast(senders, "go", time.time() + 0.02)
            walls.append(max(d[1] for d in done) * 1000)
            cpus.append(sum(d[2] for d in done) * 1000)
            c.broadcast([r], "drain")
        for w in senders:
            w.stop()
        label = f"{args.processes} processes"
        med_wall = c.median(walls)
        rows.append(
            [label, args.subscribers, med_wall, c.median(cpus), args.subscribers / med_wall * 1000]
        )
        results[label] = {"loop_ms": walls, "cpu_ms": cpus}
    r.stop()
    for s in accepted:
        s.close()
    print(
        c.table(
            f"Scenario 2 floor: one socket.send per subscriber in a plain loop (and split over "
            f"threads, then processes, every core), {args.subscribers:,} subscribers, median of "
            f"{args.rounds} rounds",
            ["what", "subscribers", "loop ms", "CPU ms", "sends/s"],
            rows,
        )
    )
    c.write_json(args.json, {"scenario": "fanout_floor", "args": vars(args), **results})
    return 0


if __name__ == "__main__":
    p = c.base_parser(__doc__, timeout=120, profile=False)
    p.add_argument("--subscribers", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--pause", type=float, default=0.3)
    p.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="threads of the second row"
    )
    p.add_argument(
        "--processes", type=int, default=os.cpu_count() or 1, help="processes of the third row"
    )
    c.main_wrapper(main, p.parse_args())
