"""The job service: everything that is the same on every platform lives here once.

Tools call this; this calls drivers through the shared pollers. It mints job ids, writes the record
before the backend is touched, enforces idempotency, keeps credentials out of every output, and turns
backend facts into the public models.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import anyio

from tao_mcp import cursor as cursor_codec
from tao_mcp.drivers import DRIVERS, platform_models
from tao_mcp.drivers.base import (
    Driver,
    Evidence,
    HasEphemeralResults,
    HasRequestCheck,
    HasRunnerPhase,
    LaunchRequest,
    LogMark,
    LogMode,
)
from tao_mcp.entrypoint import EntrypointPlan, build_entrypoint, runner_blob
from tao_mcp.errors import BackendUnreachable, TaoError
from tao_mcp.models import (
    FailureAnalysis,
    JobList,
    JobStatus,
    JobSummary,
    LogPage,
    SubmitResult,
    WaitResult,
)
from tao_mcp.secret_names import is_secret_name
from tao_mcp.service import logs, monitor, principal
from tao_mcp.service import progress as training
from tao_mcp.service.crashpoints import crashpoint
from tao_mcp.service.leases import LaunchLeases
from tao_mcp.service.metadata import actions
from tao_mcp.service.metadata.actions import ActionPlan
from tao_mcp.service.metadata.platforms import PlatformRecord, find_platform, require_credentials
from tao_mcp.service.plans import Plan, PlanService, resource_names
from tao_mcp.service.policy import JobPolicy
from tao_mcp.service.poller import LOST_LAUNCH_GRACE_S, POLL_INTERVAL_S, PlatformPoller
from tao_mcp.service.readiness import Readiness, unreachable_error
from tao_mcp.service.redaction import Redactor
from tao_mcp.service.registry import DriverRegistry
from tao_mcp.service.resume import resume_location
from tao_mcp.service.store import JobRecord, JobStore
from tao_mcp.service.subscriptions import Subscriptions
from tao_mcp.service.watch import LAST_LINE, RUNNER_PHASE, JobWatches
from tao_mcp.states import OPEN, JobState

log = logging.getLogger(__name__)

JOB_LABEL = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TIME_LIMIT = re.compile(r"^(?:(\d+)-)?(\d{1,2}):(\d{2})(?::(\d{2}))?$")
RESERVED_ENV = {"TAO_JOB_ID", "TAO_RESULTS_ROOT", "TAO_RESUME_FROM"}
WAIT_POLL_S = 2.0
LOG_HINT_EVERY_S = 10.0
ANALYSIS_LOG_LINES = 400
RUNNER_SCAN_LINES = 500  # the runner's latest progress line is looked for among the last lines only
RUNNER_TAG = "[tao-runner]"
UNREACHABLE_GRACE_S = 300.0  # default of TAO_MCP_UNREACHABLE_GRACE_S
# A job_logs page carries its lines twice (text and structured content): ~12k chars of lines keeps a default page
# under the 8k-token result budget (chars / 4) whatever the line length; a larger tail may fill up to ~45k.
LOG_DEFAULT_TAIL = 200
LOG_PAGE_CHARS = 12_000
LOG_PAGE_CHARS_MAX = 45_000
NUMBER_CHARS = 16  # a numbered line's number: its text prefix and its entry in line_numbers


@dataclass
class SubmitParams:
    platform: str
    command: str
    image: str | None = None
    gpu_count: int = 1
    num_nodes: int = 1
    env: dict[str, str] = field(default_factory=dict)
    secret_env: list[str] = field(default_factory=list)
    time_limit: str | int | None = None
    name: str | None = None
    idempotency_key: str | None = None
    dry_run: bool = False
    options: dict[str, Any] = field(default_factory=dict)  # platform options (SLURM: partition, account, ...)
    specs: dict[str, Any] | None = None
    args: dict[str, Any] | None = None
    inputs: dict[str, Any] | None = None
    outputs: dict[str, Any] | list[str] | None = None
    config_format: str = "yaml"
    upload_excludes: list[str] | None = None
    results_uri: str | None = None
    model: str | None = None  # a TAO model action from the catalog supplies command, data and image
    action: str | None = None
    backend: str = "auto"
    spec_overrides: dict[str, Any] | None = None
    workflow: dict[str, str] | None = None  # {workflow_id, step}: set by service/workflows.py for a step's job
    resume_from: str | None = None  # an earlier job id: resume from its latest checkpoint
    monitor: dict[str, Any] | None = None  # long-running monitoring: {"enabled", "interval_minutes"}


@dataclass(frozen=True)
class PreparedLaunch:
    request: LaunchRequest
    platform: str
    driver: Driver
    plan: EntrypointPlan
    action_plan: ActionPlan | None
    results_location: str | None
    secret_names: set[str]  # server variables whose values the job receives (kept with the job record)
    warnings: tuple[str, ...] = ()  # returned with the submit result (e.g. results that die with a Brev instance)

    def result(self, status: JobState, message: str, hint: str, **extra: Any) -> SubmitResult:
        return SubmitResult(
            warnings=list(self.warnings),
            job_id=self.request.job_id,
            platform=self.platform,
            status=status,
            backend_name=self.request.backend_name,
            results_location=self.results_location,
            outputs=self.plan.output_uris(self.results_location) or None,
            message=message,
            next=hint,
            **extra,
        )


def iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts else None


def human_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def parse_time_limit(value: str | int | None) -> int | None:
    """Minutes from an int, "90", "HH:MM[:SS]" or "D-HH:MM[:SS]"."""
    if value is None or value == "":
        return None
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        minutes = int(value)
    else:
        match = TIME_LIMIT.match(str(value).strip())
        if not match:
            raise TaoError(
                "E_BAD_INPUT",
                f"time_limit {value!r} is not a duration",
                "give minutes (e.g. 90) or HH:MM[:SS] or D-HH:MM[:SS]",
            )
        days, hours, mins, secs = (int(g) if g else 0 for g in match.groups())
        minutes = days * 1440 + hours * 60 + mins + (1 if secs else 0)
    if minutes < 1:
        raise TaoError("E_BAD_INPUT", "time_limit must be at least 1 minute", "give time_limit >= 1")
    return minutes


class JobService:
    def __init__(
        self, settings: Mapping[str, str], store: JobStore, redactor: Redactor, drivers: DriverRegistry
    ) -> None:
        self.settings = dict(settings)
        self.store = store
        self.redactor = redactor
        self.drivers = drivers
        self._pollers: dict[str, PlatformPoller] = {}
        self._task_group: anyio.abc.TaskGroup | None = None
        self.leases = LaunchLeases(store.path.with_name("launches.lock"))
        self.readiness = Readiness(self.settings, drivers)
        self.watches = JobWatches()  # one reader per job: facts shared by every waiter and status call
        self.subscriptions = Subscriptions()  # resource subscriptions: told of state changes and new jobs
        self.plans = PlanService(self.settings, store)

        self.updates = monitor.UpdateClock()  # wait_for_job(until="update"): the interval boundary last reported

    # ---- lifecycle ----
    async def start(self, task_group: anyio.abc.TaskGroup) -> None:
        self._task_group = task_group
        self.subscriptions.start(
            task_group, self.latest_progress, lambda ids: anyio.to_thread.run_sync(self.store.statuses, ids)
        )
        # Values forwarded with secret_env stay redacted for the life of their jobs, across restarts: the
        # store keeps the names, the values come from the current environment.
        self.redactor.add_settings(self.settings, self.store.forwarded_secret_names())
        # Open records from an earlier process are watched (and reconciled by name) straight away.
        for platform in self.store.open_platforms():
            self.poller(platform).kick()

    @cached_property
    def policy(self) -> JobPolicy:
        return JobPolicy(self.settings)  # built at the first submit: a bad policy setting fails that call, coded

    def poller(self, platform: str) -> PlatformPoller:
        if platform not in self._pollers:
            poller = PlatformPoller(
                platform,
                self.store,
                lambda: self.drivers.get(platform),
                self.subscriptions.observed,
                watched=self.subscriptions.active,
            )
            self._pollers[platform] = poller
            if self._task_group is None:
                raise RuntimeError("JobService.start() was not called")
            self._task_group.start_soon(poller.run, name=f"poller-{platform}")
        return self._pollers[platform]

    def record(self, job_id: str) -> JobRecord:
        return principal.visible(
            self.store.get(job_id),
            "E_UNKNOWN_JOB",
            f"no job with id '{job_id}' in this server's store",
            "use list_jobs() to find job ids (ids are the ones submit_job returned)",
        )

    # ---- submit ----
    def _validate(self, p: SubmitParams) -> tuple[PlatformRecord, int | None]:
        record = find_platform(p.platform, self.settings)
        if record.name not in DRIVERS:
            known = ", ".join(sorted(DRIVERS))
            raise TaoError(
                "E_PLATFORM_NOT_AVAILABLE",
                f"{record.name} is listed by the skill bank, but this tao-mcp version has no driver for it",
                f"submit to one of: {known} (list_platforms shows which are ready)",
            )
        if p.name is not None and not JOB_LABEL.match(p.name):
            raise TaoError(
                "E_BAD_INPUT",
                f"name {p.name!r} has characters outside [A-Za-z0-9_.-] or is too long",
                "use up to 64 letters, digits, '_', '.', '-'",
            )
        if not p.command or not p.command.strip():
            raise TaoError("E_BAD_INPUT", "command is empty", "give the shell command the container should run")
        if p.gpu_count < 0:
            raise TaoError("E_BAD_INPUT", f"gpu_count is {p.gpu_count}", "give gpu_count >= 0 (0 = CPU only)")
        if p.num_nodes < 1:
            raise TaoError("E_BAD_INPUT", f"num_nodes is {p.num_nodes}", "give num_nodes >= 1")
        secret_values = {v for n, v in self.settings.items() if v and is_secret_name(n)}
        for name, value in p.env.items():
            if not ENV_NAME.match(name):
                raise TaoError(
                    "E_BAD_INPUT",
                    f"env name {name!r} is not a valid variable name",
                    "use letters, digits and underscores, not starting with a digit",
                )
            if name in RESERVED_ENV:
                raise TaoError("E_BAD_INPUT", f"env name {name} is set by tao-mcp", "remove it from env")
            if not isinstance(value, str):
                raise TaoError("E_BAD_INPUT", f"env {name} is not a string", "pass every env value as a string")
            if (value in secret_values and len(value) >= 4) or self.redactor.contains_secret(value):
                raise TaoError(
                    "E_SECRET_IN_ENV",
                    f"the value of env {name} is a credential",
                    f"pass credentials by name: secret_env=['<VARIABLE>'] forwards it from the server environment "
                    f"without the value ever appearing (and remove {name} from env)",
                )
        for name in p.secret_env:
            if not ENV_NAME.match(name):
                raise TaoError(
                    "E_BAD_INPUT",
                    f"secret_env name {name!r} is not a variable name",
                    "list the names of server environment variables to forward, e.g. ['NGC_KEY']",
                )
        self.policy.check_secret_env(p.secret_env)  # before presence: no oracle on other variables
        missing = [name for name in p.secret_env if not self.settings.get(name)]
        if missing:
            raise TaoError(
                "E_MISSING_CREDENTIALS",
                f"secret_env names {', '.join(missing)}, which the server environment does not set",
                "set them in the server environment or ~/.config/tao/.env and restart the server, "
                "or drop them from secret_env",
            )
        require_credentials(record, self.settings)
        return record, parse_time_limit(p.time_limit)

    def _digest(self, p: SubmitParams) -> str:
        facts = {k: v for k, v in p.__dict__.items() if k not in ("idempotency_key", "dry_run")}
        return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()

    def _model_action(self, p: SubmitParams) -> ActionPlan | None:
        """submit_job(model=..., action=...): the action record supplies the command, mode, data and image."""
        if not (p.model or p.action):
            if p.spec_overrides:
                raise TaoError("E_BAD_INPUT", "spec_overrides needs model and action", "add model= and action=")
            return None
        if not (p.model and p.action):
            raise TaoError("E_BAD_INPUT", "model and action go together", "give both (list_models shows them)")
        declared = [k for k in ("command", "args", "inputs", "outputs", "upload_excludes") if getattr(p, k)]
        if declared:
            raise TaoError(
                "E_BAD_INPUT",
                f"{', '.join(declared)} cannot be combined with model/action: the model's action record declares them",
                "drop them (change the spec with specs / spec_overrides), or drop model/action to run a command",
            )
        plan = actions.action_plan(
            self.settings,
            p.model,
            p.action,
            specs=p.specs,
            spec_overrides=p.spec_overrides,
            gpu_count=p.gpu_count,
            image=p.image,
            backend=p.backend,
        )
        if not plan.image:
            raise TaoError(
                "E_NO_IMAGE", f"no image is declared for {plan.model} {plan.action}", "pass image=<uri> to submit_job"
            )
        p.command, p.image, p.config_format = plan.command, plan.image, plan.config_format
        return plan

    async def submit_plan(self, plan_id: str, given: SubmitParams) -> SubmitResult:
        """submit_job(plan_id=...): launch exactly the plan the user confirmed, once.

        Besides plan_id only idempotency_key and a platform equal to the plan's may be given: any other argument
        would launch something the user did not see. A plan launches at most once (the job id is minted by the
        dry run); submitting it again answers with that job, even after the plan expired.
        """
        plan = self.plans.get(plan_id, "job", allow_expired=True)
        launched = self.store.get(plan.arguments["job_id"])
        if launched is not None and principal.may_see(launched.principal):
            return self._reused(launched, launched.request_digest).model_copy(
                update={"plan_id": plan_id, "message": "this plan was launched already; nothing new was launched"}
            )
        plan = self.plans.take(plan_id, "job")
        params = SubmitParams(**plan.arguments["params"])
        defaults = SubmitParams(platform="", command="")
        extra = [
            f.name
            for f in fields(SubmitParams)
            if f.name not in ("platform", "idempotency_key") and getattr(given, f.name) != getattr(defaults, f.name)
        ]
        if given.platform and find_platform(given.platform, self.settings).name != plan.summary["platform"]:
            extra.insert(0, "platform")
        if extra:
            raise TaoError(
                "E_BAD_INPUT",
                f"{', '.join(extra)} given with plan_id: a plan launches exactly what its dry run showed",
                f"call submit_job(plan_id='{plan_id}') alone, or dry run again with the change and confirm that plan",
            )
        params.dry_run, params.idempotency_key = False, given.idempotency_key
        return await self.submit(params, confirmed=plan)

    async def submit(self, p: SubmitParams, *, confirmed: Plan | None = None, keep_plan: bool = True) -> SubmitResult:
        asked = copy.deepcopy(p)  # a plan stores the arguments as given (the action record fills p in below)
        action_plan = self._model_action(p)
        platform_record, minutes = self._validate(p)
        monitor.monitor_choice(p.monitor, self.settings)  # a bad monitor is refused before anything happens
        p.platform = platform_record.name
        digest = self._digest(p)
        job_id = confirmed.arguments["job_id"] if confirmed else None
        if confirmed is not None:
            await self._check_plan(confirmed, p, action_plan, minutes)
        if p.idempotency_key and not p.dry_run:
            existing = self.store.by_idempotency_key(principal.scoped_key(p.idempotency_key))
            if existing:
                resumed = await self._resume_interrupted(existing, p, action_plan, minutes, digest)
                return resumed or self._reused(self.record(existing.job_id), digest)
        if not p.dry_run:
            # Fail fast, before anything is recorded or sent: a backend that does not answer its cheap probe.
            reading = await self.readiness.check(platform_record, recheck_unreachable=True)
            if reading.state == "unreachable":
                raise reading.error or unreachable_error(platform_record.name, reading)
        launch = await self._prepare(p, action_plan, minutes, job_id=job_id)
        if p.dry_run:
            return await self._dry_run(launch, asked, keep_plan)
        record = JobRecord.launching(
            launch.request,
            platform=p.platform,
            digest=digest,
            idempotency_key=principal.scoped_key(p.idempotency_key) if p.idempotency_key else None,
            principal=principal.owner(),
            command=self.redactor.text(p.command),
            results_location=launch.results_location,
            facts={
                "gpu_count": p.gpu_count,
                "num_nodes": p.num_nodes,
                "time_limit_minutes": minutes,
                "name": p.name,
                "model": p.model,
                "action": p.action,
                "env_names": sorted(p.env),
                "secret_env": sorted(launch.request.secret_env),
                "secret_names": sorted(launch.secret_names),
                "mode": launch.plan.mode,
                "inputs": p.inputs,
                "outputs": p.outputs,
                "output_uris": launch.plan.output_uris(launch.results_location),
                "workflow": p.workflow,
                "resume_from": p.resume_from,
                "plan_id": confirmed.plan_id if confirmed else None,
                "monitor": monitor.monitor_choice(p.monitor, self.settings),
            },
        )
        crashpoint("submit.before_record")
        stored = self.store.insert(record)  # the record exists before the backend is touched
        if stored.job_id != record.job_id:  # a concurrent submit with the same idempotency key won
            return self._reused(stored, digest)
        with self.leases.hold(record.job_id):
            crashpoint("submit.after_record")
            result = await self._launch(record, launch)
        return result.model_copy(update={"plan_id": confirmed.plan_id}) if confirmed else result

    async def _launch(self, record: JobRecord, launch: PreparedLaunch) -> SubmitResult:
        """Launch a recorded job once (the caller holds its lease) and store the backend id."""
        crashpoint("submit.during_launch")
        try:
            backend_id = await launch.driver.launch(launch.request)
        except BackendUnreachable as exc:
            self.readiness.forget(launch.platform)
            if exc.sent is False:
                # The backend went away between the probe and the launch, and the driver knows the job-creating
                # request never left (no connection, or an earlier step failed): nothing to reconcile.
                self.store.forget_unsent(record.job_id)
                raise TaoError(
                    "E_BACKEND_UNREACHABLE",
                    f"{exc.cause}; nothing was sent, so no job was launched or recorded",
                    f"{exc.fix} (nothing needs cleaning up)",
                ) from None
            # The request went out and its answer was lost (the probe just answered): the launch may or may not
            # have happened. The poller reconciles by name; never launch twice.
            self.poller(launch.platform).kick()
            return launch.result(
                JobState.UNKNOWN,
                f"{exc.cause}; the launch request was sent but its answer was lost, so the launch outcome is unknown: "
                f"it is reconciled by the name {record.backend_name} on the next reading (a job the backend does not "
                f"know after {int(LOST_LAUNCH_GRACE_S)} s is marked as not launched); do not resubmit",
                f"wait_for_job(job_id='{record.job_id}') shows the reconciled state",
            )
        except TaoError as exc:
            self.store.mark_failed_launch(record.job_id, str(exc))
            raise
        crashpoint("submit.after_launch")
        self.store.set_launch_state(record.job_id, "launched", backend_id)
        crashpoint("submit.after_store")
        self.poller(launch.platform).kick()
        self.subscriptions.job_added()
        return launch.result(
            JobState.PENDING,
            f"submitted as {launch.platform} job {backend_id}",
            f"wait_for_job(job_id='{record.job_id}')",
            backend_id=backend_id,
        )

    async def _resume_interrupted(
        self, existing: JobRecord, p: SubmitParams, action_plan: ActionPlan | None, minutes: int | None, digest: str
    ) -> SubmitResult | None:
        """A retry of a submit whose server died between writing the record and storing the backend id.

        Without this the retry answered "reused" for a job that was never launched (lost). With nobody holding
        the launch lease (its process is gone), the backend is asked by name: a job it has is adopted, else the
        same job id is launched now. None = answer with the record as it is (in flight elsewhere, or too old:
        the poller declares launches older than LOST_LAUNCH_GRACE_S that the backend never saw as failed).
        """
        if existing.request_digest != digest or existing.launch_state != "launching" or existing.backend_id:
            return None
        with self.leases.hold(existing.job_id) as held:
            record = self.record(existing.job_id)
            fresh = time.time() - record.created_at < LOST_LAUNCH_GRACE_S / 2
            interrupted = record.launch_state == "launching" and not record.backend_id
            interrupted = interrupted and record.status == JobState.PENDING
            if not (held and fresh and interrupted) or record.cancel_requested:
                return None
            launch = await self._prepare(p, action_plan, minutes, job_id=record.job_id)
            try:
                found = await launch.driver.find([record.ref()])
            except BackendUnreachable:
                return None  # the poller reconciles by name once the backend answers
            if record.job_id in found:
                self.store.set_launch_state(record.job_id, "launched", found[record.job_id])
                self.poller(launch.platform).kick()
                return None
            log.info("resuming the interrupted launch of %s (its server process died before launching)", record.job_id)
            result = await self._launch(record, launch)
        return result.model_copy(update={"reused": True, "message": f"resumed an interrupted submit: {result.message}"})

    async def _prepare(
        self, p: SubmitParams, action_plan: ActionPlan | None, minutes: int | None, job_id: str | None = None
    ) -> PreparedLaunch:
        """Everything decided before the backend is touched: ids, entrypoint, results location, secrets."""
        driver = await self.drivers.get(p.platform)
        options = driver.parse_options(p.options)
        self.policy.check_options(p.platform, platform_models(p.platform)[0].policy_facts(options))
        job_id = job_id or uuid.uuid4().hex[:12]
        plan = self._entrypoint(job_id, p, action_plan)
        env = {**p.env, **plan.env, "TAO_JOB_ID": job_id}
        # Where results go (docs/entrypoint.md): an explicit results_uri, else the platform's persistent mount,
        # else the S3 bucket, else container-local (the runner warns).
        results_location = plan.results_location if plan.results_source == "explicit" else None
        root = None if results_location else await driver.results_root(options, resolve=not p.dry_run)
        if root:
            env["TAO_RESULTS_ROOT"] = root
            results_location = f"{driver.storage_scheme}://{root}/{job_id}"
        warnings = list(plan.warnings)
        if isinstance(driver, HasEphemeralResults) and (warning := driver.results_warning(options, root)):
            warnings.append(warning)
        secret_env = {name: self.settings[name] for name in p.secret_env}
        secret_names = set(p.secret_env)
        for container_name, server_name in plan.secret_env.items():
            if self.settings.get(server_name):
                secret_env[container_name] = self.settings[server_name]
                secret_names.add(server_name)
        # Whatever a job receives as a secret is redacted from everything it prints, whatever its name.
        self.redactor.add_settings(self.settings, secret_names)
        request = LaunchRequest(
            job_id=job_id,
            backend_name=f"tao-{job_id}",
            command=plan.command,
            image=p.image,
            gpu_count=p.gpu_count,
            num_nodes=p.num_nodes,
            env=env,
            secret_env=secret_env,
            time_limit_minutes=minutes,
            options=options,
        )
        if isinstance(driver, HasRequestCheck):
            driver.check_request(request)
        return PreparedLaunch(
            request,
            p.platform,
            driver,
            plan,
            action_plan,
            results_location or plan.results_location,
            secret_names,
            tuple(warnings),
        )

    async def _plan_files(self, launch: PreparedLaunch) -> dict[str, str]:
        """Everything a dry run renders, redacted, by the path it has on the backend (or a label)."""
        preview = await launch.driver.preview(launch.request)
        files = {"launch": preview.submit}  # the labels first: they keep their names in resource_names
        plan, action_plan = launch.plan, launch.action_plan
        if plan.mode != "plain":
            files["entrypoint"] = json.dumps(
                {"mode": plan.mode, "spec": plan.spec, **plan.details}, indent=2, sort_keys=True, default=str
            )
        if action_plan is not None:
            files["model_action"] = json.dumps(
                {
                    "model": action_plan.model,
                    "action": action_plan.action,
                    "backend": action_plan.backend,
                    "image": action_plan.image_resolution.model_dump(exclude={"next"}),
                    "image_source": action_plan.image_source,
                    "template": action_plan.template,
                    "gpu_spec_key": action_plan.gpu_spec_key,
                    "warnings": list(action_plan.warnings),
                },
                indent=2,
                sort_keys=True,
            )
        files |= preview.files
        names = resource_names(list(files))
        return {names[path]: self.redactor.text(text) for path, text in files.items()}

    async def _dry_run(self, launch: PreparedLaunch, asked: SubmitParams, keep_plan: bool = True) -> SubmitResult:
        files = await self._plan_files(launch)
        shown = without_blobs(files, launch.plan)
        command = launch.action_plan.command if launch.action_plan else asked.command  # before the runner wraps it
        preview = {"command": self.redactor.text(command)}
        if launch.request.image:
            preview["image"] = launch.request.image
        preview |= {key: shown[key] for key in ("entrypoint", "launch", "runner") if key in shown}
        result = SubmitResult(
            job_id=None,
            platform=launch.platform,
            status=JobState.PENDING,
            backend_name=launch.request.backend_name,
            results_location=launch.results_location,
            outputs=launch.plan.output_uris(launch.results_location) or None,
            dry_run=True,
            message="; ".join(["dry run: nothing was launched; secrets appear as names only", *launch.plan.warnings]),
            preview=preview,
            next="submit_job(...) again without dry_run to launch it",
        )
        if not keep_plan:  # a check only (service/workflows.py dry-runs each job of a workflow): no plan to confirm
            return result
        plan = self.plans.create(
            "job",
            {"job_id": launch.request.job_id, "params": asdict(asked)},
            files,
            {"platform": launch.platform, "preview": preview},
        )
        return result.model_copy(
            update={
                "plan_id": plan.plan_id,
                "plan_expires_at": iso(plan.expires_at),
                "files": plan.listing(),
                "next": f"show this plan to the user; once they confirm, submit_job(plan_id='{plan.plan_id}') "
                f"launches exactly it (until {iso(plan.expires_at)}); the full files are the resources in files[].uri",
            }
        )

    async def _check_plan(
        self, plan: Plan, p: SubmitParams, action_plan: ActionPlan | None, minutes: int | None
    ) -> None:
        """The confirmed plan must still render byte for byte (settings, skill bank or server may have changed)."""
        check = await self._prepare(replace(p, dry_run=True), action_plan, minutes, job_id=plan.arguments["job_id"])
        files = await self._plan_files(check)
        changed = sorted(name for name in files.keys() | plan.files.keys() if files.get(name) != plan.files.get(name))
        if changed:
            raise TaoError(
                "E_PLAN_CHANGED",
                f"plan '{plan.plan_id}' no longer renders the same ({', '.join(changed)} changed: a setting, the skill "
                "bank or the server changed since the dry run)",
                "dry run again (dry_run=True), show the new plan to the user and submit its plan_id once confirmed",
            )

    def _reused(self, existing: JobRecord, digest: str) -> SubmitResult:
        if existing.request_digest != digest:
            raise TaoError(
                "E_IDEMPOTENCY_CONFLICT",
                f"idempotency_key was already used for job {existing.job_id} with a different request",
                "use a new idempotency_key for a different job, or repeat the original request exactly",
            )
        return SubmitResult(
            job_id=existing.job_id,
            platform=existing.platform,
            status=existing.status,
            backend_id=existing.backend_id,
            backend_name=existing.backend_name,
            results_location=existing.results_location,
            outputs=existing.request.get("output_uris") or None,
            reused=True,
            message="an earlier submit with this idempotency_key answered; nothing new was launched",
            next=f"wait_for_job(job_id='{existing.job_id}')",
        )

    def _entrypoint(self, job_id: str, p: SubmitParams, action_plan: ActionPlan | None) -> EntrypointPlan:
        resume_from = resume_location(self.record(p.resume_from), p.platform) if p.resume_from else None
        if action_plan is not None:
            return build_entrypoint(
                job_id=job_id,
                results_uri=p.results_uri,
                resume_from=resume_from,
                settings=self.settings,
                **action_plan.entrypoint_kwargs(),
            )
        return build_entrypoint(
            job_id=job_id,
            command=p.command,
            specs=p.specs,
            args=p.args,
            inputs=p.inputs,
            outputs=p.outputs,
            config_format=p.config_format,
            upload_excludes=p.upload_excludes,
            results_uri=p.results_uri,
            resume_from=resume_from,
            settings=self.settings,
        )

    # ---- status ----
    async def current(self, record: JobRecord) -> tuple[JobRecord, str | None]:
        """This job's state: the last reading when it is fresh, else a read of this one job (never a sweep)."""
        if record.terminal:
            return record, None
        poller = self.poller(record.platform)
        if poller.fresh(record.job_id, record.created_at):
            return record, None
        unreachable = await poller.read_one(record.ref())
        return self._seen(record, unreachable)

    def _seen(self, record: JobRecord, unreachable: str | None) -> tuple[JobRecord, str | None]:
        """The record as stored after a reading; an outage the reading met drops the platform's cached "ready"
        (list_platforms must not promise a backend a job has just failed to reach)."""
        if unreachable:
            self.readiness.forget(record.platform)
        return self.record(record.job_id), unreachable

    async def read_again(self, record: JobRecord) -> tuple[JobRecord, str | None]:
        """A new reading of this one job even when the last one is fresh (shared by concurrent callers)."""
        if record.terminal:
            return record, None
        unreachable = await self.poller(record.platform).read_one(record.ref())
        return self._seen(record, unreachable)

    async def status(self, job_id: str) -> JobStatus:
        record, unreachable = await self.current(self.record(job_id))
        return await self._status_model(record, unreachable)

    async def _status_model(self, record: JobRecord, unreachable: str | None) -> JobStatus:
        message = record.message
        found: training.Record | None = None
        if unreachable:
            message = f"backend unreachable ({unreachable}); last known status {record.status}: {record.message}"
        else:
            if record.status == JobState.RUNNING and self._has_runner(record):
                runner_line = await self._runner_progress(record)
                if runner_line:
                    message = f"{record.message} — {runner_line}"
            found = await self._training_progress(record)
        return JobStatus(
            job_id=record.job_id,
            platform=record.platform,
            status=record.status,
            raw_state=record.raw_state,
            message=message,
            pending_reason=record.pending_reason,
            backend_id=record.backend_id,
            backend_name=record.backend_name,
            exit_code=record.exit_code,
            created_at=iso(record.created_at) or "",
            started_at=iso(record.started_at),
            ended_at=iso(record.ended_at),
            updated_at=iso(record.updated_at) or "",
            results_location=record.results_location,
            backend_reachable=unreachable is None,
            progress=training.summary(found) if found else None,
            next=next_hint(record),
        )

    async def _runner_progress(self, record: JobRecord) -> str | None:
        """The runner's latest message ("download 3/120 files"), so status says more than Running. Shared by
        every caller through the job's watch; see _read_runner_phase for where it comes from."""
        return await self.watches.fact(
            record.job_id, RUNNER_PHASE, POLL_INTERVAL_S, lambda: self._read_runner_phase(record)
        )

    async def _read_runner_phase(self, record: JobRecord) -> str | None:
        """A platform with a log file (SLURM) has the runner's phase file beside it: one small read. Elsewhere
        (log streams) the cheapest faithful source is the last runner line of a backward tail of the log."""
        try:
            driver = await self.drivers.get(record.platform)
            if isinstance(driver, HasRunnerPhase):
                raw = await driver.runner_phase(record.ref())
                if raw is not None:  # None: no phase file (an older job, a container without the job folder)
                    text = logs.redact_lines([raw.strip().replace("\n", " ")], self.redactor)[0]
                    return text.split(RUNNER_TAG, 1)[-1].strip()[:200] or None
            window = await logs.read(driver, record.ref(), self.redactor, limit=RUNNER_SCAN_LINES)
        except TaoError:
            return None
        # a status.json record never passes for a runner line
        found = [line for line in window.lines if RUNNER_TAG in line and not training.is_marked(line)]
        return found[-1].split(RUNNER_TAG, 1)[-1].strip()[:200] if found else None

    @staticmethod
    def _has_runner(record: JobRecord) -> bool:
        """Only jobs wrapped by the runner print its phase and status.json lines."""
        return record.backend_id is not None and record.request.get("mode", "plain") != "plain"

    async def _training_progress(self, record: JobRecord) -> training.Record | None:
        """The job's latest status.json record (service/progress.py), read from the log's tail at most once per
        LOG_HINT_EVERY_S whoever asks; a finished job's tail is read once more after it ended, then remembered."""
        if not self._has_runner(record):
            return None
        known = self.watches.peek(record.job_id, training.PROGRESS)
        if known is not None and known.value.final:
            return known.value.record  # type: ignore[no-any-return]
        final = record.terminal

        async def read() -> training.Reading:
            lines = await self._tail_lines(record)
            previous = known.value.record if known is not None else None
            return training.Reading(training.latest(lines or []) or previous, final and lines is not None)

        reading = await self.watches.fact(record.job_id, training.PROGRESS, 0 if final else LOG_HINT_EVERY_S, read)
        return reading.record

    async def latest_progress(self, job_id: str) -> training.Record | None:
        """The job's latest training record: a new one is a change its resource subscribers are told of."""
        record = await anyio.to_thread.run_sync(self.store.get, job_id)
        return await self._training_progress(record) if record is not None else None

    def known_progress(self, job_id: str) -> training.Record | None:
        """The training record last read for the job, without reading (None: none read yet)."""
        known = self.watches.peek(job_id, training.PROGRESS)
        return known.value.record if known is not None else None

    async def _tail_lines(self, record: JobRecord) -> list[str] | None:
        """The log's last RUNNER_SCAN_LINES lines, redacted; None when the log cannot be read now."""
        try:
            driver = await self.drivers.get(record.platform)
            window = await logs.read(driver, record.ref(), self.redactor, limit=RUNNER_SCAN_LINES)
        except TaoError:
            return None
        return window.lines

    # ---- wait ----
    async def wait(
        self,
        job_id: str,
        timeout_s: float,
        until: str,
        progress: Callable[[float, float | None, str], Awaitable[None]],
    ) -> WaitResult:
        """Wait for the job to end (until="terminal"), to run ("running"), or for its next monitoring update
        ("update": the next status-interval boundary or a state change, whichever comes first)."""
        record = self.record(job_id)
        grace = unreachable_grace(self.settings)
        started = time.monotonic()
        deadline = started + timeout_s
        boundary = math.inf
        if until == "update":
            interval = monitor.interval_s(record.request, self.settings)
            boundary = started + self.updates.seconds_left(job_id, record.created_at, interval, time.time())
        first_status = record.status
        last_hint_at = 0.0
        last_line: str | None = None
        known = self.watches.peek(job_id, training.PROGRESS)
        found: training.Record | None = known.value.record if known is not None else None
        unreachable: str | None = None
        gone_for = 0.0
        confirm = False  # an outage past the grace ends the wait only after a sweep of its own confirms it
        while True:
            # This job only (never a platform sweep), shared with every other caller watching it.
            record, unreachable = await (self.read_again(record) if confirm else self.current(record))
            done = record.terminal or (until == "running" and record.status in (JobState.RUNNING, JobState.PAUSED))
            now = time.monotonic()
            done = done or (until == "update" and (record.status != first_status or now >= boundary))
            gone_for = time.time() - record.updated_at if unreachable else 0.0
            if done or now >= deadline or (gone_for > grace and confirm):
                break
            if gone_for > grace:
                confirm = True
                continue
            if record.status == JobState.RUNNING and now - last_hint_at >= LOG_HINT_EVERY_S:
                last_hint_at = now
                last_line = await self.last_log_line(record) or last_line
                found = await self._training_progress(record) or found
            message = self._progress_message(record, unreachable, last_line, found)
            if found is not None and found.epoch is not None:
                await progress(found.epoch, found.max_epoch, message)
            elif self._has_runner(record):  # epochs may come: stay below epoch 1 until they do
                await progress((now - started) / (now - started + 60), None, message)
            else:
                await progress(now - started, None, message)
            await anyio.sleep(min(WAIT_POLL_S, max(0.0, min(deadline, boundary) - time.monotonic())))
        status = await self._status_model(record, unreachable)
        waited = round(time.monotonic() - started, 1)
        since = round(gone_for, 1) if unreachable else None
        if not done and gone_for > grace:
            # A wait that cannot end by itself: stop the loop and hand the outage to the user. The job stays open
            # in the store; the next reading (any later job_status) resumes it.
            return WaitResult(
                **status.model_dump(exclude={"next"}),
                done=True,
                waited_s=waited,
                outcome="backend_unreachable",
                since_last_reading_s=since,
                final=False if until == "update" else None,
                next=(
                    f"stop polling: tell the user the {record.platform} backend has not answered for "
                    f"{human_duration(gone_for)} ({unreachable}); the job's last known status is {record.status}. "
                    f"Once they have restored the backend, job_status(job_id='{job_id}') reads it again"
                ),
            )
        if until == "update":
            return self._update_result(status, record, done, waited, since)
        if done:
            outcome, hint = ("finished" if record.terminal else "running"), status.next
        else:
            outcome = "still_waiting"
            hint = f"wait_for_job(job_id='{job_id}') again (still {record.status} after {waited}s)"
        return WaitResult(
            **status.model_dump(exclude={"next"}),
            done=done,
            waited_s=waited,
            outcome=outcome,
            since_last_reading_s=since,
            next=hint,
        )

    def _update_result(
        self, status: JobStatus, record: JobRecord, done: bool, waited: float, since: float | None
    ) -> WaitResult:
        """wait_for_job(until="update"): the monitoring loop's answer, with the line to post when one is due."""
        job_id = record.job_id
        again = f"wait_for_job(job_id='{job_id}', until='update')"
        if record.terminal:
            outcome, update, hint = "finished", self._update_line(status, record), f"post `update`; then {status.next}"
        elif done:
            interval = monitor.interval_s(record.request, self.settings)
            self.updates.reported(job_id, record.created_at, interval, time.time() + 1.0)
            outcome, update = "update", self._update_line(status, record)
            hint = f"post `update` to the user, then {again} (the job is still {record.status}: do not finalise)"
        else:
            outcome, update = "still_waiting", None
            hint = f"{again} again: no update is due yet (still {record.status} after {waited}s)"
        return WaitResult(
            **status.model_dump(exclude={"next"}),
            done=done,
            waited_s=waited,
            outcome=outcome,
            since_last_reading_s=since,
            final=record.terminal,
            update=update,
            next=hint,
        )

    @staticmethod
    def _update_line(status: JobStatus, record: JobRecord) -> str:
        since = record.ended_at if record.terminal else None
        elapsed = human_duration((since or time.time()) - (record.started_at or record.created_at))
        parts = [f"job {record.job_id} {record.status} {elapsed}"]
        if status.progress is not None:
            parts.append(status.progress.message)
        if record.terminal:
            parts.append(status.message or f"exit code {record.exit_code}")
            if record.status == JobState.COMPLETE and record.results_location:
                parts.append(f"results at {record.results_location}")
        elif record.status == JobState.PENDING and record.pending_reason:
            parts.append(f"pending: {record.pending_reason}")
        return " — ".join(p for p in parts if p)[:400]

    def _progress_message(
        self, record: JobRecord, unreachable: str | None, last_line: str | None, found: training.Record | None
    ) -> str:
        if unreachable:
            return f"{record.status.upper()} — backend unreachable: {unreachable}"
        if record.status == JobState.PENDING:
            reason = f" ({record.pending_reason})" if record.pending_reason else ""
            return f"PENDING{reason} {human_duration(time.time() - record.created_at)}"
        if record.status == JobState.RUNNING:
            if found is not None and found.epoch is not None:
                return training.message(found)
            text = f"RUNNING {human_duration(time.time() - (record.started_at or record.created_at))}"
            return f"{text} — last log line: {last_line[:160]}" if last_line else text
        return f"{record.status.upper()} {record.message}".strip()

    async def last_log_line(self, record: JobRecord) -> str | None:
        """The log's last line (redacted), read at most once per LOG_HINT_EVERY_S whoever asks."""
        return await self.watches.fact(record.job_id, LAST_LINE, LOG_HINT_EVERY_S, lambda: self._read_last_line(record))

    async def _read_last_line(self, record: JobRecord) -> str | None:
        try:
            driver = await self.drivers.get(record.platform)
            window = await logs.read(driver, record.ref(), self.redactor, limit=1)
        except TaoError:
            return None
        return window.lines[-1] if window.lines else None

    # ---- logs ----
    async def logs(
        self, job_id: str, tail: int, cursor: str | None, grep: str | None, raw: bool = False, numbered: bool = False
    ) -> LogPage:
        record = self.record(job_id)
        mode: LogMode = "tail"
        at: LogMark | None = None
        if cursor:
            mode, at = log_cursor(cursor, job_id)
        logs.check_grep(grep)
        if record.backend_id is None:
            record, _ = await self.current(record)
        if record.backend_id is None:
            return LogPage(
                job_id=job_id,
                lines=[],
                truncated=False,
                next_cursor=None,
                prev_cursor=None,
                status=record.status,
                next=f"job_status(job_id='{job_id}') — the job has not reached the backend yet",
            )
        driver = await self.drivers.get(record.platform)
        if grep:
            return await self._grep_page(record, driver, grep, mode, at, tail, raw, numbered)
        window = await logs.read(driver, record.ref(), self.redactor, mode=mode, at=at, limit=tail, numbered=numbered)
        kept = fit_page(window.lines, from_end=mode != "after", tail=tail, numbered=numbered)
        lines = window.lines[kept]
        numbers: list[int | None] = list(window.numbers[kept]) if window.numbers else [None] * len(lines)
        begin = window.marks[kept.start] if lines else window.begin
        end = window.end if kept.stop >= len(window.lines) else window.marks[kept.stop]
        older = window.older or kept.start > 0
        if not raw:  # positions and numbers count every line, the hidden progress lines too
            numbers = [n for n, line in zip(numbers, lines, strict=True) if not training.is_marked(line)]
            lines = [line for line in lines if not training.is_marked(line)]
        next_cursor = log_cursor_for(job_id, "after", end)
        prev_cursor = log_cursor_for(job_id, "before", begin) if older else None
        more = f"older lines: cursor='{prev_cursor}'" if prev_cursor else "no older lines"
        return LogPage(
            job_id=job_id,
            lines=lines,
            # in the direction read: newer lines for a page after a cursor, older ones for a tail or a page before
            truncated=(window.newer or kept.stop < len(window.lines)) if mode == "after" else older,
            next_cursor=next_cursor,
            prev_cursor=prev_cursor,
            line_numbers=numbers if numbered else None,
            numbering=logs.numbering(numbers) if numbered else None,
            status=record.status,
            next=f"job_logs(job_id='{job_id}', cursor='{next_cursor}') for newer lines; {more}",
        )

    async def _grep_page(
        self,
        record: JobRecord,
        driver: Driver,
        grep: str,
        mode: LogMode,
        at: LogMark | None,
        tail: int,
        raw: bool,
        numbered: bool,
    ) -> LogPage:
        """grep runs here, on redacted windows, never on the backend: no answer depends on a secret."""
        window = logs.grep_window_bytes(self.settings)
        skip = None if raw else training.is_marked
        found = await logs.grep(
            driver,
            record.ref(),
            self.redactor,
            grep,
            mode=mode,
            at=at,
            limit=tail,
            window_bytes=window,
            skip=skip,
            numbered=numbered,
        )
        job_id = record.job_id
        next_cursor = log_cursor_for(job_id, "after", found.end)
        prev_cursor = log_cursor_for(job_id, "before", found.begin) if found.older else None
        searched = f"searched {human_bytes(found.scanned)} of the log"
        searched += " back from its end" if mode == "tail" else (" back from the cursor" if mode == "before" else "")
        if found.older:
            searched += f"; older lines were not searched: grep again with cursor='{prev_cursor}'"
        if found.more and mode == "after":
            searched += f"; more matches: grep again with cursor='{next_cursor}'"
        return LogPage(
            job_id=job_id,
            lines=found.lines,
            truncated=found.more or found.older,
            next_cursor=next_cursor,
            prev_cursor=prev_cursor,
            searched=searched,
            line_numbers=found.numbers,
            numbering=logs.numbering(found.numbers) if found.numbers is not None else None,
            status=record.status,
            next=f"job_logs(job_id='{job_id}', grep=..., cursor='{next_cursor}') for newer lines; {searched}",
        )

    # ---- failure analysis ----
    async def analyze(self, job_id: str) -> FailureAnalysis:
        from tao_mcp.service.failures import analyze

        record, unreachable = await self.current(self.record(job_id))
        log_lines: list[str] = []
        first = 0
        evidence: list[Evidence] = []
        if record.backend_id is not None:
            driver = await self.drivers.get(record.platform)
            try:
                window = await logs.read(driver, record.ref(), self.redactor, limit=ANALYSIS_LOG_LINES)
                log_lines = window.lines  # numbered within this tail: counting the whole log would cost its size
                if record.status not in (JobState.COMPLETE, JobState.PENDING):
                    # The failure scans run on redacted text only, like every filter the server offers.
                    raw = await driver.failure_evidence(record.ref())
                    texts = logs.redact_lines([e.text.replace("\n", " ") for e in raw], self.redactor)
                    evidence = [replace(e, text=text) for e, text in zip(raw, texts, strict=True)]
            except BackendUnreachable as exc:
                unreachable = exc.cause
        result = analyze(
            platform=record.platform,
            status=record.status,
            raw_state=record.raw_state,
            exit_code=record.exit_code,
            pending_reason=record.pending_reason,
            message=record.message,
            log_lines=log_lines,
            log_first_line=first,
            platform_evidence=evidence,
        )
        summary = result.summary
        if unreachable and not record.terminal:
            # No fresh reading: the last known state (often Pending) must not be read as "queued, wait".
            gone = human_duration(time.time() - record.updated_at)
            return FailureAnalysis(
                job_id=job_id,
                status=record.status,
                category="backend_unreachable",
                err_class="ERR_INFRA",
                retriable=None,
                confidence="high",
                summary=f"backend unreachable: the {record.platform} backend has not reported this job for {gone} "
                f"({unreachable}); its last known status is {record.status}. This is not a job failure",
                suggestion=f"tell the user the {record.platform} backend does not answer; do not resubmit (the job "
                "may still be running). Once it is restored, job_status reads the job again",
                next=f"list_platforms(platform='{record.platform}') shows the backend's probe",
            )
        if unreachable:
            summary = f"{summary} (backend unreachable now: {unreachable}; based on the last known state)"
        return result.model_copy(
            update={
                "job_id": job_id,
                "status": record.status,
                "summary": summary,
                "next": result.next or f"job_logs(job_id='{job_id}') for the full log",
            }
        )

    # ---- cancel ----
    async def cancel(self, job_id: str, confirm_within_s: float = 40.0) -> JobStatus:
        record = self.record(job_id)
        if record.terminal:
            return await self._status_model(record, None)
        if record.backend_id is None:
            record, _ = await self.current(record)
        crashpoint("cancel.before_request")
        self.store.request_cancel(job_id)
        crashpoint("cancel.after_request")
        record = self.record(job_id)
        if record.backend_id is not None:
            driver = await self.drivers.get(record.platform)
            crashpoint("cancel.during_backend")
            await driver.cancel(record.ref())
            crashpoint("cancel.after_backend")
        poller = self.poller(record.platform)
        poller.kick()
        unreachable = None
        with anyio.move_on_after(confirm_within_s):
            while not record.terminal:
                await poller.refresh(max_age=0.5)
                record, unreachable = self.record(job_id), poller.problem(job_id)
                if not record.terminal:
                    await anyio.sleep(1.0)
        return await self._status_model(record, unreachable)

    # ---- list ----
    def list(self, status: JobState | None, platform: str | None, limit: int, cursor: str | None) -> JobList:
        if platform:
            platform = find_platform(platform, self.settings).name
        before = None
        if cursor:
            created, job_id = cursor_codec.decode(cursor, "jobs", float, str)
            before = (float(created), job_id)
        records = self.store.list(
            status=status, platform=platform, limit=limit + 1, before=before, owned_by=principal.visible_owner()
        )
        page, more = records[:limit], len(records) > limit
        next_cursor = None
        if more:
            last = page[-1]
            next_cursor = cursor_codec.encode("jobs", last.created_at, last.job_id)
        return JobList(
            jobs=[
                JobSummary(
                    job_id=r.job_id,
                    platform=r.platform,
                    status=r.status,
                    backend_id=r.backend_id,
                    created_at=iso(r.created_at) or "",
                    command=r.command[:120],
                    **(r.request.get("workflow") or {}),
                )
                for r in page
            ],
            next_cursor=next_cursor,
            next=f"list_jobs(cursor='{next_cursor}')" if more else "job_status(job_id=...) for details",
        )


def without_blobs(files: Mapping[str, str], plan: EntrypointPlan) -> dict[str, str]:
    """A dry run's files as the agent reads them: the inline runner (and the job description, whose content the
    'entrypoint' entry shows decoded) appear once, by size and sha256, instead of ~40 KB of base64 per copy."""
    # plain tokens: the files stay valid YAML / JSON / shell with the marker in place
    blobs = {"RUNNER_PY_ZLIB_BASE64": runner_blob()}
    if plan.runner_job:
        blobs["JOB_DESCRIPTION_ZLIB_BASE64"] = plan.runner_job  # decoded in the 'entrypoint' entry
    shown: dict[str, str] = {}
    found: list[str] = []
    for path, text in files.items():
        for label, blob in blobs.items():
            if blob in text:
                text = text.replace(blob, label)
                found.append(label)
        shown[path] = text
    if found:
        shown["runner"] = "\n".join(
            f"{label}: {len(blob)} chars of base64, sha256 {hashlib.sha256(blob.encode()).hexdigest()} "
            "(shown by this name in the files above; the full files are listed in `files`)"
            for label, blob in blobs.items()
            if label in found
        )
    return shown


def fit_page(lines: list[str], *, from_end: bool, tail: int, numbered: bool = False) -> slice:
    """The lines of a log page within the result budget: at most LOG_PAGE_CHARS of line text (LOG_PAGE_CHARS_MAX
    when the caller asked for more than the default tail), a line number counted as NUMBER_CHARS more; the newest
    lines win in tail mode, the oldest after a cursor."""
    budget = LOG_PAGE_CHARS if tail <= LOG_DEFAULT_TAIL else LOG_PAGE_CHARS_MAX
    extra = NUMBER_CHARS if numbered else 0
    count = used = 0
    for line in reversed(lines) if from_end else lines:
        used += len(line) + 1 + extra
        if used > budget and count:
            break
        count += 1
    return slice(len(lines) - count, len(lines)) if from_end else slice(0, count)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def unreachable_grace(settings: Mapping[str, str]) -> float:
    """TAO_MCP_UNREACHABLE_GRACE_S: how long wait_for_job waits through a backend outage before it ends."""
    raw = settings.get("TAO_MCP_UNREACHABLE_GRACE_S") or ""
    try:
        value = float(raw) if raw else UNREACHABLE_GRACE_S
    except ValueError:
        value = -1.0
    if value < 0:
        raise TaoError(
            "E_BAD_SETTING", f"TAO_MCP_UNREACHABLE_GRACE_S={raw!r} is not a number of seconds >= 0", "e.g. 300"
        )
    return value


def log_cursor(cursor: str, job_id: str) -> tuple[LogMode, LogMark]:
    """Where a job_logs cursor resumes: lines after or before a position. A cursor of another job is refused."""
    for_job, direction, at, skip = cursor_codec.decode(cursor, "log", str, str, int, int)
    if for_job != job_id:
        raise cursor_codec.bad_cursor(f"it was made for the log of job {for_job}, not {job_id}")
    if direction not in ("after", "before"):
        raise cursor_codec.bad_cursor("its content is not what this listing writes")
    return ("after" if direction == "after" else "before"), LogMark(at, skip)


def log_cursor_for(job_id: str, direction: LogMode, mark: LogMark) -> str:
    return cursor_codec.encode("log", job_id, direction, mark.at, mark.skip)


def next_hint(record: JobRecord) -> str:
    jid = record.job_id
    if record.status in OPEN:
        return f"wait_for_job(job_id='{jid}')"
    if record.status == JobState.ERROR:
        return f"failure_analysis(job_id='{jid}')"
    if record.status == JobState.COMPLETE:
        where = f"; results at {record.results_location}" if record.results_location else ""
        return f"job_logs(job_id='{jid}'){where}"
    return f"job_logs(job_id='{jid}')"


__all__ = ["JobService", "SubmitParams"]
