"""Logging setup for the `icsd` logger tree: human text or one JSON object per line.

Under systemd, stderr goes to the journal, which stamps each line itself; there we drop our
timestamp and prefix each line with a kernel-style `<N>` priority that journald strips and stores
as the entry's PRIORITY (so `journalctl -p warning -u icsd` works).

Structured data travels in `extra={"fields": {...}}` (see `log_event`); the JSON format emits
every field as a top-level key, the text format shows only the message.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import sys
from typing import Any, TextIO

from icsd.errors import SettingsError

__all__ = ["FORMATS", "LEVELS", "JsonFormatter", "TextFormatter", "log_event", "one_line", "setup_logging"]

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FORMATS = ("text", "json")
LOGGER_NAME = "icsd"

# syslog priorities understood by journald's SyslogLevelPrefix= (on by default).
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}
_TEXT_FORMAT = "%(levelname)-5s %(name)s: %(message)s"
# Keys the JSON formatter owns; a field with the same name cannot overwrite them.
_RESERVED = ("ts", "level", "logger", "message", "exc", "stack")


def setup_logging(level: str = "INFO", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Send the `icsd` logger tree to `stream` (default: the current `sys.stderr`) at `level`.

    Idempotent: a second call replaces the handler installed by the first, never stacks another.
    Raises `SettingsError` naming ICSD_LOG_LEVEL / ICSD_LOG_FORMAT for invalid values.
    """
    name = str(level).upper()
    if name not in LEVELS:
        raise SettingsError(f"ICSD_LOG_LEVEL must be one of {', '.join(LEVELS)}, got {level!r}")
    if fmt not in FORMATS:
        raise SettingsError(f"ICSD_LOG_FORMAT must be one of {', '.join(FORMATS)}, got {fmt!r}")
    stream = sys.stderr if stream is None else stream
    journal = _is_journal(stream)

    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(journal=journal) if fmt == "json" else TextFormatter(journal=journal))
    handler._icsd_handler = True  # type: ignore[attr-defined]  # marks the handler we may replace

    root = logging.getLogger(LOGGER_NAME)
    for old in [h for h in root.handlers if getattr(h, "_icsd_handler", False)]:
        root.removeHandler(old)
        old.close()  # StreamHandler.close leaves the stream itself open
    root.addHandler(handler)
    root.setLevel(name)


def log_event(logger: logging.Logger, level: int, message: str, **fields: Any) -> None:
    """Log `message` with structured `fields` (JSON keys), e.g. the per-image progress line."""
    logger.log(level, message, extra={"fields": fields})


class TextFormatter(logging.Formatter):
    """`2026-11-21 08:30:01 INFO  icsd.daemon.service: message`; no timestamp when writing to the journal."""

    def __init__(self, *, journal: bool = False) -> None:
        fmt = _TEXT_FORMAT if journal else "%(asctime)s " + _TEXT_FORMAT
        super().__init__(fmt, datefmt="%Y-%m-%d %H:%M:%S")
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return _priority_prefix(record) + text if self.journal else text

    def formatMessage(self, record: logging.LogRecord) -> str:
        """One record, one line: a newline or other control character in a file name is shown escaped
        (`new\\nline.jpg`), so it cannot split a line or forge the next one. A traceback still follows."""
        return one_line(super().formatMessage(record))


def one_line(text: str) -> str:
    """`text` with control characters escaped (`\\n`, `\\r`, `\\xNN`, `\\u2028`): a file name cannot split a
    line of output, forge the next one or send a terminal escape sequence."""
    return text.translate(_CONTROL_ESCAPES)


# C0 controls but tab, DEL, C1 controls (U+0085 NEL, U+009B CSI ...), and Unicode's line and paragraph separators.
_CONTROL_ESCAPES = (
    {code: f"\\x{code:02x}" for code in [*range(32), *range(127, 160)] if code != 9}
    | {10: "\\n", 13: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (ISO 8601 UTC), level, logger, message, fields..., exc."""

    def __init__(self, *, journal: bool = False) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        ts = dt.datetime.fromtimestamp(record.created, tz=dt.UTC)
        obj: dict[str, Any] = {
            "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            obj.update((str(k), v) for k, v in fields.items() if str(k) not in _RESERVED)
        elif fields is not None:
            obj["fields"] = fields
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            obj["exc"] = record.exc_text
        if record.stack_info:
            obj["stack"] = self.formatStack(record.stack_info)
        line = _dumps(obj)
        return _priority_prefix(record) + line if self.journal else line


def _dumps(obj: dict[str, Any]) -> str:
    try:
        return json.dumps(obj, ensure_ascii=False, default=str, allow_nan=False)
    except ValueError:
        # NaN/Infinity are not JSON; spell them as strings rather than emit an unparsable line.
        clean = {k: str(v) if isinstance(v, float) and not math.isfinite(v) else v for k, v in obj.items()}
        return json.dumps(clean, ensure_ascii=False, default=str)


def _priority_prefix(record: logging.LogRecord) -> str:
    levelno = max((n for n in _PRIORITY if n <= record.levelno), default=logging.DEBUG)
    return f"<{_PRIORITY[levelno]}>"


def _is_journal(stream: TextIO) -> bool:
    """True when `stream` is connected to journald.

    systemd sets `$JOURNAL_STREAM=<st_dev>:<st_ino>` of the journal socket; a child whose stderr
    was redirected elsewhere inherits the variable, so compare it with the stream's own fd when
    there is one (as systemd.exec(5) recommends). Streams without a file descriptor trust it.
    """
    value = os.environ.get("JOURNAL_STREAM", "")
    if not value:
        return False
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return True
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    return value == f"{st.st_dev}:{st.st_ino}"
