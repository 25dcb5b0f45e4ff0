"""Soak (issue #14): an hour-equivalent of churn against one daemon, watched for leaks.

One daemon runs as operators run it (``twistd -n rendezvous --listen tcp:0:… --p2p-listen
/ip4/127.0.0.1/tcp/0 --metrics tcp:0:…``, with ``--ttl-min 1 --ttl-default 5`` so the
standard dialect's registrations expire within the run), pinned to CPU 0. Load-generator
processes (``--generators``, on the other CPU) built on the client library start
``--rate`` client cycles per second between them, each one of three kinds in turn:

- live dialect on a raw TCP stream (half the cycles): ``connect_to(host:port)``, REGISTER
  an id from a pool (so ids come back, from other sessions, with other addresses),
  RENDEZVOUS in its namespace, DISCOVER, REGISTER the id again with a changed address,
  hold the session 1-20 s (it sees the pushes of others), then drop it without
  UNREGISTER (one cycle in ten UNREGISTERs first): the daemon must clean up;
- live dialect over libp2p (a quarter): the same, as a peer id from a pool of keys (over
  libp2p only one's own id may be registered);
- standard dialect ``/rendezvous/1.0.0`` over libp2p (a quarter): REGISTER (TTL: the
  daemon's default, 5 s), DISCOVER, REGISTER again with a changed address, hold, drop: the
  registration stays until its TTL runs out.

Every soak minute (``--minute-seconds`` of real time) the daemon's RSS (VmRSS of
/proc/PID/status), its open descriptors (/proc/PID/fd) and /metrics (sessions,
registrations, namespaces, subscriptions) are sampled. At the end the load stops (every
open session is dropped), the TTLs run out, and the daemon must hold no session and no
registration, and as many descriptors as before the load (+/- ``--fd-slack``); its RSS
after warm-up (the first 20 % of the samples) must be flat: the least-squares slope
over the run and the largest deviation from the mean each within 5 % of the mean.
"""

from __future__ import annotations

import http.client
import os
import random
import re
import signal
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as c

from tests import helpers

KINDS = ("raw live", "libp2p live", "libp2p standard")
MIX = (0, 1, 0, 2)
"""Cycle kinds in turn: half raw live, a quarter each over libp2p."""
_LIVE = re.compile(r"live dialect listening on tcp [0-9.]+:(\d+)")
_P2P = re.compile(r"listening on (/ip4/127\.0\.0\.1/tcp/\d+/p2p/\w+)")
_METRICS = re.compile(r"metrics listening on tcp [0-9.]+:(\d+)")
_TRACEMALLOC = c._TRACEMALLOC.replace(
    "    snap = tracemalloc.take_snapshot()",
    # Collect first: what is left is held by a reference, not garbage awaiting the
    # collector (a full collection runs only now and then, the saw-tooth of the RSS).
    "    import gc\n    _freed = gc.collect()\n    snap = tracemalloc.take_snapshot()",
).replace(
    'f.write(f"traced growth since',
    'f.write(f"gc.collect() freed {{_freed}} objects first\\n")\n'
    '        f.write(f"traced growth since',
)
GAUGES = ("sessions", "registrations", "namespaces", "subscriptions")


class Daemon:
    """``twistd -n rendezvous`` with the live, libp2p and metrics listeners on free ports."""

    def __init__(self, ttl_default: int, tracemalloc: str | None = None) -> None:
        """``tracemalloc``: run the daemon under tracemalloc; `snapshot` writes there
        what grew since its first call."""
        code = c.TWISTD_CODE
        if tracemalloc:
            code = _TRACEMALLOC.format(path=os.path.abspath(tracemalloc)) + code
        argv = c.twistd_argv(
            "rendezvous",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/0",
            "--metrics",
            "tcp:0:interface=127.0.0.1",
            "--ttl-min",
            "1",
            "--ttl-default",
            str(ttl_default),
            # Every client comes from 127.0.0.1 here, not from thousands of addresses:
            # lift the per-IP limits (64 libp2p connections, 256 live sessions, 50 new
            # live sessions per second) that would otherwise refuse them.
            "--p2p-max-connections-per-ip",
            "100000",
            "--max-sessions-per-ip",
            "100000",
            "--session-rate-per-ip",
            "100000",
            code=code,
        )
        self.proc, self.log = c.spawn_logged(argv, "soak-daemon-", env=c.child_env())
        deadline = time.monotonic() + 60
        while True:
            text = self.log_text()
            found = [p.search(text) for p in (_LIVE, _P2P, _METRICS)]
            if all(found):
                break
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"the daemon did not start:\n{text}")
            time.sleep(0.05)
        self.raw = f"127.0.0.1:{found[0].group(1)}"  # type: ignore[union-attr]
        self.p2p = found[1].group(1)  # type: ignore[union-attr]
        self.metrics = int(found[2].group(1))  # type: ignore[union-attr]

    def log_text(self) -> str:
        with open(self.log.name, "rb") as f:
            return f.read().decode(errors="replace")

    def rss(self) -> int:
        """VmRSS in bytes."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def scrape(self) -> dict[str, float]:
        conn = http.client.HTTPConnection("127.0.0.1", self.metrics, timeout=10)
        try:
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
        finally:
            conn.close()
        out = {}
        for line in text.splitlines():
            if line.startswith("rendezvous_") and "{" not in line:
                name, _, value = line.partition(" ")
                out[name.removeprefix("rendezvous_")] = float(value)
        return out

    def sample(self) -> dict[str, Any]:
        m = self.scrape()
        return {
            "rss": self.rss(),
            "fds": self.fds(),
            **{g: int(m.get(g, -1)) for g in GAUGES},
            "opened": int(m.get("sessions_opened_total", -1)),
        }

    def snapshot(self) -> None:
        """SIGUSR2: the first takes tracemalloc's base, later ones write the growth."""
        os.kill(self.proc.pid, signal.SIGUSR2)
        time.sleep(8)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc in c._children:
            c._children.remove(self.proc)


# -- load generators --------------------------------------------------------------------


def generator(conn: Any, index: int, count: int, raw: str, p2p: str, rate: float,
              hold: tuple[float, float], ids: int, keys: int, namespaces: int) -> None:  # fmt: skip
    """A load-generator process: client cycles on a Twisted reactor, ``rate`` per second,
    until the driver says "stop"; then every open session is dropped and the tallies sent."""
    from twisted.internet import epollreactor

    epollreactor.install()  # type: ignore[no-untyped-call]
    from restart_drill import _Pipe
    from twisted.internet import reactor as installed

    reactor: Any = installed
    churn = Churn(conn, reactor, index, count, raw, p2p, rate, hold, ids, keys, namespaces)
    reactor.addReader(_Pipe(conn, churn.command))
    reactor.callWhenRunning(churn.start)
    reactor.run(installSignalHandlers=False)


class Churn:
    """Starts client cycles at a steady rate; counts what they did and what failed."""

    def __init__(self, conn: Any, reactor: Any, index: int, count: int, raw: str, p2p: str,
                 rate: float, hold: tuple[float, float], ids: int, keys: int,
                 namespaces: int) -> None:  # fmt: skip
        from rendezvous.p2p.keys import PrivateKey

        self.conn, self.reactor, self.raw, self.p2p = conn, reactor, raw, p2p
        self.rate, self.hold, self.namespaces = rate, hold, namespaces
        self.random = random.Random(index)
        # Each generator has ids and keys of its own: one peer is never two generators'.
        self.ids = [helpers.peer_id(f"soak-{index}-{i}") for i in range(ids)]
        self.keys = [PrivateKey.generate() for _ in range(keys)]
        self.busy_ids: set[int] = set()
        self.busy_keys: set[int] = set()
        self.n = index  # this generator's share of the kinds' rotation
        self.stride = count
        self.open: set[Any] = set()
        self.stopping = False
        self.started = dict.fromkeys(KINDS, 0)
        self.completed = dict.fromkeys(KINDS, 0)
        self.failed = dict.fromkeys(KINDS, 0)
        self.reasons: dict[str, int] = {}
        self.pushes = 0
        self.skipped = 0
        self.loop: Any = None

    def command(self, message: tuple[Any, ...]) -> None:
        if message[0] == "stop":
            self.stop()
        elif message[0] == "quit":
            os._exit(0)

    def start(self) -> None:
        from twisted.internet.task import LoopingCall

        self.loop = LoopingCall(self.tick)
        self.loop.clock = self.reactor
        self.loop.start(1 / self.rate, now=False)
        self.conn.send(("started",))

    def tick(self) -> None:
        from twisted.internet.defer import ensureDeferred

        if len(self.open) > 4000:
            self.skipped += 1  # the machine does not keep up: do not pile on
            return
        kind = KINDS[MIX[self.n % len(MIX)]]
        self.n += self.stride
        self.started[kind] += 1
        d = ensureDeferred(self.cycle(kind))
        d.addErrback(self.failure, kind)

    def failure(self, failure: Any, kind: str) -> None:
        self.failed[kind] += 1
        text = f"{kind}: {failure.type.__name__}: {str(failure.value)[:80]}"
        self.reasons[text] = self.reasons.get(text, 0) + 1

    def _pick(self, pool: int, busy: set[int]) -> int:
        """A pool member no open session of ours uses (a second session's REGISTER of
        an id the first still holds is refused on raw streams; over libp2p one key
        dialling twice is two sessions of one peer)."""
        for _ in range(8):
            i = self.random.randrange(pool)
            if i not in busy:
                busy.add(i)
                return i
        i = self.random.randrange(pool)
        while i in busy:
            i = (i + 1) % pool
        busy.add(i)
        return i

    async def cycle(self, kind: str) -> None:
        from twisted.internet.task import deferLater

        from rendezvous.client.connect import connect_to

        ns = f"soak-{self.random.randrange(self.namespaces)}"
        octet = self.random.randrange(1, 250)
        hold = self.random.uniform(*self.hold)
        pool, busy = (
            (self.keys, self.busy_keys) if kind != "raw live" else (self.ids, self.busy_ids)
        )
        slot = self._pick(len(pool), busy)
        client = None
        try:
            if kind == "raw live":
                client = await connect_to(self.reactor, self.raw)
                peer_id = self.ids[slot]
            else:
                key = self.keys[slot]
                dialect = "live" if kind == "libp2p live" else "standard"
                client = await connect_to(self.reactor, self.p2p, dialect=dialect, identity=key)
                peer_id = key.peer_id_text()
            self.open.add(client)
            if self.stopping:
                return
            await client.register(ns, peer_id, [helpers.tcp_addr(octet)])
            if kind != "libp2p standard":
                await client.rendezvous(ns, self.pushed)
            await client.discover(ns, 20)
            # The same id again with a changed address: replaces the registration.
            await client.register(ns, peer_id, [helpers.tcp_addr(octet, 4002)])
            await deferLater(self.reactor, hold, lambda: None)
            if self.stopping:
                return
            if kind != "libp2p standard" and self.random.random() < 0.1:
                await client.unregister(ns, peer_id)
            self.completed[kind] += 1
        finally:
            busy.discard(slot)
            if client is not None:
                self.open.discard(client)
                client.disconnect()  # drop: no UNREGISTER (the daemon cleans up)

    def pushed(self, event: Any) -> None:
        self.pushes += 1

    def stop(self) -> None:
        self.stopping = True
        if self.loop is not None and self.loop.running:
            self.loop.stop()
        for client in list(self.open):
            client.disconnect()
        # Let the sessions' closing handshakes go out, then report.
        self.reactor.callLater(1.0, self.report)

    def report(self) -> None:
        self.conn.send(
            (
                "report",
                {
                    "started": self.started,
                    "completed": self.completed,
                    "failed": self.failed,
                    "reasons": self.reasons,
                    "pushes": self.pushes,
                    "skipped": self.skipped,
                    "still_open": len(self.open),
                },
            )
        )


# -- the driver -------------------------------------------------------------------------


def trend(ts: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Least-squares slope of ``ys`` per unit of ``ts``; the mean; the largest |y - mean|."""
    n = len(ys)
    if n < 2:
        return 0.0, ys[0] if ys else float("nan"), 0.0
    mt, my = sum(ts) / n, sum(ys) / n
    var = sum((t - mt) ** 2 for t in ts)
    slope = sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / var if var else 0.0
    return slope, my, max(abs(y - my) for y in ys)


def main(args: Any) -> int:
    c.raise_fd_limit()
    daemon = Daemon(args.ttl_default, args.tracemalloc)
    per = c.split(int(args.rate * 1000), args.generators)
    hold = (args.hold_min, args.hold_max)
    workers = [
        c.Worker(
            generator,
            i,
            args.generators,
            daemon.raw,
            daemon.p2p,
            per[i] / 1000,
            hold,
            args.ids,
            args.keys,
            args.namespaces,
        )
        for i in range(args.generators)
    ]
    try:
        before = daemon.sample()
        print(
            f"daemon pid {daemon.proc.pid}: {daemon.raw}, {daemon.p2p}; {args.rate:g} cycles/s "
            f"from {args.generators} generators, {args.minutes} soak minutes of "
            f"{args.minute_seconds:g} s",
            flush=True,
        )
        for w in workers:
            w.recv(60)
        t0 = time.monotonic()
        samples = [{"minute": 0, "t": 0.0, **before}]
        warm_minute = max(1, round((args.minutes + 1) * 0.2))
        traced: dict[str, str] = {}
        for minute in range(1, args.minutes + 1):
            wake = t0 + minute * args.minute_seconds
            time.sleep(max(0.0, wake - time.monotonic()))
            daemon_alive(daemon)
            s = {"minute": minute, "t": time.monotonic() - t0, **daemon.sample()}
            samples.append(s)
            print(
                f"  minute {minute:3d}: RSS {s['rss'] / 2**20:6.1f} MiB, {s['fds']:4d} fds, "
                f"{s['sessions']:4d} sessions, {s['registrations']:4d} registrations, "
                f"{s['namespaces']:3d} namespaces, {s['subscriptions']:4d} subscriptions, "
                f"{s['opened']:,} sessions opened",
                flush=True,
            )
            if args.tracemalloc and minute == warm_minute:
                daemon.snapshot()  # the base: after warm-up
        load_s = time.monotonic() - t0
        if args.tracemalloc:
            daemon.snapshot()
            traced["under load, after warm-up"] = read(args.tracemalloc)
        reports = c.broadcast(workers, "stop", timeout=60)
        stopped = time.monotonic()
        # Every session dropped; the standard dialect's registrations run out with their TTL.
        deadline = stopped + args.ttl_default * 2 + 15
        while True:
            end = daemon.sample()
            if (end["sessions"] == 0 and end["registrations"] == 0) or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        drained_s = time.monotonic() - stopped
        time.sleep(1.0)  # the last closes' descriptors
        end = {"minute": None, "t": time.monotonic() - t0, **daemon.sample()}
        daemon_alive(daemon)
        if args.tracemalloc:
            daemon.snapshot()
            traced["from warm-up to the end (load stopped, TTLs run out)"] = read(args.tracemalloc)
    finally:
        for w in workers:
            w.stop()
        daemon.stop()
        if args.keep_log:
            import shutil

            shutil.copyfile(daemon.log.name, args.keep_log)

    tally: dict[str, Any] = {k: {"started": 0, "completed": 0, "failed": 0} for k in KINDS}
    reasons: dict[str, int] = {}
    for _, r in reports:
        for kind in KINDS:
            for key in ("started", "completed", "failed"):
                tally[kind][key] += r[key][kind]
        for text, n in r["reasons"].items():
            reasons[text] = reasons.get(text, 0) + n
    pushes = sum(r["pushes"] for _, r in reports)
    skipped = sum(r["skipped"] for _, r in reports)

    warm = max(1, round(len(samples) * 0.2))
    steady = samples[warm:]
    ts = [s["minute"] for s in steady]
    rss = [s["rss"] / 2**20 for s in steady]
    slope, mean, dev = trend(ts, rss)
    span = (ts[-1] - ts[0]) if len(ts) > 1 else 0
    drift_pct = slope * span / mean * 100 if mean else float("nan")
    dev_pct = dev / mean * 100 if mean else float("nan")
    fd_delta = end["fds"] - before["fds"]
    checks = {
        "sessions_zero": end["sessions"] == 0,
        "registrations_zero": end["registrations"] == 0,
        "subscriptions_zero": end["subscriptions"] == 0,
        "namespaces_zero": end["namespaces"] == 0,
        "fds_back": abs(fd_delta) <= args.fd_slack,
        "rss_flat": abs(drift_pct) <= 5 and dev_pct <= 5,
    }

    total = sum(t["started"] for t in tally.values())
    rows = [
        [kind, t["started"], t["completed"], t["failed"], t["started"] / load_s]
        for kind, t in tally.items()
    ]
    completed = sum(t["completed"] for t in tally.values())
    failed = sum(t["failed"] for t in tally.values())
    rows.append(["all", total, completed, failed, total / load_s])
    print()
    print(
        c.table(
            f"Soak (a): client cycles over {load_s:.0f} s ({args.minutes} soak minutes)",
            ["kind", "cycles", "completed", "failed", "cycles/s"],
            rows,
        )
    )
    print(f"pushes received: {pushes:,}; ticks skipped (over 4,000 open): {skipped}")
    for text, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:10]:
        print(f"  failed: {n:,} x {text}")
    print()
    sample_rows = [
        [s["minute"], s["rss"] / 2**20, s["fds"], *(s[g] for g in GAUGES)]
        for s in samples
        if len(samples) <= 20 or s["minute"] % max(1, args.minutes // 12) == 0
    ]
    sample_rows.append(["end", end["rss"] / 2**20, end["fds"], *(end[g] for g in GAUGES)])
    print(
        c.table(
            "Soak (b): the daemon every soak minute, and after the load stopped and TTLs ran out",
            ["minute", "RSS MiB", "fds", *GAUGES],
            sample_rows,
        )
    )
    print()
    print(
        c.table(
            "Soak (c): leak checks",
            ["check", "value", "verdict"],
            [
                ["sessions at the end", end["sessions"], ok(checks["sessions_zero"])],
                [
                    "registrations at the end",
                    end["registrations"],
                    ok(checks["registrations_zero"]),
                ],
                [
                    "subscriptions at the end",
                    end["subscriptions"],
                    ok(checks["subscriptions_zero"]),
                ],
                ["namespaces at the end", end["namespaces"], ok(checks["namespaces_zero"])],
                ["drained after the load, s", drained_s, ""],
                [
                    f"descriptors: before {before['fds']}, end {end['fds']}",
                    f"{fd_delta:+d}",
                    ok(checks["fds_back"]),
                ],
                [f"RSS after warm-up (minute {ts[0]} on): mean MiB", mean, ""],
                ["RSS trend over the run, % of mean", f"{drift_pct:+.2f}", ok(abs(drift_pct) <= 5)],
                ["RSS slope, KiB per soak minute", slope * 1024, ""],
                ["RSS max deviation from mean, %", dev_pct, ok(dev_pct <= 5)],
            ],
        )
    )
    result = {
        "args": vars(args),
        "load_seconds": load_s,
        "tally": tally,
        "reasons": reasons,
        "pushes": pushes,
        "skipped": skipped,
        "samples": samples,
        "before": before,
        "end": end,
        "drained_seconds": drained_s,
        "warm_up_samples": warm,
        "rss_slope_mib_per_minute": slope,
        "rss_mean_mib": mean,
        "rss_drift_pct": drift_pct,
        "rss_max_deviation_pct": dev_pct,
        "fd_delta": fd_delta,
        "checks": checks,
    }
    for when, report in traced.items():
        print(f"\ntracemalloc, the daemon {when}:\n{report}")
    result["tracemalloc"] = traced
    c.write_json(args.json, result)
    if args.plot:
        plot(args.plot, samples, warm, end, slope, mean, ts)
    return 0 if all(checks.values()) or not args.strict else 1


def read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return "(no tracemalloc report)"


def ok(good: bool) -> str:
    return "ok" if good else "LEAK?"


def daemon_alive(daemon: Daemon) -> None:
    if daemon.proc.poll() is not None:
        tail = "\n".join(daemon.log_text().splitlines()[-20:])
        raise RuntimeError(f"the daemon exited with {daemon.proc.returncode}:\n{tail}")


def plot(path: str, samples: list[dict[str, Any]], warm: int, end: dict[str, Any],
         slope: float, mean: float, ts: list[int]) -> None:  # fmt: skip
    plt = c.pyplot()
    if plt is None:
        return
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5.4), sharex=True)
    minutes = [s["minute"] for s in samples]
    top.plot(minutes, [s["rss"] / 2**20 for s in samples], marker=".", label="RSS (MiB)")
    mid = sum(ts) / len(ts) if ts else 0
    if ts:
        top.plot(
            [ts[0], ts[-1]],
            [mean + slope * (ts[0] - mid), mean + slope * (ts[-1] - mid)],
            color="grey",
            ls="--",
            label="trend after warm-up",
        )
        top.axvspan(0, ts[0], color="grey", alpha=0.12, label="warm-up")
    top.set_ylabel("RSS (MiB)")
    fds = top.twinx()
    fds.plot(minutes, [s["fds"] for s in samples], color="tab:red", lw=0.8, label="descriptors")
    fds.set_ylabel("open descriptors", color="tab:red")
    top.set_title("Soak: the daemon under an hour-equivalent of churn")
    top.grid(alpha=0.3)
    lines = top.get_legend_handles_labels()
    more = fds.get_legend_handles_labels()
    top.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="lower right")
    for g in GAUGES:
        bottom.plot(minutes, [s[g] for s in samples], label=g)
    bottom.set_xlabel(
        f"soak minute (end, after the TTLs: {end['sessions']} sessions, "
        f"{end['registrations']} registrations)"
    )
    bottom.set_ylabel("count (/metrics)")
    bottom.grid(alpha=0.3)
    bottom.legend(fontsize=8, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    p = c.base_parser(__doc__, timeout=1800, profile=False)
    p.add_argument("--minutes", type=int, default=60, help="soak minutes (samples)")
    p.add_argument(
        "--minute-seconds", type=float, default=12.0, help="real seconds per soak minute"
    )
    p.add_argument("--rate", type=float, default=20.0, help="client cycles per second, in all")
    p.add_argument("--generators", type=int, default=2, help="load-generator processes")
    p.add_argument("--hold-min", type=float, default=1.0, help="shortest session hold, s")
    p.add_argument("--hold-max", type=float, default=20.0, help="longest session hold, s")
    p.add_argument("--ids", type=int, default=400, help="raw ids per generator")
    p.add_argument("--keys", type=int, default=200, help="libp2p keys per generator")
    p.add_argument("--namespaces", type=int, default=20)
    p.add_argument("--ttl-default", type=int, default=5, help="the daemon's --ttl-default")
    p.add_argument("--fd-slack", type=int, default=3, help="descriptors allowed above the start")
    p.add_argument("--keep-log", metavar="PATH", help="copy the daemon's log here")
    p.add_argument(
        "--tracemalloc",
        metavar="PATH",
        help="run the daemon under tracemalloc; write what grew over the soak here",
    )
    p.add_argument("--strict", action="store_true", help="exit 1 when a leak check fails")
    a = p.parse_args()
    if a.quick:
        a.minutes, a.minute_seconds, a.rate = 8, 2.0, 8.0
        a.hold_min, a.hold_max, a.ttl_default = 0.5, 3.0, 3
    c.main_wrapper(main, a)
