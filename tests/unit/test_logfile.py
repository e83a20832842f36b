"""The shared remote log window: the shell command runs for real (bash), its answer parses back exactly."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from tao_mcp.drivers import logfile
from tao_mcp.drivers.base import LOG_LINE_CHARS, LogChunk
from tao_mcp.errors import TaoError


def window(path: Path, **kw: object) -> LogChunk:
    script = logfile.window_script(shlex.quote(str(path)), **kw)  # type: ignore[arg-type]
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    chunk = logfile.parse_window(out, start=kw["start"], grep=kw["grep"])  # type: ignore[arg-type]
    assert chunk is not None
    return chunk


def test_tail_window_grep_and_missing(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    log.write_text("\n".join(f"line {i}" for i in range(1, 101)) + "\nno newline at the end " + "x" * 5000)
    tail = window(log, start=None, limit=3, grep=None)
    assert tail.total_lines == 101 and tail.first_line == 98
    assert tail.lines[:2] == ["line 99", "line 100"] and len(tail.lines[2]) == LOG_LINE_CHARS
    page = window(log, start=10, limit=2, grep=None)
    assert page.lines == ["line 11", "line 12"] and page.first_line == 10
    found = window(log, start=None, limit=20, grep="line 5")
    assert found.lines[:2] == ["line 5", "line 50"] and found.line_numbers[:2] == [4, 49] and len(found.lines) == 11
    last = window(log, start=None, limit=2, grep="line 5")  # with a limit: the last matches
    assert last.lines == ["line 58", "line 59"] and last.line_numbers == [57, 58]
    missing = window(tmp_path / "absent.log", start=None, limit=5, grep=None)
    assert missing.lines == [] and missing.total_lines == 0


def test_garbage_answer_is_not_a_log_and_grep_is_one_line() -> None:
    assert logfile.parse_window("ssh: connection closed", start=None, grep=None) is None
    with pytest.raises(TaoError):
        logfile.check_grep("two\nlines")


def streamed(lines: list[str], **kw: object) -> LogChunk:
    """The window of a log read line by line (how the Docker driver reads a container's log stream)."""
    win = logfile.Window(**kw)  # type: ignore[arg-type]
    for number, line in enumerate(lines):
        win.take(number, line)
    return win.chunk(len(lines))


def test_in_memory_and_streamed_windows_match_the_file_window(tmp_path: Path) -> None:
    lines = [f"line {i}" for i in range(1, 101)]
    log = tmp_path / "job.log"
    log.write_text("\n".join(lines) + "\n")
    for kw in (
        {"start": None, "limit": 7, "grep": None},
        {"start": 20, "limit": 5, "grep": None},
        {"start": 98, "limit": 5, "grep": None},
        {"start": 150, "limit": 5, "grep": None},
        {"start": None, "limit": 0, "grep": None},
        {"start": None, "limit": 4, "grep": "line 9"},
        {"start": 50, "limit": 3, "grep": "line 9"},
        {"start": 150, "limit": 3, "grep": "line 9"},
    ):
        expected = window(log, **kw)
        assert logfile.window(lines, **kw) == expected, kw  # type: ignore[arg-type]
        assert streamed(lines, **kw) == expected, kw
    dropped = logfile.window(lines[40:], start=None, limit=3, grep=None, offset=40)
    assert dropped.first_line == 97 and dropped.total_lines == 100
    early = logfile.window(lines[40:], start=10, limit=2, grep=None, offset=40)  # the page begins among dropped lines
    assert early.lines == ["line 41", "line 42"] and early.first_line == 40 and early.total_lines == 100
    hits = logfile.window(lines[40:], start=10, limit=2, grep="line 5", offset=40)
    assert hits.lines == ["line 58", "line 59"] and hits.line_numbers == [57, 58] and hits.first_line == 10
