"""What every fuzz target shares: its seeds, input splitting, the atheris entry point.

A target module defines ``test_one_input(data: bytes) -> None``, which returns normally
for every input the daemon handles as it should (a documented error included) and
raises for anything else: an undocumented exception, or a broken invariant (an
``AssertionError``: a buffer past its bound, answers that disagree). ``main`` runs it
under atheris (libFuzzer), with the target's seeds written into an empty corpus folder.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any


def instrumented(*packages: str) -> Any:
    """A context in which imports of ``packages`` are instrumented for coverage (a plain
    context without atheris, so a target can be imported and run by hand)."""
    try:
        import atheris
    except ImportError:
        return contextlib.nullcontext()
    return atheris.instrument_imports(include=list(packages))


def chunks(data: bytes) -> Iterator[bytes]:
    """``data[1:]`` as a peer's reads would deliver it: ``data[0]`` picks the read size
    (0: everything at once; otherwise reads of that many bytes)."""
    if not data:
        return
    step, stream = data[0], data[1:]
    if step == 0 or step >= len(stream):
        if stream:
            yield stream
        return
    for start in range(0, len(stream), step):
        yield stream[start : start + step]


def whole(stream: bytes) -> bytes:
    """A seed for `chunks`: ``stream`` delivered in one read."""
    return b"\x00" + stream


def _write_seeds(corpus: str, seeds: Iterable[bytes]) -> None:
    os.makedirs(corpus, exist_ok=True)
    if os.listdir(corpus):
        return
    for index, seed in enumerate(seeds):
        with open(os.path.join(corpus, f"seed-{index:03d}"), "wb") as f:
            f.write(seed)


def main(test_one_input: Callable[[bytes], None], seeds: Callable[[], Iterable[bytes]]) -> None:
    """Fuzz ``test_one_input``; libFuzzer's flags and corpus folders come from argv."""
    import atheris

    corpus = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), None)
    if corpus is not None:
        _write_seeds(corpus, seeds())
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
