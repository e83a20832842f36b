"""Tool group: durable multi-step workflows (chains and sweeps of ordinary jobs) that the server drives."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult
from pydantic import Field

from tao_mcp.models import WorkflowList, WorkflowStatus, WorkflowWaitResult
from tao_mcp.tools._common import (
    LARGE_RESULT,
    READ_ONLY_BACKEND,
    READ_ONLY_LOCAL,
    app,
    coded_errors,
    respond,
    tool_hints,
)

WorkflowId = Annotated[str, Field(description="the workflow_id submit_workflow returned", min_length=1, max_length=64)]
MAX_WAIT_S = 50
DETAILED_STEPS = 8  # more steps: one line each in the text (the structured content has everything)


def render_workflow(w: WorkflowStatus) -> str:
    head = "DRY RUN (nothing launched)" if w.dry_run else ("Reused earlier submission" if w.reused else "Workflow")
    counts = ", ".join(f"{n} {status}" for status, n in sorted(w.counts.items()))
    lines = [f"{head}: {w.workflow_id} '{w.name}' — {w.status} ({counts}); max_parallel={w.max_parallel}"]
    if w.message:
        lines.append(f"  {w.message}")
    for s in w.steps:
        job = f" job {s.job_id}" if s.job_id else ""
        metric = f" metric={s.metric:g}" if s.metric is not None else ""
        lines.append(f"- {s.step}: {s.status}{job}{metric}" + (f" — {s.message[:120]}" if s.message else ""))
        if s.results_location and len(w.steps) <= DETAILED_STEPS:
            lines.append(f"    results: {s.results_location}")
        if s.rendered and len(w.steps) <= DETAILED_STEPS:
            lines.append(f"    rendered: {s.rendered[:400]}")
    if w.best:
        lines.append(f"Best {w.best.metric} ({w.best.goal}): {w.best.value:g} at {w.best.step} (job {w.best.job_id})")
    lines.append(f"Next: {w.next}")
    return "\n".join(lines)


def register(server: MCPServer) -> None:
    @server.tool(
        title="Submit a multi-step workflow",
        meta=LARGE_RESULT,
        annotations=tool_hints(read_only=False, destructive=False, idempotent=False, open_world=True),
    )
    @coded_errors
    async def submit_workflow(
        ctx: Context,
        name: Annotated[str, Field(description="a short label (up to 32 [A-Za-z0-9_-])")],
        steps: Annotated[
            list[dict[str, Any]],
            Field(
                description="each step: {id, depends_on: [step ids], matrix: {param: [values]} (optional sweep), "
                "plus any submit_job arguments}. Arguments may reference {{steps.<id>.results}}, "
                "{{steps.<id>.outputs.<name>}} (of a step it depends on) and {{matrix.<param>}}",
                min_length=1,
            ),
        ],
        max_parallel: Annotated[int, Field(ge=1, le=64, description="jobs of this workflow running at once")] = 4,
        idempotency_key: Annotated[
            str | None,
            Field(description="a retry with the same key returns the same workflow and starts nothing", max_length=128),
        ] = None,
        dry_run: Annotated[
            bool, Field(description="check every step and render its job without launching or recording anything")
        ] = False,
    ) -> Annotated[CallToolResult, WorkflowStatus]:
        """Start a durable workflow: the server launches each step's job once its dependencies completed (it keeps
        going across restarts and without the agent). A matrix step is a sweep (one job per combination); a failed
        step skips its dependents and ends the workflow Error. Everything is checked first (dry_run=True shows the
        rendered jobs). Next: wait_for_workflow(workflow_id) or workflow_status(workflow_id)."""
        result = await app(ctx).workflows.submit(name, steps, max_parallel, idempotency_key, dry_run)
        return respond(ctx, result, render_workflow(result))

    @server.tool(title="Workflow status", meta=LARGE_RESULT, annotations=READ_ONLY_BACKEND)
    @coded_errors
    async def workflow_status(
        ctx: Context,
        workflow_id: WorkflowId,
        metric: Annotated[
            str | None,
            Field(
                description="a metric name (e.g. val_acc): each step's last logged value and the best across a sweep",
                max_length=64,
            ),
        ] = None,
        goal: Annotated[Literal["max", "min"], Field(description="whether a higher or lower metric is better")] = "max",
    ) -> Annotated[CallToolResult, WorkflowStatus]:
        """Status of a workflow and of every step: status, job_id, progress, results location and declared outputs,
        and with metric= the best value across the steps. Next: wait_for_workflow while it runs, failure_analysis
        for a failed step's job."""
        result = await app(ctx).workflows.status(workflow_id, metric, goal)
        return respond(ctx, result, render_workflow(result))

    @server.tool(title="Wait for a workflow", meta=LARGE_RESULT, annotations=READ_ONLY_BACKEND)
    @coded_errors
    async def wait_for_workflow(
        ctx: Context,
        workflow_id: WorkflowId,
        timeout_s: Annotated[int, Field(ge=1, le=MAX_WAIT_S, description="seconds to wait in this call (max 50)")] = 45,
    ) -> Annotated[CallToolResult, WorkflowWaitResult]:
        """Wait up to timeout_s (≤50 s) for a workflow to end, sending progress notifications (steps ended of all
        steps); returns its status with done=true/false. When done is false call it again; canceling this call never
        cancels the workflow. Next: workflow_status(metric=...) or failure_analysis for a failed step."""

        sent: list[tuple[float, str]] = []

        async def progress(ended: float, total: float, message: str) -> None:
            if sent and sent[-1][1] == message:
                return  # only news is sent, and progress must rise with each notification
            value = max(ended, sent[-1][0] + 0.001) if sent else ended
            sent.append((value, message))
            await ctx.report_progress(round(value, 3), total, app(ctx).redactor.text(message))

        result = await app(ctx).workflows.wait(workflow_id, timeout_s, progress)
        return respond(ctx, result, f"done={result.done} after {result.waited_s}s\n" + render_workflow(result))

    @server.tool(
        title="Cancel a workflow",
        meta=LARGE_RESULT,
        annotations=tool_hints(read_only=False, destructive=True, idempotent=True, open_world=True),
    )
    @coded_errors
    async def cancel_workflow(ctx: Context, workflow_id: WorkflowId) -> Annotated[CallToolResult, WorkflowStatus]:
        """Cancel a workflow: steps not started never start, and each running step's job is canceled like
        cancel_job (Canceled only once its backend confirms). Repeating it is harmless. Next: workflow_status."""
        result = await app(ctx).workflows.cancel(workflow_id)
        return respond(ctx, result, render_workflow(result))

    @server.tool(title="List workflows", annotations=READ_ONLY_LOCAL)
    @coded_errors
    async def list_workflows(
        ctx: Context,
        status: Annotated[
            Literal["Running", "Complete", "Error", "Canceling", "Canceled"] | None,
            Field(description="only workflows in this status"),
        ] = None,
        limit: Annotated[int, Field(ge=1, le=200, description="workflows per page")] = 50,
        cursor: Annotated[str | None, Field(description="next_cursor from an earlier call")] = None,
    ) -> Annotated[CallToolResult, WorkflowList]:
        """List the workflows this server runs or ran, newest first, from its durable store.
        Next: workflow_status(workflow_id) for one of them."""
        result = app(ctx).workflows.list(status, limit, cursor)
        rows = [
            f"- {w.workflow_id} {w.name:<20} {w.status:<9} {w.steps} steps {w.created_at}" for w in result.workflows
        ]
        text = "\n".join([f"{len(result.workflows)} workflows", *rows, f"Next: {result.next}"])
        return respond(ctx, result, text)
