"""job_metrics: a job's per-epoch metric series, rebuilt from its log (the runner's [tao-progress] lines), so it works
for running and finished jobs and after a server restart. Reads are bounded: the log's tail first, then older windows
backwards, at most MAX_WINDOWS of them; a longer log answers with its latest epochs and complete=false."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from tao_mcp.errors import TaoError
from tao_mcp.models import JobMetrics
from tao_mcp.service import logs
from tao_mcp.service import progress as training
from tao_mcp.service.chart import MAX_PANELS, line_chart
from tao_mcp.service.store import JobRecord

if TYPE_CHECKING:
    from tao_mcp.service.jobs import JobService

WINDOW_LINES = 4880  # one bounded read (with its redaction context)
MAX_WINDOWS = 8  # ~39k log lines at most per call
DEFAULT_POINTS = 100  # epochs per series in the answer (min/max/best cover every epoch)
MAX_SERIES = 16
SERIES_FACT = "metrics"  # the per-job fact (service/watch.py): (marked lines, complete, lines read, final)
RUNNING_MAX_AGE_S = 10.0


async def marked_lines(jobs: JobService, record: JobRecord) -> tuple[list[str], bool, int, bool]:
    """The job's [tao-progress] lines (redacted), oldest first: (lines, complete, log lines read, final)."""
    driver = await jobs.drivers.get(record.platform)
    window = await logs.read(driver, record.ref(), jobs.redactor, limit=WINDOW_LINES)
    parts = [[line for line in window.lines if training.is_marked(line)]]
    read, older, begin = len(window.lines), window.older, window.begin
    while older and len(parts) < MAX_WINDOWS:  # older windows by position: backward from the tail's first line
        prev = await logs.read(driver, record.ref(), jobs.redactor, mode="before", at=begin, limit=WINDOW_LINES)
        if not prev.lines:
            break
        parts.append([line for line in prev.lines if training.is_marked(line)])
        read, older, begin = read + len(prev.lines), prev.older, prev.begin
    return [line for part in reversed(parts) for line in part], not older, read, record.terminal


async def job_metrics(
    jobs: JobService, job_id: str, names: list[str] | None, last: int | None
) -> tuple[JobMetrics, bytes | None]:
    record = jobs.record(job_id)
    if record.backend_id is None and not record.terminal:
        record, _ = await jobs.current(record)
    if record.backend_id is None:
        return empty(record, "the job has not reached the backend yet"), None
    known = jobs.watches.peek(job_id, SERIES_FACT)
    max_age = float("inf") if known is not None and known.value[3] else (0 if record.terminal else RUNNING_MAX_AGE_S)
    lines, complete, read, _ = await jobs.watches.fact(job_id, SERIES_FACT, max_age, lambda: marked_lines(jobs, record))
    points = training.series(lines)
    available = list(points)
    chosen = names or available[:MAX_SERIES]
    unknown = [n for n in chosen if n not in points]
    if unknown and available:
        raise TaoError(
            "E_BAD_INPUT",
            f"job {job_id} reported no metric named {', '.join(unknown)}",
            f"choose among: {', '.join(available[:40])}",
        )
    if not available:
        why = "no training progress in its log yet" if not record.terminal else "it reported no training progress"
        return empty(record, why, read, complete), None
    series = [training.describe(name, points[name], last or DEFAULT_POINTS) for name in chosen[:MAX_SERIES]]
    drawn = {s.name: (s.epochs, s.values) for s in series[:MAX_PANELS]}
    png = await anyio.to_thread.run_sync(line_chart, f"job {job_id} ({record.status})", drawn)
    more = "" if complete else "; the log is longer than one bounded read: only its latest epochs are shown"
    return (
        JobMetrics(
            job_id=job_id,
            status=record.status,
            series=series,
            available=available,
            chart=True,
            lines_read=read,
            complete=complete,
            next=f"job_metrics(job_id='{job_id}', metrics=[...]) to chart other metrics{more}",
        ),
        png,
    )


def empty(record: JobRecord, why: str, read: int = 0, complete: bool = True) -> JobMetrics:
    hint = f"wait_for_job(job_id='{record.job_id}') and ask again" if not record.terminal else "job_logs for its output"
    return JobMetrics(
        job_id=record.job_id,
        status=record.status,
        series=[],
        available=[],
        chart=False,
        lines_read=read,
        complete=complete,
        next=f"no metrics: {why}; {hint}",
    )
