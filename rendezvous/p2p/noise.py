"""Noise_XX_25519_ChaChaPoly_SHA256 with the libp2p handshake payload (`/noise`).

Three layers, all pure (no I/O, no clock):

- `CipherState`, `SymmetricState` and `XXHandshake`: the Noise framework
  objects of the Noise specification, for the XX pattern only;
- `NoiseSession`: the libp2p secure channel: 2-byte length framing, the signed
  `NoiseHandshakePayload`, remote identity checks, and transport encryption.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable, Sequence
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from google.protobuf.message import DecodeError

from rendezvous.pb.noise_pb2 import NoiseHandshakePayload

PROTOCOL_ID = "/noise"
PROTOCOL_NAME = b"Noise_XX_25519_ChaChaPoly_SHA256"
SIGNATURE_PREFIX = b"noise-libp2p-static-key:"
DH_LEN = 32
HASH_LEN = 32
TAG_LEN = 16
MAX_MESSAGE_LEN = 65535
"""Largest Noise message (and libp2p frame body), tag included."""
MAX_PLAINTEXT_LEN = MAX_MESSAGE_LEN - TAG_LEN
_MAX_NONCE = 2**64 - 1
"""Reserved by the Noise specification; reaching it ends the channel."""
_NONCE = struct.Struct("<4xQ")
"""The 12-byte ChaCha20-Poly1305 nonce: four zero bytes, then the counter (little-endian)."""
_LENGTH = struct.Struct(">H")


class NoiseError(Exception):
    """The handshake or a transport frame failed: the connection must close."""


_sha256 = hashlib.sha256
_BLOCK_LEN = 64
_INNER_PAD = bytes(byte ^ 0x36 for byte in range(256))
_OUTER_PAD = bytes(byte ^ 0x5C for byte in range(256))


def _hmac(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104) from two hashes: quicker than `hmac.digest` for the
    32-byte keys of the handshake."""
    if len(key) > _BLOCK_LEN:
        return hmac.digest(key, data, "sha256")
    key = key.ljust(_BLOCK_LEN, b"\x00")
    inner = _sha256(key.translate(_INNER_PAD) + data).digest()
    return _sha256(key.translate(_OUTER_PAD) + inner).digest()


def _hkdf(chaining_key: bytes, input_key_material: bytes) -> tuple[bytes, bytes]:
    """The Noise HKDF with two HASH_LEN outputs (all that XX uses)."""
    temp_key = _hmac(chaining_key, input_key_material)
    first = _hmac(temp_key, b"\x01")
    return first, _hmac(temp_key, first + b"\x02")


def _public_bytes(private_key: X25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _dh(private_key: X25519PrivateKey, public_key: X25519PublicKey) -> bytes:
    try:
        return private_key.exchange(public_key)
    except ValueError as exc:  # low-order point: the shared secret is all zeros
        raise NoiseError("invalid Diffie-Hellman public key") from exc


def _x25519_public(data: bytes) -> X25519PublicKey:
    try:
        return X25519PublicKey.from_public_bytes(data)
    except ValueError as exc:
        raise NoiseError("invalid Diffie-Hellman public key") from exc


class CipherState:
    """A ChaCha20-Poly1305 key with its 64-bit message counter."""

    def __init__(self, key: bytes | None = None) -> None:
        self._aead = ChaCha20Poly1305(key) if key is not None else None
        self.nonce = 0

    @property
    def has_key(self) -> bool:
        return self._aead is not None

    def _next_nonce(self) -> bytes:
        if self.nonce >= _MAX_NONCE:
            raise NoiseError("nonce space exhausted")
        nonce = _NONCE.pack(self.nonce)
        self.nonce += 1
        return nonce

    def encrypt_with_ad(self, associated_data: bytes, plaintext: bytes) -> bytes:
        if self._aead is None:
            return plaintext
        return self._aead.encrypt(self._next_nonce(), plaintext, associated_data)

    def decrypt_with_ad(self, associated_data: bytes, ciphertext: bytes) -> bytes:
        if self._aead is None:
            return ciphertext
        if len(ciphertext) < TAG_LEN:
            raise NoiseError("ciphertext shorter than its tag")
        if self.nonce >= _MAX_NONCE:
            raise NoiseError("nonce space exhausted")
        nonce = _NONCE.pack(self.nonce)
        try:
            plaintext = self._aead.decrypt(nonce, ciphertext, associated_data)
        except InvalidTag as exc:
            raise NoiseError("decryption failed") from exc
        self.nonce += 1  # only a successful decryption consumes the nonce
        return plaintext


class SymmetricState:
    """Chaining key, handshake hash and the current handshake cipher."""

    def __init__(self, protocol_name: bytes) -> None:
        if len(protocol_name) <= HASH_LEN:
            self.handshake_hash = protocol_name.ljust(HASH_LEN, b"\x00")
        else:
            self.handshake_hash = hashlib.sha256(protocol_name).digest()
        self.chaining_key = self.handshake_hash
        self.cipher = CipherState()

    def mix_key(self, input_key_material: bytes) -> None:
        self.chaining_key, temp_key = _hkdf(self.chaining_key, input_key_material)
        self.cipher = CipherState(temp_key)

    def mix_hash(self, data: bytes) -> None:
        self.handshake_hash = _sha256(self.handshake_hash + data).digest()

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self.cipher.encrypt_with_ad(self.handshake_hash, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        plaintext = self.cipher.decrypt_with_ad(self.handshake_hash, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        first, second = _hkdf(self.chaining_key, b"")
        return CipherState(first), CipherState(second)


class XXHandshake:
    """The XX pattern: ``-> e``, ``<- e, ee, s, es``, ``-> s, se``.

    Messages alternate: the initiator writes messages 0 and 2 and reads
    message 1; the responder the opposite. After the third message `split`
    gives the (send, receive) cipher states of this side.
    """

    def __init__(
        self,
        *,
        initiator: bool,
        static_key: X25519PrivateKey,
        prologue: bytes = b"",
        ephemeral_key: X25519PrivateKey | None = None,
        static_public: bytes | None = None,
    ) -> None:
        """``static_public``: the public half of ``static_key``, when it is known already."""
        self.initiator = initiator
        self._symmetric = SymmetricState(PROTOCOL_NAME)
        self._symmetric.mix_hash(prologue)
        self._static = static_key
        self._static_public = (
            static_public if static_public is not None else _public_bytes(static_key)
        )
        self._ephemeral = (
            ephemeral_key if ephemeral_key is not None else X25519PrivateKey.generate()
        )
        self._ephemeral_public = _public_bytes(self._ephemeral)
        self._remote_ephemeral: X25519PublicKey | None = None
        self.remote_static: bytes | None = None
        self.message_index = 0

    @property
    def static_public_key(self) -> bytes:
        return self._static_public

    @property
    def complete(self) -> bool:
        return self.message_index >= 3

    @property
    def handshake_hash(self) -> bytes:
        return self._symmetric.handshake_hash

    @property
    def writes_next(self) -> bool:
        """True when this side writes the next message."""
        return (self.message_index % 2 == 0) == self.initiator

    def write_message(self, payload: bytes) -> bytes:
        """Produce the next handshake message carrying ``payload``."""
        if self.complete or not self.writes_next:
            raise NoiseError("not our turn to write a handshake message")
        symmetric = self._symmetric
        out = bytearray()
        if self.message_index == 0:
            out += self._ephemeral_public
            symmetric.mix_hash(self._ephemeral_public)
        elif self.message_index == 1:
            remote_ephemeral = self._remote_ephemeral
            assert remote_ephemeral is not None
            out += self._ephemeral_public
            symmetric.mix_hash(self._ephemeral_public)
            symmetric.mix_key(_dh(self._ephemeral, remote_ephemeral))
            out += symmetric.encrypt_and_hash(self._static_public)
            symmetric.mix_key(_dh(self._static, remote_ephemeral))
        else:
            assert self._remote_ephemeral is not None
            out += symmetric.encrypt_and_hash(self._static_public)
            symmetric.mix_key(_dh(self._static, self._remote_ephemeral))
        out += symmetric.encrypt_and_hash(payload)
        if len(out) > MAX_MESSAGE_LEN:
            raise NoiseError("handshake message too long")
        self.message_index += 1
        return bytes(out)

    def read_message(self, message: bytes) -> bytes:
        """Consume the peer's next handshake message; return its payload."""
        if self.complete or self.writes_next:
            raise NoiseError("not the peer's turn to send a handshake message")
        if len(message) > MAX_MESSAGE_LEN:
            raise NoiseError("handshake message too long")
        symmetric = self._symmetric
        view = memoryview(message)
        if self.message_index == 0:
            remote_ephemeral = self._take(view, DH_LEN)
            view = view[DH_LEN:]
            self._remote_ephemeral = _x25519_public(remote_ephemeral)
            symmetric.mix_hash(remote_ephemeral)
        elif self.message_index == 1:
            remote_ephemeral = self._take(view, DH_LEN)
            view = view[DH_LEN:]
            self._remote_ephemeral = _x25519_public(remote_ephemeral)
            symmetric.mix_hash(remote_ephemeral)
            symmetric.mix_key(_dh(self._ephemeral, self._remote_ephemeral))
            remote_static = symmetric.decrypt_and_hash(self._take(view, DH_LEN + TAG_LEN))
            view = view[DH_LEN + TAG_LEN :]
            self.remote_static = remote_static
            symmetric.mix_key(_dh(self._ephemeral, _x25519_public(remote_static)))
        else:
            remote_static = symmetric.decrypt_and_hash(self._take(view, DH_LEN + TAG_LEN))
            view = view[DH_LEN + TAG_LEN :]
            self.remote_static = remote_static
            symmetric.mix_key(_dh(self._ephemeral, _x25519_public(remote_static)))
        payload = symmetric.decrypt_and_hash(bytes(view))
        self.message_index += 1
        return payload

    @staticmethod
    def _take(view: memoryview, length: int) -> bytes:
        if len(view) < length:
            raise NoiseError("handshake message too short")
        return bytes(view[:length])

    def split(self) -> tuple[CipherState, CipherState]:
        """The (send, receive) cipher states once the handshake is complete."""
        if not self.complete:
            raise NoiseError("handshake not complete")
        first, second = self._symmetric.split()
        return (first, second) if self.initiator else (second, first)


class Identity(Protocol):
    """A libp2p identity able to sign the Noise static key."""

    def public_key_bytes(self) -> bytes:
        """The serialized libp2p ``PublicKey`` protobuf."""
        ...

    def sign(self, data: bytes) -> bytes:
        """Sign ``data`` with the identity key."""
        ...


VerifyIdentity = Callable[[bytes, bytes, bytes], bytes]
"""``(public_key_bytes, data, signature) -> peer id bytes``; raises if invalid."""


def _frame(message: bytes) -> bytes:
    return _LENGTH.pack(len(message)) + message


def handshake_payload(
    identity: Identity, static_public: bytes, stream_muxers: Sequence[str] = ()
) -> bytes:
    """The serialized ``NoiseHandshakePayload`` binding ``static_public`` to ``identity``."""
    signature = identity.sign(SIGNATURE_PREFIX + static_public)
    payload = NoiseHandshakePayload(
        identity_key=identity.public_key_bytes(), identity_sig=signature
    )
    if stream_muxers:
        payload.extensions.stream_muxers.extend(stream_muxers)
    return payload.SerializeToString()


class StaticKey:
    """A static Noise key pair with the signed handshake payload that proves it ours.

    Made once and used for every handshake of a host: the spec lets a peer keep its
    static key for the life of its Noise module (or longer); each handshake still makes
    its own ephemeral key, so every connection's keys are its own. Saves a key
    generation and an identity signature per connection.
    """

    __slots__ = ("key", "payload", "public")

    def __init__(
        self,
        identity: Identity,
        stream_muxers: Sequence[str] = (),
        key: X25519PrivateKey | None = None,
    ) -> None:
        self.key = key if key is not None else X25519PrivateKey.generate()
        self.public = _public_bytes(self.key)
        self.payload = handshake_payload(identity, self.public, stream_muxers)


class NoiseSession:
    """The libp2p Noise secure channel for one connection.

    During the handshake, feed received bytes to `receive_handshake`, which
    returns the bytes to send. The initiator sends `start()` first. Once
    `complete` is True, `remote_peer_id` and `remote_public_key` identify the
    peer; bytes that arrived with the last handshake message stay buffered and
    come out of the next `decrypt` call (call ``decrypt(b"")`` at once).
    """

    def __init__(
        self,
        *,
        initiator: bool,
        identity: Identity,
        verify_identity: VerifyIdentity,
        expected_peer_id: bytes | None = None,
        stream_muxers: Sequence[str] = (),
        static_key: X25519PrivateKey | None = None,
        ephemeral_key: X25519PrivateKey | None = None,
        prologue: bytes = b"",
        static: StaticKey | None = None,
    ) -> None:
        """``static``: the host's static key and signed payload, made beforehand (it says
        which stream muxers we offer: ``static_key`` and ``stream_muxers`` are then
        not given); without it, ``static_key`` (a new one if None) is signed here."""
        if expected_peer_id is not None and not initiator:
            raise ValueError("only the dialler knows the peer id it expects")
        if static is not None and (static_key is not None or stream_muxers):
            raise ValueError("static already holds the static key and the stream muxers")
        if static is not None:
            self._handshake = XXHandshake(
                initiator=initiator,
                static_key=static.key,
                prologue=prologue,
                ephemeral_key=ephemeral_key,
                static_public=static.public,
            )
        else:
            self._handshake = XXHandshake(
                initiator=initiator,
                static_key=static_key if static_key is not None else X25519PrivateKey.generate(),
                prologue=prologue,
                ephemeral_key=ephemeral_key,
            )
        self._payload = static.payload if static is not None else None
        self._identity = identity
        self._verify_identity = verify_identity
        self._expected_peer_id = expected_peer_id
        self._stream_muxers = tuple(stream_muxers)
        self._buffer = bytearray()
        self._send: CipherState | None = None
        self._receive: CipherState | None = None
        self._started = False
        self.remote_peer_id: bytes | None = None
        self.remote_public_key: bytes | None = None
        self.remote_stream_muxers: tuple[str, ...] = ()

    @property
    def initiator(self) -> bool:
        return self._handshake.initiator

    @property
    def complete(self) -> bool:
        """True once both sides are authenticated and transport keys exist."""
        return self._send is not None

    def start(self) -> bytes:
        """The initiator's first handshake frame (empty for a responder)."""
        if self._started:
            raise NoiseError("handshake already started")
        self._started = True
        if not self.initiator:
            return b""
        return _frame(self._handshake.write_message(b""))

    def receive_handshake(self, data: bytes) -> bytes:
        """Process handshake bytes; return the handshake bytes to send."""
        if self.initiator and not self._started:
            raise NoiseError("start() must be called before receiving")
        self._started = True
        self._buffer += data
        out = bytearray()
        while not self.complete:
            message = self._next_frame()
            if message is None:
                break
            out += self._handle_handshake_message(message)
        return bytes(out)

    def _handle_handshake_message(self, message: bytes) -> bytes:
        if self.complete:
            raise NoiseError("handshake already complete")
        handshake = self._handshake
        payload = handshake.read_message(message)
        if handshake.message_index == 1:  # responder read "-> e"; its payload is ignored
            return _frame(handshake.write_message(self._local_payload()))
        self._authenticate(payload)
        if handshake.message_index == 2:  # initiator read the responder's identity
            reply = _frame(handshake.write_message(self._local_payload()))
        else:
            reply = b""
        self._send, self._receive = handshake.split()
        return reply

    def _local_payload(self) -> bytes:
        if self._payload is None:
            self._payload = handshake_payload(
                self._identity, self._handshake.static_public_key, self._stream_muxers
            )
        return self._payload

    def _authenticate(self, payload_bytes: bytes) -> None:
        payload = NoiseHandshakePayload()
        try:
            payload.ParseFromString(payload_bytes)
        except DecodeError as exc:
            raise NoiseError("malformed handshake payload") from exc
        if not payload.HasField("identity_key") or not payload.HasField("identity_sig"):
            raise NoiseError("handshake payload lacks the identity key or signature")
        remote_static = self._handshake.remote_static
        assert remote_static is not None
        try:
            peer_id = self._verify_identity(
                payload.identity_key, SIGNATURE_PREFIX + remote_static, payload.identity_sig
            )
        except Exception as exc:
            raise NoiseError("the peer's identity signature does not verify") from exc
        if self._expected_peer_id is not None and peer_id != self._expected_peer_id:
            raise NoiseError("the peer is not the one we dialled")
        self.remote_peer_id = peer_id
        self.remote_public_key = payload.identity_key
        if payload.HasField("extensions"):
            self.remote_stream_muxers = tuple(payload.extensions.stream_muxers)

    def _next_frame(self) -> bytes | None:
        buffer = self._buffer
        if len(buffer) < 2:
            return None
        end = 2 + int.from_bytes(buffer[:2], "big")
        if len(buffer) < end:
            return None
        message = bytes(buffer[2:end])
        del buffer[:end]
        return message

    def encrypt(self, plaintext: bytes) -> bytes:
        """Encrypt into as many frames as needed (none for empty input)."""
        return b"".join(self.encrypt_frames(plaintext))

    def encrypt_frames(self, plaintext: bytes) -> list[bytes]:
        """`encrypt`, as the pieces to write in order (length, ciphertext, length, ...)."""
        send = self._send
        if send is None:
            raise NoiseError("handshake not complete")
        size = len(plaintext)
        if not size:
            return []
        aead = send._aead
        assert aead is not None
        nonce = send.nonce
        if size <= MAX_PLAINTEXT_LEN:
            if nonce >= _MAX_NONCE:
                raise NoiseError("nonce space exhausted")
            send.nonce = nonce + 1
            return [_LENGTH.pack(size + TAG_LEN), aead.encrypt(_NONCE.pack(nonce), plaintext, None)]
        count = -(-size // MAX_PLAINTEXT_LEN)
        if nonce + count > _MAX_NONCE:
            raise NoiseError("nonce space exhausted")
        send.nonce = nonce + count
        view = memoryview(plaintext)
        pieces: list[bytes] = []
        for start in range(0, size, MAX_PLAINTEXT_LEN):
            chunk = view[start : start + MAX_PLAINTEXT_LEN]
            pieces.append(_LENGTH.pack(len(chunk) + TAG_LEN))
            pieces.append(aead.encrypt(_NONCE.pack(nonce), chunk, None))
            nonce += 1
        return pieces

    def decrypt(self, data: bytes) -> bytes:
        """Feed received transport bytes; return the plaintext of whole frames."""
        return b"".join(self.decrypt_frames(data))

    def decrypt_frames(self, data: bytes) -> list[bytes]:
        """`decrypt`, as the plaintext of each whole frame."""
        if self._receive is None:
            raise NoiseError("handshake not complete")
        buffer = self._buffer
        if not buffer:  # whole frames are read in place; only a split frame is copied
            view = memoryview(data)
            chunks, end = self._open_frames(view)
            if end < len(view):
                buffer += view[end:]
            return chunks
        buffer += data
        view = memoryview(buffer)
        try:
            chunks, end = self._open_frames(view)
        finally:
            view.release()
        if end:
            del buffer[:end]
        return chunks

    def _open_frames(self, view: memoryview) -> tuple[list[bytes], int]:
        """Decrypt the whole frames at the start of ``view``; return them and where they end."""
        receive = self._receive
        assert receive is not None
        aead = receive._aead
        assert aead is not None
        nonce = receive.nonce
        chunks: list[bytes] = []
        start = 0
        available = len(view)
        try:
            while available - start >= 2:
                end = start + 2 + (view[start] << 8 | view[start + 1])
                if end > available:
                    break
                if end - start - 2 < TAG_LEN:
                    raise NoiseError("ciphertext shorter than its tag")
                if nonce >= _MAX_NONCE:
                    raise NoiseError("nonce space exhausted")
                try:
                    chunks.append(aead.decrypt(_NONCE.pack(nonce), view[start + 2 : end], None))
                except InvalidTag as exc:
                    raise NoiseError("decryption failed") from exc
                nonce += 1  # only a successful decryption consumes the nonce
                start = end
        finally:
            receive.nonce = nonce
        return chunks, start
