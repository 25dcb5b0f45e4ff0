"""A Redis Cluster (``--store redis-cluster://…``): the registry spread over its shards.

The registry is cut into `PARTITIONS` partitions by namespace. Every key of one
partition carries the same hash tag, so a partition lives in one slot and each script
stays atomic on the node that serves it; the tags are chosen so that the partitions'
slots are spread evenly over the slot space, hence over the shards of a cluster made
with evenly shared slots. A namespace's registrations, its versions, its sequence of
changes and its announcements (sharded pub/sub, ``SPUBLISH``/``SSUBSCRIBE``, on a
channel with the partition's tag) are all in its partition. Each partition has its own
copy of the fleet's bookkeeping (leases, daemons, sessions), which the daemons keep in
every partition, and a raw session's ids are claimed in their *home* partition (a hash
of the id), which makes "the first raw session owns the id" hold across partitions.

`ClusterLink` offers the store what `RedisLink` does, with the partition to run a
script in: a `RedisLink` per master (commands, scripts and its pub/sub connection), the
owner of each partition from ``CLUSTER SLOTS``, and redirections followed: ``MOVED``
(the map is read again and the script sent to the new owner), ``ASK`` (the script sent
there once after ``ASKING``) and ``TRYAGAIN`` (sent again shortly). It is *up* when
every partition's owner is. A master lost, or a subscription the cluster ended (its
slot moved), takes the link down: the store recovers as after any outage, and its
subscribers are pushed what they missed.
"""

from __future__ import annotations

import binascii
import socket
from collections import Counter
from collections.abc import Callable
from typing import Any

import txredisapi
from twisted.internet.defer import Deferred, fail, gatherResults
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from rendezvous.store.redis.link import Encoded, LinkDown, RedisLink
from rendezvous.store.redis.scripts import Script
from rendezvous.store.redis.sentinel import BadReply, RespError, encode, read_replies, reason
from rendezvous.store.redis.target import RedisTarget

SLOTS = 16384
PARTITIONS = 16
"""Partitions of the registry; every daemon of a fleet must use the same number."""

_REDIRECTIONS = 16
"""Redirections and retries for one script before it fails."""
_RETRY_DELAY = 0.05
"""The first wait before a script stopped by a migrating slot is sent again (doubling,
up to `_RETRY_DELAY_MAX`: about 4 s in all)."""
_RETRY_DELAY_MAX = 0.5
_KNOWN_NAMESPACES = 65536
"""Namespaces whose partition a link remembers (then it starts again)."""

Address = tuple[str, int]


class ClusterError(Exception):
    """The cluster cannot serve the registry (unreachable, or slots not covered)."""


class ClusterBusy(Exception):
    """A script was redirected or stopped (a slot migrating, the cluster down) more
    times than it is sent again; the cluster itself is still up."""


def _crc16(data: bytes) -> int:
    """CRC16-CCITT (XModem), the hash of Redis Cluster's key slots (in C)."""
    return binascii.crc_hqx(data, 0)


def key_slot(key: bytes) -> int:
    """The slot of ``key``, as Redis computes it (hash tags included)."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return _crc16(key) % SLOTS


def partition_tags(count: int) -> list[str]:
    """A hash tag for each partition, the ``i``-th in the ``i``-th ``count``-th of the
    slot space (the same everywhere: the smallest such tag ``rN``)."""
    tags = []
    n = 0
    for i in range(count):
        low, high = i * SLOTS // count, (i + 1) * SLOTS // count
        while not low <= key_slot(b"r%d" % n) < high:
            n += 1
        tags.append(f"r{n}")
    return tags


def describe(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def slot_owners(reply: Any, asked: Address) -> dict[int, Address]:
    """``CLUSTER SLOTS``'s answer as the master of each slot covered."""
    owners: dict[int, Address] = {}
    if not isinstance(reply, list):
        raise ClusterError(f"unexpected CLUSTER SLOTS answer: {reply!r:.80}")
    for item in reply:
        try:
            start, end, master = int(item[0]), int(item[1]), item[2]
            host = master[0].decode() if isinstance(master[0], bytes) else str(master[0])
            port = int(master[1])
        except (IndexError, TypeError, ValueError, UnicodeDecodeError):
            raise ClusterError(f"unexpected CLUSTER SLOTS range: {item!r:.80}") from None
        address = (host or asked[0], port)
        for slot in range(start, end + 1):
            owners[slot] = address
    return owners


def uncovered(owners: dict[int, Address]) -> str:
    """The slots no master serves, as ranges (empty: all are)."""
    ranges: list[str] = []
    slot = 0
    while slot < SLOTS:
        if slot in owners:
            slot += 1
            continue
        first = slot
        while slot < SLOTS and slot not in owners:
            slot += 1
        ranges.append(str(first) if slot - 1 == first else f"{first}-{slot - 1}")
    return ", ".join(ranges)


def probe(target: RedisTarget, timeout: float = 2.0) -> dict[int, Address]:
    """Ask the nodes listed, blocking, for the cluster's slots; `ClusterError` says why
    the cluster cannot serve (for start-up, before the reactor runs)."""
    problems = []
    for node in target.cluster:
        commands = []
        if target.password is not None:
            auth = ("AUTH", target.username, target.password) if target.username else None
            commands.append(encode(*(auth or ("AUTH", target.password))))
        commands.append(encode("CLUSTER", "SLOTS"))
        try:
            with socket.create_connection(node, timeout) as sock:
                sock.settimeout(timeout)
                sock.sendall(b"".join(commands))
                replies = read_replies(sock, len(commands))
        except (OSError, BadReply) as e:
            problems.append(f"{describe(node)} unreachable ({reason(e)})")
            continue
        errors = [r for r in replies if isinstance(r, RespError)]
        if errors:
            problems.append(f"{describe(node)} refused: {errors[0]}")
            continue
        owners = slot_owners(replies[-1], node)
        missing = uncovered(owners)
        if missing:
            raise ClusterError(f"slots not served by any master: {missing}")
        return owners
    raise ClusterError("no cluster node answered: " + "; ".join(problems))


class ClusterLink:
    """Scripts and sharded pub/sub on a Redis Cluster, partition by partition."""

    log = Logger()
    sharded = True
    claims = True
    """Raw sessions' ids are claimed in their home partitions (`scripts.CLAIM`)."""

    def __init__(
        self,
        reactor: Any,
        target: RedisTarget,
        prefix: str,
        *,
        clock: IReactorTime | None = None,
        timeout: float = 5.0,
        max_retry_delay: float = 2.0,
        partitions: int = PARTITIONS,
        make_link: Callable[[Address], RedisLink] | None = None,
    ) -> None:
        self.reactor = reactor
        self.target = target
        self.clock: IReactorTime = clock or reactor
        self.timeout = timeout
        self.max_retry_delay = max_retry_delay
        self.prefix = prefix
        self.partitions = partitions
        self.tags = partition_tags(partitions)
        self.prefixes = [f"{prefix}{{{tag}}}:" for tag in self.tags]
        self.channel_prefixes = [p + "c:" for p in self.prefixes]
        self._by_tag = {tag.encode(): i for i, tag in enumerate(self.tags)}
        self._slots = [key_slot(tag.encode()) for tag in self.tags]
        self._partitions: dict[str, int] = {}
        """Namespaces' partitions, as computed (up to `_KNOWN_NAMESPACES`)."""
        self._make_link = make_link or self._new_link
        self.on_up: Callable[[], None] = lambda: None
        self.on_down: Callable[[], None] = lambda: None
        self.on_message: Callable[[str, bytes], None] = lambda ns, data: None
        self.on_eviction: Callable[[bytes], None] = lambda data: None
        self.on_moved: Callable[[str], None] = lambda namespace: None
        """A namespace's subscription moved with its slot: read it again."""
        self._moved: set[bytes] = set()
        self.followed: Counter[str] = Counter()
        """Redirections followed (MOVED, ASK, TRYAGAIN) and subscriptions moved (SMOVED)."""
        self.up = False
        self.nodes: dict[Address, RedisLink] = {}
        self.owners: list[Address | None] = [None] * partitions
        """The master serving each partition's slot, as last read."""
        self._waiting: dict[Address, list[Deferred[RedisLink]]] = {}
        self._listening: set[bytes] = set()
        self._refresh_call: IDelayedCall | None = None
        self._refreshing = False
        self._stopped = True

    # -- partitions ---------------------------------------------------------------

    def partition_of(self, namespace: str) -> int:
        """The partition holding ``namespace``."""
        partition = self._partitions.get(namespace)
        if partition is None:
            partition = key_slot(namespace.encode()) * self.partitions // SLOTS
            if len(self._partitions) >= _KNOWN_NAMESPACES:
                self._partitions.clear()
            self._partitions[namespace] = partition
        return partition

    def home_of(self, key: bytes) -> int:
        """The partition where a raw session's claim on peer id ``key`` is kept."""
        return _crc16(key) % self.partitions

    def key(self, name: str, partition: int = 0) -> str:
        """The full name of the key ``name`` of ``partition``."""
        return self.prefixes[partition] + name

    # -- lifecycle ------------------------------------------------------------------

    def _new_link(self, address: Address) -> RedisLink:
        host, port = address
        node = RedisLink(
            self.reactor,
            RedisTarget(
                host=host,
                port=port,
                username=self.target.username,
                password=self.target.password,
            ),
            self.prefix,
            clock=self.clock,
            timeout=self.timeout,
            max_retry_delay=self.max_retry_delay,
            sharded=True,
        )
        return node

    def _node(self, address: Address) -> RedisLink:
        node = self.nodes.get(address)
        if node is None:
            node = self.nodes[address] = self._make_link(address)
            node.on_up = lambda: self._node_up(address)
            node.on_down = lambda: self._node_down(address)
            node.on_channel = self._message
            node.on_unsubscribed = self._unsubscribed
            if not self._stopped:
                node.start()
        return node

    def start(self) -> None:
        self._stopped = False
        for address in self.target.cluster:
            self._node(address)

    def stop(self) -> Deferred[Any]:
        self._stopped = True
        if self._refresh_call is not None and self._refresh_call.active():
            self._refresh_call.cancel()
        return gatherResults([node.stop() for node in self.nodes.values()])

    @property
    def server(self) -> str | None:
        """The masters serving the partitions, while up."""
        if not self.up:
            return None
        return ",".join(sorted({describe(a) for a in self.owners if a is not None}))

    def reset(self) -> None:
        for node in self.nodes.values():
            node.reset()

    def _node_up(self, address: Address) -> None:
        for d in self._waiting.pop(address, []):
            d.callback(self.nodes[address])
        self._refresh()

    def _node_down(self, address: Address) -> None:
        if address in self.owners:
            self._down(f"master {describe(address)} lost")
        self._schedule_refresh()

    def _down(self, why: str) -> None:
        if self.up:
            self.up = False
            self._listening.clear()
            self.log.warn(
                "redis cluster {target}: {why}",
                target=self.target.describe(),
                why=why,
                event="redis.lost",
            )
            self.on_down()

    def _schedule_refresh(self) -> None:
        if self._stopped or (self._refresh_call is not None and self._refresh_call.active()):
            return
        self._refresh_call = self.clock.callLater(self.max_retry_delay / 4, self._refresh)

    def _refresh(self) -> None:
        """Read the slots from a node that is up; up once every partition's owner is."""
        if self._stopped or self._refreshing:
            return
        asked = next((a for a, node in self.nodes.items() if node.up), None)
        if asked is None:
            return
        self._refreshing = True

        def read(reply: Any) -> None:
            self._refreshing = False
            try:
                owners = slot_owners(reply, asked)
            except ClusterError as e:
                self.log.error("redis cluster: {e}", e=e)
                self._schedule_refresh()
                return
            self._take(owners)

        def failed(failure: Failure) -> None:
            self._refreshing = False
            self.log.warn("redis cluster: reading the slots failed: {e}", e=failure.value)
            self._schedule_refresh()

        self.nodes[asked].call("CLUSTER", "SLOTS").addCallbacks(read, failed)

    def _take(self, owners: dict[int, Address]) -> None:
        missing = [i for i, slot in enumerate(self._slots) if slot not in owners]
        if missing:
            self._down("slots not served")
            self.log.error(
                "redis cluster: no master serves the slots of partitions {missing}",
                missing=missing,
            )
            self._schedule_refresh()
            return
        new = [owners[slot] for slot in self._slots]
        self.owners = list(new)
        masters = set(new)
        for address in masters:
            self._node(address)
        for address in list(self.nodes):
            if address not in masters and address not in self.target.cluster:
                self.nodes.pop(address).stop()
        if self.up and self._moved and all(self.nodes[a].up for a in masters):
            self._follow_moved()
        if not self.up and all(self.nodes[a].up for a in masters):
            self.up = True
            self.log.info(
                "redis cluster {target} connected: {partitions} partitions on {masters}",
                target=self.target.describe(),
                partitions=self.partitions,
                masters=", ".join(sorted(describe(a) for a in masters)),
                event="redis.connected",
            )
            self.on_up()
        elif not self.up:
            self._schedule_refresh()

    # -- commands ---------------------------------------------------------------------

    def _owner(self, partition: int) -> RedisLink | None:
        address = self.owners[partition]
        return None if address is None else self.nodes.get(address)

    def call(self, *args: str | bytes | int | Encoded) -> Deferred[Any]:
        """A command whose first key (``args[1]``) carries a partition's tag."""
        key = args[1]
        name = key.encode() if isinstance(key, str) else key
        partition = self._by_slot(name) if isinstance(name, bytes) else None
        if partition is None:
            return fail(LinkDown(f"not a key of any partition: {key!r}"))
        node = self._owner(partition)
        if not self.up or node is None:
            return fail(LinkDown("redis cluster is unreachable"))
        return node.call(*args)

    def _by_slot(self, key: bytes) -> int | None:
        slot = key_slot(key)
        return next((i for i, s in enumerate(self._slots) if s == slot), None)

    def run(
        self, script: Script, *args: str | bytes | int | Encoded, partition: int = 0
    ) -> Deferred[Any]:
        """Run one of our scripts in ``partition``, following redirections."""
        if not self.up:
            return fail(LinkDown("redis cluster is unreachable"))
        prefix = self.prefixes[partition]
        command = (
            "EVALSHA",
            script.sha,
            1,
            prefix + "seq",
            prefix,
            "SPUBLISH",
            self.channel_prefixes[partition],
            *args,
        )
        return Deferred.fromCoroutine(self._run(partition, command))

    async def _run(self, partition: int, command: tuple[Any, ...]) -> Any:
        asking: RedisLink | None = None
        delay = _RETRY_DELAY
        for _ in range(_REDIRECTIONS):
            node = asking or self._owner(partition)
            if not self.up or node is None:
                raise LinkDown("redis cluster is unreachable")
            if not node.up:  # a new owner, connecting
                address = self.owners[partition]
                assert address is not None
                node = await self._ready(address)
            if asking is not None:
                node.call("ASKING")
            try:
                return await node.call(*command)
            except txredisapi.ResponseError as e:
                where = self._redirection(str(e))
                if where is None:
                    raise
                kind, address = where
            self.followed[kind] += 1
            asking = None
            if kind == "TRYAGAIN":
                await self._pause(delay)
                delay = min(delay * 2, _RETRY_DELAY_MAX)
            elif kind == "MOVED":  # for good: the map is read again meanwhile
                self.owners[partition] = address
                self._refresh()
                await self._ready(address)
            else:  # ASK: this once, on the node the slot is migrating to
                asking = await self._ready(address)
        raise ClusterBusy("redirected or stopped too many times (a slot migrating?)")

    @staticmethod
    def _redirection(error: str) -> tuple[str, Address] | None:
        words = error.split()
        if not words:
            return None
        if words[0] in ("TRYAGAIN", "CLUSTERDOWN") or "non local key" in error:
            # a multi-key command on a migrating slot, a script stopped before it
            # changed anything (its first read is of a key that never exists), or a
            # cluster not (yet) agreed on its state: sent again after a while
            return "TRYAGAIN", ("", 0)
        if words[0] in ("MOVED", "ASK") and len(words) == 3:
            host, _, port = words[2].rpartition(":")
            if port.isdigit():
                return words[0], (host.strip("[]"), int(port))
        return None

    def _pause(self, seconds: float) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.clock.callLater(seconds, d.callback, None)
        return d

    def _ready(self, address: Address) -> Deferred[RedisLink]:
        node = self._node(address)
        if node.up:
            d: Deferred[RedisLink] = Deferred()
            d.callback(node)
            return d
        waiting: Deferred[RedisLink] = Deferred()
        self._waiting.setdefault(address, []).append(waiting)
        return waiting

    # -- pub/sub ----------------------------------------------------------------------

    def channel(self, namespace: str) -> bytes:
        return (self.channel_prefixes[self.partition_of(namespace)] + namespace).encode()

    def subscribe(self, namespace: str) -> Deferred[None]:
        node = self._owner(self.partition_of(namespace))
        if not self.up or node is None:
            return fail(LinkDown("redis cluster is unreachable"))
        channel = self.channel(namespace)
        self._listening.add(channel)
        return node.listen(channel)

    def subscribe_daemon(self, daemon: str) -> Deferred[None]:
        """Listen for evictions of ``daemon``'s sessions, in every partition."""
        waits = []
        for partition in range(self.partitions):
            node = self._owner(partition)
            if not self.up or node is None:
                return fail(LinkDown("redis cluster is unreachable"))
            channel = self.channel_prefixes[partition].encode() + b"\xff" + daemon.encode()
            self._listening.add(channel)
            waits.append(node.listen(channel))
        return gatherResults(waits).addCallback(lambda _: None)

    def unsubscribe(self, namespace: str) -> None:
        node = self._owner(self.partition_of(namespace))
        channel = self.channel(namespace)
        self._listening.discard(channel)
        if self.up and node is not None:
            node.unlisten(channel)

    def _unsubscribed(self, channel: bytes) -> None:
        """The cluster ended a subscription we keep: its slot moved (resharding). Once
        the map is read again, it is made on the new owner, and a namespace's is read
        again (`on_moved`) for what was published meanwhile."""
        if channel in self._listening:
            self._listening.discard(channel)
            self._moved.add(channel)
            self.followed["SMOVED"] += 1
            self.log.info(
                "redis cluster: subscription {channel!r} moved with its slot", channel=channel
            )
            self._refresh()

    def _follow_moved(self) -> None:
        moved, self._moved = self._moved, set()
        for channel in moved:
            partition, rest = self._split(channel)
            if partition is None:
                continue
            if rest[:1] == b"\xff":
                node = self._owner(partition)
                if node is not None:
                    self._listening.add(channel)
                    node.listen(channel).addErrback(lambda f: self._down("resubscribing failed"))
                continue
            try:
                self.on_moved(rest.decode())
            except UnicodeDecodeError:
                continue

    def _split(self, channel: bytes) -> tuple[int | None, bytes]:
        start = channel.find(b"{", len(self.prefix))
        end = channel.find(b"}", start)
        partition = self._by_tag.get(channel[start + 1 : end]) if start >= 0 else None
        if partition is None:
            return None, b""
        return partition, channel[len(self.channel_prefixes[partition]) :]

    def _message(self, channel: bytes, data: bytes) -> None:
        partition, rest = self._split(channel)
        if partition is None:
            return
        if rest[:1] == b"\xff":
            self.on_eviction(data)
            return
        try:
            namespace = rest.decode()
        except UnicodeDecodeError:
            return
        self.on_message(namespace, data)


__all__ = ["PARTITIONS", "ClusterError", "ClusterLink", "RespError", "key_slot", "probe"]
