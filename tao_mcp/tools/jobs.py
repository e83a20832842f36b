"""Tool group: submit, watch, read, diagnose, cancel and list jobs."""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, ImageContent
from pydantic import Field

from tao_mcp.errors import TaoError
from tao_mcp.models import FailureAnalysis, JobList, JobMetrics, JobStatus, LogPage, SubmitResult, WaitResult
from tao_mcp.service.automl.service import render_review
from tao_mcp.service.jobs import LOG_DEFAULT_TAIL, SubmitParams
from tao_mcp.service.metrics import job_metrics as metrics_of
from tao_mcp.states import JobStateField
from tao_mcp.tools._common import (
    LARGE_RESULT,
    READ_ONLY_BACKEND,
    READ_ONLY_LOCAL,
    app,
    coded_errors,
    report_progress,
    respond,
    tool_hints,
)

JobId = Annotated[str, Field(description="the job_id submit_job returned", min_length=1, max_length=64)]
MAX_WAIT_S = 50


def deprecated(option: str) -> str:
    """The seven former SLURM-only arguments: still accepted for one release, for every platform, as options."""
    return f"deprecated: use options={{'{option}': ...}} (removed in the next release)"


def render_status(s: JobStatus) -> str:
    lines = [f"Job {s.job_id} on {s.platform}: {s.status} (raw {s.raw_state or '-'})"]
    if s.message:
        lines.append(f"  {s.message}")
    if s.pending_reason:
        lines.append(f"  pending reason: {s.pending_reason}")
    if s.exit_code is not None:
        lines.append(f"  exit code: {s.exit_code}")
    if s.results_location:
        lines.append(f"  results: {s.results_location}")
    if s.progress:
        lines.append(f"  progress: {s.progress.message}")
    lines.append(f"  backend: {s.backend_name} id={s.backend_id or '-'}; created {s.created_at}")
    lines.append(f"Next: {s.next}")
    return "\n".join(lines)


def render_submit(r: SubmitResult) -> str:
    if r.dry_run:
        lines = [f"DRY RUN (nothing launched): plan {r.plan_id} on {r.platform}, valid until {r.plan_expires_at}"]
    else:
        head = "Reused earlier submission" if r.reused else "Submitted"
        lines = [f"{head}: job {r.job_id} on {r.platform} — {r.status}"]
    lines.append(f"  {r.message}")
    if r.results_location:
        lines.append(f"  results: {r.results_location}")
    lines += [f"  WARNING: {w}" for w in r.warnings if w not in r.message]
    if r.automl and r.automl.review:
        lines.append(f"  AutoML review: {render_review(r.automl.review)}")
    for path, text in (r.preview or {}).items():
        lines += [f"--- {path}", text.rstrip()]
    if r.files:
        lines.append("--- files (full text: read the resource)")
        lines += [f"  {f.uri}  {f.size} bytes  sha256 {f.sha256[:16]}…" for f in r.files]
    lines.append(f"Next: {r.next}")
    return "\n".join(lines)


def render_metrics(m: JobMetrics) -> str:
    lines = [f"Job {m.job_id} ({m.status}): {len(m.series)} metrics" + ("" if m.complete else " (latest epochs only)")]
    if m.series:
        lines.append(f"  {'metric':<24} {'epochs':>6} {'min':>10} {'max':>10} {'last':>10} {'best':>10} @epoch")
    for s in m.series:
        lines.append(
            f"  {s.name[:24]:<24} {len(s.epochs):>6} {s.min:>10.4g} {s.max:>10.4g} {s.last:>10.4g} {s.best:>10.4g} "
            f"@{s.best_epoch} ({s.goal})"
        )
    if m.chart:
        lines.append("  chart: attached as PNG image content")
    lines.append(f"Next: {m.next}")
    return "\n".join(lines)


def render_analysis(a: FailureAnalysis) -> str:
    lines = [
        f"Job {a.job_id} ({a.status}): {a.category} [{a.err_class}], retriable={a.retriable}, "
        f"confidence={a.confidence}",
        f"  {a.summary}",
        f"  Fix: {a.suggestion}",
    ]
    lines += [f"  [{e.source}{'' if e.line is None else ' line ' + str(e.line + 1)}] {e.text}" for e in a.evidence]
    lines += [f"  node event: {n}" for n in a.node_events]
    lines.append(f"Next: {a.next}")
    return "\n".join(lines)


def register(server: MCPServer) -> None:
    # Not idempotent: two identical calls launch two jobs. A retry is safe only with the same idempotency_key.
    @server.tool(
        title="Submit a GPU job",
        meta=LARGE_RESULT,
        annotations=tool_hints(read_only=False, destructive=False, idempotent=False, open_world=True),
    )
    @coded_errors
    async def submit_job(
        ctx: Context,
        platform: Annotated[
            str | None,
            Field(description="slurm | kubernetes | docker | lepton | brev (or an alias); required unless plan_id"),
        ] = None,
        command: Annotated[
            str | None, Field(description="shell command run inside the container with bash -c (or give model+action)")
        ] = None,
        image: Annotated[str | None, Field(description="container image; SLURM may run without one")] = None,
        gpu_count: Annotated[
            int, Field(description="GPUs per node (0 = CPU only)", json_schema_extra={"minimum": 0})
        ] = 1,
        num_nodes: Annotated[
            int,
            Field(
                description="nodes (multi-node sets MASTER_ADDR, NODE_RANK, WORLD_SIZE)",
                json_schema_extra={"minimum": 1},
            ),
        ] = 1,
        env: Annotated[dict[str, str] | None, Field(description="NON-secret environment variables")] = None,
        secret_env: Annotated[
            list[str] | None,
            Field(
                description="NAMES of server environment variables to forward as secrets (e.g. NGC_KEY, HF_TOKEN); "
                "values never pass through the agent"
            ),
        ] = None,
        time_limit: Annotated[str | int | None, Field(description="minutes, or HH:MM[:SS] / D-HH:MM[:SS]")] = None,
        name: Annotated[str | None, Field(description="a short label for list_jobs ([A-Za-z0-9_.-])")] = None,
        idempotency_key: Annotated[
            str | None,
            Field(
                description="makes retries safe: a retry with the same key returns the same job and launches "
                "nothing (without it, every call launches a new job)",
                max_length=128,
            ),
        ] = None,
        dry_run: Annotated[bool, Field(description="render the plan (secrets redacted) without launching")] = False,
        inputs: Annotated[
            dict[str, Any] | None,
            Field(description="data to download before the command: spec path/arg name/container path -> s3:// URI"),
        ] = None,
        outputs: Annotated[
            dict[str, Any] | list[str] | None,
            Field(description="results to upload after the command (even when it fails)"),
        ] = None,
        specs: Annotated[
            dict[str, Any] | None, Field(description="nested spec dict written to {config_path} (config mode)")
        ] = None,
        args: Annotated[
            dict[str, Any] | None, Field(description="flat dict appended as --key value (args mode)")
        ] = None,
        config_format: Annotated[Literal["yaml", "json", "toml"], Field(description="spec file format")] = "yaml",
        upload_excludes: Annotated[
            list[str] | None, Field(description="glob patterns not uploaded; a trailing / excludes a subtree")
        ] = None,
        results_uri: Annotated[str | None, Field(description="s3:// prefix for results (default: platform)")] = None,
        partition: Annotated[str | None, Field(description=deprecated("partition"))] = None,
        account: Annotated[str | None, Field(description=deprecated("account"))] = None,
        mounts: Annotated[list[str] | None, Field(description=deprecated("mounts"))] = None,
        cpus: Annotated[int | None, Field(description=deprecated("cpus"))] = None,
        memory: Annotated[str | None, Field(description=deprecated("memory"))] = None,
        launcher: Annotated[str | None, Field(description=deprecated("launcher"))] = None,
        hold: Annotated[bool | None, Field(description=deprecated("hold"))] = None,
        model: Annotated[
            str | None, Field(description="TAO model (list_models): its action record supplies command, data, image")
        ] = None,
        action: Annotated[str | None, Field(description="the model action, e.g. train (with model)")] = None,
        backend: Annotated[str, Field(description="implementation backend for multi-backend models")] = "auto",
        spec_overrides: Annotated[
            dict[str, Any] | None,
            Field(description="with model/action: overrides on the packaged spec template; dotted keys allowed"),
        ] = None,
        resume_from: Annotated[
            str | None,
            Field(
                description="an earlier job_id: the new job starts from that job's latest checkpoint (the highest "
                "epoch in its results); a restarted job (SLURM requeue) resumes by itself"
            ),
        ] = None,
        options: Annotated[
            dict[str, Any] | None,
            Field(
                description="platform options, e.g. SLURM partition/account, Docker mounts/memory, Kubernetes "
                "namespace/volumes; list_platforms(platform=...) describes the accepted keys"
            ),
        ] = None,
        plan_id: Annotated[
            str | None,
            Field(
                description="launch exactly the plan a dry run returned (what the user confirmed); give it alone "
                "(idempotency_key and the plan's own platform are the only other arguments accepted)",
                max_length=64,
            ),
        ] = None,
        monitor: Annotated[
            dict[str, Any] | None,
            Field(
                description="long-running monitoring recorded with the job: {'enabled': true, 'interval_minutes': 5} "
                "(defaults: the skill bank's intake defaults); wait_for_job(until='update') reports at that interval"
            ),
        ] = None,
        automl_policy: Annotated[
            Literal["auto", "off"],
            Field(
                description="with model and action='train': auto routes an AutoML-capable model through AutoML (a "
                "review, then start_automl(plan_id)); off runs one plain training job"
            ),
        ] = "auto",
    ) -> Annotated[CallToolResult, SubmitResult]:
        """Launch one GPU job and return at once with its job_id. First call it with dry_run=True: that launches
        nothing and returns a plan_id; show the plan, and once the user confirms, submit_job(plan_id=...) launches
        exactly that plan (once; plans expire after an hour). Each other call launches a new job: pass an
        idempotency_key to make retries safe (a retry with the same key returns the first job). Fails fast with
        E_BACKEND_UNREACHABLE, recording nothing, when the platform's backend does not answer. Credentials are
        forwarded by name with secret_env. Next: wait_for_job(job_id), then job_logs or failure_analysis."""
        named = {
            k: v
            for k, v in {
                "partition": partition,
                "account": account,
                "mounts": mounts,
                "cpus": cpus,
                "memory": memory,
                "launcher": launcher,
                "hold": hold,
            }.items()
            if v is not None
        }
        clash = sorted(set(named) & set(options or {}))
        if clash:
            raise TaoError(
                "E_BAD_INPUT",
                f"{', '.join(clash)} given both as an argument and inside options",
                "give each option once",
            )
        options = {**(options or {}), **named}
        if platform is None and plan_id is None:
            raise TaoError(
                "E_BAD_INPUT",
                "platform: missing",
                "give platform (list_platforms shows them) or the plan_id of a dry run",
            )
        params = SubmitParams(
            platform=platform or "",
            command=command or "",
            image=image,
            gpu_count=gpu_count,
            num_nodes=num_nodes,
            env=env or {},
            secret_env=secret_env or [],
            time_limit=time_limit,
            name=name,
            idempotency_key=idempotency_key,
            dry_run=dry_run,
            options=options,
            specs=specs,
            args=args,
            inputs=inputs,
            outputs=outputs,
            config_format=config_format,
            upload_excludes=upload_excludes,
            results_uri=results_uri,
            model=model,
            action=action,
            backend=backend,
            spec_overrides=spec_overrides,
            resume_from=resume_from,
            monitor=monitor,
        )
        jobs = app(ctx).jobs
        routed = None if plan_id else await app(ctx).automl.route(params, automl_policy)
        if routed is not None:
            return respond(ctx, routed, render_submit(routed))
        result = await (jobs.submit_plan(plan_id, params) if plan_id else jobs.submit(params))
        if named:
            result.message += (
                f"; note: the top-level argument{'' if len(named) == 1 else 's'} {', '.join(named)} "
                f"{'is' if len(named) == 1 else 'are'} deprecated and will be removed in the next release: "
                f"pass {'it' if len(named) == 1 else 'them'} inside options"
            )
        return respond(ctx, result, render_submit(result))

    @server.tool(title="Job status", annotations=READ_ONLY_BACKEND)
    @coded_errors
    async def job_status(ctx: Context, job_id: JobId) -> Annotated[CallToolResult, JobStatus]:
        """Current status of a job (Pending/Running/Paused/Complete/Error/Canceled, plus Canceling/Unknown) with
        the raw backend state, pending reason, exit code and results location. Next: wait_for_job while it is
        open, failure_analysis after Error, job_logs any time."""
        result = await app(ctx).jobs.status(job_id)
        return respond(ctx, result, render_status(result))

    @server.tool(title="Wait for a job", annotations=READ_ONLY_BACKEND)
    @coded_errors
    async def wait_for_job(
        ctx: Context,
        job_id: JobId,
        timeout_s: Annotated[int, Field(ge=1, le=MAX_WAIT_S, description="seconds to wait in this call (max 50)")] = 45,
        until: Annotated[
            Literal["terminal", "running", "update"],
            Field(
                description="return when the job ends (terminal), once it runs (running), or at its next monitoring "
                "update (update: the submit's monitor interval boundary or a state change, whichever comes first)"
            ),
        ] = "terminal",
    ) -> Annotated[CallToolResult, WaitResult]:
        """Wait up to timeout_s (≤50 s) for a job to finish (or start running, or reach its next monitoring update),
        sending progress notifications (epoch of max_epoch once the job reports training progress); returns the
        status with done=true/false. When done is false call wait_for_job again; with until='update' post each
        `update` and stop only when final is true. Canceling this call never cancels the job. Next: job_logs
        or failure_analysis."""
        last = -1.0

        async def progress(value: float, total: float | None, message: str) -> None:
            nonlocal last
            last = max(float(value), last + 0.001)  # progress must strictly increase within a call
            await report_progress(ctx, round(last, 3), message, total if total and last <= total else None)

        result = await app(ctx).jobs.wait(job_id, timeout_s, until, progress)
        head = f"done={result.done} after {result.waited_s}s"
        if result.update:
            head += f"\nUPDATE{' (final)' if result.final else ''}: {result.update}"
        return respond(ctx, result, head + "\n" + render_status(result))

    @server.tool(title="Read a job's log", meta=LARGE_RESULT, annotations=READ_ONLY_BACKEND)
    @coded_errors
    async def job_logs(
        ctx: Context,
        job_id: JobId,
        tail: Annotated[
            int,
            Field(ge=1, le=2000, description="lines to return (a page also stops at ~12k characters of log text)"),
        ] = LOG_DEFAULT_TAIL,
        cursor: Annotated[
            str | None,
            Field(
                description="next_cursor (the lines after that page) or prev_cursor (the lines before it) from an "
                "earlier call"
            ),
        ] = None,
        grep: Annotated[
            str | None,
            Field(
                description="only lines containing this text, searched in the redacted log back from its end (or "
                "from cursor), at most TAO_MCP_GREP_WINDOW_MB (64 MiB) per call; `searched` says how far",
                max_length=200,
            ),
        ] = None,
        raw: Annotated[
            bool,
            Field(description="also show the [tao-progress] lines (hidden by default)"),
        ] = False,
        line_numbers: Annotated[
            bool,
            Field(
                description="prefix each line with its number in the log (hidden lines count too): 1 = the first "
                "line when at most 64 MiB precede it, else negative, counted back from the end (-1 = the last "
                "line when read); `numbering` says which, or that they are unknown (deep inside a huge log)"
            ),
        ] = False,
    ) -> Annotated[CallToolResult, LogPage]:
        """Read a job's log (stdout+stderr), redacted: the last `tail` lines, or the lines after/before `cursor`,
        or only lines containing `grep`; line_numbers=true numbers them. Results say `truncated` and give
        next_cursor (newer lines) and prev_cursor (older lines). Next: failure_analysis after an Error."""
        page = await app(ctx).jobs.logs(job_id, tail, cursor, grep, raw, line_numbers)
        head = f"Job {page.job_id} ({page.status}) — {len(page.lines)} lines" + (
            " (truncated)" if page.truncated else ""
        )
        lines = page.lines
        if page.line_numbers is not None:
            head += f"; {page.numbering}"
            lines = [f"{'?' if n is None else n}: {line}" for n, line in zip(page.line_numbers, lines, strict=True)]
        text = "\n".join([head, *lines, f"Next: {page.next}"])
        return respond(ctx, page, text)

    @server.tool(title="Training metrics of a job", annotations=READ_ONLY_BACKEND)
    @coded_errors
    async def job_metrics(
        ctx: Context,
        job_id: JobId,
        metrics: Annotated[
            list[str] | None,
            Field(description="metric names to show and chart (default: every metric, the first four charted)"),
        ] = None,
        last: Annotated[
            int | None,
            Field(ge=1, le=1000, description="epochs of each series to return (default 100; stats cover all)"),
        ] = None,
    ) -> Annotated[CallToolResult, JobMetrics]:
        """A job's training metrics per epoch (every kpi/graphical value its status.json reported: min, max, last
        and best epoch of each) as a table, plus a PNG chart as image content. Works while it runs, after it ended
        and after a server restart (rebuilt from the log). Next: job_status, or compare jobs by their best values."""
        result, png = await metrics_of(app(ctx).jobs, job_id, metrics, last)
        answer = respond(ctx, result, render_metrics(result))
        if png is not None:
            answer.content.append(
                ImageContent(type="image", data=base64.b64encode(png).decode(), mime_type="image/png")
            )
        return answer

    @server.tool(title="Explain a job failure", meta=LARGE_RESULT, annotations=READ_ONLY_BACKEND)
    @coded_errors
    async def failure_analysis(ctx: Context, job_id: JobId) -> Annotated[CallToolResult, FailureAnalysis]:
        """Explain why a job failed (or why it is still pending): category, error class, whether a resubmit may
        help, evidence lines from the platform and the log, and the fix. Next: submit_job with the fix."""
        result = await app(ctx).jobs.analyze(job_id)
        return respond(ctx, result, render_analysis(result))

    @server.tool(
        title="Cancel a job",
        annotations=tool_hints(read_only=False, destructive=True, idempotent=True, open_world=True),
    )
    @coded_errors
    async def cancel_job(ctx: Context, job_id: JobId) -> Annotated[CallToolResult, JobStatus]:
        """Cancel a job. Reports Canceled only once the backend confirms (else Canceling; call job_status later);
        repeating it is harmless. Next: job_logs for what ran before the cancel."""
        result = await app(ctx).jobs.cancel(job_id)
        return respond(ctx, result, render_status(result))

    @server.tool(title="List jobs", annotations=READ_ONLY_LOCAL)
    @coded_errors
    async def list_jobs(
        ctx: Context,
        status: Annotated[
            JobStateField | None,
            Field(description="only jobs in this status"),
        ] = None,
        platform: Annotated[str | None, Field(description="only jobs on this platform")] = None,
        limit: Annotated[int, Field(ge=1, le=200, description="jobs per page")] = 50,
        cursor: Annotated[str | None, Field(description="next_cursor from an earlier call")] = None,
    ) -> Annotated[CallToolResult, JobList]:
        """List the jobs this server launched, newest first, from its durable store (they survive restarts).
        Next: job_status(job_id) for one of them."""
        result = app(ctx).jobs.list(status, platform, limit, cursor)
        rows = [
            f"- {j.job_id} {j.platform:<10} {j.status:<9} {j.created_at} "
            + (f"[workflow {j.workflow_id} step {j.step}] " if j.workflow_id else "")
            + j.command[:60]
            for j in result.jobs
        ]
        text = "\n".join([f"{len(result.jobs)} jobs", *rows, f"Next: {result.next}"])
        return respond(ctx, result, text)
