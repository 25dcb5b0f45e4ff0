"""Browser peers (issue #12): membership latency, pushed and polled, and the first message.

Our daemon (``twistd rendezvous --p2p-listen …/ws --web … --web-root
examples/browser/dist``) and our relay (``twistd rendezvous-relay --p2p-listen …/ws
--announce-to <daemon>``), both pinned to CPU 0, and headless Chromium (Debian's
``/usr/bin/chromium``, driven by playwright-core from ``bench/js/browser_membership.mjs``)
loading ``dist/bench.html`` (``examples/browser/src/bench.js``), one browser context per
page:

* membership: an observer page follows a namespace; ``--joins`` member pages, started at
  random times over ``--spread`` seconds, load, reserve on the relay, register and leave
  (each closes once seen, after a further random wait shorter than the poll interval). A
  join's latency runs from the moment the joiner's page writes its REGISTER to the
  observer's ``peer`` event; a leave's from closing the joiner's context to the observer's
  ``peer:gone``. The reference, websocket-star style membership (a peer list re-broadcast
  every 10 s), runs at the same time: a poller page that DISCOVERs the namespace every
  ``--poll-interval`` seconds (random phase); its latency is from the REGISTER (the close)
  to the first answer that has (lacks) the member.
* first message: ``--chat-pages`` relay-only pages and as many WebRTC-capable ones; each
  pair sends two messages, from the moment page A decides to send to page B's receiving
  it: the first dials (a circuit through the relay, or WebRTC set up with the relay's
  signalling), the second uses the connection made.

Every time is taken in the pages with ``performance.timeOrigin + performance.now()``:
one clock for every page of the machine. The daemon's, the relay's and the browser's CPU
time over the membership phase are read from ``/proc`` and divided by the joins.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as c
import psutil

EXAMPLE = os.path.join(c.ROOT, "examples", "browser")
DIST = os.path.join(EXAMPLE, "dist")
DRIVER = os.path.join(c.HERE, "js", "browser_membership.mjs")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
RESULTS = os.path.join(c.HERE, "results", "browser_membership.json")
WS_LISTENING = re.compile(r"listening on (/ip4/127\.0\.0\.1/tcp/\d+/ws/p2p/\w+)")
WEB_LISTENING = re.compile(r"web listening on tcp 127\.0\.0\.1:(\d+)")
RELAY_REGISTERED = "registered in rendezvous/relays at "
# Every page comes from 127.0.0.1: the per-IP limits are raised for the bench.
PER_IP = "100000"


def browser_missing() -> str | None:
    """Why the scenario cannot run here, or None."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not os.path.isdir(os.path.join(EXAMPLE, "node_modules")):
        return "examples/browser/node_modules is missing: run `npm ci` in examples/browser"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM)"
    if not os.path.isdir(DIST):
        return "examples/browser/dist is missing: run `npm run build` in examples/browser"
    return None


class Twistd:
    """``twistd -n <command>`` from this checkout, pinned to the server CPU."""

    def __init__(self, command: str, *args: str) -> None:
        self.name = command
        self.proc, self.log = c.spawn_logged(
            c.twistd_argv(command, *args), f"bench-{command}-", env=c.child_env()
        )
        self.ps = psutil.Process(self.proc.pid)

    def log_text(self) -> str:
        with open(self.log.name, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_for(self, pattern: re.Pattern[str] | str, timeout: float = 30) -> re.Match[str]:
        regex = re.compile(re.escape(pattern)) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if m := regex.search(self.log_text()):
                return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"{self.name}: no {regex.pattern!r} in its log:\n{self.log_text()}")

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc in c._children:
            c._children.remove(self.proc)


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its descendants, those already reaped included
    (counted in their living ancestors' children times)."""
    total = 0.0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return float("nan")
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


def stats(xs: list[float]) -> dict[str, Any]:
    return {
        "n": len(xs),
        "p50": c.percentile(xs, 50),
        "p99": c.percentile(xs, 99),
        "max": max(xs) if xs else float("nan"),
        "mean": statistics.fmean(xs) if xs else float("nan"),
    }


def membership(result: dict[str, Any]) -> dict[str, Any]:
    """Per join: push and poll latency of the join and of the leave (ms)."""
    peer: dict[str, float] = {}
    gone: dict[str, float] = {}
    for e in result.get("observer", []):
        if e["kind"] == "peer":
            peer.setdefault(e["id"], e["t"])
        elif e["kind"] == "gone":
            gone.setdefault(e["id"], e["t"])
    polls = sorted(
        (e for e in result.get("polls", []) if e["kind"] == "poll"), key=lambda e: e["t"]
    )
    out: dict[str, list[float]] = {
        "push_join": [],
        "push_leave": [],
        "poll_join": [],
        "poll_leave": [],
        "open_to_register": [],
    }
    missed = {"push_join": 0, "push_leave": 0, "poll_join": 0, "poll_leave": 0, "failed": 0}
    for j in result.get("joins", []):
        t_reg = j.get("tRegister")
        if j.get("id") is None or t_reg is None:
            missed["failed"] += 1
            continue
        out["open_to_register"].append(t_reg - j["tOpen"])
        jid, t_close = j["id"], j["tClose"]
        if jid in peer:
            out["push_join"].append(peer[jid] - t_reg)
        else:
            missed["push_join"] += 1
        if jid in gone:
            out["push_leave"].append(gone[jid] - t_close)
        else:
            missed["push_leave"] += 1
        seen = next((p["t"] for p in polls if p["t"] >= t_reg and jid in p["ids"]), None)
        if seen is None:
            missed["poll_join"] += 1
        else:
            out["poll_join"].append(seen - t_reg)
        left = next((p["t"] for p in polls if p["sent"] >= t_close and jid not in p["ids"]), None)
        if left is None:
            missed["poll_leave"] += 1
        else:
            out["poll_leave"].append(left - t_close)
    return {"samples": out, "missed": missed}


def messages(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per kind and message number: how many arrived, latency and time to the connection.

    A second message whose first failed dials anew: it is counted apart ("redialled"),
    not as a message over the connection made."""
    rows = []
    for via in ("relay", "webrtc"):
        for seq in (1, 2):
            sent = [m for m in result.get("messages", []) if m["via"] == via and m["seq"] == seq]
            redialled = [m for m in sent if seq == 2 and m.get("dialled")]
            sent = [m for m in sent if m not in redialled]
            ok = [m for m in sent if "t1" in m]
            rows.append(
                {
                    "via": via,
                    "seq": seq,
                    "sent": len(sent),
                    "received": len(ok),
                    "received_via": sorted({m["receivedVia"] for m in ok}),
                    "errors": sorted({m["error"] for m in sent if "error" in m}),
                    "latency": stats([m["t1"] - m["t0"] for m in ok]),
                    "dial": stats([m["tConnected"] - m["t0"] for m in ok]),
                    "redialled": [m["t1"] - m["t0"] if "t1" in m else None for m in redialled],
                }
            )
    return rows


def cpu_snapshot(daemon: Twistd, relay: Twistd, driver: subprocess.Popen[str]) -> dict[str, float]:
    return {
        "daemon": daemon.cpu(),
        "relay": relay.cpu(),
        "browser": tree_cpu(driver.pid),
        "system": c.system_cpu(),
        "wall": time.monotonic(),
    }


def run_driver(
    config: dict[str, Any], daemon: Twistd, relay: Twistd
) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    with open(DRIVER) as f:
        code = f.read()
    errors = tempfile.NamedTemporaryFile(prefix="bench-browser-", suffix=".log")  # noqa: SIM115
    driver = subprocess.Popen(
        ["node", "--input-type=module", "-e", code, json.dumps(config)],
        cwd=EXAMPLE,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
        start_new_session=True,  # Chromium and its helpers in the driver's process group
    )
    cpu: dict[str, dict[str, float]] = {}
    result: dict[str, Any] | None = None
    try:
        assert driver.stdout is not None and driver.stdin is not None
        for line in driver.stdout:
            if not line.startswith("{"):
                continue
            message = json.loads(line)
            if "phase" in message:
                cpu[message["phase"]] = cpu_snapshot(daemon, relay, driver)
                driver.stdin.write("\n")
                driver.stdin.flush()
            elif "result" in message:
                result = message["result"]
        driver.wait(30)
    finally:
        if driver.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(driver.pid, signal.SIGKILL)
            driver.wait(10)
    if result is None:
        with open(errors.name) as f:
            raise RuntimeError(
                f"the browser driver exited {driver.returncode}:\n{f.read()[-3000:]}"
            )
    return result, cpu


def ms(v: float) -> str:
    return "-" if v != v else f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def report(
    args: dict[str, Any], result: dict[str, Any], cost: dict[str, float]
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """Prints the tables of a run; returns its membership samples, their stats and the
    message rows."""
    m = membership(result)
    s = {k: stats(v) for k, v in m["samples"].items()}
    joined = len(result["joins"]) - m["missed"]["failed"]
    msgs = messages(result)

    interval = f"{args['poll_interval']:g} s"
    print(
        c.table(
            f"Browser peers (a): membership latency, {joined} of {len(result['joins'])} joins "
            f"over {args['spread']:g} s (ms)",
            [
                "membership",
                "joins seen",
                "join p50",
                "join p99",
                "join max",
                "join mean",
                "leave p50",
                "leave p99",
                "leave max",
            ],
            [
                [
                    label,
                    f"{s[k + '_join']['n']} / {joined}",
                    ms(s[k + "_join"]["p50"]),
                    ms(s[k + "_join"]["p99"]),
                    ms(s[k + "_join"]["max"]),
                    ms(s[k + "_join"]["mean"]),
                    ms(s[k + "_leave"]["p50"]),
                    ms(s[k + "_leave"]["p99"]),
                    ms(s[k + "_leave"]["max"]),
                ]
                for label, k in (
                    ("push (RENDEZVOUS)", "push"),
                    (f"polling, DISCOVER every {interval}", "poll"),
                )
            ],
        )
    )
    print(
        f"join: REGISTER written by the joiner -> observer's peer event (push) or the poller's "
        f"first answer with it; leave: context closed -> peer:gone or the first answer without "
        f"it. Page opened -> REGISTER: p50 {ms(s['open_to_register']['p50'])} ms, p99 "
        f"{ms(s['open_to_register']['p99'])} ms."
    )
    if cost:
        print()
        print(
            c.table(
                f"Browser peers (b): CPU per join ({cost['joins_per_s']:.2f} joins/s over "
                f"{cost['wall']:.0f} s, each with its leave)",
                ["process", "CPU per join ms", "share of a core"],
                [
                    [
                        label,
                        ms(cost[k]),
                        f"{cost[k] * cost['joins_per_s'] / 10:.0f} %",
                    ]
                    for label, k in (
                        ("daemon (twistd rendezvous)", "daemon"),
                        ("relay (twistd rendezvous-relay)", "relay"),
                        ("Chromium and its driver", "browser"),
                        ("other processes", "other"),
                    )
                ],
            )
        )
    print()
    rows = []
    for r in msgs:
        name = {
            ("relay", 1): "relay, first (dials a circuit)",
            ("relay", 2): "relay, second (same circuit)",
            ("webrtc", 1): "WebRTC, first (set-up via relay)",
            ("webrtc", 2): "WebRTC, second (same connection)",
        }[(r["via"], r["seq"])]
        lat, dial = r["latency"], r["dial"]
        rows.append(
            [
                name,
                f"{r['received']} / {r['sent']}",
                ",".join(r["received_via"]) or "-",
                ms(lat["p50"]),
                ms(lat["p99"]),
                ms(lat["max"]),
                ms(dial["p50"]),
            ]
        )
    print(
        c.table(
            f"Browser peers (c): time to first message, {args['chat_pages']} pages each (ms)",
            ["message", "received", "arrived via", "p50", "p99", "max", "dial p50"],
            rows,
        )
    )
    for r in msgs:
        if r["errors"]:
            print(f"{r['via']} message {r['seq']}: {'; '.join(r['errors'])}")
        for t in r["redialled"]:
            print(
                f"{r['via']} message {r['seq']}: its first failed, so it dialled anew: "
                + (f"received after {ms(t)} ms" if t is not None else "not received either")
            )
    problems = result.get("problems", [])
    if problems:
        print(f"pages reported {len(problems)} problem(s); first: {problems[:3]}")
    return m, s, msgs


def main(args: Any) -> int:
    if args.report:
        with open(args.report) as f:
            saved = json.load(f)
        report(saved["config"], saved["raw"], saved["cost_per_join_ms"])
        return 0
    if why := browser_missing():
        print(f"browser scenario cannot run: {why}", file=sys.stderr)
        return 1
    if not os.path.isfile(os.path.join(DIST, "bench.html")):
        print("examples/browser/dist has no bench.html: run `npm run build` there", file=sys.stderr)
        return 1
    if args.quick:
        args.joins, args.spread, args.poll_interval, args.chat_pages = 4, 2.0, 2.0, 2
    json_path = args.json or (None if args.quick else RESULTS)

    daemon = Twistd(
        "rendezvous",
        "--p2p-listen",
        "/ip4/127.0.0.1/tcp/0/ws",
        "--web",
        "tcp:0:interface=127.0.0.1",
        "--web-root",
        DIST,
        "--p2p-max-connections-per-ip",
        PER_IP,
    )
    relay: Twistd | None = None
    try:
        rdv = daemon.wait_for(WS_LISTENING).group(1)
        web = daemon.wait_for(WEB_LISTENING).group(1)
        relay = Twistd(
            "rendezvous-relay",
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/0/ws",
            "--announce-to",
            rdv,
            "--max-reservations",
            PER_IP,
            "--max-reservations-per-ip",
            PER_IP,
            "--p2p-max-connections-per-ip",
            PER_IP,
        )
        relay.wait_for(WS_LISTENING)
        relay.wait_for(RELAY_REGISTERED)
        config = {
            "page": f"http://127.0.0.1:{web}/app/bench.html",
            "rdv": rdv,
            "namespace": "bench-browser",
            "joins": args.joins,
            "spreadMs": args.spread * 1000,
            "pollMs": args.poll_interval * 1000,
            "maxOpen": args.max_open,
            "maxLoading": args.max_loading,
            "chatPages": args.chat_pages,
            "chromium": CHROMIUM,
            "timeoutMs": max(10.0, args.timeout - 15) * 1000,
        }
        result, cpu = run_driver(config, daemon, relay)
        daemon_log, relay_log = daemon.log_text(), relay.log_text()
    finally:
        if relay is not None:
            relay.stop()
        daemon.stop()
    if "error" in result:
        print(f"the browser driver failed: {result['error']}", file=sys.stderr)
        return 1

    cost: dict[str, float] = {}
    before, after = cpu.get("membership"), cpu.get("membership-done")
    joined = sum(1 for j in result["joins"] if j.get("tRegister") is not None)
    if before and after and joined:
        wall = after["wall"] - before["wall"]
        for k in ("daemon", "relay", "browser"):
            cost[k] = (after[k] - before[k]) / joined * 1000
        used = after["system"] - before["system"]
        ours = sum(after[k] - before[k] for k in ("daemon", "relay", "browser"))
        cost["other"] = (used - ours) / joined * 1000
        cost["joins_per_s"] = joined / wall
        cost["wall"] = wall
    for name, log in (("daemon", daemon_log), ("relay", relay_log)):
        if "Traceback" in log:
            print(f"the {name}'s log has a traceback", file=sys.stderr)
    config = {k: v for k, v in vars(args).items() if k not in ("json", "plot", "report")}
    m, s, msgs = report(config, result, cost)
    c.write_json(
        json_path,
        {
            "scenario": "browser_membership",
            "config": config,
            "membership": {k: v for k, v in s.items()},
            "missed": m["missed"],
            "cost_per_join_ms": cost,
            "messages": msgs,
            "samples": m["samples"],
            "raw": result,
        },
    )
    return 0


if __name__ == "__main__":
    p = c.base_parser(__doc__, timeout=420, profile=False)
    p.add_argument("--joins", type=int, default=100, help="member pages that join and leave")
    p.add_argument("--spread", type=float, default=60.0, help="seconds the joins start over")
    p.add_argument(
        "--poll-interval", type=float, default=10.0, help="the poller's DISCOVER period, s"
    )
    p.add_argument("--max-open", type=int, default=40, help="member pages open at once")
    p.add_argument(
        "--max-loading",
        type=int,
        default=2,
        help="member pages starting at once (a start costs the browser about a CPU-second)",
    )
    p.add_argument(
        "--chat-pages", type=int, default=5, help="pages per kind of message (pairs: n(n-1)/2)"
    )
    p.add_argument("--report", metavar="JSON", help="print the tables of a saved run again")
    c.main_wrapper(main, p.parse_args())
