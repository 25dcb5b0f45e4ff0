"""Tests for rendezvous.peerid."""

from __future__ import annotations

import base64
import contextlib

import based58
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from rendezvous import peerid
from rendezvous.peerid import (
    MAX_PEER_ID_TEXT,
    Base58Error,
    InvalidPeerId,
    base58_decode,
    base58_decode_portable,
    base58_encode,
    parse_peer_id,
    peer_id_to_cid,
    peer_id_to_text,
    validate_peer_id,
)

# peer-ids.md examples: one sha2-256 id in both text forms, one Ed25519 id.
SHA256_CID = "bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqxe"
SHA256_B58 = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
SHA256_MH = bytes.fromhex("12209dff3b17d74cf4d38a50d8b6383e92d181a10395a5e73a726dcccbd21bf6f0b9")
ED25519_B58 = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
ED25519_MH = bytes.fromhex(
    "0024080112202ffa35a99d3a3cfbb17bb7c1dc5561b18a8dcca4df38dc613ea859c37eb1336b"
)
# The peer-ids.md key vectors, serialized PublicKey messages.
ED25519_KEY = bytes.fromhex(
    "080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e"
)
SECP256K1_KEY = bytes.fromhex(
    "08021221037777e994e452c21604f91de093ce415f5432f701dd8cd1a7a6fea0e630bfca99"
)

B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

sha256_ids = st.binary(min_size=32, max_size=32).map(lambda d: b"\x12\x20" + d)
ed25519_ids = st.binary(min_size=32, max_size=32).map(lambda k: b"\x00\x24\x08\x01\x12\x20" + k)
secp256k1_ids = st.binary(min_size=33, max_size=33).map(lambda k: b"\x00\x25\x08\x02\x12\x21" + k)
peer_ids = st.one_of(sha256_ids, ed25519_ids, secp256k1_ids)


def cid(payload: bytes, prefix: bytes = b"\x01\x72") -> str:
    """A base32 CID text around ``payload`` without any validation."""
    return "b" + base64.b32encode(prefix + payload).decode().rstrip("=").lower()


def b58(payload: bytes) -> str:
    return base58_encode(payload)


class Base58Tests(SynchronousTestCase):
    def test_vectors(self) -> None:
        self.assertEqual(base58_encode(b"Hello World!"), "2NEpo7TZRRrLZSi2U")
        self.assertEqual(base58_encode(bytes.fromhex("0000287fb4cd")), "11233QC4")
        self.assertEqual(base58_decode("11233QC4"), bytes.fromhex("0000287fb4cd"))

    def test_empty(self) -> None:
        self.assertEqual(base58_encode(b""), "")
        self.assertEqual(base58_decode(""), b"")

    def test_leading_zeros(self) -> None:
        self.assertEqual(base58_encode(b"\x00\x00"), "11")
        self.assertEqual(base58_decode("11"), b"\x00\x00")
        self.assertEqual(base58_encode(b"\x00\x01"), "12")

    def test_bad_characters(self) -> None:
        for text in ("0", "O", "I", "l", "+", " 1", "é"):
            self.assertRaises(Base58Error, base58_decode, text)

    @given(st.binary(max_size=80))
    def test_round_trip(self, data: bytes) -> None:
        self.assertEqual(base58_decode(base58_encode(data)), data)

    @given(st.text(max_size=60))
    def test_garbage(self, text: str) -> None:
        with contextlib.suppress(Base58Error):
            base58_decode(text)

    @given(st.text(alphabet=B58_ALPHABET, max_size=100))
    def test_decode_matches_digit_by_digit(self, text: str) -> None:
        """Every length (decoded eight digits at a time, plus a head) gives the plain sum."""
        number = 0
        for char in text:
            number = number * 58 + B58_ALPHABET.index(char)
        zeros = len(text) - len(text.lstrip("1"))
        expected = b"\x00" * zeros + number.to_bytes((number.bit_length() + 7) // 8, "big")
        self.assertEqual(base58_decode(text), expected)

    @given(st.integers(0, 40), st.text(alphabet=B58_ALPHABET, max_size=300))
    def test_decode_matches_digit_by_digit_at_every_width(self, ones: int, text: str) -> None:
        """Leading ones, and every width the lane steps handle: up to 128 digits from
        their table, 33 to 64 written out, beyond 128 made for the length."""
        text = "1" * ones + text
        self.assertEqual(base58_decode(text), _plain_base58(text))

    @given(st.binary(max_size=200))
    def test_round_trip_long(self, data: bytes) -> None:
        self.assertEqual(base58_decode(base58_encode(data)), data)

    @given(st.text(max_size=150))
    def test_invalid_text_refused_as_by_the_plain_decoder(self, text: str) -> None:
        """Any text: the same bytes as the digit-by-digit sum, or the same error."""
        try:
            expected = _plain_base58(text)
        except Base58Error as error:
            with self.assertRaises(Base58Error) as caught:
                base58_decode(text)
            self.assertEqual(str(caught.exception), str(error))
        else:
            self.assertEqual(base58_decode(text), expected)

    @given(st.text(alphabet=B58_ALPHABET, max_size=30), st.text(min_size=1, max_size=3))
    def test_first_bad_character_is_named(self, good: str, tail: str) -> None:
        bad = next((char for char in tail if char not in B58_ALPHABET), None)
        if bad is None:
            return
        with self.assertRaises(Base58Error) as caught:
            base58_decode(good + tail)
        self.assertEqual(str(caught.exception), f"not a base58btc character: {bad!r}")


class PortableBase58Tests(SynchronousTestCase):
    """`base58_decode` runs ``based58`` (a declared dependency) and falls back on the
    Python decoder for its refusals; on a platform without it the Python decoder does
    everything, with the same results."""

    def test_the_native_decoder_is_used(self) -> None:
        self.assertIs(peerid._decode_ascii, based58.b58decode)
        calls: list[bytes] = []

        def native(data: bytes) -> bytes:
            calls.append(data)
            return SHA256_MH

        self.patch(peerid, "_decode_ascii", native)
        self.assertEqual(base58_decode(ED25519_B58), SHA256_MH)
        self.assertEqual(parse_peer_id(SHA256_B58), SHA256_MH)
        self.assertEqual(calls, [ED25519_B58.encode(), SHA256_B58.encode()])

    def test_without_the_native_decoder(self) -> None:
        self.patch(peerid, "_decode_ascii", peerid._decode_ascii_portable)
        self.assertEqual(base58_decode(SHA256_B58), SHA256_MH)
        self.assertEqual(parse_peer_id(SHA256_B58), SHA256_MH)
        self.assertEqual(parse_peer_id(ED25519_B58), ED25519_MH)
        with self.assertRaises(Base58Error) as caught:
            base58_decode("1é")
        self.assertEqual(str(caught.exception), "not a base58btc character: 'é'")
        with self.assertRaises(InvalidPeerId) as refused:
            parse_peer_id("Qm0")
        self.assertEqual(str(refused.exception), "not a base58btc character: '0'")

    @given(st.integers(0, 40), st.text(alphabet=B58_ALPHABET, max_size=300))
    def test_portable_decodes_every_width(self, ones: int, text: str) -> None:
        text = "1" * ones + text
        self.assertEqual(base58_decode_portable(text), _plain_base58(text))

    @given(st.text(max_size=150))
    def test_portable_refuses_with_the_same_words(self, text: str) -> None:
        try:
            expected = _plain_base58(text)
        except Base58Error as error:
            for decode in (base58_decode, base58_decode_portable):
                with self.assertRaises(Base58Error) as caught:
                    decode(text)
                self.assertEqual(str(caught.exception), str(error))
        else:
            self.assertEqual(base58_decode_portable(text), expected)
            self.assertEqual(base58_decode(text), expected)


def _plain_base58(text: str) -> bytes:
    """base58btc decoding as its definition reads, one digit at a time."""
    number = 0
    for char in text:
        if char not in B58_ALPHABET:
            raise Base58Error(f"not a base58btc character: {char!r}")
        number = number * 58 + B58_ALPHABET.index(char)
    zeros = len(text) - len(text.lstrip("1"))
    return b"\x00" * zeros + number.to_bytes((number.bit_length() + 7) // 8, "big")


class ParsePeerIdTests(SynchronousTestCase):
    def test_spec_examples(self) -> None:
        self.assertEqual(parse_peer_id(SHA256_B58), SHA256_MH)
        self.assertEqual(parse_peer_id(SHA256_CID), SHA256_MH)
        self.assertEqual(parse_peer_id(ED25519_B58), ED25519_MH)

    def test_spec_key_vectors(self) -> None:
        """Identity ids of the spec's Ed25519 and secp256k1 keys print as expected."""
        ed = peer_id_to_text(b"\x00" + bytes((len(ED25519_KEY),)) + ED25519_KEY)
        self.assertTrue(ed.startswith("12D3KooW"), ed)
        secp = peer_id_to_text(b"\x00" + bytes((len(SECP256K1_KEY),)) + SECP256K1_KEY)
        self.assertTrue(secp.startswith("16Uiu2"), secp)
        self.assertEqual(parse_peer_id(ed)[2:], ED25519_KEY)
        self.assertEqual(parse_peer_id(secp)[2:], SECP256K1_KEY)

    def test_to_text(self) -> None:
        self.assertEqual(peer_id_to_text(SHA256_MH), SHA256_B58)
        self.assertEqual(peer_id_to_text(ED25519_MH), ED25519_B58)

    def test_to_cid(self) -> None:
        self.assertEqual(peer_id_to_cid(SHA256_MH), SHA256_CID)
        self.assertEqual(parse_peer_id(peer_id_to_cid(ED25519_MH)), ED25519_MH)

    def test_other_multibases(self) -> None:
        payload = b"\x01\x72" + ED25519_MH
        self.assertEqual(parse_peer_id("z" + base58_encode(payload)), ED25519_MH)
        self.assertEqual(parse_peer_id("f" + payload.hex()), ED25519_MH)
        self.assertEqual(parse_peer_id("F" + payload.hex().upper()), ED25519_MH)
        self.assertEqual(parse_peer_id("B" + SHA256_CID[1:].upper()), SHA256_MH)

    @given(peer_ids)
    def test_round_trip_text(self, multihash: bytes) -> None:
        self.assertEqual(parse_peer_id(peer_id_to_text(multihash)), multihash)

    @given(peer_ids)
    def test_round_trip_cid(self, multihash: bytes) -> None:
        text = peer_id_to_cid(multihash)
        self.assertTrue(text.startswith("b"))
        self.assertEqual(parse_peer_id(text), multihash)

    @given(st.text(max_size=150))
    def test_garbage_text(self, text: str) -> None:
        with contextlib.suppress(InvalidPeerId):
            validate_peer_id(parse_peer_id(text))

    @given(st.text(alphabet=B58_ALPHABET + "bfzBFQm", max_size=80))
    def test_garbage_alphabet(self, text: str) -> None:
        with contextlib.suppress(InvalidPeerId):
            validate_peer_id(parse_peer_id(text))

    @given(
        st.binary(max_size=40)
        | st.binary(min_size=32, max_size=32).map(lambda d: b"\x12\x20" + d)
        | st.binary(min_size=31, max_size=33).map(lambda d: b"\x12" + bytes((len(d),)) + d)
        | st.binary(max_size=34).map(lambda d: b"\x12\x20" + d)
    )
    def test_legacy_text_is_checked_as_its_multihash(self, data: bytes) -> None:
        """A sha2-256 id read from legacy text returns early: exactly the multihashes
        `validate_peer_id` accepts come back, the others are refused with its words."""
        text = b58(data)
        if not text or not (text[0] == "1" or text.startswith("Qm")):
            return
        try:
            validate_peer_id(data)
        except InvalidPeerId as error:
            with self.assertRaises(InvalidPeerId) as caught:
                parse_peer_id(text)
            self.assertEqual(str(caught.exception), str(error))
        else:
            self.assertEqual(parse_peer_id(text), data)

    @given(st.binary(max_size=60))
    def test_garbage_bytes(self, data: bytes) -> None:
        for text in (cid(data), b58(data), cid(data, b"")):
            with contextlib.suppress(InvalidPeerId):
                validate_peer_id(parse_peer_id(text))


class RejectionTests(SynchronousTestCase):
    def check(self, text: str) -> None:
        self.assertRaises(InvalidPeerId, parse_peer_id, text)

    def test_empty(self) -> None:
        self.check("")

    def test_too_long(self) -> None:
        self.check("1" * (MAX_PEER_ID_TEXT + 1))
        self.check("Qm" + "z" * 200)

    def test_bad_alphabet(self) -> None:
        self.check("Qm0yQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")
        self.check("QmIyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")
        self.check("12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5Sé")
        self.check("bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqx1")
        self.check("bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqxE")
        self.check("f0172" + SHA256_MH.hex()[:-1] + "g")
        self.check("f0172 " + SHA256_MH.hex())

    def test_bad_lengths_in_base(self) -> None:
        self.check("b")
        self.check("z")
        self.check("f")
        self.check("ba")  # base32 body of length 1 is impossible
        self.check("f0172" + SHA256_MH.hex() + "0")  # odd hex

    def test_unknown_prefix(self) -> None:
        self.check("mAXIkIJ3/Oxe")
        self.check("k51qzi5uqu5dgutdk6i1ynyzgkqngpha5xpgia3a5qqp4jsh0u4csozksxel3r")
        self.check("Qa")
        self.check("/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")

    def test_wrong_multihash_code(self) -> None:
        self.check(cid(b"\x11\x14" + bytes(20)))  # sha1
        self.check(cid(b"\x13\x40" + bytes(64)))  # sha2-512
        self.check(cid(b"\x80\x00" + bytes(4)))  # identity as a non-minimal varint

    def test_digest_length_mismatch(self) -> None:
        self.check(cid(b"\x12\x20" + bytes(31)))
        self.check(cid(b"\x12\x1f" + bytes(31)))
        self.check(cid(b"\x00\x24" + ED25519_MH[2:-1]))
        self.check(cid(b"\x12"))

    def test_trailing_bytes(self) -> None:
        self.check(cid(SHA256_MH + b"\x00"))
        self.check(cid(ED25519_MH + b"\x00"))
        self.check(b58(SHA256_MH + b"\x00"))
        self.check(b58(ED25519_MH + b"\x01"))

    def test_identity_too_long(self) -> None:
        self.check(b58(b"\x00\x2b\x08\x01\x12\x27" + bytes(39)))

    def test_identity_not_a_public_key(self) -> None:
        self.check(b58(b"\x00\x00"))
        self.check(b58(b"\x00\x04\x01\x02\x03\x04"))
        self.check(b58(b"\x00\x24\x10\x01\x12\x20" + bytes(32)))  # wrong first tag
        self.check(b58(b"\x00\x24\x08\x01\x1a\x20" + bytes(32)))  # wrong second tag
        self.check(b58(b"\x00\x24\x08\x00\x12\x20" + bytes(32)))  # RSA cannot be inline
        self.check(b58(b"\x00\x24\x08\x03\x12\x20" + bytes(32)))  # nor ECDSA
        self.check(b58(b"\x00\x24\x08\x07\x12\x20" + bytes(32)))  # unknown type
        self.check(b58(b"\x00\x23\x08\x01\x12\x1f" + bytes(31)))  # Ed25519 key of 31 bytes
        self.check(b58(b"\x00\x24\x08\x02\x12\x20" + bytes(32)))  # secp256k1 of 32 bytes

    def test_wrong_cid(self) -> None:
        self.check(cid(SHA256_MH, b"\x01\x70"))  # dag-pb, not libp2p-key
        self.check(cid(SHA256_MH, b"\x00\x72"))  # version 0
        self.check(cid(SHA256_MH, b"\x02\x72"))
        self.check(cid(SHA256_MH, b""))
        self.check("z" + base58_encode(b"\x01\x55" + SHA256_MH))

    def test_legacy_form_only_for_bare_multihash(self) -> None:
        self.check(b58(b"\x01\x72" + SHA256_MH))

    def test_encoders_validate(self) -> None:
        self.assertRaises(InvalidPeerId, peer_id_to_text, b"")
        self.assertRaises(InvalidPeerId, peer_id_to_text, b"\x12\x20")
        self.assertRaises(InvalidPeerId, peer_id_to_cid, b"\x00\x01\x00")
