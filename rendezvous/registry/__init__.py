"""The registry: namespaces, registrations, subscribers and limits, as pure state.

It knows nothing of sockets, dialects or time sources; it tells each subscriber of a
namespace about every change there through `Subscriber.announce`.

A registration is held either by a live session (until it ends or unregisters) or, for
the standard dialect, by nobody until its TTL runs out: the caller says when, on its
own clock, and calls `Registry.expire` with the time whenever `Registry.next_expiry`
has passed. One peer id has one registration per namespace whatever the dialect: the
newer replaces the older when the id is the session's authenticated one (or the
session's own).

Its parts, each small enough to read at once:

- `rendezvous.registry.core`: `Registry`, the requests that change state and the
  announcements they make;
- `rendezvous.registry.ownership`: `Session`, and `Owners`: who may register, replace
  or remove a peer id, and who is told of its changes;
- `rendezvous.registry.expiry`: `Expiries`, when each TTL registration ends;
- `rendezvous.registry.namespaces` and `rendezvous.registry.changes`: one namespace's
  state, and the change index that answers a DISCOVER from a cookie;
- `rendezvous.registry.reads`: what the registry answers without changing anything.
"""

from rendezvous.registry.core import Registry
from rendezvous.registry.ownership import Session, Subscriber

__all__ = ["Registry", "Session", "Subscriber"]
