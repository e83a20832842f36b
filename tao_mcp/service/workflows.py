"""Durable workflows: steps of ordinary jobs that the server starts when their dependencies have completed.

A workflow is a list of steps, each a set of submit_job arguments plus `id`, `depends_on` and an optional
`matrix` (a sweep: one job per combination of the values). Everything is checked before anything is recorded
(`plan` + a dry run of every job), then the workflow and one row per job-to-be ("unit") are written to the job
store's database. The driver (`WorkflowService.run`, a task started with the server) advances every open
workflow: it asks the shared pollers for fresh readings of the running steps, marks the dependents of a failed
step Skipped, and launches the ready units through `JobService.submit`, at most `max_parallel` at a time.

No unit is launched twice: its job carries an idempotency key derived from the workflow id and the unit, so a
server killed between the launch and storing the job id with the unit submits again after the restart and the
job service answers with the first job (or resumes its interrupted launch; see service/jobs.py, leases.py).
Arguments may reference earlier steps: `{{steps.<id>.results}}`, `{{steps.<id>.outputs.<name>}}` and, in a
sweep, `{{matrix.<param>}}` (a whole-string reference keeps the value's type).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import anyio
from pydantic import TypeAdapter, ValidationError

from tao_mcp import cursor as cursor_codec
from tao_mcp.errors import TaoError
from tao_mcp.models import (
    SubmitResult,
    WorkflowBest,
    WorkflowList,
    WorkflowStatus,
    WorkflowStep,
    WorkflowSummary,
    WorkflowWaitResult,
)
from tao_mcp.service import logs, principal
from tao_mcp.service.crashpoints import crashpoint
from tao_mcp.service.jobs import JobService, SubmitParams, iso
from tao_mcp.service.store import JobRecord
from tao_mcp.states import OPEN, JobState

log = logging.getLogger(__name__)

MAX_STEPS = 32
MAX_COMBINATIONS = 32  # jobs of one matrix step
MAX_UNITS = 32  # jobs of one workflow: its status stays within the result budget
DRY_RUN_CHARS = 12_000  # the rendered jobs of a dry run, shared among them
STEP_MESSAGE_CHARS = 160
DRIVE_INTERVAL_S = 2.0
SUBMIT_LAUNCHES = 4  # jobs submit_workflow launches itself before it answers
METRIC_SCAN_LINES = 500
STEP_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
PARAM = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")
REFERENCE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
WORKFLOW_KEYS = ("id", "depends_on", "matrix")
SET_ON_WORKFLOW = ("idempotency_key", "dry_run", "workflow")
ARGUMENTS = tuple(f.name for f in dataclasses.fields(SubmitParams) if f.name not in SET_ON_WORKFLOW)
OPEN_WORKFLOW = ("Running", "Canceling")
FAILED = {JobState.ERROR.value, JobState.CANCELED.value, "Skipped"}
ENDED = FAILED | {JobState.COMPLETE.value}
_PARAMS = TypeAdapter(SubmitParams)

SCHEMA = """
CREATE TABLE IF NOT EXISTS workflows (
    workflow_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL,                -- Running | Complete | Error | Canceling | Canceled
    message TEXT NOT NULL DEFAULT '',
    max_parallel INTEGER NOT NULL,
    steps TEXT NOT NULL,                 -- the checked step definitions (JSON)
    idempotency_key TEXT UNIQUE,
    request_digest TEXT NOT NULL,
    principal TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    ended_at REAL
);
CREATE INDEX IF NOT EXISTS workflows_by_created ON workflows(created_at, workflow_id);
CREATE INDEX IF NOT EXISTS workflows_open ON workflows(status) WHERE status IN ('Running', 'Canceling');
CREATE TABLE IF NOT EXISTS workflow_units (
    workflow_id TEXT NOT NULL,
    unit TEXT NOT NULL,                  -- the step id, with its matrix values for one job of a sweep
    step_id TEXT NOT NULL,
    position INTEGER NOT NULL,           -- dependency order
    combo TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL,                -- Waiting | Skipped | Canceled | Error (no job), else see the job
    job_id TEXT,
    message TEXT NOT NULL DEFAULT '',
    updated_at REAL NOT NULL,
    PRIMARY KEY (workflow_id, unit)
);
"""


def invalid(cause: str, fix: str = "") -> TaoError:
    return TaoError("E_WORKFLOW_INVALID", cause, fix or "fix that step; submit_workflow(dry_run=True) checks it all")


@dataclass(frozen=True)
class Step:
    id: str
    depends_on: tuple[str, ...]
    matrix: dict[str, list[Any]]
    args: dict[str, Any]

    def combinations(self) -> list[dict[str, Any]]:
        names = list(self.matrix)
        return [dict(zip(names, values, strict=True)) for values in itertools.product(*self.matrix.values())] or [{}]

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "depends_on": list(self.depends_on), "matrix": self.matrix, **self.args}


@dataclass(frozen=True)
class Unit:
    """One job-to-be: a step, or one combination of a matrix step."""

    key: str
    step: Step
    combo: dict[str, Any]

    @staticmethod
    def key_of(step_id: str, combo: Mapping[str, Any]) -> str:
        return f"{step_id}[{','.join(f'{k}={v}' for k, v in combo.items())}]" if combo else step_id

    def job_name(self) -> str:
        base = str(self.step.args.get("name") or self.step.id)
        suffix = "-".join(f"{k}{v}" for k, v in self.combo.items())
        return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{base}-{suffix}" if suffix else base)[:64]


# ---------------------------------------------------------------- the plan: checked before anything is stored


def plan(steps: Any) -> list[Step]:
    """The steps in dependency order, or E_WORKFLOW_INVALID naming the step and what is wrong."""
    if not isinstance(steps, list) or not steps:
        raise invalid("steps must be a non-empty list", "give steps=[{'id': 'train', 'platform': ..., ...}, ...]")
    if len(steps) > MAX_STEPS:
        raise invalid(f"{len(steps)} steps; a workflow holds at most {MAX_STEPS}", "split it into workflows")
    parsed: dict[str, Step] = {}
    for index, raw in enumerate(steps):
        step = parse_step(raw, index)
        if step.id in parsed:
            raise invalid(f"two steps have the id '{step.id}'", "give every step its own id")
        parsed[step.id] = step
    for step in parsed.values():
        for dep in step.depends_on:
            if dep not in parsed:
                raise invalid(
                    f"step '{step.id}': depends_on names '{dep}', which is not a step",
                    f"use one of: {', '.join(parsed)}",
                )
    ordered = dependency_order(parsed)
    units = sum(len(s.combinations()) for s in ordered)
    if units > MAX_UNITS:
        raise invalid(f"the workflow expands into {units} jobs; at most {MAX_UNITS}", "sweep fewer values")
    for step in ordered:
        check_references(step, parsed)
    return ordered


def parse_step(raw: Any, index: int) -> Step:
    if not isinstance(raw, dict):
        raise invalid(f"steps[{index}] is not an object", "give each step as {'id': ..., <submit_job arguments>}")
    step_id = raw.get("id")
    if not isinstance(step_id, str) or not STEP_ID.match(step_id):
        raise invalid(f"steps[{index}] has no usable id ({step_id!r})", "give an id of up to 32 [A-Za-z0-9_-]")
    where = f"step '{step_id}'"
    unknown = sorted(set(raw) - set(WORKFLOW_KEYS) - set(ARGUMENTS))
    if unknown:
        workflow_level = [k for k in unknown if k in SET_ON_WORKFLOW]
        fix = (
            f"{', '.join(workflow_level)} is set on the workflow, not per step"
            if workflow_level
            else f"a step takes id, depends_on, matrix and submit_job arguments ({', '.join(ARGUMENTS)})"
        )
        raise invalid(f"{where}: unknown argument(s) {', '.join(unknown)}", fix)
    depends_on = raw.get("depends_on") or []
    if not isinstance(depends_on, list) or not all(isinstance(d, str) for d in depends_on):
        raise invalid(f"{where}: depends_on must be a list of step ids", "e.g. depends_on=['train']")
    if step_id in depends_on:
        raise invalid(f"{where} depends on itself", "remove it from its own depends_on")
    matrix = raw.get("matrix") or {}
    if not isinstance(matrix, dict):
        raise invalid(f"{where}: matrix must be an object {{param: [values]}}", "e.g. matrix={'lr': [0.1, 0.01]}")
    for name, values in matrix.items():
        if not PARAM.match(name):
            raise invalid(f"{where}: matrix parameter {name!r} is not a name", "use letters, digits and _")
        scalars = isinstance(values, list) and values
        if not scalars or not all(isinstance(v, str | int | float | bool) for v in values):
            raise invalid(f"{where}: matrix {name} must be a non-empty list of numbers or strings", "e.g. [8, 16]")
        if len(set(map(json.dumps, values))) != len(values):
            raise invalid(f"{where}: matrix {name} repeats a value", "list each value once")
    combos = 1
    for values in matrix.values():
        combos *= len(values)
    if combos > MAX_COMBINATIONS:
        raise invalid(
            f"{where}: the matrix has {combos} combinations; at most {MAX_COMBINATIONS}", "sweep fewer values"
        )
    args = {k: v for k, v in raw.items() if k not in WORKFLOW_KEYS}
    if "platform" not in args:
        raise invalid(f"{where}: platform is missing", "every step names its platform, like submit_job")
    return Step(step_id, tuple(dict.fromkeys(depends_on)), dict(matrix), args)


def dependency_order(steps: Mapping[str, Step]) -> list[Step]:
    """Kahn's order (ties keep the given order); a cycle is refused with its members named."""
    remaining = {s.id: set(s.depends_on) for s in steps.values()}
    ordered: list[Step] = []
    while remaining:
        ready = [sid for sid, deps in remaining.items() if not deps]
        if not ready:
            cycle = ", ".join(sorted(remaining))
            raise invalid(f"the steps {cycle} depend on each other in a cycle", "remove one depends_on of the cycle")
        for sid in ready:
            ordered.append(steps[sid])
            del remaining[sid]
        for deps in remaining.values():
            deps.difference_update(ready)
    return ordered


def ancestors(step: Step, steps: Mapping[str, Step]) -> set[str]:
    found: set[str] = set()
    todo = list(step.depends_on)
    while todo:
        sid = todo.pop()
        if sid not in found:
            found.add(sid)
            todo += steps[sid].depends_on
    return found


def strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def check_references(step: Step, steps: Mapping[str, Step]) -> None:
    where = f"step '{step.id}'"
    before = ancestors(step, steps)
    used: set[str] = set()
    for text in strings(step.args):
        for ref in REFERENCE.findall(text):
            parts = ref.split(".", 3)
            if parts[0] == "matrix" and len(parts) == 2:
                if parts[1] not in step.matrix:
                    raise invalid(f"{where}: {{{{{ref}}}}} names no parameter of its matrix", "add it to matrix")
                used.add(parts[1])
                continue
            good = parts[0] == "steps" and (
                (len(parts) == 3 and parts[2] == "results") or (len(parts) == 4 and parts[2] == "outputs")
            )
            if not good:
                raise invalid(
                    f"{where}: {{{{{ref}}}}} is not a reference this server knows",
                    "write {{steps.<id>.results}}, {{steps.<id>.outputs.<name>}} or {{matrix.<param>}}",
                )
            if parts[1] not in before:
                raise invalid(
                    f"{where}: {{{{{ref}}}}} refers to '{parts[1]}', which is not among the steps it depends on",
                    f"add '{parts[1]}' to depends_on (a reference is resolved once that step has completed)",
                )
            if steps[parts[1]].matrix:
                raise invalid(
                    f"{where}: {{{{{ref}}}}} refers to the sweep '{parts[1]}', which has one result per combination",
                    "depend on the sweep without referencing it, or reference a single (non-matrix) step",
                )
    unused = sorted(set(step.matrix) - used)
    if unused:
        raise invalid(
            f"{where}: matrix parameter(s) {', '.join(unused)} are not used by the step (its jobs would be identical)",
            "reference them in its arguments as {{matrix.<param>}}",
        )


def render(value: Any, lookup: Callable[[str], Any]) -> Any:
    """Replace every {{reference}}; a string that is one whole reference takes the referenced value's type."""
    if isinstance(value, str):
        whole = REFERENCE.fullmatch(value.strip())
        if whole:
            return lookup(whole.group(1))
        return REFERENCE.sub(lambda m: str(lookup(m.group(1))), value)
    if isinstance(value, dict):
        return {k: render(v, lookup) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, lookup) for v in value]
    return value


@dataclass(frozen=True)
class Produced:
    """What a completed (or dry-run) unit offers the steps after it."""

    results: str | None
    outputs: Mapping[str, str]


def unit_params(unit: Unit, produced: Mapping[str, Produced], workflow_id: str) -> SubmitParams:
    """The submit_job arguments of a unit, references resolved (E_WORKFLOW_INVALID names the unit)."""
    where = f"step '{unit.key}'"

    def lookup(ref: str) -> Any:
        parts = ref.split(".", 3)
        if parts[0] == "matrix":
            return unit.combo[parts[1]]
        source = produced[parts[1]]
        if parts[2] == "results":
            if not source.results:
                raise invalid(
                    f"{where}: {{{{{ref}}}}}: step '{parts[1]}' has no results location",
                    f"give step '{parts[1]}' a results_uri (or a platform with a results root)",
                )
            return source.results
        if parts[3] not in source.outputs:
            declared = ", ".join(source.outputs) or "none"
            raise invalid(
                f"{where}: {{{{{ref}}}}}: step '{parts[1]}' declares no output '{parts[3]}' (declared: {declared})",
                "reference one of its declared outputs",
            )
        return source.outputs[parts[3]]

    args = render(unit.step.args, lookup)
    args["name"] = unit.job_name()
    args.setdefault("command", "")
    try:
        params = _PARAMS.validate_python(args)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        raise invalid(f"{where}: {problems}", "give the types submit_job takes") from None
    params.workflow = {"workflow_id": workflow_id, "step": unit.key}
    return params


def units_of(steps: list[Step]) -> list[Unit]:
    return [Unit(Unit.key_of(s.id, combo), s, combo) for s in steps for combo in s.combinations()]


def unit_key(workflow_id: str, unit: str) -> str:
    """The idempotency key of a unit's job: the same on every attempt, so a unit is never launched twice."""
    return f"workflow-{workflow_id}-{hashlib.sha256(unit.encode()).hexdigest()[:24]}"


def step_error(unit: Unit, exc: TaoError) -> TaoError:
    """A submit_job error, reported with the step it belongs to."""
    if exc.cause.startswith(f"step '{unit.key}'"):
        return exc
    return TaoError(exc.code, f"step '{unit.key}': {exc.cause}", exc.fix)


# ---------------------------------------------------------------- the service


@dataclass
class WorkflowRow:
    workflow_id: str
    name: str
    status: str
    message: str
    max_parallel: int
    steps: list[Step]
    principal: str | None
    cancel_requested: bool
    created_at: float
    ended_at: float | None
    request_digest: str

    @classmethod
    def from_row(cls, row: Any) -> WorkflowRow:
        steps = [parse_step(raw, i) for i, raw in enumerate(json.loads(row["steps"]))]
        return cls(
            row["workflow_id"],
            row["name"],
            row["status"],
            row["message"],
            row["max_parallel"],
            steps,
            row["principal"],
            bool(row["cancel_requested"]),
            row["created_at"],
            row["ended_at"],
            row["request_digest"],
        )


@dataclass
class UnitState:
    workflow_id: str
    unit: Unit
    status: str
    job: JobRecord | None
    message: str


class WorkflowService:
    def __init__(self, jobs: JobService) -> None:
        self.jobs = jobs
        self.store = jobs.store
        self.store.ensure_tables(SCHEMA)
        self._wanted = anyio.Event()
        self._advancing: dict[str, anyio.Lock] = {}  # per workflow: one advance at a time

    async def start(self, task_group: anyio.abc.TaskGroup) -> None:
        task_group.start_soon(self.run, name="workflow-driver")

    def kick(self) -> None:
        self._wanted.set()

    # ---- the driver ----
    async def run(self) -> None:
        """Advance every open workflow, every DRIVE_INTERVAL_S or when kicked (also those of an earlier process)."""
        while True:
            try:
                await self.advance_all()
            except Exception:  # a bug must not stop every workflow
                log.exception("workflow driver round crashed")
            with anyio.move_on_after(DRIVE_INTERVAL_S):
                await self._wanted.wait()
            self._wanted = anyio.Event()

    async def advance_all(self) -> None:
        rows = self.store.query(
            "SELECT workflow_id FROM workflows WHERE status IN ('Running', 'Canceling') ORDER BY created_at"
        )
        for row in rows:
            try:
                await self.advance(row["workflow_id"])
            except Exception:
                log.exception("advancing workflow %s failed", row["workflow_id"])

    async def advance(self, workflow_id: str, launches: int = MAX_UNITS) -> None:
        # one advance of a workflow at a time: the driver and waiting tool calls share it
        async with self._advancing.setdefault(workflow_id, anyio.Lock()):
            workflow = self._row(workflow_id)
            if workflow is None or workflow.status not in OPEN_WORKFLOW:
                self._advancing.pop(workflow_id, None)  # ended: nothing will advance it again
                return
            await self._refresh(workflow)
            states = self._states(workflow)
            self._skip_after_failures(workflow, states)
            if workflow.cancel_requested:
                self._set_units([s for s in states if s.status == "Waiting"], "Canceled", "the workflow was canceled")
            else:
                await self._launch_ready(workflow, states, launches)
            self._finish_if_done(workflow, self._states(workflow))

    async def _refresh(self, workflow: WorkflowRow) -> None:
        """Fresh readings of the open step jobs through the shared pollers (one sweep per platform)."""
        platforms = {s.job.platform for s in self._states(workflow) if s.job and not s.job.terminal}
        for platform in sorted(platforms):
            await self.jobs.poller(platform).refresh(max_age=DRIVE_INTERVAL_S)

    def _skip_after_failures(self, workflow: WorkflowRow, states: list[UnitState]) -> None:
        by_step: dict[str, list[UnitState]] = {}
        for s in states:
            by_step.setdefault(s.unit.step.id, []).append(s)
        changed = True
        while changed:  # transitively: a skipped step skips its own dependents
            changed = False
            for s in states:
                if s.status != "Waiting":
                    continue
                failed = [
                    f"{d.unit.key} ended {d.status}"
                    for dep in s.unit.step.depends_on
                    for d in by_step[dep]
                    if d.status in FAILED
                ]
                if failed:
                    s.status, s.message = "Skipped", f"skipped: {failed[0]}"
                    self._set_units([s], "Skipped", s.message)
                    changed = True

    async def _launch_ready(self, workflow: WorkflowRow, states: list[UnitState], launches: int) -> None:
        by_step: dict[str, list[UnitState]] = {}
        for s in states:
            by_step.setdefault(s.unit.step.id, []).append(s)
        running = sum(1 for s in states if s.job is not None and s.status in {x.value for x in OPEN})
        for s in states:
            if running >= workflow.max_parallel or launches <= 0:
                break
            if s.status != "Waiting":
                continue
            deps = [d for dep in s.unit.step.depends_on for d in by_step[dep]]
            if not all(d.status == JobState.COMPLETE.value for d in deps):
                continue
            if await self._launch(workflow, s, by_step):
                running += 1
                launches -= 1

    async def _launch(self, workflow: WorkflowRow, state: UnitState, by_step: dict[str, list[UnitState]]) -> bool:
        unit = state.unit
        produced = {
            sid: Produced(d[0].job.results_location, d[0].job.request.get("output_uris") or {})
            for sid, d in by_step.items()
            if len(d) == 1 and d[0].job is not None
        }
        try:
            params = unit_params(unit, produced, workflow.workflow_id)
            params.idempotency_key = unit_key(workflow.workflow_id, unit.key)
            with principal.acting_as(principal.Principal(workflow.principal) if workflow.principal else None):
                result = await self.jobs.submit(params)
        except TaoError as exc:
            if exc.code == "E_BACKEND_UNREACHABLE":  # not the step's fault: the next round tries again
                self._set_units([state], "Waiting", f"waiting for the backend: {exc.cause}")
                return False
            self._set_units([state], JobState.ERROR.value, f"the launch failed: {step_error(unit, exc)}")
            return False
        crashpoint("workflow.after_launch")
        self._set_units([state], JobState.PENDING.value, result.message, job_id=result.job_id)
        log.info("workflow %s: step %s launched as job %s", workflow.workflow_id, unit.key, result.job_id)
        # canceled while this launch was in flight (a launch always has a job_id; only a dry run has none)
        if self._row_cancel_requested(workflow.workflow_id) and result.job_id:
            await self.jobs.cancel(result.job_id, confirm_within_s=0)
        return True

    def _finish_if_done(self, workflow: WorkflowRow, states: list[UnitState]) -> None:
        if not all(s.status in ENDED for s in states):
            return
        failed = [s for s in states if s.status in FAILED]
        if self._row_cancel_requested(workflow.workflow_id):
            status, message = "Canceled", "canceled"
        elif failed:
            first = next((s for s in failed if s.status != "Skipped"), failed[0])
            status, message = (
                "Error",
                f"step {first.unit.key} ended {first.status}; {len(failed)} step(s) failed or skipped",
            )
        else:
            status, message = "Complete", f"all {len(states)} steps completed"
        now = time.time()
        with self.store.transaction() as db:
            db.execute(
                "UPDATE workflows SET status = ?, message = ?, updated_at = ?, ended_at = ? "
                "WHERE workflow_id = ? AND status IN ('Running', 'Canceling')",
                (status, self.store.redactor.text(message), now, now, workflow.workflow_id),
            )

    # ---- store ----
    def _row(self, workflow_id: str) -> WorkflowRow | None:
        rows = self.store.query("SELECT * FROM workflows WHERE workflow_id = ?", (workflow_id,))
        return WorkflowRow.from_row(rows[0]) if rows else None

    def _row_cancel_requested(self, workflow_id: str) -> bool:
        rows = self.store.query("SELECT cancel_requested FROM workflows WHERE workflow_id = ?", (workflow_id,))
        return bool(rows and rows[0]["cancel_requested"])

    def _states(self, workflow: WorkflowRow) -> list[UnitState]:
        units = {u.key: u for u in units_of(workflow.steps)}
        rows = self.store.query(
            "SELECT unit, status, job_id, message FROM workflow_units WHERE workflow_id = ? ORDER BY position",
            (workflow.workflow_id,),
        )
        states = []
        for row in rows:
            job = self.store.get(row["job_id"]) if row["job_id"] else None
            status = job.status.value if job else row["status"]
            states.append(UnitState(workflow.workflow_id, units[row["unit"]], status, job, row["message"]))
        return states

    def _set_units(self, states: list[UnitState], status: str, message: str, job_id: str | None = None) -> None:
        """Record a unit's own status (before or without a job); a unit that has a job follows the job."""
        if not states:
            return
        now = time.time()
        with self.store.transaction() as db:
            for s in states:
                db.execute(
                    "UPDATE workflow_units SET status = ?, message = ?, job_id = COALESCE(?, job_id), updated_at = ? "
                    "WHERE workflow_id = ? AND unit = ? AND job_id IS NULL",
                    (status, self.store.redactor.text(message), job_id, now, s.workflow_id, s.unit.key),
                )

    # ---- submit ----
    async def submit(
        self, name: str, steps: Any, max_parallel: int, idempotency_key: str | None, dry_run: bool
    ) -> WorkflowStatus:
        if not STEP_ID.match(name):
            raise TaoError("E_BAD_INPUT", f"name {name!r} is not a label", "use up to 32 [A-Za-z0-9_-]")
        ordered = plan(steps)
        digest = hashlib.sha256(
            json.dumps([name, max_parallel, [s.as_json() for s in ordered]], sort_keys=True, default=str).encode()
        ).hexdigest()
        key = principal.scoped_key(idempotency_key) if idempotency_key else None
        if key and not dry_run:
            existing = self.store.query("SELECT * FROM workflows WHERE idempotency_key = ?", (key,))
            if existing:
                return self._reused(WorkflowRow.from_row(existing[0]), digest)
        workflow_id = uuid.uuid4().hex[:12]
        rendered = await self._check(workflow_id, ordered)  # every job dry-run: argument errors name their step
        for step in ordered:  # what is stored must be what was given: a restart rebuilds the jobs from it
            if self.store.redactor.data(step.as_json()) != step.as_json():
                raise invalid(
                    f"step '{step.id}' holds a credential value",
                    "pass credentials by name: secret_env=['<VARIABLE>'] forwards one from the server environment",
                )
        if dry_run:
            return self._dry_run_status(workflow_id, name, max_parallel, ordered, rendered)
        now = time.time()
        stored = [s.as_json() for s in ordered]
        with self.store.transaction() as db:
            if key and db.execute("SELECT 1 FROM workflows WHERE idempotency_key = ?", (key,)).fetchone():
                winner = db.execute("SELECT * FROM workflows WHERE idempotency_key = ?", (key,)).fetchone()
            else:
                winner = None
                db.execute(
                    "INSERT INTO workflows (workflow_id, name, status, message, max_parallel, steps, idempotency_key, "
                    "request_digest, principal, created_at, updated_at) "
                    "VALUES (?, ?, 'Running', ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        workflow_id,
                        name,
                        "submitted",
                        max_parallel,
                        json.dumps(stored),  # key order kept: a sweep's unit names follow its matrix order
                        key,
                        digest,
                        principal.owner(),
                        now,
                        now,
                    ),
                )
                for position, unit in enumerate(units_of(ordered)):
                    db.execute(
                        "INSERT INTO workflow_units (workflow_id, unit, step_id, position, combo, status, updated_at) "
                        "VALUES (?, ?, ?, ?, ?, 'Waiting', ?)",
                        (workflow_id, unit.key, unit.step.id, position, json.dumps(unit.combo), now),
                    )
        if winner is not None:  # a concurrent submit with the same key won
            return self._reused(WorkflowRow.from_row(winner), digest)
        # the first steps start now (a few: the answer stays quick), the rest at the driver's next rounds
        await self.advance(workflow_id, launches=SUBMIT_LAUNCHES)
        self.kick()
        return await self.status(workflow_id)

    async def _check(self, workflow_id: str, ordered: list[Step]) -> dict[str, tuple[SubmitParams, SubmitResult]]:
        """Dry-run every unit in dependency order, a dry-run result standing in for each earlier step's results."""
        results: dict[str, tuple[SubmitParams, SubmitResult]] = {}
        produced: dict[str, Produced] = {}
        for unit in units_of(ordered):
            params = unit_params(unit, produced, workflow_id)
            params.dry_run = True
            try:
                result = await self.jobs.submit(params, keep_plan=False)
            except TaoError as exc:
                raise step_error(unit, exc) from None
            results[unit.key] = params, result
            if not unit.combo:
                produced[unit.step.id] = Produced(result.results_location, result.outputs or {})
        return results

    def _dry_run_status(
        self,
        workflow_id: str,
        name: str,
        max_parallel: int,
        ordered: list[Step],
        rendered: dict[str, tuple[SubmitParams, SubmitResult]],
    ) -> WorkflowStatus:
        steps = []
        units = units_of(ordered)
        share = min(1500, DRY_RUN_CHARS // len(units))
        for unit in units:
            params, result = rendered[unit.key]
            shown: dict[str, Any] = {
                k: v
                for k, v in dataclasses.asdict(params).items()
                if v not in (None, "", {}, []) and k not in SET_ON_WORKFLOW and len(json.dumps(v, default=str)) < 600
            }
            text = json.dumps(shown, sort_keys=True, default=str)
            if result.preview and "entrypoint" in result.preview:  # the spec as the job will read it, if it fits
                spec = json.loads(result.preview["entrypoint"]).get("spec")
                with_spec = json.dumps({**shown, "entrypoint": spec}, sort_keys=True, default=str)
                text = with_spec if len(with_spec) <= share else text
            warnings = result.message.split("; ")[1:]  # the first part says that nothing was launched
            steps.append(
                WorkflowStep(
                    step=unit.key,
                    step_id=unit.step.id,
                    matrix=unit.combo or None,
                    depends_on=list(unit.step.depends_on),
                    status="Waiting",
                    results_location=result.results_location,
                    outputs=result.outputs,
                    message="; ".join(warnings)[:STEP_MESSAGE_CHARS],
                    rendered=text if len(text) <= share else text[: share - 1] + "…",
                )
            )
        return WorkflowStatus(
            workflow_id=workflow_id,
            name=name,
            status="Running",
            max_parallel=max_parallel,
            counts={"Waiting": len(steps)},
            steps=steps,
            created_at=iso(time.time()) or "",
            dry_run=True,
            message=f"dry run: {len(steps)} job(s) checked and rendered, nothing was launched or recorded "
            "(results locations and job ids are examples: real ones are minted at launch)",
            next="submit_workflow(...) again without dry_run to start it",
        )

    def _reused(self, existing: WorkflowRow, digest: str) -> WorkflowStatus:
        if existing.request_digest != digest:
            raise TaoError(
                "E_IDEMPOTENCY_CONFLICT",
                f"idempotency_key was already used for workflow {existing.workflow_id} with different steps",
                "use a new idempotency_key for a different workflow, or repeat the original request exactly",
            )
        status = self._status_model(existing, self._states(existing), None)
        return status.model_copy(
            update={"reused": True, "message": "an earlier submit_workflow with this idempotency_key answered"}
        )

    # ---- status ----
    def workflow(self, workflow_id: str) -> WorkflowRow:
        return principal.visible(
            self._row(workflow_id),
            "E_UNKNOWN_WORKFLOW",
            f"no workflow with id '{workflow_id}' in this server's store",
            "use list_workflows() to find workflow ids",
        )

    async def status(
        self, workflow_id: str, metric: str | None = None, goal: Literal["max", "min"] = "max"
    ) -> WorkflowStatus:
        workflow = self.workflow(workflow_id)
        states = self._states(workflow)
        values = await self._metric_values(states, metric) if metric else None
        best = None
        if metric and values:
            pick = max if goal == "max" else min
            key = pick(values, key=lambda k: values[k])
            job = next(s.job for s in states if s.unit.key == key and s.job is not None)
            best = WorkflowBest(metric=metric, goal=goal, value=values[key], step=key, job_id=job.job_id)
        model = self._status_model(workflow, states, values, await self._progress(states))
        return model.model_copy(update={"best": best})

    async def _progress(self, states: list[UnitState]) -> dict[str, str]:
        """What job_status says of each running step (the runner's phase, training progress): at most
        max_parallel jobs run at once, so this is a few single-job readings, not a sweep."""
        found: dict[str, str] = {}
        for s in states:
            if s.job is not None and s.job.status == JobState.RUNNING:
                with contextlib.suppress(TaoError):
                    status = await self.jobs.status(s.job.job_id)
                    found[s.unit.key] = status.progress.message if status.progress else status.message
        return found

    def _status_model(
        self,
        workflow: WorkflowRow,
        states: list[UnitState],
        values: Mapping[str, float] | None,
        progress: Mapping[str, str] | None = None,
    ) -> WorkflowStatus:
        counts: dict[str, int] = {}
        steps = []
        for s in states:
            counts[s.status] = counts.get(s.status, 0) + 1
            job = s.job
            steps.append(
                WorkflowStep(
                    step=s.unit.key,
                    step_id=s.unit.step.id,
                    matrix=s.unit.combo or None,
                    depends_on=list(s.unit.step.depends_on),
                    status=s.status,
                    job_id=job.job_id if job else None,
                    results_location=job.results_location if job else None,
                    outputs=(job.request.get("output_uris") or None) if job else None,
                    progress=(
                        (progress or {}).get(s.unit.key, job.message)[:STEP_MESSAGE_CHARS]
                        if job and job.status == JobState.RUNNING
                        else None
                    ),
                    metric=(values or {}).get(s.unit.key),
                    message=(job.message if job else s.message)[:STEP_MESSAGE_CHARS],
                )
            )
        wid = workflow.workflow_id
        if workflow.status in OPEN_WORKFLOW:
            hint = f"wait_for_workflow(workflow_id='{wid}')"
        else:
            failed = next((s for s in states if s.job and s.status == JobState.ERROR.value), None)
            last = next((s for s in reversed(states) if s.job), None)
            if workflow.status == "Error" and failed and failed.job:
                hint = f"failure_analysis(job_id='{failed.job.job_id}')"
            elif last and last.job:
                hint = f"job_logs(job_id='{last.job.job_id}') (step {last.unit.key}); job_logs of any step's job_id"
            else:
                hint = "list_workflows() (no step of this workflow launched a job)"
        return WorkflowStatus(
            workflow_id=wid,
            name=workflow.name,
            status=workflow.status,
            max_parallel=workflow.max_parallel,
            counts=counts,
            steps=steps,
            created_at=iso(workflow.created_at) or "",
            ended_at=iso(workflow.ended_at),
            message=workflow.message,
            next=hint,
        )

    async def _metric_values(self, states: list[UnitState], metric: str) -> dict[str, float]:
        """The latest value of `metric` per step: from its TAO status.json records (kpi, graphical), else the last
        `metric: 0.61`, `metric=0.61` or JSON value its (redacted) log shows."""
        pattern = re.compile(rf"[\"']?{re.escape(metric)}[\"']?\s*[:=]\s*(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)")
        values: dict[str, float] = {}
        for s in states:
            if s.job is None or s.job.backend_id is None:
                continue
            record = await self.jobs._training_progress(s.job)  # the job's status.json kpi, when it writes one
            if record is not None and metric in record.metrics:
                values[s.unit.key] = record.metrics[metric]
                continue
            try:
                driver = await self.jobs.drivers.get(s.job.platform)
                window = await logs.read(driver, s.job.ref(), self.jobs.redactor, limit=METRIC_SCAN_LINES)
            except TaoError:
                continue
            for line in reversed([line for line in window.lines if metric in line][-50:]):
                match = pattern.findall(line)
                if match:
                    values[s.unit.key] = float(match[-1])
                    break
        return values

    # ---- wait ----
    async def wait(
        self, workflow_id: str, timeout_s: float, progress: Callable[[float, float, str], Awaitable[None]]
    ) -> WorkflowWaitResult:
        started = time.monotonic()
        deadline = started + timeout_s
        while True:
            await self.advance(workflow_id)
            workflow = self.workflow(workflow_id)
            states = self._states(workflow)
            ended = sum(1 for s in states if s.status in ENDED)
            done = workflow.status not in OPEN_WORKFLOW
            active = [f"{s.unit.key} {s.status}" for s in states if s.job and s.status not in ENDED][:4]
            await progress(
                ended, len(states), f"{ended}/{len(states)} steps ended" + (f" — {', '.join(active)}" if active else "")
            )
            if done or time.monotonic() >= deadline:
                break
            await anyio.sleep(min(DRIVE_INTERVAL_S, max(0.0, deadline - time.monotonic())))
        model = self._status_model(workflow, states, None, await self._progress(states))
        waited = round(time.monotonic() - started, 1)
        hint = model.next if done else f"wait_for_workflow(workflow_id='{workflow_id}') again ({workflow.status})"
        return WorkflowWaitResult(**model.model_dump(exclude={"next"}), done=done, waited_s=waited, next=hint)

    # ---- cancel ----
    async def cancel(self, workflow_id: str) -> WorkflowStatus:
        """Cancel every open step job (each confirmed like cancel_job) and every step not launched yet."""
        workflow = self.workflow(workflow_id)
        if workflow.status in OPEN_WORKFLOW:
            with self.store.transaction() as db:
                db.execute(
                    "UPDATE workflows SET cancel_requested = 1, status = 'Canceling', message = ?, updated_at = ? "
                    "WHERE workflow_id = ? AND status IN ('Running', 'Canceling')",
                    ("cancel requested", time.time(), workflow_id),
                )
            async with self._advancing.setdefault(workflow_id, anyio.Lock()):  # no launch of it is in flight now
                states = self._states(workflow)
                self._set_units([s for s in states if s.status == "Waiting"], "Canceled", "the workflow was canceled")
            open_jobs = [s.job.job_id for s in states if s.job and not s.job.terminal]
            async with anyio.create_task_group() as tg:
                for job_id in open_jobs:
                    tg.start_soon(self.jobs.cancel, job_id)
            await self.advance(workflow_id)
        return await self.status(workflow_id)

    # ---- list ----
    def list(self, status: str | None, limit: int, cursor: str | None) -> WorkflowList:
        sql = (
            "SELECT w.*, (SELECT COUNT(*) FROM workflow_units u WHERE u.workflow_id = w.workflow_id) AS units "
            "FROM workflows w WHERE 1=1"
        )
        params: list[Any] = []
        restricted, owner = principal.visible_owner()
        if restricted:
            sql += " AND principal IS ?"
            params.append(owner)
        if status:
            sql += " AND status = ?"
            params.append(status)
        if cursor:
            created, wid = cursor_codec.decode(cursor, "workflows", float, str)
            sql += " AND (created_at, workflow_id) < (?, ?)"
            params += [float(created), wid]
        sql += " ORDER BY created_at DESC, workflow_id DESC LIMIT ?"
        params.append(limit + 1)
        rows = self.store.query(sql, params)
        page, more = rows[:limit], len(rows) > limit
        next_cursor = (
            cursor_codec.encode("workflows", page[-1]["created_at"], page[-1]["workflow_id"]) if more else None
        )
        return WorkflowList(
            workflows=[
                WorkflowSummary(
                    workflow_id=r["workflow_id"],
                    name=r["name"],
                    status=r["status"],
                    steps=r["units"],
                    created_at=iso(r["created_at"]) or "",
                )
                for r in page
            ],
            next_cursor=next_cursor,
            next=f"list_workflows(cursor='{next_cursor}')" if more else "workflow_status(workflow_id=...) for details",
        )
