"""``rendezvous``: the command-line client.

``register`` and ``watch`` reconnect when their server goes away (see
`rendezvous.client.reconnect`); ``--once`` exits instead. Exit codes: 0 success, 1 the
server refused the request, 2 bad usage, 3 the server could not be reached or the
connection was lost.
"""

from __future__ import annotations

import getopt
import json
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO, TypeAlias

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import react
from twisted.python import usage
from twisted.python.failure import Failure

from rendezvous import __version__
from rendezvous.addrs import InvalidMultiaddr, multiaddr_from_text, multiaddr_to_text
from rendezvous.client.connect import DIALECTS, connect_to
from rendezvous.client.errors import ConnectionClosed, RendezvousError
from rendezvous.client.joincmd import JoinOptions, run_join
from rendezvous.client.live import Event, LiveClient, PeerEntry, endpoint_description
from rendezvous.client.peertls import is_tls_target, parse_tls_target
from rendezvous.client.reconnect import (
    ReconnectingClient,
    RegistrationRefused,
    StateEvent,
    describe_state,
)
from rendezvous.p2p.keys import IdentityFileError, PrivateKey, load_or_create_identity
from rendezvous.p2p.transport import TCPAddress

if TYPE_CHECKING:
    from rendezvous.client.standard import StandardClient

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

_ENDPOINT_HELP = (
    "ENDPOINT is host:port, or a Twisted client strport: tcp:host=H:port=P, "
    "tls:host=H:port=P, unix:path=/run/rendezvous.sock; or a libp2p multiaddr "
    "/ip4/H/tcp/P[/ws]/p2p/PEER_ID, dialled with a fresh Ed25519 identity (or --identity). "
    "With --identity, tls: and ssl: ENDPOINTs are shown a libp2p TLS certificate of it, "
    "which proves its peer id to the server. "
    "Several ENDPOINTs (repeated, or comma-separated) are tried in turn. "
)
_SURVIVE_HELP = (
    "It survives restarts: when the connection is lost it reconnects (to the next "
    "ENDPOINT, at once after a session that served, else after a capped, jittered "
    "backoff up to 30 s), registers and subscribes again, and prints one line on "
    "stderr per change of state; with --once it exits instead (status 3)."
)
_EXIT_HELP = (
    "Exit status: 0 ok; 1 refused by the server; 2 bad usage; 3 unreachable, or the "
    "connection lost (discover, --once)."
)
_ONCE_FLAG = ["once", None, "exit (status 3) when the connection is lost; no reconnection"]
Session: TypeAlias = "LiveClient | StandardClient"
"""What the commands talk through, whichever the dialect."""


def _addr_text(addr: bytes) -> str:
    try:
        return multiaddr_to_text(addr)
    except InvalidMultiaddr:
        return "0x" + addr.hex()


def _entry_json(entry: PeerEntry, **extra: Any) -> str:
    record: dict[str, Any] = dict(extra)
    record.update(
        namespace=entry.namespace,
        id=entry.peer_id,
        addrs=[_addr_text(addr) for addr in entry.addrs],
    )
    if entry.signed_peer_record is not None:
        record["signed_peer_record"] = entry.signed_peer_record.hex()
    return json.dumps(record)


def _entry_text(entry: PeerEntry) -> str:
    return " ".join([entry.peer_id, *(_addr_text(addr) for addr in entry.addrs)])


class _Target(usage.Options):
    optParameters: list[list[Any]] = [
        [
            "dialect",
            None,
            "live",
            "live, or standard (libp2p /rendezvous/1.0.0: signed records with a TTL, no watch)",
        ],
        [
            "identity",
            None,
            None,
            "libp2p private key file (created, mode 0600, if missing): our peer id over "
            "libp2p, and proven on tls:/ssl: endpoints by a libp2p TLS certificate",
        ],
    ]

    def parseOptions(self, options: list[str] | None = None) -> None:
        """Accept options after the positional arguments too, as people type them."""
        if options is not None:
            try:
                found, positional = getopt.gnu_getopt(options, self.shortOpt, self.longOpt)
            except getopt.GetoptError as e:
                raise usage.UsageError(str(e)) from None
            options = []
            for name, value in found:
                takes_value = (
                    name[2:] + "=" in self.longOpt
                    if name.startswith("--")
                    else name[1:] + ":" in self.shortOpt
                )
                options += [name, value] if takes_value else [name]
            options += ["--", *positional]
        super().parseOptions(options)

    def opt_version(self) -> None:
        """print the version and exit"""
        print(f"rendezvous {__version__}")
        sys.exit(0)

    def parseArgs(self, *args: str) -> None:
        """ENDPOINT [ENDPOINT ...] NAMESPACE; an ENDPOINT may list several, comma-separated."""
        if len(args) < 2:
            raise usage.UsageError("an ENDPOINT and a NAMESPACE are required")
        *servers, self["namespace"] = args
        self["endpoints"] = [part for text in servers for part in text.split(",") if part]
        if not self["endpoints"]:
            raise usage.UsageError("an ENDPOINT is required")
        self["endpoint"] = self["endpoints"][0]
        self["multiaddrs"] = {}
        for endpoint in self["endpoints"]:
            if endpoint.startswith("/"):
                try:
                    self["multiaddrs"][endpoint] = TCPAddress.parse(endpoint)
                except InvalidMultiaddr as e:
                    raise usage.UsageError(f"{endpoint}: {e}") from None
        self["multiaddr"] = self["multiaddrs"].get(self["endpoint"])

    def postOptions(self) -> None:
        if self["dialect"] not in DIALECTS:
            raise usage.UsageError(f"--dialect must be one of {', '.join(DIALECTS)}")
        over_libp2p = bool(self["multiaddrs"])
        if self["dialect"] == "standard" and len(self["multiaddrs"]) < len(self["endpoints"]):
            raise usage.UsageError("the standard dialect runs over libp2p: give multiaddrs")
        self["key"] = None
        self["tls_key"] = None
        """The identity a raw tls:/ssl: session presents (only one given)."""
        if self["identity"] is not None:
            _check_identity_endpoints(self["endpoints"])
            try:
                self["key"] = self["tls_key"] = load_or_create_identity(self["identity"])
            except IdentityFileError as e:
                raise usage.UsageError(f"--identity: {e}") from None
        elif over_libp2p:
            self["key"] = PrivateKey.generate()


def _check_identity_endpoints(endpoints: list[str]) -> None:
    """--identity is proven over libp2p and TLS: every ENDPOINT must be one of them."""
    for endpoint in endpoints:
        if endpoint.startswith("/"):
            continue
        description = endpoint_description(endpoint)
        if not is_tls_target(description):
            raise usage.UsageError(
                f"--identity applies to libp2p multiaddrs and tls:/ssl: endpoints, not {endpoint}"
            )
        try:
            parse_tls_target(description)
        except ValueError as e:
            raise usage.UsageError(f"{endpoint}: {e}") from None


class DiscoverOptions(_Target):
    synopsis = "ENDPOINT [ENDPOINT ...] NAMESPACE [--limit N] [--json]"
    longdesc = (
        "Print the peers registered in NAMESPACE, one per line, from the first ENDPOINT "
        "that answers. " + _ENDPOINT_HELP + _EXIT_HELP
    )
    optParameters = [
        ["limit", "l", 0, "at most this many peers (0: the server's default)", int],
        *_Target.optParameters,
    ]
    optFlags = [["json", "j", "one JSON object per line"]]


class WatchOptions(_Target):
    synopsis = "ENDPOINT [ENDPOINT ...] NAMESPACE [--json] [--once]"
    longdesc = (
        "Enter rendezvous in NAMESPACE: print its current peers, then each REGISTER (+) "
        "and UNREGISTER (-) as it happens, until interrupted. " + _SURVIVE_HELP + " After a "
        "reconnection only what changed meanwhile is printed. " + _ENDPOINT_HELP + _EXIT_HELP
    )
    optFlags = [["json", "j", "one JSON object per line"], _ONCE_FLAG]

    def postOptions(self) -> None:
        super().postOptions()
        if self["dialect"] == "standard":
            raise usage.UsageError("watch needs the live dialect: the standard one has no push")


class RegisterOptions(_Target):
    synopsis = "ENDPOINT [ENDPOINT ...] NAMESPACE [--id PEER_ID] [--addr MULTIADDR ...] [--once]"
    longdesc = (
        "Register a peer in NAMESPACE and stay registered until interrupted (Ctrl-C or "
        "SIGTERM), then unregister and exit. " + _SURVIVE_HELP + " " + _ENDPOINT_HELP + _EXIT_HELP
    )
    optFlags = [_ONCE_FLAG]
    optParameters = [
        [
            "id",
            "i",
            None,
            "the peer id to register (base58 or CIDv1); over libp2p, our own by default",
        ],
        *_Target.optParameters,
    ]

    def __init__(self) -> None:
        super().__init__()
        self["addrs"] = []

    def opt_addr(self, text: str) -> None:
        """a multiaddr of the peer, e.g. /ip4/192.0.2.1/tcp/4001 (repeatable)"""
        try:
            self["addrs"].append(multiaddr_from_text(text))
        except InvalidMultiaddr as e:
            raise usage.UsageError(f"--addr {text}: {e}") from None

    opt_a = opt_addr

    def postOptions(self) -> None:
        super().postOptions()
        if not self["id"]:
            if self["key"] is None:
                raise usage.UsageError("--id is required (except over libp2p or with --identity)")
            self["id"] = self["key"].peer_id_text()
        elif self["dialect"] == "standard" and self["id"] != self["key"].peer_id_text():
            raise usage.UsageError("the standard dialect registers only our own id: drop --id")


class IdOptions(usage.Options):
    synopsis = "--identity FILE"
    longdesc = (
        "Print the libp2p peer id of the private key in FILE (made, mode 0600, if missing), "
        "as the daemon and the relay use it with --identity: the id for /p2p/<id> in their "
        "addresses, known before they start."
    )
    optParameters = [["identity", None, None, "libp2p private key file"]]

    def postOptions(self) -> None:
        if self["identity"] is None:
            raise usage.UsageError("--identity FILE is required")
        try:
            self["key"] = load_or_create_identity(self["identity"])
        except IdentityFileError as e:
            raise usage.UsageError(f"--identity: {e}") from None


class Options(usage.Options):
    synopsis = "rendezvous"
    longdesc = (
        "Talk to a rendezvous server (live dialect over a raw stream or libp2p, or the "
        "standard dialect over libp2p). "
        "register and watch reconnect when their server goes away. " + _EXIT_HELP
    )
    subCommands = [
        ["discover", None, DiscoverOptions, "list the peers of a namespace"],
        ["watch", None, WatchOptions, "print a namespace's peers and changes as they happen"],
        ["register", None, RegisterOptions, "register a peer until interrupted"],
        ["id", None, IdOptions, "print the peer id of a libp2p identity file"],
        ["join", None, JoinOptions, "be reachable in a namespace through the relay fleet"],
    ]

    def opt_version(self) -> None:
        """print the version and exit"""
        print(f"rendezvous {__version__}")
        sys.exit(0)

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("a command is required: discover, watch, register, join or id")


async def _discover(client: Session, options: usage.Options, out: TextIO) -> int:
    entries = await client.discover(options["namespace"], options["limit"])
    for entry in entries:
        print(_entry_json(entry) if options["json"] else _entry_text(entry), file=out, flush=True)
    return EXIT_OK


def _printer(options: usage.Options, out: TextIO) -> Callable[[Event], None]:
    def show(event: Event) -> None:
        if options["json"]:
            line = _entry_json(event.entry, event=event.kind)
        else:
            line = ("+ " if event.kind == "register" else "- ") + _entry_text(event.entry)
        print(line, file=out, flush=True)

    return show


class _Interrupts:
    """SIGINT and SIGTERM, caught from the start so none is missed."""

    def __init__(self, reactor: Any) -> None:
        self.received: Deferred[bool] = Deferred()

        def interrupted(signum: int, frame: Any) -> None:
            reactor.callFromThread(self._fire, True)

        signal.signal(signal.SIGINT, interrupted)
        signal.signal(signal.SIGTERM, interrupted)

    def _fire(self, value: bool) -> None:
        if not self.received.called:
            self.received.callback(value)

    async def wait(self, client: Session) -> bool:
        """Wait for a signal (True) or the connection's end (False)."""
        client.closed.addCallback(lambda _: self._fire(False))
        return await self.received


async def _watch(
    interrupts: _Interrupts, client: LiveClient, options: usage.Options, out: TextIO
) -> int:
    await client.rendezvous(options["namespace"], _printer(options, out))
    return EXIT_OK if await interrupts.wait(client) else EXIT_UNREACHABLE


async def _register(
    interrupts: _Interrupts, client: Session, options: usage.Options, out: TextIO
) -> int:
    namespace, peer_id = options["namespace"], options["id"]
    await client.register(namespace, peer_id, options["addrs"])
    print(f"registered {peer_id} in {namespace}", file=out, flush=True)
    if not await interrupts.wait(client):
        return EXIT_UNREACHABLE
    await client.unregister(namespace, peer_id)
    print(f"unregistered {peer_id} from {namespace}", file=out, flush=True)
    return EXIT_OK


async def run(reactor: Any, options: Options, out: TextIO, err: TextIO) -> int:
    command, sub = options.subCommand, options.subOptions
    if command == "id":
        print(sub["key"].peer_id_text(), file=out, flush=True)
        return EXIT_OK
    interrupts = _Interrupts(reactor)
    if command == "join":
        return await run_join(reactor, sub, out, err, interrupts.received)
    if command in ("watch", "register") and not sub["once"]:
        return await _survive(reactor, interrupts, str(command), sub, out, err)
    try:
        client = await _connect_first(reactor, sub, err)
    except Exception:
        return EXIT_UNREACHABLE
    try:
        if command == "discover":
            return await _discover(client, sub, out)
        if command == "watch":
            assert isinstance(client, LiveClient)  # the standard dialect is refused
            return await _watch(interrupts, client, sub, out)
        return await _register(interrupts, client, sub, out)
    except RendezvousError as e:
        print(f"rendezvous: refused: {e}", file=err)
        return EXIT_REFUSED
    except ConnectionClosed as e:
        print(f"rendezvous: connection lost: {e}", file=err)
        return EXIT_UNREACHABLE
    finally:
        client.disconnect()


async def _connect_first(reactor: Any, options: usage.Options, err: TextIO) -> Session:
    """A session with the first ENDPOINT that answers, each tried once in turn."""
    for endpoint in options["endpoints"]:
        try:
            return await _connect(reactor, options, endpoint)
        except Exception as e:
            print(f"rendezvous: cannot reach {endpoint}: {e}", file=err, flush=True)
            failure = e
    raise failure


async def _survive(
    reactor: Any,
    interrupts: _Interrupts,
    command: str,
    options: usage.Options,
    out: TextIO,
    err: TextIO,
) -> int:
    """``watch`` or ``register`` that outlive their server: reconnect until interrupted."""
    namespace = options["namespace"]
    finished: Deferred[int] = Deferred()

    def finish(code: int) -> None:
        if not finished.called:
            finished.callback(code)

    def refused(failure: Failure) -> None:
        if failure.check(RendezvousError):
            print(f"rendezvous: refused: {failure.value}", file=err, flush=True)
            finish(EXIT_REFUSED)

    def state(event: StateEvent) -> None:
        if isinstance(event, RegistrationRefused) and event.retry_in is None:
            refused(Failure(event.error))  # given up: nothing is held any more
        else:
            print(f"rendezvous: {describe_state(event)}", file=err, flush=True)

    client = ReconnectingClient(
        reactor,
        options["endpoints"],
        lambda endpoint: ensureDeferred(_connect(reactor, options, endpoint)),
        on_state=state,
    )
    interrupts.received.addCallback(lambda _: finish(EXIT_OK))
    client.start()
    if command == "watch":
        client.rendezvous(namespace, _printer(options, out)).addErrback(refused)
    else:
        peer_id = options["id"]

        def registered(_: None) -> None:
            print(f"registered {peer_id} in {namespace}", file=out, flush=True)

        client.register(namespace, peer_id, options["addrs"]).addCallbacks(registered, refused)
    code = await finished
    if command == "register" and code == EXIT_OK and client.server is not None:
        try:
            await client.unregister(namespace, options["id"])
            print(f"unregistered {options['id']} from {namespace}", file=out, flush=True)
        except Exception as e:
            print(f"rendezvous: unregister failed: {e}", file=err, flush=True)
    await client.stop()
    return code


async def _connect(reactor: Any, options: usage.Options, endpoint: str) -> Session:
    """A session with ``endpoint``: libp2p for a multiaddr, else a client strport."""
    identity = options["key"] if endpoint.startswith("/") else options["tls_key"]
    session: Session = await connect_to(
        reactor, endpoint, dialect=options["dialect"], identity=identity
    )
    return session


def main(argv: list[str] | None = None) -> None:
    options = Options()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as e:
        print(f"{options}\nrendezvous: {e}", file=sys.stderr)
        sys.exit(EXIT_USAGE)

    def start(reactor: Any) -> Deferred[None]:
        def finish(code: int) -> None:
            if code:
                raise SystemExit(code)

        return ensureDeferred(run(reactor, options, sys.stdout, sys.stderr)).addCallback(finish)

    react(start)


if __name__ == "__main__":
    main()
