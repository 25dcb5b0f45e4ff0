"""Smoke runs of the bench scripts at tiny sizes, so they keep working.

Only that each script exits 0 and prints its table is checked: no timing is asserted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys

from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial import unittest

from .processes import node_missing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")


class BenchSmokeTests(unittest.TestCase):
    timeout = 120

    async def run_script(self, name: str, title: str, row: str = "rendezvous", *extra: str) -> str:
        env = dict(os.environ, PYTHONPATH=ROOT)
        out, err, code = await getProcessOutputAndValue(
            sys.executable,
            [os.path.join(BENCH, name), "--quick", "--timeout", "90", *extra],
            env=env,
            path=ROOT,
        )
        text = out.decode(errors="replace")
        self.assertEqual(code, 0, f"{name} exited {code}:\n{text}\n{err.decode(errors='replace')}")
        self.assertIn(title, text)
        # A table row: "   rendezvous |  1,234 | ...".
        self.assertRegex(text, re.compile(rf"^\s*{row}\s*\|.*\|", re.M))
        return text

    async def test_register_throughput(self) -> None:
        await self.run_script("register_throughput.py", "Scenario 1:")

    async def test_fanout(self) -> None:
        text = await self.run_script(
            "fanout.py", "Scenario 2:", r"rendezvous, 1 process, 1 thread \(pinned\)"
        )
        for row in (r"rendezvous, 1 process, --fanout-threads 2", r"rendezvous, --workers 2"):
            self.assertRegex(text, re.compile(rf"^\s*{row}\s*\|.*\|", re.M))

    async def test_discover_latency(self) -> None:
        await self.run_script("discover_latency.py", "Scenario 3:")

    async def test_sessions_held(self) -> None:
        await self.run_script("sessions_held.py", "Scenario 4:")

    async def test_fanout_floor(self) -> None:
        text = await self.run_script("fanout_floor.py", "Scenario 2 floor:", "raw send loop")
        self.assertRegex(text, re.compile(r"^\s*\d+ processes\s*\|.*\|", re.M))

    async def test_registration_memory(self) -> None:
        figures = os.path.abspath(self.mktemp())
        out, err, code = await getProcessOutputAndValue(
            sys.executable,
            [os.path.join(BENCH, "registration_memory.py"), "--quick", "--json", figures],
            env=dict(os.environ, PYTHONPATH=ROOT),
            path=ROOT,
        )
        self.assertEqual(code, 0, err.decode(errors="replace"))
        self.assertIn(b"2,000 signed TTL registrations held", out)
        with open(figures) as f:
            written = json.load(f)
        self.assertEqual(written["registrations"], 2000)
        self.assertGreater(written["bytes_per_registration"], written["record_bytes"])

    async def test_redis_fleet(self) -> None:
        from .redis_server import redis_server_path

        redis_server_path()  # skips (or fails under $RENDEZVOUS_REQUIRE_REDIS) without one
        text = await self.run_script("redis_fleet.py", "Scenario 7a:", "redis")
        self.assertIn("Scenario 7b:", text)
        self.assertRegex(text, re.compile(r"^\s*redis, 3 daemons\s*\|.*\|", re.M))

    async def test_redis_fleet_cluster(self) -> None:
        from .redis_cluster import redis_cli
        from .redis_server import redis_server_path

        redis_server_path()  # skips (or fails under $RENDEZVOUS_REQUIRE_REDIS) without one
        redis_cli()
        # --quick: 12 sessions, a namespace each, on 1-3 daemons, one Redis or three shards.
        text = await self.run_script(
            "redis_fleet.py", "Scenario 7d:", r"1 Redis, 1 daemon, new ids", "--cluster-only"
        )
        self.assertRegex(text, re.compile(r"^\s*cluster of 3, 3 daemons, repeats\s*\|.*\|", re.M))
        self.assertIn("Scenario 7d model:", text)

    async def test_restart_drill(self) -> None:
        from .redis_server import redis_server_path

        redis_server_path()  # skips (or fails under $RENDEZVOUS_REQUIRE_REDIS) without one
        # --quick: 50 clients and 5 watchers on one daemon, 30 clients on a fleet of three.
        text = await self.run_script(
            "restart_drill.py", "Restart drill (a):", "SIGTERM, backlog 4096"
        )
        self.assertRegex(text, re.compile(r"^\s*kill -9, backlog 50\s*\|.*\|", re.M))
        self.assertIn("Restart drill (b):", text)
        self.assertRegex(text, re.compile(r"^\s*kill -9 1 of 3\s*\|.*\|", re.M))

    async def test_soak(self) -> None:
        # --quick: 8 cycles/s for 8 soak minutes of 2 s, then the TTLs (3 s) run out.
        text = await self.run_script("soak.py", "Soak (a):", "raw live")
        self.assertRegex(text, re.compile(r"^\s*libp2p standard\s*\|.*\|", re.M))
        self.assertIn("Soak (c): leak checks", text)
        self.assertRegex(text, re.compile(r"^\s*registrations at the end\s*\|\s*0\s*\|", re.M))

    async def test_flood(self) -> None:
        # Needs root and iproute2: the flooder runs in a network namespace of its own.
        if os.geteuid() != 0 or shutil.which("ip") is None:
            raise unittest.SkipTest("bench/flood.py needs root and `ip` (network namespaces)")
        # --quick: 100 subscribers, 50 operations/s, phases of 3 s.
        text = await self.run_script("flood.py", "Flood (a):", "no flood")
        self.assertRegex(text, re.compile(r"^\s*flood, default limits\s*\|.*\|", re.M))
        self.assertRegex(text, re.compile(r"^\s*flood, limits lifted\s*\|.*\|", re.M))
        self.assertIn("Flood (b):", text)
        self.assertIn("Flood (c): target", text)

    def _need_node_modules(self, folder: str) -> None:
        if (why := node_missing(folder)) is not None:
            raise unittest.SkipTest(f"{why}: the js baseline cannot run")

    async def test_libp2p_path(self) -> None:
        self._need_node_modules("js-canvas")
        text = await self.run_script(
            "libp2p_path.py", "Scenario 5:", r"REGISTER \(refresh\)\s*\|\s*ours"
        )
        self.assertRegex(text, re.compile(r"^\s*DISCOVER limit 64\s*\|\s*js \(canvas\)\s*\|", re.M))

    async def test_relay_path(self) -> None:
        self._need_node_modules("js-relay")
        text = await self.run_script("relay_path.py", "Scenario 6:", r"MiB/s .*\|\s*ours")
        self.assertRegex(text, re.compile(r"in parallel\s*\|\s*js-libp2p\s*\|", re.M))
        self.assertRegex(text, re.compile(r"one at a time\s*\|\s*raw loopback TCP\s*\|", re.M))

    async def test_browser_membership(self) -> None:
        from .test_browser import DIST, browser_missing

        if (why := browser_missing()) is not None:
            raise unittest.SkipTest(why)
        if not os.path.isdir(DIST):
            raise unittest.SkipTest("examples/browser/dist is missing: run `npm run build` there")
        # --quick: 4 joins over 2 s, a poll every 2 s, one pair per kind of message.
        text = await self.run_script(
            "browser_membership.py", "Browser peers (a):", r"push \(RENDEZVOUS\)"
        )
        self.assertRegex(text, re.compile(r"^\s*polling, DISCOVER every 2 s\s*\|.*\|", re.M))
        self.assertRegex(text, r"Browser peers \(b\):")
        self.assertRegex(text, re.compile(r"^\s*relay, first .*\|\s*1 / 1\s*\|", re.M))
        self.assertRegex(text, re.compile(r"^\s*WebRTC, first .*\|", re.M))
