"""Tests for rendezvous.p2p.keys."""

from __future__ import annotations

import contextlib
import errno
import os
import stat

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from rendezvous.p2p.keys import (
    MAX_PUBLIC_KEY_BYTES,
    IdentityFileError,
    InvalidKeyError,
    KeyType,
    PrivateKey,
    PublicKey,
    SignatureError,
    load_or_create_identity,
    peer_id_from_public_key_bytes,
    verify_identity,
)
from rendezvous.peerid import parse_peer_id, validate_peer_id

# peer-ids.md test vectors (hex of the PublicKey / PrivateKey protobufs).
ECDSA_PRIVATE = bytes.fromhex(
    "08031279307702010104203E5B1FE9712E6C314942A750BD67485DE3C1EFE85B1BFB520AE8F9AE3DFA4A4CA00A"
    "06082A8648CE3D030107A14403420004DE3D300FA36AE0E8F5D530899D83ABAB44ABF3161F162A4BC901D8E6EC"
    "DA020E8B6D5F8DA30525E71D6851510C098E5C47C646A597FB4DCEC034E9F77C409E62"
)
ECDSA_PUBLIC = bytes.fromhex(
    "0803125b3059301306072a8648ce3d020106082a8648ce3d03010703420004de3d300fa36ae0e8f5d530899d83"
    "abab44abf3161f162a4bc901d8e6ecda020e8b6d5f8da30525e71d6851510c098e5c47c646a597fb4dcec034e9"
    "f77c409e62"
)
ED25519_PRIVATE = bytes.fromhex(
    "080112407e0830617c4a7de83925dfb2694556b12936c477a0e1feb2e148ec9da60fee7d1ed1e8fae2c4a144b8"
    "be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e"
)
ED25519_PUBLIC = bytes.fromhex(
    "080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e"
)
SECP256K1_PRIVATE = bytes.fromhex(
    "0802122053DADF1D5A164D6B4ACDB15E24AA4C5B1D3461BDBD42ABEDB0A4404D56CED8FB"
)
SECP256K1_PUBLIC = bytes.fromhex(
    "08021221037777e994e452c21604f91de093ce415f5432f701dd8cd1a7a6fea0e630bfca99"
)
RSA_PRIVATE = bytes.fromhex(
    "080012ae123082092a0201000282020100e1beab071d08200bde24eef00d049449b07770ff9910257b2d7d5d"
    "da242ce8f0e2f12e1af4b32d9efd2c090f66b0f29986dbb645dae9880089704a94e5066d594162ae6ee8892e"
    "6ec70701db0a6c445c04778eb3de1293aa1a23c3825b85c6620a2bc3f82f9b0c309bc0ab3aeb1873282bebd3"
    "da03c33e76c21e9beb172fd44c9e43be32e2c99827033cf8d0f0c606f4579326c930eb4e854395ad94125654"
    "2c793902185153c474bed109d6ff5141ebf9cd256cf58893a37f83729f97e7cb435ec679d2e33901d27bb35a"
    "a0d7e20561da08885ef0abbf8e2fb48d6a5487047a9ecb1ad41fa7ed84f6e3e8ecd5d98b3982d2a901b44549"
    "91766da295ab78822add5612a2df83bcee814cf50973e80d7ef38111b1bd87da2ae92438a2c8cbcc70b31ee3"
    "19939a3b9c761dbc13b5c086d6b64bf7ae7dacc14622375d92a8ff9af7eb962162bbddebf90acb32adb5e4e4"
    "029f1c96019949ecfbfeffd7ac1e3fbcc6b6168c34be3d5a2e5999fcbb39bba7adbca78eab09b9bc39f7fa4b"
    "93411f4cc175e70c0a083e96bfaefb04a9580b4753c1738a6a760ae1afd851a1a4bdad231cf56e9284d83248"
    "3df215a46c1c21bdf0c6cfe951c18f1ee4078c79c13d63edb6e14feaeffabc90ad317e4875fe648101b08640"
    "97e998f0ca3025ef9638cd2b0caecd3770ab54a1d9c6ca959b0f5dcbc90caeefc4135baca6fd475224269bbe"
    "1b02030100010282020100a472ffa858efd8588ce59ee264b957452f3673acdf5631d7bfd5ba0ef59779c231"
    "b0bc838a8b14cae367b6d9ef572c03c7883b0a3c652f5c24c316b1ccfd979f13d0cd7da20c7d34d9ec32dfdc"
    "81ee7292167e706d705efde5b8f3edfcba41409e642f8897357df5d320d21c43b33600a7ae4e505db957c1af"
    "bc189d73f0b5d972d9aaaeeb232ca20eebd5de6fe7f29d01470354413cc9a0af1154b7af7c1029adcd67c74b"
    "4798afeb69e09f2cb387305e73a1b5f450202d54f0ef096fe1bde340219a1194d1ac9026e90b366cce0c59b2"
    "39d10e4888f52ca1780824d39ae01a6b9f4dd6059191a7f12b2a3d8db3c2868cd4e5a5862b8b625a4197d52c"
    "6ac77710116ebd3ced81c4d91ad5fdfbed68312ebce7eea45c1833ca3acf7da2052820eacf5c6b07d086dabe"
    "b893391c71417fd8a4b1829ae2cf60d1749d0e25da19530d889461c21da3492a8dc6ccac7de83ac1c2185262"
    "c7473c8cc42f547cc9864b02a8073b6aa54a037d8c0de3914784e6205e83d97918b944f11b877b12084c0dd1"
    "d36592f8a4f8b8da5bb404c3d2c079b22b6ceabfbcb637c0dbe0201f0909d533f8bf308ada47aee641a012a4"
    "94d31b54c974e58b87f140258258bb82f31692659db7aa07e17a5b2a0832c24e122d3a8babcc9ee74cbb07d3"
    "058bb85b15f6f6b2674aba9fd34367be9782d444335fbed31e3c4086c652597c27104938b47fa10282010100"
    "e9fdf843c1550070ca711cb8ff28411466198f0e212511c3186623890c0071bf6561219682fe7dbdfd81176e"
    "ba7c4faba21614a20721e0fcd63768e6d925688ecc90992059ac89256e0524de90bf3d8a052ce6a9f6adafa7"
    "12f3107a016e20c80255c9e37d8206d1bc327e06e66eb24288da866b55904fd8b59e6b2ab31bc5eab47e5970"
    "93c63fab7872102d57b4c589c66077f534a61f5f65127459a33c91f6db61fc431b1ae90be92b4149a3255291"
    "baf94304e3efb77b1107b5a3bda911359c40a53c347ff9100baf8f36dc5cd991066b5bdc28b39ed644f404af"
    "e9213f4d31c9d4e40f3a5f5e3c39bebeb244e84137544e1a1839c1c8aaebf0c78a7fad590282010100f6fa1f"
    "1e6b803742d5490b7441152f500970f46feb0b73a6e4baba2aaf3c0e245ed852fc31d86a8e46eb48e90fac40"
    "9989dfee45238f97e8f1f8e83a136488c1b04b8a7fb695f37b8616307ff8a8d63e8cfa0b4fb9b9167ffaebab"
    "f111aa5a4344afbabd002ae8961c38c02da76a9149abdde93eb389eb32595c29ba30d8283a7885218a5a9d33"
    "f7f01dbdf85f3aad016c071395491338ec318d39220e1c7bd69d3d6b520a13a30d745c102b827ad9984b0dd6"
    "aed73916ffa82a06c1c111e7047dcd2668f988a0570a71474992eecf416e068f029ec323d5d635fd24694fc9"
    "bf96973c255d26c772a95bf8b7f876547a5beabf86f06cd21b67994f944e7a5493028201010095b02fd30069"
    "e547426a8bea58e8a2816f33688dac6c6f6974415af8402244a22133baedf34ce499d7036f3f19b38eb00897"
    "c18949b0c5a25953c71aeeccfc8f6594173157cc854bd98f16dffe8f28ca13b77eb43a2730585c49fc3f608c"
    "d811bb54b03b84bddaa8ef910988567f783012266199667a546a18fd88271fbf63a45ae4fd4884706da8befb"
    "9117c0a4d73de5172f8640b1091ed8a4aea3ed4641463f5ff6a5e3401ad7d0c92811f87956d1fd5f9a1d15c7"
    "f3839a08698d9f35f9d966e5000f7cb2655d7b6c4adcd8a9d950ea5f61bb7c9a33c17508f9baa313eecfee4a"
    "e493249ebe05a5d7770bbd3551b2eeb752e3649e0636de08e3d672e66cb90282010100ad93e4c31072b063fc"
    "5ab5fe22afacece775c795d0efdf7c704cfc027bde0d626a7646fc905bb5a80117e3ca49059af14e0160089f"
    "9190065be9bfecf12c3b2145b211c8e89e42dd91c38e9aa23ca73697063564f6f6aa6590088a738722df0560"
    "04d18d7bccac62b3bafef6172fc2a4b071ea37f31eff7a076bcab7dd144e51a9da8754219352aef2c7347897"
    "1539fa41de4759285ea626fa3c72e7085be47d554d915bbb5149cb6ef835351f231043049cd941506a034bf2"
    "f8767f3e1e42ead92f91cb3d75549b57ef7d56ac39c2d80d67f6a2b4ca192974bfc5060e2dd1712179710021"
    "93dba12e7e4133ab201f07500a90495a38610279b13a48d54f0c99028201003e3a1ac0c2b67d54ed5c4bbe04"
    "a7db99103659d33a4f9d35809e1f60c282e5988dddc964527f3b05e6cc890eab3dcb571d66debf3a5527704c"
    "87264b3954d7265f4e8d2c637dd89b491b9cf23f264801f804b90454d65af0c4c830d1aef76f597ef61b26ca"
    "857ecce9cb78d4f6c2218c00d2975d46c2b013fbf59b750c3b92d8d3ed9e6d1fd0ef1ec091a5c286a3fe2dea"
    "d292f40f380065731e2079ebb9f2a7ef2c415ecbb488da98f3a12609ca1b6ec8c734032c8bd513292ff842c3"
    "75d4acd1b02dfb206b24cd815f8e2f9d4af8e7dea0370b19c1b23cc531d78b40e06e1119ee2e08f6f31c6e2e"
    "8444c568d13c5d451a291ae0c9f1d4f27d23b3a00d60ad"
)
RSA_PUBLIC = bytes.fromhex(
    "080012a60430820222300d06092a864886f70d01010105000382020f003082020a0282020100e1beab071d08"
    "200bde24eef00d049449b07770ff9910257b2d7d5dda242ce8f0e2f12e1af4b32d9efd2c090f66b0f29986db"
    "b645dae9880089704a94e5066d594162ae6ee8892e6ec70701db0a6c445c04778eb3de1293aa1a23c3825b85"
    "c6620a2bc3f82f9b0c309bc0ab3aeb1873282bebd3da03c33e76c21e9beb172fd44c9e43be32e2c99827033c"
    "f8d0f0c606f4579326c930eb4e854395ad941256542c793902185153c474bed109d6ff5141ebf9cd256cf588"
    "93a37f83729f97e7cb435ec679d2e33901d27bb35aa0d7e20561da08885ef0abbf8e2fb48d6a5487047a9ecb"
    "1ad41fa7ed84f6e3e8ecd5d98b3982d2a901b4454991766da295ab78822add5612a2df83bcee814cf50973e8"
    "0d7ef38111b1bd87da2ae92438a2c8cbcc70b31ee319939a3b9c761dbc13b5c086d6b64bf7ae7dacc1462237"
    "5d92a8ff9af7eb962162bbddebf90acb32adb5e4e4029f1c96019949ecfbfeffd7ac1e3fbcc6b6168c34be3d"
    "5a2e5999fcbb39bba7adbca78eab09b9bc39f7fa4b93411f4cc175e70c0a083e96bfaefb04a9580b4753c173"
    "8a6a760ae1afd851a1a4bdad231cf56e9284d832483df215a46c1c21bdf0c6cfe951c18f1ee4078c79c13d63"
    "edb6e14feaeffabc90ad317e4875fe648101b0864097e998f0ca3025ef9638cd2b0caecd3770ab54a1d9c6ca"
    "959b0f5dcbc90caeefc4135baca6fd475224269bbe1b0203010001"
)


def strip_header(serialized: bytes) -> bytes:
    """The Data field of a PublicKey/PrivateKey protobuf (tag, type, tag, length)."""
    position = 3
    length = 0
    shift = 0
    while True:
        byte = serialized[position]
        position += 1
        length |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            break
    data = serialized[position:]
    assert len(data) == length
    return data


def spki(public: ec.EllipticCurvePublicKey | rsa.RSAPublicKey) -> bytes:
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def pb(key_type: int, data: bytes) -> bytes:
    """A hand-built PublicKey protobuf (short Data only)."""
    assert len(data) < 128
    return bytes((0x08, key_type, 0x12, len(data))) + data


class SpecVectorTests(SynchronousTestCase):
    def test_ed25519(self) -> None:
        key = PrivateKey.from_bytes(ED25519_PRIVATE)
        self.assertEqual(key.public_key_bytes(), ED25519_PUBLIC)
        self.assertEqual(key.to_bytes(), ED25519_PRIVATE)
        public = PublicKey.from_bytes(ED25519_PUBLIC)
        self.assertEqual(public, key.public_key())
        self.assertEqual(public.key_type, KeyType.ED25519)
        self.assertEqual(public.peer_id(), b"\x00\x24" + ED25519_PUBLIC)
        self.assertTrue(public.peer_id_text().startswith("12D3KooW"))
        self.assertEqual(parse_peer_id(key.peer_id_text()), key.peer_id())

    def test_secp256k1(self) -> None:
        scalar = int.from_bytes(strip_header(SECP256K1_PRIVATE), "big")
        private = ec.derive_private_key(scalar, ec.SECP256K1())
        public = PublicKey.from_bytes(SECP256K1_PUBLIC)
        self.assertEqual(public.to_bytes(), SECP256K1_PUBLIC)
        self.assertEqual(
            private.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
            ),
            public.data,
        )
        self.assertEqual(public.peer_id(), b"\x00\x25" + SECP256K1_PUBLIC)
        self.assertTrue(public.peer_id_text().startswith("16Uiu2"))
        signature = private.sign(b"message", ec.ECDSA(hashes.SHA256()))
        self.assertTrue(public.verify(b"message", signature))
        self.assertFalse(public.verify(b"massage", signature))

    def test_ecdsa(self) -> None:
        private = serialization.load_der_private_key(strip_header(ECDSA_PRIVATE), None)
        assert isinstance(private, ec.EllipticCurvePrivateKey)
        public = PublicKey.from_bytes(ECDSA_PUBLIC)
        self.assertEqual(public.key_type, KeyType.ECDSA)
        self.assertEqual(spki(private.public_key()), public.data)
        self.assertEqual(public.peer_id()[:2], b"\x12\x20")
        self.assertTrue(public.peer_id_text().startswith("Qm"))
        signature = private.sign(b"message", ec.ECDSA(hashes.SHA256()))
        self.assertTrue(public.verify(b"message", signature))
        self.assertFalse(public.verify(b"message!", signature))

    def test_rsa(self) -> None:
        private = serialization.load_der_private_key(strip_header(RSA_PRIVATE), None)
        assert isinstance(private, rsa.RSAPrivateKey)
        public = PublicKey.from_bytes(RSA_PUBLIC)
        self.assertEqual(public.key_type, KeyType.RSA)
        self.assertEqual(public.to_bytes(), RSA_PUBLIC)
        self.assertEqual(spki(private.public_key()), public.data)
        self.assertTrue(public.peer_id_text().startswith("Qm"))
        signature = private.sign(b"message", padding.PKCS1v15(), hashes.SHA256())
        self.assertTrue(public.verify(b"message", signature))
        self.assertFalse(public.verify(b"message", signature[:-1] + b"\x00"))
        pss = private.sign(
            b"message",
            padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.MAX_LENGTH),
            hashes.SHA256(),
        )
        self.assertFalse(public.verify(b"message", pss))


class PeerIdRuleTests(SynchronousTestCase):
    def test_inline_boundary(self) -> None:
        self.assertEqual(peer_id_from_public_key_bytes(bytes(42))[:2], b"\x00\x2a")
        self.assertEqual(peer_id_from_public_key_bytes(bytes(43))[:2], b"\x12\x20")

    def test_peer_ids_are_valid(self) -> None:
        for serialized in (ED25519_PUBLIC, SECP256K1_PUBLIC, ECDSA_PUBLIC, RSA_PUBLIC):
            validate_peer_id(PublicKey.from_bytes(serialized).peer_id())


class PublicKeyRejectionTests(SynchronousTestCase):
    def check(self, serialized: bytes) -> None:
        self.assertRaises(InvalidKeyError, PublicKey.from_bytes, serialized)

    def test_malformed(self) -> None:
        self.check(b"")
        self.check(b"\x08\x01")  # no Data
        self.check(b"\x12\x20" + bytes(32))  # no Type
        self.check(b"\x08\x01\x12\x20" + bytes(31))  # truncated
        self.check(b"\xff")

    def test_unknown_type(self) -> None:
        self.check(pb(4, bytes(32)))
        self.assertRaises(InvalidKeyError, PublicKey, 9, bytes(32))

    def test_not_deterministic(self) -> None:
        data = ED25519_PUBLIC[4:]
        self.check(b"\x12\x20" + data + b"\x08\x01")  # fields out of order
        self.check(b"\x08\x01\x12\xa0\x00" + data)  # non-minimal length
        self.check(b"\x08\x81\x00\x12\x20" + data)  # non-minimal type
        self.check(ED25519_PUBLIC + b"\x18\x01")  # an extra field
        self.check(b"\x08\x01\x08\x01\x12\x20" + data)  # repeated type

    def test_too_long(self) -> None:
        self.check(b"\x08\x00\x12\x82\x10" + bytes(MAX_PUBLIC_KEY_BYTES))

    def test_ed25519_sizes(self) -> None:
        self.check(pb(1, bytes(31)))
        self.check(pb(1, bytes(33)))

    def test_secp256k1_encoding(self) -> None:
        data = SECP256K1_PUBLIC[4:]
        self.check(pb(2, data[:-1]))
        self.check(pb(2, b"\x04" + data[1:]))  # wrong prefix
        self.check(pb(2, b"\x02" + bytes(32)))  # x = 0 is not on the curve
        uncompressed = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256K1(), data
        ).public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        self.check(pb(2, uncompressed))

    def test_ecdsa_encoding(self) -> None:
        data = ECDSA_PUBLIC[4:]
        self.assertRaises(InvalidKeyError, PublicKey, KeyType.ECDSA, data[:-1])
        self.assertRaises(InvalidKeyError, PublicKey, KeyType.ECDSA, data + b"\x00")
        key = serialization.load_der_public_key(data)
        assert isinstance(key, ec.EllipticCurvePublicKey)
        compressed = key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
        )
        # A hand-made SPKI carrying the compressed point: not canonical.
        prefix = bytes.fromhex("3039301306072a8648ce3d020106082a8648ce3d030107032200")
        self.assertRaises(InvalidKeyError, PublicKey, KeyType.ECDSA, prefix + compressed)

    def test_ecdsa_curves(self) -> None:
        for curve in (ec.SECP256K1(), ec.SECP224R1()):
            data = spki(ec.generate_private_key(curve).public_key())
            self.assertRaises(InvalidKeyError, PublicKey, KeyType.ECDSA, data)
        for good in (ec.SECP384R1(), ec.SECP521R1()):
            PublicKey(KeyType.ECDSA, spki(ec.generate_private_key(good).public_key()))

    def test_type_mismatch(self) -> None:
        self.assertRaises(InvalidKeyError, PublicKey, KeyType.RSA, ECDSA_PUBLIC[4:])
        self.assertRaises(InvalidKeyError, PublicKey, KeyType.ECDSA, RSA_PUBLIC[5:])
        ed = Ed25519PrivateKey.generate().public_key()
        ed_spki = ed.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.assertRaises(InvalidKeyError, PublicKey, KeyType.ECDSA, ed_spki)
        self.assertRaises(InvalidKeyError, PublicKey, KeyType.RSA, ed_spki)
        self.assertRaises(InvalidKeyError, PublicKey, KeyType.RSA, b"not der")

    def test_rsa_sizes(self) -> None:
        small = rsa.generate_private_key(65537, 1024).public_key()
        self.assertRaises(InvalidKeyError, PublicKey, KeyType.RSA, spki(small))
        huge = rsa.RSAPublicNumbers(65537, (1 << 8199) | 1).public_key()
        self.assertRaises(InvalidKeyError, PublicKey, KeyType.RSA, spki(huge))
        PublicKey(KeyType.RSA, spki(rsa.RSAPublicNumbers(65537, (1 << 2047) | 1).public_key()))

    @given(st.binary(max_size=120))
    def test_garbage(self, data: bytes) -> None:
        with contextlib.suppress(InvalidKeyError):
            PublicKey.from_bytes(data)

    @given(st.integers(0, 5), st.binary(max_size=120))
    def test_garbage_data(self, key_type: int, data: bytes) -> None:
        with contextlib.suppress(InvalidKeyError):
            PublicKey(key_type, data)


class VerifyTests(SynchronousTestCase):
    keys = (ED25519_PUBLIC, SECP256K1_PUBLIC, ECDSA_PUBLIC, RSA_PUBLIC)

    @given(st.binary(max_size=600), st.binary(max_size=40))
    @settings(max_examples=50)
    def test_garbage_signatures(self, signature: bytes, data: bytes) -> None:
        for serialized in self.keys:
            self.assertFalse(PublicKey.from_bytes(serialized).verify(data, signature))

    def test_verify_identity(self) -> None:
        key = PrivateKey.generate()
        signature = key.sign(b"data")
        self.assertEqual(verify_identity(key.public_key_bytes(), b"data", signature), key.peer_id())
        self.assertRaises(
            SignatureError, verify_identity, key.public_key_bytes(), b"other", signature
        )
        self.assertRaises(InvalidKeyError, verify_identity, b"\x08\x01", b"data", signature)


class PrivateKeyTests(SynchronousTestCase):
    @given(st.binary(min_size=32, max_size=32), st.binary(max_size=100))
    def test_round_trip_and_sign(self, seed: bytes, data: bytes) -> None:
        key = PrivateKey.from_seed(seed)
        again = PrivateKey.from_bytes(key.to_bytes())
        self.assertEqual(again.to_bytes(), key.to_bytes())
        self.assertEqual(again.public_key(), key.public_key())
        signature = key.sign(data)
        self.assertTrue(key.public_key().verify(data, signature))
        self.assertFalse(key.public_key().verify(data + b"x", signature))
        self.assertFalse(key.public_key().verify(data, signature[:-1]))

    def test_generate(self) -> None:
        first, second = PrivateKey.generate(), PrivateKey.generate()
        self.assertNotEqual(first.peer_id(), second.peer_id())
        self.assertEqual(len(first.to_bytes()), 68)
        self.assertIn("12D3KooW", repr(first))

    def test_legacy_96_bytes(self) -> None:
        data = ED25519_PRIVATE[4:]
        legacy = b"\x08\x01\x12\x60" + data + data[32:]
        self.assertEqual(PrivateKey.from_bytes(legacy).to_bytes(), ED25519_PRIVATE)
        bad = b"\x08\x01\x12\x60" + data + bytes(32)
        self.assertRaises(InvalidKeyError, PrivateKey.from_bytes, bad)

    def test_rejections(self) -> None:
        data = ED25519_PRIVATE[4:]
        for serialized in (
            b"",
            b"\x08\x01",
            b"\x08\x01\x12\x20" + data[:32],  # seed only
            b"\x08\x01\x12\x40" + data[:32] + bytes(32),  # wrong public half
            SECP256K1_PRIVATE,
            ECDSA_PRIVATE,
            b"\xff\xff",
        ):
            self.assertRaises(InvalidKeyError, PrivateKey.from_bytes, serialized)
        self.assertRaises(InvalidKeyError, PrivateKey.from_seed, bytes(31))

    @given(st.binary(max_size=120))
    def test_garbage(self, data: bytes) -> None:
        with contextlib.suppress(InvalidKeyError):
            PrivateKey.from_bytes(data)


class IdentityFileTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, "identity.key")

    def test_create_then_load(self) -> None:
        key = load_or_create_identity(self.path)
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        with open(self.path, "rb") as identity:
            self.assertEqual(identity.read(), key.to_bytes())
        self.assertEqual(load_or_create_identity(self.path).to_bytes(), key.to_bytes())
        self.assertEqual(os.listdir(self.directory), ["identity.key"])

    def test_existing_key_kept(self) -> None:
        with open(self.path, "wb") as identity:
            identity.write(ED25519_PRIVATE)
        os.chmod(self.path, 0o444)
        self.assertEqual(load_or_create_identity(self.path).to_bytes(), ED25519_PRIVATE)

    def test_malformed(self) -> None:
        for content in (b"", b"garbage", SECP256K1_PRIVATE, bytes(20000)):
            with open(self.path, "wb") as identity:
                identity.write(content)
            self.assertRaises(IdentityFileError, load_or_create_identity, self.path)

    def test_unreadable(self) -> None:
        self.assertRaises(IdentityFileError, load_or_create_identity, self.directory)
        missing = os.path.join(self.directory, "no", "such", "dir", "key")
        self.assertRaises(IdentityFileError, load_or_create_identity, missing)

    def test_concurrent_creator_wins(self) -> None:
        """If another process links its key first, that key is loaded and kept."""

        def link(source: str, destination: str) -> None:
            with open(destination, "wb") as other:
                other.write(ED25519_PRIVATE)
            raise FileExistsError(errno.EEXIST, "exists", destination)

        self.patch(os, "link", link)
        self.assertEqual(load_or_create_identity(self.path).to_bytes(), ED25519_PRIVATE)
        self.assertEqual(os.listdir(self.directory), ["identity.key"])

    def test_without_hard_links(self) -> None:
        def link(source: str, destination: str) -> None:
            raise OSError(errno.EPERM, "no hard links", destination)

        self.patch(os, "link", link)
        key = load_or_create_identity(self.path)
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        self.assertEqual(load_or_create_identity(self.path).to_bytes(), key.to_bytes())
        self.assertEqual(os.listdir(self.directory), ["identity.key"])

    def test_link_failure(self) -> None:
        def link(source: str, destination: str) -> None:
            raise OSError(errno.EIO, "disk on fire", destination)

        self.patch(os, "link", link)
        self.assertRaises(IdentityFileError, load_or_create_identity, self.path)
        self.assertEqual(os.listdir(self.directory), [])
