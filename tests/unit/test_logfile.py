"""Shared log windows by position: the file script runs for real (bash, as over SSH) and pages by byte offset;
the stream reader pages by timestamp over a "last n lines" query. Tails read from the end only."""

from __future__ import annotations

from pathlib import Path

import pytest

from tao_mcp.drivers import logfile
from tao_mcp.drivers.base import RAW_CUT, RAW_LINE_CHARS, LogChunk, LogMark
from tests.logfakes import REF, FileLog, StreamLog

pytestmark = pytest.mark.anyio

LINES = [f"line {i} {'é' * (i % 5)}{'日本' * (i % 3)}" for i in range(1, 301)]  # multibyte UTF-8 everywhere


async def page(log: FileLog | StreamLog, mode: str, at: LogMark | None, limit: int, **kw: int) -> LogChunk:
    return await log.read_log(  # type: ignore[arg-type]
        REF, mode=mode, at=at, limit=limit, context=kw.get("context", 0), max_bytes=kw.get("max_bytes", 1 << 20)
    )


async def all_forward(log: FileLog | StreamLog, first: LogMark, limit: int) -> list[str]:
    seen: list[str] = []
    at = first
    for _ in range(10_000):
        chunk = await page(log, "after", at, limit)
        seen += chunk.lines[chunk.context :]
        if not chunk.newer:
            return seen
        assert chunk.end > at  # always moves on
        at = chunk.end
    raise AssertionError("paging forward never ended")


async def all_backward(log: FileLog | StreamLog, limit: int) -> list[str]:
    chunk = await page(log, "tail", None, limit)
    seen = chunk.lines[chunk.context :]
    while chunk.older:
        chunk = await page(log, "before", chunk.begin, limit)
        assert chunk.lines[chunk.context :], "older lines were promised"
        seen = chunk.lines[chunk.context :] + seen
    return seen


async def test_file_tail_marks_are_byte_offsets(tmp_path: Path) -> None:
    log = FileLog.of(tmp_path, LINES)
    data = log.path.read_bytes()
    tail = await page(log, "tail", None, 3)
    assert tail.lines == LINES[-3:] and tail.older and not tail.newer
    assert [data[m.at :].split(b"\n", 1)[0].decode() for m in tail.marks] == LINES[-3:]
    assert tail.begin == tail.marks[0] and tail.end == LogMark(len(data))
    assert "wc -l" not in log.scripts[-1] and "sed" not in log.scripts[-1]  # nothing counts the whole file
    with_context = await page(log, "tail", None, 3, context=4)
    assert with_context.context == 4 and with_context.lines == LINES[-7:] and with_context.begin == tail.begin


@pytest.mark.parametrize("span", [7, 64, logfile.FIRST_SPAN])
async def test_file_pages_forward_and_back_cover_every_line_once(
    tmp_path: Path, span: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small spans put range boundaries inside lines and inside multibyte characters."""
    monkeypatch.setattr(logfile, "FIRST_SPAN", span)
    log = FileLog.of(tmp_path, LINES)
    assert await all_forward(log, LogMark(0), 7) == LINES
    assert await all_backward(log, 11) == LINES


async def test_a_range_that_begins_inside_a_line_drops_that_line(tmp_path: Path) -> None:
    log = FileLog.of(tmp_path, ["first", "日本語" * 40, "last"])
    data = log.path.read_bytes()
    at = data.index("語".encode()) + 1  # inside a line and inside a character
    before = await page(log, "before", LogMark(len(data)), 10, max_bytes=len(data) - at)
    assert before.lines == ["last"]  # the cut line is not shown (not as mojibake, not as a fragment)
    assert before.older
    older = await page(log, "before", before.begin, 10)
    assert older.lines == ["first", "日本語" * 40]  # it is shown whole by the page before


async def test_a_log_that_grows_between_pages(tmp_path: Path) -> None:
    log = FileLog.of(tmp_path, LINES[:5])
    tail = await page(log, "tail", None, 10)
    assert tail.lines == LINES[:5] and not tail.newer
    with log.path.open("ab") as f:
        f.write(b"six\nseven half")  # a line still being written
    grown = await page(log, "after", tail.end, 10)
    assert grown.lines[grown.context :] == ["six", "seven half"]
    with log.path.open("ab") as f:
        f.write(b" done\neight\n")
    rest = await page(log, "after", grown.end, 10)
    assert rest.lines[rest.context :] == ["seven half done", "eight"]  # the unfinished line comes again, whole
    assert not rest.newer


async def test_a_line_longer_than_the_window_is_cut_and_the_next_page_skips_its_rest(tmp_path: Path) -> None:
    giant = "z" * (3 * RAW_LINE_CHARS)
    log = FileLog.of(tmp_path, ["before", giant, "after"])
    head = await page(log, "after", LogMark(0), 5, max_bytes=RAW_LINE_CHARS)
    assert head.lines == ["before"] and head.newer  # the window ends inside the giant line: not shown yet
    first = await page(log, "after", head.end, 5, max_bytes=RAW_LINE_CHARS)
    assert first.lines[first.context :] == ["z" * RAW_LINE_CHARS + RAW_CUT] and first.newer
    second = await page(log, "after", first.end, 5, max_bytes=RAW_LINE_CHARS)
    while not second.lines[second.context :]:  # the rest of the giant line is skipped, span by span, never shown
        assert second.newer
        second = await page(log, "after", second.end, 5, max_bytes=RAW_LINE_CHARS)
    assert second.lines[second.context :] == ["after"]


async def test_missing_and_garbage(tmp_path: Path) -> None:
    missing = await page(FileLog(tmp_path / "absent.log"), "tail", None, 5)
    assert missing.lines == [] and not missing.older and not missing.newer
    assert logfile.parse_file("ssh: connection closed", mode="tail", limit=5, context=0) is None


def rows(n: int, *, ties: int = 1) -> list[logfile.Row]:
    """n rows; every `ties` consecutive rows share a timestamp."""
    return [(1_000 + i // ties, f"row {i}") for i in range(n)]


@pytest.mark.parametrize("until_supported", [False, True])
@pytest.mark.parametrize("ties", [1, 3])
async def test_stream_pages_forward_and_back_cover_every_line_once(until_supported: bool, ties: int) -> None:
    log = StreamLog(rows(500, ties=ties), until_supported=until_supported)
    expected = [f"row {i}" for i in range(500)]
    assert await all_backward(log, 13) == expected
    first = (await page(log, "after", LogMark(0), 1)).marks[0]
    assert await all_forward(log, first, 17) == expected


async def test_stream_tail_asks_for_its_own_lines_only() -> None:
    log = StreamLog(rows(100_000))
    tail = await page(log, "tail", None, 200, context=120)
    assert tail.lines[-1] == "row 99999" and tail.context == 120
    assert log.queries == [(321, None)] and log.sent == 321  # Docker logs(tail=n), K8s tail_lines=n


async def test_stream_grows_between_pages() -> None:
    log = StreamLog(rows(10))
    tail = await page(log, "tail", None, 5)
    log.rows += [(5_000, "new 1"), (5_000, "new 2")]
    grown = await page(log, "after", tail.end, 5)
    assert grown.lines[grown.context :] == ["new 1", "new 2"]
    last = await page(log, "after", grown.end, 5)
    assert last.lines[last.context :] == [] and not last.newer
