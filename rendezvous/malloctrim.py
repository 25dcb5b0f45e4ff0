"""Give the C allocator's free pages back to the system once a minute (glibc only).

A daemon under churn frees about as much as it allocates, but glibc's malloc returns
memory to the system only from the top of its heap: pages of chunks freed in the middle
stay resident, and as sessions come and go (each libp2p connection's ciphers, buffers
and protobuf objects are C allocations) the heap's free space creeps up a little at a
time. ``malloc_trim(0)`` gives every whole free page of every arena back
(``madvise(MADV_DONTNEED)``; the memory stays the allocator's, to be used again).

Measured with ``bench/soak.py`` (docs/benchmarks.rst, Soak), an hour-equivalent of
churn (20 client sessions a second for 12 minutes), after warm-up: with memory in use
flat, the heap's free space went from 1.2 to 3.6 MiB and RSS crept 10 KiB a soak
minute; with a trim every 12 s, 4 KiB, and 0.7 MiB less RSS. A trim took 0.06 to
0.18 ms on that daemon's 15 MiB heap; it walks every free chunk, so a heap of 200 MiB
cut into some 60,000 free chunks takes 25 to 35 ms (measured in a test process), once
a minute.

Where the C library is not glibc (musl, macOS, Windows) nothing is done.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

TRIM_EVERY = 60.0
"""Seconds between two trims."""


def glibc_malloc_trim() -> Callable[[], int] | None:
    """``malloc_trim(0)`` of the glibc this process runs on, or None without glibc."""
    try:
        version = os.confstr("CS_GNU_LIBC_VERSION")
        if not version or not version.startswith("glibc"):
            return None
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, ValueError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int

    def malloc_trim() -> int:
        """1 if memory was given back, else 0."""
        return int(trim(0))

    return malloc_trim


class MallocTrim(Service):
    """Calls `trim` every ``every`` seconds of ``clock`` while running, with no log
    line; `trim` None (not glibc): nothing is scheduled."""

    def __init__(
        self,
        clock: IReactorTime,
        trim: Callable[[], object] | None,
        every: float = TRIM_EVERY,
    ) -> None:
        self.trim = trim
        self._clock = clock
        self._every = every
        self._loop: LoopingCall | None = None

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]  # Twisted's is untyped
        if self.trim is not None and self._loop is None:
            self._loop = LoopingCall(self._tick)
            self._loop.clock = self._clock
            self._loop.start(self._every, now=False)

    def stopService(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()
        super().stopService()  # type: ignore[no-untyped-call]

    def _tick(self) -> None:
        if self.trim is not None:
            self.trim()
