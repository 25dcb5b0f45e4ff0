"""Register and discover on a daemon with py-libp2p's own rendezvous client.

Runs in its own virtualenv (py-libp2p is trio-based; see requirements.txt)::

    venv/bin/python rendezvous_client.py /ip4/127.0.0.1/tcp/4002/p2p/12D3KooW… NAMESPACE
        [--ttl SECONDS] [--no-register] [--unregister]

Dials the daemon, pings it, then uses ``libp2p.discovery.rendezvous.RendezvousClient``:
REGISTER in the namespace (unless ``--no-register``), DISCOVER it, and with
``--unregister`` UNREGISTER and DISCOVER again. Prints one JSON line per step
(``connected``, ``registered``, ``discovered``, ``unregistered``), then exits 0.
"""

from __future__ import annotations

import argparse
import json
import sys

import multiaddr
import trio
from libp2p import new_host
from libp2p.discovery.rendezvous import RendezvousClient
from libp2p.discovery.rendezvous.config import DEFAULT_TTL
from libp2p.host.ping import ID as PING
from libp2p.host.ping import perform_ping_roundtrip
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr

TIMEOUT = 20
LISTEN = "/ip4/127.0.0.1/tcp/0"
"""py-libp2p's client advertises ``host.get_addrs()`` and refuses to register without any."""


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def peers_json(peers: list[PeerInfo]) -> list[dict[str, object]]:
    return [
        {"id": str(peer.peer_id), "addrs": [str(addr) for addr in peer.addrs]} for peer in peers
    ]


async def discover(client: RendezvousClient, namespace: str) -> None:
    peers, cookie = await client.discover(namespace)
    emit("discovered", ns=namespace, peers=peers_json(peers), cookie=cookie.hex())


async def main(args: argparse.Namespace) -> None:
    info = info_from_p2p_addr(multiaddr.Multiaddr(args.target))
    host = new_host()
    async with host.run(listen_addrs=[multiaddr.Multiaddr(LISTEN)]):
        with trio.fail_after(TIMEOUT):
            await host.connect(info)
            stream = await host.new_stream(info.peer_id, [PING])
            rtt = await perform_ping_roundtrip(stream)
            await stream.close()
            emit(
                "connected",
                peerId=str(info.peer_id),
                self=str(host.get_id()),
                addrs=[str(addr) for addr in host.get_addrs()],
                rtt=rtt,
            )
            client = RendezvousClient(host, info.peer_id)
            if not args.no_register:
                ttl = await client.register(args.namespace, args.ttl)
                emit("registered", ns=args.namespace, ttl=ttl)
            await discover(client, args.namespace)
            if args.unregister:
                await client.unregister(args.namespace)
                emit("unregistered", ns=args.namespace)
                await discover(client, args.namespace)
            await client.close()
        await host.close()


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("target", help="the daemon's multiaddr, ending /p2p/<id>")
    parser.add_argument("namespace")
    parser.add_argument("--ttl", type=int, default=DEFAULT_TTL, help="REGISTER TTL (s)")
    parser.add_argument("--no-register", action="store_true", help="only discover")
    parser.add_argument("--unregister", action="store_true", help="then unregister")
    return parser.parse_args(argv)


if __name__ == "__main__":
    trio.run(main, parse(sys.argv[1:]))
