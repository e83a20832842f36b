"""submit_job's AutoML route: an AutoML-capable model's train goes to AutoML (a review, never a launch) unless
automl_policy='off'; without the engine installed the AutoML answers are E_AUTOML_NOT_INSTALLED."""

from __future__ import annotations

from typing import Any

import pytest
from mcp.client import Client

from tao_mcp.server import build_server
from tao_mcp.service.automl import engine
from tests.automl.common import BANK
from tests.helpers import call, call_error, dev_settings

pytestmark = [pytest.mark.anyio]

REQUEST: dict[str, Any] = {
    "platform": "docker",
    "model": "dino",
    "action": "train",
    "gpu_count": 2,
    "time_limit": 90,
    "spec_overrides": {
        "dataset.train_data_sources[0].image_dir": "s3://bucket/coco/images/",
        "dataset.train_data_sources[0].json_file": "s3://bucket/coco/annotations.json",
    },
}


@pytest.fixture
def env(docker_env: dict[str, str]) -> dict[str, str]:
    return {**docker_env, **dev_settings("s3", "scripts/dev/s3 up"), "TAO_SKILL_BANK_PATH": str(BANK)}


async def test_auto_routes_a_capable_model_to_a_review(env: dict[str, str]) -> None:
    async with Client(build_server(env), mode="legacy") as c:
        review = await call(c, "submit_job", **REQUEST, dry_run=True)
        refused = await call_error(c, "submit_job", **REQUEST)
        plain = await call(c, "submit_job", **REQUEST, dry_run=True, automl_policy="off")
        evaluate_request = {**REQUEST, "action": "evaluate", "spec_overrides": {"evaluate.checkpoint": "s3://b/m.pth"}}
        evaluate = await call(c, "submit_job", **evaluate_request, dry_run=True)
        jobs = await call(c, "list_jobs")
    rev = review["automl"]["review"]
    assert review["job_id"] is None and review["dry_run"] and review["automl"]["plan_id"] == review["plan_id"]
    assert rev["metric"] == "val_acc" and rev["direction"] == "maximize"  # from the model's metadata
    assert rev["gpu_hours_upper_bound"] == 8 * 2 * 1 * 90 / 60  # budget × GPUs × nodes × time limit
    assert rev["dataset_keys"] == REQUEST["spec_overrides"] and rev["results_root"]
    assert [p["name"] for p in rev["search_space"]] == ["train.optim.lr"] and rev["algorithm"] == "bayesian"
    assert f"start_automl(plan_id='{review['plan_id']}')" in review["next"]
    assert refused.startswith("E_CONFIRM_REQUIRED:") and "train.optim.lr" in refused and "plan_id=" in refused
    assert plain["automl"] is None and plain["preview"]  # the plain plan of one job
    assert evaluate["automl"] is None  # only train is routed
    assert jobs["jobs"] == []  # a review launches nothing


async def test_without_the_engine_automl_answers_coded_and_off_still_runs_plainly(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "engine_installed", lambda: False)
    async with Client(build_server(env), mode="legacy") as c:
        routed = await call_error(c, "submit_job", **REQUEST, dry_run=True)
        direct = await call_error(c, "start_automl", model="dino", platform="docker", metric="val_acc", dry_run=True)
        plain = await call(c, "submit_job", **REQUEST, dry_run=True, automl_policy="off")
    for text in (routed, direct):
        assert text.startswith("E_AUTOML_NOT_INSTALLED:") and "pip install 'tao-mcp[automl]'" in text
    assert "automl_policy='off'" in routed
    assert plain["plan_id"] and plain["automl"] is None
