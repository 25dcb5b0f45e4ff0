"""The Redis store: many daemons, one registry (``--store redis://HOST:PORT/DB``)."""

from rendezvous.store.redis.link import LinkDown, RedisLink
from rendezvous.store.redis.store import RedisStore
from rendezvous.store.redis.target import BadTarget, RedisTarget, is_redis_url, parse_target

__all__ = [
    "BadTarget",
    "LinkDown",
    "RedisLink",
    "RedisStore",
    "RedisTarget",
    "is_redis_url",
    "parse_target",
]
