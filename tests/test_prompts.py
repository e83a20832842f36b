"""The launch_workflow prompt: retrievable through prompts/get (in-process and via the Inspector CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcp.client import Client

from tao_mcp.server import build_server
from tests.test_inspector import inspector

STEP_WORDS = [
    "goal",
    "list_platforms",
    "monitoring",
    "default: 5",
    "resolve_image",
    "Credentials",
    "dry_run",
    "wait_for_job",
]


def assert_steps_in_order(text: str) -> None:
    positions = [text.find(word) for word in STEP_WORDS]
    assert all(p >= 0 for p in positions), dict(zip(STEP_WORDS, positions, strict=True))
    assert positions == sorted(positions), dict(zip(STEP_WORDS, positions, strict=True))


@pytest.mark.anyio
async def test_prompt_lists_the_intake_steps(base_env: dict[str, str]) -> None:
    async with Client(build_server(base_env), mode="legacy") as c:
        prompts = {p.name: p for p in (await c.list_prompts()).prompts}
        assert "launch_workflow" in prompts
        assert all(arg.description for arg in prompts["launch_workflow"].arguments or []), "an argument is undescribed"
        result = await c.get_prompt("launch_workflow", {"goal": "fine-tune DINO on my COCO data"})
        init = c.initialize_result if hasattr(c, "initialize_result") else None
    text = result.messages[0].content.text
    assert "fine-tune DINO on my COCO data" in text
    assert_steps_in_order(text)
    assert "never ask for or repeat a value" in text
    if init is not None and getattr(init, "instructions", None):
        assert "resolve_image" in init.instructions


def test_prompt_via_inspector(base_env: dict[str, str], tmp_path: Path) -> None:
    run = inspector(
        base_env,
        tmp_path,
        "--method",
        "prompts/get",
        "--prompt-name",
        "launch_workflow",
        "--prompt-args",
        "goal=train a classifier",
    )
    assert run.returncode == 0, run.stderr
    text = json.loads(run.stdout)["messages"][0]["content"]["text"]
    assert "train a classifier" in text
    assert_steps_in_order(text)
