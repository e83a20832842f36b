"""The catalog through MCP: list_platforms over both skill bank layouts, list_models, resolve_image errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import REPO, call, call_error, mcp_client

pytestmark = pytest.mark.anyio

BANK = REPO / "fixtures" / "skill_bank"
LEGACY = REPO / "fixtures" / "skill_bank_legacy"


@pytest.mark.parametrize("bank", [None, BANK, LEGACY], ids=["built-in", "current", "legacy"])
async def test_list_platforms_with_each_layout(base_env: dict[str, str], bank: object) -> None:
    env = {**base_env, "TAO_SKILL_BANK_PATH": str(bank or REPO / "no-such-bank"), "SLURM_USER": "secret-user-x"}
    async with mcp_client(env) as c:
        listed = await call(c, "list_platforms")
        names = {p["name"] for p in listed["platforms"]}
        assert {"slurm", "docker", "kubernetes"} <= names
        assert "lepton" in names  # the built-in record stays when a bank no longer lists it
        for alias, name in (("local-docker", "docker"), ("k8s", "kubernetes")):
            assert (await call(c, "list_platforms", platform=alias))["platform"]["name"] == name
        slurm = (await call(c, "list_platforms", platform="slurm"))["platform"]
    present = {cred["name"]: cred["present"] for cred in slurm["credentials"]}
    assert present["SLURM_USER"] is True and present["SLURM_HOSTNAME"] is False
    assert "secret-user-x" not in json.dumps(listed) + json.dumps(slurm)


async def test_list_models_scopes_and_resolve_image(base_env: dict[str, str]) -> None:
    async with mcp_client({**base_env, "TAO_SKILL_BANK_PATH": str(BANK)}) as c:
        everything = await call(c, "list_models")
        automl = await call(c, "list_models", scope="automl")
        image = await call(c, "resolve_image", model="DINO-DETR", action="train")  # an alias, any case
        unknown_action = await call_error(c, "resolve_image", model="dino", action="dance")
        unknown_model = await call_error(c, "resolve_image", model="not-a-model")
    assert everything["source"] == "skill bank" and {m["model"] for m in everything["models"]} >= {"dino", "rtdetr"}
    capable = {(m["model"], a["name"]) for m in automl["models"] for a in m["actions"]}
    assert all(a["automl_capable"] for m in automl["models"] for a in m["actions"]) and capable
    assert len(automl["models"]) < len(everything["models"])
    # the listing sends the agent to the AutoML route (a review first)
    assert "start_automl(" in automl["next"] and "dry_run=True" in automl["next"]
    assert image["model"] == "dino" and image["confirmation_required"] is True and image["image"]
    assert unknown_action.startswith("E_UNKNOWN_ACTION") and "train" in unknown_action
    assert unknown_model.startswith("E_UNKNOWN_MODEL") and "dino" in unknown_model


async def test_list_models_pages_a_real_size_bank(base_env: dict[str, str], tmp_path: Path) -> None:
    from fixtures.skill_bank_large import build

    bank = build(tmp_path / "bank")
    async with mcp_client({**base_env, "TAO_SKILL_BANK_PATH": str(bank)}) as c:
        first = await call(c, "list_models")
        seen = [m["model"] for m in first["models"]]
        cursor = first["next_cursor"]
        while cursor:
            page = await call(c, "list_models", cursor=cursor)
            seen += [m["model"] for m in page["models"]]
            cursor = page["next_cursor"]
        other = await call_error(c, "list_models", scope="automl", cursor=first["next_cursor"])
    assert first["total"] == 100 and len(first["models"]) == 25 and "list_models(cursor=" in first["next"]
    assert len(seen) == len(set(seen)) == 100
    assert other.startswith("E_BAD_INPUT") and "scope" in other


async def test_intake_defaults_and_platform_hints_reach_the_agent(base_env: dict[str, str]) -> None:
    from mcp.client import Client

    from tao_mcp.server import build_server

    env = {**base_env, "TAO_SKILL_BANK_PATH": str(LEGACY)}  # its manifest: status every 10 minutes
    async with mcp_client(env) as c:
        listed = await c.call_tool("list_platforms", {})
        slurm = await c.call_tool("list_platforms", {"platform": "cluster"})
    assert listed.structured_content["intake_defaults"] == {"long_running_enabled": True, "status_interval_minutes": 10}
    assert "status every 10 minutes" in listed.content[0].text
    detail = slurm.structured_content["platform"]
    assert detail["name"] == "slurm" and detail["dataset_examples"] == ["lustre:///lustre/datasets/coco"]
    text = slurm.content[0].text
    assert (
        "Dataset examples:" in text and "Preflight checks:" in text and "how to get it: ask the cluster admin" in text
    )
    async with Client(build_server(env), mode="legacy") as c:
        prompt = (await c.get_prompt("launch_workflow", {})).messages[0].content.text
    assert "(default: 10)" in prompt and "(default: 5)" not in prompt
    assert "dataset URI examples" in prompt and "preflight checks" in prompt


async def test_resolve_image_workload_and_repository_builds(base_env: dict[str, str]) -> None:
    async with mcp_client({**base_env, "TAO_SKILL_BANK_PATH": str(BANK)}) as c:
        tuned = await call(c, "resolve_image", model="cosmos-reason", action="train", workload="automl")
        built = await c.call_tool("resolve_image", {"model": "cosmos_reason", "backend": "source-build"})
        listed = await call(c, "list_models", scope="automl", action="distill")
    assert tuned["backend"] == "cosmos-rl" and tuned["image"].endswith("cosmos-rl:0.3.1")
    data = built.structured_content
    assert data["build_required"] is True and data["image"] is None and data["override_key"] == "image_tag"
    assert "clean repository checkout" in built.content[0].text
    assert [m["model"] for m in listed["models"]] == ["nvdinov2"]
    assert listed["models"][0]["actions"][0]["automl_default_parameters"] == ["distill.temperature"]
    assert {u["model"]: u["reason"] for u in listed["unsupported"]}["dino"] == (
        "action 'distill' is not declared for this model"
    )
