"""completion/complete, the one handler: the launch_workflow prompt's arguments (platform from the ready platforms,
model from the skill bank, action from the chosen model), a plan resource's plan_id and file name, and the job_id of
every tao://jobs/... resource template (job ids from the store, newest first)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver import MCPServer
from mcp_types import CompleteRequestParams, CompleteResult, Completion, PromptReference, ResourceTemplateReference

from tao_mcp.errors import TaoError
from tao_mcp.service import principal
from tao_mcp.service.metadata.models import find_model, model_records
from tao_mcp.service.metadata.platforms import platforms
from tao_mcp.service.plans import URI_PREFIX as PLANS_PREFIX

if TYPE_CHECKING:
    from tao_mcp.server import AppState

MAX_VALUES = 100  # the spec's limit per completion answer
JOBS_PREFIX = "tao://jobs/"
PROMPT = "launch_workflow"


def starting(values: list[str], prefix: str) -> list[str]:
    """Case-insensitive prefix matches, in the given order, each once."""
    low = prefix.lower()
    return list(dict.fromkeys(v for v in values if v.lower().startswith(low)))


async def ready_platforms(state: AppState) -> list[str]:
    records = [r for r in platforms(state.settings) if r.name]
    readings = await state.jobs.readiness.check_all(records)
    return [r.name for r in records if readings[r.name].state == "ready"]


def model_names(settings: Mapping[str, str]) -> list[str]:
    return sorted(record.skill for record in model_records(settings)[0])


def action_names(settings: Mapping[str, str], model: str | None) -> list[str]:
    if not model:
        return []
    try:
        return find_model(settings, model).action_names()
    except TaoError:  # an unknown or ambiguous model completes nothing
        return []


async def values_for(state: AppState, ref: Any, name: str, prefix: str, given: Mapping[str, str]) -> list[str]:
    if isinstance(ref, PromptReference) and ref.name == PROMPT:
        if name == "platform":
            return starting(await ready_platforms(state), prefix)
        if name == "model":
            return starting(model_names(state.settings), prefix)
        if name == "action":
            return starting(action_names(state.settings, given.get("model")), prefix)
        return []
    if not isinstance(ref, ResourceTemplateReference):
        return []
    if ref.uri.startswith(PLANS_PREFIX):
        if name == "plan_id":
            return state.jobs.plans.complete(prefix, limit=MAX_VALUES + 1)
        if name == "name" and given.get("plan_id"):
            try:
                return starting(list(state.jobs.plans.get(given["plan_id"]).files), prefix)
            except TaoError:
                return []
        return []
    if ref.uri.startswith(JOBS_PREFIX) and name == "job_id":
        owned = principal.visible_owner()
        return state.jobs.store.job_ids(prefix=prefix, limit=MAX_VALUES + 1, owned_by=owned)
    return []


def register(server: MCPServer) -> None:
    async def complete(ctx: Any, params: CompleteRequestParams) -> CompleteResult:
        given = dict(params.context.arguments or {}) if params.context else {}
        values = await values_for(ctx.lifespan_context, params.ref, params.argument.name, params.argument.value, given)
        more = len(values) > MAX_VALUES
        return CompleteResult(
            completion=Completion(values=values[:MAX_VALUES], total=len(values) if not more else None, has_more=more)
        )

    # The SDK's @server.completion() hands the handler no request context (no lifespan state): register the
    # request handler directly, like the decorator does.
    server._lowlevel_server.add_request_handler("completion/complete", CompleteRequestParams, complete)
