"""A small internet of Linux network namespaces, made and torn down by a test.

Loopback hides address bugs: here every host has its own address. The public side is
a bridge on 198.18.0.0/24 inside a namespace of its own (nothing touches the
machine's own network, and no packet can leave the lab). A *home* is a router
namespace with an uplink on that bridge, nftables masquerade on it and the usual
home-router filter (nothing new comes in from the uplink), and hosts behind it on
198.19.N.0/24 with a default route to the router.

Needs root, ``ip`` (iproute2) and ``nft`` (nftables); `unavailable` says why not.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from dataclasses import dataclass, field

from .processes import ProcessTestCase

PUBLIC_PREFIX = "198.18.0"
"""The public side: 198.18.0.0/24 (RFC 2544's benchmarking range)."""
HOME_PREFIX = "198.19"
"""Home N is 198.19.N.0/24, behind its router's NAT."""

_labs = itertools.count(1)

# A home router: masquerade on the uplink; nothing new accepted from it. Dropping new
# inbound packets in `input` too keeps an early packet from the other side from
# claiming the port a peer behind us is about to map (hole punching works then).
_ROUTER_RULES = """
table ip nat {{
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname "{uplink}" masquerade
  }}
}}
table inet filter {{
  chain input {{
    type filter hook input priority filter; policy accept;
    iifname "{uplink}" ct state new drop
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    iifname "{uplink}" ct state new drop
  }}
}}
"""


def unavailable() -> str | None:
    """Why a lab cannot be built here (a skip reason), or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (apt-get install iproute2 nftables)"
    probe = f"rdvprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _run(*args: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip() or done.returncode}")


@dataclass
class Host:
    """One machine of the lab: a namespace with one address."""

    namespace: str
    address: str

    def command(self, args: list[str]) -> list[str]:
        """``args`` run inside this host."""
        return ["ip", "netns", "exec", self.namespace, *args]

    def ip(self, *args: str) -> None:
        _run("ip", "-n", self.namespace, *args)


@dataclass
class Home:
    """A NATed home: its router (public address ``router.address``) and hosts."""

    number: int
    router: Host
    hosts: list[Host] = field(default_factory=list)


class Lab:
    """Namespaces named ``rdv<lab><role>``; `close` removes every one of them."""

    def __init__(self) -> None:
        self.tag = f"rdv{os.getpid() % 10000}x{next(_labs)}"
        self._namespaces: list[str] = []
        self._public = itertools.count(1)
        self._homes = itertools.count(1)
        self._links = itertools.count(1)
        self.internet = self._namespace("net")
        _run("ip", "-n", self.internet, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", self.internet, "link", "set", "br0", "up")

    def _namespace(self, role: str) -> str:
        name = f"{self.tag}{role}"
        _run("ip", "netns", "add", name)
        self._namespaces.append(name)
        _run("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def _link(self, inner_ns: str, inner: str, outer_ns: str, bridge: str) -> None:
        """A veth from ``inner_ns`` (named ``inner``) into ``bridge`` of ``outer_ns``."""
        n = next(self._links)
        a, b = f"{self.tag[:6]}a{n}", f"{self.tag[:6]}b{n}"
        _run("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        _run("ip", "link", "set", a, "netns", inner_ns)
        _run("ip", "link", "set", b, "netns", outer_ns)
        _run("ip", "-n", inner_ns, "link", "set", a, "name", inner)
        _run("ip", "-n", inner_ns, "link", "set", inner, "up")
        _run("ip", "-n", outer_ns, "link", "set", b, "master", bridge)
        _run("ip", "-n", outer_ns, "link", "set", b, "up")

    def public_host(self, role: str) -> Host:
        """A host with a public address, 198.18.0.N."""
        namespace = self._namespace(role)
        address = f"{PUBLIC_PREFIX}.{next(self._public)}"
        self._link(namespace, "eth0", self.internet, "br0")
        host = Host(namespace, address)
        host.ip("addr", "add", f"{address}/24", "dev", "eth0")
        return host

    def home(self) -> Home:
        """A router with a public address and a NATed network behind it."""
        number = next(self._homes)
        router = self.public_host(f"r{number}")
        router.ip("link", "add", "lan", "type", "bridge")
        router.ip("addr", "add", f"{HOME_PREFIX}.{number}.1/24", "dev", "lan")
        router.ip("link", "set", "lan", "up")
        _run(*router.command(["sysctl", "-qw", "net.ipv4.ip_forward=1"]))
        rules = _ROUTER_RULES.format(uplink="eth0")
        done = subprocess.run(
            router.command(["nft", "-f", "-"]), input=rules, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"nft in {router.namespace}: {done.stderr.strip()}")
        return Home(number, router)

    def home_host(self, home: Home, role: str) -> Host:
        """A host behind ``home``'s NAT."""
        namespace = self._namespace(f"h{home.number}{role}")
        address = f"{HOME_PREFIX}.{home.number}.{len(home.hosts) + 10}"
        self._link(namespace, "eth0", home.router.namespace, "lan")
        host = Host(namespace, address)
        host.ip("addr", "add", f"{address}/24", "dev", "eth0")
        host.ip("route", "add", "default", "via", f"{HOME_PREFIX}.{home.number}.1")
        home.hosts.append(host)
        return host

    def close(self) -> None:
        """Remove every namespace (their veths and bridges go with them)."""
        for namespace in reversed(self._namespaces):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        self._namespaces.clear()


class LabTestCase(ProcessTestCase):
    """A test with a lab of its own, ``self.lab``; its processes are killed first (the
    cleanups run last-in first-out), then the lab is removed."""

    def setUp(self) -> None:
        super().setUp()
        self.lab = Lab()
        self.addCleanup(self.lab.close)


__all__ = ["Home", "Host", "Lab", "LabTestCase", "unavailable"]
