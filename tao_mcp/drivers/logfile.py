"""Raw log windows every driver shares: the same tail / page semantics whatever the platform, read backward from
the end so that a window's cost does not depend on the log's size.

- Log FILES read through a remote shell (SLURM over SSH, Brev over `brev exec`): `read_file`. Positions are byte
  offsets. The shell takes the file's size, then reads one byte range of it (`tail -c +N | head -c M`: a seek,
  never a scan from the start) and keeps the lines the window needs (`tail -n` / `head -n`), base64 so that byte
  offsets stay exact whatever the bytes. No `wc -l`, no `sed` from line 1.
- Log STREAMS (Docker, Kubernetes, Lepton): `read_stream` over the platform's "last n lines" query (Docker
  `logs(tail=n)`, Kubernetes `tail_lines`, Lepton a backward query with a limit). Positions are timestamps (ns)
  plus the lines taken at that instant. A page after or before a position reads a tail that reaches it (growing
  4x per try, at most MAX_STREAM_LINES); Lepton's backward query takes an end time, so it reads only that.

Line numbers (job_logs(line_numbers=true)) are counted, never guessed: a read that sees the log from its start
or up to its end tells the first shown line's number for free (LogChunk.number / from_end); otherwise a log file
counts newlines (`line_number`: `wc -l` over at most a bound of bytes, before the line or after it).

A window starts on a line start: a range that begins inside a line drops that partial line (so no fragment of a
secret is shown), a line longer than a window is cut (RAW_CUT) and the page after it begins on the next line.
Windows are raw: no driver filters a log (grep runs in the service, on redacted text only).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Awaitable, Callable
from datetime import datetime

from tao_mcp.drivers.base import RAW_CUT, RAW_LINE_CHARS, LogChunk, LogMark, LogMode

MISSING = "@@log:missing"
RANGE = "@@log:range="
TAIL, CTX, HEAD = "@@log:tail", "@@log:ctx", "@@log:head"
NUMBER = "@@log:number="
FIRST_SPAN = 256 * 1024  # bytes a tail reads first; 16x more while it finds too few lines
MAX_SPAN = 64 * 1024 * 1024  # no window covers more (grep reads its window in spans of this size or less)
CONTEXT_BYTES = 256 * 1024  # a page after a position reads this much before it, for its context lines
MAX_STREAM_LINES = 200_000  # the longest tail a stream page reads to reach its position
ALL_LINES = 10**9
# A shell filter that does what `clip` does (awk: portable; counts what the platform's awk counts).
CLIP_FILTER = f"awk -v n={RAW_LINE_CHARS} '{{ if (length($0) > n) print substr($0, 1, n) \"{RAW_CUT}\"; else print }}'"

Row = tuple[int, str]  # (timestamp ns, raw line) of a log stream
TailQuery = Callable[[int, int | None], Awaitable[list[Row]]]  # (n, until ns or None) -> last n rows, oldest first


def clamp(limit: int) -> int:
    return max(0, min(int(limit), ALL_LINES))


def clip(line: str) -> str:
    """A raw line bounded to RAW_LINE_CHARS, marked when cut (the service drops the cut end before redacting)."""
    return line if len(line) <= RAW_LINE_CHARS else line[:RAW_LINE_CHARS] + RAW_CUT


def decode(raw: bytes) -> str:
    return clip(raw.decode("utf-8", errors="replace").rstrip("\r"))


def empty(at: LogMark | None = None) -> LogChunk:
    """No log yet (the job has not started writing one): not an error."""
    mark = at or LogMark(0)
    return LogChunk(lines=[], marks=[], begin=mark, end=mark, older=False, newer=False)


def window_of(lines: list[str]) -> LogChunk:
    """A whole small log held in memory as one window (test and benchmark drivers), positions = line numbers."""
    marks = [LogMark(i) for i in range(len(lines))]
    end = LogMark(len(lines))
    return LogChunk(lines=lines, marks=marks, begin=marks[0] if marks else end, end=end, older=False, newer=False)


# ---- log files ------------------------------------------------------------------------------------------------


def file_script(path: str, *, mode: LogMode, at: int, keep: int, context: int, span: int) -> str:
    """Shell printing the file's size, the byte range read, and base64 of the lines kept from it. `path` is a
    shell word, already quoted. tail/before: the last `keep` lines of [hi - span, hi); after: the last `context`
    lines of [at - CONTEXT_BYTES, at) and the first `keep` lines of [at, at + span)."""
    lines = [
        f"f={path}",
        f"if [ ! -e \"$f\" ]; then echo '{MISSING}'; exit 0; fi",
        'size=$(stat -c %s "$f" 2>/dev/null || wc -c < "$f")',
        'range() { tail -c +$(($1 + 1)) "$f" | head -c $(($2 - $1)); }',
    ]
    if mode == "after":
        lines += [
            f"a=$(({at} < size ? {at} : size)); lo=$((a > {CONTEXT_BYTES} ? a - {CONTEXT_BYTES} : 0))",
            f"hi=$((size - a > {span} ? a + {span} : size))",
            f'echo "{RANGE}$size $lo $a $hi"',
            f"echo '{CTX}'; range $lo $a | tail -n {max(context, 1)} | base64 -w0; echo",
            f"echo '{HEAD}'; range $a $hi | head -n {keep + 1} | base64 -w0; echo",
        ]
    else:
        hi = "$size" if mode == "tail" else f"$(({at} < size ? {at} : size))"
        lines += [
            f"hi={hi}; lo=$((hi > {span} ? hi - {span} : 0))",
            f'echo "{RANGE}$size $lo $hi $hi"',
            f"echo '{TAIL}'; range $lo $hi | tail -n {keep} | base64 -w0; echo",
        ]
    return "\n".join(lines) + "\ntrue"


def _sections(out: str) -> dict[str, str] | None:
    found: dict[str, str] = {}
    rows = out.split("\n")
    for i, row in enumerate(rows):
        if row.startswith(RANGE):
            found["range"] = row[len(RANGE) :]
        elif row in (TAIL, CTX, HEAD):
            found[row] = rows[i + 1] if i + 1 < len(rows) else ""
    return found if "range" in found else None


def _b64(text: str) -> bytes:
    return base64.b64decode(text.strip(), validate=True) if text.strip() else b""


def _split(data: bytes, start: int) -> list[tuple[int, bytes, bool]]:
    """(offset, bytes, ended by a newline) of each line of `data`, which begins at byte `start` of the file."""
    out = []
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        end = len(data) if nl < 0 else nl
        out.append((start + pos, data[pos:end], nl >= 0))
        pos = end + 1
    return out


def parse_file(out: str, *, mode: LogMode, limit: int, context: int) -> LogChunk | None:
    """The window file_script printed; None when the answer is not one (the caller reports the backend)."""
    if out.lstrip().startswith(MISSING):
        return empty()
    found = _sections(out)
    try:
        size, lo, a, hi = (int(x) for x in found["range"].split()) if found else (0, 0, 0, 0)
        parts = {k: _b64(v) for k, v in (found or {}).items() if k != "range"}
    except (ValueError, binascii.Error):
        return None
    if found is None or not parts:
        return None
    if mode == "after":
        return _after(parts.get(CTX, b""), parts.get(HEAD, b""), size=size, lo=lo, a=a, hi=hi, limit=limit)
    data = parts.get(TAIL, b"")
    rows = _split(data, hi - len(data))
    if rows and rows[0][0] == lo and lo > 0:
        rows = rows[1:]  # the range began inside this line: not shown (it may hold the end of a secret)
    end = hi
    if rows and not rows[-1][2]:
        end = rows[-1][0]  # a last line still being written: shown, and shown again whole by the next page
    rows = rows[-(limit + context) :] if limit + context else []
    context = max(len(rows) - limit, 0)
    chunk = _chunk(rows, context=context, end=end, newer=hi < size, scanned=hi - lo)
    if hi == size and len(rows) > context:  # the window reaches the end: its lines are the last ones
        chunk.from_end = -(len(rows) - context)
    return chunk


def _after(ctx: bytes, head: bytes, *, size: int, lo: int, a: int, hi: int, limit: int) -> LogChunk:
    before = _split(ctx, a - len(ctx))
    if before and before[0][0] == lo and lo > 0:
        before = before[1:]
    rows = _split(head, a)
    if a > 0 and not ctx.endswith(b"\n"):
        # `a` is inside a line (the page before cut a line longer than its window): its rest is not shown
        before = before[:-1]
        rows = rows[1:] if rows and rows[0][2] else []
        if not rows:
            return _chunk([], context=0, end=LogMark(hi), newer=hi < size, scanned=hi - lo, older=True)
    end = rows[-1][0] + len(rows[-1][1]) + 1 if rows and rows[-1][2] else (rows[-1][0] if rows else a)
    if rows and not rows[-1][2] and hi < size:
        if len(rows) == 1:  # one line longer than the window: its head, cut; the next page starts after it
            rows = [(rows[0][0], rows[0][1] + RAW_CUT.encode(), True)]
            end = hi
        else:  # the window ended inside this line: the next page reads it whole
            rows = rows[:-1]
    newer = hi < size or len(rows) > limit
    if len(rows) > limit:
        rows = rows[:limit]
        end = rows[-1][0] + len(rows[-1][1]) + 1 if rows else a
    return _chunk(before + rows, context=len(before), end=LogMark(end), newer=newer, scanned=hi - lo, begin=a)


def _chunk(
    rows: list[tuple[int, bytes, bool]],
    *,
    context: int,
    end: int | LogMark,
    newer: bool,
    scanned: int,
    begin: int | None = None,
    older: bool | None = None,
) -> LogChunk:
    end_mark = end if isinstance(end, LogMark) else LogMark(end)
    shown = rows[context:]
    first = shown[0][0] if shown else (begin if begin is not None else end_mark.at)
    lines = [decode(raw) for _, raw, _ in rows]
    return LogChunk(
        lines=lines,
        marks=[LogMark(offset) for offset, _, _ in rows],
        begin=LogMark(first),
        end=end_mark,
        older=first > 0 if older is None else older,
        newer=newer,
        context=context,
        scanned=scanned,
    )


async def read_file(
    run: Callable[[str], Awaitable[str | None]],
    path: str,
    *,
    mode: LogMode,
    at: LogMark | None,
    limit: int,
    context: int,
    max_bytes: int,
) -> LogChunk | None:
    """One window of a log file through `run` (a remote shell: its stdout, None when it failed). A tail reads
    FIRST_SPAN bytes first and 16x more while it finds too few lines, up to max_bytes."""
    limit, context = clamp(limit), clamp(context)
    offset = at.at if at is not None else 0
    cap = max(min(int(max_bytes), MAX_SPAN), 1)
    span = cap if mode == "after" else min(FIRST_SPAN, cap)
    while True:
        keep = limit if mode == "after" else min(limit + context, ALL_LINES)
        out = await run(file_script(path, mode=mode, at=offset, keep=keep, context=context, span=span))
        chunk = None if out is None else parse_file(out, mode=mode, limit=limit, context=context)
        if chunk is None or mode == "after" or span >= cap or len(chunk.lines) >= limit + context:
            return chunk
        if not chunk.older or chunk.scanned < span:  # the whole range before it was read: nothing older
            return chunk
        span = min(span * 16, cap)


def number_script(path: str, at: int, bound: int) -> str:
    """Shell printing the number of the line beginning at byte `at` (see HasLineCount.line_number): newlines
    before it (`head -c at | wc -l`) when at <= bound, else newlines after it when at most `bound` bytes follow,
    else '?'. The last line may still be unended: it counts as a line."""
    if at <= bound:
        count = f'echo "{NUMBER}$(( $(head -c {at} "$f" | wc -l) + 1 ))"'
    else:
        count = "\n".join(
            [
                f'if [ $((size - {at})) -le {bound} ] && [ {at} -lt "$size" ]; then',
                f'  n=$(tail -c +$(({at} + 1)) "$f" | head -c $((size - {at})) | wc -l)',
                '  ended=$(tail -c +$size "$f" | head -c 1 | wc -l)',
                f'  echo "{NUMBER}-$((n + 1 - ended))"',
                f"else echo '{NUMBER}?'; fi",
            ]
        )
    head = [f"f={path}", f"if [ ! -e \"$f\" ]; then echo '{NUMBER}?'; exit 0; fi"]
    return "\n".join([*head, 'size=$(stat -c %s "$f" 2>/dev/null || wc -c < "$f")', count, "true"])


def parse_number(out: str | None) -> int | None:
    for row in (out or "").split("\n"):
        if row.startswith(NUMBER):
            try:
                return int(row[len(NUMBER) :]) or None
            except ValueError:
                return None
    return None


async def line_number(run: Callable[[str], Awaitable[str | None]], path: str, at: LogMark, bound: int) -> int | None:
    """The number of the log file's line beginning at `at` (a line start): 1-based from the start, or negative
    back from the end, counting at most `bound` bytes; None when neither is within the bound (or the read
    failed: a number is shown only when it was counted)."""
    return parse_number(await run(number_script(path, at.at, bound)))


# ---- log streams ----------------------------------------------------------------------------------------------


_STAMP = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z ?")


def stamped(raw: bytes) -> Row:
    """A line read with its timestamp (Docker, Kubernetes: `2026-01-02T03:04:05.123456789Z text`) -> Row."""
    match = _STAMP.match(raw)
    if match is None:
        return 0, decode(raw)
    seconds = int(datetime.fromisoformat(match[1].decode() + "+00:00").timestamp())
    return seconds * 10**9 + int((match[2] or b"0").ljust(9, b"0")), decode(raw[match.end() :])


def split_stamped(data: bytes) -> list[Row]:
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [stamped(line) for line in lines]


def marked(rows: list[Row]) -> list[tuple[LogMark, str]]:
    """Rows in log order with their marks (lines sharing a timestamp are told apart by their rank)."""
    out: list[tuple[LogMark, str]] = []
    last, rank = None, 0
    for ts, line in sorted(rows, key=lambda r: r[0]):
        rank = rank + 1 if ts == last else 0
        last = ts
        out.append((LogMark(ts, rank), line))
    return out


async def read_stream(
    tail: TailQuery, *, mode: LogMode, at: LogMark | None, limit: int, context: int, until_supported: bool = False
) -> LogChunk:
    """One window of a log stream from its "last n lines" query. `until_supported`: the query takes an end time
    (Lepton), so a page before a position reads only what it needs."""
    limit, context = clamp(limit), clamp(context)
    want = limit + context
    n = want + 1
    while True:
        asked = n + (at.skip if at else 0)
        until = at.at if (mode == "before" and until_supported and at is not None) else None
        rows = marked(await tail(asked, until))
        whole = len(rows) < asked  # the query had no more: these are all the lines (up to `until`)
        if not whole:  # lines sharing the oldest timestamp may have been cut: their ranks are unknown
            rows = [r for r in rows if r[0].at != rows[0][0].at]
            if not rows and n < MAX_STREAM_LINES:
                n = min(n * 4, MAX_STREAM_LINES)
                continue
        # rows are the log's last lines (up to `until` when given): a row's number back from the end is known
        to_end = None if until is not None else len(rows)
        if mode == "tail" or at is None:
            return _stream_chunk(
                rows, 0, len(rows), limit=limit, context=context, whole=whole, end=None, newer=False, to_end=to_end
            )
        if mode == "before":
            older = [r for r in rows if r[0] < at]
            if len(older) > want or whole or until is not None or n >= MAX_STREAM_LINES:
                return _stream_chunk(
                    older, 0, len(older), limit=limit, context=context, whole=whole, end=at, newer=True, to_end=to_end
                )
        else:
            first = next((i for i, r in enumerate(rows) if r[0] >= at), len(rows))
            if first > context or whole or n >= MAX_STREAM_LINES:
                # at MAX_STREAM_LINES without reaching `at`: the page starts at the oldest line within reach
                stop = min(first + limit, len(rows))
                end = None if stop > first else at
                newer = stop < len(rows)
                return _stream_chunk(
                    rows, first, stop, limit=limit, context=context, whole=whole, end=end, newer=newer, to_end=to_end
                )
        n = min(n * 4, MAX_STREAM_LINES)


def _stream_chunk(
    rows: list[tuple[LogMark, str]],
    first: int,
    stop: int,
    *,
    limit: int,
    context: int,
    whole: bool,
    end: LogMark | None,
    newer: bool,
    to_end: int | None,
) -> LogChunk:
    """The window rows[first:stop] (its last `limit` lines) with up to `context` rows before it. `whole`: rows
    begin at the log's start; `to_end`: rows[to_end] would be the line after the log's last (None: unknown)."""
    first = max(first, stop - limit)
    lo = max(first - context, 0)
    window = rows[lo:stop]
    shown = rows[first:stop]
    if shown and (newer or end is None):
        last = shown[-1][0]
        end = LogMark(last.at, last.skip + 1)
    end = end or LogMark(0)
    return LogChunk(
        lines=[clip(line) for _, line in window],
        marks=[mark for mark, _ in window],
        begin=shown[0][0] if shown else end,
        end=end,
        older=first > 0 or not whole,
        newer=newer,
        context=first - lo,
        scanned=sum(len(line) + 1 for _, line in shown),
        number=first + 1 if whole and shown else None,
        from_end=first - to_end if to_end is not None and shown else None,
    )
