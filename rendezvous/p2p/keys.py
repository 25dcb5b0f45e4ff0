"""libp2p identity keys (peer-ids/peer-ids.md): verify all four types, sign with Ed25519.

`PublicKey` parses the deterministic ``PublicKey`` protobuf of RSA, Ed25519,
secp256k1 and ECDSA keys and verifies their signatures; `PrivateKey` is an
Ed25519 identity (the libp2p default) that signs and round-trips the
``PrivateKey`` protobuf. A peer id is the identity multihash of the serialized
public key when it is at most 42 bytes long, else its sha2-256 multihash.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import hashlib
import os
import secrets
from typing import Final, cast

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from google.protobuf.message import DecodeError

from rendezvous.pb import crypto_pb2
from rendezvous.peerid import MAX_INLINE_KEY_LENGTH, peer_id_to_text

__all__ = [
    "MAX_PUBLIC_KEY_BYTES",
    "IdentityFileError",
    "InvalidKeyError",
    "KeyType",
    "PrivateKey",
    "PublicKey",
    "SignatureError",
    "load_or_create_identity",
    "peer_id_from_public_key_bytes",
    "verify_identity",
]

MAX_PUBLIC_KEY_BYTES: Final = 2048
"""Larger serialized public keys are refused unparsed (an 8192-bit RSA key is ~1070)."""
MAX_IDENTITY_FILE_BYTES: Final = 16 * 1024
MIN_RSA_BITS: Final = 2048
MAX_RSA_BITS: Final = 8192

_ED25519_KEY_SIZE: Final = 32
_ED25519_SIGNATURE_SIZE: Final = 64
_ED25519_PREFIX: Final = b"\x08\x01\x12\x20"
"""The deterministic ``PublicKey`` protobuf of an Ed25519 key, before its 32 bytes:
Type = 1 (08 01), Data of 32 bytes (12 20)."""
_ED25519_SERIALIZED_SIZE: Final = len(_ED25519_PREFIX) + _ED25519_KEY_SIZE
_SECP256K1_KEY_SIZE: Final = 33
_ECDSA_CURVES: Final = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
_NO_HARD_LINKS: Final = frozenset((errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS))


class KeyType(enum.IntEnum):
    """The libp2p ``KeyType`` enum."""

    RSA = 0
    ED25519 = 1
    SECP256K1 = 2
    ECDSA = 3


class InvalidKeyError(ValueError):
    """The bytes are not a key this implementation accepts."""


class SignatureError(ValueError):
    """A signature does not verify."""


class IdentityFileError(Exception):
    """The identity file cannot be read, written or parsed."""


_VerifyingKey = Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey


class PublicKey:
    """A libp2p public key of any of the four types, able to verify signatures."""

    __slots__ = ("_key", "_serialized", "data", "key_type")

    def __init__(self, key_type: KeyType | int, data: bytes) -> None:
        """Load the raw ``Data`` of a key of ``key_type``; raises `InvalidKeyError`."""
        try:
            self.key_type = KeyType(key_type)
        except ValueError:
            raise InvalidKeyError(f"unknown key type {key_type}") from None
        self.data = bytes(data)
        self._key = _load_public(self.key_type, self.data)
        if self.key_type is KeyType.ED25519:  # the usual key: its encoding is known
            self._serialized = _ED25519_PREFIX + self.data
        else:
            self._serialized = crypto_pb2.PublicKey(
                Type=_pb_key_type(self.key_type), Data=self.data
            ).SerializeToString(deterministic=True)

    @classmethod
    def from_bytes(cls, serialized: bytes) -> PublicKey:
        """Parse a deterministically encoded ``PublicKey`` protobuf."""
        if len(serialized) == _ED25519_SERIALIZED_SIZE and serialized[:4] == _ED25519_PREFIX:
            return cls(KeyType.ED25519, serialized[4:])  # no protobuf parsing needed
        if len(serialized) > MAX_PUBLIC_KEY_BYTES:
            raise InvalidKeyError(f"public key longer than {MAX_PUBLIC_KEY_BYTES} bytes")
        message = crypto_pb2.PublicKey()
        try:
            message.ParseFromString(serialized)
        except DecodeError:
            raise InvalidKeyError("malformed PublicKey protobuf") from None
        key = cls(message.Type, message.Data)
        if key.to_bytes() != serialized:
            raise InvalidKeyError("PublicKey protobuf is not deterministically encoded")
        return key

    def to_bytes(self) -> bytes:
        """The deterministic ``PublicKey`` protobuf."""
        return self._serialized

    def verify(self, data: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's signature of ``data``."""
        key = self._key
        try:
            if isinstance(key, Ed25519PublicKey):
                if len(signature) != _ED25519_SIGNATURE_SIZE:
                    return False
                key.verify(signature, data)
            elif isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
            else:
                key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError):
            return False
        return True

    def peer_id(self) -> bytes:
        """The peer id (multihash bytes) of this key."""
        return peer_id_from_public_key_bytes(self._serialized)

    def peer_id_text(self) -> str:
        """The peer id in its legacy base58btc text form."""
        return peer_id_to_text(self.peer_id())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PublicKey):
            return NotImplemented
        return self._serialized == other._serialized

    def __hash__(self) -> int:
        return hash(self._serialized)

    def __repr__(self) -> str:
        return f"<PublicKey {self.key_type.name} {self.peer_id_text()}>"


class PrivateKey:
    """An Ed25519 libp2p identity: signs, and serializes as ``PrivateKey`` protobuf."""

    __slots__ = ("_key", "_public")

    key_type: Final = KeyType.ED25519

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self._public = PublicKey(KeyType.ED25519, raw)

    @classmethod
    def generate(cls) -> PrivateKey:
        """A new random identity."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> PrivateKey:
        """The identity of a 32-byte Ed25519 seed."""
        if len(seed) != _ED25519_KEY_SIZE:
            raise InvalidKeyError("an Ed25519 seed is 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_bytes(cls, serialized: bytes) -> PrivateKey:
        """Parse a ``PrivateKey`` protobuf holding an Ed25519 key.

        ``Data`` is seed || public key (64 bytes), or the legacy seed || public
        || public (96 bytes); the public key must match the seed.
        """
        message = crypto_pb2.PrivateKey()
        try:
            message.ParseFromString(serialized)
        except DecodeError:
            raise InvalidKeyError("malformed PrivateKey protobuf") from None
        if int(message.Type) != KeyType.ED25519:
            raise InvalidKeyError(f"unsupported private key type {message.Type}: only Ed25519")
        data = message.Data
        size = _ED25519_KEY_SIZE
        if len(data) == 3 * size and data[size : 2 * size] != data[2 * size :]:
            raise InvalidKeyError("legacy Ed25519 private key with two different public keys")
        if len(data) not in (2 * size, 3 * size):
            raise InvalidKeyError(f"Ed25519 private key data of {len(data)} bytes")
        key = cls.from_seed(data[:size])
        if key._public.data != data[size : 2 * size]:
            raise InvalidKeyError("Ed25519 private key does not match its public key")
        return key

    def to_bytes(self) -> bytes:
        """The ``PrivateKey`` protobuf: Ed25519 seed || public key."""
        seed = self._key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return crypto_pb2.PrivateKey(
            Type=_pb_key_type(KeyType.ED25519), Data=seed + self._public.data
        ).SerializeToString(deterministic=True)

    def sign(self, data: bytes) -> bytes:
        """The Ed25519 signature of ``data``."""
        return self._key.sign(data)

    def public_key(self) -> PublicKey:
        """The matching public key."""
        return self._public

    def public_key_bytes(self) -> bytes:
        """The serialized ``PublicKey`` protobuf of this identity."""
        return self._public.to_bytes()

    def peer_id(self) -> bytes:
        """The peer id (multihash bytes) of this identity."""
        return self._public.peer_id()

    def peer_id_text(self) -> str:
        """The peer id in its legacy base58btc text form (``12D3KooW…``)."""
        return self._public.peer_id_text()

    def __repr__(self) -> str:
        return f"<PrivateKey Ed25519 {self.peer_id_text()}>"


def peer_id_from_public_key_bytes(serialized: bytes) -> bytes:
    """The peer id multihash of a serialized ``PublicKey`` (not validated here)."""
    if len(serialized) <= MAX_INLINE_KEY_LENGTH:
        return b"\x00" + bytes((len(serialized),)) + serialized
    return b"\x12\x20" + hashlib.sha256(serialized).digest()


def verify_identity(public_key_bytes: bytes, data: bytes, signature: bytes) -> bytes:
    """Verify a signature by a serialized public key and return its peer id.

    Raises `InvalidKeyError` for a bad key and `SignatureError` for a bad signature.
    """
    key = PublicKey.from_bytes(public_key_bytes)
    if not key.verify(data, signature):
        raise SignatureError("signature does not verify")
    return key.peer_id()


def load_or_create_identity(path: str | os.PathLike[str]) -> PrivateKey:
    """Load the Ed25519 identity at ``path``, creating it (mode 0600) if missing.

    Creation writes a temporary file next to ``path`` (``O_EXCL``, 0600) and
    hard-links it into place, so a concurrent creator's key is never replaced:
    whichever file is in place is loaded and returned. The mode of an existing
    file is not checked (operators often use 0400). Raises `IdentityFileError`
    when the file cannot be read or written, or does not hold an Ed25519 key.
    """
    path = os.fspath(path)
    try:
        return _load_identity(path)
    except FileNotFoundError:
        pass
    except OSError as error:
        raise IdentityFileError(f"cannot read identity {path!r}: {error}") from error
    try:
        _create_identity(path, PrivateKey.generate())
        return _load_identity(path)
    except OSError as error:
        raise IdentityFileError(f"cannot create identity {path!r}: {error}") from error


def _load_identity(path: str) -> PrivateKey:
    with open(path, "rb") as identity_file:
        data = identity_file.read(MAX_IDENTITY_FILE_BYTES + 1)
    if len(data) > MAX_IDENTITY_FILE_BYTES:
        raise IdentityFileError(f"identity {path!r} is larger than {MAX_IDENTITY_FILE_BYTES} B")
    try:
        return PrivateKey.from_bytes(data)
    except InvalidKeyError as error:
        raise IdentityFileError(f"identity {path!r} is not a libp2p key: {error}") from None


def _create_identity(path: str, key: PrivateKey) -> None:
    directory = os.path.dirname(path) or "."
    temporary = f"{path}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.write(descriptor, key.to_bytes())
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        try:
            os.link(temporary, path)
        except FileExistsError:
            return  # another process created it first: the caller loads theirs
        except OSError as error:
            if error.errno not in _NO_HARD_LINKS:
                raise
            os.rename(temporary, path)  # no hard links on this file system
        _fsync_directory(directory)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def _fsync_directory(directory: str) -> None:
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _pb_key_type(key_type: KeyType) -> crypto_pb2.KeyType:
    return cast("crypto_pb2.KeyType", int(key_type))


def _load_public(key_type: KeyType, data: bytes) -> _VerifyingKey:
    if key_type is KeyType.ED25519:
        if len(data) != _ED25519_KEY_SIZE:
            raise InvalidKeyError(f"Ed25519 public key of {len(data)} bytes")
        return Ed25519PublicKey.from_public_bytes(data)
    if key_type is KeyType.SECP256K1:
        if len(data) != _SECP256K1_KEY_SIZE or data[0] not in (2, 3):
            raise InvalidKeyError("secp256k1 public key must be 33 bytes, compressed")
        try:
            return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), data)
        except ValueError:
            raise InvalidKeyError("secp256k1 public key is not on the curve") from None
    try:
        key = serialization.load_der_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise InvalidKeyError(f"{key_type.name} public key is not DER PKIX") from None
    if key_type is KeyType.RSA:
        if not isinstance(key, rsa.RSAPublicKey):
            raise InvalidKeyError("RSA key type holds a non-RSA key")
        if not MIN_RSA_BITS <= key.key_size <= MAX_RSA_BITS:
            raise InvalidKeyError(f"RSA key of {key.key_size} bits")
        verifying: _VerifyingKey = key
    else:
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(
            key.curve, _ECDSA_CURVES
        ):
            raise InvalidKeyError("ECDSA key type holds a key not on P-256, P-384 or P-521")
        verifying = key
    canonical = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if canonical != data:
        raise InvalidKeyError(f"{key_type.name} public key is not canonical DER PKIX")
    return verifying
