"""CPU per standard-dialect request, in process: REGISTER, its refresh, DISCOVER, expiry.

The standard dialect's sessions over the in-memory store, fed REGISTER and DISCOVER frames
as a libp2p stream would hand them over (no Noise, no yamux, no sockets), on a fake clock:

- ``--registrations`` peers, each with its own Ed25519 key and signed peer record sealed
  beforehand, open a session and REGISTER in namespace ``bench`` (a new record: its
  signature is verified);
- ``--peers`` of them register their record again, ``--repeats`` times each (a refresh:
  the same bytes, known to the codec);
- DISCOVER ``bench`` with limit 64 among those held, in the spec's layout, ``--repeats``
  times per peer;
- the clock moves past the TTL and every registration expires.

Each figure is process CPU time per request (or per registration expired), the median
of ``--rounds`` rounds. Quick, so before/after comparisons can interleave runs of two
trees (copy this file into the other tree's bench/ and run both in turn).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet.task import Clock

from rendezvous.framing import frame
from rendezvous.limits import Limits
from rendezvous.loglimit import LogLimiter
from rendezvous.p2p.envelope import PeerRecord, seal_peer_record
from rendezvous.p2p.keys import PrivateKey
from rendezvous.pb.rendezvous_pb2 import Message
from rendezvous.standard.codec import StandardCodec
from rendezvous.standard.session import StandardDialect
from rendezvous.store.memory import MemoryStore

NAMESPACE = "bench"
TTL = 7200


class Channel:
    """Counts the answers."""

    def __init__(self) -> None:
        self.answers = 0

    def send(self, data: bytes) -> None:
        self.answers += 1

    def finish(self) -> None:
        pass

    def abort(self) -> None:
        raise AssertionError("stream aborted")


def register_frame(key: PrivateKey, i: int) -> bytes:
    address = bytes([4, 10, 0, i // 250 % 250, i % 250, 6, 0x0F, 0xA1])
    message = Message(type=Message.REGISTER)
    message.register.ns = NAMESPACE
    message.register.signedPeerRecord = seal_peer_record(
        key, PeerRecord(key.peer_id(), 1, (address,))
    )
    message.register.ttl = TTL
    return frame(message.SerializeToString())


def discover_frame() -> bytes:
    message = Message(type=Message.DISCOVER)
    message.discover.ns = NAMESPACE
    message.discover.limit = 64
    return frame(message.SerializeToString())


def timed(feeds: list[tuple[object, bytes]]) -> float:
    start = time.process_time()
    for session, data in feeds:
        session.feed(data)  # type: ignore[attr-defined]
    return time.process_time() - start


def one_round(keys: list[PrivateKey], frames: list[bytes], args: argparse.Namespace) -> dict:
    limits = Limits(max_registrations=10**7)
    clock = Clock()
    clock.advance(1_000_000)
    store = MemoryStore(limits, clock)
    dialect = StandardDialect(store, StandardCodec(limits), clock, LogLimiter(clock.seconds))
    channels, sessions = [], []
    for key in keys:
        channel = Channel()
        session = dialect.session(channel, "bench", key.peer_id(), object())
        assert session.start()
        channels.append(channel)
        sessions.append(session)
    out = {}
    n = len(keys)
    out["REGISTER, a new record"] = (
        timed([(session, data) for session, data in zip(sessions, frames, strict=True)]) / n
    )
    peers = min(args.peers, n)
    # Eight requests to a chunk, as scenario 5 pipelines them.
    feeds = [(sessions[i], frames[i] * 8) for i in range(peers)] * (args.repeats // 8)
    out["REGISTER, a refresh"] = timed(feeds) / (len(feeds) * 8)
    discover = discover_frame() * 8
    feeds = [(sessions[i], discover) for i in range(peers)] * (args.repeats // 8)
    out["DISCOVER limit 64"] = timed(feeds) / (len(feeds) * 8)
    answers = sum(channel.answers for channel in channels)
    assert answers == n + 2 * len(feeds) * 8, answers
    for session in sessions:
        session.end()
    start = time.process_time()
    clock.advance(TTL + 1)
    out["expiry, per registration"] = (time.process_time() - start) / n
    assert store.registry.registration_count == 0
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--registrations", type=int, default=10_000, help="peers registered")
    parser.add_argument("--peers", type=int, default=50, help="peers refreshing, discovering")
    parser.add_argument("--repeats", type=int, default=400, help="requests of each such peer")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (medians are shown)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes")
    args = parser.parse_args()
    if args.quick:
        args.registrations, args.peers, args.repeats, args.rounds = 200, 10, 16, 1
    keys = [PrivateKey.from_seed(i.to_bytes(8, "big") * 4) for i in range(args.registrations)]
    frames = [register_frame(key, i) for i, key in enumerate(keys)]
    rounds = [one_round(keys, frames, args) for _ in range(args.rounds)]
    print(
        f"standard dialect in process, {args.registrations:,} registrations, {args.peers} "
        f"peers x {args.repeats} requests; median of {args.rounds} round(s), CPU per request:"
    )
    for label in rounds[0]:
        values = [r[label] for r in rounds]
        print(
            f"  {label:28s} {statistics.median(values) * 1e6:8.2f} µs"
            f"   (min {min(values) * 1e6:.2f}, max {max(values) * 1e6:.2f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
