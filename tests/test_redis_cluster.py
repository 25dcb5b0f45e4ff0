"""The Redis Cluster store's parts: slots and partitions, the cluster's answers, the
URL, wide DISCOVER cookies; and a daemon that refuses to start on a cluster that cannot
serve (real processes). The store itself runs the store contract on a real cluster
(``tests/test_store_contract.py``) and the seed exchange (``test_seed_everywhere``)."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase

from rendezvous.model import Refused, Registration
from rendezvous.standard.cookie import decode_cookie, encode_cookie
from rendezvous.store.redis.cluster import (
    PARTITIONS,
    SLOTS,
    ClusterLink,
    key_slot,
    partition_tags,
    slot_owners,
    uncovered,
)
from rendezvous.store.redis.discover import merged, pack, unpack
from rendezvous.store.redis.target import BadTarget, parse_target

from .helpers import peer
from .processes import ProcessTestCase
from .redis_cluster import RedisCluster
from .redis_server import free_port

EPOCH = b"\x01" * 8


class SlotTests(SynchronousTestCase):
    def test_the_hash_is_redis_s(self) -> None:
        # CRC16/XMODEM's check value, and values CLUSTER KEYSLOT gives
        self.assertEqual(key_slot(b"123456789"), 0x31C3)
        self.assertEqual(key_slot(b"foo"), 12182)
        self.assertEqual(key_slot(b"somekey"), 11058)

    def test_hash_tags(self) -> None:
        self.assertEqual(key_slot(b"{user1000}.following"), key_slot(b"user1000"))
        self.assertEqual(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"))
        self.assertEqual(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}x"[:-1]))
        self.assertNotEqual(key_slot(b"foo{}{bar}"), key_slot(b"bar"))

    def test_partition_tags_spread_over_the_slot_space(self) -> None:
        tags = partition_tags(PARTITIONS)
        self.assertEqual(len(set(tags)), PARTITIONS)
        for i, tag in enumerate(tags):
            slot = key_slot(tag.encode())
            self.assertTrue(i * SLOTS // PARTITIONS <= slot < (i + 1) * SLOTS // PARTITIONS)
        self.assertEqual(partition_tags(PARTITIONS), tags)  # the same on every daemon

    def test_a_partition_s_keys_and_channels_share_its_slot(self) -> None:
        link = ClusterLink(None, parse_target("redis-cluster://h:1", environ={}), "rdv:")
        for p in range(link.partitions):
            slot = key_slot(link.key("seq", p).encode())
            self.assertEqual(key_slot(link.key("r:some namespace", p).encode()), slot)
            self.assertEqual(key_slot(link.channel_prefixes[p].encode() + b"ns"), slot)
        used = {link.partition_of(f"namespace-{i}") for i in range(200)}
        self.assertEqual(used, set(range(PARTITIONS)))

    def test_redirections(self) -> None:
        parse = ClusterLink._redirection
        self.assertEqual(parse("MOVED 3999 127.0.0.1:6381"), ("MOVED", ("127.0.0.1", 6381)))
        self.assertEqual(parse("ASK 3999 [::1]:6381"), ("ASK", ("::1", 6381)))
        self.assertEqual(parse("TRYAGAIN Multiple keys request during rehashing")[0], "TRYAGAIN")
        script = "ERR Script attempted to access a non local key in a cluster node script"
        self.assertEqual(parse(script)[0], "TRYAGAIN")  # type: ignore[index]
        self.assertIsNone(parse("ERR wrong number of arguments"))
        self.assertIsNone(parse("MOVED 3999 nowhere"))


class SlotsAnswerTests(SynchronousTestCase):
    def test_owners_and_gaps(self) -> None:
        reply = [
            [0, 5460, [b"127.0.0.1", 7000, b"id0", []]],
            [5461, 10922, [b"", 7001, b"id1"]],  # no address: the node asked
        ]
        owners = slot_owners(reply, ("10.0.0.9", 7001))
        self.assertEqual(owners[0], ("127.0.0.1", 7000))
        self.assertEqual(owners[10922], ("10.0.0.9", 7001))
        self.assertEqual(uncovered(owners), "10923-16383")
        self.assertEqual(uncovered({}), "0-16383")
        self.assertEqual(uncovered({s: ("h", 1) for s in range(SLOTS) if s != 7}), "7")


class TargetTests(SynchronousTestCase):
    def test_nodes(self) -> None:
        target = parse_target("redis-cluster://app@10.0.0.1:7000,[::1]:7001,h", environ={})
        self.assertEqual(target.cluster, (("10.0.0.1", 7000), ("::1", 7001), ("h", 6379)))
        self.assertEqual(target.username, "app")
        self.assertEqual(target.describe(), "redis-cluster://app@10.0.0.1:7000,[::1]:7001,h:6379")

    def test_bad(self) -> None:
        for url, reason in [
            ("redis-cluster://h:1/3", "one database"),
            ("redis-cluster://u:pw@h:1", "password in the URL"),
            ("redis-cluster://h:99999", "bad port"),
            ("redis-cluster://h:1?x=1", "no query"),
            ("redis-cluster://", "not a cluster node"),
        ]:
            with self.assertRaisesRegex(BadTarget, reason):
                parse_target(url, environ={})


class WideCookieTests(SynchronousTestCase):
    @given(st.integers(min_value=0, max_value=(1 << (48 * PARTITIONS)) - 1), st.text(max_size=20))
    def test_round_trip(self, position: int, namespace: str) -> None:
        cookie = encode_cookie(EPOCH, position, namespace)
        self.assertEqual(decode_cookie(cookie, EPOCH, namespace), position)
        self.assertEqual(decode_cookie(cookie, b"\x02" * 8, namespace), 0)  # another life

    def test_narrow_cookies_are_unchanged(self) -> None:
        self.assertEqual(encode_cookie(EPOCH, 5, "ns"), b"\x01" + EPOCH + bytes(7) + b"\x05ns")

    def test_a_wide_cookie_of_a_bad_length_is_refused(self) -> None:
        cookie = encode_cookie(EPOCH, 1 << 100, "")
        for bad in (cookie[:12], b"\x02" + EPOCH + b"\x00\x05" + bytes(8), b"\x03" + cookie[1:]):
            with self.assertRaises(Refused):
                decode_cookie(bad, EPOCH, "")


class AllPartitionsTests(SynchronousTestCase):
    def test_positions_pack(self) -> None:
        positions = [0, 7, 1 << 47, 3]
        self.assertEqual(unpack(pack(positions), 4), positions)

    def test_merged_answers_carry_where_each_partition_was_left(self) -> None:
        def reg(name: str, seq: int) -> Registration:
            return Registration("ns", peer(name), seq=seq)

        answers = [[reg("a", 4), reg("b", 9)], [], [reg("c", 2)]]
        out = merged(answers, [1, 5, 0], limit=2)
        self.assertEqual([r.peer for r in out], [peer("a"), peer("b")])
        self.assertEqual([unpack(r.seq, 3) for r in out], [[4, 5, 0], [9, 5, 0]])
        out = merged(answers, [1, 5, 0], limit=10)
        self.assertEqual(unpack(out[-1].seq, 3), [9, 5, 2])


class StartupTests(ProcessTestCase):
    timeout = 60

    @inlineCallbacks
    def test_unreachable_nodes(self):  # type: ignore[no-untyped-def]
        a, b = free_port(), free_port()
        yield self.assert_start_refused(
            f"redis-cluster://127.0.0.1:{a},127.0.0.1:{b}",
            rf"no cluster node answered: 127\.0\.0\.1:{a} unreachable \(Connection refused\); "
            rf"127\.0\.0\.1:{b} unreachable \(Connection refused\)",
        )

    @inlineCallbacks
    def test_slots_not_served(self):  # type: ignore[no-untyped-def]
        cluster = RedisCluster(os.path.join(self.cwd, "cluster"), masters=1)
        self.addCleanup(lambda: Deferred.fromCoroutine(cluster.stop()))
        yield Deferred.fromCoroutine(cluster.start(assign=False))
        yield Deferred.fromCoroutine(
            cluster.ask(cluster.servers[0].port, "CLUSTER", "ADDSLOTSRANGE", "0", "8000")
        )
        yield self.assert_start_refused(cluster.url, r"slots not served by any master: 8001-16383")
