"""Log observers for operators, and the rule for clients' addresses in log lines.

``twistd --logger rendezvous.logs.json …`` writes one JSON object per line to standard
output (what journald, Loki's promtail and Elasticsearch's shippers read);
``--logger rendezvous.logs.text`` is twistd's usual text without debug lines. Both log
from the level in ``RENDEZVOUS_LOG_LEVEL`` up (default ``info``).

A JSON line has fixed fields first: ``time`` (ISO 8601, UTC), ``level``, ``event`` (a
stable name such as ``request.refused``, given by the log call's ``event=`` field; null
for lines that have none, Twisted's own among them), ``text`` (the line as a text log
shows it) and ``logger`` (the logging class), ``system`` for Twisted's legacy lines;
then the line's own fields (``peer_id``, ``namespace``, ``dialect``, ``reason``,
``count``, …; one whose value is None is left out) and, for a failure, ``failure`` and
``traceback``. Values JSON cannot hold are written as text (enumerations by name, bytes
in hex).

A client's address (IP and port) is logged only at debug level, unless the daemon runs
with ``--log-addresses``: a log call passes it as `ClientAddress` through `emit`, which
writes it as ``a client`` in a line of any other level.
"""

from __future__ import annotations

import enum
import json as _json
import math
import os
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any, Final

from constantly import NamedConstant  # type: ignore[import-untyped]
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    InvalidLogLevelError,
    LogEvent,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    textFileLogObserver,
)
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = [
    "HIDDEN",
    "LOG_ADDRESSES_FLAG",
    "ClientAddress",
    "JSONLinesObserver",
    "addresses_shown",
    "debug_logged",
    "emit",
    "emit_failure",
    "json",
    "show_addresses",
    "text",
]

# -- the address rule ---------------------------------------------------------

HIDDEN: Final = "a client"
"""What a line above debug level says instead of a client's address."""

LOG_ADDRESSES_FLAG: Final = [
    "log-addresses",
    None,
    "log clients' addresses (IP and port) at every level; without it only debug lines show them",
]
"""The ``--log-addresses`` flag of ``twistd rendezvous`` and ``twistd rendezvous-relay``."""


class _Rule:
    shown = False
    debug = True
    """False once the daemon logs through `json` or `text` from above debug level: a
    debug line `emit` is given is then dropped before it is built."""


_rule = _Rule()


def show_addresses(shown: bool) -> bool:
    """Whether lines of every level show clients' addresses from now on (the daemon's
    ``--log-addresses``); returns the rule it replaces."""
    previous, _rule.shown = _rule.shown, shown
    return previous


def addresses_shown() -> bool:
    """True when lines of every level show clients' addresses."""
    return _rule.shown


def debug_logged() -> bool:
    """False when no debug line can be written (the daemon logs through `json` or
    `text` from a higher level): a hot path may then skip making one."""
    return _rule.debug


class ClientAddress:
    """A client's address as a log field: shown as itself only where the rule allows
    (its ``str``, made when a line is written, is the address)."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __str__(self) -> str:
        return str(self.value)

    def __repr__(self) -> str:
        return f"ClientAddress({self.value!r})"


def _hide(fields: dict[str, Any]) -> None:
    for key, value in fields.items():
        if isinstance(value, ClientAddress):
            fields[key] = HIDDEN


def emit(log: Logger, level: LogLevel, format: str, **fields: Any) -> None:
    """``log`` one line at ``level``; a `ClientAddress` field is written as `HIDDEN`
    unless the line is a debug one or addresses are shown."""
    if level is LogLevel.debug:
        if not _rule.debug:
            return
    elif not _rule.shown:
        _hide(fields)
    log.emit(level, format, **fields)


def emit_failure(
    log: Logger,
    format: str,
    failure: Failure | None = None,
    level: LogLevel = LogLevel.critical,
    **fields: Any,
) -> None:
    """`emit` for ``log.failure``: the failure (by default, the exception being handled)
    with its traceback."""
    if level is LogLevel.debug:
        if not _rule.debug:
            return
    elif not _rule.shown:
        _hide(fields)
    log.failure(format, failure, level, **fields)


# -- JSON lines -----------------------------------------------------------------

FIXED: Final = ("time", "level", "event", "text", "logger", "system", "failure", "traceback")
"""Top-level names of a JSON line that its own fields never take (a field of the same
name is written with ``_`` after it)."""


def _legacy_key(key: str, value: Any, event: LogEvent, text: str) -> bool:
    """Whether ``key`` is what ``twisted.python.log`` put in the event (its own lines, or
    any line a legacy observer saw first): not one of the line's own fields."""
    if key == "message":
        return isinstance(value, tuple)
    if key == "time":
        return bool(value == event.get("log_time"))
    if key == "system":
        return bool(value == event.get("log_system", "-"))
    if key == "format":
        return value == "%(log_legacy)s" or event.get("log_namespace") == "log_legacy"
    if key == "failure":
        return isinstance(value, Failure)
    if key == "why":
        return value == text or event.get("log_namespace") == "log_legacy"
    return key in ("isError", "logLevel")


_CONNECTION_SYSTEM = re.compile(r"^(.*,\d+),[^,]+$")
"""Twisted's context of a connection's legacy lines: ``Factory,session number,host``."""

_MAX_DEPTH = 4


def _plain(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON can hold it: containers converted, anything else as text."""
    if isinstance(value, (enum.Enum, NamedConstant)):
        return value.name
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bytes):
        return value.hex()
    if depth < _MAX_DEPTH:
        if isinstance(value, Mapping):
            return {str(k): _plain(v, depth + 1) for k, v in value.items()}
        if isinstance(value, (list, tuple, set, frozenset)):
            return [_plain(v, depth + 1) for v in value]
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def _time(seconds: object) -> str | None:
    if not isinstance(seconds, (int, float)):
        return None
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _failure_of(event: LogEvent) -> Failure | None:
    failure = event.get("log_failure")
    if failure is None and "isError" in event:
        failure = event.get("failure")
    return failure if isinstance(failure, Failure) else None


def record(event: LogEvent, *, addresses: bool | None = None) -> dict[str, Any]:
    """The JSON object of one log event (see the module's docstring). A `ClientAddress`
    is hidden above debug level unless ``addresses`` (by default, the rule) allows it."""
    level = event.get("log_level")
    shown = _rule.shown if addresses is None else addresses
    if not shown and level is not LogLevel.debug:
        event = dict(event)
        _hide(event)
    name = event.get("event")
    text = _formatted(event)
    out: dict[str, Any] = {
        "time": _time(event.get("log_time")),
        "level": level.name if isinstance(level, NamedConstant) else None,
        "event": name if isinstance(name, str) else None,
        "text": text,
        "logger": _plain(event.get("log_namespace")),
    }
    system = event.get("log_system")
    if system is not None:
        system = str(system)
        if not shown:
            system = _CONNECTION_SYSTEM.sub(r"\1", system)
        out["system"] = system
    for key, value in event.items():
        if (
            value is None
            or key.startswith("log_")
            or key == "event"
            or _legacy_key(key, value, event, text)
        ):
            continue
        out[f"{key}_" if key in FIXED else key] = _plain(value)
    failure = _failure_of(event)
    if failure is not None:
        kind = failure.type.__name__ if failure.type is not None else "Exception"
        out["failure"] = _plain(f"{kind}: {failure.getErrorMessage()}")
        try:
            out["traceback"] = failure.getTraceback()
        except Exception:
            out["traceback"] = None
    return out


def _formatted(event: LogEvent) -> str:
    try:
        return formatEvent(event)
    except Exception as e:  # formatEvent reports its own errors; this is a last resort
        return f"unformattable event: {e!r}"


def as_line(event: LogEvent, *, addresses: bool | None = None) -> str:
    """One log event as one line of JSON (no newline)."""
    return _json.dumps(record(event, addresses=addresses), ensure_ascii=False, default=str)


@implementer(ILogObserver)
class JSONLinesObserver:
    """Writes every event to ``out`` as one line of JSON, flushed at once."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def __call__(self, event: LogEvent) -> None:
        self.out.write(as_line(event) + "\n")
        self.out.flush()


# -- for twistd --logger ---------------------------------------------------------

LEVEL_VARIABLE: Final = "RENDEZVOUS_LOG_LEVEL"


def _level(environ: Mapping[str, str]) -> tuple[LogLevel, str | None]:
    """The least level to log, and why the variable was not used (or None)."""
    name = environ.get(LEVEL_VARIABLE, "").strip().lower()
    if not name:
        return LogLevel.info, None
    try:
        return LogLevel.levelWithName("warn" if name == "warning" else name), None
    except InvalidLogLevelError:
        known = ", ".join(level.name for level in LogLevel.iterconstants())
        return LogLevel.info, f"unknown {LEVEL_VARIABLE} {name!r} (use {known}): logging at info"


def _filtered(observer: ILogObserver, environ: Mapping[str, str], for_twistd: bool) -> ILogObserver:
    """``observer`` from the level ``environ`` says up; ``for_twistd``: it is the one
    observer of this process (twistd's ``--logger``), so `emit` may drop the debug
    lines it would not write before they are built."""
    level, problem = _level(environ)
    if for_twistd:
        _rule.debug = level is LogLevel.debug
    filtered = FilteringLogObserver(observer, [LogLevelFilterPredicate(defaultLogLevel=level)])
    if problem is not None:
        Logger(observer=filtered).warn(problem, event="logging.bad_level")
    return filtered


def json(out: IO[str] | None = None, environ: Mapping[str, str] | None = None) -> ILogObserver:
    """``twistd --logger rendezvous.logs.json``: JSON lines on standard output."""
    return _filtered(
        JSONLinesObserver(sys.stdout if out is None else out),
        os.environ if environ is None else environ,
        for_twistd=out is None and environ is None,
    )


def text(out: IO[str] | None = None, environ: Mapping[str, str] | None = None) -> ILogObserver:
    """``twistd --logger rendezvous.logs.text``: twistd's text lines on standard output,
    from ``info`` up unless ``RENDEZVOUS_LOG_LEVEL`` says otherwise."""
    return _filtered(
        textFileLogObserver(sys.stdout if out is None else out),
        os.environ if environ is None else environ,
        for_twistd=out is None and environ is None,
    )
