"""Two connections to Redis, kept up: one for commands and scripts, one for pub/sub.

Built on txredisapi's protocol (RESP parsing, commands, reply timeouts); connecting,
AUTH, SELECT and reconnecting with backoff are a `Connector` on the injected clock.
The link is *up* when both connections are ready (scripts loaded, the publish flavour
known); losing either closes the other, so every recovery starts from two fresh
connections and every subscription has to be made again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import txredisapi
from twisted.internet.defer import Deferred, fail, gatherResults
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from rendezvous.store.redis.connector import Connector
from rendezvous.store.redis.scripts import ALL, Script
from rendezvous.store.redis.sentinel import Address, SentinelEndpoint, sentinel_endpoint
from rendezvous.store.redis.target import RedisTarget


class LinkDown(Exception):
    """Redis is not reachable right now."""


class NotMaster(Exception):
    """The server a sentinel named is not (or no longer) a master."""


_MESSAGES = {b"message", b"smessage"}
_CONFIRMATIONS = {b"subscribe", b"ssubscribe"}
_UNSUBSCRIBED = {b"unsubscribe", b"sunsubscribe"}
_DAEMON_MARK = b"\xff"


class Encoded:
    """``count`` command arguments already encoded as RESP bulk strings, sent as they are
    (a caller with many arguments of one shape encodes each group in one step)."""

    __slots__ = ("count", "data")

    def __init__(self, count: int, data: bytes) -> None:
        self.count = count
        self.data = data


class _LeanProtocol(txredisapi.RedisProtocol):  # type: ignore[misc]
    """txredisapi's protocol without three costs that dominate a busy daemon's CPU:

    - commands are encoded in one pass (bytes, str and int arguments only);
    - the input that follows a bulk string is parsed at once, not on a later reactor
      turn (one turn per bulk string of a pipelined batch, otherwise);
    - one watchdog per connection replaces a delayed call per command: when commands
      are outstanding and no reply has come for ``timeout`` seconds, they all fail with
      ``TimeoutError`` and the connection is aborted.
    """

    link: RedisLink
    log = Logger()
    timeout = 5.0
    _broken = False
    _since = 0.0
    _watchdog: IDelayedCall | None = None
    _rest: deque[bytes]

    def _build_command(self, *args: bytes | str | int | Encoded, **kwargs: Any) -> bytes:
        count = len(args)
        out = [b""]
        for arg in args:
            if type(arg) is Encoded:
                out.append(arg.data)
                count += arg.count - 1
                continue
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
        out[0] = b"*%d\r\n" % count
        return b"".join(out)

    def setLineMode(self, extra: bytes | str = b"") -> None:
        self.line_mode = 1
        if extra:
            self._rest.append(extra)  # type: ignore[arg-type]

    def dataReceived(self, data: bytes, unpause: bool = False) -> None:
        if self._broken:
            return
        try:
            super().dataReceived(data, unpause)
            rest = self._rest
            while rest:
                super().dataReceived(rest.popleft())
        except Exception:
            # txredisapi raises on replies that break RESP (a line not UTF-8, a
            # negative count): drop the connection, which is made again like any lost one.
            self._broken = True
            self._rest.clear()
            self.log.failure("unreadable reply from redis: dropping the connection")
            if self.transport is not None:
                self.transport.abortConnection()

    def execute_command(self, *args: bytes | str | int | Encoded, **kwargs: Any) -> Deferred[Any]:
        if not self.replyQueue.waiting:
            self._since = self.link.clock.seconds()  # idle until now: the wait starts here
        d: Deferred[Any] = super().execute_command(*args, **kwargs)
        if self._watchdog is None and self.timeout:
            self._watchdog = self.link.clock.callLater(self.timeout / 5, self._watch)
        return d

    def replyReceived(self, reply: Any) -> None:
        self._since = self.link.clock.seconds()
        super().replyReceived(reply)

    def _watch(self) -> None:
        self._watchdog = None
        if not self.replyQueue.waiting or self.transport is None:
            return
        if self.link.clock.seconds() - self._since >= self.timeout:
            error = txredisapi.TimeoutError(f"no reply from redis in {self.timeout} seconds")
            while self.replyQueue.waiting:
                self.replyQueue.put(error)
            self.transport.abortConnection()
            return
        self._watchdog = self.link.clock.callLater(self.timeout / 5, self._watch)

    def connectionLost(self, why: Failure) -> None:
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.cancel()
        self._watchdog = None
        super().connectionLost(why)


class _CommandProtocol(_LeanProtocol):
    link: RedisLink

    def connectionLost(self, why: Failure) -> None:
        super().connectionLost(why)
        self.link._lost(self)


class _SubscriberProtocol(_LeanProtocol):
    link: RedisLink

    def replyReceived(self, reply: Any) -> None:
        if isinstance(reply, list) and len(reply) == 3 and type(reply[0]) is bytes:
            kind, channel, data = reply
            if type(channel) is bytes:
                if kind in _MESSAGES and type(data) is bytes:
                    self.link.on_channel(channel, data)
                    return
                if kind in _CONFIRMATIONS:
                    self.link._subscribed(channel)
                    return
                if kind in _UNSUBSCRIBED:
                    self.link._unsubscribed(channel)
                    return
        if isinstance(reply, txredisapi.ResponseError) and not self.replyQueue.waiting:
            # not a command's (AUTH…): a (S)SUBSCRIBE refused (a cluster down, an ACL),
            # whose confirmation will never come
            self.link._subscription_refused(reply)
            return
        super().replyReceived(reply)

    def send(self, *args: str | bytes) -> None:
        self.transport.write(self._build_command(*args))

    def connectionLost(self, why: Failure) -> None:
        super().connectionLost(why)
        self.link._lost(self)


class _Factory(Factory):
    """Builds txredisapi protocols with our settings (bytes in, bytes out)."""

    noisy = False

    def __init__(self, link: RedisLink, kind: type[_CommandProtocol | _SubscriberProtocol]) -> None:
        self.link = link
        self.kind = kind

    def buildProtocol(self, addr: object) -> _CommandProtocol | _SubscriberProtocol:
        link = self.link
        p = self.kind(charset=None, replyTimeout=0, convertNumbers=False)
        p.factory = self
        p.link = link
        p.timeout = link.timeout
        p._rest = deque()
        p.callLater = link.clock.callLater
        return p


def endpoint_for(reactor: Any, target: RedisTarget, timeout: float) -> IStreamClientEndpoint:
    if target.sentinels:
        return sentinel_endpoint(reactor, target, timeout)
    endpoint: IStreamClientEndpoint = HostnameEndpoint(
        reactor, target.host, target.port, timeout=timeout
    )
    if target.tls:
        from twisted.internet.ssl import Certificate, optionsForClientTLS, trustRootFromCertificates

        trust = None
        if target.ca_file is not None:
            with open(target.ca_file, "rb") as f:
                pem = f.read()
            certificates = [
                Certificate.loadPEM(b"-----BEGIN CERTIFICATE-----" + block)
                for block in pem.split(b"-----BEGIN CERTIFICATE-----")[1:]
            ]
            trust = trustRootFromCertificates(certificates)
        endpoint = wrapClientTLS(optionsForClientTLS(target.host, trustRoot=trust), endpoint)
    return endpoint


def _peer(protocol: _LeanProtocol) -> str:
    transport = protocol.transport
    peer = transport.getPeer() if transport is not None else None
    host, port = getattr(peer, "host", None), getattr(peer, "port", None)
    if host is None or port is None:
        return str(peer)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class RedisLink:
    """Commands, scripts and pub/sub on one Redis server, with `on_up`/`on_down` events.

    The registry is one partition here (`partitions`); a cluster's link
    (`rendezvous.store.redis.cluster.ClusterLink`) has several.
    """

    log = Logger()
    partitions = 1
    claims = False
    """Whether raw sessions' ids are claimed apart (a cluster's partitions)."""

    def __init__(
        self,
        reactor: Any,
        target: RedisTarget,
        prefix: str,
        *,
        clock: IReactorTime | None = None,
        timeout: float = 5.0,
        max_retry_delay: float = 2.0,
        endpoint: IStreamClientEndpoint | None = None,
        sharded: bool | None = None,
    ) -> None:
        """``sharded``: None to use sharded pub/sub where the server has it."""
        self.target = target
        self.clock: IReactorTime = clock or reactor
        self.timeout = timeout
        self.max_retry_delay = max_retry_delay
        self.prefix = prefix
        self.channel_prefix = f"{prefix}{target.db}:c:"
        self.sharded = False
        self._sharded = sharded
        self.on_up: Callable[[], None] = lambda: None
        self.on_down: Callable[[], None] = lambda: None
        self.on_message: Callable[[str, bytes], None] = lambda ns, data: None
        self.on_eviction: Callable[[bytes], None] = lambda data: None
        self.on_moved: Callable[[str], None] = lambda namespace: None
        """Never called here: one server's subscriptions do not move."""
        self.on_channel: Callable[[bytes, bytes], None] = self._message
        """Every message, by channel (a cluster's link reads them itself)."""
        self.on_unsubscribed: Callable[[bytes], None] = lambda channel: None
        """A subscription ended (asked, or by a cluster whose slot moved)."""
        self._command: _CommandProtocol | None = None
        self._subscriber: _SubscriberProtocol | None = None
        self._pending: dict[bytes, deque[Deferred[None]]] = {}
        self.up = False
        endpoint = endpoint or endpoint_for(reactor, target, timeout)
        self._watch = (
            endpoint.watch(self._retry, self._switched)
            if isinstance(endpoint, SentinelEndpoint)
            else None
        )
        self._commands: Connector[_CommandProtocol] = Connector(
            endpoint,
            _Factory(self, _CommandProtocol),
            self.clock,
            self._prepare_command,
            self._retry,
            "command",
        )
        self._subscriptions: Connector[_SubscriberProtocol] = Connector(
            endpoint,
            _Factory(self, _SubscriberProtocol),
            self.clock,
            self._prepare_subscriber,
            self._retry,
            "pub/sub",
        )

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        self._commands.start()
        self._subscriptions.start()
        if self._watch is not None:
            self._watch.start()

    def stop(self) -> Deferred[Any]:
        stopping = [self._commands.stop(), self._subscriptions.stop()]
        if self._watch is not None:
            stopping.append(self._watch.stop())
        return gatherResults(stopping)

    def _retry(self, failures: int) -> float:
        return float(min(self.max_retry_delay, 0.05 * 2 ** min(failures, 20)))

    async def _login(self, protocol: _CommandProtocol | _SubscriberProtocol) -> None:
        """AUTH and SELECT, which fail the preparation (and are retried) when refused."""
        await protocol.whenConnected()
        target = self.target
        if target.password is not None:
            if target.username:
                await protocol.execute_command("AUTH", target.username, target.password)
            else:
                await protocol.execute_command("AUTH", target.password)
        if target.db:
            await protocol.execute_command("SELECT", target.db)
        if target.sentinels:  # named by a sentinel, perhaps on a stale view: a master?
            role = await protocol.execute_command("ROLE")
            if not role or role[0] != b"master":
                kind = role[0].decode(errors="replace") if role else "?"
                raise NotMaster(f"{_peer(protocol)} is a {kind}, not the master")

    def _prepare_command(self, protocol: _CommandProtocol) -> Deferred[None]:
        async def prepare() -> None:
            await self._login(protocol)
            try:
                info = await protocol.execute_command("COMMAND", "INFO", "SPUBLISH")
            except txredisapi.ResponseError:
                info = [None]
            sharded = bool(info and info[0]) if self._sharded is None else self._sharded
            for script in ALL:
                await protocol.execute_command("SCRIPT", "LOAD", script.source)
            self.sharded = sharded
            self._command = protocol
            self._changed()

        return Deferred.fromCoroutine(prepare())

    def _prepare_subscriber(self, protocol: _SubscriberProtocol) -> Deferred[None]:
        async def prepare() -> None:
            await self._login(protocol)
            self._subscriber = protocol
            self._changed()

        return Deferred.fromCoroutine(prepare())

    @property
    def server(self) -> str | None:
        """The address of the server the commands go to, while connected."""
        return None if self._command is None else _peer(self._command)

    def _changed(self) -> None:
        if not self.up and self._command is not None and self._subscriber is not None:
            if self.target.sentinels and self.server != _peer(self._subscriber):
                # Asked during a failover, the sentinels named two servers: ask again.
                self.log.warn(
                    "redis commands on {one}, pub/sub on {other}: reconnecting both",
                    one=self.server,
                    other=_peer(self._subscriber),
                    event="redis.split",
                )
                self.reset()
                return
            self.up = True
            self.log.info(
                "redis {target} connected ({flavour} pub/sub)",
                target=self.target.describe(),
                flavour="sharded" if self.sharded else "classic",
                event="redis.connected",
            )
            self.on_up()

    def _lost(self, protocol: _CommandProtocol | _SubscriberProtocol) -> None:
        if isinstance(protocol, _CommandProtocol):
            self._commands.lost(protocol)
        else:
            self._subscriptions.lost(protocol)
        if protocol is self._command:
            self._command = None
        elif protocol is self._subscriber:
            self._subscriber = None
            pending, self._pending = self._pending, {}
            for waiting in pending.values():
                for d in waiting:
                    d.errback(LinkDown("the pub/sub connection was lost"))
        else:
            return
        for other in (self._command, self._subscriber):
            if other is not None and other.transport is not None:
                other.transport.loseConnection()
        if self.up:
            self.up = False
            self.log.warn(
                "redis {target} connection lost",
                target=self.target.describe(),
                event="redis.lost",
            )
            self.on_down()

    def _switched(self, address: Address) -> None:
        """The sentinels promoted ``address``: leave a master that is no longer one."""
        host, port = address
        master = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if self.server != master:
            self.log.info(
                "sentinels switched the master to {master}",
                master=master,
                event="redis.master_switched",
            )
            self.reset()

    def reset(self) -> None:
        """Drop both connections (they come back with scripts loaded afresh)."""
        for protocol in (self._command, self._subscriber):
            if protocol is not None and protocol.transport is not None:
                protocol.transport.loseConnection()

    # -- commands ---------------------------------------------------------------

    def call(self, *args: str | bytes | int | Encoded) -> Deferred[Any]:
        """Run a command; fails at once with `LinkDown` when the link is not up."""
        command = self._command
        if not self.up or command is None:
            return fail(LinkDown("redis is unreachable"))
        try:
            d: Deferred[Any] = command.execute_command(*args)
        except txredisapi.ConnectionError as e:
            return fail(LinkDown(str(e)))
        return d

    def partition_of(self, namespace: str) -> int:
        return 0

    def home_of(self, key: bytes) -> int:
        return 0

    def key(self, name: str, partition: int = 0) -> str:
        """The full name of the key ``name``."""
        return self.prefix + name

    def run(
        self, script: Script, *args: str | bytes | int | Encoded, partition: int = 0
    ) -> Deferred[Any]:
        """Run one of our scripts with its common arguments (one partition: 0)."""
        publish = "SPUBLISH" if self.sharded else "PUBLISH"
        return self.call("EVALSHA", script.sha, 0, self.prefix, publish, self.channel_prefix, *args)

    # -- pub/sub ----------------------------------------------------------------

    def channel(self, namespace: str) -> bytes:
        return (self.channel_prefix + namespace).encode()

    def daemon_channel(self, daemon: str) -> bytes:
        """Where a daemon is told of its sessions' evictions (0xFF: no namespace's)."""
        return self.channel_prefix.encode() + _DAEMON_MARK + daemon.encode()

    def subscribe(self, namespace: str) -> Deferred[None]:
        """Fires once the subscription is active: every later publish will arrive."""
        return self.listen(self.channel(namespace))

    def subscribe_daemon(self, daemon: str) -> Deferred[None]:
        """Listen for evictions of the sessions of ``daemon`` (`on_eviction`)."""
        return self.listen(self.daemon_channel(daemon))

    def listen(self, channel: bytes) -> Deferred[None]:
        subscriber = self._subscriber
        if not self.up or subscriber is None:
            return fail(LinkDown("redis is unreachable"))
        d: Deferred[None] = Deferred()
        self._pending.setdefault(channel, deque()).append(d)
        subscriber.send("SSUBSCRIBE" if self.sharded else "SUBSCRIBE", channel)
        return d

    def unsubscribe(self, namespace: str) -> None:
        self.unlisten(self.channel(namespace))

    def unlisten(self, channel: bytes) -> None:
        subscriber = self._subscriber
        if self.up and subscriber is not None:
            subscriber.send("SUNSUBSCRIBE" if self.sharded else "UNSUBSCRIBE", channel)

    def _unsubscribed(self, channel: bytes) -> None:
        self.on_unsubscribed(channel)

    def _subscription_refused(self, error: Exception) -> None:
        """Redis refused a subscription: start again from fresh connections (every
        subscription is then made again by the recovery that follows)."""
        self.log.warn(
            "redis {target} refused a subscription: {error}; reconnecting",
            target=self.target.describe(),
            error=error,
            event="redis.subscribe_refused",
        )
        self.reset()

    def _subscribed(self, channel: bytes) -> None:
        waiting = self._pending.get(channel)
        if waiting:
            d = waiting.popleft()
            if not waiting:
                del self._pending[channel]
            d.callback(None)

    def _message(self, channel: bytes, data: bytes) -> None:
        prefix = self.channel_prefix.encode()
        if channel.startswith(prefix):
            if channel[len(prefix) : len(prefix) + 1] == _DAEMON_MARK:
                self.on_eviction(data)
                return
            try:
                namespace = channel[len(prefix) :].decode()
            except UnicodeDecodeError:
                return
            self.on_message(namespace, data)
