"""Fuzz signed envelopes (RFC 0002), peer records (RFC 0003), relay vouchers and the
libp2p public keys inside them.

``data[0] % 5`` picks the parser: 0, `open_peer_record` on raw bytes (what a REGISTER
carries); 1, the same on an envelope honestly signed around fuzzed payload bytes (so
the record parser behind the signature is reached), in either the go/js or the rust
format; 2, `open_voucher` on raw bytes; 3, a voucher honestly signed around fuzzed
bytes; 4, `verify_identity` on a fuzzed public key and signature (Noise's identity
check). Only `InvalidEnvelope`, `InvalidKeyError` and `SignatureError` may escape, and
whatever opens was signed by the key it names.
"""

from __future__ import annotations

from _harness import instrumented, main

with instrumented("rendezvous"):
    from rendezvous.p2p.envelope import (
        PEER_RECORD_DOMAIN,
        PEER_RECORD_PAYLOAD_TYPE,
        ROUTING_STATE_DOMAIN,
        ROUTING_STATE_PAYLOAD_TYPE,
        InvalidEnvelope,
        PeerRecord,
        open_peer_record,
        seal,
        seal_peer_record,
    )
    from rendezvous.p2p.keys import InvalidKeyError, PrivateKey, SignatureError, verify_identity
    from rendezvous.peerid import validate_peer_id
    from rendezvous.relay.voucher import (
        VOUCHER_DOMAIN,
        VOUCHER_PAYLOAD_TYPE,
        Voucher,
        open_voucher,
        seal_voucher,
    )

KEY = PrivateKey.from_seed(bytes(range(1, 33)))
PEER_ID = KEY.peer_id()
ADDR = bytes.fromhex("047f000001060fa1")


def _record(data: bytes) -> None:
    record, envelope = open_peer_record(data)
    assert record.peer_id == envelope.peer_id(), "record of another peer opened"
    validate_peer_id(record.peer_id)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    mode, rest = data[0] % 5, data[1:]
    try:
        if mode == 0:
            _record(rest)
        elif mode == 1:
            if data[0] & 0x80:
                _record(seal(KEY, ROUTING_STATE_DOMAIN, ROUTING_STATE_PAYLOAD_TYPE, rest))
            else:
                _record(seal(KEY, PEER_RECORD_DOMAIN, PEER_RECORD_PAYLOAD_TYPE, rest))
        elif mode == 2:
            open_voucher(rest)
        elif mode == 3:
            voucher = open_voucher(seal(KEY, VOUCHER_DOMAIN, VOUCHER_PAYLOAD_TYPE, rest))
            assert voucher.relay == PEER_ID, "voucher of another relay opened"
        else:
            size = rest[0] if rest else 0
            key, signature = rest[1 : 1 + size], rest[1 + size :]
            verify_identity(key, b"noise-libp2p-static-key:" + bytes(32), signature)
    except (InvalidEnvelope, InvalidKeyError, SignatureError):
        pass


def _other_keys() -> list[bytes]:
    """Serialized secp256k1, ECDSA and RSA public keys (their parsers are DER and points)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from rendezvous.pb import crypto_pb2

    secp = ec.derive_private_key(7, ec.SECP256K1()).public_key()
    p256 = ec.derive_private_key(7, ec.SECP256R1()).public_key()
    rsa_key = rsa.generate_private_key(65537, 1024).public_key()
    der = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    keys = [
        (2, secp.public_bytes(Encoding.X962, PublicFormat.CompressedPoint)),
        (3, p256.public_bytes(*der)),
        (0, rsa_key.public_bytes(*der)),
    ]
    return [crypto_pb2.PublicKey(Type=t, Data=d).SerializeToString() for t, d in keys]  # type: ignore[arg-type]


def seeds() -> list[bytes]:
    record = PeerRecord(PEER_ID, 3, (ADDR,))
    voucher = Voucher(PEER_ID, PrivateKey.from_seed(bytes(32)).peer_id(), 1700000000)
    key = KEY.public_key_bytes()
    return [
        b"\x00" + seal_peer_record(KEY, record),
        b"\x01" + record.encode(),
        b"\x81" + record.encode(),
        b"\x02" + seal_voucher(KEY, voucher),
        b"\x03" + voucher.encode(),
        b"\x04" + bytes([len(key)]) + key + KEY.sign(b"noise-libp2p-static-key:" + bytes(32)),
    ] + [b"\x04" + bytes([len(other) % 256]) + other + bytes(64) for other in _other_keys()]


if __name__ == "__main__":
    main(test_one_input, seeds)
