"""``rendezvous join``: be reachable in a namespace through the relay fleet until
interrupted (`rendezvous.relay.fleet.join`), printing its peers as ``watch`` does and one
line on stderr per change of the relays held."""

from __future__ import annotations

import getopt
import json
from typing import Any, TextIO

from twisted.internet.defer import Deferred
from twisted.python import usage
from twisted.python.failure import Failure

from rendezvous.addrs import InvalidMultiaddr, multiaddr_to_text
from rendezvous.client.errors import RendezvousError
from rendezvous.client.live import Event
from rendezvous.client.reconnect import Backoff, View
from rendezvous.p2p.keys import IdentityFileError, PrivateKey, load_or_create_identity
from rendezvous.p2p.transport import TCPAddress
from rendezvous.relay.announce import DEFAULT_NAMESPACE
from rendezvous.relay.pool import DEFAULT_K, PoolEvent, describe_event

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_UNREACHABLE = 3


class JoinOptions(usage.Options):
    synopsis = (
        "MULTIADDR NAMESPACE [--relays K] [--relay-namespace NS] [--identity FILE] "
        "[--renewal S] [--json] [--once]"
    )
    longdesc = (
        "Be reachable in NAMESPACE through the relay fleet of the rendezvous daemon at "
        "MULTIADDR (/ip4|ip6/H/tcp/P[/ws]/p2p/PEER_ID), with no listen address of our own: "
        "reserve on the K best relays found in the relays' namespace (by round trip), "
        "register our /p2p-circuit addresses in NAMESPACE and print its peers, then each "
        "REGISTER (+) and UNREGISTER (-), until interrupted; then unregister and exit. "
        "Each change of the relays held is one line on stderr: a relay lost is replaced "
        "and the new addresses registered at once; while fewer than K are held it retries "
        "with a capped, jittered backoff up to 30 s. A join that fails (no relay, every "
        "relay refusing, the daemon unreachable or lost) is retried the same way; with "
        "--once it exits instead (status 3). Exit status: 0 ok; 1 refused by the daemon; "
        "2 bad usage; 3 unreachable, or lost (--once)."
    )
    optParameters = [
        ["relays", "k", DEFAULT_K, "reservations to hold (on as many relays)", int],
        ["relay-namespace", None, DEFAULT_NAMESPACE, "where the relays are registered"],
        ["identity", None, None, "libp2p private key file (created, mode 0600, if missing)"],
        ["renewal", None, None, "renew reservations at least every S seconds", float],
    ]
    optFlags = [
        ["json", "j", "one JSON object per line"],
        ["once", None, "exit (status 3) when the join fails or the daemon is lost"],
    ]

    def parseOptions(self, options: list[str] | None = None) -> None:
        """Accept options after the positional arguments too."""
        if options is not None:
            try:
                found, positional = getopt.gnu_getopt(options, self.shortOpt, self.longOpt)
            except getopt.GetoptError as e:
                raise usage.UsageError(str(e)) from None
            options = []
            for name, value in found:
                long = name.startswith("--")
                takes = name[2:] + "=" in self.longOpt if long else name[1:] + ":" in self.shortOpt
                options += [name, value] if takes else [name]
            options += ["--", *positional]
        super().parseOptions(options)

    def parseArgs(self, *args: str) -> None:
        """MULTIADDR NAMESPACE"""
        if len(args) != 2:
            raise usage.UsageError("a MULTIADDR and a NAMESPACE are required")
        daemon, namespace = args
        try:
            self["daemon"] = TCPAddress.parse(daemon)
        except InvalidMultiaddr as e:
            raise usage.UsageError(f"{daemon}: {e}") from None
        if self["daemon"].peer_id is None:
            raise usage.UsageError(f"{daemon}: the daemon's address must end in /p2p/PEER_ID")
        self["namespace"] = namespace

    def postOptions(self) -> None:
        if self["relays"] < 1:
            raise usage.UsageError("--relays must be at least 1")
        if self["renewal"] is not None and self["renewal"] < 1:
            raise usage.UsageError("--renewal must be at least 1 second")
        if self["identity"] is None:
            self["key"] = PrivateKey.generate()
        else:
            try:
                self["key"] = load_or_create_identity(self["identity"])
            except IdentityFileError as e:
                raise usage.UsageError(f"--identity: {e}") from None


def _race(interrupted: Deferred[Any], other: Deferred[Any]) -> Deferred[tuple[bool, Any]]:
    """``(True, None)`` when ``interrupted`` fires first, else ``(False, result)`` with
    ``other``'s result (a `Failure` when it failed), which is consumed; ``interrupted``'s
    result is left to its other callbacks. A `Membership` that comes too late leaves."""
    outcome: Deferred[tuple[bool, Any]] = Deferred()

    def on_interrupt(result: Any) -> Any:
        if not outcome.called:
            outcome.callback((True, None))
        return result

    def on_other(result: Any) -> None:
        if not outcome.called:
            outcome.callback((False, result))
        elif hasattr(result, "leave"):
            result.leave()

    interrupted.addBoth(on_interrupt)
    other.addBoth(on_other)
    return outcome


class _Peers:
    """Prints a namespace's peers across joins: after a rejoin only what changed."""

    def __init__(self, options: usage.Options, out: TextIO) -> None:
        self.options = options
        self.out = out
        self.view = View()
        self.snapshot: list[Event] | None = None

    def begin(self) -> None:
        self.snapshot = []

    def end(self) -> None:
        snapshot, self.snapshot = self.snapshot or [], None
        for event in self.view.reconcile([e.entry for e in snapshot if e.kind == "register"]):
            self.show(event)

    def __call__(self, event: Event) -> None:
        if self.snapshot is not None:
            self.snapshot.append(event)
        elif self.view.apply(event):
            self.show(event)

    def show(self, event: Event) -> None:
        entry = event.entry
        addrs = [multiaddr_to_text(a) for a in entry.addrs]
        if self.options["json"]:
            line = json.dumps(
                {
                    "event": event.kind,
                    "namespace": entry.namespace,
                    "id": entry.peer_id,
                    "addrs": addrs,
                }
            )
        else:
            line = ("+ " if event.kind == "register" else "- ") + " ".join([entry.peer_id, *addrs])
        print(line, file=self.out, flush=True)


async def run_join(
    reactor: Any,
    options: usage.Options,
    out: TextIO,
    err: TextIO,
    interrupted: Deferred[Any],
    backoff: Backoff | None = None,
) -> int:
    """Join until ``interrupted`` fires; the exit status."""
    from rendezvous.p2p.host import Host
    from rendezvous.relay.fleet import join

    namespace, daemon = options["namespace"], options["daemon"]
    host = Host(options["key"], reactor)
    backoff = backoff if backoff is not None else Backoff(initial=0.5, cap=30.0)
    peers = _Peers(options, out)
    down_since: list[float] = []
    """When the join last stopped working (empty while it works)."""

    def say(text: str) -> None:
        print(f"rendezvous: {text}", file=err, flush=True)

    def state(event: PoolEvent) -> None:
        say(describe_event(event))

    async def pause(why: str) -> bool:
        """Say why and wait the backoff's next delay; True when interrupted meanwhile."""
        if not down_since:
            down_since.append(reactor.seconds())
        delay = backoff.next_delay(outage=reactor.seconds() - down_since[0])
        say(f"{why}; retrying in {delay:.1f} s")
        timer: Deferred[None] = Deferred()
        call = reactor.callLater(delay, timer.callback, None)
        stopped, _ = await _race(interrupted, timer)
        if stopped and call.active():
            call.cancel()
        return bool(stopped)

    while not interrupted.called:
        peers.begin()
        joining = join(
            reactor,
            host,
            daemon,
            namespace,
            peers,
            options["relay-namespace"],
            k=options["relays"],
            on_state=state,
            renewal=options["renewal"],
        )
        stopped, result = await _race(interrupted, joining)
        if stopped:
            break
        if isinstance(result, Failure):
            e = result.value
            if isinstance(e, RendezvousError):
                say(f"refused: {e}")
                return EXIT_REFUSED
            peers.snapshot = None
            if options["once"]:
                say(f"cannot join {namespace}: {e}")
                return EXIT_UNREACHABLE
            if await pause(f"cannot join {namespace}: {e}"):
                break
            continue
        membership = result
        peers.end()
        backoff.reset()
        down_since.clear()
        print(
            f"joined {namespace} as {' '.join(membership.circuit_addresses)}", file=out, flush=True
        )
        stopped, _ = await _race(interrupted, membership.closed)
        if stopped:
            await membership.leave()
            print(f"left {namespace}", file=out, flush=True)
            return EXIT_OK
        membership.leave()  # the session is gone: drop the reservations too
        if options["once"]:
            say(f"lost {daemon.text()}")
            return EXIT_UNREACHABLE
        if await pause(f"lost {daemon.text()}"):
            break
    return EXIT_OK
