"""``--store redis://[USER@]HOST[:PORT][/DB]`` (or ``rediss://`` for TLS), or
``redis-sentinel://[USER@]HOST[:PORT][,HOST[:PORT]…]/MASTER[/DB]`` (the master that
Sentinel names ``MASTER``, found through the sentinels listed), or
``redis-cluster://[USER@]HOST:PORT[,HOST:PORT…]`` (a Redis Cluster, found through any of
the nodes listed), and its password.

The password never comes from the command line (other users can read it there): it is
read from a file or from the ``RENDEZVOUS_REDIS_PASSWORD`` environment variable. It is
the Redis servers'; sentinels that require one of their own (``requirepass`` in
sentinel.conf) get ``RENDEZVOUS_SENTINEL_PASSWORD``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

PASSWORD_VARIABLE = "RENDEZVOUS_REDIS_PASSWORD"
SENTINEL_PASSWORD_VARIABLE = "RENDEZVOUS_SENTINEL_PASSWORD"
SENTINEL_SCHEME = "redis-sentinel"
SENTINEL_PORT = 26379
CLUSTER_SCHEME = "redis-cluster"


class BadTarget(ValueError):
    """A ``--store`` value that is not a usable Redis address."""


@dataclass(frozen=True, slots=True)
class RedisTarget:
    host: str
    port: int = 6379
    db: int = 0
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    """``rediss://``: PEM certificates to trust instead of the system's."""
    sentinels: tuple[tuple[str, int], ...] = ()
    """``redis-sentinel://``: the sentinels to ask, in order (``host`` and ``port`` are
    then unused: the master is whichever server they name)."""
    master_name: str = ""
    """``redis-sentinel://``: the master's name in the sentinels' configuration."""
    sentinel_password: str | None = field(default=None, repr=False)
    cluster: tuple[tuple[str, int], ...] = ()
    """``redis-cluster://``: nodes of the cluster to ask for its shards, in order."""

    def describe(self) -> str:
        """The address without secrets, for logs."""
        user = f"{self.username}@" if self.username else ""
        if self.cluster:
            hosts = ",".join(f"{_bracket(host)}:{port}" for host, port in self.cluster)
            return f"{CLUSTER_SCHEME}://{user}{hosts}"
        if self.sentinels:
            hosts = ",".join(f"{_bracket(host)}:{port}" for host, port in self.sentinels)
            return f"{SENTINEL_SCHEME}://{user}{hosts}/{self.master_name}/{self.db}"
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{user}{_bracket(self.host)}:{self.port}/{self.db}"


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def is_redis_url(value: str) -> bool:
    return value.startswith(
        ("redis://", "rediss://", f"{SENTINEL_SCHEME}://", f"{CLUSTER_SCHEME}://")
    )


def parse_target(
    url: str,
    password_file: str | None = None,
    environ: Mapping[str, str] | None = None,
    ca_file: str | None = None,
) -> RedisTarget:
    """Parse ``url``; the password comes from ``password_file`` or the environment."""
    environ = os.environ if environ is None else environ
    if url.startswith(f"{SENTINEL_SCHEME}://"):
        return _parse_sentinel(url, password_file, environ, ca_file)
    if url.startswith(f"{CLUSTER_SCHEME}://"):
        return _parse_cluster(url, password_file, environ, ca_file)
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise BadTarget(f"not a redis:// or rediss:// URL: {url!r}")
    if parts.password is not None:
        raise BadTarget(
            "a password in the URL would show in the process list: use --store-password-file "
            f"or ${PASSWORD_VARIABLE}"
        )
    if parts.query or parts.fragment:
        raise BadTarget("the Redis URL takes no query or fragment")
    if not parts.hostname:
        raise BadTarget(f"no host in {url!r}")
    try:
        port = parts.port or 6379
    except ValueError:
        raise BadTarget(f"bad port in {url!r}") from None
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise BadTarget(f"the database must be a number, not {path!r}")
    if ca_file is not None and parts.scheme != "rediss":
        raise BadTarget("a CA file is for rediss:// (TLS) only")
    if ca_file is not None and not os.path.isfile(ca_file):
        raise BadTarget(f"no such CA file: {ca_file}")
    password = _password(password_file, environ)
    return RedisTarget(
        host=parts.hostname,
        port=port,
        db=int(path or 0),
        tls=parts.scheme == "rediss",
        username=unquote(parts.username) if parts.username else None,
        password=password,
        ca_file=ca_file,
    )


def _password(password_file: str | None, environ: Mapping[str, str]) -> str | None:
    if password_file is None:
        return environ.get(PASSWORD_VARIABLE) or None
    try:
        with open(password_file, encoding="utf-8") as f:
            return f.read().rstrip("\r\n")
    except OSError as e:
        raise BadTarget(f"cannot read the Redis password file: {e}") from None


_HOST_PORT = re.compile(r"^(?:\[([0-9A-Fa-f:.]+)\]|([^\[\]:/@,\s]+))(?::(\d+))?$")
_MASTER_NAME = re.compile(r"^[^\s/]+$")


def _hosts(
    url: str, scheme: str, ca_file: str | None, what: str, default_port: int
) -> tuple[str | None, list[tuple[str, int]], str]:
    """The user, the HOST[:PORT] list and the path of a URL listing several servers."""
    rest = url[len(scheme) + 3 :]
    if "?" in rest or "#" in rest:
        raise BadTarget("the Redis URL takes no query or fragment")
    netloc, _, path = rest.partition("/")
    username = None
    if "@" in netloc:
        user, _, netloc = netloc.rpartition("@")
        if ":" in user:
            raise BadTarget(
                "a password in the URL would show in the process list: use "
                f"--store-password-file or ${PASSWORD_VARIABLE}"
            )
        username = unquote(user) or None
    if ca_file is not None:
        raise BadTarget(f"a CA file is for rediss:// (TLS) only; {scheme}:// is plain TCP")
    hosts = []
    for item in netloc.split(","):
        match = _HOST_PORT.match(item)
        if match is None:
            raise BadTarget(f"not a {what} HOST[:PORT]: {item!r} in {url!r}")
        host = match.group(1) or match.group(2)
        port = int(match.group(3) or default_port)
        if not 0 < port < 65536:
            raise BadTarget(f"bad port in {item!r}")
        hosts.append((host, port))
    return username, hosts, path


def _parse_cluster(
    url: str, password_file: str | None, environ: Mapping[str, str], ca_file: str | None
) -> RedisTarget:
    username, nodes, path = _hosts(url, CLUSTER_SCHEME, ca_file, "cluster node", 6379)
    if path.strip("/"):
        raise BadTarget("a Redis Cluster has one database: redis-cluster://HOST:PORT[,…]")
    return RedisTarget(
        host=nodes[0][0],
        port=nodes[0][1],
        username=username,
        password=_password(password_file, environ),
        cluster=tuple(nodes),
    )


def _parse_sentinel(
    url: str, password_file: str | None, environ: Mapping[str, str], ca_file: str | None
) -> RedisTarget:
    username, sentinels, path = _hosts(url, SENTINEL_SCHEME, ca_file, "sentinel", SENTINEL_PORT)
    name, _, db = path.strip("/").partition("/")
    name = unquote(name)
    if not name:
        raise BadTarget(f"no master name in {url!r}: redis-sentinel://HOST:PORT,…/MASTER/DB")
    if not _MASTER_NAME.match(name):
        raise BadTarget(f"bad master name {name!r}")
    if db and not db.isdigit():
        raise BadTarget(f"the database must be a number, not {db!r}")
    return RedisTarget(
        host="",
        port=0,
        db=int(db or 0),
        username=username,
        password=_password(password_file, environ),
        sentinels=tuple(sentinels),
        master_name=name,
        sentinel_password=environ.get(SENTINEL_PASSWORD_VARIABLE) or None,
    )
