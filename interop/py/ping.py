"""Dial a daemon with py-libp2p, ping and identify it, print one JSON line.

Runs in its own virtualenv (py-libp2p is trio-based; see requirements.txt):
``venv/bin/python ping.py /ip4/127.0.0.1/tcp/4002[/ws]/p2p/12D3KooW…``
"""

from __future__ import annotations

import json
import sys

import multiaddr
import trio
from libp2p import new_host
from libp2p.host.ping import ID as PING
from libp2p.host.ping import perform_ping_roundtrip
from libp2p.identity.identify.identify import ID as IDENTIFY
from libp2p.identity.identify.identify import parse_identify_response
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.peerinfo import info_from_p2p_addr

TIMEOUT = 20


async def read_all(stream: object) -> bytes:
    """Everything the peer writes until it closes the stream."""
    data = b""
    while True:
        try:
            chunk = await stream.read()  # type: ignore[attr-defined]
        except StreamEOF:
            return data
        if not chunk:
            return data
        data += chunk


async def main(target: str) -> dict[str, object]:
    info = info_from_p2p_addr(multiaddr.Multiaddr(target))
    host = new_host(enable_websocket=True)
    async with host.run(listen_addrs=[]):
        with trio.fail_after(TIMEOUT):
            await host.connect(info)
            stream = await host.new_stream(info.peer_id, [PING])
            rtt = await perform_ping_roundtrip(stream)
            await stream.close()
            stream = await host.new_stream(info.peer_id, [IDENTIFY])
            identify = parse_identify_response(await read_all(stream))
        result: dict[str, object] = {
            "peerId": str(info.peer_id),
            "self": str(host.get_id()),
            "rtt": rtt,
            "protocols": list(identify.protocols),
            "protocolVersion": identify.protocol_version,
            "agentVersion": identify.agent_version,
            "listenAddrs": [str(multiaddr.Multiaddr(a)) for a in identify.listen_addrs],
        }
        await host.close()
    return result


if __name__ == "__main__":
    print(json.dumps(trio.run(main, sys.argv[1])), flush=True)
