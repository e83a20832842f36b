"""Training progress from the job itself: the runner's marked log lines, read back into records and series.

The in-container runner follows TAO's status.json files and prints each record as one line
`[tao-progress] {json}` (entrypoint/runner.py: StatusFollower). Those lines reach the server through the job's
log on every platform; this module parses them (again treating them as untrusted job output: only known fields of
known types, bounded), keeps the latest record per job in memory, and turns lines into the per-epoch series that
job_metrics shows. Lines are always parsed AFTER redaction (service/logs.py), so nothing here sees a secret.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from tao_mcp.models import JobProgress, MetricSeries

MARK = "[tao-progress]"
MAX_KEYS = 32
STATES = ("STARTED", "RUNNING", "SUCCESS", "FAILURE", "SKIPPED")  # TAO's status logger
TEXT_CHARS = 200
# Metric names where a lower value is better; any other metric is taken as higher-is-better (mAP, accuracy, ...).
LOWER_IS_BETTER = ("loss", "error", "err", "wer", "cer", "mse", "mae", "rmse", "perplexity", "time", "lr")


@dataclass(frozen=True)
class Record:
    """One status.json record as the runner forwarded it."""

    status: str | None = None
    message: str | None = None
    epoch: int | None = None
    max_epoch: int | None = None
    eta: str | None = None
    time_per_epoch: str | None = None
    source: str = ""  # the results sub-folder its status.json was in ("" = the results dir itself)
    kpi: dict[str, float] = field(default_factory=dict)
    graphical: dict[str, float] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, float]:
        return {**self.kpi, **{k: v for k, v in self.graphical.items() if k not in self.kpi}}  # kpi first


def _text(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    text = "".join(c if c.isprintable() else " " for c in str(value)).strip()
    return text[:TEXT_CHARS] or None


def _count(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return None
    return int(value)


def _metrics(value: object) -> dict[str, float]:
    out: dict[str, float] = {}
    if not isinstance(value, dict):
        return out
    for key, item in value.items():
        name = _text(key)
        if name and not isinstance(item, bool) and isinstance(item, (int, float)) and math.isfinite(item):
            out[name[:64]] = float(item)
        if len(out) >= MAX_KEYS:
            break
    return out


def parse(line: str) -> Record | None:
    """A marked line -> Record; anything else (or a malformed record) -> None."""
    if not line.startswith(MARK):
        return None
    try:
        raw = json.loads(line[len(MARK) :])
    except ValueError:
        return None
    if not isinstance(raw, dict):
        return None
    status = (_text(raw.get("status")) or "").upper()
    return Record(
        status=status if status in STATES else None,
        message=_text(raw.get("message")),
        epoch=_count(raw.get("epoch")),
        max_epoch=_count(raw.get("max_epoch")),
        eta=_text(raw.get("eta")),
        time_per_epoch=_text(raw.get("time_per_epoch")),
        source=_text(raw.get("src")) or "",
        kpi=_metrics(raw.get("kpi")),
        graphical=_metrics(raw.get("graphical")),
    )


def is_marked(line: str) -> bool:
    return line.startswith(MARK)


def latest(lines: Iterable[str]) -> Record | None:
    """The newest record among the lines, merged with the newest epoch record before it: TAO's final SUCCESS
    record carries no epoch, and the answer should still say which epoch the run reached."""
    newest: Record | None = None
    with_epoch: Record | None = None
    for line in lines:
        record = parse(line)
        if record is None:
            continue
        newest = record
        if record.epoch is not None:
            with_epoch = record
    if newest is None or newest is with_epoch or with_epoch is None:
        return newest
    return Record(
        status=newest.status or with_epoch.status,
        message=newest.message or with_epoch.message,
        epoch=with_epoch.epoch,
        max_epoch=newest.max_epoch if newest.max_epoch is not None else with_epoch.max_epoch,
        eta=newest.eta,
        time_per_epoch=newest.time_per_epoch or with_epoch.time_per_epoch,
        source=newest.source,
        kpi=newest.kpi or with_epoch.kpi,
        graphical=newest.graphical or with_epoch.graphical,
    )


def percent(record: Record) -> float | None:
    if record.epoch is None or not record.max_epoch:
        return None
    return round(min(100.0, 100.0 * record.epoch / record.max_epoch), 1)


def summary(record: Record) -> JobProgress:
    return JobProgress(
        epoch=record.epoch,
        max_epoch=record.max_epoch,
        percent=percent(record),
        eta=record.eta,
        time_per_epoch=record.time_per_epoch,
        metrics=record.metrics,
        message=message(record),
        status=record.status,
    )


def _number(value: float) -> str:
    return f"{value:.4g}"


def message(record: Record, max_metrics: int = 4) -> str:
    """`epoch 7/50 — loss 0.412 — val_mAP 0.61 — eta 1:32:10` (kpi first, then graphical values)."""
    parts: list[str] = []
    if record.epoch is not None:
        parts.append(f"epoch {record.epoch}/{record.max_epoch}" if record.max_epoch else f"epoch {record.epoch}")
    parts += [f"{name} {_number(value)}" for name, value in list(record.metrics.items())[:max_metrics]]
    if record.eta:
        parts.append(f"eta {record.eta}")
    if not parts or record.status in ("SUCCESS", "FAILURE"):
        parts.append(" ".join(x for x in (record.status, record.message) if x) or "progress")
    return " — ".join(parts)[:300]


def lower_is_better(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered.replace("-", "_").split("_") or lowered.endswith(word) for word in LOWER_IS_BETTER)


def series(lines: Iterable[str]) -> dict[str, dict[int, float]]:
    """Every metric seen, per epoch (the last value of an epoch wins). Records without an epoch are skipped."""
    out: dict[str, dict[int, float]] = {}
    for line in lines:
        record = parse(line)
        if record is None or record.epoch is None:
            continue
        for name, value in record.metrics.items():
            out.setdefault(name, {})[record.epoch] = value
    return out


def describe(name: str, points: dict[int, float], last: int) -> MetricSeries:
    """min/max/last/best over every epoch seen; the values of the last `last` epochs."""
    epochs = sorted(points)
    lower = lower_is_better(name)
    best_epoch = (min if lower else max)(epochs, key=lambda e: points[e])
    shown = epochs[-last:]
    return MetricSeries(
        name=name,
        epochs=shown,
        values=[points[e] for e in shown],
        min=min(points.values()),
        max=max(points.values()),
        last=points[epochs[-1]],
        best=points[best_epoch],
        best_epoch=best_epoch,
        goal="min" if lower else "max",
    )


PROGRESS = "progress"  # the per-job fact (service/watch.py) holding the latest Reading


@dataclass(frozen=True)
class Reading:
    """What the server last read of a job's progress: its newest record (kept from an earlier read when the tail
    read now has none), and whether the job had ended when it was read (then it will not change)."""

    record: Record | None
    final: bool


__all__ = [
    "MARK",
    "PROGRESS",
    "Reading",
    "Record",
    "describe",
    "is_marked",
    "latest",
    "message",
    "parse",
    "series",
    "summary",
]
