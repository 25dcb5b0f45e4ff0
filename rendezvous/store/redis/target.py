"""``--store redis://[USER@]HOST[:PORT][/DB]`` (or ``rediss://`` for TLS) and its password.

The password never comes from the command line (other users can read it there): it is
read from a file or from the ``RENDEZVOUS_REDIS_PASSWORD`` environment variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

PASSWORD_VARIABLE = "RENDEZVOUS_REDIS_PASSWORD"


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

    def describe(self) -> str:
        """The address without secrets, for logs."""
        scheme = "rediss" if self.tls else "redis"
        user = f"{self.username}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{user}{host}:{self.port}/{self.db}"


def is_redis_url(value: str) -> bool:
    return value.startswith(("redis://", "rediss://"))


def parse_target(
    url: str,
    password_file: str | None = None,
    environ: Mapping[str, str] | None = None,
    ca_file: str | None = None,
) -> RedisTarget:
    """Parse ``url``; the password comes from ``password_file`` or the environment."""
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
    password = None
    if password_file is not None:
        try:
            with open(password_file, encoding="utf-8") as f:
                password = f.read().rstrip("\r\n")
        except OSError as e:
            raise BadTarget(f"cannot read the Redis password file: {e}") from None
    else:
        password = (os.environ if environ is None else environ).get(PASSWORD_VARIABLE) or None
    return RedisTarget(
        host=parts.hostname,
        port=port,
        db=int(path or 0),
        tls=parts.scheme == "rediss",
        username=unquote(parts.username) if parts.username else None,
        password=password,
        ca_file=ca_file,
    )
