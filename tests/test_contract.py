"""The public tools/list contract: annotations, schemas, descriptions and the golden snapshot."""

from __future__ import annotations

import json

import pytest
from mcp.client import Client

from tao_mcp.cli import SCHEMA_PATH, tools_contract
from tao_mcp.server import build_server
from tests.helpers import REPO

pytestmark = pytest.mark.anyio

EXPECTED_TOOLS = {
    "list_platforms",
    "submit_job",
    "job_status",
    "wait_for_job",
    "job_logs",
    "failure_analysis",
    "cancel_job",
    "list_jobs",
}


@pytest.mark.parametrize("mode", ["legacy", "modern"])
async def test_every_tool_is_annotated_typed_and_points_onward(base_env: dict[str, str], mode: str) -> None:
    kwargs = {"mode": "legacy"} if mode == "legacy" else {}
    async with Client(build_server(base_env), **kwargs) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
    assert set(tools) >= EXPECTED_TOOLS
    for tool in tools.values():
        a = tool.annotations
        assert a is not None, tool.name
        for hint in ("read_only_hint", "destructive_hint", "idempotent_hint", "open_world_hint"):
            assert getattr(a, hint) is not None, (tool.name, hint)
        assert tool.output_schema and tool.output_schema["type"] == "object", tool.name
        assert tool.input_schema.get("additionalProperties") is False, tool.name
        assert "Next" in tool.description or "next" in tool.description or "then" in tool.description, tool.name
    assert tools["cancel_job"].annotations.destructive_hint is True
    assert tools["job_status"].annotations.read_only_hint is True


def test_live_tools_match_the_committed_snapshot() -> None:
    committed = json.loads((REPO / SCHEMA_PATH).read_text())
    assert tools_contract() == committed, "tools/list changed: run `tao-mcp schema --write` and review the diff"


async def test_unknown_argument_is_refused(base_env: dict[str, str]) -> None:
    async with Client(build_server(base_env), mode="legacy") as c:
        result = await c.call_tool("list_jobs", {"platfrom": "slurm"})
    assert result.is_error and "platfrom" in result.content[0].text


async def test_results_render_as_text_and_json(base_env: dict[str, str]) -> None:
    async with Client(build_server(base_env)) as c:
        result = await c.call_tool("list_platforms", {})
    assert result.structured_content["platforms"]
    assert result.content[0].text.startswith("Platforms:")
    assert "slurm" in result.content[0].text
