"""Pydantic output models: the public contract of every tool (outputSchema + structuredContent)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

from tao_mcp.states import JobState, JobStateField


class CredentialState(BaseModel):
    name: str
    present: bool
    required: bool
    description: str = ""
    only_when: str | None = None
    how_to_get: str | None = Field(None, description="where the user finds the value (never the value)")


class CredentialGroup(BaseModel):
    name: str
    require_one_of: list[str]
    satisfied: bool
    present: list[str] = Field(description="members that are set (names only)")
    how_to_get: str | None = None


class PlatformSummary(BaseModel):
    name: str
    display_name: str
    aliases: list[str]
    description: str
    available: bool = Field(description="this tao-mcp version has a driver for the platform")
    state: Literal["ready", "unreachable", "not_configured", "no_driver"] = Field(
        description="ready: configured and the backend answered a cheap probe; unreachable: configured but the "
        "probe failed (see reason); not_configured: required variables missing; no_driver: listed by the skill "
        "bank only, cannot be submitted to"
    )
    reason: str | None = Field(
        None, description="why the platform is not ready (the probe's answer, or what is missing)"
    )
    ready: bool = Field(description="state is ready")
    missing: list[str] = Field(description="names of required variables (or groups) that are not set")


class PlatformDetail(PlatformSummary):
    credentials: list[CredentialState]
    credential_groups: list[CredentialGroup]
    storage: dict[str, str]
    resource_defaults: dict[str, str | int | float | bool | None]
    dataset_examples: list[str] = Field(default_factory=list, description="data URIs in the form this platform reads")
    preflight_checks: list[str] = Field(default_factory=list, description="what to check before the dry run")
    options: dict[str, str] = Field(default_factory=dict, description="submit_job options this platform accepts")
    policy: dict[str, str] = Field(
        default_factory=dict, description="the job policy in force (host access, Docker mount roots, secrets)"
    )
    diagnostics: dict[str, str | int | float | bool | None] | None = Field(
        None, description="live preflight facts from the backend (reachability, versions, GPUs), when available"
    )


class IntakeDefaults(BaseModel):
    long_running_enabled: bool = Field(True, description="stay attached and post status until the job ends")
    status_interval_minutes: float = Field(5, description="minutes between status updates")


class PlatformList(BaseModel):
    platforms: list[PlatformSummary] = Field(default_factory=list)
    platform: PlatformDetail | None = None
    intake_defaults: IntakeDefaults = Field(
        default_factory=IntakeDefaults, description="the launch intake's defaults (the skill bank may set them)"
    )
    next: str


class JobProgress(BaseModel):
    """Training progress as the job's own status.json reported it (the runner forwards each record)."""

    epoch: int | None = None
    max_epoch: int | None = None
    percent: float | None = Field(None, description="epoch / max_epoch in percent")
    eta: str | None = None
    time_per_epoch: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict, description="the latest kpi (and graphical) values")
    message: str = Field(description="one line, e.g. 'epoch 7/50 — loss 0.412 — val_mAP 0.61 — eta 1:32:10'")
    status: str | None = Field(None, description="the record's status: STARTED, RUNNING, SUCCESS, FAILURE, SKIPPED")


class JobStatus(BaseModel):
    job_id: str
    platform: str
    status: JobStateField
    raw_state: str
    message: str
    pending_reason: str | None = None
    backend_id: str | None = None
    backend_name: str
    exit_code: int | None = None
    created_at: str
    started_at: str | None = None
    ended_at: str | None = None
    updated_at: str
    results_location: str | None = None
    backend_reachable: bool = True
    progress: JobProgress | None = Field(
        None, description="epoch, metrics and eta from the job's status.json (jobs run through the tao-mcp runner)"
    )
    next: str


class PlanFile(BaseModel):
    path: str = Field(description="the file's name in the plan")
    size: int = Field(description="bytes of the full rendered file")
    sha256: str
    uri: str | None = Field(None, description="read the full file as this MCP resource")


class SubmitResult(BaseModel):
    job_id: str | None = Field(description="the launched job (absent from a dry run: nothing exists yet)")
    plan_id: str | None = Field(
        None, description="dry run: submit_job(plan_id=...) launches exactly this plan; launch: the plan it came from"
    )
    plan_expires_at: str | None = Field(None, description="dry run: the plan is refused after this time")
    platform: str
    status: JobStateField
    backend_id: str | None = None
    backend_name: str
    results_location: str | None = None
    outputs: dict[str, str] | None = Field(
        None, description="where each declared output ends up (spec path, argument or container path -> URI)"
    )
    dry_run: bool = False
    reused: bool = Field(False, description="an earlier submit with the same idempotency_key answered")
    preview: dict[str, str] | None = Field(
        None,
        description="dry run only: the plan in short: the command, the spec, the launch line (the inline runner "
        "and job description replaced by a marker) and 'runner' (their size and sha256, once)",
    )
    files: list[PlanFile] | None = Field(
        None, description="dry run only: every rendered file: size, sha256 and the resource URI of its full text"
    )
    automl: AutomlRun | None = Field(
        None,
        description="the AutoML route (an AutoML-capable model's train with automl_policy='auto'): the review; "
        "start_automl(plan_id) starts it; no job was launched",
    )
    message: str = ""
    warnings: list[str] = Field(
        default_factory=list, description="what may surprise: e.g. results kept only on a Brev instance's disk"
    )
    next: str


class WaitResult(JobStatus):
    done: bool
    waited_s: float
    outcome: Literal["finished", "running", "update", "still_waiting", "backend_unreachable"] = Field(
        description="finished: terminal state; running: until='running' reached; update: until='update' reached an "
        "interval boundary or a state change, post `update`; still_waiting: the timeout ended the wait, call again; "
        "backend_unreachable: no reading for longer than the grace period, stop polling"
    )
    since_last_reading_s: float | None = Field(
        None, description="seconds since the backend last reported this job (set while it is unreachable)"
    )
    final: bool | None = Field(
        None, description="until='update' only: true once the job is terminal (post the final update and stop)"
    )
    update: str | None = Field(None, description="until='update' only: a one-line update to post to the user")


class LogPage(BaseModel):
    job_id: str
    lines: list[str]
    truncated: bool = Field(
        description="more lines exist in the direction read: newer ones after a cursor page, older ones otherwise"
    )
    next_cursor: str | None = Field(description="pass as cursor to read the lines after this page")
    prev_cursor: str | None = Field(None, description="pass as cursor to read the lines before this page")
    searched: str | None = Field(None, description="grep: how much of the log was searched, from where")
    line_numbers: list[int | None] | None = Field(
        None,
        description="line_numbers=true: each line's number in the log, 1 = its first line; negative when counted "
        "back from the end (-1 = the last line when read); null when unknown",
    )
    numbering: str | None = Field(None, description="line_numbers=true: what the numbers count from, and why")
    status: JobStateField
    next: str


class EvidenceItem(BaseModel):
    source: str
    text: str
    line: int | None = None


class FailureAnalysis(BaseModel):
    job_id: str = ""
    status: JobStateField = JobState.UNKNOWN
    category: str
    err_class: Literal["ERR_PROGRAM", "ERR_INFRA", "ERR_RESOURCE", "ERR_CONFIG", "ERR_UNKNOWN", "NONE"]
    retriable: bool | None
    confidence: Literal["high", "medium", "low"]
    summary: str
    evidence: list[EvidenceItem] = Field(default_factory=list)
    suggestion: str
    node_events: list[str] = Field(default_factory=list)
    next: str = ""


class JobSummary(BaseModel):
    job_id: str
    platform: str
    status: JobStateField
    backend_id: str | None
    created_at: str
    command: str = Field(description="first 120 characters of the command")
    workflow_id: str | None = Field(None, description="the workflow this job is a step of (submit_workflow)")
    step: str | None = Field(None, description="the workflow step (with its matrix values) this job runs")


class JobList(BaseModel):
    jobs: list[JobSummary]
    next_cursor: str | None
    next: str


class ReadinessIssue(BaseModel):
    reason: str
    message: str = ""


class Replica(BaseModel):
    id: str
    node: str | None = None
    phase: str | None = None
    readiness_issue: ReadinessIssue | None = None


class ReplicaList(BaseModel):
    job_id: str
    platform: str
    status: JobStateField
    replicas: list[Replica]
    next: str


class Instance(BaseModel):
    name: str
    id: str | None = None
    status: str | None = None
    instance_type: str | None = None
    gpu: str | None = None
    health: str | None = None


class InstanceList(BaseModel):
    platform: str
    instances: list[Instance]
    next: str


class InstanceDeletion(BaseModel):
    platform: str
    name: str
    status: str
    message: str
    next: str


# ---- model catalog (list_models, resolve_image) ----
class Compact(BaseModel):
    """Serialized without the fields that hold their default (a page of ~100 actions stays within the result
    budget); a reader gets the default back when it validates the data against the model."""

    @model_serializer(mode="wrap")
    def _without_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        fields = type(self).model_fields
        return {
            k: v
            for k, v in data.items()
            if k not in fields or fields[k].is_required() or v != fields[k].get_default(call_default_factory=True)
        }


class ActionInfo(Compact):
    name: str
    declared: bool = Field(
        True,
        description="skill_info.yaml declares it (command, data): submit_job(model=..., action=...) can run it; "
        "false: only the bank's schema manifests list it",
    )
    mode: str | None = Field(None, description="config | args | passthrough (how the action takes its settings)")
    spec_template: bool = Field(False, description="a spec_template_<action>.yaml is packaged (the base of specs)")
    schema_packaged: bool = Field(False, description="schemas/<action>.schema.json exists")
    schema_valid: bool = Field(False, description="the schema file is valid JSON")
    schema_failure: str | None = Field(None, description="why the schema could not be generated, per the manifest")
    automl_capable: bool = Field(False, description="AutoML enabled, not blocked, and a valid schema is packaged")
    automl_reason: str | None = Field(None, description="why the action is not AutoML-capable")
    automl_default_parameters: list[str] = Field(
        default_factory=list, description="parameters AutoML tunes by default (scope automl, capable actions)"
    )


class ModelInfo(Compact):
    model: str = Field(description="the skill directory name: pass it as model= to resolve_image and submit_job")
    name: str | None = None
    network_arch: str
    aliases: list[str] = Field(default_factory=list)
    automl_enabled: bool
    automl_blocked_reason: str | None = None
    actions: list[ActionInfo]
    backends: list[str] = Field(default_factory=list, description="implementation backends (multi-backend models)")
    backend_actions: dict[str, list[str]] = Field(
        default_factory=dict, description="backend -> the actions its contract marks supported"
    )
    default_backends: dict[str, str] = Field(default_factory=dict, description="action -> backend chosen by auto")
    source: str = Field(description="'built-in' or the skill bank file the record came from")


class UnsupportedModel(BaseModel):
    model: str
    network_arch: str
    automl_enabled: bool
    reason: str = Field(description="why no action of the model is AutoML-capable")


class ModelList(BaseModel):
    models: list[ModelInfo] = Field(description="one page of the models that match (see next_cursor)")
    unsupported: list[UnsupportedModel] = Field(
        default_factory=list, description="scope automl: the page's models with no AutoML-capable action, and why"
    )
    total: int = Field(0, description="models on all pages (scope automl: supported and unsupported)")
    next_cursor: str | None = Field(None, description="pass as cursor (same scope and action) for the next page")
    scope: Literal["all", "automl"]
    action: str | None = None
    source: Literal["skill bank", "built-in"]
    skill_bank: str | None = Field(None, description="the skill bank directory read, when one was found")
    notes: list[str] = Field(default_factory=list)
    next: str


class ImageResolution(BaseModel):
    image: str | None = Field(description="the image to run; null when nothing (or an unknown versions key) declared")
    declared_image: str | None = Field(description="the value as declared (an image URI or a versions.yaml key)")
    resolved_from: Literal["absolute", "versions.yaml", "unresolved_key", "repository_derived", "none"] = Field(
        description="repository_derived: the backend's image is built from a clean repository checkout (no default)"
    )
    source: str | None = Field(description="the metadata field the value came from, e.g. actions.train.container_image")
    model: str = Field(description="skill directory")
    network_arch: str
    action: str
    backend: str | None = None
    backend_reason: str | None = None
    backend_contract: str | None = Field(None, description="the chosen backend's contract file (relative)")
    backends: list[str] = Field(default_factory=list)
    build_required: bool = Field(False, description="no image to pull: the user builds it and gives its tag")
    confirmation_required: bool = True
    override_key: str = Field(
        "image", description="what the user supplies instead (image, or e.g. image_tag for a repository build)"
    )
    skill_bank: str | None = None
    next: str


# ---- workflows (service/workflows.py) ----
StepState = Literal[
    "Waiting", "Skipped", "Pending", "Running", "Paused", "Complete", "Error", "Canceled", "Canceling", "Unknown"
]
WorkflowState = Literal["Running", "Complete", "Error", "Canceling", "Canceled"]


class WorkflowStep(BaseModel):
    step: str = Field(description="the step id, with its matrix values for one job of a sweep: sweep[lr=0.1,bs=8]")
    step_id: str
    matrix: dict[str, str | int | float | bool] | None = None
    depends_on: list[str] = Field(default_factory=list)
    status: StepState = Field(
        description="Waiting: its dependencies have not completed (or max_parallel is reached); Skipped: a "
        "dependency failed; otherwise the status of the step's job"
    )
    job_id: str | None = None
    results_location: str | None = None
    outputs: dict[str, str] | None = Field(None, description="where each declared output of the step's job ends up")
    progress: str | None = Field(None, description="the job's latest progress message while it runs")
    metric: float | None = Field(None, description="the last value of the chosen metric in the step's log")
    message: str = ""
    rendered: str | None = Field(None, description="dry run only: the step's submit_job arguments after rendering")


class WorkflowBest(BaseModel):
    metric: str
    goal: Literal["max", "min"]
    value: float
    step: str
    job_id: str


class WorkflowStatus(BaseModel):
    workflow_id: str
    name: str
    status: WorkflowState
    max_parallel: int
    counts: dict[str, int] = Field(description="steps per status")
    steps: list[WorkflowStep]
    best: WorkflowBest | None = Field(None, description="the best value of the chosen metric across the steps")
    created_at: str
    ended_at: str | None = None
    dry_run: bool = False
    reused: bool = Field(False, description="an earlier submit_workflow with the same idempotency_key answered")
    message: str = ""
    next: str


class WorkflowWaitResult(WorkflowStatus):
    done: bool
    waited_s: float


class WorkflowSummary(BaseModel):
    workflow_id: str
    name: str
    status: WorkflowState
    steps: int
    created_at: str


class WorkflowList(BaseModel):
    workflows: list[WorkflowSummary]
    next_cursor: str | None
    next: str


# ---- AutoML (start_automl, automl_status, wait_for_automl, stop_automl, list_automl_runs) ----
class AutomlParameter(BaseModel):
    name: str = Field(description="dotted spec key searched")
    type: str = Field(description="float | integer | categorical | bool (from the packaged train schema)")
    min: float | None = None
    max: float | None = None
    options: list[Any] | None = None
    default: Any = None


class AutomlReview(BaseModel):
    """What an AutoML run will launch: shown to the user before any GPU job starts."""

    model: str
    action: str = "train"
    platform: str
    image: str
    gpu_count: int
    num_nodes: int
    time_limit_minutes: int | None
    results_root: str | None = Field(description="where each recommendation's job writes its results")
    dataset_keys: dict[str, str] = Field(description="spec key -> dataset URI read by every recommendation")
    algorithm: str
    max_recommendations: int
    max_concurrent: int
    metric: str
    direction: Literal["maximize", "minimize"]
    search_space: list[AutomlParameter]
    gpu_hours_upper_bound: float | None = Field(
        description="recommendations × gpu_count × num_nodes × time_limit (null without a time_limit: unbounded)"
    )
    notes: list[str] = Field(default_factory=list)


class AutomlRecommendation(BaseModel):
    rec_id: int
    parameters: dict[str, Any]
    job_id: str | None = Field(None, description="the tao-mcp job of this recommendation (job_status, job_logs)")
    status: str = Field(description="pending | running | success | failure | canceled (the engine's word)")
    metric: float | None = None


class AutomlRun(BaseModel):
    run_id: str | None = Field(description="the AutoML run (null for a dry run: nothing started)")
    state: Literal["planned", "running", "stopping", "stopped", "complete", "failed"]
    model: str
    platform: str
    algorithm: str
    metric: str
    direction: Literal["maximize", "minimize"]
    max_recommendations: int
    budget_used: int = Field(0, description="recommendations finished (success or failure)")
    best: AutomlRecommendation | None = None
    recommendations: list[AutomlRecommendation] = Field(default_factory=list)
    message: str = ""
    error: str | None = Field(None, description="E_CODE: cause. Fix: ... when the run ended with an error")
    review: AutomlReview | None = None
    plan_id: str | None = Field(None, description="confirm the review: start it with plan_id")
    created_at: str | None = None
    done: bool | None = Field(None, description="wait_for_automl: the run has ended")
    waited_s: float | None = None
    next: str


class AutomlRunSummary(BaseModel):
    run_id: str
    state: str
    model: str
    platform: str
    metric: str
    budget_used: int
    max_recommendations: int
    best_metric: float | None = None
    created_at: str


class AutomlRunList(BaseModel):
    runs: list[AutomlRunSummary]
    next_cursor: str | None = None
    next: str


class MetricSeries(BaseModel):
    name: str
    epochs: list[int]
    values: list[float]
    min: float
    max: float
    last: float
    best: float
    best_epoch: int
    goal: Literal["min", "max"] = Field(description="min for losses and errors, else max")


class JobMetrics(BaseModel):
    job_id: str
    status: JobStateField
    series: list[MetricSeries] = Field(description="one per metric: the values per epoch (kpi and graphical keys)")
    available: list[str] = Field(description="every metric name the job reported")
    chart: bool = Field(description="a PNG chart of the chosen metrics is attached as image content")
    lines_read: int = Field(description="log lines read to rebuild the series")
    complete: bool = Field(description="false when the log was longer than one bounded read: older epochs missing")
    next: str


SubmitResult.model_rebuild()  # its `automl` field names a model defined after it
