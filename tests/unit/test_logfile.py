"""The shared remote log window: the shell command runs for real (bash), its answer parses back exactly."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from tao_mcp.drivers import logfile
from tao_mcp.drivers.base import RAW_CUT, RAW_LINE_CHARS, LogChunk


def window(path: Path, **kw: object) -> LogChunk:
    script = logfile.window_script(shlex.quote(str(path)), **kw)  # type: ignore[arg-type]
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    chunk = logfile.parse_window(out, start=kw["start"])  # type: ignore[arg-type]
    assert chunk is not None
    return chunk


def test_tail_window_and_missing(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    long = "x" * (RAW_LINE_CHARS + 100)
    log.write_text("\n".join(f"line {i}" for i in range(1, 101)) + "\nno newline at the end " + long)
    tail = window(log, start=None, limit=3)
    assert tail.total_lines == 101 and tail.first_line == 98
    assert tail.lines[:2] == ["line 99", "line 100"]
    assert tail.lines[2] == ("no newline at the end " + long)[:RAW_LINE_CHARS] + RAW_CUT  # raw, cut and marked
    page = window(log, start=10, limit=2)
    assert page.lines == ["line 11", "line 12"] and page.first_line == 10
    missing = window(tmp_path / "absent.log", start=None, limit=5)
    assert missing.lines == [] and missing.total_lines == 0


def test_garbage_answer_is_not_a_log() -> None:
    assert logfile.parse_window("ssh: connection closed", start=None) is None


def streamed(lines: list[str], **kw: object) -> LogChunk:
    """The window of a log read line by line (how the Docker driver reads a container's log stream)."""
    win = logfile.Window(**kw)  # type: ignore[arg-type]
    for number, line in enumerate(lines):
        win.take(number, line)
    return win.chunk(len(lines))


def test_in_memory_and_streamed_windows_match_the_file_window(tmp_path: Path) -> None:
    lines = [f"line {i}" for i in range(1, 101)] + ["y" * (RAW_LINE_CHARS + 1)]
    log = tmp_path / "job.log"
    log.write_text("\n".join(lines) + "\n")
    clipped = [logfile.clip(line) for line in lines]
    for kw in (
        {"start": None, "limit": 7},
        {"start": 20, "limit": 5},
        {"start": 98, "limit": 5},
        {"start": 150, "limit": 5},
        {"start": None, "limit": 0},
    ):
        expected = window(log, **kw)
        assert logfile.window(clipped, **kw) == expected, kw  # type: ignore[arg-type]
        assert streamed(clipped, **kw) == expected, kw
    dropped = logfile.window(clipped[40:], start=None, limit=3, offset=40)
    assert dropped.first_line == 98 and dropped.total_lines == 101
    early = logfile.window(clipped[40:], start=10, limit=2, offset=40)  # the page begins among dropped lines
    assert early.lines == ["line 41", "line 42"] and early.first_line == 40 and early.total_lines == 101
