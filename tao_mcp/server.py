"""Builds the MCP server: lifespan state (settings, store, job service, pollers) and the tool groups."""

from __future__ import annotations

import contextlib
import logging
import textwrap
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import anyio
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase

from tao_mcp import __version__
from tao_mcp.config import load_settings, state_dir
from tao_mcp.http_auth import HttpPlan, principal_of
from tao_mcp.service.automl.service import AutomlService
from tao_mcp.service.extras import PlatformExtras
from tao_mcp.service.jobs import JobService
from tao_mcp.service.principal import acting_as
from tao_mcp.service.redaction import RedactingFilter, Redactor, file_secrets
from tao_mcp.service.registry import DriverRegistry
from tao_mcp.service.storage import StorageService
from tao_mcp.service.store import JobStore
from tao_mcp.service.workflows import WorkflowService
from tao_mcp.tools._arguments import coded_tool_errors
from tao_mcp.tools.prompts import intake_summary

INSTRUCTIONS = (
    "tao-mcp launches NVIDIA TAO (or any container) GPU jobs on SLURM, Kubernetes, Docker, Lepton and Brev,\n"
    "watches them, reads their logs, explains failures and cancels them.\n"
    "Launch intake (also the launch_workflow prompt), one question at a time:\n" + textwrap.fill(intake_summary(), 115)
)


@dataclass
class AppState:
    settings: Mapping[str, str]
    redactor: Redactor
    jobs: JobService
    extras: PlatformExtras
    storage: StorageService
    workflows: WorkflowService
    automl: AutomlService


def build_server(environ: Mapping[str, str] | None = None, *, http: HttpPlan | None = None) -> MCPServer[AppState]:
    """The server with every tool group registered. `environ` replaces os.environ (tests); `http` adds the
    bearer-token authentication of `tao-mcp --http`."""

    @contextlib.asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncIterator[AppState]:
        settings = load_settings(environ)
        redactor = Redactor.from_settings(settings)
        redactor.add(file_secrets(settings))  # kubeconfig credentials, the SSH key
        log_filter = RedactingFilter(redactor)
        handlers = logging.getLogger().handlers
        for handler in handlers:
            handler.addFilter(log_filter)
        store = JobStore(state_dir(settings) / "jobs.sqlite3", redactor)
        drivers = DriverRegistry(settings)  # one driver per platform, shared by the services
        jobs = JobService(settings, store, redactor, drivers)
        workflows = WorkflowService(jobs)
        automl = AutomlService(settings, jobs)
        try:
            async with anyio.create_task_group() as tg:
                await jobs.start(tg)
                await workflows.start(tg)  # open workflows of an earlier process resume here
                await automl.start(tg)  # and unfinished AutoML runs
                yield AppState(
                    settings=settings,
                    redactor=redactor,
                    jobs=jobs,
                    extras=PlatformExtras(jobs, drivers),
                    storage=StorageService(settings, drivers),
                    workflows=workflows,
                    automl=automl,
                )
                automl.detach()  # engines leave their jobs running: the next server resumes them
                tg.cancel_scope.cancel()
        finally:
            await drivers.aclose()
            store.close()
            for handler in handlers:
                handler.removeFilter(log_filter)

    server: MCPServer[AppState] = MCPServer(
        "tao-mcp",
        instructions=INSTRUCTIONS,
        version=__version__,
        lifespan=lifespan,
        middleware=[bind_principal, redact_results],
        auth=http.auth if http else None,
        token_verifier=http.verifier if http else None,
    )
    from tao_mcp.tools import (
        automl,
        catalog,
        completions,
        extras,
        job_resources,
        jobs,
        plans,
        platforms,
        prompts,
        storage,
        workflows,
    )

    platforms.register(server)
    catalog.register(server)
    jobs.register(server)
    storage.register(server)
    extras.register(server)
    workflows.register(server)
    automl.register(server)
    prompts.register(server)
    plans.register(server)
    job_resources.register(server)
    completions.register(server)
    forbid_unknown_arguments(server)
    server.middleware.append(coded_tool_errors(server))  # inside redact_results: its texts are redacted too
    return server


async def bind_principal(ctx: Any, call_next: Any) -> Any:
    """The authenticated HTTP principal (None on stdio and --no-auth) is who the job service acts for."""
    with acting_as(principal_of(get_access_token())):
        return await call_next(ctx)


async def redact_results(ctx: Any, call_next: Any) -> Any:
    """Backstop for what the tools do not build themselves: the SDK's own error results (argument validation
    echoes the offending input) pass through the same redactor as every tool result."""
    result = await call_next(ctx)
    state = getattr(ctx, "lifespan_context", None)
    if result is None or not isinstance(state, AppState) or ctx.method != "tools/call":
        return result
    data = result.model_dump(by_alias=True, exclude_none=True) if hasattr(result, "model_dump") else result
    return state.redactor.data(data)


def forbid_unknown_arguments(server: MCPServer[AppState]) -> None:
    """Refuse misspelled arguments instead of silently ignoring them (the SDK's default).

    A job launcher must not drop `partiton="gpu"` and run somewhere else. The SDK has no switch for this,
    so each tool's argument model is replaced by a subclass that forbids extra keys.
    """
    for tool in server._tool_manager.list_tools():  # no public hook in mcp 2.3
        model = tool.fn_metadata.arg_model
        strict = cast(
            "type[ArgModelBase]",
            type(model.__name__, (model,), {"model_config": {**model.model_config, "extra": "forbid"}}),
        )
        tool.fn_metadata.arg_model = strict
        tool.parameters = strict.model_json_schema(by_alias=True)
