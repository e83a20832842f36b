"""The walk: a scripted agent that starts from the launch_workflow prompt and, on every platform, follows only what
the results tell it (`next`, plan_id, cursors) through intake -> dry run -> submit by plan -> wait -> failure_analysis
-> logs for a failing job, and, on a backend stopped mid-run (the Lepton fake behind a fault proxy, private to the
test), to a wait that ends and an analysis that says so.

This is the contract for every tool (docs/ARCHITECTURE.md, "Adding a tool"): a result's `next` names a call the agent
can make with the arguments the results gave it; only the wait loop repeats a call; every result fits the budget.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest

from fixtures.faultproxy import FaultProxy
from fixtures.lepton.fake_lepton import FakeLepton
from tao_mcp.tools._common import RESULT_BUDGET_TOKENS
from tests.helpers import mcp_client
from tests.scenarios.platforms import PLATFORMS, Platform

pytestmark = [pytest.mark.anyio]

MARKS = {"slurm": pytest.mark.slurm, "docker": pytest.mark.docker, "kubernetes": pytest.mark.k8s}
WAIT = "wait_for_job"
MAX_WAITS = 12  # 12 x 45 s: far more than a short failing job needs on a loaded machine


class Agent:
    """Calls tools the way a model following the results would, and records what the contract forbids."""

    def __init__(self, client: Any, tools: set[str]) -> None:
        self.c = client
        self.tools = tools
        self.calls: Counter[tuple[str, str]] = Counter()
        self.call_pattern = re.compile(r"\b(" + "|".join(sorted(tools, key=len, reverse=True)) + r")\(([^)]*)\)")

    def world_changed(self) -> None:
        """Something outside the agent changed (a backend went away): asking again is no longer a circle."""
        self.calls.clear()

    def next_call(self, hint: str) -> tuple[str, dict[str, Any]]:
        """The first tool call a `next` hint names, with the literal arguments it gives. None there is a dead end."""
        match = self.call_pattern.search(hint)
        assert match, f"dead end: no tool call in next={hint!r}"
        return match.group(1), dict(re.findall(r"(\w+)='([^']*)'", match.group(2)))

    async def call(self, tool: str, **args: Any) -> dict[str, Any]:
        key = (tool, json.dumps(args, sort_keys=True))
        self.calls[key] += 1
        assert tool == WAIT or self.calls[key] == 1, f"{tool}({args}) repeated: the results led the agent in a circle"
        result = await self.c.call_tool(tool, args)
        text = "".join(getattr(block, "text", "") for block in result.content)
        assert not result.is_error, f"{tool}({args}) failed: {text}"
        tokens = math.ceil((len(text) + len(json.dumps(result.structured_content))) / 4)
        assert tokens <= RESULT_BUDGET_TOKENS, f"{tool} answered {tokens} tokens"
        return result.structured_content

    async def follow(self, result: dict[str, Any], expect: str, **choices: Any) -> dict[str, Any]:
        """Make the call `result['next']` names (it must be `expect`), adding only the agent's own choices."""
        tool, args = self.next_call(result["next"])
        assert tool == expect, f"next named {tool}, the walk expected {expect}: {result['next']!r}"
        return await self.call(tool, **args, **choices)

    async def wait_until_done(self, submitted: dict[str, Any], **choices: Any) -> dict[str, Any]:
        result = await self.follow(submitted, WAIT, **choices)
        for _ in range(MAX_WAITS):
            if result["done"]:
                return result
            result = await self.follow(result, WAIT, **choices)
        raise AssertionError(f"wait_for_job never ended: {result}")


async def intake(agent: Agent, c: Any, platform: str) -> None:
    prompt = await c.get_prompt("launch_workflow", {"goal": "run my failing script", "platform": platform})
    text = prompt.messages[0].content.text
    for step in ("list_platforms", "dry_run=True", "plan_id", "wait_for_job", "failure_analysis"):
        assert step in text, f"the prompt does not lead to {step}"
    detail = await agent.call("list_platforms", platform=platform)
    assert detail["platform"]["state"] == "ready", (detail["platform"]["state"], detail["platform"].get("reason"))


async def submit_by_plan(agent: Agent, job: dict[str, Any]) -> dict[str, Any]:
    dry = await agent.call("submit_job", **job, dry_run=True)
    assert dry["job_id"] is None and dry["plan_id"]
    sub = await agent.follow(dry, "submit_job")  # the plan_id is all the agent passes
    assert sub["plan_id"] == dry["plan_id"] and sub["job_id"]
    return sub


@pytest.fixture(params=[pytest.param(name, marks=MARKS.get(name, ())) for name in PLATFORMS])
def platform(request: pytest.FixtureRequest) -> Platform:
    cls, env_fixture = PLATFORMS[request.param]
    return cls(request.getfixturevalue(env_fixture), request)


async def test_walk_a_failing_job(platform: Platform) -> None:
    # the first probe also imports the platform's client library, which alone can outlast the 3 s default bound on
    # a loaded 2-core test machine (as in the scenario suite)
    async with mcp_client({**platform.env, "TAO_MCP_PROBE_TIMEOUT_S": "30"}) as c:
        agent = Agent(c, {t.name for t in (await c.list_tools()).tools})
        await intake(agent, c, platform.name)
        sub = await submit_by_plan(agent, platform.failing())
        done = await agent.wait_until_done(sub)
        assert done["status"] == "Error", done
        analysis = await agent.follow(done, "failure_analysis")
        assert analysis["category"] and analysis["suggestion"]
        logs = await agent.follow(analysis, "job_logs")
        assert any("about-to-fail" in line for line in logs["lines"]), logs["lines"][-20:]
        assert logs["next_cursor"]
        more = await agent.follow(logs, "job_logs")  # the cursor the page gave: the lines after it
        assert more["lines"] == [] and more["truncated"] is False, more  # a finished log: nothing after its tail


@pytest.fixture
def lepton_proxy(fake_lepton: FakeLepton) -> Iterator[FaultProxy]:
    url = urlsplit(fake_lepton.url)
    proxy = FaultProxy((url.hostname or "127.0.0.1", url.port or 80)).start()
    yield proxy
    proxy.stop()


async def test_walk_a_backend_stopped_mid_run(
    lepton_env: dict[str, str], fake_lepton: FakeLepton, lepton_proxy: FaultProxy
) -> None:
    netloc = urlsplit(fake_lepton.url).netloc
    env = {
        **lepton_env,
        "LEPTON_WORKSPACE_URL": fake_lepton.url.replace(netloc, lepton_proxy.address),
        "TAO_MCP_UNREACHABLE_GRACE_S": "3",
    }
    job = {
        "platform": "lepton",
        "image": "nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt",
        "command": "python train.py",
        "gpu_count": 0,
        "env": {"FAKE_LOG_TEXT": "started", "FAKE_DURATION_S": "120"},
    }
    async with mcp_client(env) as c:
        agent = Agent(c, {t.name for t in (await c.list_tools()).tools})
        await intake(agent, c, "lepton")
        sub = await submit_by_plan(agent, job)
        running = await agent.follow(sub, WAIT, until="running")
        assert running["done"] and running["status"] == "Running", running
        lepton_proxy.set_mode("refuse")  # the backend goes away mid-run
        agent.world_changed()
        with anyio.fail_after(120):
            done = await agent.wait_until_done(running, timeout_s=10)
        assert done["outcome"] == "backend_unreachable" and done["status"] == "Running", done
        assert "stop polling" in done["next"] and "tell the user" in done["next"], done["next"]
        analysis = await agent.call("failure_analysis", job_id=sub["job_id"])  # the user asks why
        assert analysis["category"] == "backend_unreachable" and "not a job failure" in analysis["summary"]
        probe = await agent.follow(analysis, "list_platforms")
        assert probe["platform"]["state"] == "unreachable", probe["platform"]
