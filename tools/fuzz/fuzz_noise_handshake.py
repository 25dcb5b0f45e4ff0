"""Fuzz the Noise XX handshake as both sides meet it from a stranger.

``data[0] % 3`` picks how the stranger's bytes arrive:

0. raw, in reads (``data[1]`` picks their size), at a responder: frames and the first
   message as anyone can send them;
1. as the payload of an otherwise honest initiator's third message (encrypted as it
   must be), so the responder parses and checks a stranger's ``NoiseHandshakePayload``
   and identity key;
2. as the payload of an honest responder's second message, at our initiator (a dial).

Only `NoiseError` may escape, and one caused by the identity check must come from a
documented key or signature error (`InvalidKeyError`, `SignatureError`). A session
never holds more than one frame while its handshake is incomplete, and one that
completes has authenticated the key that signed it.
"""

from __future__ import annotations

from _harness import chunks, instrumented, main
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

with instrumented("rendezvous"):
    from rendezvous.p2p.keys import InvalidKeyError, PrivateKey, SignatureError, verify_identity
    from rendezvous.p2p.noise import MAX_MESSAGE_LEN, NoiseError, NoiseSession, _frame

STRANGER = PrivateKey.from_seed(b"\x01" * 32)
US = PrivateKey.from_seed(b"\x02" * 32)


def _x25519(n: int) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(bytes([n]) * 32)


def _session(initiator: bool, identity: PrivateKey, n: int) -> NoiseSession:
    return NoiseSession(
        initiator=initiator,
        identity=identity,
        verify_identity=verify_identity,
        static_key=_x25519(n),
        ephemeral_key=_x25519(n + 1),
    )


def _check_cause(error: NoiseError) -> None:
    cause = error.__cause__
    if cause is None:
        return
    if "identity signature" in str(error):
        assert isinstance(cause, InvalidKeyError | SignatureError), repr(cause)


def _held(session: NoiseSession) -> None:
    if not session.complete:
        assert len(session._buffer) < 2 + MAX_MESSAGE_LEN + 1, "holds more than a frame"


def _raw(data: bytes) -> None:
    responder = _session(False, US, 10)
    responder.start()
    for piece in chunks(data):
        responder.receive_handshake(piece)
        _held(responder)
        if responder.complete:
            raise AssertionError("a handshake completed from raw bytes")


def _stranger_payload(payload: bytes) -> None:
    stranger = _session(True, STRANGER, 20)
    responder = _session(False, US, 10)
    responder.start()
    first = stranger.start()
    second = responder.receive_handshake(first)
    stranger._handshake.read_message(second[2:])
    third = stranger._handshake.write_message(payload[: MAX_MESSAGE_LEN - 64])
    responder.receive_handshake(_frame(third))
    if responder.complete:
        assert responder.remote_peer_id == STRANGER.peer_id(), "authenticated another key"


def _listener_payload(payload: bytes) -> None:
    initiator = _session(True, US, 30)
    stranger = _session(False, STRANGER, 40)
    stranger.start()
    first = initiator.start()
    stranger._handshake.read_message(first[2:])
    second = stranger._handshake.write_message(payload[: MAX_MESSAGE_LEN - 96])
    initiator.receive_handshake(_frame(second))
    _held(initiator)
    if initiator.complete:
        assert initiator.remote_peer_id == STRANGER.peer_id(), "authenticated another key"


def test_one_input(data: bytes) -> None:
    if not data:
        return
    mode, rest = data[0] % 3, data[1:]
    try:
        if mode == 0:
            _raw(rest)
        elif mode == 1:
            _stranger_payload(rest)
        else:
            _listener_payload(rest)
    except NoiseError as error:
        _check_cause(error)


def seeds() -> list[bytes]:
    # The honest payloads (the stranger's key signing its static key), to mutate.
    stranger_initiator = _session(True, STRANGER, 20)
    stranger_responder = _session(False, STRANGER, 40)
    ephemeral = _x25519(99).public_key().public_bytes_raw()
    return [
        b"\x00\x00" + _frame(ephemeral),
        b"\x00\x05" + _frame(ephemeral + b"payload") + _frame(b"\x00" * 80),
        b"\x01" + stranger_initiator._local_payload(),
        b"\x02" + stranger_responder._local_payload(),
    ]


if __name__ == "__main__":
    main(test_one_input, seeds)
