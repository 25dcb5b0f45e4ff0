"""Fuzz the PROXY protocol header parser (``--p2p-proxy-protocol``): the first bytes of
every connection a load balancer hands over, v1 (text) or v2 (binary).

Reads accumulate as `ProxiedProtocol` accumulates them. `parse_header` may raise only
`ProxyHeaderError`; until it has a header it needs at most one header's worth of
bytes, and a header it returns lies within the bytes it was given.
"""

from __future__ import annotations

import struct

from _harness import chunks, instrumented, main, whole

with instrumented("rendezvous"):
    from rendezvous.p2p.proxy import (
        V1_MAX,
        V2_MAX_PAYLOAD,
        V2_SIGNATURE,
        ProxyHeaderError,
        parse_header,
    )


def test_one_input(data: bytes) -> None:
    buffer = b""
    for piece in chunks(data):
        buffer += piece
        try:
            header = parse_header(buffer)
        except ProxyHeaderError:
            return
        if header is None:
            assert len(buffer) < max(V1_MAX, 16 + V2_MAX_PAYLOAD), "waits for too much"
            continue
        assert 0 < header.length <= len(buffer)
        if header.source is not None:
            assert 0 <= header.source.port <= 65535
        return


def seeds() -> list[bytes]:
    v2 = V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack(">H", 12)
    v2 += bytes([198, 51, 100, 7, 10, 0, 0, 1]) + struct.pack(">HH", 40000, 4001)
    v2_6 = V2_SIGNATURE + bytes([0x21, 0x21]) + struct.pack(">H", 36) + bytes(32) + bytes(4)
    return [
        whole(b"PROXY TCP4 198.51.100.7 10.0.0.1 40000 4001\r\nrest"),
        b"\x03PROXY TCP6 2001:db8::1 2001:db8::2 1 443\r\n",
        whole(b"PROXY UNKNOWN\r\n"),
        whole(v2 + b"rest"),
        b"\x05" + v2_6,
        whole(V2_SIGNATURE + bytes([0x20, 0x00, 0, 0])),
    ]


if __name__ == "__main__":
    main(test_one_input, seeds)
