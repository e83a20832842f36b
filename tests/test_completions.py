"""completion/complete: the launch_workflow prompt's arguments, the plans template and any tao://jobs/ template."""

from __future__ import annotations

import pytest
from mcp_types import PromptReference, ResourceTemplateReference

from fixtures.lepton.fake_lepton import FakeLepton
from tests.helpers import call, mcp_client

pytestmark = pytest.mark.anyio

PROMPT = PromptReference(type="ref/prompt", name="launch_workflow")
PLANS = ResourceTemplateReference(type="ref/resource", uri="tao://plans/{plan_id}/{name}")
JOB_LOGS = ResourceTemplateReference(type="ref/resource", uri="tao://jobs/{job_id}/logs")
JOB = {"platform": "lepton", "command": "echo hi", "image": "python:3.11-slim", "gpu_count": 0}


async def values(c, ref, name: str, value: str = "", **given: str) -> list[str]:  # type: ignore[no-untyped-def]
    answer = await c.complete(ref, {"name": name, "value": value}, context_arguments=given or None)
    return answer.completion.values


async def test_prompt_arguments_complete_from_ready_platforms_and_the_bank(
    lepton_env: dict[str, str], fake_lepton: FakeLepton
) -> None:
    async with mcp_client(lepton_env) as c:
        caps = c.initialize_result.capabilities if hasattr(c, "initialize_result") else None
        assert caps is None or caps.completions is not None
        prompt = next(p for p in (await c.list_prompts()).prompts if p.name == "launch_workflow")
        args = {a.name: a for a in prompt.arguments or []}
        assert set(args) >= {"goal", "platform", "model", "action"} and all(a.description for a in args.values())
        assert await values(c, PROMPT, "platform") == ["lepton"]  # configured and answering; the others are not
        assert await values(c, PROMPT, "platform", "d") == []
        models = await values(c, PROMPT, "model", "D")
        assert "dino" in models and all(m.lower().startswith("d") for m in models)
        assert "train" in await values(c, PROMPT, "action", model="dino")
        assert await values(c, PROMPT, "action", model="no-such-model") == []
        assert await values(c, PROMPT, "action") == []
        text = (await c.get_prompt("launch_workflow", {"platform": "lepton", "model": "dino"})).messages[0]
        assert "platform: lepton; model: dino" in text.content.text


async def test_plan_and_job_ids_complete_newest_first(lepton_env: dict[str, str], fake_lepton: FakeLepton) -> None:
    async with mcp_client(lepton_env) as c:
        dry = await call(c, "submit_job", **JOB, dry_run=True)
        assert await values(c, PLANS, "plan_id", "plan-") == [dry["plan_id"]]
        assert await values(c, PLANS, "plan_id", "nope") == []
        names = await values(c, PLANS, "name", plan_id=dry["plan_id"])
        assert names == [f["path"] for f in dry["files"]]
        first = await call(c, "submit_job", **JOB)
        second = await call(c, "submit_job", **JOB)
        assert await values(c, JOB_LOGS, "job_id") == [second["job_id"], first["job_id"]]
        assert await values(c, JOB_LOGS, "job_id", first["job_id"][:6]) == [first["job_id"]]
        other = ResourceTemplateReference(type="ref/resource", uri="tao://jobs/{job_id}")
        assert await values(c, other, "job_id", second["job_id"]) == [second["job_id"]]
