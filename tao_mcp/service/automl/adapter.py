"""The platform-SDK shape AutoMLRunner drives, backed by tao-mcp's own job service.

AutoMLRunner runs in a worker thread and calls `create_job`, `get_job_status`, `get_job_logs` and `cancel_job`
(docs: the runner's SDK contract). Each call here hops back to the event loop (anyio.from_thread) and goes
through JobService, so every recommendation is an ordinary tao-mcp job: recorded before launch, idempotent
per recommendation, redacted, watched by the shared poller, visible in list_jobs.

Two ways out of the engine, both BaseException subclasses because the runner swallows plain exceptions while
polling: `StopRun` (stop_automl: raised once from get_job_status or between jobs, so the runner cancels the
running job and confirms it) and `Detach` (the server is shutting down: every call raises it and nothing is
canceled, so a restarted server resumes the run).
"""

from __future__ import annotations

import json
import shlex
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio.from_thread

from tao_mcp.errors import TaoError
from tao_mcp.service.automl.metric import metric_from_lines
from tao_mcp.service.crashpoints import crashpoint
from tao_mcp.service.jobs import JobService, SubmitParams
from tao_mcp.service.principal import Principal, acting_as

T = TypeVar("T")
LOG_TAIL = 200  # lines handed to the engine per poll: it scans them for failure patterns, not for the metric
METRIC_GREP = "kpi"


class StopRun(BaseException):
    """stop_automl: the engine cancels its running job and ends."""


class Detach(BaseException):
    """The server is going away: leave the backend job running; the next server resumes the run."""


@dataclass
class Handle:
    """What the tools and the engine thread share about one running run."""

    run_id: str
    stop: threading.Event = field(default_factory=threading.Event)
    detach: threading.Event = field(default_factory=threading.Event)
    stop_raised: bool = False
    current_rec: int | None = None
    jobs: dict[int, str] = field(default_factory=dict)  # rec_id -> job_id, known before the engine saves it
    finished: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class JobShape:
    """What every recommendation's job shares (from the confirmed review)."""

    platform: str
    model: str
    image: str
    gpu_count: int
    num_nodes: int
    time_limit: int | None
    options: dict[str, Any]
    env: dict[str, str]
    secret_env: list[str]
    results_uri: str | None
    outputs: tuple[str, ...]  # the action's declared output spec keys: placed by tao-mcp, not by the engine


class _Obj:
    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


def rec_key(run_id: str, rec_id: int) -> str:
    """The idempotency key of a recommendation's job: a resumed run never launches a recommendation twice."""
    return f"automl:{run_id}:rec:{rec_id}"


def spec_of(command: str) -> dict[str, Any]:
    """The spec the engine built, recovered from its entrypoint command (the last line: `... --specs <json>`)."""
    lines = [line for line in command.strip().splitlines() if line.strip()]
    parts = shlex.split(lines[-1]) if lines else []
    if "--specs" not in parts:
        raise ValueError("the engine's command carries no --specs")
    spec = json.loads(parts[parts.index("--specs") + 1])
    if not isinstance(spec, dict):
        raise ValueError("the engine's --specs is not a mapping")
    return spec


def drop_key(spec: dict[str, Any], dotted: str) -> None:
    node: Any = spec
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(parts[-1], None)


class JobServiceSDK:
    def __init__(
        self, jobs: JobService, shape: JobShape, handle: Handle, owner: str | None, on_launch: Callable[[], None]
    ) -> None:
        self.jobs = jobs
        self.shape = shape
        self.handle = handle
        self.owner = owner
        self.on_launch = on_launch
        self.failed: dict[str, str] = {}  # launches refused before a job existed: id -> coded error

    def _call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        if self.handle.detach.is_set():
            raise Detach()

        async def as_owner() -> T:
            with acting_as(Principal(self.owner) if self.owner else None):
                return await fn(*args)

        try:
            return anyio.from_thread.run(as_owner)
        except RuntimeError as exc:  # the event loop is gone: the server stopped under us
            if self.handle.detach.is_set() or "event loop" in str(exc).lower():
                raise Detach() from exc
            raise

    # ---- the SDK shape ----
    def create_job(self, image: str, command: str, **kwargs: Any) -> _Obj:
        """Submit the recommendation as a tao-mcp job. Never raises (a refusal becomes a failed job id)."""
        rec_id = self.handle.current_rec if self.handle.current_rec is not None else -1
        try:
            spec = spec_of(command)
            for key in self.shape.outputs:
                drop_key(spec, key)
            params = SubmitParams(
                platform=self.shape.platform,
                command="",
                model=self.shape.model,
                action="train",
                image=self.shape.image,
                specs=spec,
                gpu_count=self.shape.gpu_count,
                num_nodes=self.shape.num_nodes,
                time_limit=self.shape.time_limit,
                options=dict(self.shape.options),
                env=dict(self.shape.env),
                secret_env=list(self.shape.secret_env),
                results_uri=self.shape.results_uri,
                name=f"automl-{self.handle.run_id[:12]}-rec{rec_id}",
                idempotency_key=rec_key(self.handle.run_id, rec_id),
            )
            result = self._call(self.jobs.submit, params)
            assert result.job_id is not None  # a launch always has one (only a dry run has none)
            job_id = result.job_id
            if rec_id >= 1:  # the engine keeps its search state from the first result on (see crashpoints)
                crashpoint("automl.after_launch")
        except (Detach, StopRun):
            raise
        except (TaoError, ValueError) as exc:
            job_id = f"failed-{self.handle.run_id}-{rec_id}"
            self.failed[job_id] = str(exc)
        self.handle.jobs[rec_id] = job_id
        self.on_launch()
        return _Obj(id=job_id)

    def get_job_status(self, job_id: str) -> _Obj:
        if self.handle.stop.is_set() and not self.handle.stop_raised:
            self.handle.stop_raised = True
            raise StopRun()
        if job_id in self.failed:
            return _Obj(status="Error")
        status = self._call(self.jobs.status, job_id)
        return _Obj(status=str(status.status), message=status.message)

    def get_job_logs(self, job_id: str, tail: int | None = None) -> str:
        if job_id in self.failed:
            return self.failed[job_id]
        page = self._call(self.jobs.logs, job_id, min(tail or LOG_TAIL, LOG_TAIL), None, None)
        return "\n".join(page.lines)

    def cancel_job(self, job_id: str) -> bool:
        if job_id in self.failed:
            return True
        status = self._call(self.jobs.cancel, job_id)
        return str(status.status) in ("Canceled", "Complete", "Error")

    # ---- the metric (the engine's eval_fn) ----
    def metric(self, job_id: str, name: str) -> float | None:
        """The job's validation metric as TAO writes it: its status.json kpi records, read from the job's log."""
        if job_id in self.failed:
            return None
        page = self._call(self.jobs.logs, job_id, 2000, None, METRIC_GREP, True)  # raw: the runner's records too
        return metric_from_lines(page.lines, name)
