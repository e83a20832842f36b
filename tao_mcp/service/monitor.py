"""Long-running monitoring as the TAO workflow asks for it: a status update every N minutes until the job ends.

submit_job(monitor={...}) records the choice with the job (defaults: the skill bank's intake defaults);
wait_for_job(until="update") returns at the job's next interval boundary (counted from its submission, so every
client and every server process agrees where the boundaries are) or at a state change, whichever comes first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from tao_mcp.errors import TaoError
from tao_mcp.service.metadata.platforms import intake_defaults

MIN_INTERVAL_MINUTES = 1.0
MAX_INTERVAL_MINUTES = 24 * 60.0


def monitor_choice(value: Mapping[str, Any] | None, settings: Mapping[str, str]) -> dict[str, Any]:
    """The monitoring recorded with a job: {"enabled": bool, "interval_minutes": float}."""
    defaults = intake_defaults(settings)
    out: dict[str, Any] = {
        "enabled": bool(defaults.get("long_running_enabled", True)),
        "interval_minutes": float(defaults.get("status_interval_minutes") or 5),
    }
    unknown = sorted(set(value or {}) - set(out))
    if unknown:
        raise TaoError(
            "E_BAD_INPUT",
            f"monitor has unknown key(s) {', '.join(unknown)}",
            "give monitor={'enabled': true, 'interval_minutes': 5}",
        )
    for key, item in (value or {}).items():
        if key == "enabled" and not isinstance(item, bool):
            raise TaoError("E_BAD_INPUT", "monitor.enabled must be true or false", "e.g. monitor={'enabled': true}")
        if key == "interval_minutes":
            if isinstance(item, bool) or not isinstance(item, int | float) or not math.isfinite(item):
                raise TaoError("E_BAD_INPUT", "monitor.interval_minutes must be a number", "e.g. 5")
            if not MIN_INTERVAL_MINUTES <= item <= MAX_INTERVAL_MINUTES:
                raise TaoError(
                    "E_BAD_INPUT",
                    f"monitor.interval_minutes {item} is outside {MIN_INTERVAL_MINUTES:g}..{MAX_INTERVAL_MINUTES:g}",
                    "give a status interval between 1 minute and 1 day (the workflow's default is 5)",
                )
            item = float(item)
        out[key] = item
    return out


def interval_s(request: Mapping[str, Any], settings: Mapping[str, str]) -> float:
    """The job's status interval in seconds: as recorded at submit, else the intake default (older records)."""
    recorded = request.get("monitor")
    choice = recorded if isinstance(recorded, dict) else monitor_choice(None, settings)
    return float(choice.get("interval_minutes") or 5) * 60.0


class UpdateClock:
    """Which interval boundary of each job was last reported, so a boundary that passes between two
    wait_for_job calls is still reported (by the next call, at once) and never twice. Memory only: after a restart
    the first call reports at the next boundary."""

    def __init__(self) -> None:
        self._reported: dict[str, int] = {}

    def seconds_left(self, job_id: str, anchor: float, interval: float, now: float) -> float:
        """Seconds until the boundary to report: 0 when one passed since the last report."""
        passed = int((now - anchor) // interval) if now > anchor else 0
        reported = self._reported.setdefault(job_id, passed)
        if passed > reported:
            return 0.0
        return anchor + (passed + 1) * interval - now

    def reported(self, job_id: str, anchor: float, interval: float, now: float) -> None:
        self._reported[job_id] = int((now - anchor) // interval) if now > anchor else 0
