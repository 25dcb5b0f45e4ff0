"""Fuzz multistream-select: a `Responder` (what a stranger dialling us meets) and an
`Initiator` (our dial: the answers come from the peer), fed the same reads.

Only `MultistreamError` may escape. Until a protocol is agreed, neither negotiator
may hold more than one message's worth of bytes, nor answer more than a bounded
number of bytes per message received.
"""

from __future__ import annotations

from _harness import chunks, instrumented, main, whole

with instrumented("rendezvous"):
    from rendezvous.p2p.multistream import (
        MAX_MESSAGE_SIZE,
        PROTOCOL_ID,
        Initiator,
        MultistreamError,
        Responder,
        encode_message,
    )

PROTOCOLS = ["/yamux/1.0.0", "/noise", "/rendezvous/1.0.0"]
HELD = MAX_MESSAGE_SIZE + 10
"""The most a negotiator may buffer between reads: one message and its length."""


def _drive(negotiator: Initiator | Responder, data: bytes, answer_bound: int) -> None:
    try:
        for piece in chunks(data):
            out = negotiator.feed(piece)
            if negotiator.selected is not None:
                assert negotiator.selected in PROTOCOLS
                return
            assert len(negotiator._reader._buffer) <= HELD, "negotiator holds too much"
            assert len(out) <= answer_bound * (len(piece) + 1), "answers out of proportion"
    except MultistreamError:
        pass


def test_one_input(data: bytes) -> None:
    responder = Responder(PROTOCOLS[:2])
    responder.start()
    _drive(responder, data, 4)
    initiator = Initiator(PROTOCOLS)
    initiator.start()
    _drive(initiator, data, 64)


def seeds() -> list[bytes]:
    header = encode_message(PROTOCOL_ID)
    return [
        whole(header + encode_message("/noise") + b"rest"),
        whole(header + encode_message("ls") + encode_message("/other") + encode_message("/noise")),
        b"\x01" + header + encode_message("na") + encode_message("/noise"),
        whole(header + encode_message("na") + encode_message("na") + encode_message("na")),
        whole(header + encode_message("/yamux/1.0.0")),
    ]


if __name__ == "__main__":
    main(test_one_input, seeds)
