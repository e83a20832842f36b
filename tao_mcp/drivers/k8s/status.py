"""Kubernetes Job + Pod objects (API JSON dicts) -> Observation, failure evidence, replica view. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from tao_mcp.drivers.base import Evidence, Observation
from tao_mcp.drivers.k8s.manifest import CONTAINER
from tao_mcp.states import JobState

NOT_FOUND_MESSAGE = "Job not found (deleted outside tao-mcp or TTL-collected)"
# Waiting reasons that are the job's problem (not the normal ContainerCreating / PodInitializing).
PROBLEM_WAITING = (
    "ImagePullBackOff",
    "ErrImagePull",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "CrashLoopBackOff",
)
WARNING_EVENTS = (
    "FailedScheduling",
    "Evicted",
    "BackOff",
    "Failed",
    "FailedMount",
    "FailedAttachVolume",
    "OOMKilling",
    "Preempted",
    "DeadlineExceeded",
    "BackoffLimitExceeded",
    "FailedCreate",
    "NodeNotReady",
)
MAX_TEXT = 400


def ts(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _clip(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return cond
    return None


def pod_index(pod: dict[str, Any]) -> int | None:
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    value = annotations.get("batch.kubernetes.io/job-completion-index")
    return int(value) if value is not None and str(value).isdigit() else None


def sort_pods(pods: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    def key(pod: dict[str, Any]) -> tuple[int, str, str]:
        meta = pod.get("metadata") or {}
        index = pod_index(pod)
        return (index if index is not None else -1, meta.get("creationTimestamp") or "", meta.get("name") or "")

    return sorted(pods, key=key)


def _statuses(pod: dict[str, Any]) -> list[dict[str, Any]]:
    status = pod.get("status") or {}
    return list(status.get("initContainerStatuses") or []) + list(status.get("containerStatuses") or [])


def _main_status(pod: dict[str, Any]) -> dict[str, Any] | None:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    for item in statuses:
        if item.get("name") == CONTAINER:
            return item
    return statuses[0] if statuses else None


def terminated(pod: dict[str, Any]) -> dict[str, Any] | None:
    """The main container's terminated state (current, else the last one)."""
    main = _main_status(pod)
    if not main:
        return None
    return (main.get("state") or {}).get("terminated") or (main.get("lastState") or {}).get("terminated")


def pod_issue(pod: dict[str, Any]) -> tuple[str, str] | None:
    """Why a pod is not running: (reason, message) from its conditions and container waiting states."""
    status = pod.get("status") or {}
    if status.get("reason") in ("Evicted", "NodeLost", "Preempting", "OutOfcpu", "OutOfmemory", "NodeAffinity"):
        return status["reason"], status.get("message") or ""
    for item in _statuses(pod):
        waiting = (item.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in PROBLEM_WAITING:
            message = waiting.get("message") or ""
            if waiting["reason"] in ("ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull", "InvalidImageName"):
                image = item.get("image") or ""
                if image and image not in message:
                    message = f'image "{image}": {message}'.rstrip(": ")
            return waiting["reason"], message
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return cond.get("reason") or "Unschedulable", cond.get("message") or ""
    for item in _statuses(pod):
        waiting = (item.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            return waiting["reason"], waiting.get("message") or ""
    if status.get("phase") == "Pending":
        return "Pending", "waiting for the kubelet to start the pod" if status.get("hostIPs") or (
            pod.get("spec") or {}
        ).get("nodeName") else "waiting to be scheduled"
    return None


def _reason_text(reason: str, message: str) -> str:
    return _clip(f"{reason}: {message}" if message else reason)


def _containers_started(pods: list[dict[str, Any]]) -> float | None:
    """When the job's first container started running (not when the Job object was created)."""
    times = []
    for pod in pods:
        main = _main_status(pod) or {}
        for state in (main.get("state") or {}, main.get("lastState") or {}):
            for kind in ("running", "terminated"):
                value = ts((state.get(kind) or {}).get("startedAt"))
                if value:
                    times.append(value)
    return min(times) if times else None


def observe(job: dict[str, Any], pods: list[dict[str, Any]]) -> Observation:
    """One Job and its pods -> our state (docs/platforms.md, Kubernetes table)."""
    meta = job.get("metadata") or {}
    spec = job.get("spec") or {}
    status = job.get("status") or {}
    pods = sort_pods(pods)
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    running = [p for p in live if (p.get("status") or {}).get("phase") == "Running"]
    started = _containers_started(pods) or (ts(status.get("startTime")) if not live or running else None)
    if meta.get("deletionTimestamp"):
        return Observation(JobState.CANCELING, "Terminating", "the Job is being deleted", started_at=started)

    complete = _condition(job, "Complete")
    failed = _condition(job, "Failed")
    completions = spec.get("completions") or 1
    if not failed and (complete or (status.get("succeeded") or 0) >= completions) and not running:
        return Observation(
            JobState.COMPLETE,
            "Complete",
            f"{status.get('succeeded') or completions}/{completions} pod(s) succeeded",
            exit_code=0,
            started_at=started,
            ended_at=ts((complete or {}).get("lastTransitionTime")) or ts(status.get("completionTime")),
        )
    if (failed or ((status.get("failed") or 0) > 0 and (spec.get("backoffLimit") or 0) == 0)) and not running:
        return _failed(job, failed, pods, started)

    if running:
        message = f"{len(running)}/{len(live) or len(running)} pod(s) running"
        waiting = [(p, pod_issue(p)) for p in live if p not in running]
        issues = [f"{(p['metadata'] or {}).get('name')}: {_reason_text(*i)}" for p, i in waiting if i]
        if issues:
            message += "; " + "; ".join(issues[:3])
        return Observation(JobState.RUNNING, "Running", _clip(message), started_at=started)

    for pod in live:
        issue = pod_issue(pod)
        if issue:
            reason = _reason_text(*issue)
            return Observation(JobState.PENDING, issue[0], reason, pending_reason=reason, started_at=None)
    if live:
        return Observation(JobState.PENDING, "Pending", "pods created", pending_reason="Pending")
    return Observation(
        JobState.PENDING,
        "Pending",
        "waiting for the Job controller to create pods",
        pending_reason="waiting for the Job controller to create pods",
    )


def _failed(job: dict[str, Any], failed: dict[str, Any] | None, pods: list[dict[str, Any]], started: float | None):
    reason = (failed or {}).get("reason") or "Failed"
    message = (failed or {}).get("message") or ""
    exit_code: int | None = None
    raw = reason
    details: list[str] = []
    for pod in pods:
        term = terminated(pod)
        pod_status = pod.get("status") or {}
        if term and term.get("exitCode") not in (None, 0):
            if exit_code is None:
                exit_code = int(term["exitCode"])
                if term.get("reason") in ("OOMKilled", "DeadlineExceeded", "Evicted"):
                    raw = term["reason"]
            details.append(f"{pod['metadata'].get('name')}: {term.get('reason') or 'Error'} exit {term['exitCode']}")
        elif pod_status.get("reason") == "Evicted":
            raw = "Evicted"
            details.append(f"{pod['metadata'].get('name')}: Evicted {pod_status.get('message') or ''}".strip())
    if reason == "DeadlineExceeded":
        raw = "DeadlineExceeded"
    text = message or reason
    if details:
        text = f"{text}; " + "; ".join(details[:3])
    ended = ts(failed.get("lastTransitionTime")) if failed else None
    return Observation(JobState.ERROR, raw, _clip(text), exit_code=exit_code, started_at=started, ended_at=ended)


def not_found(canceled: bool) -> Observation:
    if canceled:
        return Observation(JobState.CANCELED, "Deleted", "canceled: the Job and its pods are gone")
    return Observation(JobState.UNKNOWN, "NotFound", NOT_FOUND_MESSAGE)


def evidence(job: dict[str, Any] | None, pods: list[dict[str, Any]], events: list[dict[str, Any]]) -> list[Evidence]:
    out: list[Evidence] = []
    if job is None:
        out.append(Evidence("state", NOT_FOUND_MESSAGE))
    else:
        for cond in (job.get("status") or {}).get("conditions") or []:
            if cond.get("status") == "True" and cond.get("type") in ("Failed", "Complete"):
                text = f"Job {cond['type']}: {cond.get('reason') or ''} {cond.get('message') or ''}"
                out.append(Evidence("state", _clip(text)))
    for pod in sort_pods(pods):
        name = (pod.get("metadata") or {}).get("name")
        status = pod.get("status") or {}
        if status.get("reason"):
            out.append(Evidence("state", _clip(f"pod {name}: {status['reason']} {status.get('message') or ''}")))
        for item in _statuses(pod):
            state = item.get("state") or {}
            for term in (state.get("terminated"), (item.get("lastState") or {}).get("terminated")):
                if term:
                    code = term.get("exitCode")
                    note = " (SIGKILL: usually out of memory or eviction)" if code == 137 else ""
                    text = f"pod {name} container {item.get('name')}: terminated {term.get('reason') or ''}"
                    text += f" exit code {code}{note}"
                    if term.get("message"):
                        text += f": {term['message']}"
                    out.append(Evidence("exit_code", _clip(text)))
                    break
            waiting = state.get("waiting") or {}
            if waiting.get("reason") and waiting["reason"] not in ("ContainerCreating", "PodInitializing"):
                text = f"pod {name} container {item.get('name')} waiting: {waiting['reason']}"
                if item.get("image"):
                    text += f" (image {item['image']})"
                if waiting.get("message"):
                    text += f": {waiting['message']}"
                out.append(Evidence("reason", _clip(text)))
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                text = f"pod {name} not scheduled: {cond.get('reason') or ''} {cond.get('message') or ''}"
                out.append(Evidence("reason", _clip(text)))
    seen: set[str] = set()
    for event in sorted(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or ""):
        reason = event.get("reason") or ""
        if event.get("type") != "Warning" and reason not in WARNING_EVENTS:
            continue
        involved = (event.get("involvedObject") or {}).get("name") or ""
        count = event.get("count") or 1
        text = _clip(
            f"event {reason} on {involved}: {event.get('message') or ''}" + (f" (x{count})" if count > 1 else "")
        )
        key = f"{reason}|{involved}|{event.get('message')}"
        if key not in seen:
            seen.add(key)
            out.append(Evidence("event", text))
    return out[:40]


def replicas(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Lepton-style replica diagnostics: one row per pod."""
    rows = []
    for pod in sort_pods(pods):
        meta = pod.get("metadata") or {}
        status = pod.get("status") or {}
        main = _main_status(pod) or {}
        term = terminated(pod)
        issue = pod_issue(pod) if status.get("phase") in ("Pending", "Unknown") or status.get("reason") else None
        if issue is None and term and term.get("exitCode") not in (None, 0):
            issue = (term.get("reason") or "Error", f"exit code {term.get('exitCode')}")
        rows.append(
            {
                "name": meta.get("name"),
                "index": pod_index(pod),
                "node": (pod.get("spec") or {}).get("nodeName"),
                "phase": "Terminating" if meta.get("deletionTimestamp") else status.get("phase"),
                "ready": bool(main.get("ready")),
                "restarts": int(main.get("restartCount") or 0),
                "exit_code": term.get("exitCode") if term else None,
                "readiness_issue": {"reason": issue[0], "message": _clip(issue[1])} if issue else None,
            }
        )
    return rows
