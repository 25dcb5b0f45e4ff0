"""Typed errors for refusals, one class per status."""

from __future__ import annotations

from rendezvous.model import Status


class RendezvousError(Exception):
    """The server refused a request."""

    status: int = 0

    def __init__(self, status: int, text: str) -> None:
        super().__init__(status, text)
        self.status = status
        self.text = text

    def __str__(self) -> str:
        try:
            name = Status(self.status).name
        except ValueError:
            name = "UNKNOWN"
        return f"{name} ({self.status}): {self.text}"


class InvalidNamespace(RendezvousError): ...


class InvalidPeerRecord(RendezvousError): ...


class NotAuthorized(RendezvousError): ...


class InternalError(RendezvousError): ...


class Unavailable(RendezvousError): ...


class InvalidMessage(RendezvousError): ...


class InvalidPeer(RendezvousError): ...


class LimitExceeded(RendezvousError): ...


class ConnectionClosed(Exception):
    """The connection ended before the answer came."""


_BY_STATUS: dict[int, type[RendezvousError]] = {
    Status.INVALID_NAMESPACE: InvalidNamespace,
    Status.INVALID_SIGNED_PEER_RECORD: InvalidPeerRecord,
    Status.NOT_AUTHORIZED: NotAuthorized,
    Status.INTERNAL_ERROR: InternalError,
    Status.UNAVAILABLE: Unavailable,
    Status.INVALID_MESSAGE: InvalidMessage,
    Status.INVALID_PEER: InvalidPeer,
    Status.LIMIT_EXCEEDED: LimitExceeded,
}


def error_for(status: int, text: str) -> RendezvousError:
    """The exception for a refusal status (`RendezvousError` itself for unknown ones)."""
    return _BY_STATUS.get(status, RendezvousError)(status, text)
