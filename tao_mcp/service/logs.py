"""Redacted log windows: the one way the service reads a job's log.

Order matters and is the same for every platform:
1. the driver returns a raw window (plus CONTEXT_LINES before it, so a PEM key the window cuts is still seen
   whole enough to mask);
2. a raw line the driver cut (RAW_CUT) loses its cut end: half a secret is not recognisable as one;
3. the window is redacted as ONE text (multi-line secrets), keeping its line count;
4. only then grep, and cut lines to LOG_LINE_CHARS.
So no answer (lines, matches, line numbers) is a function of a secret's characters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tao_mcp.drivers.base import LOG_LINE_CHARS, MAX_LOG_LINES, RAW_CUT, Driver, JobRef
from tao_mcp.errors import TaoError
from tao_mcp.service.redaction import Redactor

CONTEXT_LINES = 120  # an 8192-bit RSA key in PEM is ~100 lines
GREP_SCAN_LINES = MAX_LOG_LINES - CONTEXT_LINES  # lines one grep call searches (with its context: one window)
CUT_WORD_CHARS = 256  # how much of the word a raw cut fell in is dropped (tokens are shorter)


@dataclass
class Window:
    """Redacted lines. `first_line`: position of lines[0]; `total_lines`: lines in the whole log when read."""

    lines: list[str]
    first_line: int
    total_lines: int


@dataclass
class Matches:
    """grep over a redacted window: the last `limit` matching lines with their positions."""

    lines: list[str]
    line_numbers: list[int]
    first_line: int  # first line searched
    end_line: int  # one past the last line searched
    total_lines: int
    more: bool  # more matches in the searched range than returned


def check_grep(grep: str | None) -> None:
    if grep is not None and ("\n" in grep or "\r" in grep or not grep):
        raise TaoError("E_BAD_INPUT", "grep must be one non-empty line of text", "give a fixed string to search for")


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


async def read(driver: Driver, ref: JobRef, redactor: Redactor, *, start: int | None, limit: int) -> Window:
    """`limit` redacted lines: the tail (start=None) or from position `start`."""
    limit = max(0, min(int(limit), MAX_LOG_LINES - CONTEXT_LINES))
    if start is None:
        chunk = await driver.read_log(ref, start=None, limit=limit + CONTEXT_LINES)
        skip = max(len(chunk.lines) - limit, 0)
    else:
        start = max(int(start), 0)
        lo = max(start - CONTEXT_LINES, 0)
        chunk = await driver.read_log(ref, start=lo, limit=limit + (start - lo))
        skip = max(start - chunk.first_line, 0)
    lines = redact_lines(chunk.lines, redactor)[skip:]
    total = chunk.total_lines if start is None else max(chunk.total_lines, start)
    return Window(lines=lines, first_line=chunk.first_line + skip, total_lines=total)


async def grep(
    driver: Driver,
    ref: JobRef,
    redactor: Redactor,
    needle: str,
    *,
    start: int | None,
    limit: int,
    scan: int = GREP_SCAN_LINES,
    skip: Callable[[str], bool] | None = None,
) -> Matches:
    """The last `limit` redacted lines containing `needle` among `scan` lines: the log's last ones
    (start=None) or those from position `start`; `skip` drops lines the caller hides (progress lines).
    Searching redacted text only is what makes grep safe."""
    check_grep(needle)
    window = await read(driver, ref, redactor, start=start, limit=scan)
    hits = [
        (window.first_line + i, line)
        for i, line in enumerate(window.lines)
        if needle in line and not (skip and skip(line))
    ]
    kept = hits[-limit:] if limit else []
    return Matches(
        lines=[line for _, line in kept],
        line_numbers=[n for n, _ in kept],
        first_line=window.first_line,
        end_line=window.first_line + len(window.lines),
        total_lines=window.total_lines,
        more=len(hits) > len(kept),
    )
