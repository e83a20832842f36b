"""The files of a dry-run plan as MCP resources: tao://plans/{plan_id}/{name}, the full text a dry-run result
lists by size and sha256 only."""

from __future__ import annotations

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError

from tao_mcp.errors import TaoError
from tao_mcp.service.plans import URI_TEMPLATE
from tao_mcp.tools._common import app


def register(server: MCPServer) -> None:
    @server.resource(
        URI_TEMPLATE,
        name="plan_file",
        title="A file of a dry-run plan",
        description="The full text of one file a dry run rendered (submit_job(dry_run=True) lists them in files[] "
        "with size and sha256). Readable until the plan expires.",
        mime_type="text/plain",
    )
    async def plan_file(plan_id: str, name: str, ctx: Context) -> str:
        state = app(ctx)
        try:
            return state.redactor.text(state.jobs.plans.file(plan_id, name))
        except TaoError as exc:
            raise ResourceError(state.redactor.text(str(exc))) from None
