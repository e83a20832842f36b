"""The AutoML route on the dev Docker engine with the real AutoMLRunner and the stand-in TAO CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp.client import Client

from tao_mcp.server import build_server
from tests.automl.common import BANK, POLL, automl_args, expected_val_acc, standin_tree, start_confirmed, wait_run
from tests.helpers import call, call_error

pytestmark = [pytest.mark.anyio, pytest.mark.docker]


@pytest.fixture
def env(docker_env: dict[str, str], docker_cleanup: None, tmp_path: Path) -> dict[str, str]:
    standin_tree(tmp_path / "standin")
    return {
        **docker_env,
        **POLL,
        "TAO_SKILL_BANK_PATH": str(BANK),
        "TAO_MCP_DOCKER_MOUNT_ROOTS": str(tmp_path),
    }


def docker_args(
    settings: dict[str, str], tmp_path: Path, budget: int, job_env: dict[str, str] | None = None, **extra: Any
) -> dict[str, Any]:
    return automl_args(
        "/standin",
        "docker",
        budget,
        image=settings["TAO_MCP_TEST_PY_IMAGE"],
        options={"mounts": [f"{tmp_path / 'standin'}:/standin:ro"]},
        env={"PATH": "/standin/bin:/usr/local/bin:/usr/bin:/bin", **(job_env or {})},
        **extra,
    )


def assert_no_canary(canaries: dict[str, str], where: str, text: str) -> None:
    for name, value in canaries.items():
        assert value not in text, f"the {name} canary leaked into {where}"


async def test_review_gate_and_budget_of_five_reports_the_best_observed(
    env: dict[str, str], tmp_path: Path, canaries: dict[str, str]
) -> None:
    # every job receives NGC_KEY and prints it: the value must stay out of the workspace, the store and results
    args = docker_args(env, tmp_path, 5, {"STANDIN_ECHO_ENV": "NGC_KEY"}, secret_env=["NGC_KEY"])
    seen: list[str] = []
    async with Client(build_server(env), mode="legacy") as c:
        refused = await call_error(c, "start_automl", **args)
        assert refused.startswith("E_CONFIRM_REQUIRED") and "plan_id=" in refused
        review = await call(c, "start_automl", **args, dry_run=True)
        rev = review["review"]
        assert rev["search_space"] == [
            {"name": "train.optim.lr", "type": "float", "min": 1e-05, "max": 0.01, "options": None, "default": 0.0002}
        ]
        assert rev["max_recommendations"] == 5 and rev["metric"] == "val_acc" and rev["direction"] == "maximize"
        assert rev["gpu_hours_upper_bound"] == 0.0 and rev["image"] == env["TAO_MCP_TEST_PY_IMAGE"]
        assert rev["dataset_keys"] == {}  # container paths, not URIs
        run = await call(c, "start_automl", plan_id=review["plan_id"])
        again = await call(c, "start_automl", plan_id=review["plan_id"])
        assert again["run_id"] == run["run_id"]  # one confirmed plan starts one run
        done = await wait_run(c, run["run_id"], budget_s=600)
        if done["state"] != "complete":
            first = done["recommendations"][0]["job_id"]
            logs = await call(c, "job_logs", job_id=first)
            pytest.fail(f"{done}\n" + "\n".join(logs["lines"][-30:]))
        recs = done["recommendations"]
        assert len(recs) == 5 and done["budget_used"] == 5
        for rec in recs:
            assert rec["status"] == "success"
            assert rec["metric"] == pytest.approx(expected_val_acc(rec["parameters"]["train.optim.lr"]))
        best = max(recs, key=lambda r: r["metric"])
        assert done["best"]["rec_id"] == best["rec_id"] and done["best"]["metric"] == best["metric"]
        assert f"job_status(job_id='{best['job_id']}')" in done["next"]
        jobs = await call(c, "list_jobs")
        mine = {j["job_id"] for j in jobs["jobs"]}
        assert {r["job_id"] for r in recs} <= mine  # every recommendation is an ordinary tao-mcp job
        listed = await call(c, "list_automl_runs")
        assert listed["runs"][0]["run_id"] == run["run_id"] and listed["runs"][0]["best_metric"] == best["metric"]
        logs = await call(c, "job_logs", job_id=best["job_id"])
        assert any(line.startswith("careless: ") for line in logs["lines"])  # the job did print its secret
        seen += [json.dumps(x) for x in (review, run, done, jobs, listed, logs)]
    state = Path(env["TAO_MCP_STATE_DIR"])
    workspace = state / "automl" / run["run_id"]
    files = [p for p in workspace.rglob("*") if p.is_file()]
    assert any(p.name == "active_jobs.json" for p in files) and any(".automl" in p.parts for p in files)
    for path in [*files, *state.glob("jobs.sqlite3*")]:
        assert_no_canary(canaries, str(path), path.read_bytes().decode("utf-8", "replace"))
    for text in seen:
        assert_no_canary(canaries, "a tool result", text)


async def test_three_metricless_jobs_end_the_run_coded(env: dict[str, str], tmp_path: Path) -> None:
    args = docker_args(env, tmp_path, 5, {"STANDIN_NO_METRIC": "1"})
    async with Client(build_server(env), mode="legacy") as c:
        run = await start_confirmed(c, args)
        done = await wait_run(c, run["run_id"], budget_s=400)
    assert done["state"] == "failed"
    assert done["error"].startswith("E_AUTOML_NO_METRIC:") and "val_acc" in done["error"] and "Fix:" in done["error"]
    assert len(done["recommendations"]) == 3
    assert f"failure_analysis(job_id='{done['recommendations'][-1]['job_id']}')" in done["next"]


async def test_stop_cancels_the_running_job(env: dict[str, str], tmp_path: Path) -> None:
    args = docker_args(env, tmp_path, 5, {"STANDIN_SLEEP": "300"})
    async with Client(build_server(env), mode="legacy") as c:
        run = await start_confirmed(c, args)
        running = await wait_run(c, run["run_id"], budget_s=120, until="running")
        job_id = next(r["job_id"] for r in running["recommendations"] if r["status"] == "running")
        await call(c, "wait_for_job", job_id=job_id, until="running", timeout_s=45)
        stopped = await call(c, "stop_automl", run_id=run["run_id"])
        assert stopped["state"] == "stopped", stopped
        job = await call(c, "job_status", job_id=job_id)
        assert job["status"] == "Canceled"  # the backend confirmed the cancel
        assert f"job {job_id}: Canceled" in stopped["message"]
        assert len(stopped["recommendations"]) == 1  # no recommendation started after the stop
