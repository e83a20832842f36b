"""Tool group: look at the data jobs read and write (s3://, lustre:// over the SLURM link, file://)."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult
from pydantic import Field

from tao_mcp.storage.models import PathCheck, PathListing
from tao_mcp.tools._common import LARGE_RESULT, READ_ONLY_BACKEND, app, coded_errors, respond

Uri = Annotated[str, Field(description="s3://bucket/prefix, lustre:///abs/path or file:///abs/path", min_length=3)]


def render_listing(result: PathListing) -> str:
    rows = [
        f"- {e.name}{'/' if e.kind == 'dir' else ''}"
        f"{'' if e.size is None else f'  {e.size} B'}{'' if not e.modified else f'  {e.modified}'}"
        for e in result.entries
    ]
    more = " (truncated)" if result.truncated else ""
    return "\n".join([f"{result.uri}: {len(result.entries)} entries{more}", *rows, f"Next: {result.next}"])


def register(server: MCPServer) -> None:
    @server.tool(title="List a storage path", meta=LARGE_RESULT, annotations=READ_ONLY_BACKEND)
    @coded_errors
    async def list_path(
        ctx: Context,
        uri: Uri,
        limit: Annotated[int, Field(ge=1, le=1000, description="entries per page")] = 100,
        cursor: Annotated[str | None, Field(description="next_cursor from an earlier call")] = None,
    ) -> Annotated[CallToolResult, PathListing]:
        """List a folder of job data (datasets, results) with sizes and modification times, one page at a time.
        Use it on a job's results_location after it completes. Next: check_path for one entry, or list_path
        with next_cursor."""
        result = await app(ctx).storage.list_path(uri, limit=limit, cursor=cursor)
        return respond(ctx, result, render_listing(result))

    @server.tool(title="Check a storage path", annotations=READ_ONLY_BACKEND)
    @coded_errors
    async def check_path(ctx: Context, uri: Uri) -> Annotated[CallToolResult, PathCheck]:
        """Check whether a dataset, model or results path exists before submitting a job that reads it; says
        file or folder, size and modification time. Next: list_path for a folder, submit_job with it as input."""
        result = await app(ctx).storage.check_path(uri)
        kind = result.kind or "missing"
        text = f"{result.uri}: {'exists' if result.exists else 'does not exist'} ({kind})"
        if result.size is not None:
            text += f", {result.size} B"
        return respond(ctx, result, f"{text}\nNext: {result.next}")
