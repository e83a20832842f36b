"""Tool group: AutoML runs — hyperparameter search over a TAO model, every recommendation a tao-mcp job."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult
from pydantic import Field

from tao_mcp.models import AutomlRun, AutomlRunList
from tao_mcp.service.automl.service import AutomlRequest, render_review
from tao_mcp.tools._common import (
    READ_ONLY_LOCAL,
    app,
    coded_errors,
    report_progress,
    respond,
    tool_hints,
)

RunId = Annotated[str, Field(description="the run_id start_automl returned", min_length=1, max_length=64)]
MAX_WAIT_S = 50


def render_run(r: AutomlRun) -> str:
    head = f"AutoML run {r.run_id or '(review)'} [{r.state}] {r.model} on {r.platform}: {r.algorithm}, "
    lines = [head + f"{r.direction} {r.metric}, {r.budget_used}/{r.max_recommendations} recommendations used"]
    if r.message:
        lines.append(f"  {r.message}")
    if r.error:
        lines.append(f"  error: {r.error}")
    if r.review:
        lines.append(f"  review: {render_review(r.review)}")
    if r.plan_id:
        lines.append(f"  plan_id: {r.plan_id}")
    if r.best:
        lines.append(f"  best: rec {r.best.rec_id} {r.metric}={r.best.metric} job {r.best.job_id} {r.best.parameters}")
    for rec in r.recommendations:
        lines.append(
            f"  - rec {rec.rec_id} {rec.status:<8} job {rec.job_id or '-'} metric {rec.metric} {rec.parameters}"
        )
    lines.append(f"Next: {r.next}")
    return "\n".join(lines)


def automl_request(**fields: Any) -> AutomlRequest:
    fields["options"] = fields.get("options") or {}
    fields["env"] = fields.get("env") or {}
    fields["secret_env"] = fields.get("secret_env") or []
    return AutomlRequest(**fields)


def register(server: MCPServer) -> None:
    @server.tool(
        title="Start an AutoML run",
        annotations=tool_hints(read_only=False, destructive=False, idempotent=False, open_world=True),
    )
    @coded_errors
    async def start_automl(
        ctx: Context,
        model: Annotated[str | None, Field(description="TAO model (list_models(scope='automl'))")] = None,
        platform: Annotated[str | None, Field(description="slurm | kubernetes | docker | lepton | brev")] = None,
        metric: Annotated[
            str | None, Field(description="validation metric to optimise (a status.json kpi key, e.g. val_acc)")
        ] = None,
        direction: Annotated[
            Literal["maximize", "minimize"] | None, Field(description="default: from the name")
        ] = None,
        algorithm: Annotated[
            Literal["bayesian", "bfbo", "hyperband", "hyperband_es", "bohb", "asha", "dehb", "pbt"],
            Field(description="the engine's search algorithm"),
        ] = "bayesian",
        max_recommendations: Annotated[int, Field(ge=1, le=200, description="budget: jobs to run")] = 8,
        max_concurrent: Annotated[
            int, Field(ge=1, le=1, description="recommendations at a time (this engine runs one at a time)")
        ] = 1,
        hyperparameters: Annotated[
            list[str] | None, Field(description="spec keys to search (default: the schema's AutoML-enabled keys)")
        ] = None,
        param_ranges: Annotated[
            dict[str, Any] | None,
            Field(description="per key: {'min': .., 'max': ..} or {'options': [...]} narrowing the schema's range"),
        ] = None,
        spec_overrides: Annotated[
            dict[str, Any] | None, Field(description="fixed spec values for every recommendation (dotted keys)")
        ] = None,
        train_dataset_uri: Annotated[str | None, Field(description="training data URI (skill data_sources)")] = None,
        eval_dataset_uri: Annotated[str | None, Field(description="evaluation data URI")] = None,
        image: Annotated[str | None, Field(description="container image (default: the model's)")] = None,
        gpu_count: Annotated[int, Field(ge=0, description="GPUs per node for every recommendation")] = 1,
        num_nodes: Annotated[int, Field(ge=1, description="nodes per recommendation")] = 1,
        time_limit: Annotated[
            str | int | None, Field(description="per recommendation: minutes or HH:MM[:SS] (bounds GPU-hours)")
        ] = None,
        options: Annotated[dict[str, Any] | None, Field(description="platform options, as for submit_job")] = None,
        env: Annotated[dict[str, str] | None, Field(description="NON-secret environment variables")] = None,
        secret_env: Annotated[list[str] | None, Field(description="NAMES of server variables to forward")] = None,
        results_uri: Annotated[str | None, Field(description="s3:// prefix for results (default: platform)")] = None,
        idempotency_key: Annotated[
            str | None, Field(description="a retry with the same key starts nothing new")
        ] = None,
        dry_run: Annotated[bool, Field(description="return the review and its plan_id; launch nothing")] = False,
        plan_id: Annotated[
            str | None, Field(description="the plan_id of a review the user confirmed: starts exactly that run")
        ] = None,
    ) -> Annotated[CallToolResult, AutomlRun]:
        """Tune a TAO model's training with AutoML: every recommendation is a tao-mcp job on the platform. A run
        starts only from a confirmed review: call with dry_run=True (or without plan_id, which answers
        E_CONFIRM_REQUIRED with the review), show the review to the user, then call with plan_id alone.
        Next: wait_for_automl(run_id), automl_status(run_id), stop_automl(run_id)."""
        service = app(ctx).automl
        if plan_id:
            run = await service.start_from_plan(plan_id, idempotency_key)
            return respond(ctx, run, render_run(run))
        if not model or not platform:
            from tao_mcp.errors import TaoError

            raise TaoError("E_BAD_INPUT", "model and platform are needed for a review", "give model= and platform=")
        req = automl_request(
            model=model,
            platform=platform,
            metric=metric,
            direction=direction,
            algorithm=algorithm,
            max_recommendations=max_recommendations,
            max_concurrent=max_concurrent,
            hyperparameters=hyperparameters,
            param_ranges=param_ranges,
            spec_overrides=spec_overrides,
            train_dataset_uri=train_dataset_uri,
            eval_dataset_uri=eval_dataset_uri,
            image=image,
            gpu_count=gpu_count,
            num_nodes=num_nodes,
            time_limit=time_limit,
            options=options,
            env=env,
            secret_env=secret_env,
            results_uri=results_uri,
            idempotency_key=idempotency_key,
        )
        if dry_run:
            run = await service.plan(req)
            return respond(ctx, run, render_run(run))
        raise await service.confirm_required(req)

    @server.tool(title="AutoML run status", annotations=READ_ONLY_LOCAL)
    @coded_errors
    async def automl_status(ctx: Context, run_id: RunId) -> Annotated[CallToolResult, AutomlRun]:
        """State of an AutoML run: its recommendations (parameters, job_id, status, metric), the best so far and
        the budget used. Next: wait_for_automl while it runs; job_status/job_logs of a recommendation's job."""
        run = await app(ctx).automl.status(run_id)
        return respond(ctx, run, render_run(run))

    @server.tool(title="Wait for an AutoML run", annotations=READ_ONLY_LOCAL)
    @coded_errors
    async def wait_for_automl(
        ctx: Context,
        run_id: RunId,
        timeout_s: Annotated[int, Field(ge=1, le=MAX_WAIT_S, description="seconds to wait in this call (max 50)")] = 45,
    ) -> Annotated[CallToolResult, AutomlRun]:
        """Wait up to timeout_s (≤50 s) for an AutoML run to end, sending progress notifications ("rec 3/8
        running — best val_acc 0.81 (rec 2)"); done=false means call again. Canceling the wait never stops the
        run. Next: automl_status, or stop_automl."""
        last = 0.0

        async def progress(elapsed: float, message: str) -> None:
            nonlocal last
            last = max(elapsed, last + 0.001)
            await report_progress(ctx, round(last, 3), message)

        run = await app(ctx).automl.wait(run_id, timeout_s, progress)
        return respond(ctx, run, f"done={run.done} after {run.waited_s}s\n" + render_run(run))

    @server.tool(
        title="Stop an AutoML run",
        annotations=tool_hints(read_only=False, destructive=True, idempotent=True, open_world=True),
    )
    @coded_errors
    async def stop_automl(ctx: Context, run_id: RunId) -> Annotated[CallToolResult, AutomlRun]:
        """Stop an AutoML run: its running recommendation's job is canceled on the backend (reported once the
        backend confirms) and no further recommendation starts. Repeating it is harmless. Next: automl_status."""
        run = await app(ctx).automl.stop(run_id)
        return respond(ctx, run, render_run(run))

    @server.tool(title="List AutoML runs", annotations=READ_ONLY_LOCAL)
    @coded_errors
    async def list_automl_runs(
        ctx: Context,
        limit: Annotated[int, Field(ge=1, le=100, description="runs per page")] = 20,
        cursor: Annotated[str | None, Field(description="next_cursor from an earlier call")] = None,
    ) -> Annotated[CallToolResult, AutomlRunList]:
        """List this server's AutoML runs, newest first (they survive restarts). Next: automl_status(run_id)."""
        result = app(ctx).automl.list(limit, cursor)
        rows = [
            f"- {r.run_id} {r.state:<8} {r.model} on {r.platform} {r.budget_used}/{r.max_recommendations} "
            f"best {r.metric}={r.best_metric}"
            for r in result.runs
        ]
        return respond(ctx, result, "\n".join([f"{len(result.runs)} runs", *rows, f"Next: {result.next}"]))
