"""The --web site: status page, status.json, /app/ files, methods, headers, options."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.error import CannotListenError
from twisted.internet.task import Clock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, readBody
from twisted.web.test.requesthelper import DummyRequest

from rendezvous import _tap
from rendezvous.model import Announcement
from rendezvous.service import Daemon, DaemonConfig
from rendezvous.store.memory import MemoryStore
from rendezvous.web.page import CONTENT_SECURITY_POLICY, HTML, SCRIPT, STYLE
from rendezvous.web.site import StatusJSON, StatusPage, namespace_view
from rendezvous.web.status import MirrorView, RegistryView, Sessions, Snapshot, snapshot

from . import test_redis_store as redis_tests
from .helpers import peer, tcp_addr

NO_SESSIONS = Sessions(live_raw=0, live_p2p=0, standard=0)


def render(resource: Any, request: DummyRequest) -> bytes:
    result = resource.render(request)
    assert isinstance(result, bytes)
    return result


def header(request: DummyRequest, name: bytes) -> bytes | None:
    values = request.responseHeaders.getRawHeaders(name)
    return None if values is None else values[0]


class StatusJSONTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.made = 0

    def make(self) -> Snapshot:
        self.made += 1
        return {"made": self.made}  # type: ignore[typeddict-item]

    def test_json_not_to_be_stored(self) -> None:
        request = DummyRequest([])
        body = render(StatusJSON(self.make, self.clock), request)
        self.assertEqual(json.loads(body), {"made": 1})
        self.assertEqual(header(request, b"content-type"), b"application/json")
        self.assertEqual(header(request, b"cache-control"), b"no-store")
        self.assertEqual(header(request, b"x-content-type-options"), b"nosniff")

    def test_made_at_most_every_half_second(self) -> None:
        resource = StatusJSON(self.make, self.clock)
        self.assertEqual(json.loads(render(resource, DummyRequest([]))), {"made": 1})
        self.clock.advance(0.4)
        self.assertEqual(json.loads(render(resource, DummyRequest([]))), {"made": 1})
        self.clock.advance(0.1)
        self.assertEqual(json.loads(render(resource, DummyRequest([]))), {"made": 2})
        self.assertEqual(self.made, 2)

    def test_head_and_get_only(self) -> None:
        resource = StatusJSON(self.make, self.clock)
        head = DummyRequest([])
        head.method = b"HEAD"
        render(resource, head)
        self.assertEqual(header(head, b"cache-control"), b"no-store")
        post = DummyRequest([])
        post.method = b"POST"
        from twisted.web.error import UnsupportedMethod

        self.assertRaises(UnsupportedMethod, resource.render, post)


def sha256(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


class StatusPageTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.request = DummyRequest([])
        self.body = render(StatusPage(), self.request).decode()

    def test_html(self) -> None:
        self.assertEqual(header(self.request, b"content-type"), b"text/html; charset=utf-8")
        self.assertTrue(self.body.startswith("<!DOCTYPE html>"))

    def test_policy_allows_its_own_script_and_style_only(self) -> None:
        policy = header(self.request, b"content-security-policy")
        self.assertEqual(policy, CONTENT_SECURITY_POLICY)
        assert policy is not None
        directives = dict(d.strip().split(" ", 1) for d in policy.decode().split(";"))
        self.assertEqual(directives["default-src"], "'none'")
        self.assertEqual(directives["connect-src"], "'self'")
        self.assertEqual(directives["frame-ancestors"], "'none'")
        scripts = re.findall(r"<script>(.*?)</script>", self.body, re.S)
        styles = re.findall(r"<style>(.*?)</style>", self.body, re.S)
        self.assertEqual((scripts, styles), ([SCRIPT], [STYLE]))
        self.assertEqual(directives["script-src"], sha256(SCRIPT))
        self.assertEqual(directives["style-src"], sha256(STYLE))

    def test_self_contained(self) -> None:
        for outside in ("http:", "https:", "//", " src=", " href="):
            self.assertNotIn(outside, HTML.decode())
        self.assertIn('fetch("status.json"', SCRIPT)

    def test_values_written_as_text_never_as_markup(self) -> None:
        self.assertIn(".textContent = ", SCRIPT)
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            self.assertNotIn(sink, SCRIPT)


class Nobody:
    def announce(self, announcement: Announcement) -> None:
        pass


class NamespaceViewTests(SynchronousTestCase):
    def test_memory_store_shows_its_registry(self) -> None:
        self.assertIsInstance(namespace_view(MemoryStore()), RegistryView)  # type: ignore[arg-type]

    def test_shared_store_shows_what_it_mirrors(self) -> None:
        class Shared:
            def watched(self) -> dict[str, object]:
                return {}

        self.assertIsInstance(namespace_view(Shared()), MirrorView)  # type: ignore[arg-type]

    def test_other_stores_sessions_only(self) -> None:
        view = namespace_view(object())  # type: ignore[arg-type]
        self.assertEqual(list(view.namespace_sizes()), [])
        self.assertIn("sessions only", view.scope)


class RedisViewTests(redis_tests.StoreTestCase):
    """A Redis store's view: the namespaces its subscribers watch, as mirrored."""

    def test_watched_namespaces_with_the_fleets_members(self) -> None:
        self.subscribed(3, redis_tests.A, redis_tests.B)
        view = namespace_view(self.store)
        self.assertIsInstance(view, MirrorView)
        status = snapshot(view, NO_SESSIONS, version="v", relay_namespace="ns")
        self.assertEqual(
            status["namespaces"]["listed"],
            [{"name": "ns", "registrations": 2, "subscribers": 1}],
        )
        self.assertEqual(status["relays"]["total"], 2)
        self.assertEqual(
            status["relays"]["listed"],
            sorted([redis_tests.A.peer.id, redis_tests.B.peer.id]),
        )

    def test_read_only(self) -> None:
        self.subscribed(3)
        watched: Any = self.store.watched()

        def change() -> None:
            watched["x"] = None

        self.assertRaises(TypeError, change)


class SiteTests(TestCase):
    """The site of a daemon, over HTTP on loopback."""

    def setUp(self) -> None:
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(self.root, "assets", "empty"))
        with open(os.path.join(self.root, "index.html"), "w") as f:
            f.write("<p>the app</p>")
        with open(os.path.join(self.root, "assets", "app.js"), "w") as f:
            f.write("console.log(1)")
        self.daemon = Daemon(
            DaemonConfig(
                listen=("tcp:0:interface=127.0.0.1",),
                web="tcp:0:interface=127.0.0.1",
                web_root=self.root,
            ),
            reactor,
        )
        self.daemon.startService()
        self.addCleanup(self.daemon.stopService)
        port = self.daemon.web_ports[0].getHost().port  # type: ignore[attr-defined]
        self.base = f"http://127.0.0.1:{port}"
        self.agent = Agent(reactor)

    @inlineCallbacks
    def get(self, path: str, method: bytes = b"GET"):  # type: ignore[no-untyped-def]
        response = yield self.agent.request(method, (self.base + path).encode())
        body = yield readBody(response)
        return response, body

    @inlineCallbacks
    def test_status_json_from_the_store(self):  # type: ignore[no-untyped-def]
        store = self.daemon.store
        session = store.open_session(Nobody())  # type: ignore[arg-type]
        store.register(session, "my-app", peer("a", tcp_addr(1)), None)
        response, body = yield self.get("/status.json")
        self.assertEqual(response.code, 200)
        status = json.loads(body)
        self.assertEqual(
            status["namespaces"]["listed"],
            [{"name": "my-app", "registrations": 1, "subscribers": 0}],
        )
        self.assertEqual(status["sessions"]["live_raw"], 1)
        self.assertEqual(response.headers.getRawHeaders(b"cache-control"), [b"no-store"])

    @inlineCallbacks
    def test_page_at_root(self):  # type: ignore[no-untyped-def]
        response, body = yield self.get("/")
        self.assertEqual(response.code, 200)
        self.assertEqual(body, HTML)
        self.assertEqual(
            response.headers.getRawHeaders(b"content-security-policy"), [CONTENT_SECURITY_POLICY]
        )

    @inlineCallbacks
    def test_app_files(self):  # type: ignore[no-untyped-def]
        response, body = yield self.get("/app/")
        self.assertEqual((response.code, body), (200, b"<p>the app</p>"))
        response, body = yield self.get("/app/index.html")
        self.assertEqual((response.code, body), (200, b"<p>the app</p>"))
        response, body = yield self.get("/app/assets/app.js")
        self.assertEqual((response.code, body), (200, b"console.log(1)"))
        self.assertIn(b"javascript", response.headers.getRawHeaders(b"content-type")[0])

    @inlineCallbacks
    def test_app_redirects_to_app_slash(self):  # type: ignore[no-untyped-def]
        response, _ = yield self.get("/app")
        self.assertEqual(response.code, 302)
        self.assertEqual(response.headers.getRawHeaders(b"location"), [b"/app/"])

    @inlineCallbacks
    def test_no_directory_listings(self):  # type: ignore[no-untyped-def]
        for path in ("/app/assets/", "/app/assets/empty/"):
            response, body = yield self.get(path)
            self.assertEqual(response.code, 404, path)
            self.assertNotIn(b"app.js", body)

    @inlineCallbacks
    def test_not_found(self):  # type: ignore[no-untyped-def]
        for path in ("/nothing", "/status.json/more", "/app/missing.html", "/app/../etc/passwd"):
            response, _ = yield self.get(path)
            self.assertEqual(response.code, 404, path)

    @inlineCallbacks
    def test_get_and_head_only(self):  # type: ignore[no-untyped-def]
        for path in ("/", "/status.json", "/app/index.html"):
            response, body = yield self.get(path, b"HEAD")
            self.assertEqual((response.code, body), (200, b""), path)
            response, _ = yield self.get(path, b"POST")
            self.assertEqual(response.code, 405, path)
            allow = response.headers.getRawHeaders(b"allow")[0]
            self.assertEqual(sorted(allow.split(b", ")), [b"GET", b"HEAD"], path)
            response, _ = yield self.get(path, b"PUT")  # a method twisted.web does not know
            self.assertEqual(response.code, 501, path)


class ListenerTests(SynchronousTestCase):
    def test_nothing_bound_without_web(self) -> None:
        daemon = Daemon(DaemonConfig(listen=()), reactor)
        daemon.privilegedStartService()
        self.addCleanup(daemon.stopService)
        self.assertEqual(daemon.web_ports, [])

    def test_bind_error_fails_start_up(self) -> None:
        first = Daemon(DaemonConfig(listen=(), web="tcp:0:interface=127.0.0.1"), reactor)
        first.privilegedStartService()
        self.addCleanup(first.stopService)
        port = first.web_ports[0].getHost().port  # type: ignore[attr-defined]
        second = Daemon(DaemonConfig(listen=(), web=f"tcp:{port}:interface=127.0.0.1"), reactor)
        self.assertRaises(CannotListenError, second.privilegedStartService)


class OptionsTests(SynchronousTestCase):
    def parse(self, *args: str) -> _tap.Options:
        options = _tap.Options()
        options.parseOptions(list(args))
        return options

    def test_off_by_default(self) -> None:
        options = self.parse()
        self.assertEqual((options["web"], options["web-root"]), (None, None))
        self.assertEqual(options["web-relay-namespace"], "rendezvous/relays")

    def test_web_and_root(self) -> None:
        root = self.mktemp()
        os.makedirs(root)
        options = self.parse("--web", "tcp:8080", "--web-root", root)
        self.assertEqual(options["web"], "tcp:8080")
        self.assertEqual(options["web-root"], os.path.abspath(root))

    def test_root_without_web(self) -> None:
        root = self.mktemp()
        os.makedirs(root)
        error = self.assertRaises(usage.UsageError, self.parse, "--web-root", root)
        self.assertIn("--web-root needs --web", str(error))

    def test_missing_root(self) -> None:
        error = self.assertRaises(
            usage.UsageError, self.parse, "--web", "tcp:8080", "--web-root", "/no/such/dir"
        )
        self.assertIn("not a directory", str(error))

    def test_root_a_file(self) -> None:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("x")
        self.assertRaises(usage.UsageError, self.parse, "--web", "tcp:8080", "--web-root", path)

    def test_config_from_options(self) -> None:
        root = self.mktemp()
        os.makedirs(root)
        options = self.parse(
            "--web", "tcp:0", "--web-root", root, "--web-relay-namespace", "my/relays"
        )
        daemon = _tap.makeService(options)
        self.assertIsInstance(daemon, Daemon)
        assert isinstance(daemon, Daemon)
        self.assertEqual(len(daemon.web_ports), 0)  # bound at start-up only
