"""Answers delivered in request order although they become ready out of order."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable


class ReplyPlace:
    """A place reserved in a session's reply order when a request is made, filled with
    its answer once that is ready."""

    __slots__ = ("_answer", "_queue")

    def __init__(self, queue: Replies) -> None:
        self._queue = queue
        self._answer: Callable[[], None] | None = None

    def fill(self, answer: Callable[[], None]) -> None:
        """``answer`` runs once every earlier place has run (at once if none is waiting)."""
        if self._answer is None:
            self._answer = answer
            self._queue.flush()


class Replies:
    """A session's answers, each run when it and every answer before it are ready;
    none once the session has closed (`close`)."""

    __slots__ = ("_closed", "_flushing", "_places")

    def __init__(self) -> None:
        self._places: deque[ReplyPlace] = deque()
        self._flushing = False
        self._closed = False

    def reserve(self) -> ReplyPlace:
        place = ReplyPlace(self)
        self._places.append(place)
        return place

    def answer(self, answer: Callable[[], None]) -> None:
        """An answer ready now: runs after the earlier ones."""
        self.reserve().fill(answer)

    def __len__(self) -> int:
        return len(self._places)

    def close(self) -> None:
        """The session has closed: the answers still on their way are dropped."""
        self._closed = True
        self._places.clear()

    def flush(self) -> None:
        if self._flushing or self._closed:
            return
        self._flushing = True
        try:
            places = self._places
            while places and places[0]._answer is not None:
                answer = places.popleft()._answer
                assert answer is not None
                answer()
        finally:
            self._flushing = False
