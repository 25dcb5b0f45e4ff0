"""The pure multiplexed connection (rendezvous.p2p.muxed): Noise messages and yamux
frames in, stream events and bytes out, each stream's protocol agreed; no reactor."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from rendezvous.p2p.keys import PrivateKey
from rendezvous.p2p.muxed import ConnectionMachine, Event, Negotiated, NotNegotiated, StreamTimer
from rendezvous.p2p.noise import MAX_PLAINTEXT_LEN
from rendezvous.p2p.upgrade import Upgraded
from rendezvous.p2p.yamux import DataReceived, SendBufferDrained, StreamEnded, StreamReset
from tests.test_p2p_upgrade import machine, of_type, run

ECHO = "/echo/1.0.0"
TIMEOUT = 10.0


def pair() -> tuple[ConnectionMachine, ConnectionMachine]:
    """A dialler's and a listener's machines, after an upgrade in memory; the listener
    serves `ECHO`."""
    seen_d, seen_l = run(
        machine(PrivateKey.generate(), dialer=True), machine(PrivateKey.generate(), dialer=False)
    )
    [up_d] = of_type(seen_d, Upgraded)
    [up_l] = of_type(seen_l, Upgraded)
    dialer = ConnectionMachine(up_d.noise, dialer=True, handlers=[], timeout=TIMEOUT, max_streams=8)
    listener = ConnectionMachine(
        up_l.noise, dialer=False, handlers=[ECHO], timeout=TIMEOUT, max_streams=8
    )
    return dialer, listener


def carry(source: ConnectionMachine, destination: ConnectionMachine) -> list[Event]:
    """What ``source`` has to send, received by ``destination``."""
    return destination.receive(b"".join(source.data_to_send()))


def kinds(events: list[Any]) -> list[type]:
    return [type(event) for event in events]


class ConnectionMachineTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dialer, self.listener = pair()

    def test_stream_agreed_with_early_bytes(self) -> None:
        """An outbound stream proposes its protocol with its first bytes; the listener
        asks for the stream's timer, agrees and gets those bytes with the agreement;
        then data goes both ways and the stream closes."""
        timer = self.dialer.open_stream(ECHO, b"hello")
        self.assertEqual(timer.seconds, TIMEOUT)
        stream_id = timer.stream_id
        events = carry(self.dialer, self.listener)
        self.assertEqual(kinds(events), [StreamTimer, Negotiated])
        self.assertEqual(events[0].stream_id, stream_id)  # type: ignore[union-attr]
        negotiated = events[1]
        assert isinstance(negotiated, Negotiated)
        self.assertEqual(
            (negotiated.stream_id, negotiated.protocol_id, negotiated.leftover),
            (stream_id, ECHO, b"hello"),
        )
        self.listener.write(stream_id, b"HELLO")
        self.listener.close(stream_id)
        events = carry(self.listener, self.dialer)
        self.assertEqual(kinds(events), [Negotiated, DataReceived, StreamEnded])
        self.assertEqual(events[1], DataReceived(stream_id, b"HELLO"))
        self.dialer.close(stream_id)
        self.assertEqual(carry(self.dialer, self.listener), [StreamEnded(stream_id)])
        self.assertFalse(self.dialer.has_stream(stream_id))
        self.assertFalse(self.listener.has_stream(stream_id))
        self.assertEqual(self.dialer.timer_fired(stream_id), [])

    def test_unsupported_protocol(self) -> None:
        """A protocol the peer does not serve is answered na: not negotiated."""
        stream_id = self.dialer.open_stream("/nope/1").stream_id
        self.assertEqual(kinds(carry(self.dialer, self.listener)), [StreamTimer])
        [failed] = carry(self.listener, self.dialer)
        assert isinstance(failed, NotNegotiated)
        self.assertEqual(failed.stream_id, stream_id)
        self.assertIn("none of the proposed protocols", failed.reason)
        self.assertFalse(self.dialer.has_stream(stream_id))
        [gone] = carry(self.dialer, self.listener)  # our reset ends the peer's agreement
        self.assertEqual((type(gone), gone.stream_id), (NotNegotiated, stream_id))  # type: ignore[union-attr]
        self.assertEqual(gone.reason, "the peer reset the stream")  # type: ignore[union-attr]

    def test_negotiation_timer(self) -> None:
        """The timer of a stream still being agreed resets it; the peer hears so."""
        stream_id = self.dialer.open_stream("/nope/1").stream_id
        self.dialer.data_to_send()  # lost on the way: the listener never hears of it
        [failed] = self.dialer.timer_fired(stream_id)
        assert isinstance(failed, NotNegotiated)
        self.assertEqual(failed.reason, "protocol negotiation timed out")
        self.assertFalse(self.dialer.has_stream(stream_id))
        self.assertEqual(self.dialer.timer_fired(stream_id), [])

    def test_peer_closes_while_agreeing(self) -> None:
        stream_id = self.dialer.open_stream(ECHO[:-1]).stream_id  # a prefix: not served
        self.dialer.close(stream_id)
        events = carry(self.dialer, self.listener)
        self.assertEqual(kinds(events), [StreamTimer, NotNegotiated])
        self.assertEqual(events[1].reason, "the peer closed the stream")  # type: ignore[union-attr]

    def test_inbound_stream_gone_in_the_same_batch(self) -> None:
        """A stream opened and reset in one read is never agreed: no timer."""
        stream_id = self.dialer.open_stream(ECHO).stream_id
        self.dialer.reset(stream_id)
        events = carry(self.dialer, self.listener)
        self.assertEqual(of_type(events, StreamTimer) + of_type(events, Negotiated), [])
        self.assertFalse(self.listener.has_stream(stream_id))

    def test_flow_control(self) -> None:
        """Writes past the peer's window wait, and `SendBufferDrained` says when they
        went; each Noise message carries at most one full plaintext."""
        stream_id = self.dialer.open_stream(ECHO).stream_id
        carry(self.dialer, self.listener)
        carry(self.listener, self.dialer)
        data = b"x" * (600 * 1024)
        buffered = self.dialer.write(stream_id, data)
        self.assertGreater(buffered, 0)
        self.assertEqual(self.dialer.buffered(stream_id), buffered)
        received = bytearray()
        drained = False
        for _ in range(20):
            pieces = self.dialer.data_to_send()
            for length, body in zip(pieces[::2], pieces[1::2], strict=True):
                self.assertLessEqual(len(body), MAX_PLAINTEXT_LEN + 16)
                self.assertEqual(int.from_bytes(length, "big"), len(body))
            for event in self.listener.receive(b"".join(pieces)):
                if isinstance(event, DataReceived):
                    received += event.data
            events = carry(self.listener, self.dialer)
            drained = drained or SendBufferDrained(stream_id) in events
            if len(received) == len(data):
                break
        self.assertEqual(bytes(received), data)
        self.assertTrue(drained)
        self.assertEqual(self.dialer.buffered(stream_id), 0)

    def test_reading_paused(self) -> None:
        """Data of a paused stream is held and comes out on resume."""
        stream_id = self.dialer.open_stream(ECHO).stream_id
        carry(self.dialer, self.listener)
        self.listener.pause_reading(stream_id)
        self.dialer.write(stream_id, b"held")
        self.assertEqual(carry(self.dialer, self.listener), [])
        self.assertEqual(
            self.listener.resume_reading(stream_id), [DataReceived(stream_id, b"held")]
        )

    def test_small_write_is_one_piece(self) -> None:
        stream_id = self.dialer.open_stream(ECHO).stream_id
        self.assertEqual(len(self.dialer.data_to_send()), 1)
        self.dialer.write(stream_id, b"y" * 10_000)
        self.assertEqual(len(self.dialer.data_to_send()), 2)  # length, ciphertext
        self.assertEqual(self.dialer.data_to_send(), [])

    def test_peer_resets(self) -> None:
        stream_id = self.dialer.open_stream(ECHO).stream_id
        carry(self.dialer, self.listener)
        self.listener.reset(stream_id)
        events = carry(self.listener, self.dialer)
        self.assertEqual(kinds(events), [Negotiated, StreamReset])
