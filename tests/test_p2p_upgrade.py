"""The pure upgrade machine (rendezvous.p2p.upgrade): bytes in, bytes and events out,
no reactor and no transport."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from rendezvous.p2p import noise
from rendezvous.p2p.keys import PrivateKey
from rendezvous.p2p.multistream import PROTOCOL_ID, encode_message
from rendezvous.p2p.noise import StaticKey
from rendezvous.p2p.upgrade import (
    Failed,
    Output,
    Secured,
    StartTimer,
    Upgrade,
    Upgraded,
)
from rendezvous.p2p.yamux import DataReceived, StreamOpened, YamuxSession

TIMEOUT = 15.0
MAX_BYTES = 256 * 1024


def machine(
    key: PrivateKey,
    *,
    dialer: bool,
    static: StaticKey | None = None,
    expected_peer_id: bytes | None = None,
    max_bytes: int = MAX_BYTES,
) -> Upgrade:
    return Upgrade(
        dialer=dialer,
        identity=key,
        static=static if static is not None else StaticKey(key),
        timeout=TIMEOUT,
        max_bytes=max_bytes,
        expected_peer_id=expected_peer_id,
    )


def sent(outputs: list[Output]) -> bytes:
    return b"".join(output for output in outputs if isinstance(output, bytes))


def events(outputs: list[Output]) -> list[Output]:
    return [output for output in outputs if not isinstance(output, bytes)]


def of_type(outputs: list[Output], kind: type[Any]) -> list[Any]:
    return [output for output in outputs if isinstance(output, kind)]


def run(dialer: Upgrade, listener: Upgrade) -> tuple[list[Output], list[Output]]:
    """Carry each side's bytes to the other, one flight at a time, until neither has
    anything to say; every output each side gave, in order."""
    seen_d = dialer.start()
    seen_l = listener.start()
    to_l, to_d = sent(seen_d), sent(seen_l)
    while to_l or to_d:
        out_l = listener.receive(to_l) if to_l else []
        out_d = dialer.receive(to_d) if to_d else []
        seen_l += out_l
        seen_d += out_d
        to_l, to_d = sent(out_d), sent(out_l)
    return seen_d, seen_l


class UpgradeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dialer_key = PrivateKey.generate()
        self.listener_key = PrivateKey.generate()

    def test_full_upgrade_in_memory(self) -> None:
        """Two machines agree on Noise, authenticate each other and agree on yamux;
        their Noise sessions then carry yamux frames."""
        dialer = machine(self.dialer_key, dialer=True)
        listener = machine(self.listener_key, dialer=False)
        seen_d, seen_l = run(dialer, listener)
        for seen, peer in ((seen_d, self.listener_key), (seen_l, self.dialer_key)):
            kinds = [type(event) for event in events(seen)]
            self.assertEqual(kinds, [StartTimer, Secured, Upgraded])
            [secured] = of_type(seen, Secured)
            self.assertEqual(secured.peer_id, peer.peer_id())
            self.assertEqual(secured.public_key, peer.public_key_bytes())
        self.assertTrue(dialer.done)
        self.assertTrue(listener.done)
        [up_d] = of_type(seen_d, Upgraded)
        [up_l] = of_type(seen_l, Upgraded)
        self.assertEqual((up_d.chunks, up_l.chunks), ([], []))

        mux_d = YamuxSession(dialer=True)
        mux_l = YamuxSession(dialer=False)
        stream_id = mux_d.open_stream()
        mux_d.write(stream_id, b"hello")
        wire = b"".join(up_d.noise.encrypt_frames(mux_d.data_to_send()))
        received = mux_l.feed_chunks(up_l.noise.decrypt_frames(wire))
        self.assertIsInstance(received[0], StreamOpened)
        self.assertEqual(
            [event.data for event in received if isinstance(event, DataReceived)], [b"hello"]
        )

    def test_frames_with_the_agreement(self) -> None:
        """Bytes sent right after the yamux agreement come out of `Upgraded`."""
        dialer = machine(self.dialer_key, dialer=True)
        listener = machine(self.listener_key, dialer=False)
        to_l = sent(dialer.start())
        to_d = sent(listener.start())
        last_from_l = b""
        while to_l or to_d:
            out_l = listener.receive(to_l) if to_l else []
            if of_type(out_l, Upgraded):
                [upgraded] = of_type(out_l, Upgraded)
                extra = b"".join(upgraded.noise.encrypt_frames(b"yamux frames"))
                last_from_l = sent(out_l) + extra
                out_l = [last_from_l]
            out_d = dialer.receive(to_d) if to_d else []
            if of_type(out_d, Upgraded):
                [upgraded] = of_type(out_d, Upgraded)
                self.assertEqual(b"".join(upgraded.chunks), b"yamux frames")
                return
            to_l, to_d = sent(out_d), sent(out_l)
        self.fail("the dialer was never upgraded")

    def test_bytes_split_anywhere(self) -> None:
        """The same upgrade, each flight fed one byte at a time."""
        dialer = machine(self.dialer_key, dialer=True)
        listener = machine(self.listener_key, dialer=False)
        to_l, to_d = sent(dialer.start()), sent(listener.start())
        upgraded = 0
        while to_l or to_d:
            out_l = [o for i in range(len(to_l)) for o in listener.receive(to_l[i : i + 1])]
            out_d = [o for i in range(len(to_d)) for o in dialer.receive(to_d[i : i + 1])]
            upgraded += len(of_type(out_l + out_d, Upgraded))
            self.assertEqual(of_type(out_l + out_d, Failed), [])
            to_l, to_d = sent(out_d), sent(out_l)
        self.assertEqual(upgraded, 2)

    def test_timer_asked_for_at_start(self) -> None:
        """start asks for the negotiation timer; should it expire, the upgrade fails,
        and nothing after is heard."""
        listener = machine(self.listener_key, dialer=False)
        start = listener.start()
        self.assertEqual(sent(start), encode_message(PROTOCOL_ID))
        [timer] = of_type(start, StartTimer)
        self.assertEqual(timer.seconds, TIMEOUT)
        [failed] = listener.timer_fired()
        assert isinstance(failed, Failed)
        self.assertEqual(failed.reason, "negotiation timed out")
        self.assertTrue(listener.done)
        self.assertEqual(listener.receive(encode_message(PROTOCOL_ID)), [])
        self.assertEqual(listener.timer_fired(), [])

    def test_timer_after_the_upgrade(self) -> None:
        dialer = machine(self.dialer_key, dialer=True)
        listener = machine(self.listener_key, dialer=False)
        run(dialer, listener)
        self.assertEqual(dialer.timer_fired(), [])

    def test_byte_cap(self) -> None:
        """Up to max_bytes before the end are taken; one more fails the upgrade."""
        listener = machine(self.listener_key, dialer=False, max_bytes=10)
        listener.start()
        header = encode_message(PROTOCOL_ID)
        self.assertEqual(listener.receive(header[:10]), [])
        [failed] = listener.receive(header[10:11])
        assert isinstance(failed, Failed)
        self.assertEqual(failed.reason, "too many bytes before the connection was ready")
        self.assertTrue(listener.done)

    def test_tls_refused_then_noise(self) -> None:
        """Another security protocol is answered na; the next proposal may be Noise."""
        listener = machine(self.listener_key, dialer=False)
        listener.start()
        out = listener.receive(encode_message(PROTOCOL_ID) + encode_message("/tls/1.0.0"))
        self.assertEqual(out, [encode_message("na")])
        out = listener.receive(encode_message(noise.PROTOCOL_ID))
        self.assertEqual(out, [encode_message(noise.PROTOCOL_ID)])

    def test_replies_before_a_failure_are_kept(self) -> None:
        """What the machine answered before it failed comes first, then `Failed`: here
        Noise is agreed, then the handshake's first message is too short."""
        listener = machine(self.listener_key, dialer=False)
        listener.start()
        agreed = encode_message(PROTOCOL_ID) + encode_message(noise.PROTOCOL_ID)
        out = listener.receive(agreed + b"\x00\x03abc")
        self.assertEqual(out[:-1], [encode_message(noise.PROTOCOL_ID)])
        self.assertIsInstance(out[-1], Failed)
        self.assertTrue(listener.done)

    def test_garbage(self) -> None:
        """Something else than multistream-select fails the upgrade."""
        listener = machine(self.listener_key, dialer=False)
        listener.start()
        [failed] = listener.receive(encode_message("/http/1.1"))
        assert isinstance(failed, Failed)
        self.assertIn("unexpected header", failed.reason)

    def _handshake_fails(self, static: StaticKey, reason: str) -> None:
        dialer = machine(self.dialer_key, dialer=True, static=static)
        listener = machine(self.listener_key, dialer=False)
        seen_d, seen_l = run(dialer, listener)
        [failed] = of_type(seen_l, Failed)
        self.assertEqual(failed.reason, reason)
        self.assertEqual(of_type(seen_l, Secured), [])
        self.assertEqual(of_type(seen_d, Upgraded), [])

    def test_bad_handshake_signature(self) -> None:
        """A payload signed over another static key does not prove the one used."""
        static = StaticKey(self.dialer_key)
        static.payload = StaticKey(self.dialer_key).payload
        self._handshake_fails(static, "the peer's identity signature does not verify")

    def test_malformed_handshake_payload(self) -> None:
        static = StaticKey(self.dialer_key)
        static.payload = b"\xff\xff"
        self._handshake_fails(static, "malformed handshake payload")

    def test_payload_without_identity(self) -> None:
        static = StaticKey(self.dialer_key)
        static.payload = b""
        self._handshake_fails(static, "handshake payload lacks the identity key or signature")

    def test_wrong_peer(self) -> None:
        """A dialler that meets another peer than the one it dialled fails."""
        other = PrivateKey.generate()
        dialer = machine(self.dialer_key, dialer=True, expected_peer_id=other.peer_id())
        listener = machine(self.listener_key, dialer=False)
        seen_d, _ = run(dialer, listener)
        [failed] = of_type(seen_d, Failed)
        self.assertEqual(failed.reason, "the peer is not the one we dialled")
        self.assertEqual(of_type(seen_d, Secured), [])
