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
