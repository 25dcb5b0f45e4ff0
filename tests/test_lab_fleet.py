"""The fleet across separate hosts and NATs (the network lab): a daemon and two relays
on the public side, each listening on 0.0.0.0; js-libp2p peers in two NATed homes find
the relays through rendezvous, reserve, and reach each other through a relay."""

from __future__ import annotations

import json
import os
import shutil

from twisted.internet.defer import inlineCallbacks

from .netlab import PUBLIC_PREFIX, LabTestCase, unavailable
from .processes import ROOT, TWISTD

JS = os.path.join(ROOT, "js")
NODE = shutil.which("node")


def _skip() -> str | None:
    if NODE is None:
        return "node is not installed"
    if not os.path.isdir(os.path.join(JS, "node_modules")):
        return "js/node_modules is missing: run `npm ci` in js/"
    return unavailable()


def steps(output: str) -> dict[str, dict[str, object]]:
    """A lab peer's JSON lines, by step."""
    found = {}
    for line in output.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            found[record["step"]] = record
    return found


class FleetAcrossNatsTests(LabTestCase):
    timeout = 120
    skip = _skip()

    @inlineCallbacks
    def test_peers_in_two_homes_meet_through_a_relay_found_by_rendezvous(self):  # type: ignore[no-untyped-def]
        lab = self.lab
        server = lab.public_host("rdv")
        daemon = self.spawn(
            server.command(
                [*TWISTD, "-n", "--pidfile=", "rendezvous", "--p2p-listen", "/ip4/0.0.0.0/tcp/4001"]
            )
        )
        match = yield daemon.wait_for(r"listening on /ip4/0\.0\.0\.0/tcp/4001/p2p/(\w+)")
        rendezvous = f"/ip4/{server.address}/tcp/4001/p2p/{match.group(1)}"
        relays = []
        for n in (1, 2):
            host = lab.public_host(f"rl{n}")
            relay = self.spawn(
                host.command(
                    [
                        *TWISTD,
                        "-n",
                        "--pidfile=",
                        "rendezvous-relay",
                        "--p2p-listen",
                        "/ip4/0.0.0.0/tcp/4010",
                        "--announce-to",
                        rendezvous,
                    ]
                )
            )
            relays.append((host, relay))
        for _, relay in relays:
            yield relay.wait_for(r"registered in rendezvous/relays at ")

        peers = {}
        for role in ("answer", "ask"):
            home = lab.home()
            host = lab.home_host(home, "pc")
            peers[role] = self.spawn(
                host.command([NODE, "lab/peer.mjs", rendezvous, "lab", role]), JS
            )
        code = yield peers["ask"].ended
        ask, answer = steps(peers["ask"].output), steps(peers["answer"].output)
        self.assertEqual(code, 0, peers["ask"].output + peers["ask"].errors)

        # The fleet advertises addresses another host can dial: never 0.0.0.0.
        found = ask["relays"]["relays"]
        self.assertEqual(len(found), 2)
        for relay_record in found:
            addrs = relay_record["addrs"]
            self.assertTrue(addrs)
            self.assertFalse([a for a in addrs if "/0.0.0.0/" in a], addrs)
            self.assertTrue(all(a.startswith(f"/ip4/{PUBLIC_PREFIX}.") for a in addrs), addrs)
        # Each reserved on a public relay, and they met through it.
        self.assertIn(f"/ip4/{PUBLIC_PREFIX}.", ask["reserved"]["circuit"])
        self.assertEqual(ask["pushed"]["other"]["id"], answer["reserved"]["id"])
        self.assertEqual(ask["answered"]["answer"], f"hello back from {answer['reserved']['id']}")
        self.assertEqual(answer["hello received"]["hello"], f"hello from {ask['reserved']['id']}")
