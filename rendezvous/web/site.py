"""The ``--web`` site: the status page at ``/``, its data at ``/status.json``, and the
files of ``--web-root`` under ``/app/``. GET and HEAD only; no access log."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.web import http
from twisted.web.resource import NoResource, Resource
from twisted.web.server import Request, Site
from twisted.web.static import File

from rendezvous import __version__
from rendezvous.model import Registration
from rendezvous.p2p.host import Host
from rendezvous.store.base import Store
from rendezvous.store.memory import MemoryStore
from rendezvous.web.page import CONTENT_SECURITY_POLICY, HTML
from rendezvous.web.sessions import count_sessions
from rendezvous.web.status import (
    MirrorView,
    NamespaceView,
    RegistryView,
    Snapshot,
    Watching,
    snapshot,
)

CACHE_SECONDS = 0.5
"""A snapshot is made at most this often, however many pages poll."""


def _common_headers(request: Request) -> None:
    request.setHeader(b"x-content-type-options", b"nosniff")
    request.setHeader(b"referrer-policy", b"no-referrer")


class StatusPage(Resource):
    """The page itself: static bytes, a strict Content-Security-Policy."""

    def render_GET(self, request: Request) -> bytes:
        _common_headers(request)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"content-security-policy", CONTENT_SECURITY_POLICY)
        request.setHeader(b"cache-control", b"no-cache")
        return HTML


class StatusJSON(Resource):
    """``make()`` as JSON, made again once it is ``max_age`` seconds old."""

    def __init__(
        self, make: Callable[[], Snapshot], clock: IReactorTime, max_age: float = CACHE_SECONDS
    ) -> None:
        super().__init__()
        self._make = make
        self._clock = clock
        self._max_age = max_age
        self._body: bytes | None = None
        self._made = 0.0

    def render_GET(self, request: Request) -> bytes:
        now = self._clock.seconds()
        if self._body is None or not 0 <= now - self._made < self._max_age:
            self._body = json.dumps(self._make(), separators=(",", ":")).encode()
            self._made = now
        _common_headers(request)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return self._body


class StaticFiles(File):
    """A directory served as files: an index.html where there is one, never a listing."""

    def directoryListing(self) -> Resource:
        return NoResource()

    def render_GET(self, request: Request) -> Any:
        _common_headers(request)
        return super().render_GET(request)


class QuietSite(Site):
    """A `Site` that logs no line per request (pages poll every second)."""

    noisy = False

    def log(self, request: http.Request) -> None:
        pass


class _NoNamespaces:
    """A store that tells nothing of its namespaces: only sessions are shown."""

    scope = "this daemon's sessions only (its store lists no namespaces)"

    def namespace_sizes(self) -> Iterable[tuple[str, int, int]]:
        return ()

    def members(self, namespace: str, limit: int) -> list[Registration]:
        return []


def namespace_view(store: Store) -> NamespaceView:
    """What ``store`` can tell of its namespaces."""
    if isinstance(store, MemoryStore):
        return RegistryView(store.registry)
    if callable(getattr(store, "watched", None)):
        watching: Watching = store  # type: ignore[assignment]
        return MirrorView(watching)
    return _NoNamespaces()


def web_site(
    store: Store,
    host: Host | None,
    clock: IReactorTime,
    web_root: str | None,
    relay_namespace: str,
) -> Site:
    """The ``--web`` site of a daemon with ``store`` and libp2p ``host``."""
    view = namespace_view(store)

    def make() -> Snapshot:
        sessions = count_sessions(store.stats().sessions, host)
        return snapshot(view, sessions, version=__version__, relay_namespace=relay_namespace)

    root = Resource()
    root.putChild(b"", StatusPage())
    root.putChild(b"status.json", StatusJSON(make, clock))
    if web_root is not None:
        root.putChild(b"app", StaticFiles(web_root))
    return QuietSite(root)
