"""AutomlService: AutoML runs through NVIDIA's AutoMLRunner, every recommendation an ordinary tao-mcp job.

A run starts only from a confirmed review (a plan of kind "automl"); its row is written before the engine starts;
the engine runs in a worker thread of its own with the run's workspace under the state directory; a restarted
server resumes every unfinished run (same session_id, resume=True) after repairing a stuck resume.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from tao_mcp import cursor as cursor_codec
from tao_mcp.config import positive_seconds, state_dir
from tao_mcp.errors import TaoError
from tao_mcp.models import (
    AutomlParameter,
    AutomlRecommendation,
    AutomlReview,
    AutomlRun,
    AutomlRunList,
    AutomlRunSummary,
    SubmitResult,
)
from tao_mcp.service import principal
from tao_mcp.service.automl import engine, review
from tao_mcp.service.automl.adapter import Detach, Handle, JobServiceSDK, JobShape, StopRun, rec_key
from tao_mcp.service.automl.runs import AutomlRuns, RunRecord
from tao_mcp.service.jobs import JobService, SubmitParams, iso, parse_time_limit
from tao_mcp.service.metadata import actions
from tao_mcp.service.metadata.models import find_model
from tao_mcp.states import JobState

log = logging.getLogger(__name__)
POLL_S = 30.0  # default of TAO_MCP_AUTOML_POLL_S: how often the engine reads its running job
WAIT_STEP_S = 1.0


@dataclass
class AutomlRequest:
    model: str
    platform: str
    metric: str | None = None
    direction: str | None = None
    algorithm: str = "bayesian"
    max_recommendations: int = 8
    max_concurrent: int = 1
    hyperparameters: list[str] | None = None
    param_ranges: dict[str, Any] | None = None
    spec_overrides: dict[str, Any] | None = None
    train_dataset_uri: str | None = None
    eval_dataset_uri: str | None = None
    image: str | None = None
    gpu_count: int = 1
    num_nodes: int = 1
    time_limit: str | int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    secret_env: list[str] = field(default_factory=list)
    results_uri: str | None = None
    idempotency_key: str | None = None


def poll_interval(settings: Mapping[str, str]) -> float:
    return positive_seconds(settings, "TAO_MCP_AUTOML_POLL_S", POLL_S, "30")


class AutomlService:
    def __init__(self, settings: Mapping[str, str], jobs: JobService) -> None:
        self.settings = dict(settings)
        self.jobs = jobs
        self.runs = AutomlRuns(jobs.store)
        self.plans = jobs.plans  # reviews are plans of kind "automl" (service/plans.py)
        self.handles: dict[str, Handle] = {}
        self._tg: anyio.abc.TaskGroup | None = None

    # ---- lifecycle ----
    async def start(self, tg: anyio.abc.TaskGroup) -> None:
        self._tg = tg
        unfinished = self.runs.unfinished()
        if unfinished and not engine.engine_installed():
            log.warning(
                "%d unfinished AutoML run(s) wait for the AutoML engine (pip install 'tao-mcp[automl]')",
                len(unfinished),
            )
            return
        for run in unfinished:
            self._launch_engine(run)

    def detach(self) -> None:
        """Server shutdown: engines stop calling the job service; their backend jobs keep running."""
        for handle in self.handles.values():
            handle.detach.set()

    def workspace(self, run_id: str) -> Path:
        return state_dir(self.settings) / "automl" / run_id

    # ---- review and start ----
    async def _review(self, req: AutomlRequest) -> tuple[AutomlReview, dict[str, Any]]:
        record = find_model(self.settings, req.model)
        if not record.automl_capable("train"):
            raise TaoError(
                "E_AUTOML_NOT_CAPABLE",
                f"{record.skill} train is not AutoML-capable (automl_enabled={record.automl_enabled}, "
                f"train schema valid={record.schema_state('train')[1]})",
                "list_models(scope='automl') names the models AutoML can tune; for one plain run use "
                "submit_job(..., automl_policy='off')",
            )
        if req.max_concurrent != 1:
            raise TaoError(
                "E_BAD_INPUT",
                f"max_concurrent={req.max_concurrent}: this AutoML engine runs one recommendation at a time",
                "give max_concurrent=1",
            )
        metric = req.metric or record.data.get("automl_metric")
        if not metric:
            raise TaoError(
                "E_BAD_INPUT",
                f"no metric was given and {record.skill}'s metadata names none (automl_metric)",
                "call start_automl(..., metric=<the kpi the model writes to status.json, e.g. mAP>, direction=...), "
                "or pass automl_policy='off' to submit_job for one plain run",
            )
        direction = review.direction_of(str(metric), req.direction or record.data.get("automl_direction"))
        assert record.directory is not None  # automl_capable: a packaged schema
        schema = json.loads((record.directory / "schemas" / "train.schema.json").read_text())
        space = review.search_space(schema, req.hyperparameters, req.param_ranges)
        minutes = parse_time_limit(req.time_limit)
        # One plain dry run through the job service validates the platform, options, credentials and image.
        dry = await self.jobs.submit(self._params(req, dry_run=True))
        plan = actions.action_plan(
            self.settings,
            req.model,
            "train",
            spec_overrides=req.spec_overrides,
            gpu_count=req.gpu_count,
            image=req.image,
        )
        datasets = {k: v for k, v in (req.spec_overrides or {}).items() if isinstance(v, str) and "://" in v}
        for name in ("train_dataset_uri", "eval_dataset_uri"):
            if getattr(req, name):
                datasets[name] = getattr(req, name)
        root = dry.results_location.rsplit("/", 1)[0] if dry.results_location else None
        notes = [] if minutes else ["no time_limit: the GPU-hours bound is unbounded; give time_limit to bound it"]
        rev = AutomlReview(
            model=record.skill,
            platform=dry.platform,
            image=plan.image or "",
            gpu_count=req.gpu_count,
            num_nodes=req.num_nodes,
            time_limit_minutes=minutes,
            results_root=root,
            dataset_keys=datasets,
            algorithm=req.algorithm,
            max_recommendations=req.max_recommendations,
            max_concurrent=req.max_concurrent,
            metric=str(metric),
            direction=direction,
            search_space=space,
            gpu_hours_upper_bound=review.gpu_hours(req.max_recommendations, req.gpu_count, req.num_nodes, minutes),
            notes=notes,
        )
        outputs = plan.outputs if isinstance(plan.outputs, dict) else {}
        launch = {
            "request": asdict(req) | {"model": record.skill, "platform": dry.platform, "image": rev.image},
            "review": rev.model_dump(mode="json"),
            "skill_dir": str(record.directory),
            "outputs": sorted(outputs),
        }
        return rev, launch

    def _params(self, req: AutomlRequest, *, dry_run: bool) -> SubmitParams:
        return SubmitParams(
            platform=req.platform,
            command="",
            model=req.model,
            action="train",
            image=req.image,
            spec_overrides=req.spec_overrides,
            gpu_count=req.gpu_count,
            num_nodes=req.num_nodes,
            time_limit=req.time_limit,
            options=dict(req.options),
            env=dict(req.env),
            secret_env=list(req.secret_env),
            results_uri=req.results_uri,
            dry_run=dry_run,
        )

    async def plan(self, req: AutomlRequest) -> AutomlRun:
        """The review and a plan_id to start it with: nothing is launched."""
        engine.require_engine()
        rev, launch = await self._review(req)
        plan_id = self._create_plan(launch, rev)
        return self._model_of_review(rev, plan_id, "review only: nothing was launched")

    def _create_plan(self, launch: dict[str, Any], rev: AutomlReview) -> str:
        summary = rev.model_dump(mode="json")
        plan = self.plans.create("automl", launch, {"review.json": json.dumps(summary, indent=2)}, summary)
        return str(plan.plan_id)

    def _take_plan(self, plan_id: str) -> dict[str, Any]:
        return dict(self.plans.take(plan_id, "automl").arguments)

    def _model_of_review(self, rev: AutomlReview, plan_id: str, message: str) -> AutomlRun:
        return AutomlRun(
            run_id=None,
            state="planned",
            model=rev.model,
            platform=rev.platform,
            algorithm=rev.algorithm,
            metric=rev.metric,
            direction=rev.direction,
            max_recommendations=rev.max_recommendations,
            review=rev,
            plan_id=plan_id,
            message=message,
            next=f"show this review to the user; once they confirm, start_automl(plan_id='{plan_id}')",
        )

    async def confirm_required(self, req: AutomlRequest) -> TaoError:
        """A launch asked without a confirmed plan: the review (and its plan_id) inside E_CONFIRM_REQUIRED."""
        run = await self.plan(req)
        rev = run.review
        assert rev is not None
        return TaoError(
            "E_CONFIRM_REQUIRED",
            f"an AutoML run launches up to {rev.max_recommendations} GPU jobs and starts only from a confirmed "
            f"review. Review: {render_review(rev)}",
            f"show this review to the user, then call again with plan_id='{run.plan_id}'",
        )

    async def start_from_plan(self, plan_id: str, idempotency_key: str | None = None) -> AutomlRun:
        engine.require_engine()
        launch = self._take_plan(plan_id)
        key = principal.scoped_key(idempotency_key or plan_id)
        existing = self.runs.by_idempotency_key(key)
        if existing:
            return self._model(existing, "an earlier start of this plan answered; nothing new was launched")
        now = time.time()
        run = self.runs.insert(
            RunRecord(
                run_id="automl-" + uuid.uuid4().hex[:12],
                principal=principal.owner(),
                state="running",
                created_at=now,
                updated_at=now,
                request=launch,
                message="starting",
                idempotency_key=key,
            )
        )
        if run.state == "running" and run.run_id not in self.handles:
            self._launch_engine(run)
        return self._model(run, "AutoML run started")

    # ---- submit_job's AutoML route ----
    async def route(self, p: SubmitParams, policy: str) -> SubmitResult | None:
        """submit_job(model, action='train'): an AutoML-capable model goes through AutoML unless the caller said
        automl_policy='off' (a model without AutoML or without a packaged train schema runs plainly). The route
        never launches by itself: a dry run answers the review and its plan_id; any other call answers
        E_CONFIRM_REQUIRED with the review. None = the plain path."""
        if policy == "off" or p.action != "train" or not p.model:
            return None
        record = find_model(self.settings, p.model)
        if not record.automl_capable("train"):
            return None
        engine.require_engine()
        declared = [k for k in ("command", "args", "inputs", "outputs", "specs") if getattr(p, k)]
        if declared:
            raise TaoError(
                "E_BAD_INPUT",
                f"the AutoML route takes spec_overrides, not {', '.join(declared)}",
                "give fixed spec values in spec_overrides, or pass automl_policy='off' for one plain run",
            )
        req = AutomlRequest(
            model=p.model,
            platform=p.platform,
            image=p.image,
            gpu_count=p.gpu_count,
            num_nodes=p.num_nodes,
            time_limit=p.time_limit,
            options=dict(p.options),
            env=dict(p.env),
            secret_env=list(p.secret_env),
            spec_overrides=p.spec_overrides,
            results_uri=p.results_uri,
            idempotency_key=p.idempotency_key,
        )
        if not p.dry_run:
            raise await self.confirm_required(req)
        run = await self.plan(req)
        return SubmitResult(
            job_id=None,
            plan_id=run.plan_id,
            platform=run.platform,
            status=JobState.PENDING,
            backend_name="",
            dry_run=True,
            automl=run,
            message=f"{run.model} train is AutoML-capable: this is the review of an AutoML run (nothing launched; "
            "automl_policy='off' runs one plain job instead)",
            next=f"show this review to the user; once they confirm, start_automl(plan_id='{run.plan_id}')",
        )

    # ---- the engine thread ----
    def _launch_engine(self, run: RunRecord) -> None:
        if self._tg is None:
            raise RuntimeError("AutomlService.start() was not called")
        handle = Handle(run.run_id)
        if run.stop_requested:
            handle.stop.set()
        self.handles[run.run_id] = handle
        self._tg.start_soon(self._engine_task, run, handle, name=f"automl-{run.run_id}")

    async def _engine_task(self, run: RunRecord, handle: Handle) -> None:
        try:
            await anyio.to_thread.run_sync(
                self._engine_thread, run, handle, abandon_on_cancel=True, limiter=anyio.CapacityLimiter(1)
            )
        finally:
            handle.finished.set()

    def _engine_thread(self, run: RunRecord, handle: Handle) -> None:
        launch, req = run.request, run.request["request"]
        workspace = self.workspace(run.run_id)
        workspace.mkdir(parents=True, exist_ok=True, mode=0o700)
        rev = launch["review"]

        def sync(message: str | None = None) -> None:
            recs = engine.read_recommendations(workspace, run.run_id, handle.jobs)
            self.runs.set_recommendations(run.run_id, recs, message or progress_line(rev, recs))

        def job_of_rec(rec_id: int) -> str | None:
            found = self.jobs.store.by_idempotency_key(principal_key(run.principal, rec_key(run.run_id, rec_id)))
            return found.job_id if found else None

        try:
            notes = engine.repair_resume(workspace, run.run_id, job_of_rec, keep_cancel=run.stop_requested)
            for note in notes:
                log.info("AutoML %s resume repair: %s", run.run_id, note)
            runner_cls = engine.load_runner()
            minutes = rev.get("time_limit_minutes")
            shape = JobShape(
                platform=req["platform"],
                model=req["model"],
                image=req["image"],
                gpu_count=req["gpu_count"],
                num_nodes=req["num_nodes"],
                time_limit=minutes,
                options=req["options"],
                env=req["env"],
                secret_env=req["secret_env"],
                results_uri=req["results_uri"],
                outputs=tuple(launch["outputs"]),
            )
            sdk = JobServiceSDK(self.jobs, shape, handle, run.principal, sync)
            skill = engine.skill_copy(workspace, Path(launch["skill_dir"]), req["image"])
            runner = runner_cls(sdk, str(skill), action="train", poll_interval=poll_interval(self.settings))

            def on_recommendation(rec: Any) -> None:
                handle.current_rec = int(rec.id)
                sync()

            def on_result(rec: Any, metric: Any, status: str) -> None:
                sync()
                if handle.stop.is_set():
                    raise StopRun()

            space = [AutomlParameter(**p) for p in rev["search_space"]]
            result = runner.run(
                train_dataset_uri=req.get("train_dataset_uri") or "",
                eval_dataset_uri=req.get("eval_dataset_uri") or "",
                image=req["image"],
                automl_settings={
                    "algorithm": rev["algorithm"],
                    "metric": rev["metric"],
                    "direction": rev["direction"],
                    "automl_max_recommendations": rev["max_recommendations"],
                    "session_id": run.run_id,
                    "automl_delete_intermediate_ckpt": False,
                    "run_baseline": False,
                    "run_final_evaluation": False,
                },
                automl_hyperparameters=[p.name for p in space],
                custom_param_ranges=review.engine_ranges(space) or None,
                workspace_path=str(workspace),
                spec_overrides=req.get("spec_overrides") or None,
                resume=True,  # on an empty workspace the engine starts fresh; the path is used as given
                eval_fn=lambda rec, job_id: sdk.metric(job_id, rev["metric"]),
                on_recommendation=on_recommendation,
                on_result=on_result,
                gpu_count=req["gpu_count"],
            )
            best = result.get("best") or {}
            sync()
            self.runs.finish(
                run.run_id,
                "complete",
                f"complete: best {rev['metric']} {best.get('metric_value')} (rec {best.get('rec_id')}, job "
                f"{best.get('job_id')})",
            )
        except Detach:
            log.info("AutoML %s detached (the server is stopping); a restarted server resumes it", run.run_id)
        except StopRun:
            sync()
            self.runs.finish(run.run_id, "stopped", "stopped by stop_automl; its running job was canceled")
        except TaoError as exc:
            sync()
            self.runs.finish(run.run_id, "failed", exc.cause, str(exc))
        except Exception as exc:  # the engine's own failures end the run, coded
            sync()
            if type(exc).__name__ == "MetricExtractorError":
                err = TaoError(
                    "E_AUTOML_NO_METRIC",
                    f"three recommendations in a row finished without a readable {rev['metric']!r} (the engine "
                    "reads status.json kpi records from the job's log)",
                )
            else:
                log.warning("AutoML %s failed: %s", run.run_id, exc, exc_info=True)
                err = TaoError("E_AUTOML_FAILED", f"the AutoML engine stopped: {str(exc)[:300]}")
            self.runs.finish(run.run_id, "failed", err.cause, str(err))

    # ---- reads ----
    def record(self, run_id: str) -> RunRecord:
        return principal.visible(
            self.runs.get(run_id),
            "E_UNKNOWN_AUTOML_RUN",
            f"no AutoML run with id '{run_id}' in this server's store",
            "list_automl_runs() lists the runs",
        )

    def _model(self, run: RunRecord, message: str | None = None) -> AutomlRun:
        rev = AutomlReview.model_validate(run.request["review"])
        recs = [AutomlRecommendation.model_validate(r) for r in run.recommendations]
        return AutomlRun(
            run_id=run.run_id,
            state=run.state,
            model=rev.model,
            platform=rev.platform,
            algorithm=rev.algorithm,
            metric=rev.metric,
            direction=rev.direction,
            max_recommendations=rev.max_recommendations,
            budget_used=sum(r.status in engine.TERMINAL_RECS for r in recs),
            best=best_of(recs, rev.direction),
            recommendations=recs[-20:],
            message=message or run.message,
            error=run.error,
            review=None,
            created_at=iso(run.created_at),
            next=next_hint(run),
        )

    async def status(self, run_id: str) -> AutomlRun:
        return self._model(self.record(run_id))

    async def wait(self, run_id: str, timeout_s: float, progress: Callable[[float, str], Awaitable[None]]) -> AutomlRun:
        started = time.monotonic()
        run = self.record(run_id)
        while not run.finished and time.monotonic() - started < timeout_s:
            await progress(time.monotonic() - started, run.message)
            await anyio.sleep(min(WAIT_STEP_S, max(0.0, timeout_s - (time.monotonic() - started))))
            run = self.record(run_id)
        model = self._model(run)
        return model.model_copy(update={"done": run.finished, "waited_s": round(time.monotonic() - started, 1)})

    async def stop(self, run_id: str, confirm_within_s: float = 45.0) -> AutomlRun:
        """Stop a run: its running recommendation is canceled on the backend (confirmed) and the run ends."""
        run = self.record(run_id)
        if run.finished:
            return self._model(run, f"the run had already ended ({run.state}); nothing to stop")
        self.runs.request_stop(run_id)
        handle = self.handles.get(run_id)
        if handle is None:  # no engine here (not installed): nothing runs, the run ends now
            self.runs.finish(run_id, "stopped", "stopped by stop_automl (no engine was running it)")
            return self._model(self.record(run_id))
        handle.stop.set()
        with anyio.move_on_after(confirm_within_s):
            while not handle.finished.is_set():
                await anyio.sleep(0.5)
        run = self.record(run_id)
        running = [r for r in run.recommendations if r.get("job_id") and r.get("status") == "running"]
        evidence = []
        for rec in run.recommendations[-3:]:
            if rec.get("job_id") and not str(rec["job_id"]).startswith("failed-"):
                job = await self.jobs.status(rec["job_id"])
                evidence.append(f"rec {rec['rec_id']} job {job.job_id}: {job.status}")
        message = run.message if run.finished else "stop requested; the engine is still canceling its job"
        if evidence:
            message += "; backend: " + ", ".join(evidence)
        if running and not run.finished:
            message += "; call automl_status again"
        return self._model(run, message)

    def list(self, limit: int, cursor: str | None) -> AutomlRunList:
        before = None
        if cursor:
            created, run_id = cursor_codec.decode(cursor, "automl", float, str)
            before = (float(created), str(run_id))
        rows = self.runs.page(limit=limit + 1, before=before, owned_by=principal.visible_owner())
        page, more = rows[:limit], len(rows) > limit
        next_cursor = cursor_codec.encode("automl", page[-1].created_at, page[-1].run_id) if more else None
        summaries = []
        for run in page:
            model = self._model(run)
            summaries.append(
                AutomlRunSummary(
                    run_id=run.run_id,
                    state=run.state,
                    model=model.model,
                    platform=model.platform,
                    metric=model.metric,
                    budget_used=model.budget_used,
                    max_recommendations=model.max_recommendations,
                    best_metric=model.best.metric if model.best else None,
                    created_at=iso(run.created_at) or "",
                )
            )
        return AutomlRunList(
            runs=summaries,
            next_cursor=next_cursor,
            next=f"list_automl_runs(cursor='{next_cursor}')" if more else "automl_status(run_id=...) for one run",
        )


def principal_key(owner: str | None, key: str) -> str:
    with principal.acting_as(principal.Principal(owner) if owner else None):
        return principal.scoped_key(key)


def best_of(recs: list[AutomlRecommendation], direction: str) -> AutomlRecommendation | None:
    scored = [r for r in recs if r.metric is not None and r.status in ("success", "done")]
    if not scored:
        return None
    pick = max if direction == "maximize" else min
    return pick(scored, key=lambda r: r.metric if r.metric is not None else 0.0)


def progress_line(rev: Mapping[str, Any], recs: list[dict[str, Any]]) -> str:
    """ "rec 3/8 running — best val_acc 0.81 (rec 2)" """
    models = [AutomlRecommendation.model_validate(r) for r in recs]
    best = best_of(models, str(rev["direction"]))
    current = models[-1] if models else None
    head = f"rec {current.rec_id + 1}/{rev['max_recommendations']} {current.status}" if current else "starting"
    tail = f" — best {rev['metric']} {best.metric:.4g} (rec {best.rec_id})" if best and best.metric is not None else ""
    return head + tail


def render_review(rev: AutomlReview) -> str:
    space = "; ".join(
        f"{p.name} {p.type} [{p.min}, {p.max}]" if p.options is None else f"{p.name} in {p.options}"
        for p in rev.search_space
    )
    hours = "unbounded (no time_limit)" if rev.gpu_hours_upper_bound is None else f"{rev.gpu_hours_upper_bound}"
    return (
        f"model {rev.model} train on {rev.platform}, image {rev.image}, {rev.gpu_count} GPU x {rev.num_nodes} node, "
        f"time limit {rev.time_limit_minutes} min, results under {rev.results_root}, datasets {rev.dataset_keys}, "
        f"{rev.algorithm} with {rev.max_recommendations} recommendations ({rev.max_concurrent} at a time), "
        f"{rev.direction} {rev.metric}, search space: {space}; GPU-hours at most {hours}"
    )


def next_hint(run: RunRecord) -> str:
    """The next call, with the literal arguments the agent needs (the walk's contract)."""
    if run.state in ("running", "stopping"):
        return f"wait_for_automl(run_id='{run.run_id}')"
    jobs = [r["job_id"] for r in run.recommendations if r.get("job_id") and not str(r["job_id"]).startswith("failed-")]
    if run.state == "failed":
        failed = [
            r["job_id"]
            for r in run.recommendations
            if r.get("status") in ("failure", "error") and r.get("job_id") in jobs
        ]
        if failed:
            return f"failure_analysis(job_id='{failed[-1]}') explains the last failed recommendation"
        return f"automl_status(run_id='{run.run_id}') lists the recommendations"
    review = run.request.get("review") or {}
    recs = [AutomlRecommendation.model_validate(r) for r in run.recommendations]
    best = best_of(recs, str(review.get("direction", "maximize")))
    if best and best.job_id:
        return f"job_status(job_id='{best.job_id}') of the best recommendation: its results location holds the model"
    if jobs:
        return f"job_logs(job_id='{jobs[-1]}') of the last recommendation"
    return "list_automl_runs() lists the runs"
