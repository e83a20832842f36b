"""Tool group: platform extras — replica diagnostics (Lepton, Kubernetes) and billed instances (Brev)."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult
from pydantic import Field

from tao_mcp.models import InstanceDeletion, InstanceList, ReplicaList
from tao_mcp.tools._common import READ_ONLY_BACKEND, app, coded_errors, respond, tool_hints

Platform = Annotated[str, Field(description="a platform with instances (brev)")]


def register(server: MCPServer) -> None:
    @server.tool(title="Show a job's replicas", annotations=READ_ONLY_BACKEND)
    @coded_errors
    async def job_replicas(
        ctx: Context, job_id: Annotated[str, Field(description="the job_id submit_job returned", min_length=1)]
    ) -> Annotated[CallToolResult, ReplicaList]:
        """Show a job's replicas (pods / Lepton replicas): node, phase and any readiness issue — the view for a
        job stuck in Pending (image pull, no capacity, bad mount). Next: failure_analysis(job_id)."""
        result = await app(ctx).extras.replicas(job_id)
        rows = [
            f"- {r.id} node={r.node or '-'} phase={r.phase or '-'}"
            + (f" issue={r.readiness_issue.reason}: {r.readiness_issue.message}" if r.readiness_issue else "")
            for r in result.replicas
        ]
        text = "\n".join([f"Job {job_id} ({result.status}): {len(rows)} replicas", *rows, f"Next: {result.next}"])
        return respond(ctx, result, text)

    @server.tool(title="List GPU instances", annotations=READ_ONLY_BACKEND)
    @coded_errors
    async def list_instances(ctx: Context, platform: Platform = "brev") -> Annotated[CallToolResult, InstanceList]:
        """List the GPU instances of an instance-based platform (Brev) with status and type; they bill until
        deleted. Next: delete_instance(name) for the ones no longer needed, or submit_job(options={'instance':
        name}) to reuse one."""
        result = await app(ctx).extras.list_instances(platform)
        rows = [
            f"- {i.name} {i.status or '-'} {i.instance_type or ''} {i.gpu or ''}".rstrip() for i in result.instances
        ]
        return respond(ctx, result, "\n".join([f"{len(rows)} instances", *rows, f"Next: {result.next}"]))

    @server.tool(
        title="Delete a GPU instance",
        annotations=tool_hints(read_only=False, destructive=True, idempotent=True, open_world=True),
    )
    @coded_errors
    async def delete_instance(
        ctx: Context,
        name: Annotated[str, Field(description="the instance name list_instances shows", min_length=1)],
        platform: Platform = "brev",
    ) -> Annotated[CallToolResult, InstanceDeletion]:
        """Delete a billed GPU instance (Brev). Jobs still running on it are lost; tao-mcp never deletes
        instances on its own. Next: list_instances to confirm it is gone."""
        result = await app(ctx).extras.delete_instance(platform, name)
        return respond(ctx, result, f"{result.name}: {result.status} {result.message}\nNext: {result.next}")
