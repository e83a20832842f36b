"""The AutoML route on the Lepton fake: every recommendation is a Lepton job; the metric is the status record the
job logs (the fake prints FAKE_LOG_TEXT); stop_automl stops the running job and the fake confirms it."""

from __future__ import annotations

import json

import pytest
from mcp.client import Client

from fixtures.lepton.fake_lepton import FakeLepton
from tao_mcp.server import build_server
from tests.automl.common import BANK, POLL, automl_args, start_confirmed, wait_run
from tests.helpers import call

pytestmark = [pytest.mark.anyio]
RECORD = json.dumps({"status": "RUNNING", "kpi": {"val_acc": 0.625}})


def lepton_args(budget: int, **fake: str) -> dict[str, object]:
    args = automl_args("/data", "lepton", budget, image="nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt")
    args["env"] = {"FAKE_LOG_TEXT": RECORD, **fake}
    return args


async def test_budget_completes_on_lepton_and_stop_stops_the_running_job(
    lepton_env: dict[str, str], fake_lepton: FakeLepton
) -> None:
    env = {**lepton_env, **POLL, "TAO_SKILL_BANK_PATH": str(BANK)}
    async with Client(build_server(env), mode="legacy") as c:
        run = await start_confirmed(c, lepton_args(3))
        done = await wait_run(c, run["run_id"], budget_s=300)
        assert done["state"] == "complete", done
        assert [r["metric"] for r in done["recommendations"]] == [0.625] * 3
        statuses = [await call(c, "job_status", job_id=r["job_id"]) for r in done["recommendations"]]
        assert {s["platform"] for s in statuses} == {"lepton"} and {s["status"] for s in statuses} == {"Complete"}

        slow = await start_confirmed(c, lepton_args(3, FAKE_DURATION_S="600"))
        running = await wait_run(c, slow["run_id"], budget_s=120, until="running")
        job_id = next(r["job_id"] for r in running["recommendations"] if r["status"] == "running")
        await call(c, "wait_for_job", job_id=job_id, until="running", timeout_s=45)
        stopped = await call(c, "stop_automl", run_id=slow["run_id"])
        job = await call(c, "job_status", job_id=job_id)
    assert stopped["state"] == "stopped" and job["status"] == "Canceled", (stopped, job)
    fake = next(j for j in fake_lepton.jobs.values() if j.name == job["backend_name"])
    assert fake.stopped_at is not None or fake.deleted_at is not None  # the backend was asked and confirmed
