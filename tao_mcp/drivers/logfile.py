"""Log windows every driver shares: the same tail / page / grep semantics whatever the platform.

- `window_script` + `parse_window`: a log FILE read through a remote shell (SLURM over SSH, Brev over
  `brev exec`). Never `cat` a whole file: the command returns the line count plus at most `limit` lines, each
  cut to LOG_LINE_CHARS, so a huge log costs the same as a small one.
- `Window`: a log read line by line (Docker's stream); `window`: lines the driver already holds (Kubernetes pod
  logs, Lepton's Loki pages).
- `chunk`: the one rule that numbers every window's answer, whichever of the above read it.
"""

from __future__ import annotations

import shlex
from collections import deque

from tao_mcp.drivers.base import LOG_LINE_CHARS, MAX_LOG_LINES, LogChunk
from tao_mcp.errors import TaoError

MISSING = "@@log:missing"
TOTAL = "@@log:total="
LINES = "@@log:lines"


def clamp(limit: int) -> int:
    return max(0, min(int(limit), MAX_LOG_LINES))


def check_grep(grep: str | None) -> None:
    if grep is not None and ("\n" in grep or "\r" in grep or not grep):
        raise TaoError("E_BAD_INPUT", "grep must be one non-empty line of text", "give a fixed string to search for")


def empty(start: int | None, grep: str | None) -> LogChunk:
    """No log yet (the job has not started writing one): not an error."""
    return LogChunk(lines=[], first_line=max(int(start or 0), 0), total_lines=0, line_numbers=[] if grep else None)


class Window:
    """The lines one read keeps, taken one by one in log order (numbered from 0 in the whole log): the last
    `limit` lines containing `grep` from `start` on; else the tail (start None); else `limit` lines from `start`."""

    def __init__(self, *, start: int | None, limit: int, grep: str | None) -> None:
        self.start, self.limit, self.grep = start, limit, grep
        self.first = max(int(start or 0), 0)
        self.kept: deque[tuple[int, str]] = deque(maxlen=limit)

    def take(self, number: int, line: str) -> None:
        if self.grep is not None:
            if number >= self.first and self.grep in line:
                self.kept.append((number, line))
        elif self.start is None or self.first <= number < self.first + self.limit:
            self.kept.append((number, line))

    def chunk(self, total: int) -> LogChunk:
        return chunk(list(self.kept), start=self.start, grep=self.grep, total=total)


def chunk(kept: list[tuple[int, str]], *, start: int | None, grep: str | None, total: int) -> LogChunk:
    """The LogChunk of the numbered lines a window kept, `total` being the log's line count: one rule for every
    reader (in memory, streamed, or printed by window_script)."""
    lines = [line for _, line in kept]
    first = max(int(start or 0), 0)
    if grep is not None:
        return LogChunk(
            lines=lines, first_line=first, total_lines=max(total - first, 0), line_numbers=[n for n, _ in kept]
        )
    if start is None:
        first = max(total - len(lines), 0)
    elif kept:
        first = kept[0][0]
    return LogChunk(lines=lines, first_line=first, total_lines=max(total, first + len(lines)))


def window(lines: list[str], *, start: int | None, limit: int, grep: str | None, offset: int = 0) -> LogChunk:
    """The Window of lines held in memory. `offset` is the position of lines[0] in the whole log (when older
    lines were dropped); a page that begins among dropped lines begins at lines[0]."""
    lo = max(max(int(start or 0), 0) - offset, 0)
    hi = len(lines)
    if grep is None and start is None:
        lo = max(hi - limit, 0) if limit else hi  # only the tail can be kept: do not walk the rest
    elif grep is None:
        start, hi = offset + lo, min(lo + limit, hi)
    win = Window(start=start, limit=limit, grep=grep)
    for i in range(lo, hi):
        win.take(offset + i, lines[i])
    return win.chunk(offset + len(lines))


def window_script(path: str, *, start: int | None, limit: int, grep: str | None) -> str:
    """Shell that prints the log's line count and one window of it. `path` is a shell word, already quoted."""
    first = max(int(start or 0), 0)
    cut = f"cut -c1-{LOG_LINE_CHARS + 12}"
    # wc -l misses a last line without a newline: count it too.
    count = f'n=$(wc -l < {path}); [ -s {path} ] && [ "$(tail -c1 {path} | wc -l)" -eq 0 ] && n=$((n+1)); '
    count += f'echo "{TOTAL}$n"'
    if grep is not None:
        source = f"tail -n +{first + 1} {path}" if first else f"cat {path}"
        body = f"{source} | grep -n -F -e {shlex.quote(grep)} | tail -n {limit} | {cut}"
    elif start is None:
        body = f"tail -n {limit} {path} | {cut}"
    else:
        body = f"sed -n '{first + 1},{first + limit}p;{first + limit}q' {path} | {cut}" if limit else "true"
    return f"if [ ! -e {path} ]; then echo '{MISSING}'; exit 0; fi\n{count}\necho '{LINES}'\n{body}\ntrue"


def parse_window(out: str, *, start: int | None, grep: str | None) -> LogChunk | None:
    """The window window_script printed; None when the answer is not one (the caller reports the backend)."""
    first = max(int(start or 0), 0)
    if out.lstrip().startswith(MISSING):
        return empty(start, grep)
    head, sep, content = out.partition(f"{LINES}\n")
    if not sep and out.rstrip().endswith(LINES):
        head, sep, content = out.rstrip()[: -len(LINES)], LINES, ""
    total_text = head.strip().rpartition(TOTAL)[2].strip()
    if not sep or not total_text.isdigit():
        return None
    total = int(total_text)
    raw = content.split("\n") if content else []
    if raw and raw[-1] == "":
        raw.pop()
    if grep is not None:
        kept = []
        for item in raw:
            num, _, text = item.partition(":")
            if num.isdigit():
                kept.append((first + int(num) - 1, text[:LOG_LINE_CHARS]))
        return chunk(kept, start=start, grep=grep, total=total)
    if start is None:
        first = max(total - len(raw), 0)
    return chunk(
        [(first + i, line[:LOG_LINE_CHARS]) for i, line in enumerate(raw)], start=start, grep=None, total=total
    )
