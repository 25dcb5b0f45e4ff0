"""Fuzz the STUN codec: a datagram anyone can send to ``--stun udp:PORT``.

`parse_binding_request` (the server) and `parse_binding_success` (the fleet's client)
may raise only `StunParseError`. A request the server accepts must be answerable: its
Binding success, with or without FINGERPRINT as the request had, parses back to the
same transaction id and address.
"""

from __future__ import annotations

import contextlib
import ipaddress

from _harness import instrumented, main

with instrumented("rendezvous"):
    from rendezvous.stun.codec import (
        StunParseError,
        binding_request,
        binding_success,
        parse_binding_request,
        parse_binding_success,
    )

SOURCES = [
    (ipaddress.ip_address("198.51.100.7"), 40000),
    (ipaddress.ip_address("2001:db8::1"), 1),
]


def test_one_input(data: bytes) -> None:
    try:
        request = parse_binding_request(data)
    except StunParseError:
        pass
    else:
        assert len(request.transaction_id) == 12
        for ip, port in SOURCES:
            answer = binding_success(request.transaction_id, ip, port, request.fingerprint)
            assert parse_binding_success(answer) == (request.transaction_id, ip, port)
    with contextlib.suppress(StunParseError):
        parse_binding_success(data)


def seeds() -> list[bytes]:
    tid = bytes(range(12))
    ip, port = SOURCES[0]
    return [
        binding_request(tid),
        binding_request(tid, fingerprint=True),
        binding_request(tid, [(0x8022, b"agent"), (0x0006, b"user")]),
        binding_success(tid, ip, port, fingerprint=True),
        binding_success(tid, *SOURCES[1]),
    ]


if __name__ == "__main__":
    main(test_one_input, seeds)
