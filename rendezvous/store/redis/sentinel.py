"""Finding the master through Redis Sentinel (``--store redis-sentinel://…``).

Each connection the link makes first asks the sentinels, in turn, which server is the
master named in the URL (``SENTINEL get-master-addr-by-name``), and connects there; the
link then checks with ``ROLE`` that the server really is a master. A failover therefore
looks to the store like a Redis restart at a new address: the next connection finds
the promoted replica. The sentinel that answered is asked first next time.

`SwitchWatch` listens to a sentinel for the master's ``+switch-master``, so that a
failover is followed at once even where the old master's connections stay open.

`probe` asks the same question once, blocking, before the reactor runs: a daemon whose
sentinels are all unreachable, or do not know the master's name, does not start.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import (
    IDelayedCall,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from rendezvous.store.redis.connector import Connector
from rendezvous.store.redis.target import RedisTarget

Address = tuple[str, int]


class NoMaster(Exception):
    """No sentinel named a master: each one's reason is in the message."""


class RespError(str):
    """An error reply (``-ERR …``)."""


class BadReply(Exception):
    """Bytes that are not a RESP2 reply."""


def encode(*args: str | bytes) -> bytes:
    """One command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


_MAX_DEPTH = 4
"""Arrays in arrays a sentinel may send (its answers nest two deep at most)."""


def parse(data: bytes, start: int = 0, depth: int = 0) -> tuple[Any, int] | None:
    """The reply at ``start`` and where it ends, or None when it is not all there yet.

    Simple strings and bulk strings come as bytes, errors as `RespError`, integers as
    int, nil as None, arrays as lists.
    """
    if depth > _MAX_DEPTH:
        raise BadReply("arrays nested too deep")
    end = data.find(b"\r\n", start)
    if end < 0:
        return None
    kind, line = data[start : start + 1], data[start + 1 : end]
    after = end + 2
    try:
        if kind == b"+":
            return line, after
        if kind == b"-":
            return RespError(line.decode(errors="replace")), after
        if kind == b":":
            return int(line), after
        if kind == b"$":
            length = int(line)
            if length < 0:
                return None, after
            if len(data) < after + length + 2:
                return None
            return data[after : after + length], after + length + 2
        if kind == b"*":
            count = int(line)
            if count < 0:
                return None, after
            items = []
            for _ in range(count):
                item = parse(data, after, depth + 1)
                if item is None:
                    return None
                value, after = item
                items.append(value)
            return items, after
    except ValueError:
        pass
    raise BadReply(f"not a RESP reply: {data[start : start + 40]!r}")


def questions(target: RedisTarget) -> list[bytes]:
    """What to send a sentinel: AUTH if it wants a password, then the question."""
    commands = []
    if target.sentinel_password is not None:
        commands.append(encode("AUTH", target.sentinel_password))
    commands.append(encode("SENTINEL", "get-master-addr-by-name", target.master_name))
    return commands


def answer(target: RedisTarget, replies: Sequence[Any]) -> Address:
    """The master's address from a sentinel's ``replies``; `NoMaster` says why not."""
    for reply in replies:
        if isinstance(reply, RespError):
            raise NoMaster(f"refused: {reply}")
    reply = replies[-1]
    if reply is None:
        raise NoMaster(f"knows no master named {target.master_name!r}")
    try:
        host, port = reply
        return host.decode(), int(port)
    except (AttributeError, TypeError, ValueError, UnicodeDecodeError):
        raise NoMaster(f"gave an unexpected answer: {reply!r}") from None


def _where(sentinel: Address) -> str:
    host, port = sentinel
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _no_master(target: RedisTarget, problems: list[str]) -> NoMaster:
    return NoMaster(f"no sentinel named the master {target.master_name!r}: " + "; ".join(problems))


def probe(
    target: RedisTarget,
    timeout: float = 2.0,
    connect: Callable[[Address, float], socket.socket] = socket.create_connection,
) -> Address:
    """Ask the sentinels now, blocking (each at most ``timeout`` s): the master's address.

    Only for start-up, before the reactor runs.
    """
    problems = []
    for sentinel in target.sentinels:
        try:
            with connect(sentinel, timeout) as sock:
                sock.settimeout(timeout)
                commands = questions(target)
                sock.sendall(b"".join(commands))
                replies = read_replies(sock, len(commands))
            return answer(target, replies)
        except NoMaster as e:
            problems.append(f"{_where(sentinel)} {e}")
        except (OSError, BadReply) as e:
            problems.append(f"{_where(sentinel)} unreachable ({reason(e)})")
    raise _no_master(target, problems)


def reason(error: BaseException) -> str:
    """Why a connection failed, in a few words."""
    if isinstance(error, socket.timeout | TimeoutError):
        return "no answer in time"
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def read_replies(sock: socket.socket, count: int) -> list[Any]:
    """``count`` replies read from ``sock`` (blocking: for start-up only)."""
    data = b""
    replies: list[Any] = []
    start = 0
    while len(replies) < count:
        parsed = parse(data, start)
        if parsed is None:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            data += chunk
            continue
        value, start = parsed
        replies.append(value)
    return replies


class _Query(Protocol):
    """Sends some commands, collects as many replies, closes."""

    def __init__(self, commands: list[bytes], clock: IReactorTime, timeout: float) -> None:
        self.commands = commands
        self.replies: list[Any] = []
        self.done: Deferred[list[Any]] = Deferred()
        self._data = b""
        self._start = 0
        self._clock = clock
        self._timeout = timeout
        self._timer: IDelayedCall | None = None

    def connectionMade(self) -> None:
        self._timer = self._clock.callLater(self._timeout, self._expired)
        assert self.transport is not None
        self.transport.write(b"".join(self.commands))

    def dataReceived(self, data: bytes) -> None:
        self._data += data
        try:
            while len(self.replies) < len(self.commands):
                parsed = parse(self._data, self._start)
                if parsed is None:
                    return
                value, self._start = parsed
                self.replies.append(value)
        except BadReply as e:
            self._finish(e)
            return
        self._finish(self.replies)

    def _expired(self) -> None:
        self._timer = None
        self._finish(TimeoutError("no answer in time"))

    def _finish(self, result: list[Any] | Exception) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self.transport is not None:
            self.transport.loseConnection()
        if self.done.called:
            return
        if isinstance(result, Exception):
            self.done.errback(result)
        else:
            self.done.callback(result)

    def connectionLost(self, reason: Failure | None = None) -> None:
        if not self.done.called:
            self._finish(ConnectionError("the sentinel closed the connection"))


Endpoints = Callable[[str, int], IStreamClientEndpoint]


class MasterLookup:
    """Asks the sentinels, in turn, for the master's address."""

    def __init__(
        self, target: RedisTarget, clock: IReactorTime, endpoints: Endpoints, timeout: float
    ) -> None:
        self.target = target
        self.clock = clock
        self.endpoints = endpoints
        self.timeout = timeout
        self.order = list(target.sentinels)
        """The sentinels, the one that answered last first."""

    async def master(self) -> Address:
        problems = []
        for sentinel in list(self.order):
            try:
                replies = await self._ask(sentinel)
                address = answer(self.target, replies)
            except NoMaster as e:
                problems.append(f"{_where(sentinel)} {e}")
                continue
            except Exception as e:
                problems.append(f"{_where(sentinel)} unreachable ({reason(e)})")
                continue
            if self.order[0] != sentinel:
                self.order.remove(sentinel)
                self.order.insert(0, sentinel)
            return address
        raise _no_master(self.target, problems)

    async def _ask(self, sentinel: Address) -> list[Any]:
        query = _Query(questions(self.target), self.clock, self.timeout)
        factory = Factory.forProtocol(lambda: query)
        factory.noisy = False
        connecting: Deferred[IProtocol] = self.endpoints(*sentinel).connect(factory)
        timer = self.clock.callLater(self.timeout, connecting.cancel)
        try:
            await connecting
        except Exception:
            if not timer.active():
                raise TimeoutError("no answer in time") from None
            raise
        finally:
            if timer.active():
                timer.cancel()
        return await query.done


@implementer(IStreamClientEndpoint)
class SentinelEndpoint:
    """Connects to whichever server the sentinels name as the master."""

    def __init__(
        self, target: RedisTarget, clock: IReactorTime, endpoints: Endpoints, timeout: float
    ) -> None:
        self.lookup = MasterLookup(target, clock, endpoints, timeout)
        self.endpoints = endpoints

    def watch(
        self, delay: Callable[[int], float], on_switch: Callable[[Address], None]
    ) -> SwitchWatch:
        """A `SwitchWatch` on the same sentinels (the last that answered first)."""
        lookup = self.lookup
        return SwitchWatch(
            lookup.target, lookup.clock, self.endpoints, lookup.order, delay, on_switch
        )

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        async def connect() -> IProtocol:
            host, port = await self.lookup.master()
            protocol: IProtocol = await self.endpoints(host, port).connect(factory)
            return protocol

        return Deferred.fromCoroutine(connect())


def sentinel_endpoint(reactor: Any, target: RedisTarget, timeout: float) -> SentinelEndpoint:
    def endpoints(host: str, port: int) -> IStreamClientEndpoint:
        return HostnameEndpoint(reactor, host, port, timeout=timeout)

    return SentinelEndpoint(target, reactor, endpoints, timeout)


class _WatchProtocol(Protocol):
    """``SUBSCRIBE +switch-master`` on a sentinel; hands every switch to its watch."""

    def __init__(self, watch: SwitchWatch) -> None:
        self.watch = watch
        self.ready: Deferred[None] = Deferred()
        self._data = b""

    def connectionMade(self) -> None:
        assert self.transport is not None
        commands = []
        if self.watch.target.sentinel_password is not None:
            commands.append(encode("AUTH", self.watch.target.sentinel_password))
        commands.append(encode("SUBSCRIBE", "+switch-master"))
        self.transport.write(b"".join(commands))

    def dataReceived(self, data: bytes) -> None:
        self._data += data
        while self._data:
            try:
                parsed = parse(self._data)
            except BadReply as e:
                self._give_up(e)
                return
            if parsed is None:
                return
            reply, end = parsed
            self._data = self._data[end:]
            self._reply(reply)

    def _reply(self, reply: Any) -> None:
        if isinstance(reply, RespError):
            self._give_up(NoMaster(f"refused: {reply}"))
        elif isinstance(reply, list) and len(reply) == 3:
            kind, channel, payload = reply
            if kind == b"subscribe" and not self.ready.called:
                self.ready.callback(None)
            elif kind == b"message" and channel == b"+switch-master":
                self.watch.switched(payload)

    def _give_up(self, error: Exception) -> None:
        self._data = b""
        if not self.ready.called:
            self.ready.errback(error)
        if self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:
        if not self.ready.called:
            self.ready.errback(ConnectionError("the sentinel closed the connection"))
        self.watch.lost(self)


@implementer(IStreamClientEndpoint)
class _NextSentinel:
    """Each connection to the next sentinel of ``order``."""

    def __init__(self, order: list[Address], endpoints: Endpoints) -> None:
        self.order = order
        self.endpoints = endpoints
        self.turn = 0

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        host, port = self.order[self.turn % len(self.order)]
        self.turn += 1
        connecting: Deferred[IProtocol] = self.endpoints(host, port).connect(factory)
        return connecting


class SwitchWatch:
    """Listens to one sentinel at a time (the next one after a loss) for the
    ``+switch-master`` of our master, and tells ``on_switch`` the new master's address:
    a failover is followed at once, even by a daemon whose connections to the old
    master are still open (a demoted master that stays up)."""

    def __init__(
        self,
        target: RedisTarget,
        clock: IReactorTime,
        endpoints: Endpoints,
        order: list[Address],
        delay: Callable[[int], float],
        on_switch: Callable[[Address], None],
    ) -> None:
        self.target = target
        self.on_switch = on_switch
        factory = Factory.forProtocol(lambda: _WatchProtocol(self))
        factory.noisy = False
        self._connector: Connector[_WatchProtocol] = Connector(
            _NextSentinel(order, endpoints),
            factory,
            clock,
            lambda protocol: protocol.ready,
            delay,
            "sentinel",
        )

    def start(self) -> None:
        self._connector.start()

    def stop(self) -> Deferred[None]:
        return self._connector.stop()

    def lost(self, protocol: _WatchProtocol) -> None:
        self._connector.lost(protocol)

    def switched(self, payload: bytes) -> None:
        """``MASTER OLD-IP OLD-PORT NEW-IP NEW-PORT``, from the sentinel."""
        try:
            name, _, _, host, port = payload.decode().split()
            address = (host, int(port))
        except (UnicodeDecodeError, ValueError):
            return
        if name == self.target.master_name:
            self.on_switch(address)
