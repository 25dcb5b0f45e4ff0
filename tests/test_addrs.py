"""Tests for rendezvous.addrs."""

from __future__ import annotations

import contextlib

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from rendezvous.addrs import (
    MAX_COMPONENTS,
    MAX_MULTIADDR_TEXT,
    PROTOCOLS,
    InvalidMultiaddr,
    multiaddr_from_text,
    multiaddr_to_text,
    validate_multiaddr,
)
from rendezvous.peerid import peer_id_to_text
from rendezvous.varint import encode_uvarint

ED25519_ID = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
ED25519_MH = bytes.fromhex(
    "0024080112202ffa35a99d3a3cfbb17bb7c1dc5561b18a8dcca4df38dc613ea859c37eb1336b"
)
SHA256_ID = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
SHA256_MH = bytes.fromhex("12209dff3b17d74cf4d38a50d8b6383e92d181a10395a5e73a726dcccbd21bf6f0b9")

IP4_TCP = bytes.fromhex("0401020304060fa1")  # /ip4/1.2.3.4/tcp/4001

VECTORS = {
    "/ip4/1.2.3.4/tcp/4001": IP4_TCP,
    f"/ip4/1.2.3.4/tcp/4001/p2p/{ED25519_ID}": IP4_TCP + b"\xa5\x03\x26" + ED25519_MH,
    "/dns4/example.com/tcp/443/wss": bytes.fromhex("360b6578616d706c652e636f6d0601bbde03"),
    "/ip6/::1/udp/4001/quic-v1/webtransport": bytes(
        [41] + [0] * 15 + [1] + [0x91, 0x02, 0x0F, 0xA1, 0xCD, 0x03, 0xD1, 0x03]
    ),
    "/dns/example.com/tcp/443/tls/sni/example.com/ws": bytes.fromhex(
        "350b6578616d706c652e636f6d0601bbc003c1030b6578616d706c652e636f6ddd03"
    ),
    f"/ip4/1.2.3.4/tcp/4001/p2p/{SHA256_ID}/p2p-circuit/p2p/{ED25519_ID}": IP4_TCP
    + b"\xa5\x03\x22"
    + SHA256_MH
    + b"\xa2\x02\xa5\x03\x26"
    + ED25519_MH,
    "/ip4/1.2.3.4/udp/1/webrtc-direct/certhash/uEiDDq4_xNyDorZBH3TlGazyJdOWSwvo4PUo5YHFMrvDE8g": (
        bytes.fromhex("0401020304910200019802d203221220")
        + bytes.fromhex("c3ab8ff13720e8ad9047dd39466b3c8974e592c2fa383d4a3960714caef0c4f2")
    ),
    "/ip4/1.2.3.4/tcp/80/http": bytes.fromhex("0401020304060050e003"),
    "/ip4/1.2.3.4/tcp/1/noise": bytes.fromhex("0401020304060001c603"),
    "/dnsaddr/bootstrap.libp2p.io": b"\x38\x13bootstrap.libp2p.io",
}


def component(code: int, value: bytes = b"", var: bool = False) -> bytes:
    prefix = encode_uvarint(len(value)) if var else b""
    return encode_uvarint(code) + prefix + value


ports = st.integers(0, 65535).map(lambda p: p.to_bytes(2, "big"))
labels = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
# A host name that spells a protocol name ("dns", "tcp") is beyond the text parser
# of PyPI multiaddr (it reads the name as the next protocol): not generated here.
hostnames = (
    st.lists(labels, min_size=1, max_size=3)
    .map(".".join)
    .filter(lambda h: h not in {name for name, _ in PROTOCOLS.values()})
)
peer_mhs = st.one_of(
    st.binary(min_size=32, max_size=32).map(lambda d: b"\x12\x20" + d),
    st.binary(min_size=32, max_size=32).map(lambda k: b"\x00\x24\x08\x01\x12\x20" + k),
)
hosts = st.one_of(
    st.binary(min_size=4, max_size=4).map(lambda a: component(4, a)),
    st.binary(min_size=16, max_size=16).map(lambda a: component(41, a)),
    st.sampled_from([53, 54, 55]).flatmap(
        lambda code: hostnames.map(lambda h: component(code, h.encode(), var=True))
    ),
)
transports = st.one_of(
    ports.map(lambda p: component(6, p)),
    ports.map(lambda p: component(6, p) + component(477)),
    ports.map(lambda p: component(6, p) + component(478)),
    ports.map(lambda p: component(6, p) + component(448) + component(477)),
    ports.map(lambda p: component(273, p) + component(461)),
    ports.map(lambda p: component(273, p) + component(461) + component(465)),
)
suffixes = st.one_of(
    st.just(b""),
    peer_mhs.map(lambda m: component(421, m, var=True)),
    st.tuples(peer_mhs, peer_mhs).map(
        lambda ms: component(421, ms[0], var=True) + component(290) + component(421, ms[1], True)
    ),
)
multiaddrs = st.builds(lambda h, t, s: h + t + s, hosts, transports, suffixes)


class ValidateTests(SynchronousTestCase):
    def test_vectors(self) -> None:
        for text, data in VECTORS.items():
            validate_multiaddr(data)
            self.assertEqual(multiaddr_from_text(text), data, text)
            self.assertEqual(multiaddr_to_text(data), text)

    def test_every_protocol_in_table(self) -> None:
        samples = {-1: b"a", -2: b"/a", -3: SHA256_MH, -4: b"\x01"}
        for code, (_name, size) in PROTOCOLS.items():
            value = bytes(size) if size >= 0 else samples[size]
            validate_multiaddr(component(code, value, var=size < 0))

    @given(multiaddrs)
    def test_generated(self, data: bytes) -> None:
        validate_multiaddr(data)

    @given(multiaddrs)
    def test_round_trip(self, data: bytes) -> None:
        self.assertEqual(multiaddr_from_text(multiaddr_to_text(data)), data)

    @given(st.binary(max_size=200))
    def test_garbage_bytes(self, data: bytes) -> None:
        with contextlib.suppress(InvalidMultiaddr):
            validate_multiaddr(data)
            multiaddr_to_text(data)

    @given(multiaddrs, st.integers(0, 200), st.integers(0, 255))
    def test_mutated(self, data: bytes, position: int, byte: int) -> None:
        mutated = bytearray(data)
        mutated[position % len(mutated)] = byte
        with contextlib.suppress(InvalidMultiaddr):
            validate_multiaddr(bytes(mutated))
            multiaddr_to_text(bytes(mutated))

    @given(st.text(max_size=100))
    def test_garbage_text(self, text: str) -> None:
        for candidate in (text, "/" + text, "/ip4/1.2.3.4/tcp/1/" + text):
            with contextlib.suppress(InvalidMultiaddr):
                validate_multiaddr(multiaddr_from_text(candidate))


class RejectionTests(SynchronousTestCase):
    def check(self, data: bytes) -> None:
        self.assertRaises(InvalidMultiaddr, validate_multiaddr, data)
        self.assertRaises(InvalidMultiaddr, multiaddr_to_text, data)

    def test_empty(self) -> None:
        self.check(b"")

    def test_unknown_code(self) -> None:
        self.check(b"\x05\x00")
        self.check(IP4_TCP + component(999))
        self.check(component(777, bytes(8)))  # memory: sizes disagree, refused
        self.check(component(420, SHA256_MH, var=True))  # the retired p2p code

    def test_truncated_fixed_value(self) -> None:
        self.check(b"\x04\x01\x02")  # PyPI multiaddr would print /ip4/0.0.1.2
        self.check(b"\x04\x01\x02\x03\x04\x06\x0f")
        self.check(b"\x29" + bytes(15))

    def test_truncated_variable_value(self) -> None:
        self.check(b"\x36\x0bexample.co")
        self.check(b"\x36")  # no length
        self.check(IP4_TCP + b"\xa5\x03\x26" + ED25519_MH[:-1])

    def test_truncated_code(self) -> None:
        self.check(b"\x91")
        self.check(IP4_TCP + b"\xa5")

    def test_overlong_and_non_minimal_varints(self) -> None:
        self.check(b"\x80" * 11)
        self.check(b"\xff" * 10 + b"\x01")
        self.check(b"\x84\x00\x01\x02\x03\x04")  # ip4 code in two bytes
        self.check(b"\x36\x8b\x00example.com")  # length in two bytes

    def test_trailing_garbage(self) -> None:
        self.check(IP4_TCP + b"\x00")
        self.check(IP4_TCP + b"\x04")
        self.check(IP4_TCP + b"\xff\xff")

    def test_too_many_components(self) -> None:
        validate_multiaddr(IP4_TCP + component(477) * (MAX_COMPONENTS - 2))
        self.check(IP4_TCP + component(477) * (MAX_COMPONENTS - 1))

    def test_too_long(self) -> None:
        self.check(component(400, b"/" + b"a" * 1100, var=True))

    def test_empty_variable_values(self) -> None:
        for code in (53, 54, 55, 56, 400, 421, 449, 466):
            self.check(component(code, b"", var=True))

    def test_text_values_must_be_utf8(self) -> None:
        self.check(component(54, b"\xff\xfe", var=True))
        self.check(component(449, b"caf\xc3", var=True))
        self.check(component(400, b"/tmp/\x80", var=True))

    def test_names_without_slash(self) -> None:
        self.check(component(54, b"a/b", var=True))
        self.check(component(449, b"a/b", var=True))
        validate_multiaddr(component(400, b"/tmp/sock", var=True))

    def test_bad_p2p_values(self) -> None:
        self.check(component(421, b"\x12\x20" + bytes(31), var=True))
        self.check(component(421, SHA256_MH + b"\x00", var=True))
        self.check(component(421, b"\x11\x14" + bytes(20), var=True))
        self.check(component(421, b"\x00\x04abcd", var=True))


class TextTests(SynchronousTestCase):
    def test_bad_text(self) -> None:
        for text in (
            "",
            "ip4/1.2.3.4",
            "/ip4/1.2.3.4/tcp/99999",
            "/ip4/1.2.3.300",
            "/ip4",
            "/foo/1",
            "/p2p/Qmfoo",
            "/ip4/1.2.3.4/tcp/1/p2p/" + peer_id_to_text(SHA256_MH)[:-2],
            "/" * (MAX_MULTIADDR_TEXT + 1),
            "/dns4/" + "a" * 2100,
        ):
            self.assertRaises(InvalidMultiaddr, multiaddr_from_text, text)

    def test_unix(self) -> None:
        """A /unix path keeps its leading slash and takes the rest of the text, as in go."""
        for text, path in (
            ("/unix/tmp/sock", b"/tmp/sock"),
            ("/unix//tmp/sock", b"//tmp/sock"),
            ("/unix/%2Ftmp", b"/%2Ftmp"),
            ("/unix/a/ip4/1.2.3.4", b"/a/ip4/1.2.3.4"),
        ):
            data = multiaddr_from_text(text)
            self.assertEqual(data, component(400, path, var=True))
            self.assertEqual(multiaddr_to_text(data), text)
        data = multiaddr_from_text("/ip4/1.2.3.4/tcp/1/unix/x")
        self.assertEqual(data, bytes.fromhex("0401020304060001") + component(400, b"/x", True))
        self.assertEqual(multiaddr_to_text(data), "/ip4/1.2.3.4/tcp/1/unix/x")

    def test_unix_rejections(self) -> None:
        for text in ("/unix", "/unix/", "/unix/\udcff", "/ip4/1.2.3/unix/a"):
            self.assertRaises(InvalidMultiaddr, multiaddr_from_text, text)

    def test_unix_binary_forms(self) -> None:
        relative = component(400, b"tmp/sock", var=True)
        self.assertEqual(multiaddr_to_text(relative), "/unix/tmp/sock")
        trailing = component(400, b"/s", var=True) + IP4_TCP
        self.assertEqual(multiaddr_to_text(trailing), "/unix/s/ip4/1.2.3.4/tcp/4001")
