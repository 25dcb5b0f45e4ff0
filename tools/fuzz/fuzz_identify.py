"""Fuzz identify (`/ipfs/id/1.0.0` answers and `/ipfs/id/push/1.0.0` pushes): what a
peer sends is merged from uvarint-delimited messages by `identify.decode`, which may
raise only `IdentifyError`; the fields the host reads from the result must read.
"""

from __future__ import annotations

from _harness import instrumented, main

with instrumented("rendezvous"):
    from rendezvous.p2p.identify import IdentifyError, decode, encode
    from rendezvous.p2p.keys import PrivateKey
    from rendezvous.pb.identify_pb2 import Identify


def test_one_input(data: bytes) -> None:
    try:
        message = decode(data)
    except IdentifyError:
        return
    for field in ("publicKey", "observedAddr", "signedPeerRecord"):
        if message.HasField(field):
            assert isinstance(getattr(message, field), bytes)
    list(message.listenAddrs)
    list(message.protocols)
    str(message.agentVersion)


def seeds() -> list[bytes]:
    key = PrivateKey.from_seed(bytes(32))
    message = Identify(
        publicKey=key.public_key_bytes(),
        listenAddrs=[bytes.fromhex("047f000001060fa1")],
        protocols=["/ipfs/id/1.0.0", "/rendezvous/1.0.0"],
        observedAddr=bytes.fromhex("047f000001060fa2"),
        protocolVersion="ipfs/0.1.0",
        agentVersion="rendezvous/1",
        signedPeerRecord=b"\x0a\x00",
    )
    first = Identify(protocols=["/a"])
    return [encode(message), encode(first) + encode(Identify(agentVersion="go-libp2p"))]


if __name__ == "__main__":
    main(test_one_input, seeds)
