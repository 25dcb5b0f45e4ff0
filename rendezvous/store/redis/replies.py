"""Answers delivered in request order although they become ready out of order."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable


class Slot:
    """The place of one answer in a session's order."""

    __slots__ = ("_answer", "_queue")

    def __init__(self, queue: Replies) -> None:
        self._queue = queue
        self._answer: Callable[[], None] | None = None

    def fill(self, answer: Callable[[], None]) -> None:
        """``answer`` runs once every earlier slot has run (at once if none is waiting)."""
        if self._answer is None:
            self._answer = answer
            self._queue.flush()


class Replies:
    """A session's answers, each run when it and every answer before it are ready;
    none once the session has closed (`close`)."""

    __slots__ = ("_closed", "_flushing", "_slots")

    def __init__(self) -> None:
        self._slots: deque[Slot] = deque()
        self._flushing = False
        self._closed = False

    def reserve(self) -> Slot:
        slot = Slot(self)
        self._slots.append(slot)
        return slot

    def answer(self, answer: Callable[[], None]) -> None:
        """An answer ready now: runs after the earlier ones."""
        self.reserve().fill(answer)

    def __len__(self) -> int:
        return len(self._slots)

    def close(self) -> None:
        """The session has closed: the answers still on their way are dropped."""
        self._closed = True
        self._slots.clear()

    def flush(self) -> None:
        if self._flushing or self._closed:
            return
        self._flushing = True
        try:
            slots = self._slots
            while slots and slots[0]._answer is not None:
                answer = slots.popleft()._answer
                assert answer is not None
                answer()
        finally:
            self._flushing = False
