"""Raw log windows every driver shares: the same tail / page semantics whatever the platform.

- `window_script` + `parse_window`: a log FILE read through a remote shell (SLURM over SSH, Brev over
  `brev exec`). Never `cat` a whole file: the command returns the line count plus at most `limit` lines, each
  cut to RAW_LINE_CHARS (and marked), so a huge log costs the same as a small one.
- `Window`: a log read line by line (Docker's stream); `window`: lines the driver already holds (Kubernetes pod
  logs, Lepton's Loki pages).
- `chunk`: the one rule that numbers every window's answer, whichever of the above read it.

Windows are raw: no driver filters a log (grep runs in the service, on redacted text only, so no answer can
depend on a secret's characters).
"""

from __future__ import annotations

from collections import deque

from tao_mcp.drivers.base import MAX_LOG_LINES, RAW_CUT, RAW_LINE_CHARS, LogChunk

MISSING = "@@log:missing"
TOTAL = "@@log:total="
LINES = "@@log:lines"
# A shell filter that does what `clip` does (awk: portable; counts what the platform's awk counts).
CLIP_FILTER = f"awk -v n={RAW_LINE_CHARS} '{{ if (length($0) > n) print substr($0, 1, n) \"{RAW_CUT}\"; else print }}'"


def clamp(limit: int) -> int:
    return max(0, min(int(limit), MAX_LOG_LINES))


def clip(line: str) -> str:
    """A raw line bounded to RAW_LINE_CHARS, marked when cut (the service drops the cut end before redacting)."""
    return line if len(line) <= RAW_LINE_CHARS else line[:RAW_LINE_CHARS] + RAW_CUT


def empty(start: int | None) -> LogChunk:
    """No log yet (the job has not started writing one): not an error."""
    return LogChunk(lines=[], first_line=max(int(start or 0), 0), total_lines=0)


class Window:
    """The lines one read keeps, taken one by one in log order (numbered from 0 in the whole log): the tail
    (start None), else `limit` lines from `start`."""

    def __init__(self, *, start: int | None, limit: int) -> None:
        self.start, self.limit = start, limit
        self.first = max(int(start or 0), 0)
        self.kept: deque[tuple[int, str]] = deque(maxlen=limit)

    def take(self, number: int, line: str) -> None:
        if self.start is None or self.first <= number < self.first + self.limit:
            self.kept.append((number, line))

    def chunk(self, total: int) -> LogChunk:
        return chunk(list(self.kept), start=self.start, total=total)


def chunk(kept: list[tuple[int, str]], *, start: int | None, total: int) -> LogChunk:
    """The LogChunk of the numbered lines a window kept, `total` being the log's line count: one rule for every
    reader (in memory, streamed, or printed by window_script)."""
    lines = [line for _, line in kept]
    first = max(int(start or 0), 0)
    if start is None:
        first = max(total - len(lines), 0)
    elif kept:
        first = kept[0][0]
    return LogChunk(lines=lines, first_line=first, total_lines=max(total, first + len(lines)))


def window(lines: list[str], *, start: int | None, limit: int, offset: int = 0) -> LogChunk:
    """The Window of lines held in memory. `offset` is the position of lines[0] in the whole log (when older
    lines were dropped); a page that begins among dropped lines begins at lines[0]."""
    lo = max(max(int(start or 0), 0) - offset, 0)
    hi = len(lines)
    if start is None:
        lo = max(hi - limit, 0) if limit else hi  # only the tail can be kept: do not walk the rest
    else:
        start, hi = offset + lo, min(lo + limit, hi)
    win = Window(start=start, limit=limit)
    for i in range(lo, hi):
        win.take(offset + i, lines[i])
    return win.chunk(offset + len(lines))


def window_script(path: str, *, start: int | None, limit: int) -> str:
    """Shell that prints the log's line count and one window of it. `path` is a shell word, already quoted."""
    first = max(int(start or 0), 0)
    # wc -l misses a last line without a newline: count it too.
    count = f'n=$(wc -l < {path}); [ -s {path} ] && [ "$(tail -c1 {path} | wc -l)" -eq 0 ] && n=$((n+1)); '
    count += f'echo "{TOTAL}$n"'
    if not limit:
        body = "true"
    elif start is None:
        body = f"tail -n {limit} {path} | {CLIP_FILTER}"
    else:
        body = f"sed -n '{first + 1},{first + limit}p;{first + limit}q' {path} | {CLIP_FILTER}"
    return f"if [ ! -e {path} ]; then echo '{MISSING}'; exit 0; fi\n{count}\necho '{LINES}'\n{body}\ntrue"


def parse_window(out: str, *, start: int | None) -> LogChunk | None:
    """The window window_script printed; None when the answer is not one (the caller reports the backend)."""
    first = max(int(start or 0), 0)
    if out.lstrip().startswith(MISSING):
        return empty(start)
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
    if start is None:
        first = max(total - len(raw), 0)
    lines = [line if line.endswith(RAW_CUT) else clip(line) for line in raw]
    return chunk([(first + i, line) for i, line in enumerate(lines)], start=start, total=total)
