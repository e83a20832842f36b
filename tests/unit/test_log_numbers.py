"""Line numbers on request (job_logs line_numbers=true): counted, never guessed. Every test line begins with its
own 1-based number, so a number off by one fails: from the start when the read saw the start or a file's
newlines before the window fit the bound, back from the end (-1 = last line) otherwise, None when neither."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tao_mcp.drivers import logfile
from tao_mcp.drivers.base import LogMark
from tao_mcp.service import logs
from tao_mcp.service.redaction import Redactor
from tests.logfakes import REF, FileLog, StreamLog

pytestmark = pytest.mark.anyio

N = 3000
LINES = [f"{i} {'é' * (i % 5)}{'x' * (i % 11)}" for i in range(1, N + 1)]  # multibyte: offsets are not chars


def truth(line: str) -> int:
    return int(line.split()[0])


def from_end(line: str, total: int = N) -> int:
    return truth(line) - total - 1


async def window(
    log: FileLog | StreamLog, mode: str = "tail", at: LogMark | None = None, limit: int = 50
) -> logs.Window:
    return await logs.read(log, REF, Redactor(), limit=limit, mode=mode, at=at, numbered=True)  # type: ignore[arg-type]


async def every_window(log: FileLog | StreamLog, limit: int) -> list[logs.Window]:
    """The tail, every page back from it, and every page forward from the first line."""
    seen = [await window(log, limit=limit)]
    while seen[-1].older:
        seen.append(await window(log, "before", seen[-1].begin, limit))
    forward = await window(log, "after", LogMark(0), limit)
    seen.append(forward)
    while forward.newer:
        forward = await window(log, "after", forward.end, limit)
        seen.append(forward)
    return seen


@pytest.mark.parametrize("newline", [True, False])
async def test_file_numbers_count_from_the_start_within_the_bound(tmp_path: Path, newline: bool) -> None:
    log = FileLog.of(tmp_path, LINES, newline=newline)
    for w in await every_window(log, 97):
        assert w.numbers == [truth(line) for line in w.lines]
    assert (await window(log)).numbers == list(range(N - 49, N + 1))


@pytest.mark.parametrize("newline", [True, False])
async def test_file_numbers_count_back_from_the_end_past_the_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, newline: bool
) -> None:
    monkeypatch.setattr(logs, "NUMBER_BOUND", 4000)
    log = FileLog.of(tmp_path, LINES, newline=newline)
    data = log.path.read_bytes()
    tail = await window(log)
    assert tail.numbers == [from_end(line) for line in tail.lines] and tail.numbers[-1] == -1
    numbered = unknown = 0
    for w in await every_window(log, 97):
        before, after = w.marks[0].at, len(data) - w.marks[0].at
        if before <= 4000:
            assert w.numbers == [truth(line) for line in w.lines]
        elif after <= 4000:
            assert w.numbers == [from_end(line) for line in w.lines]
        else:  # both sides past the bound: no number rather than a guess
            assert w.numbers is None
            unknown += 1
        numbered += w.numbers is not None
    assert numbered > 4 and unknown > 10
    counts = [s for s in log.scripts if logfile.NUMBER in s]
    assert counts and all(  # a count reads at most the bound: the bytes before the line, or a guarded rest
        ("-le 4000 ]" in s)
        != bool(re.search(r'head -c (\d+) "\$f" \| wc', s) and int(re.findall(r"head -c (\d+)", s)[0]) <= 4000)
        for s in counts
    )


async def test_numbers_are_not_counted_unless_asked(tmp_path: Path) -> None:
    log = FileLog.of(tmp_path, LINES)
    plain = await logs.read(log, REF, Redactor(), limit=50, mode="before", at=LogMark(20_000))  # type: ignore[arg-type]
    assert plain.numbers is None and not any(logfile.NUMBER in s for s in log.scripts)


async def test_file_line_number_counts_at_most_the_bound(tmp_path: Path) -> None:
    log = FileLog.of(tmp_path, LINES)
    data = log.path.read_bytes()
    starts = [0, *[i + 1 for i, b in enumerate(data) if b == 10][:-1]]
    for k in (0, 1, 500, N - 2, N - 1):
        assert await log.line_number(REF, LogMark(starts[k]), len(data)) == k + 1
        assert await log.line_number(REF, LogMark(starts[k]), starts[k] - 1 if starts[k] else 0) in (
            (k + 1,) if starts[k] == 0 else (k - N, None)
        )
    middle = LogMark(starts[N // 2])
    assert await log.line_number(REF, middle, 100) is None  # neither side within 100 bytes
    (tmp_path / "job.log").unlink()
    assert await log.line_number(REF, middle, 100) is None


def rows(n: int, *, ties: int = 1) -> list[logfile.Row]:
    return [(1_000 + i // ties, f"{i + 1} row") for i in range(n)]


@pytest.mark.parametrize("until_supported", [False, True])
@pytest.mark.parametrize("ties", [1, 3])
async def test_stream_numbers(until_supported: bool, ties: int) -> None:
    small = StreamLog(rows(100, ties=ties), until_supported=until_supported)
    for w in await every_window(small, 13):  # every read reaches the start: numbers from the start
        assert w.numbers == [truth(line) for line in w.lines]
    medium = StreamLog(rows(700, ties=ties), until_supported=until_supported)
    for w in await every_window(medium, 53):  # from the start when a read reached it, else back from the end
        counted = [truth(line) for line in w.lines], [from_end(line, 700) for line in w.lines]
        assert w.numbers in counted or (until_supported and w.numbers is None)
    big = StreamLog(rows(300_000, ties=ties), until_supported=until_supported)
    tail = await window(big)
    assert tail.numbers == [from_end(line, 300_000) for line in tail.lines]
    older = await window(big, "before", tail.begin)
    # a backward query that ends at a time (Lepton) does not see the end: no number rather than a guess
    expected = None if until_supported else [from_end(line, 300_000) for line in older.lines]
    assert older.lines and older.numbers == expected
    first = await window(big, "after", LogMark(0), 20)  # past the stream's reach: counted back from the end
    assert first.numbers == [from_end(line, 300_000) for line in first.lines]


@pytest.mark.parametrize("bound", [1 << 30, 4000])
async def test_grep_numbers_carry_across_spans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bound: int) -> None:
    monkeypatch.setattr(logs, "GREP_SPAN_BYTES", 4096)
    monkeypatch.setattr(logs, "NUMBER_BOUND", bound)
    lines = [f"{i} needle" if i % 97 == 0 else f"{i} line" for i in range(1, 12_001)]
    log = FileLog.of(tmp_path, lines)
    expect = truth if bound > 4000 else (lambda line: from_end(line, 12_000))

    async def grep(mode: str = "tail", at: LogMark | None = None) -> logs.Matches:
        return await logs.grep(  # type: ignore[arg-type]
            log, REF, Redactor(), "needle", limit=60, mode=mode, at=at, window_bytes=60_000, numbered=True
        )

    back = await grep()
    assert len(back.lines) > 40 and back.numbers == [expect(line) for line in back.lines]
    further = await grep("before", back.begin)
    assert further.lines and further.numbers == (
        [expect(line) for line in further.lines] if bound > 4000 else [None] * len(further.lines)
    )
    forward = await grep("after", LogMark(0))  # begins at the start: counted from it, carried forward
    assert truth(forward.lines[-1]) > 1000 and forward.numbers == [truth(line) for line in forward.lines]
    plain = await logs.grep(log, REF, Redactor(), "needle", limit=5)  # type: ignore[arg-type]
    assert plain.numbers is None


async def test_grep_numbers_on_a_stream() -> None:
    log = StreamLog([(1_000 + i, f"{i + 1} {'needle' if i % 1000 == 0 else 'x'}") for i in range(300_000)])
    found = await logs.grep(log, REF, Redactor(), "needle", limit=30, numbered=True)  # type: ignore[arg-type]
    assert len(found.lines) == 30 and found.numbers == [from_end(line, 300_000) for line in found.lines]


def test_numbering_says_what_the_numbers_count_from() -> None:
    assert "from the log's start" in logs.numbering([1, 2, 3])
    assert "back from the log's end" in logs.numbering([-3, -2, -1])
    assert logs.numbering([]) == "no lines to number"
    assert "unknown" in logs.numbering([None, None]) and "(null: unknown)" in logs.numbering([5, None])
