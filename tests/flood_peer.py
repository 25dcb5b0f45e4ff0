"""A raw live-dialect client for the flood tests, run inside a network-lab host.

python -m tests.flood_peer flood HOST PORT SECONDS
    open sessions one after another for SECONDS, each sending a DISCOVER; print
    {"answered", "told", "dropped"}: sessions answered, refused with an ERROR, closed
    without a word.
python -m tests.flood_peer steady HOST PORT SECONDS
    open one session, print "connected", then send a DISCOVER every 20 ms for
    SECONDS; print {"asked", "answered"}.
"""

from __future__ import annotations

import json
import socket
import sys
import time

from rendezvous.framing import FrameDecoder, frame
from rendezvous.pb.live_pb2 import Message
from tests.helpers import discover


def _discover(request_id: int) -> bytes:
    return frame(discover("flood-probe", limit=1, request_id=request_id).SerializeToString())


def _read_one(sock: socket.socket, decoder: FrameDecoder) -> Message | None:
    """The next message, or None when the server closed first."""
    while True:
        for payload in decoder.feed(b""):
            return Message.FromString(payload)
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return None
        if not data:
            return None
        for payload in decoder.feed(data):
            return Message.FromString(payload)


def flood(host: str, port: int, seconds: float) -> dict[str, int]:
    tally = {"answered": 0, "told": 0, "dropped": 0}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with socket.create_connection((host, port), timeout=10) as sock:
            try:
                sock.sendall(_discover(1))
            except OSError:
                tally["dropped"] += 1
                continue
            message = _read_one(sock, FrameDecoder(65536))
        if message is None:
            tally["dropped"] += 1
        elif message.type == Message.ERROR:
            tally["told"] += 1
        else:
            tally["answered"] += 1
    return tally


def steady(host: str, port: int, seconds: float) -> dict[str, int]:
    tally = {"asked": 0, "answered": 0}
    with socket.create_connection((host, port), timeout=10) as sock:
        decoder = FrameDecoder(65536)
        sock.sendall(_discover(1))
        if _read_one(sock, decoder) is None:
            raise SystemExit("the steady session was refused")
        print("connected", flush=True)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            tally["asked"] += 1
            sock.sendall(_discover(tally["asked"] + 1))
            message = _read_one(sock, decoder)
            if message is not None and message.type != Message.ERROR:
                tally["answered"] += 1
            time.sleep(0.02)  # the pace of a client, not a synchronisation
    return tally


def main() -> None:
    mode, host, port, seconds = sys.argv[1:5]
    run = {"flood": flood, "steady": steady}[mode]
    print(json.dumps(run(host, int(port), float(seconds))), flush=True)


if __name__ == "__main__":
    main()
