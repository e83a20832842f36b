"""A job as MCP resources: tao://jobs/{job_id} (its status JSON, with training progress), .../logs (the last 200
lines) and .../metrics (the per-epoch series JSON; the chart comes with the job_metrics tool). Read through the same
service calls as the tools, redacted the same way. Completions for job_id: tools/completions.py."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError

from tao_mcp.errors import TaoError
from tao_mcp.service.jobs import LOG_DEFAULT_TAIL
from tao_mcp.service.metrics import job_metrics
from tao_mcp.tools._common import app


async def _read(ctx: Context, read: Callable[[], Awaitable[str]]) -> str:
    redactor = app(ctx).redactor
    try:
        return redactor.text(await read())
    except TaoError as exc:
        raise ResourceError(redactor.text(str(exc))) from None


def register(server: MCPServer) -> None:
    @server.resource(
        "tao://jobs/{job_id}",
        name="job",
        title="A job's status",
        description="The job's status as job_status returns it (JSON), with its training progress "
        "(epoch, max_epoch, percent, eta, latest metrics) once it reports some.",
        mime_type="application/json",
    )
    async def job(job_id: str, ctx: Context) -> str:
        async def read() -> str:
            status = await app(ctx).jobs.status(job_id)
            return json.dumps(status.model_dump(mode="json"), indent=1)

        return await _read(ctx, read)

    @server.resource(
        "tao://jobs/{job_id}/logs",
        name="job_logs",
        title="A job's log (last 200 lines)",
        description="The last 200 lines of the job's log, redacted, progress lines hidden (job_logs pages further).",
        mime_type="text/plain",
    )
    async def job_log(job_id: str, ctx: Context) -> str:
        async def read() -> str:
            page = await app(ctx).jobs.logs(job_id, LOG_DEFAULT_TAIL, None, None)
            return "\n".join(page.lines)

        return await _read(ctx, read)

    @server.resource(
        "tao://jobs/{job_id}/metrics",
        name="job_metrics",
        title="A job's training metrics",
        description="The job's per-epoch metric series (JSON: min/max/last/best epoch of each); the job_metrics tool "
        "adds a PNG chart.",
        mime_type="application/json",
    )
    async def job_metric_series(job_id: str, ctx: Context) -> str:
        async def read() -> str:
            metrics, _ = await job_metrics(app(ctx).jobs, job_id, None, None)
            return json.dumps(metrics.model_dump(mode="json"), indent=1)

        return await _read(ctx, read)
