"""Lepton job, replica and event objects (API JSON dicts) -> Observation, replica view, failure evidence. Pure."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from tao_mcp.drivers.base import Evidence, Observation
from tao_mcp.states import TERMINAL, JobState

PENDING_STATES = {"Queueing", "Awaiting", "Starting", "Restarting", "PendingRetry"}
CANCELING_STATES = {"Stopping", "Terminating", "Deleting"}
CANCELED_STATES = {"Stopped", "Deleted"}


def to_epoch(value: Any) -> float | None:
    """Lepton times come as epoch seconds, ms or ns, or ISO text."""
    if value in (None, "", 0):
        return None
    if isinstance(value, int | float) or (isinstance(value, str) and re.fullmatch(r"\d+(?:\.\d+)?", value)):
        number = float(value)
    elif isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    else:
        return None
    while number > 1e11:  # ms, us, ns -> s
        number /= 1000
    return number


def counts(status: Mapping[str, Any]) -> tuple[int, int, int, int]:
    """(ready, active, succeeded, failed) replica counts; missing or malformed counts are 0."""

    def get(key: str) -> int:
        try:
            return int(status.get(key) or 0)
        except (TypeError, ValueError):
            return 0

    return get("ready"), get("active"), get("succeeded"), get("failed")


def map_state(job: Mapping[str, Any], *, canceled_by_us: bool = False) -> Observation | None:
    """One Lepton job object -> an Observation (docs/platforms.md, Lepton table; None: UNK, kept for a grace period)."""
    status = job.get("status") or {}
    spec = job.get("spec") or {}
    state = str(status.get("state") or "UNK")
    ready, active, succeeded, failed = counts(status)
    completions = int(spec.get("completions") or 1)
    started = to_epoch(status.get("start_time"))
    for entry in status.get("job_history") or []:
        if started is None and isinstance(entry, Mapping) and entry.get("state") == "Running":
            started = to_epoch(entry.get("time"))
    ended = to_epoch(status.get("completion_time"))
    summary = f"ready {ready}/{active}, succeeded {succeeded}, failed {failed}"
    if state in PENDING_STATES:
        return Observation(JobState.PENDING, state, f"Lepton {state}", pending_reason=state)
    if state == "Running":
        if active and ready < active:
            return Observation(
                JobState.PENDING,
                state,
                f"starting workers {ready}/{active}",
                pending_reason=f"starting workers {ready}/{active}",
            )
        return Observation(JobState.RUNNING, state, f"Lepton Running ({summary})", started_at=started)
    if state == "Completed":
        return Observation(JobState.COMPLETE, state, f"Lepton Completed ({summary})", exit_code=0, ended_at=ended)
    if state == "Failed":
        return Observation(JobState.ERROR, state, f"Lepton Failed ({summary})", ended_at=ended)
    if state in CANCELING_STATES | CANCELED_STATES:
        who = "stopped by cancel_job" if canceled_by_us else "stopped outside tao-mcp (unless cancel_job asked)"
        if state in CANCELING_STATES:
            return Observation(JobState.CANCELING, state, f"Lepton {state}: {who}")
        return Observation(JobState.CANCELED, state, f"Lepton {state}: {who}", ended_at=ended)
    if state == "Archived":
        if failed and failed > 0 and succeeded < completions:
            return Observation(
                JobState.ERROR, "Archived/Failed", f"Lepton Archived after failing ({summary})", ended_at=ended
            )
        if succeeded >= completions:
            return Observation(
                JobState.COMPLETE,
                "Archived/Completed",
                f"Lepton Archived after completing ({summary})",
                exit_code=0,
                ended_at=ended,
            )
        for entry in reversed(status.get("job_history") or []):
            earlier = entry.get("state") if isinstance(entry, Mapping) else None
            if earlier and earlier not in ("Archived", "UNK"):
                inner = map_state({**job, "status": {**status, "state": earlier}}, canceled_by_us=canceled_by_us)
                if inner is not None and inner.status in TERMINAL:
                    inner.raw_state = f"Archived/{earlier}"
                    return inner
        return Observation(JobState.UNKNOWN, "Archived", f"Lepton Archived without an outcome ({summary})")
    if state == "UNK":
        return None
    return Observation(JobState.UNKNOWN, state, f"Lepton reports an unfamiliar state {state!r} ({summary})")


def human_age(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds}s" if seconds < 120 else f"{seconds // 60}m"


def replicas(answer: Any) -> list[dict[str, Any]]:
    """`GET /jobs/{id}/replicas` -> [{id, node, node_group, phase, readiness_issue: {reason, message} | None}]."""
    items = answer if isinstance(answer, list) else (answer or {}).get("replicas") or []
    out = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        status = item.get("status") or {}
        node = status.get("node") or {}
        issue = status.get("readiness_issue") or {}
        out.append(
            {
                "id": (item.get("metadata") or {}).get("id"),
                "node": node.get("name") or node.get("id"),
                "node_group": node.get("node_group_id"),
                "phase": status.get("phase") or status.get("state"),
                "readiness_issue": (
                    {"reason": issue.get("reason"), "message": issue.get("message") or ""}
                    if issue.get("reason")
                    else None
                ),
            }
        )
    return out


def job_evidence(job: Mapping[str, Any] | None) -> list[Evidence]:
    """The job's state, replica counts and recent state history."""
    status = (job or {}).get("status") or {}
    ready, active, succeeded, failed = counts(status)
    evidence = [
        Evidence(
            "state",
            f"Lepton state {status.get('state', 'UNK')} (ready {ready}/{active}, succeeded {succeeded}, "
            f"failed {failed})",
        )
    ]
    history = [h.get("state") for h in status.get("job_history") or [] if isinstance(h, Mapping)]
    if history:
        evidence.append(Evidence("state", "Lepton state history: " + " -> ".join(str(h) for h in history[-8:])))
    return evidence


def event_evidence(answer: Any) -> list[Evidence]:
    """The last dozen events of `GET /jobs/{id}/events`, repeated ones with their count."""
    events = answer if isinstance(answer, list) else (answer or {}).get("events") or []
    evidence = []
    for event in events[-12:]:
        if not isinstance(event, Mapping):
            continue
        count = event.get("count")
        text = f"{event.get('type', 'Event')} {event.get('reason', '')}".strip()
        text += f": {event['message']}" if event.get("message") else ""
        evidence.append(Evidence("event", text + (f" (x{count})" if count and count != 1 else "")))
    return evidence


def replica_evidence(views: list[dict[str, Any]]) -> list[Evidence]:
    """One line per replica with a readiness issue (where it runs, the reason and message)."""
    evidence = []
    for replica in views:
        issue = replica.get("readiness_issue")
        if issue:
            where = f"replica {replica['id']}" + (f" on {replica['node']}" if replica.get("node") else "")
            evidence.append(Evidence("replica", f"{where}: {issue['reason']}: {issue['message']}"))
    return evidence
