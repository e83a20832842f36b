"""A job's validation metric, read the way TAO writes it: status.json records whose `kpi` holds the metric.

The records reach the server through the job's log: the runner forwards status.json records as marked lines
(`[tao-progress] {json}`, service/progress.py), and a container may print them as they are. Lines come from the
redacted log (job_logs with grep, which prefixes a line number); service/progress.py parses both forms, so only
a finite number under the metric's name counts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from tao_mcp.service import progress

LINE_NUMBER = re.compile(r"^\d+: ")


def metric_from_lines(lines: Iterable[str], name: str) -> float | None:
    """The last value of `name` in the kpi of a status record among `lines` (None when there is none)."""
    found: float | None = None
    for line in lines:
        text = LINE_NUMBER.sub("", line, count=1)
        if not progress.is_marked(text):
            start = text.find("{")
            if start < 0:
                continue
            text = progress.MARK + text[start:]  # a record printed as is reads like a forwarded one
        record = progress.parse(text)
        if record is not None and name in record.kpi:
            found = record.kpi[name]
    return found
