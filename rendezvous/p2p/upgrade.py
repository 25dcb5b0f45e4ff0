"""The upgrade of one libp2p connection, sans I/O: from raw bytes to a secured channel
on which yamux was agreed.

multistream-select `/noise` on the raw bytes (other proposals, such as go's
`/tls/1.0.0`, are answered ``na``), the Noise XX handshake (whose libp2p payload
proves the peer's identity, `rendezvous.p2p.noise.NoiseSession`), then
multistream-select `/yamux/1.0.0` inside Noise. `Upgrade` is fed the bytes that
arrived and returns what to do, in order: bytes to send (each read's replies are
best sent as one write) and `Event`\\ s. It knows no reactor and no transport: the
negotiation timeout is a `StartTimer` it asks for at `Upgrade.start`, and its driver
calls `Upgrade.timer_fired` should it expire first; every failure of the peer,
including too many bytes before the end, is a `Failed` (after the bytes to send
before closing). `rendezvous.p2p.connection.Connection` drives one over TCP.
"""

from __future__ import annotations

from rendezvous.p2p import noise, yamux
from rendezvous.p2p.keys import verify_identity
from rendezvous.p2p.multistream import Initiator, MultistreamError, Responder
from rendezvous.p2p.noise import Identity, NoiseError, NoiseSession, StaticKey, VerifyIdentity

_SECURITY, _HANDSHAKE, _MUXER, _DONE = range(4)


class UpgradeFailed(Exception):
    """The connection closed before it was secured and multiplexed."""


class StartTimer:
    """Call `Upgrade.timer_fired` after ``seconds``, unless `Upgraded` (or `Failed`)
    comes first: the timer is then no longer wanted."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


class Secured:
    """The Noise handshake is done: the peer proved it holds ``public_key``, whose
    peer id is ``peer_id``."""

    __slots__ = ("peer_id", "public_key")

    def __init__(self, peer_id: bytes, public_key: bytes) -> None:
        self.peer_id = peer_id
        self.public_key = public_key


class Upgraded:
    """yamux was agreed: ``noise`` carries the connection's transport ciphers from now
    on, and ``chunks`` are the plaintext bytes (yamux frames) that came after the
    agreement, in order. The upgrade is over; the negotiation timer is no longer
    wanted."""

    __slots__ = ("chunks", "noise")

    def __init__(self, noise: NoiseSession, chunks: list[bytes]) -> None:
        self.noise = noise
        self.chunks = chunks


class Failed:
    """The upgrade failed (``reason``): close the connection once the bytes before this
    are sent."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


Event = StartTimer | Secured | Upgraded | Failed
Output = bytes | Event
"""What `Upgrade` returns: bytes to send, or an event."""


class Upgrade:
    """One connection's upgrade, dialled (``dialer``) or accepted.

    ``identity`` and ``static``: our libp2p key and the static Noise key with its
    signed payload; ``expected_peer_id``: the peer a dialler means to reach (the
    handshake fails if another answers); ``timeout``: seconds the whole upgrade may
    take; ``max_bytes``: bytes the peer may send before it is done."""

    __slots__ = (
        "_dialer",
        "_expected_peer_id",
        "_identity",
        "_max_bytes",
        "_negotiator",
        "_noise",
        "_received",
        "_state",
        "_static",
        "_timeout",
        "_verify",
    )

    def __init__(
        self,
        *,
        dialer: bool,
        identity: Identity,
        static: StaticKey,
        timeout: float,
        max_bytes: int,
        expected_peer_id: bytes | None = None,
        verify: VerifyIdentity = verify_identity,
    ) -> None:
        self._dialer = dialer
        self._identity = identity
        self._static = static
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._expected_peer_id = expected_peer_id
        self._verify = verify
        self._state = _SECURITY
        self._received = 0
        self._noise: NoiseSession | None = None
        self._negotiator: Initiator | Responder = (
            Initiator([noise.PROTOCOL_ID]) if dialer else Responder([noise.PROTOCOL_ID])
        )

    @property
    def done(self) -> bool:
        """True once the upgrade is over, `Upgraded` or `Failed`."""
        return self._state == _DONE

    def start(self) -> list[Output]:
        """The first bytes to send (our multistream header, and a dialler's proposal)
        and the negotiation timer."""
        return [self._negotiator.start(), StartTimer(self._timeout)]

    def receive(self, data: bytes) -> list[Output]:
        """Feed the bytes that arrived; what to do, in order."""
        out: list[Output] = []
        if self._state == _DONE:
            return out
        try:
            self._receive(data, out)
        except (MultistreamError, NoiseError, UpgradeFailed) as error:
            self._state = _DONE
            out.append(Failed(str(error)))
        return out

    def timer_fired(self) -> list[Output]:
        """The timer asked for at `start` expired."""
        if self._state == _DONE:
            return []
        self._state = _DONE
        return [Failed("negotiation timed out")]

    def _receive(self, data: bytes, out: list[Output]) -> None:
        self._received += len(data)
        if self._received > self._max_bytes:
            raise UpgradeFailed("too many bytes before the connection was ready")
        state = self._state
        if state == _SECURITY:
            negotiator = self._negotiator
            reply = negotiator.feed(data)
            if reply:
                out.append(reply)
            if negotiator.selected is None:
                return
            data = negotiator.leftover
            self._start_noise(out)
            state = _HANDSHAKE
        session = self._noise
        assert session is not None
        if state == _HANDSHAKE:
            reply = session.receive_handshake(data)
            if reply:
                out.append(reply)
            if not session.complete:
                return
            self._secured(session, out)
            chunks = session.decrypt_frames(b"")
        else:
            chunks = session.decrypt_frames(data)
        negotiator = self._negotiator
        reply = negotiator.feed(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        if reply:
            out += session.encrypt_frames(reply)
        if negotiator.selected is None:
            return
        self._state = _DONE
        leftover = negotiator.leftover
        out.append(Upgraded(session, [leftover] if leftover else []))

    def _start_noise(self, out: list[Output]) -> None:
        self._state = _HANDSHAKE
        session = NoiseSession(
            initiator=self._dialer,
            identity=self._identity,
            verify_identity=self._verify,
            expected_peer_id=self._expected_peer_id,
            static=self._static,
        )
        self._noise = session
        first = session.start()
        if first:
            out.append(first)

    def _secured(self, session: NoiseSession, out: list[Output]) -> None:
        assert session.remote_peer_id is not None and session.remote_public_key is not None
        out.append(Secured(session.remote_peer_id, session.remote_public_key))
        self._state = _MUXER
        negotiator: Initiator | Responder
        if self._dialer:
            negotiator = Initiator([yamux.PROTOCOL_ID])
        else:
            negotiator = Responder([yamux.PROTOCOL_ID])
        self._negotiator = negotiator
        out += session.encrypt_frames(negotiator.start())
