"""Fuzz a whole live-dialect session: a stranger's bytes through `LiveSession` into the
in-memory store and registry, with a second session subscribed to what it registers.

Nothing may escape ``feed`` (the session answers every request, refuses, or closes with
an ERROR); every frame either session is sent must be a well-formed live ``Message``;
the stranger's registrations stay within the per-session limit; and once its
connection ends, nothing it registered is left in the registry and the subscriber
was told of every removal.
"""

from __future__ import annotations

from _harness import chunks, instrumented, main, whole
from twisted.internet.task import Clock

with instrumented("rendezvous"):
    from rendezvous.framing import FrameDecoder, frame
    from rendezvous.limits import Limits
    from rendezvous.live.codec import LiveCodec
    from rendezvous.live.session import LiveDialect
    from rendezvous.loglimit import LogLimiter
    from rendezvous.metrics import Metrics
    from rendezvous.p2p.keys import PrivateKey
    from rendezvous.pb.live_pb2 import Message
    from rendezvous.store.memory import MemoryStore

LIMITS = Limits(
    max_frame_bytes=8192,
    max_registrations_per_session=8,
    max_subscriptions_per_session=4,
    max_pending_bytes=64 * 1024,
    discover_default_limit=10,
    discover_max_limit=20,
)


class _Output:
    def __init__(self) -> None:
        self.decoder = FrameDecoder(2 * 1024 * 1024)
        self.messages: list[Message] = []
        self.pending = 0
        self.closed = False

    def _take(self, data: bytes) -> None:
        for body in self.decoder.feed(data):
            self.messages.append(Message.FromString(body))  # raises if malformed

    def send(self, data: bytes) -> bool:
        assert not self.closed, "sent to after closing"
        if self.pending + len(data) > LIMITS.max_pending_bytes:
            return False
        self.pending += len(data)
        self._take(data)
        return True

    def close(self, last: bytes | None = None, *, discard_pending: bool = False) -> None:
        if last is not None and not self.closed:
            self._take(last)
        self.closed = True


_stores: list[MemoryStore] = [MemoryStore(LIMITS, Clock())]
METRICS = Metrics(lambda: _stores[-1].stats())
"""One for every input (prometheus registers its metrics at a cost)."""


def test_one_input(data: bytes) -> None:
    clock = Clock()
    store = MemoryStore(LIMITS, clock)
    _stores[:] = [store]
    # One refusal logged per input: the rest are counted, as under a flood.
    limiter = LogLimiter(clock.seconds, burst=1, interval=1e9)
    dialect = LiveDialect(store, LiveCodec(LIMITS), METRICS, limiter)
    watcher_output = _Output()
    watcher = dialect.session(watcher_output, "watcher")
    assert watcher.start()
    for namespace in ("app", "a"):
        message = Message(type=Message.RENDEZVOUS)
        message.rendezvous.add(ns=namespace)
        watcher.feed(frame(message.SerializeToString()))
    stranger_output = _Output()
    stranger = dialect.session(stranger_output, "stranger")
    assert stranger.start()
    for piece in chunks(data):
        stranger.feed(piece)
        registry = store.registry
        assert registry.registration_count <= LIMITS.max_registrations_per_session
        if stranger.closed:
            break
        clock.advance(1)
    stranger.end()
    assert store.registry.registration_count == 0, "registrations outlived their session"
    registered: dict[tuple[str, str], int] = {}
    for message in watcher_output.messages:
        if message.type == Message.REGISTER:
            for entry in message.register:
                key = (entry.ns, entry.peer.id)
                registered[key] = registered.get(key, 0) + 1
        elif message.type == Message.UNREGISTER:
            for entry in message.unregister:
                registered.pop((entry.ns, entry.peer.id), None)
    assert not registered, f"the subscriber was not told of {registered}"
    watcher.end()


def seeds() -> list[bytes]:
    peer_id = PrivateKey.from_seed(bytes(32)).peer_id_text()
    other = PrivateKey.from_seed(bytes([1]) * 32).peer_id_text()
    register = Message(type=Message.REGISTER, request_id=7)
    for namespace, peer in (("app", peer_id), ("a", other), ("app", other)):
        entry = register.register.add(ns=namespace)
        entry.peer.id = peer
        entry.peer.addrs.append(bytes.fromhex("047f000001060fa1"))
    unregister = Message(type=Message.UNREGISTER)
    unregister.unregister.add(ns="app").peer.id = peer_id
    rendezvous = Message(type=Message.RENDEZVOUS)
    rendezvous.rendezvous.add(ns="app")
    discover = Message(type=Message.DISCOVER, request_id=1)
    discover.discovery.add(ns="app", limit=5)
    messages = [m.SerializeToString() for m in (register, unregister, rendezvous, discover)]
    stream = b"".join(frame(m) for m in messages)
    return [whole(frame(m)) for m in messages] + [whole(stream + stream), b"\x09" + stream]


if __name__ == "__main__":
    main(test_one_input, seeds)
