"""Logging setup: text and JSON lines, level/format validation, journald detection."""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections.abc import Iterator

import pytest

from icsd.daemon.logs import log_event, setup_logging
from icsd.errors import SettingsError

PROGRESS = {
    "name": "cats/photo.jpg",
    "width_in": 4000,
    "height_in": 3000,
    "width_out": 1000,
    "height_out": 750,
    "bytes_in": 2_400_000,
    "bytes_out": 180_000,
    "reduction_pct": 92.5,
    "colors": 16,
    "strategy": "kmeans",
    "seconds": 1.25,
    "done": 10,
    "queued": 3,
    "failed": 1,
    "runtime_seconds": 42.0,
}


@pytest.fixture(autouse=True)
def restore_icsd_logger(monkeypatch) -> Iterator[None]:
    """setup_logging changes a process-global logger: put it back after each test."""
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    log = logging.getLogger("icsd")
    handlers, level = list(log.handlers), log.level
    yield
    for h in log.handlers:
        if h not in handlers:
            log.removeHandler(h)
            h.close()
    log.setLevel(level)


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_json_lines_carry_fields():
    out = io.StringIO()
    setup_logging("INFO", "json", stream=out)
    log = logging.getLogger("icsd.daemon.service")
    log_event(log, logging.INFO, "compressed cats/photo.jpg", **PROGRESS)
    log.debug("hidden at INFO")
    [line] = lines(out)
    obj = json.loads(line)
    assert obj["level"] == "INFO"
    assert obj["logger"] == "icsd.daemon.service"
    assert obj["message"] == "compressed cats/photo.jpg"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", obj["ts"])
    for key, value in PROGRESS.items():
        assert obj[key] == value
    assert "exc" not in obj


def test_json_exception_and_awkward_values():
    out = io.StringIO()
    setup_logging("DEBUG", "json", stream=out)
    log = logging.getLogger("icsd.watcher")
    try:
        raise OSError("disk full")
    except OSError:
        log.exception("write failed", extra={"fields": {"path": os.path, "ratio": float("nan"), "level": "x"}})
    obj = json.loads(lines(out)[0])
    assert obj["level"] == "ERROR"  # a field cannot overwrite the record's own keys
    assert "OSError: disk full" in obj["exc"]
    assert obj["path"].startswith("<module")  # non-JSON values via str()
    assert obj["ratio"] == "nan"  # NaN is not JSON: kept as text, line still parses


def test_text_format_with_timestamp():
    out = io.StringIO()
    setup_logging("info", "text", stream=out)
    logging.getLogger("icsd").info("watching %s", "/srv/icsd")
    logging.getLogger("icsd.daemon.journal").warning("retrying")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO  icsd: watching /srv/icsd", lines(out)[0])
    assert lines(out)[1].endswith(" WARNING icsd.daemon.journal: retrying")


def test_journal_stream_drops_timestamp_and_adds_priority(monkeypatch):
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    out = io.StringIO()  # no file descriptor: the variable is trusted
    setup_logging("DEBUG", "text", stream=out)
    log = logging.getLogger("icsd")
    log.info("ready")
    log.warning("slow disk")
    log.debug("tick")
    assert lines(out) == ["<6>INFO  icsd: ready", "<4>WARNING icsd: slow disk", "<7>DEBUG icsd: tick"]

    out = io.StringIO()
    setup_logging("INFO", "json", stream=out)
    log.error("boom")
    line = lines(out)[0]
    assert line.startswith("<3>{")
    assert json.loads(line[3:])["message"] == "boom"


def test_journal_stream_compared_with_the_real_fd(monkeypatch, tmp_path):
    with open(tmp_path / "log.txt", "w") as f:
        st = os.fstat(f.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        setup_logging("INFO", "text", stream=f)
        logging.getLogger("icsd").info("to the journal")
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino + 1}")  # inherited, not ours
        setup_logging("INFO", "text", stream=f)
        logging.getLogger("icsd").info("to a file")
    first, second = (tmp_path / "log.txt").read_text().splitlines()
    assert first == "<6>INFO  icsd: to the journal"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO  icsd: to a file", second)


def test_setup_is_idempotent():
    first, second = io.StringIO(), io.StringIO()
    setup_logging("INFO", "text", stream=first)
    setup_logging("INFO", "json", stream=second)
    ours = [h for h in logging.getLogger("icsd").handlers if getattr(h, "_icsd_handler", False)]
    assert len(ours) == 1
    logging.getLogger("icsd").info("once")
    assert first.getvalue() == ""
    assert len(lines(second)) == 1


def test_level_applies_to_the_tree():
    out = io.StringIO()
    setup_logging("WARNING", "text", stream=out)
    logging.getLogger("icsd.executor").info("quiet")
    logging.getLogger("icsd.executor").warning("loud")
    assert len(lines(out)) == 1 and lines(out)[0].endswith("loud")


def test_invalid_level():
    with pytest.raises(SettingsError) as err:
        setup_logging("x")
    assert str(err.value) == "ICSD_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, got 'x'"


def test_invalid_format():
    with pytest.raises(SettingsError, match=r"^ICSD_LOG_FORMAT must be one of text, json, got 'yaml'$"):
        setup_logging("INFO", "yaml")


def test_default_stream_is_current_stderr(capsys):
    setup_logging()
    logging.getLogger("icsd").info("hello")
    assert capsys.readouterr().err.endswith("INFO  icsd: hello\n")


def test_a_text_line_cannot_be_split_or_forged_by_a_file_name() -> None:
    stream = io.StringIO()
    setup_logging("INFO", "text", stream=stream)
    log = logging.getLogger("icsd")
    forged = "x.jpg\n2026-11-21 08:30:01 ERROR icsd: FAILED everything\r\x1b[2K.jpg"
    log.warning("%s: skipped", forged)
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("with a traceback")
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith(
        "WARNING icsd: x.jpg\\n2026-11-21 08:30:01 ERROR icsd: FAILED everything\\r\\x1b[2K.jpg: skipped")
    assert lines[1].endswith("ERROR icsd: with a traceback") and lines[2] == "Traceback (most recent call last):"


def test_one_line_escapes_every_kind_of_line_break_and_terminal_control() -> None:
    from icsd.daemon.logs import one_line

    text = "a\nb\rc\x1b[2Kd\x7fe\x85f\x9bg\u2028h\u2029i\tj é 東京"
    assert one_line(text) == "a\\nb\\rc\\x1b[2Kd\\x7fe\\x85f\\x9bg\\u2028h\\u2029i\tj é 東京"
