"""Fuzz a yamux session (the listener's side) fed a stranger's frames.

``data[0]`` picks the read size; between reads the application takes its turn as the
daemon's would (``data[1]`` seeds which): accept, write, pause or resume reading, close,
reset, ping, open a stream. Only `YamuxError` may escape (a call on a gone stream is
one too). Whatever the peer sends, the session holds at most one frame's header and one
window of body unparsed, a paused stream holds at most its window, streams stay within
``max_streams`` and the accept backlog, and what we answer stays in proportion to
what was received.
"""

from __future__ import annotations

from _harness import chunks, instrumented, main, whole

with instrumented("rendezvous"):
    from rendezvous.p2p.yamux import (
        FLAG_ACK,
        FLAG_FIN,
        FLAG_RST,
        FLAG_SYN,
        HEADER_SIZE,
        INITIAL_WINDOW,
        TYPE_DATA,
        TYPE_GO_AWAY,
        TYPE_PING,
        TYPE_WINDOW_UPDATE,
        DataReceived,
        StreamOpened,
        YamuxError,
        YamuxSession,
        encode_header,
    )

MAX_STREAMS = 8
BACKLOG = 4


def _act(session: YamuxSession, action: int, known: list[int]) -> None:
    stream_id = known[action % len(known)] if known else 1
    kind = (action >> 3) % 8
    try:
        if kind == 0:
            session.accept(stream_id)
        elif kind == 1:
            session.write(stream_id, bytes(1 + action * 397))
        elif kind == 2:
            session.pause_reading(stream_id)
        elif kind == 3:
            session.resume_reading(stream_id)
        elif kind == 4:
            session.close(stream_id)
        elif kind == 5:
            session.reset(stream_id, action)
        elif kind == 6:
            session.ping()
        else:
            known.append(session.open_stream())
    except YamuxError:
        pass


def _check(session: YamuxSession) -> None:
    assert len(session._inbound) <= HEADER_SIZE + INITIAL_WINDOW, "holds too much input"
    assert len(session._streams) <= MAX_STREAMS, "too many streams"
    assert 0 <= session._unaccepted <= BACKLOG, "accept backlog broken"
    for stream in session._streams.values():
        assert len(stream.receive_buffer) <= INITIAL_WINDOW, "paused stream over its window"
        assert stream.receive_credit >= 0, "receive window overdrawn"


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    actions = data[1]
    session = YamuxSession(dialer=False, max_streams=MAX_STREAMS, accept_backlog=BACKLOG)
    known: list[int] = []
    sent = 0
    received = 0
    try:
        for piece in chunks(data[:1] + data[2:]):
            received += len(piece)
            for event in session.feed(piece):
                if isinstance(event, StreamOpened):
                    known.append(event.stream_id)
                elif isinstance(event, DataReceived):
                    assert event.data, "empty data event"
            _check(session)
            # Our answers, not our data (which a window update may release): pings,
            # window updates, resets, a GoAway, a frame header each.
            sent += sum(len(f) for f in session._outbound if f[1] != TYPE_DATA)
            session.data_to_send()
            if actions:
                _act(session, actions, known)
                actions = (actions * 37 + 11) & 0xFF
                session.data_to_send()
            # Answers to the peer (pings, window updates, refusals): a header per frame.
            assert sent <= 2 * HEADER_SIZE * (received // HEADER_SIZE + 1), "answers grow"
    except YamuxError:
        session.data_to_send()


def seeds() -> list[bytes]:
    def frame(kind: int, flags: int, stream: int, body: bytes = b"", length: int = -1) -> bytes:
        return encode_header(kind, flags, stream, len(body) if length < 0 else length) + body

    opening = frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 1) + frame(TYPE_DATA, 0, 1, b"hello")
    return [
        whole(b"\x00" + opening + frame(TYPE_DATA, FLAG_FIN, 1, b"bye")),
        b"\x05\x0b" + opening + frame(TYPE_WINDOW_UPDATE, 0, 1, length=1000),
        whole(b"\x00" + frame(TYPE_PING, FLAG_SYN, 0, length=7) + frame(TYPE_GO_AWAY, 0, 0)),
        whole(b"\x13" + opening + frame(TYPE_WINDOW_UPDATE, FLAG_RST, 1, length=2)),
        whole(b"\x00" + frame(TYPE_DATA, FLAG_SYN | FLAG_ACK, 3, b"x" * 40)),
        whole(b"\x3a" + opening + frame(TYPE_DATA, 0, 1, b"y" * 300)),
    ]


if __name__ == "__main__":
    main(test_one_input, seeds)
