"""Helpers for the Brev tests: a server environment whose PATH starts with the fake `brev` (fixtures/brev)."""

from __future__ import annotations

from typing import Any

from mcp.client import Client

from tests.backends import BREV_FAKE, BREV_TOKEN, FakeBrev
from tests.helpers import call, mcp_client
from tests.helpers import wait_done as shared_wait_done

FAKE = BREV_FAKE
TOKEN = BREV_TOKEN
IMAGE = "nvcr.io/nvidia/tao/tao-toolkit:5.5.0-pyt"
__all__ = ["FAKE", "IMAGE", "TOKEN", "FakeBrev", "client", "error_text", "submit", "wait_done"]


def client(env: dict[str, str]) -> Any:
    return mcp_client(env, "modern")


async def wait_done(c: Any, job_id: str, budget_s: float = 60, until: str = "terminal") -> dict[str, Any]:
    return await shared_wait_done(c, job_id, budget_s, until, step_s=10)


async def error_text(c: Client, tool: str, **args: Any) -> str:
    result = await c.call_tool(tool, args)
    assert result.is_error, result.structured_content
    return result.content[0].text


async def submit(c: Client, command: str, *, image: str = IMAGE, **options: Any) -> dict[str, Any]:
    extra = {k: options.pop(k) for k in ("secret_env", "idempotency_key", "time_limit", "dry_run") if k in options}
    options.setdefault("instance", "gpu-box")
    options.setdefault("gpu_name", "L4")
    return await call(c, "submit_job", platform="brev", command=command, image=image, options=options, **extra)
