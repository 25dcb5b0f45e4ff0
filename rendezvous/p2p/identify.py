"""identify `/ipfs/id/1.0.0`: tell a peer who we are, and ask a peer who it is;
identify push `/ipfs/id/push/1.0.0`: tell a peer, unasked, that this changed.

The answer is one uvarint-delimited ``Identify`` protobuf written on a stream the
asking peer opened, then the stream is closed. A peer may split its answer into
several messages (go sends the signed record second): they are merged. A push is the
same message on a stream the pushing peer opens; what a peer pushes is kept, merged,
for as long as its connection lives.
"""

from __future__ import annotations

from typing import Final

from google.protobuf.message import DecodeError
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from rendezvous.p2p.interfaces import LocalHost
from rendezvous.p2p.stream import PeerConnection, Stream, StreamProtocol
from rendezvous.pb.identify_pb2 import Identify
from rendezvous.varint import VarintError, decode_uvarint, encode_uvarint

PROTOCOL_ID: Final = "/ipfs/id/1.0.0"
PUSH_PROTOCOL_ID: Final = "/ipfs/id/push/1.0.0"
MAX_MESSAGE_BYTES: Final = 8 * 1024
MAX_ANSWER_BYTES: Final = 64 * 1024


class IdentifyError(Exception):
    """The peer's identify answer is malformed or too large."""


def identify_message(host: LocalHost, observed_addr: bytes | None) -> Identify:
    """What we tell a peer about ourselves."""
    message = Identify(
        publicKey=host.identity.public_key_bytes(),
        listenAddrs=host.listen_addrs,
        protocols=sorted(host.handlers),
        protocolVersion=host.protocol_version,
        agentVersion=host.agent_version,
        signedPeerRecord=host.signed_peer_record(),
    )
    if observed_addr is not None:
        message.observedAddr = observed_addr
    return message


def encode(message: Identify) -> bytes:
    payload = message.SerializeToString()
    return encode_uvarint(len(payload)) + payload


def decode(data: bytes) -> Identify:
    """Merge the uvarint-delimited messages of ``data``; raises `IdentifyError`."""
    message = Identify()
    offset = 0
    while offset < len(data):
        try:
            decoded = decode_uvarint(data, offset)
        except VarintError as error:
            raise IdentifyError(str(error)) from None
        if decoded is None:
            raise IdentifyError("truncated identify message")
        length, start = decoded
        if length > MAX_MESSAGE_BYTES or start + length > len(data):
            raise IdentifyError("identify message too long or truncated")
        try:
            message.MergeFromString(data[start : start + length])
        except DecodeError:
            raise IdentifyError("malformed identify message") from None
        offset = start + length
    return message


class IdentifyResponder(StreamProtocol):
    """Answers a peer's identify request and closes the stream."""

    def __init__(self, host: LocalHost) -> None:
        self.host = host

    def stream_started(self, stream: Stream) -> None:
        super().stream_started(stream)
        remote = stream.connection.remote_address
        observed = remote.binary() if remote is not None else None
        stream.write(encode(identify_message(self.host, observed)))
        stream.close()


class _IdentifyRequest(StreamProtocol):
    def __init__(self) -> None:
        self.answer: Deferred[Identify] = Deferred()
        self._received = bytearray()

    def data_received(self, data: bytes) -> None:
        self._received += data
        if len(self._received) > MAX_ANSWER_BYTES:
            assert self.stream is not None
            self.stream.reset()

    def end_received(self) -> None:
        if self.answer.called:
            return
        try:
            message = decode(bytes(self._received))
        except IdentifyError as error:
            self.answer.errback(error)
        else:
            self.answer.callback(message)
        assert self.stream is not None
        self.stream.close()

    def stream_closed(self, reason: str | None) -> None:
        if not self.answer.called:
            self.answer.errback(IdentifyError(f"identify stream closed: {reason}"))


def identify(connection: PeerConnection) -> Deferred[Identify]:
    """Ask the peer of ``connection`` to identify itself."""
    request = _IdentifyRequest()
    opened = connection.open_stream(PROTOCOL_ID, request)

    def answered(_: Stream) -> Deferred[Identify]:
        return request.answer

    return opened.addCallback(answered)


class IdentifyPushReceiver(StreamProtocol):
    """Takes a peer's identify push and keeps it for the connection (`Host.pushed`)."""

    log = Logger()

    def __init__(self, host: LocalHost) -> None:
        self.host = host
        self._received = bytearray()

    def data_received(self, data: bytes) -> None:
        self._received += data
        if len(self._received) > MAX_ANSWER_BYTES:
            assert self.stream is not None
            self.stream.reset()

    def end_received(self) -> None:
        stream = self.stream
        assert stream is not None
        try:
            message = decode(bytes(self._received))
        except IdentifyError as error:
            self.log.debug("bad identify push: {error}", error=error, event="identify.bad_push")
            stream.reset()
            return
        if (
            message.HasField("publicKey")
            and message.publicKey != stream.connection.remote_public_key
        ):
            self.log.debug("identify push with another peer's key", event="identify.bad_push")
            stream.reset()
            return
        known = self.host.pushed.get(stream.connection)
        if known is None:
            self.host.pushed[stream.connection] = message
        else:
            # Repeated fields are replaced, not appended: a push says what is true now.
            for field in ("listenAddrs", "protocols"):
                if getattr(message, field):
                    known.ClearField(field)
            known.MergeFrom(message)
        stream.close()


def push_identify(host: LocalHost, connection: PeerConnection) -> Deferred[None]:
    """Tell the peer of ``connection`` what we are now (our addresses changed)."""
    pusher = StreamProtocol()
    opened = connection.open_stream(PUSH_PROTOCOL_ID, pusher)

    def send(stream: Stream) -> None:
        remote = connection.remote_address
        stream.write(encode(identify_message(host, remote.binary() if remote else None)))
        stream.close()

    return opened.addCallback(send)
