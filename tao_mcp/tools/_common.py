"""What every tool shares: annotations, app state, redacted results, coded errors."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, ParamSpec, TypeVar, cast

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel

from tao_mcp.errors import TaoError

if TYPE_CHECKING:
    from tao_mcp.server import AppState

P = ParamSpec("P")
R = TypeVar("R")
log = logging.getLogger("tao_mcp.tools")


def tool_hints(*, read_only: bool, destructive: bool, idempotent: bool, open_world: bool) -> ToolAnnotations:
    """All four hints, always explicit (the spec's defaults are destructive and open-world)."""
    return ToolAnnotations(
        read_only_hint=read_only,
        destructive_hint=destructive,
        idempotent_hint=idempotent,
        open_world_hint=open_world,
    )


# Results are budgeted at <= 8k tokens with default arguments (tests/test_result_budget.py: chars / 4). A tool whose
# non-default arguments can return more (job_logs tail=2000, a big listing) tells clients how much text to keep.
RESULT_BUDGET_TOKENS = 8000
LARGE_RESULT = {"anthropic/maxResultSizeChars": 100_000}

READ_ONLY_BACKEND = tool_hints(read_only=True, destructive=False, idempotent=True, open_world=True)
READ_ONLY_LOCAL = tool_hints(read_only=True, destructive=False, idempotent=True, open_world=False)


def app(ctx: Context) -> AppState:
    """The server's lifespan state (settings, redactor, services) for this call."""
    return cast("AppState", ctx.request_context.lifespan_context)


def respond(ctx: Context, model: BaseModel, text: str) -> CallToolResult:
    """Structured content plus a readable text rendering, both redacted."""
    redactor = app(ctx).redactor
    data = redactor.data(model.model_dump(mode="json"))
    type(model).model_validate(data)  # the redacted result still honours the output schema
    return CallToolResult(content=[TextContent(type="text", text=redactor.text(text))], structured_content=data)


async def report_progress(ctx: Context, progress: float, message: str, total: float | None = None) -> None:
    """A progress notification, redacted like every result (backend messages ride in it)."""
    await ctx.report_progress(progress, total, app(ctx).redactor.text(message))


def coded_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Anticipated failures become `E_CODE: cause. Fix: ...` tool errors, redacted like every result."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except TaoError as exc:
            ctx = next((a for a in [*args, *kwargs.values()] if isinstance(a, Context)), None)
            text = str(exc)
            if ctx is not None:
                text = app(ctx).redactor.text(text)
            raise ToolError(text) from None

    # Descriptions come from docstrings: drop their source indentation so clients show clean text.
    wrapper.__doc__ = inspect.cleandoc(fn.__doc__ or "")
    return wrapper
