"""Memory per signed TTL registration, in process: what the registry and the models keep.

``--registrations`` peers, each with its own Ed25519 key and a signed peer record sealed
beforehand, REGISTER in namespace ``bench`` the way the standard dialect handles it: the
REGISTER message is parsed by the standard codec for the peer's authenticated id (a bytes
object of the connection's, as the daemon has), and the registry holds what it returns
until the TTL ends (each registration its own expiry time on a clock that moves on).
tracemalloc counts what that leaves allocated after a full collection, divided by the
number of registrations: the record itself (as parsed from the message, the one copy the
registration keeps), and everything the registry and the models add to it. The codec's
cache of recently opened records (1,024 entries) is part of it, a fixed share that the
default size makes small. The tracemalloc lines that grew most follow.

Fast and deterministic (the same figure run after run): the tool to iterate with. The
daemon's RSS growth per registration, measured from outside, is scenario 5's
``bench/libp2p_path.py`` (docs/benchmarks.rst).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rendezvous.limits import Limits
from rendezvous.p2p.envelope import PeerRecord, seal_peer_record
from rendezvous.p2p.keys import PrivateKey, peer_id_from_public_key_bytes
from rendezvous.pb.rendezvous_pb2 import Message
from rendezvous.registry import Registry
from rendezvous.standard.codec import RegisterRequest, StandardCodec

NAMESPACE = "bench"
TTL = 7200


def register_message(key: PrivateKey, i: int) -> bytes:
    """A REGISTER of a signed record with one address, ``/ip4/10.0.x.y/tcp/4001``."""
    address = bytes([4, 10, 0, i // 250 % 250, i % 250, 6, 0x0F, 0xA1])
    record = seal_peer_record(key, PeerRecord(key.peer_id(), 1, (address,)))
    message = Message(type=Message.REGISTER)
    message.register.ns = NAMESPACE
    message.register.signedPeerRecord = record
    message.register.ttl = TTL
    return message.SerializeToString()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--registrations", type=int, default=20_000, help="peers registered")
    parser.add_argument("--top", type=int, default=12, help="tracemalloc lines shown")
    parser.add_argument("--quick", action="store_true", help="2,000 registrations")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to PATH")
    args = parser.parse_args()
    count = 2_000 if args.quick else args.registrations

    keys = [PrivateKey.from_seed(i.to_bytes(8, "big") * 4) for i in range(count)]
    messages = [register_message(key, i) for i, key in enumerate(keys)]
    serialized = [key.public_key_bytes() for key in keys]
    codec = StandardCodec(Limits(max_registrations=10**7))
    registry = Registry(codec.limits)
    now = 1_000_000.0

    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    start = tracemalloc.get_traced_memory()[0]
    record_bytes = 0
    for i, message in enumerate(messages):
        identity = peer_id_from_public_key_bytes(serialized[i])  # the connection's
        _, request = codec.parse(message, identity)
        assert type(request) is RegisterRequest, request
        record = request.peer.signed_peer_record
        assert record is not None
        record_bytes += sys.getsizeof(record)
        now += 0.001
        registry.register_ttl(identity, request.namespace, request.peer, now + request.ttl)
    del identity, request, record
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - start
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()

    assert registry.registration_count == count
    per, record = held / count, record_bytes / count
    print(f"{count:,} signed TTL registrations held, per registration:")
    print(f"  {per:6.0f} bytes in all")
    print(f"  {record:6.0f} bytes of them the signed record itself (a bytes object)")
    print(f"  {per - record:6.0f} bytes the registry and the models add")
    print(f"\ntracemalloc, the {args.top} lines that grew most:")
    for stat in after.compare_to(before, "lineno")[: args.top]:
        print(f"  {stat}")
    if args.json:
        figures = {"registrations": count, "bytes_per_registration": per, "record_bytes": record}
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
