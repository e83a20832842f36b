"""Redacted log windows: the one way the service reads a job's log.

Order matters and is the same for every platform:
1. the driver returns a raw window (plus up to CONTEXT_LINES before it, so a PEM key the window cuts is still
   seen whole enough to mask); a window never begins inside a line (a partial line is dropped, not shown);
2. a raw line the driver cut (RAW_CUT) loses its cut end: half a secret is not recognisable as one;
3. the window is redacted as ONE text (multi-line secrets), keeping its line count;
4. only then grep, and cut lines to LOG_LINE_CHARS.
So no answer (lines, matches, positions) is a function of a secret's characters.

Positions are LogMarks (byte offsets or timestamps, see drivers/logfile.py): a page costs the same whatever the
log's size. grep searches backward from the end (or from a mark), span by span, at most the grep window
(TAO_MCP_GREP_WINDOW_MB, default 64 MiB) per call, and says where its search began.

Line numbers, only when asked (numbered=True), are positions in the real log (hidden lines count too) and are
never guessed: from the log's start (1 = first line) when the read saw the start or a log file's newlines before
the window can be counted within NUMBER_BOUND bytes; else negative, back from the log's end when read (-1 = last
line), when the read reached the end or the newlines after the window are within the bound; else unknown (None).
A tail always knows its numbers back from the end; grep carries the first span's numbers to the next (spans touch).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tao_mcp.drivers.base import LOG_LINE_CHARS, RAW_CUT, Driver, HasLineCount, JobRef, LogChunk, LogMark, LogMode
from tao_mcp.errors import TaoError
from tao_mcp.service.redaction import Redactor

CONTEXT_LINES = 120  # an 8192-bit RSA key in PEM is ~100 lines
CUT_WORD_CHARS = 256  # how much of the word a raw cut fell in is dropped (tokens are shorter)
PAGE_BYTES = 16 * 1024 * 1024  # the most of the log one page reads
GREP_WINDOW_MB = 64  # default of TAO_MCP_GREP_WINDOW_MB
GREP_SPAN_BYTES = 4 * 1024 * 1024  # bytes per read while grep walks back (file logs)
GREP_SPAN_LINES = 50_000  # lines per read while grep walks back (a stream's read is counted in lines)
NUMBER_BOUND = 64 * 1024 * 1024  # a line number counts at most this many bytes of a log file


@dataclass
class Window:
    """Redacted lines with where each begins; `begin`/`end`: the window's bounds; older/newer: lines beyond."""

    lines: list[str]
    marks: list[LogMark]
    begin: LogMark
    end: LogMark
    older: bool
    newer: bool
    numbers: list[int] | None = None  # numbered=True: each line's number (see the module doc); None: unknown


@dataclass
class Matches:
    """grep over redacted windows: the last `limit` matching lines of the part of the log searched."""

    lines: list[str]
    marks: list[LogMark]
    begin: LogMark  # every match between begin and end was returned (the search covered at least that)
    end: LogMark
    older: bool  # older lines were not searched
    newer: bool
    scanned: int  # bytes searched
    more: bool  # more matches in the searched range than returned
    numbers: list[int | None] | None = None  # numbered=True: each match's line number (None: unknown)


def numbering(numbers: list[int | None]) -> str:
    """What a page's line numbers count from (LogPage.numbering)."""
    if not numbers:
        return "no lines to number"
    known = [n for n in numbers if n is not None]
    unknown = " (null: unknown)" if len(known) < len(numbers) else ""
    if known and known[0] > 0:
        return "line numbers count from the log's start (1 = its first line)" + unknown
    bound = f"{NUMBER_BOUND // (1024 * 1024)} MiB"
    if known:
        return (
            "line numbers count back from the log's end when read (-1 = its last line): counting from its start "
            f"would read more than {bound} (or more than a log stream's reach)" + unknown
        )
    return (
        f"line numbers unknown: more than {bound} of log (or a log stream's reach) lies both before and after "
        "these lines; a tail's numbers, counted back from the end, are always known"
    )


def check_grep(grep: str | None) -> None:
    if grep is not None and ("\n" in grep or "\r" in grep or not grep):
        raise TaoError("E_BAD_INPUT", "grep must be one non-empty line of text", "give a fixed string to search for")


def grep_window_bytes(settings: Mapping[str, str]) -> int:
    """TAO_MCP_GREP_WINDOW_MB: how much of a log one grep call searches at most."""
    raw = settings.get("TAO_MCP_GREP_WINDOW_MB") or ""
    try:
        value = float(raw) if raw else GREP_WINDOW_MB
    except ValueError:
        value = 0.0
    if not value > 0:
        raise TaoError("E_BAD_SETTING", f"TAO_MCP_GREP_WINDOW_MB={raw!r} is not a size in MiB > 0", "e.g. 64")
    return int(value * 1024 * 1024)


def redact_lines(lines: list[str], redactor: Redactor) -> list[str]:
    """Raw lines -> redacted lines, one for one, redacted as one text; cut to LOG_LINE_CHARS afterwards."""
    if not lines:
        return []
    longest = redactor.longest
    prepared = []
    for line in lines:
        if line.endswith(RAW_CUT):
            line = _drop_cut_end(line[: -len(RAW_CUT)], longest) + " …"
        prepared.append(line.replace("\r", ""))
    redacted = redactor.text("\n".join(prepared)).split("\n")
    if len(redacted) != len(prepared):  # masking keeps line breaks; never trust that blindly
        redacted = [redactor.text(line) for line in prepared]
    return [line[:LOG_LINE_CHARS] for line in redacted]


def _drop_cut_end(line: str, longest: int) -> str:
    """The driver cut this line, maybe inside a secret: drop as much as the longest known secret, then the word
    the cut fell in (up to CUT_WORD_CHARS), so no prefix of a secret is left for the redactor to miss."""
    end = max(len(line) - longest, 0)
    stop = max(end - CUT_WORD_CHARS, 0)
    while end > stop and not line[end - 1].isspace():
        end -= 1
    return line[:end]


async def first_number(driver: Driver, ref: JobRef, chunk: LogChunk) -> int | None:
    """The number of the chunk's first shown line: from the start when known or countable within NUMBER_BOUND,
    else back from the end, else None."""
    if len(chunk.lines) <= chunk.context:
        return None
    if chunk.number is not None:
        return chunk.number
    if isinstance(driver, HasLineCount):
        counted = await driver.line_number(ref, chunk.begin, NUMBER_BOUND)
        if counted is not None and (counted > 0 or chunk.from_end is None):
            return counted
    return chunk.from_end


async def read(
    driver: Driver,
    ref: JobRef,
    redactor: Redactor,
    *,
    limit: int,
    mode: LogMode = "tail",
    at: LogMark | None = None,
    context: int = CONTEXT_LINES,
    max_bytes: int = PAGE_BYTES,
    numbered: bool = False,
) -> Window:
    """`limit` redacted lines: the tail, the lines from `at` (after) or the lines before `at` (before)."""
    if at is None:
        mode = "tail"
    chunk = await driver.read_log(ref, mode=mode, at=at, limit=max(int(limit), 0), context=context, max_bytes=max_bytes)
    lines = redact_lines(chunk.lines, redactor)[chunk.context :]
    first = await first_number(driver, ref, chunk) if numbered else None
    return Window(
        lines=lines,
        marks=chunk.marks[chunk.context :],
        begin=chunk.begin,
        end=chunk.end,
        older=chunk.older,
        newer=chunk.newer,
        numbers=None if first is None else list(range(first, first + len(lines))),
    )


async def grep(
    driver: Driver,
    ref: JobRef,
    redactor: Redactor,
    needle: str,
    *,
    limit: int,
    mode: LogMode = "tail",
    at: LogMark | None = None,
    window_bytes: int = GREP_WINDOW_MB * 1024 * 1024,
    skip: Callable[[str], bool] | None = None,
    numbered: bool = False,
) -> Matches:
    """The last `limit` redacted lines containing `needle`, searching back from the end (tail) or from `at`
    (before), or forward from `at` (after), at most `window_bytes` of log. Searching redacted text only is what
    makes grep safe; each span is redacted whole, and a span never begins inside a line. `skip` drops lines the
    caller hides (progress lines)."""
    check_grep(needle)
    if at is None:
        mode = "tail"
    forward = mode == "after"
    found: list[tuple[LogMark, str, int | None]] = []
    spans = 0
    previous: tuple[int, int] | None = None  # (number of the first line, lines) of the span before, when known
    scanned = 0
    begin = end = at
    older = newer = False
    while True:
        span = max(min(GREP_SPAN_BYTES, window_bytes - scanned), 1)
        chunk = await driver.read_log(
            ref, mode=mode, at=at, limit=GREP_SPAN_LINES, context=CONTEXT_LINES if forward else 0, max_bytes=span
        )
        lines = redact_lines(chunk.lines, redactor)[chunk.context :]
        first = None
        if numbered and lines:
            first = await first_number(driver, ref, chunk) if not spans else _next_span(chunk, previous, forward)
            previous = None if first is None else (first, len(lines))
        spans += 1
        hits = [
            (m, line, None if first is None else first + i)
            for i, (m, line) in enumerate(zip(chunk.marks[chunk.context :], lines, strict=True))
            if needle in line and not (skip and skip(line))
        ]
        scanned += chunk.scanned or sum(len(line) + 1 for line in lines)
        if forward:
            found += hits
            older = older if scanned > chunk.scanned else chunk.older  # the first span says what is before it
            end, newer = chunk.end, chunk.newer
            go_on = chunk.newer and bool(chunk.lines) and len(found) <= limit
            at, mode = chunk.end, "after"
        else:
            found = hits + found
            if scanned == chunk.scanned or scanned == 0:  # the first span: what lies after the search
                end = at if mode == "before" and at is not None else chunk.end
                newer = chunk.newer
            begin, older = chunk.begin, chunk.older
            go_on = chunk.older and bool(lines) and len(found) <= limit
            at, mode = chunk.begin, "before"
        if not go_on or scanned >= window_bytes:
            break
    kept = (found[:limit] if forward else found[-limit:]) if limit else []
    more = len(found) > len(kept)
    if more and forward:  # every match before the first one not returned was returned: resume there
        end, newer = found[len(kept)][0], True
    elif more:
        begin, older = (kept[0][0] if kept else end or LogMark(0)), True
    return Matches(
        lines=[line for _, line, _ in kept],
        marks=[m for m, _, _ in kept],
        begin=begin or LogMark(0),
        end=end or LogMark(0),
        older=older,
        newer=newer,
        scanned=scanned,
        more=more,
        numbers=[n for _, _, n in kept] if numbered else None,
    )


def _next_span(chunk: LogChunk, previous: tuple[int, int] | None, forward: bool) -> int | None:
    """The first line number of a grep span after the first one, of the first span's kind (from the start:
    positive; back from the end: negative): its own when its read knows it, else carried from the span before,
    which it touches (a backward span ends just before it, a forward one starts just after it)."""
    if previous is None:
        return None
    first, count = previous
    own = chunk.number if first > 0 else chunk.from_end
    if own is not None or chunk.number is not None or chunk.from_end is not None:
        return own  # a read that knows its place tells it; carrying would cross a gap a stream's reach left
    shown = len(chunk.lines) - chunk.context
    carried = first + count if forward else first - shown
    return carried if (carried >= 1 if first > 0 else carried + shown <= 0) else None
