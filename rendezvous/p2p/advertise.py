"""What a host advertises: its bound addresses, each unspecified one (``/ip4/0.0.0.0``,
``/ip6/::``) replaced by the host's interface addresses of that family, or else the
addresses announced (``--p2p-announce``).

`expand` and `parse_announce` are pure; `read_interface_ips` reads the interfaces
(``getifaddrs(3)`` through ctypes: every address of every interface that is up, both
families, on Linux and the BSDs, with no dependency).
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Final

from rendezvous.addrs import InvalidMultiaddr, multiaddr_from_text, multiaddr_to_text

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
InterfaceReader = Callable[[], list[IPAddress]]

_IP4: Final = b"\x04"
_IP6: Final = b"\x29"
_ANY4: Final = _IP4 + bytes(4)
_ANY6: Final = _IP6 + bytes(16)


# -- pure -------------------------------------------------------------------------


def expand(bound: Sequence[bytes], interfaces: Sequence[IPAddress]) -> list[bytes]:
    """``bound`` (binary multiaddrs) with each unspecified address replaced by the
    ``interfaces`` addresses of its family, in their order: loopback ones only when the
    family has no other, IPv6 link-local ones never (they need a zone). No duplicates;
    an unspecified address with no interface address of its family is left out."""
    advertised: list[bytes] = []
    for addr in bound:
        if addr.startswith(_ANY4):
            candidates = [_IP4 + ip.packed + addr[5:] for ip in _usable(interfaces, 4)]
        elif addr.startswith(_ANY6):
            candidates = [_IP6 + ip.packed + addr[17:] for ip in _usable(interfaces, 6)]
        else:
            candidates = [addr]
        advertised.extend(c for c in candidates if c not in advertised)
    return advertised


def _usable(interfaces: Sequence[IPAddress], version: int) -> list[IPAddress]:
    family = [
        ip for ip in interfaces if ip.version == version and not (version == 6 and ip.is_link_local)
    ]
    others = [ip for ip in family if not ip.is_loopback]
    return others or family


def is_unspecified(addr: bytes) -> bool:
    """Whether a binary multiaddr starts with ``/ip4/0.0.0.0`` or ``/ip6/::``."""
    return addr.startswith((_ANY4, _ANY6))


def parse_announce(text: str) -> bytes:
    """A ``--p2p-announce`` multiaddr in binary; raises `InvalidMultiaddr` with the reason.

    Any multiaddr we can write (``/ip4``, ``/ip6``, ``/dns4``, ``/dns6``, ``/dnsaddr``,
    ``/tls``, ``/ws``, ``/wss``…), but not an unspecified address and without ``/p2p``
    (the peer id is added where it is needed)."""
    data = multiaddr_from_text(text)
    if is_unspecified(data):
        raise InvalidMultiaddr(f"{text!r} is unspecified: announce an address peers can dial")
    parts = multiaddr_to_text(data).split("/")
    if "p2p" in parts or "ipfs" in parts or "p2p-circuit" in parts:
        raise InvalidMultiaddr(f"{text!r}: announce the address without /p2p/<peer-id>")
    return data


def interface_expander(read: InterfaceReader) -> Callable[[Sequence[bytes]], list[bytes]]:
    """A `Host.expand` that reads the interfaces (only when an address is unspecified)."""

    def expander(bound: Sequence[bytes]) -> list[bytes]:
        if not any(is_unspecified(addr) for addr in bound):
            return list(bound)
        return expand(bound, read())

    return expander


# -- reading ----------------------------------------------------------------------


class _IfAddrs(ctypes.Structure):
    pass


_IfAddrs._fields_ = [
    ("ifa_next", ctypes.POINTER(_IfAddrs)),
    ("ifa_name", ctypes.c_char_p),
    ("ifa_flags", ctypes.c_uint),
    ("ifa_addr", ctypes.c_void_p),
    ("ifa_netmask", ctypes.c_void_p),
    ("ifa_ifu", ctypes.c_void_p),
    ("ifa_data", ctypes.c_void_p),
]

_IFF_UP: Final = 0x1
_BSD_SOCKADDR: Final = not sys.platform.startswith("linux")
"""BSD and macOS sockaddrs start with a length byte, then a one-byte family."""


class InterfaceError(OSError):
    """The interfaces' addresses cannot be read here."""


def read_interface_ips() -> list[IPAddress]:
    """The IPv4 and IPv6 addresses of the interfaces that are up, in the system's order;
    raises `InterfaceError` when they cannot be read."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        getifaddrs = libc.getifaddrs
        freeifaddrs = libc.freeifaddrs
    except (OSError, AttributeError) as error:
        raise InterfaceError(f"no getifaddrs: {error}") from None
    head = ctypes.POINTER(_IfAddrs)()
    if getifaddrs(ctypes.byref(head)) != 0:
        errno = ctypes.get_errno()
        raise InterfaceError(errno, f"getifaddrs failed: {os.strerror(errno)}")
    try:
        ips: list[IPAddress] = []
        node = head
        while node:
            entry = node.contents
            if entry.ifa_addr and entry.ifa_flags & _IFF_UP:
                ip = _sockaddr_ip(entry.ifa_addr)
                if ip is not None and ip not in ips:
                    ips.append(ip)
            node = entry.ifa_next
        return ips
    finally:
        freeifaddrs(head)


def _sockaddr_ip(pointer: int) -> IPAddress | None:
    if _BSD_SOCKADDR:
        family = ctypes.string_at(pointer + 1, 1)[0]
    else:
        family = ctypes.c_ushort.from_address(pointer).value
    if family == socket.AF_INET:
        return ipaddress.IPv4Address(ctypes.string_at(pointer + 4, 4))
    if family == socket.AF_INET6:
        return ipaddress.IPv6Address(ctypes.string_at(pointer + 8, 16))
    return None
