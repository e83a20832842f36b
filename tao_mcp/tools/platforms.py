"""Tool group: which platforms exist and which of their credentials are present (never their values)."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult
from pydantic import Field

from tao_mcp.models import CredentialState, IntakeDefaults, PlatformList, PlatformSummary
from tao_mcp.service.metadata.platforms import find_platform, intake_defaults, platforms
from tao_mcp.tools._common import LARGE_RESULT, READ_ONLY_BACKEND, app, coded_errors, respond


def state_text(p: PlatformSummary) -> str:
    return p.state if p.state == "ready" else f"{p.state}: {p.reason}"


def credential_line(c: CredentialState) -> str:
    """Each variable once: `required: present|missing`, `optional: present|not set (what it is for)`."""
    how = f"; how to get it: {c.how_to_get}" if c.how_to_get and not c.present else ""
    if c.required:
        return f"  {c.name} — required: {'present' if c.present else 'missing'}{how}"
    if c.present:
        return f"  {c.name} — optional: present"
    purpose = c.description or (f"needed when {c.only_when}" if c.only_when else "")
    return f"  {c.name} — optional: not set" + (f" ({purpose})" if purpose else "")


def render(result: PlatformList) -> str:
    intake = result.intake_defaults
    defaults = (
        f"Intake defaults: long-running monitoring {'on' if intake.long_running_enabled else 'off'}, "
        f"status every {intake.status_interval_minutes:g} minutes"
    )
    if result.platform is None:
        rows = [f"- {p.name} ({p.display_name}): {state_text(p)}" for p in result.platforms]
        return "Platforms:\n" + "\n".join(rows) + f"\n{defaults}\nNext: {result.next}"
    d = result.platform
    lines = [f"{d.display_name} ({d.name}) — {state_text(d)}", d.description, "Credentials:"]
    lines += [credential_line(c) for c in d.credentials]
    lines += [
        f"  one of {' / '.join(g.require_one_of)} — required: {'present' if g.satisfied else 'missing'}"
        + (f"; how to get it: {g.how_to_get}" if g.how_to_get and not g.satisfied else "")
        for g in d.credential_groups
    ]
    lines.append(f"Storage: {d.storage.get('protocol', '?')} ({d.storage.get('uri_format', '')})")
    if d.dataset_examples:
        lines += ["Dataset examples:", *(f"  {example}" for example in d.dataset_examples)]
    if d.preflight_checks:
        lines += ["Preflight checks:", *(f"  {check}" for check in d.preflight_checks)]
    lines.append(defaults)
    if d.diagnostics:
        lines += ["Diagnostics:", *(f"  {name}: {value}" for name, value in d.diagnostics.items())]
    if d.options:
        lines += ["submit_job options:", *(f"  {name}: {text}" for name, text in d.options.items())]
    if d.policy:
        lines += ["Job policy:", *(f"  {name}: {text}" for name, text in d.policy.items())]
    lines.append(f"Next: {result.next}")
    return "\n".join(lines)


def next_for(name: str, state: str, missing: list[str], reason: str | None) -> str:
    if state == "ready":
        return f"submit_job(platform='{name}', command=..., dry_run=True)"
    if state == "not_configured" and missing:
        return f"ask the user to set {', '.join(missing)} in the server environment (not in chat), then restart it"
    if state == "not_configured":
        return f"ask the user to correct the {name} settings ({reason}), then restart the server"
    if state == "unreachable":
        return (
            f"tell the user the {name} backend does not answer ({reason}); once they have started or fixed it, "
            f"list_platforms(platform='{name}') again (readings are cached for 30 s)"
        )
    ready = "a platform list_platforms() shows as ready"
    return f"{name} is listed by the skill bank but tao-mcp cannot submit to it: use {ready}"


def register(server: MCPServer) -> None:
    @server.tool(title="List platforms and readiness", meta=LARGE_RESULT, annotations=READ_ONLY_BACKEND)
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
        readiness = app(ctx).jobs.readiness
        if platform is None:
            records = platforms(settings)
            readings = await readiness.check_all(records)
            summaries = [p.summary(settings, readings[p.name].state, readings[p.name].reason) for p in records]
            ready = [s.name for s in summaries if s.ready]
            result = PlatformList(
                platforms=summaries,
                intake_defaults=IntakeDefaults(**intake_defaults(settings)),
                next=(
                    f"submit_job(platform='{ready[0]}', ..., dry_run=True) on a ready platform "
                    f"({', '.join(ready)}); list_platforms(platform='<name>') for one platform's credentials"
                    if ready
                    else "no platform is ready: list_platforms(platform='<name>') shows what one needs"
                ),
            )
        else:
            record = find_platform(platform, settings)
            reading = await readiness.check(record, recheck_unreachable=True)
            detail = record.detail(settings, reading.state, reading.reason)
            detail.policy = app(ctx).jobs.policy.describe(record.name)
            if detail.ready:
                detail.diagnostics = await app(ctx).extras.diagnostics(record.name)
            result = PlatformList(
                platform=detail,
                intake_defaults=IntakeDefaults(**intake_defaults(settings)),
                next=next_for(record.name, reading.state, detail.missing, reading.reason),
            )
        return respond(ctx, result, render(result))
