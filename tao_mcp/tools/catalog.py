"""Tool group: the TAO model catalog — which models and actions exist, and which image runs them."""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult
from pydantic import Field

from tao_mcp.models import ImageResolution, ModelList
from tao_mcp.service.metadata import images, listing
from tao_mcp.tools._common import LARGE_RESULT, READ_ONLY_LOCAL, app, coded_errors, respond


def render_models(result: ModelList) -> str:
    shown = len(result.models) + len(result.unsupported)
    lines = [f"{shown} of {result.total} models ({result.scope}, from {result.source})"]
    for m in result.models:
        actions = ", ".join(
            a.name + ("*" if a.automl_capable else "") + ("" if a.declared else " (schema only)") for a in m.actions
        )
        lines.append(
            f"- {m.model} [{m.network_arch}] actions: {actions}" + (" (AutoML off)" if not m.automl_enabled else "")
        )
        lines += [
            f"    backend {b}: {', '.join(acts) or 'no supported actions'}" for b, acts in m.backend_actions.items()
        ]
        lines += [
            f"    {a.name} AutoML defaults: {', '.join(a.automl_default_parameters)}"
            for a in m.actions
            if a.automl_default_parameters
        ]
    if result.unsupported:
        lines.append("Not AutoML-capable:")
        lines += [f"- {u.model} [{u.network_arch}]: {u.reason}" for u in result.unsupported]
    lines += [f"note: {n}" for n in result.notes]
    lines.append(
        "(* = AutoML-capable per the skill bank: start_automl tunes its training; submit_job runs one plain job)"
    )
    lines.append(f"Next: {result.next}")
    return "\n".join(lines)


BUILD = "none: build it from a clean repository checkout"


def render_image(r: ImageResolution) -> str:
    lines = [
        f"{r.model} {r.action}: {r.image or (BUILD if r.build_required else '(no image declared)')}",
        f"  declared {r.declared_image!r} via {r.source or '-'} (resolved from {r.resolved_from})",
    ]
    if r.backend:
        lines.append(
            f"  backend {r.backend}: {r.backend_reason}" + (f" ({r.backend_contract})" if r.backend_contract else "")
        )
    lines.append(f"  confirmation required: ask the user to confirm, or pass {r.override_key}=<uri> to submit_job")
    lines.append(f"Next: {r.next}")
    return "\n".join(lines)


def register(server: MCPServer) -> None:
    @server.tool(title="List TAO models", meta=LARGE_RESULT, annotations=READ_ONLY_LOCAL)
    @coded_errors
    async def list_models(
        ctx: Context,
        scope: Annotated[
            Literal["all", "automl"],
            Field(
                description="automl: only the model actions the skill bank marks AutoML-capable (AutoML routing "
                "is not implemented yet; plain training works)"
            ),
        ] = "all",
        action: Annotated[str | None, Field(description="only models that have this action, e.g. train")] = None,
        limit: Annotated[int, Field(ge=1, le=100, description="models per page")] = listing.MODELS_PER_PAGE,
        cursor: Annotated[str | None, Field(description="next_cursor from an earlier call")] = None,
    ) -> Annotated[CallToolResult, ModelList]:
        """List the TAO models the skill bank (or the built-in list) knows: network_arch, actions, whether AutoML
        applies and each action's schema. Next: resolve_image(model, action) for the one to run."""
        result = listing.list_models(app(ctx).settings, scope=scope, action=action, limit=limit, cursor=cursor)
        return respond(ctx, result, render_models(result))

    @server.tool(title="Resolve a model's container image", annotations=READ_ONLY_LOCAL)
    @coded_errors
    async def resolve_image(
        ctx: Context,
        model: Annotated[str, Field(description="skill directory, network_arch or alias (list_models shows them)")],
        action: Annotated[str, Field(description="the model action, e.g. train, evaluate, export")] = "train",
        backend: Annotated[
            str,
            Field(description="implementation backend for multi-backend models: a name or alias (rl, framework)"),
        ] = "auto",
        workload: Annotated[
            str | None,
            Field(
                description="what the run is for, e.g. automl or hpo: may pick the backend (AutoML/HPO on the RL one)"
            ),
        ] = None,
    ) -> Annotated[CallToolResult, ImageResolution]:
        """The default container image for a TAO model action from packaged metadata, where it came from, and
        how to override it. Always ask the user to confirm it. Next: submit_job(model=..., action=...,
        dry_run=True)."""
        result = images.resolve_image(app(ctx).settings, model, action, backend, workload or "")
        return respond(ctx, result, render_image(result))
