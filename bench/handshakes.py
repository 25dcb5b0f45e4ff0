"""Handshakes (issue #14): new libp2p connections a second, each doing the whole round.

A crowd reconnecting after a restart meets the Noise handshake first. Each connection of
this load: TCP connect, multistream-select ``/noise``, Noise XX, multistream-select
``/yamux/1.0.0``, one yamux stream for ``/rendezvous/1.0.0`` carrying one REGISTER (sent
with the stream's proposal), the REGISTER_RESPONSE read and checked OK, then the
connection closed. ``--concurrency`` such connections are kept going at once per
load-generator process, as fast as they complete, for ``--seconds`` after ``--warmup``.

Servers: our daemon (``twistd rendezvous --p2p-listen``) and js-libp2p's rendezvous
server (`@canvas-js/libp2p-rendezvous`, ``bench/js/canvas_server.mjs``), both pinned to
CPU 0, measured in turn in the same run (``--runs`` rounds, a fresh server each round:
every connection meets a server that has just started). The load generators are Python
processes pinned to the other CPU running our own libp2p stack (`rendezvous.p2p`); each
peer has its own Ed25519 identity and a signed peer record sealed beforehand, from a pool
larger than the daemon's cache of opened records, so every REGISTER's record is verified.

The generators share one core, so the end-to-end rate is bounded by them as much as by
the server: the figure that does not depend on who else runs is the server's CPU time per
connection, read from /proc (user + system) over the measured window, and the one-core
rate it implies (1 / CPU per connection). The generators' CPU per connection is given
apart.
"""

from __future__ import annotations

import atexit
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as c
import libp2p_path as lp

NAMESPACE = "bench"


def generator(conn: Any, first: int, identities: int, concurrency: int, salt: int) -> None:
    """One load-generator process: ``identities`` peers, ``concurrency`` connections at once."""
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred
    from twisted.internet.endpoints import TCP4ClientEndpoint

    from rendezvous.p2p.host import Host
    from rendezvous.p2p.stream import StreamProtocol
    from rendezvous.p2p.transport import TCPAddress
    from rendezvous.pb.rendezvous_pb2 import Message
    from rendezvous.standard.stream import PROTOCOL_ID

    pool = [
        (Host(key, reactor), lp.register_frame(record))
        for key, record in lp._records(first, identities)
    ]
    ok_status = Message.OK

    class Register(StreamProtocol):
        """Reads the REGISTER_RESPONSE that answers the frame sent with the proposal."""

        def __init__(self, answered: Deferred[int]) -> None:
            self.answered = answered
            self.buffer = b""

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            payload = lp.first_frame(self.buffer)
            if payload is not None and not self.answered.called:
                m = Message()
                m.ParseFromString(payload)
                self.answered.callback(m.registerResponse.status)

        def stream_closed(self, reason: str | None) -> None:
            if not self.answered.called:
                self.answered.errback(RuntimeError(f"stream closed: {reason}"))

    state: dict[str, Any] = {}

    def run(address_text: str, t_start: float, t_end: float) -> Deferred[dict[str, Any]]:
        address = TCPAddress.parse(address_text)
        peer_id = address.peer_id
        finished: Deferred[dict[str, Any]] = Deferred()
        s = state
        s.update(
            started=0,
            done=0,
            failed=0,
            refused=0,
            counting=False,
            stopping=False,
            lanes=concurrency,
            latencies=[],
            errors={},
            next=salt * 7919 % len(pool),
        )
        marks: dict[str, tuple[int, int, int, float, float]] = {}

        def mark(name: str) -> None:
            marks[name] = (s["done"], s["failed"], s["refused"], time.monotonic(), c.self_cpu())
            s["counting"] = name == "start"
            if name == "end":
                s["stopping"] = True

        async def one() -> None:
            i = s["next"]
            s["next"] = (i + 1) % len(pool)
            host, frame = pool[i]
            endpoint = TCP4ClientEndpoint(
                reactor,
                address.host,
                address.port,
                timeout=10,
                bindAddress=(c.source_ip(salt * 1000 + s["started"]), 0),
            )
            s["started"] += 1
            t0 = time.monotonic()
            connection = await host.dial(endpoint, peer_id).addTimeout(15, reactor)
            try:
                answered: Deferred[int] = Deferred()
                await connection.open_stream(PROTOCOL_ID, Register(answered), early=frame)
                status = await answered.addTimeout(15, reactor)
            finally:
                connection.close()
            if status != ok_status:
                s["refused"] += 1
                return
            s["done"] += 1
            if s["counting"]:
                s["latencies"].append(time.monotonic() - t0)

        def lane(_: object = None) -> None:
            if s["stopping"]:
                s["lanes"] -= 1
                if s["lanes"] == 0:
                    reactor.callLater(0.2, report)  # let the last closes go out
                return
            d = Deferred.fromCoroutine(one())
            d.addErrback(failed)
            d.addBoth(lane)

        def failed(failure: Any) -> None:
            s["failed"] += 1
            text = failure.getErrorMessage()[:120] or failure.type.__name__
            s["errors"][text] = s["errors"].get(text, 0) + 1

        def report() -> None:
            (d0, f0, r0, t0, cpu0), (d1, f1, r1, t1, cpu1) = marks["start"], marks["end"]
            finished.callback(
                {
                    "connections": d1 - d0,
                    "failed": f1 - f0,
                    "refused": r1 - r0,
                    "seconds": t1 - t0,
                    "cpu": cpu1 - cpu0,
                    "latencies": s["latencies"],
                    "errors": s["errors"],
                    "total_done": s["done"],
                }
            )

        reactor.callLater(max(0.0, t_start - time.time()), mark, "start")
        reactor.callLater(max(0.0, t_end - time.time()), mark, "end")
        for _ in range(concurrency):
            lane()
        return finished

    lp.reactor_worker(conn, {"run": run})


BASELINE: dict[str, str] = {}
"""``tree``: where `export_baseline` put the older revision's code (``rev``: its name)."""


def export_baseline(rev: str) -> None:
    """This checkout's ``rendezvous/`` and ``twisted/plugins`` at ``rev``, in a temporary
    directory that the ``baseline`` daemon runs from."""
    import shutil
    import subprocess
    import tempfile

    tree = tempfile.mkdtemp(prefix="bench-handshakes-")
    atexit.register(shutil.rmtree, tree, True)
    archive = subprocess.run(
        ["git", "-C", c.ROOT, "archive", rev, "rendezvous", "twisted"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
    BASELINE.update(tree=tree, rev=rev)


def start_server(kind: str, daemon_log: str) -> Any:
    """``lp.start_server``; ``baseline`` is our daemon from `BASELINE`'s tree. Our daemon
    logs as ``daemon_log`` says: ``json`` is what operators run (``--logger
    rendezvous.logs.json``: from info up), ``text`` twistd's default text log, which
    writes debug lines too (three per connection)."""
    if kind == "js":
        return lp.start_server(kind)
    plain_argv, plain_env = c.twistd_argv, c.child_env

    def with_logger(*args: str, code: str = c.TWISTD_CODE) -> list[str]:
        return [*plain_argv(*args, code=code), "--logger", "rendezvous.logs.json"]

    if daemon_log == "json":
        c.twistd_argv = with_logger
    if kind == "baseline":
        c.child_env = lambda: dict(os.environ, PYTHONPATH=BASELINE["tree"])
    try:
        return lp.start_server("rendezvous")
    finally:
        c.twistd_argv, c.child_env = plain_argv, plain_env


def measure(kind: str, workers: list[c.Worker], args: Any) -> dict[str, Any]:
    """One round against a fresh ``kind`` server."""
    server = start_server(kind, args.daemon_log)
    try:
        time.sleep(0.3)
        t_start = time.time() + args.warmup
        t_end = t_start + args.seconds
        for w in workers:
            w.send("run", server.address, t_start, t_end)
        time.sleep(max(0.0, t_start - time.time()))
        cpu0, all0, m0 = server.cpu(), c.system_cpu(), time.monotonic()
        sys0 = server.ps.cpu_times().system
        time.sleep(max(0.0, t_end - time.time()))
        cpu1, all1, m1 = server.cpu(), c.system_cpu(), time.monotonic()
        sys1 = server.ps.cpu_times().system
        results = [w.recv(args.seconds + 120) for w in workers]
        server.check_alive()
        rss = server.rss()
    finally:
        server.stop()
    seconds = m1 - m0
    connections = sum(r["connections"] for r in results)
    server_cpu = cpu1 - cpu0
    gen_cpu = sum(r["cpu"] for r in results)
    latencies = sorted(x for r in results for x in r["latencies"])
    errors: dict[str, int] = {}
    for r in results:
        for text, n in r["errors"].items():
            errors[text] = errors.get(text, 0) + n
    per = server_cpu / connections if connections else float("nan")
    out = {
        "server": kind,
        "connections": connections,
        "total_done": sum(r["total_done"] for r in results),
        "rate": connections / seconds,
        "failed": sum(r["failed"] for r in results),
        "refused": sum(r["refused"] for r in results),
        "server_cpu": server_cpu / seconds,
        "server_us": per * 1e6,
        "server_sys_us": (sys1 - sys0) / connections * 1e6 if connections else float("nan"),
        "one_core_rate": 1 / per if per == per and per > 0 else float("nan"),
        "gen_cpu": gen_cpu / seconds,
        "gen_us": gen_cpu / connections * 1e6 if connections else float("nan"),
        "others_cpu": max(0.0, (all1 - all0) - server_cpu - gen_cpu) / seconds,
        "p50_ms": c.percentile(latencies, 50) * 1e3,
        "p99_ms": c.percentile(latencies, 99) * 1e3,
        "rss_mib": rss / 2**20,
        "errors": errors,
    }
    lp.progress(
        f"{kind}: {out['rate']:,.0f} connections/s, server {out['server_us']:,.0f} µs CPU each "
        f"({out['server_cpu']:.0%} of a core), generators {out['gen_cpu']:.0%}, "
        f"{out['failed']} failed"
    )
    return out


MEDIANS = (
    "rate",
    "server_cpu",
    "server_us",
    "server_sys_us",
    "one_core_rate",
    "gen_cpu",
    "gen_us",
    "others_cpu",
    "p50_ms",
    "p99_ms",
    "rss_mib",
)
LABELS = {"rendezvous": "ours", "js": "js (canvas)", "baseline": "ours at the baseline"}


def main(args: Any) -> int:
    if args.quick:
        args.seconds, args.warmup, args.runs = 1.0, 0.5, 1
        args.identities, args.concurrency, args.generators = 200, 4, 1
    kinds = [k for k in args.servers.split(",") if k]
    if set(kinds) - {"rendezvous", "js"}:
        print("--servers: rendezvous, js (an older revision of ours: --baseline)", file=sys.stderr)
        return 2
    if "js" in kinds and (why := lp.node_modules_missing(lp.JS_CANVAS)):
        print(f"(js baseline skipped: {why})", file=sys.stderr)
        kinds.remove("js")
    if args.baseline:
        export_baseline(args.baseline)
        LABELS["baseline"] = f"ours at {args.baseline}"
        kinds.insert(kinds.index("rendezvous") + 1 if "rendezvous" in kinds else 0, "baseline")
    per_gen = c.split(args.identities, args.generators)
    workers: list[c.Worker] = []
    first = 50_000_000
    for i in range(args.generators):
        workers.append(c.Worker(generator, first, per_gen[i], args.concurrency, i))
        first += per_gen[i]
    for w in workers:
        w.recv()
    samples: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    try:
        for _ in range(args.runs):
            for kind in kinds:  # interleaved: a noisy spell of the machine falls on both
                samples[kind].append(measure(kind, workers, args))
        profile_text = None
        if args.profile and "rendezvous" in kinds:
            c.profiled("cpu", args.profile, lambda: measure("rendezvous", workers, args))
            profile_text = c.summarise_profile(args.profile, top=30)
    finally:
        for w in workers:
            w.stop()
    med = {k: {m: c.median([r[m] for r in samples[k]]) for m in MEDIANS} for k in kinds}
    js = med.get("js")
    rows = []
    for kind in kinds:
        m = med[kind]
        ours = kind in ("rendezvous", "baseline")
        failed = sum(r["failed"] + r["refused"] for r in samples[kind])
        rows.append(
            [
                LABELS[kind],
                m["rate"],
                f"{m['server_cpu']:.0%}",
                m["server_us"],
                m["server_sys_us"],
                m["one_core_rate"],
                f"{m['gen_cpu']:.0%}",
                m["gen_us"],
                f"{m['others_cpu']:.0%}",
                f"{m['p50_ms']:.1f} / {m['p99_ms']:.1f}",
                failed,
                m["one_core_rate"] / js["one_core_rate"] if ours and js else "",
                (
                    (">= 2,000/s: " + ("met" if m["one_core_rate"] >= args.target else "MISSED"))
                    if ours
                    else ""
                ),
            ]
        )
    print(
        c.table(
            f"Handshakes: TCP + Noise XX + yamux + one REGISTER + close, {args.generators} "
            f"generator process(es) x {args.concurrency} connections at once, "
            f"{args.identities:,} identities, our daemon's log: {args.daemon_log}; median of "
            f"{args.runs} round(s) x {args.seconds:g} s",
            [
                "server",
                "connections/s",
                "server CPU",
                "server µs/conn",
                "of which kernel",
                "one-core rate",
                "gen CPU",
                "gen µs/conn",
                "others",
                "p50 / p99 ms",
                "failed",
                "ours/js per core",
                "target",
            ],
            rows,
        )
    )
    for kind in kinds:
        errors: dict[str, int] = {}
        for r in samples[kind]:
            for text, n in r["errors"].items():
                errors[text] = errors.get(text, 0) + n
        for text, n in sorted(errors.items(), key=lambda kv: -kv[1])[:5]:
            print(f"({LABELS[kind]}: {n} x {text})")
    if profile_text:
        print("\nprofile of the daemon (cProfile, by own time):\n" + profile_text)
    c.write_json(
        args.json,
        {
            "scenario": "handshakes",
            "args": vars(args),
            "median": med,
            "samples": samples,
            "profile": profile_text,
        },
    )
    if not any(r["connections"] for k in kinds for r in samples[k]):
        print("no connection completed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    p = c.base_parser(__doc__, timeout=900)
    p.set_defaults(servers="rendezvous,js", runs=3)
    p.add_argument("--seconds", type=float, default=20.0, help="measured seconds per round")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--generators", type=int, default=2, help="load-generator processes")
    p.add_argument("--concurrency", type=int, default=32, help="connections at once per generator")
    p.add_argument(
        "--identities",
        type=int,
        default=8_000,
        help="peers (keys, signed records) in all; above the daemon's 1,024 cached records",
    )
    p.add_argument(
        "--daemon-log",
        choices=("json", "text"),
        default="json",
        help="our daemon's log: json (--logger rendezvous.logs.json, from info up, as "
        "operators run it) or text (twistd's default, debug lines included)",
    )
    p.add_argument(
        "--baseline",
        metavar="REV",
        help="also measure our daemon at this git revision (its rendezvous/ and "
        "twisted/plugins, exported with git archive), interleaved with the others",
    )
    p.add_argument("--target", type=float, default=2000.0, help="connections/s per server core")
    c.main_wrapper(main, p.parse_args())
