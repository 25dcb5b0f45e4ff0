"""Fuzz circuit relay v2 messages: the four pure state machines that read them.

The same reads go to the relay's `HopServer` (a stranger's RESERVE or CONNECT) and
`StopDialer` (a target's answer), and to the client's `HopClient` (a relay's STATUS)
and `StopListener` (a relay's CONNECT). The servers' sides answer everything with a
request or a refusal and raise nothing; the clients' sides may raise only
`MalformedMessage`. Until a message is whole none holds more than one message's worth.
"""

from __future__ import annotations

from _harness import chunks, instrumented, main, whole

with instrumented("rendezvous"):
    from rendezvous.p2p.keys import PrivateKey
    from rendezvous.pb.circuit_pb2 import HopMessage, Limit, StopMessage
    from rendezvous.relay import hop, stop
    from rendezvous.relay.codec import MAX_MESSAGE_BYTES, MalformedMessage, frame, status_name
    from rendezvous.relay.hop import (
        BadRequest,
        ConnectRequest,
        HopClient,
        HopServer,
        ReserveRequest,
    )
    from rendezvous.relay.stop import StopConnect, StopDialer, StopListener, StopRefusal

HELD = MAX_MESSAGE_BYTES + 10


def _servers(data: bytes) -> None:
    hop_server = HopServer()
    stop_listener = StopListener()
    for piece in chunks(data):
        request = hop_server.feed(piece)
        if hop_server.request is None:
            assert hop_server.buffered <= HELD
        if request is not None:
            assert isinstance(request, ReserveRequest | ConnectRequest | BadRequest)
            if isinstance(request, BadRequest):
                status_name(request.status)
        answer = stop_listener.feed(piece)
        if answer is not None:
            assert isinstance(answer, StopConnect | StopRefusal)
    hop_server.leftover()
    stop_listener.leftover()


def _clients(data: bytes) -> None:
    for machine in (HopClient(), StopDialer()):
        try:
            for piece in chunks(data):
                answer = machine.feed(piece)
                if answer is None and machine._reader.buffered > HELD:
                    done = getattr(machine, "response", getattr(machine, "status", None))
                    assert done is not None, "holds too much before the answer"
                if isinstance(answer, HopMessage):
                    status_name(answer.status)
        except MalformedMessage:
            pass


def test_one_input(data: bytes) -> None:
    _servers(data)
    _clients(data)


def seeds() -> list[bytes]:
    limit = Limit(duration=120, data=1 << 17)
    peer = PrivateKey.from_seed(bytes(32)).peer_id()
    return [
        whole(hop.reserve_request()),
        whole(hop.connect_request(peer) + b"relayed bytes"),
        b"\x02" + hop.reservation_ok(1700000000, [b"\x04\x7f\x00\x00\x01"], b"\x0a\x00", limit),
        whole(hop.connect_ok(limit)),
        whole(stop.connect_message(peer, limit) + b"early"),
        whole(frame(StopMessage(type=StopMessage.STATUS, status=100))),  # type: ignore[arg-type]
        whole(frame(HopMessage(type=HopMessage.STATUS, status=204))),  # type: ignore[arg-type]
    ]


if __name__ == "__main__":
    main(test_one_input, seeds)
