"""Tests for rendezvous.p2p.noise."""

from __future__ import annotations

import contextlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from rendezvous.p2p.noise import (
    MAX_MESSAGE_LEN,
    MAX_PLAINTEXT_LEN,
    SIGNATURE_PREFIX,
    NoiseError,
    NoiseSession,
    StaticKey,
    XXHandshake,
)
from rendezvous.pb.noise_pb2 import NoiseHandshakePayload

ED25519_PUBLIC_KEY_PREFIX = bytes.fromhex("08011220")
"""PublicKey protobuf: Type=Ed25519 (08 01), Data of 32 bytes (12 20)."""

# Noise_XX_25519_ChaChaPoly_SHA256 from the cacophony test vectors.
CACOPHONY = {
    "prologue": "4a6f686e2047616c74",
    "init_static": "e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1",
    "init_ephemeral": "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a",
    "resp_static": "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893",
    "resp_ephemeral": "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b",
    "handshake_hash": "c8e5f64e846193be2a834104c2a009868d6c9f3bd3c186299888b488b2f1f58e",
}
CACOPHONY_MESSAGES = [
    (
        "4c756477696720766f6e204d69736573",
        "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c7944"
        "4c756477696720766f6e204d69736573",
    ),
    (
        "4d757272617920526f746862617264",
        "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f144808843"
        "81cbad1f276e038c48378ffce2b65285e08d6b68aaa3629a5a8639392490e5b9"
        "bd5269c2f1e4f488ed8831161f19b7815528f8982ffe09be9b5c412f8a0db50f"
        "8814c7194e83f23dbd8d162c9326ad",
    ),
    (
        "462e20412e20486179656b",
        "c7195ffacac1307ff99046f219750fc47693e23c3cb08b89c2af808b444850a8"
        "0ae475b9df0f169ae80a89be0865b57f58c9fea0d4ec82a286427402f113e4b6"
        "ae769a1d95941d49b25030",
    ),
    ("4361726c204d656e676572", "96763ed773f8e47bb3712f0e29b3060ffc956ffc146cee53d5e1df"),
    (
        "4a65616e2d426170746973746520536179",
        "3e40f15f6f3a46ae446b253bf8b1d9ffb6ed9b174d272328ff91a7e2e5c79c07f5",
    ),
    (
        "457567656e2042f6686d20766f6e2042617765726b",
        "eb3f3515110702e047a6c9da4478b6ead94873c11c0f2d710ddb3f09fce024b3a58502ae3f",
    ),
]


class Ed25519Identity:
    """A minimal libp2p identity for tests."""

    def __init__(self, seed: bytes | None = None) -> None:
        if seed is None:
            self._key = Ed25519PrivateKey.generate()
        else:
            self._key = Ed25519PrivateKey.from_private_bytes(seed)
        raw = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self._public = ED25519_PUBLIC_KEY_PREFIX + raw

    def public_key_bytes(self) -> bytes:
        return self._public

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    @property
    def peer_id(self) -> bytes:
        return peer_id_of(self._public)


def peer_id_of(public_key: bytes) -> bytes:
    """Identity multihash: serialized keys of at most 42 bytes are inlined."""
    return b"\x00" + bytes((len(public_key),)) + public_key


def verify_ed25519(public_key: bytes, data: bytes, signature: bytes) -> bytes:
    if len(public_key) != 36 or not public_key.startswith(ED25519_PUBLIC_KEY_PREFIX):
        raise ValueError("not an Ed25519 public key")
    Ed25519PublicKey.from_public_bytes(public_key[4:]).verify(signature, data)
    return peer_id_of(public_key)


class BadSignatureIdentity(Ed25519Identity):
    def sign(self, data: bytes) -> bytes:
        return super().sign(data + b"!")


def x25519(hex_key: str) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(bytes.fromhex(hex_key))


def make_pair(
    *,
    initiator_identity: Ed25519Identity | None = None,
    responder_identity: Ed25519Identity | None = None,
    expected_peer_id: bytes | None = None,
    initiator_muxers: tuple[str, ...] = (),
    responder_muxers: tuple[str, ...] = (),
) -> tuple[NoiseSession, NoiseSession, Ed25519Identity, Ed25519Identity]:
    initiator_identity = initiator_identity or Ed25519Identity()
    responder_identity = responder_identity or Ed25519Identity()
    initiator = NoiseSession(
        initiator=True,
        identity=initiator_identity,
        verify_identity=verify_ed25519,
        expected_peer_id=expected_peer_id,
        stream_muxers=initiator_muxers,
    )
    responder = NoiseSession(
        initiator=False,
        identity=responder_identity,
        verify_identity=verify_ed25519,
        stream_muxers=responder_muxers,
    )
    return initiator, responder, initiator_identity, responder_identity


def handshake(initiator: NoiseSession, responder: NoiseSession) -> None:
    """Pump handshake bytes between the two sessions until both complete."""
    message = initiator.start()
    responder.start()
    message = responder.receive_handshake(message)
    message = initiator.receive_handshake(message)
    responder.receive_handshake(message)


class CacophonyTests(SynchronousTestCase):
    """The bare XX handshake reproduces the published test vector byte for byte."""

    def test_vector(self) -> None:
        prologue = bytes.fromhex(CACOPHONY["prologue"])
        initiator = XXHandshake(
            initiator=True,
            static_key=x25519(CACOPHONY["init_static"]),
            ephemeral_key=x25519(CACOPHONY["init_ephemeral"]),
            prologue=prologue,
        )
        responder = XXHandshake(
            initiator=False,
            static_key=x25519(CACOPHONY["resp_static"]),
            ephemeral_key=x25519(CACOPHONY["resp_ephemeral"]),
            prologue=prologue,
        )
        for index, (payload_hex, ciphertext_hex) in enumerate(CACOPHONY_MESSAGES[:3]):
            writer, reader = (initiator, responder) if index % 2 == 0 else (responder, initiator)
            message = writer.write_message(bytes.fromhex(payload_hex))
            self.assertEqual(message.hex(), ciphertext_hex)
            self.assertEqual(reader.read_message(message), bytes.fromhex(payload_hex))
        self.assertTrue(initiator.complete and responder.complete)
        self.assertEqual(initiator.handshake_hash.hex(), CACOPHONY["handshake_hash"])
        self.assertEqual(responder.handshake_hash.hex(), CACOPHONY["handshake_hash"])
        initiator_send, initiator_receive = initiator.split()
        responder_send, responder_receive = responder.split()
        for index, (payload_hex, ciphertext_hex) in enumerate(CACOPHONY_MESSAGES[3:], 3):
            if index % 2 == 0:
                send, receive = initiator_send, responder_receive
            else:
                send, receive = responder_send, initiator_receive
            ciphertext = send.encrypt_with_ad(b"", bytes.fromhex(payload_hex))
            self.assertEqual(ciphertext.hex(), ciphertext_hex)
            self.assertEqual(receive.decrypt_with_ad(b"", ciphertext), bytes.fromhex(payload_hex))

    def test_turns_are_enforced(self) -> None:
        responder = XXHandshake(initiator=False, static_key=X25519PrivateKey.generate())
        self.assertRaises(NoiseError, responder.write_message, b"")
        self.assertRaises(NoiseError, responder.split)

    def test_short_message(self) -> None:
        responder = XXHandshake(initiator=False, static_key=X25519PrivateKey.generate())
        self.assertRaises(NoiseError, responder.read_message, b"\x01" * 31)


class HandshakeTests(SynchronousTestCase):
    def test_pair_authenticates_both_sides(self) -> None:
        initiator, responder, initiator_id, responder_id = make_pair()
        handshake(initiator, responder)
        self.assertTrue(initiator.complete)
        self.assertTrue(responder.complete)
        self.assertEqual(initiator.remote_peer_id, responder_id.peer_id)
        self.assertEqual(responder.remote_peer_id, initiator_id.peer_id)
        self.assertEqual(initiator.remote_public_key, responder_id.public_key_bytes())
        self.assertEqual(responder.remote_public_key, initiator_id.public_key_bytes())

    def test_first_message_is_the_bare_ephemeral_key(self) -> None:
        ephemeral = X25519PrivateKey.generate()
        initiator = NoiseSession(
            initiator=True,
            identity=Ed25519Identity(),
            verify_identity=verify_ed25519,
            ephemeral_key=ephemeral,
        )
        public = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.assertEqual(initiator.start(), b"\x00\x20" + public)

    def test_message_sizes(self) -> None:
        """msg2 = e(32) + s(32+16) + payload+16; msg3 = s(32+16) + payload+16."""
        initiator, responder, _, _ = make_pair()
        message1 = initiator.start()
        message2 = responder.receive_handshake(message1)
        message3 = initiator.receive_handshake(message2)
        payload_length = 2 + 36 + 2 + 64  # identity_key and identity_sig fields
        self.assertEqual(len(message2), 2 + 32 + 48 + payload_length + 16)
        self.assertEqual(len(message3), 2 + 48 + payload_length + 16)

    def test_signed_bytes(self) -> None:
        """The identity signs the prefix and the 32-byte X25519 static key."""
        signed: list[bytes] = []

        class Recording(Ed25519Identity):
            def sign(self, data: bytes) -> bytes:
                signed.append(data)
                return super().sign(data)

        static = X25519PrivateKey.generate()
        initiator = NoiseSession(
            initiator=True, identity=Recording(), verify_identity=verify_ed25519, static_key=static
        )
        _, responder, _, _ = make_pair()
        handshake(initiator, responder)
        public = static.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.assertEqual(signed, [b"noise-libp2p-static-key:" + public])
        self.assertEqual(SIGNATURE_PREFIX, b"noise-libp2p-static-key:")

    def test_stream_muxers_extension(self) -> None:
        initiator, responder, _, _ = make_pair(
            initiator_muxers=("/yamux/1.0.0",), responder_muxers=("/yamux/1.0.0", "/mplex/6.7.0")
        )
        handshake(initiator, responder)
        self.assertEqual(initiator.remote_stream_muxers, ("/yamux/1.0.0", "/mplex/6.7.0"))
        self.assertEqual(responder.remote_stream_muxers, ("/yamux/1.0.0",))

    def test_no_extensions(self) -> None:
        initiator, responder, _, _ = make_pair()
        handshake(initiator, responder)
        self.assertEqual(initiator.remote_stream_muxers, ())

    def test_expected_peer_id_matches(self) -> None:
        responder_id = Ed25519Identity()
        initiator, responder, _, _ = make_pair(
            responder_identity=responder_id, expected_peer_id=responder_id.peer_id
        )
        handshake(initiator, responder)
        self.assertTrue(initiator.complete)

    def test_expected_peer_id_mismatch(self) -> None:
        initiator, responder, _, _ = make_pair(expected_peer_id=Ed25519Identity().peer_id)
        message = responder.receive_handshake(initiator.start())
        self.assertRaises(NoiseError, initiator.receive_handshake, message)

    def test_responder_cannot_expect(self) -> None:
        self.assertRaises(
            ValueError,
            NoiseSession,
            initiator=False,
            identity=Ed25519Identity(),
            verify_identity=verify_ed25519,
            expected_peer_id=b"\x00",
        )

    def test_bad_responder_signature(self) -> None:
        initiator, responder, _, _ = make_pair(responder_identity=BadSignatureIdentity())
        message = responder.receive_handshake(initiator.start())
        self.assertRaises(NoiseError, initiator.receive_handshake, message)

    def test_bad_initiator_signature(self) -> None:
        initiator, responder, _, _ = make_pair(initiator_identity=BadSignatureIdentity())
        message = initiator.receive_handshake(responder.receive_handshake(initiator.start()))
        self.assertRaises(NoiseError, responder.receive_handshake, message)

    def test_verifier_exception_is_wrapped(self) -> None:
        def refuse(public_key: bytes, data: bytes, signature: bytes) -> bytes:
            raise InvalidSignature()

        initiator = NoiseSession(initiator=True, identity=Ed25519Identity(), verify_identity=refuse)
        _, responder, _, _ = make_pair()
        message = responder.receive_handshake(initiator.start())
        self.assertRaises(NoiseError, initiator.receive_handshake, message)

    def test_tampered_handshake_message(self) -> None:
        initiator, responder, _, _ = make_pair()
        message = bytearray(responder.receive_handshake(initiator.start()))
        message[50] ^= 1
        self.assertRaises(NoiseError, initiator.receive_handshake, bytes(message))

    def test_low_order_ephemeral_key(self) -> None:
        _, responder, _, _ = make_pair()
        self.assertRaises(NoiseError, responder.receive_handshake, b"\x00\x20" + bytes(32))

    def test_missing_identity(self) -> None:
        """A peer whose payload lacks the signature is refused."""
        initiator, _, _, _ = make_pair()
        fake = XXHandshake(initiator=False, static_key=X25519PrivateKey.generate())
        fake.read_message(initiator.start()[2:])
        payload = NoiseHandshakePayload(identity_key=Ed25519Identity().public_key_bytes())
        message = fake.write_message(payload.SerializeToString())
        frame = len(message).to_bytes(2, "big") + message
        self.assertRaises(NoiseError, initiator.receive_handshake, frame)

    def test_malformed_payload(self) -> None:
        initiator, _, _, _ = make_pair()
        fake = XXHandshake(initiator=False, static_key=X25519PrivateKey.generate())
        fake.read_message(initiator.start()[2:])
        message = fake.write_message(b"\xff\xff\xff")
        frame = len(message).to_bytes(2, "big") + message
        self.assertRaises(NoiseError, initiator.receive_handshake, frame)

    def test_byte_by_byte(self) -> None:
        initiator, responder, _, _ = make_pair()
        to_responder = initiator.start()
        to_initiator = b"".join(responder.receive_handshake(bytes((b,))) for b in to_responder)
        to_responder = b"".join(initiator.receive_handshake(bytes((b,))) for b in to_initiator)
        for byte in to_responder:
            responder.receive_handshake(bytes((byte,)))
        self.assertTrue(initiator.complete and responder.complete)

    def test_start_twice(self) -> None:
        initiator, _, _, _ = make_pair()
        initiator.start()
        self.assertRaises(NoiseError, initiator.start)

    def test_receive_before_start(self) -> None:
        initiator, _, _, _ = make_pair()
        self.assertRaises(NoiseError, initiator.receive_handshake, b"\x00")

    def test_transport_before_handshake(self) -> None:
        initiator, _, _, _ = make_pair()
        self.assertRaises(NoiseError, initiator.encrypt, b"x")
        self.assertRaises(NoiseError, initiator.decrypt, b"x")


class StaticKeyTests(SynchronousTestCase):
    """One `StaticKey` (a host's) serves many handshakes."""

    def test_shared_by_handshakes(self) -> None:
        """Each handshake proves the same static key, signed once, with keys of its own."""
        signed: list[bytes] = []

        class Recording(Ed25519Identity):
            def sign(self, data: bytes) -> bytes:
                signed.append(data)
                return super().sign(data)

        identity = Recording()
        static = StaticKey(identity)
        keys = []
        for _ in range(2):
            initiator, _, _, _ = make_pair()
            responder = NoiseSession(
                initiator=False, identity=identity, verify_identity=verify_ed25519, static=static
            )
            handshake(initiator, responder)
            self.assertEqual(initiator.remote_peer_id, identity.peer_id)
            self.assertEqual(responder._handshake.static_public_key, static.public)
            keys.append(initiator.encrypt(b"same plaintext"))
            self.assertEqual(responder.decrypt(keys[-1]), b"same plaintext")
        self.assertEqual(signed, [SIGNATURE_PREFIX + static.public])
        self.assertNotEqual(keys[0], keys[1])  # new ephemeral keys: new transport keys

    def test_stream_muxers(self) -> None:
        identity = Ed25519Identity()
        static = StaticKey(identity, ["/yamux/1.0.0"])
        initiator, _, _, _ = make_pair()
        responder = NoiseSession(
            initiator=False, identity=identity, verify_identity=verify_ed25519, static=static
        )
        handshake(initiator, responder)
        self.assertEqual(initiator.remote_stream_muxers, ("/yamux/1.0.0",))

    def test_not_with_a_static_key_or_muxers(self) -> None:
        identity = Ed25519Identity()
        static = StaticKey(identity)
        with self.assertRaises(ValueError):
            NoiseSession(
                initiator=True,
                identity=identity,
                verify_identity=verify_ed25519,
                static=static,
                static_key=X25519PrivateKey.generate(),
            )
        with self.assertRaises(ValueError):
            NoiseSession(
                initiator=True,
                identity=identity,
                verify_identity=verify_ed25519,
                static=static,
                stream_muxers=("/yamux/1.0.0",),
            )


class TransportTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.initiator, self.responder, _, _ = make_pair()
        handshake(self.initiator, self.responder)

    def test_both_directions(self) -> None:
        self.assertEqual(self.responder.decrypt(self.initiator.encrypt(b"hello")), b"hello")
        self.assertEqual(self.initiator.decrypt(self.responder.encrypt(b"world")), b"world")

    def test_frame_layout(self) -> None:
        frame = self.initiator.encrypt(b"abc")
        self.assertEqual(frame[:2], (3 + 16).to_bytes(2, "big"))
        self.assertEqual(len(frame), 2 + 3 + 16)

    def test_empty_plaintext_sends_nothing(self) -> None:
        self.assertEqual(self.initiator.encrypt(b""), b"")

    def test_split_at_65535(self) -> None:
        plaintext = bytes(range(256)) * 600  # 153600 bytes
        wire = self.initiator.encrypt(plaintext)
        lengths = []
        position = 0
        while position < len(wire):
            length = int.from_bytes(wire[position : position + 2], "big")
            lengths.append(length)
            position += 2 + length
        self.assertEqual(lengths[:2], [MAX_MESSAGE_LEN, MAX_MESSAGE_LEN])
        self.assertEqual(lengths[2], len(plaintext) - 2 * MAX_PLAINTEXT_LEN + 16)
        self.assertEqual(self.responder.decrypt(wire), plaintext)

    def test_exact_maximum_is_one_frame(self) -> None:
        wire = self.initiator.encrypt(b"x" * MAX_PLAINTEXT_LEN)
        self.assertEqual(wire[:2], b"\xff\xff")
        self.assertEqual(len(wire), 2 + MAX_MESSAGE_LEN)

    def test_partial_frames_are_buffered(self) -> None:
        wire = self.initiator.encrypt(b"one") + self.initiator.encrypt(b"two")
        received = b"".join(self.responder.decrypt(wire[i : i + 5]) for i in range(0, len(wire), 5))
        self.assertEqual(received, b"onetwo")

    def test_tampered_frame(self) -> None:
        wire = bytearray(self.initiator.encrypt(b"hello"))
        wire[4] ^= 0x80
        self.assertRaises(NoiseError, self.responder.decrypt, bytes(wire))

    def test_replayed_frame(self) -> None:
        wire = self.initiator.encrypt(b"hello")
        self.responder.decrypt(wire)
        self.assertRaises(NoiseError, self.responder.decrypt, wire)

    def test_short_frame(self) -> None:
        self.assertRaises(NoiseError, self.responder.decrypt, b"\x00\x05abcde")

    def test_frames_as_pieces(self) -> None:
        """`encrypt_frames` gives the same wire as `encrypt`, in writable pieces;
        `decrypt_frames` gives each frame's plaintext, however the wire is cut."""
        plaintext = bytes(range(256)) * 600
        pieces = self.initiator.encrypt_frames(plaintext)
        self.assertEqual([len(p) for p in pieces[::2]], [2, 2, 2])
        wire = b"".join(pieces)
        self.assertEqual(self.responder.decrypt(wire), plaintext)
        for cut in (1, 2, 3, MAX_MESSAGE_LEN + 1, MAX_MESSAGE_LEN + 2, len(wire) - 1):
            wire = self.initiator.encrypt(plaintext) + self.initiator.encrypt(b"tail")
            chunks = self.responder.decrypt_frames(wire[:cut]) + self.responder.decrypt_frames(
                wire[cut:]
            )
            self.assertEqual(b"".join(chunks), plaintext + b"tail")
            self.assertEqual(len(chunks), 4)

    def test_nonce_exhaustion(self) -> None:
        send = self.initiator._send
        assert send is not None
        send.nonce = 2**64 - 3
        self.assertRaises(NoiseError, self.initiator.encrypt, b"x" * (2 * MAX_PLAINTEXT_LEN + 1))
        self.initiator.encrypt(b"x" * (2 * MAX_PLAINTEXT_LEN))
        self.assertRaises(NoiseError, self.initiator.encrypt, b"x")

    def test_own_frames_do_not_decrypt_locally(self) -> None:
        """Each direction has its own key."""
        self.assertRaises(NoiseError, self.initiator.decrypt, self.initiator.encrypt(b"x"))

    @settings(max_examples=100, deadline=None)
    @given(st.binary(max_size=300))
    def test_garbage_raises_only_noise_error(self, data: bytes) -> None:
        with contextlib.suppress(NoiseError):
            self.responder.decrypt(data)


class PipeliningTests(SynchronousTestCase):
    def test_data_after_last_handshake_message(self) -> None:
        """The initiator may send transport data right behind message 3."""
        initiator, responder, _, _ = make_pair()
        message = initiator.receive_handshake(responder.receive_handshake(initiator.start()))
        self.assertTrue(initiator.complete)
        early = initiator.encrypt(b"early")
        self.assertEqual(responder.receive_handshake(message + early), b"")
        self.assertTrue(responder.complete)
        self.assertEqual(responder.decrypt(b""), b"early")


class HandshakeGarbageTests(SynchronousTestCase):
    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.binary(max_size=200), max_size=4))
    def test_responder(self, chunks: list[bytes]) -> None:
        _, responder, _, _ = make_pair()
        try:
            for chunk in chunks:
                responder.receive_handshake(chunk)
        except NoiseError:
            pass

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.binary(max_size=200), max_size=4))
    def test_initiator(self, chunks: list[bytes]) -> None:
        initiator, _, _, _ = make_pair()
        initiator.start()
        try:
            for chunk in chunks:
                initiator.receive_handshake(chunk)
        except NoiseError:
            pass

    @settings(max_examples=100, deadline=None)
    @given(st.integers(min_value=0, max_value=200), st.binary(min_size=1, max_size=4))
    def test_corrupted_second_message(self, position: int, noise: bytes) -> None:
        initiator, responder, _, _ = make_pair()
        message = bytearray(responder.receive_handshake(initiator.start()))
        position %= len(message)
        for offset, byte in enumerate(noise):
            if position + offset < len(message):
                message[position + offset] ^= byte or 1
        with contextlib.suppress(NoiseError):
            initiator.receive_handshake(bytes(message))
