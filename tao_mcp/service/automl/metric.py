"""A job's validation metric, read the way TAO writes it: status.json records whose `kpi` holds the metric.

The records reach the server through the job's log: the runner forwards status.json records as marked lines
(`[tao-progress] {json}`), and a container may print them as they are. Lines come from the redacted log (job_logs
with grep, which may prefix a line number); only a finite number under the metric's name counts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable


def _record(line: str) -> dict[str, object] | None:
    start = line.find("{")
    if start < 0:
        return None
    try:
        value = json.loads(line[start:])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def metric_from_lines(lines: Iterable[str], name: str) -> float | None:
    """The last finite value of `name` in the kpi of a status record among `lines` (None when there is none)."""
    found: float | None = None
    for line in lines:
        record = _record(line)
        kpi = record.get("kpi") if record else None
        value = kpi.get(name) if isinstance(kpi, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            found = float(value)
    return found
