"""Log windows every driver shares: the same tail / page / grep semantics whatever the platform.

- `window_script` + `parse_window`: a log FILE read through a remote shell (SLURM over SSH, Brev over
  `brev exec`). Never `cat` a whole file: the command returns the line count plus at most `limit` lines, each
  cut to LOG_LINE_CHARS, so a huge log costs the same as a small one.
- `window`: a log the driver already holds as lines (Kubernetes pod logs, Lepton's Loki pages).
"""

from __future__ import annotations

import shlex

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


def window(lines: list[str], *, start: int | None, limit: int, grep: str | None, offset: int = 0) -> LogChunk:
    """The tail, a page from `start`, or the last `limit` lines containing `grep`, of lines held in memory.
    `offset` is the position of lines[0] in the whole log (when older lines were dropped)."""
    first = max(int(start or 0), 0)
    total = offset + len(lines)
    lo = max(first - offset, 0)
    if grep is not None:
        hits = [(offset + i, line) for i, line in enumerate(lines[lo:], lo) if grep in line]
        hits = hits[-limit:] if limit else []
        return LogChunk(
            lines=[line for _, line in hits],
            first_line=first,
            total_lines=max(total - first, 0),
            line_numbers=[n for n, _ in hits],
        )
    if start is None:
        tail = lines[-limit:] if limit else []
        return LogChunk(lines=list(tail), first_line=total - len(tail), total_lines=total)
    return LogChunk(lines=list(lines[lo : lo + limit]), first_line=offset + lo, total_lines=max(total, first))


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
        lines, numbers = [], []
        for item in raw:
            num, _, text = item.partition(":")
            if num.isdigit():
                numbers.append(first + int(num) - 1)
                lines.append(text[:LOG_LINE_CHARS])
        return LogChunk(lines=lines, first_line=first, total_lines=max(total - first, 0), line_numbers=numbers)
    lines = [line[:LOG_LINE_CHARS] for line in raw]
    if start is None:
        first = max(total - len(lines), 0)
    return LogChunk(lines=lines, first_line=first, total_lines=max(total, first + len(lines)))
