"""Fuzz Noise transport frames after a completed handshake.

The input is a script (`atheris.FuzzedDataProvider`-style, read by hand so it runs
without atheris): frames the honest peer encrypts, raw bytes a stranger injects, and
the read sizes they arrive in. `NoiseSession.decrypt_frames` must return exactly the
honest plaintexts, in order, up to the first frame that does not decrypt, then raise
`NoiseError` (nothing else), and never hold more than one frame.
"""

from __future__ import annotations

import copy

from _harness import instrumented, main
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

with instrumented("rendezvous"):
    from rendezvous.p2p.keys import PrivateKey, verify_identity
    from rendezvous.p2p.noise import MAX_MESSAGE_LEN, MAX_PLAINTEXT_LEN, NoiseError, NoiseSession


def _session(initiator: bool, seed: int) -> NoiseSession:
    return NoiseSession(
        initiator=initiator,
        identity=PrivateKey.from_seed(bytes([seed]) * 32),
        verify_identity=verify_identity,
        static_key=X25519PrivateKey.from_private_bytes(bytes([seed]) * 32),
        ephemeral_key=X25519PrivateKey.from_private_bytes(bytes([seed + 1]) * 32),
    )


def _handshake() -> tuple[NoiseSession, NoiseSession]:
    initiator, responder = _session(True, 1), _session(False, 3)
    responder.start()
    second = responder.receive_handshake(initiator.start())
    third = initiator.receive_handshake(second)
    responder.receive_handshake(third)
    assert initiator.complete and responder.complete
    return initiator, responder


_PEER, _US = _handshake()


def _fresh(session: NoiseSession) -> NoiseSession:
    """The session as it stood right after the handshake (nonces at 0, nothing held)."""
    clone = copy.copy(session)
    clone._buffer = bytearray()
    clone._send = copy.copy(session._send)
    clone._receive = copy.copy(session._receive)
    return clone


class _Script:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def byte(self) -> int | None:
        if self.at >= len(self.data):
            return None
        self.at += 1
        return self.data[self.at - 1]

    def take(self, n: int) -> bytes:
        out = self.data[self.at : self.at + n]
        self.at += len(out)
        return out


def test_one_input(data: bytes) -> None:
    peer, us = _fresh(_PEER), _fresh(_US)
    script = _Script(data)
    wire = bytearray()
    honest: list[bytes] = []
    """Plaintexts whose frames precede any injected byte (what must come out)."""
    tainted = False
    while (op := script.byte()) is not None:
        size = script.byte() or 0
        kind = op % 4
        if kind == 0:  # an honest frame (or several: a large write is split)
            plaintext = script.take(size) * (1 + (op >> 2) % 4)
            if op >> 6 == 3:
                plaintext = plaintext * 2 + bytes(MAX_PLAINTEXT_LEN)  # two frames
            wire += peer.encrypt(plaintext)
            if not tainted and plaintext:
                honest.append(plaintext)
        elif kind == 1:  # bytes a stranger injects
            wire += script.take(size)
            tainted = True
        elif kind == 2:  # a length prefix alone, perhaps huge
            wire += bytes([op, size])
            tainted = True
        else:  # a tampered honest frame
            frame = bytearray(peer.encrypt(script.take(size) or b"x"))
            frame[-1 - (op >> 2) % len(frame[2:])] ^= 1 + (op >> 5)
            wire += frame
            tainted = True
    got = bytearray()
    read = max(1 + (data[-1] if data else 0) * 97, len(wire) // 64)
    try:
        for start in range(0, len(wire), read):
            for chunk in us.decrypt_frames(bytes(wire[start : start + read])):
                got += chunk
            assert len(us._buffer) < 2 + MAX_MESSAGE_LEN, "holds more than a frame"
    except NoiseError:
        assert tainted, "an honest stream failed"
    expected = b"".join(honest)
    if tainted:
        assert got[: len(expected)] == expected[: len(got)], "plaintext changed"
    else:
        assert got == expected, "honest plaintext lost or changed"


def seeds() -> list[bytes]:
    return [
        b"\x00\x05hello\x04\x03abc\xc0\x02hi",
        b"\x00\x05hello\x01\x03xyz\x00\x01a",
        b"\x02\xff\x00\x04abcd",
        b"\x03\x04abcd\x00\x02ok\x07",
    ]


if __name__ == "__main__":
    main(test_one_input, seeds)
