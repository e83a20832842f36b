"""Tool group: which platforms exist and which of their credentials are present (never their values)."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult
from pydantic import Field

from tao_mcp.models import PlatformList, PlatformSummary
from tao_mcp.service.metadata.platforms import find_platform, platforms
from tao_mcp.tools._common import READ_ONLY_BACKEND, app, coded_errors, respond


def state_text(p: PlatformSummary) -> str:
    if not p.available:
        return "no driver in this tao-mcp version"
    return "ready" if p.ready else "missing " + ", ".join(p.missing)


def render(result: PlatformList) -> str:
    if result.platform is None:
        rows = [f"- {p.name} ({p.display_name}): {state_text(p)}" for p in result.platforms]
        return "Platforms:\n" + "\n".join(rows) + f"\nNext: {result.next}"
    d = result.platform
    lines = [f"{d.display_name} ({d.name}) — {state_text(d)}", d.description, "Credentials:"]
    lines += [
        f"  {c.name}: {'present' if c.present else 'MISSING'}{'' if c.required else ' (optional'}"
        f"{'' if c.required or not c.only_when else ': ' + c.only_when}{'' if c.required else ')'}"
        for c in d.credentials
    ]
    lines += [
        f"  one of {' / '.join(g.require_one_of)}: {'present' if g.satisfied else 'MISSING'}"
        for g in d.credential_groups
    ]
    lines.append(f"Storage: {d.storage.get('protocol', '?')} ({d.storage.get('uri_format', '')})")
    if d.diagnostics:
        lines += ["Diagnostics:", *(f"  {name}: {value}" for name, value in d.diagnostics.items())]
    if d.options:
        lines += ["submit_job options:", *(f"  {name}: {text}" for name, text in d.options.items())]
    if d.policy:
        lines += ["Job policy:", *(f"  {name}: {text}" for name, text in d.policy.items())]
    lines.append(f"Next: {result.next}")
    return "\n".join(lines)


def register(server: MCPServer) -> None:
    @server.tool(annotations=READ_ONLY_BACKEND)
    @coded_errors
    async def list_platforms(
        ctx: Context,
        platform: Annotated[
            str | None, Field(description="a platform name or alias; omit to list all platforms")
        ] = None,
    ) -> Annotated[CallToolResult, PlatformList]:
        """List the job platforms (SLURM, Kubernetes, Docker, Lepton, Brev) and whether each is ready; with
        `platform`, show which of its credentials are present or missing (names only, never values), its
        submit_job options and the job policy in force. Ask the user to set missing variables in the server
        environment, then call submit_job."""
        settings = app(ctx).settings
        if platform is None:
            result = PlatformList(
                platforms=[p.summary(settings) for p in platforms(settings)],
                next="list_platforms(platform='<name>') for one platform's credentials",
            )
        else:
            record = find_platform(platform, settings)
            detail = record.detail(settings)
            detail.policy = app(ctx).jobs.policy.describe(record.name)
            if detail.ready:
                detail.diagnostics = await app(ctx).extras.diagnostics(record.name)
            hint = (
                f"submit_job(platform='{record.name}', command=..., dry_run=True)"
                if detail.ready
                else f"ask the user to set {', '.join(detail.missing)} in the server environment (not in chat)"
            )
            result = PlatformList(platform=detail, next=hint)
        return respond(ctx, result, render(result))
