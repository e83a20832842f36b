"""The AutoML route on the dev SLURM cluster: the real AutoMLRunner, the stand-in `dino` on the cluster, data in S3."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp.client import Client

from tao_mcp.server import build_server
from tests.automl.common import POLL, automl_args, expected_val_acc, start_confirmed, wait_run
from tests.helpers import call
from tests.slurm.test_slurm_models import dataset

pytestmark = [pytest.mark.anyio, pytest.mark.slurm, pytest.mark.slow]


async def test_budget_of_five_on_slurm_reports_the_best_observed(model_env: dict[str, str]) -> None:
    images, annotations = dataset(model_env)
    args = automl_args("", "slurm", 5)
    args["spec_overrides"].update(
        {"dataset.train_data_sources[0].image_dir": images, "dataset.train_data_sources[0].json_file": annotations}
    )
    args["env"] = {"PATH": str(Path(model_env["SLURM_BASE_RESULTS_DIR"]) / "standin-bin") + ":/usr/bin:/bin"}
    async with Client(build_server({**model_env, **POLL}), mode="legacy") as c:
        review = await call(c, "start_automl", **args, dry_run=True)
        assert review["review"]["dataset_keys"] == {
            "dataset.train_data_sources[0].image_dir": images,
            "dataset.train_data_sources[0].json_file": annotations,
        }
        run = await start_confirmed(c, args)
        done = await wait_run(c, run["run_id"], budget_s=900)
        jobs = await call(c, "list_jobs")
    assert done["state"] == "complete", done
    recs = done["recommendations"]
    assert [r["status"] for r in recs] == ["success"] * 5
    for rec in recs:
        assert rec["metric"] == pytest.approx(expected_val_acc(rec["parameters"]["train.optim.lr"]))
    assert done["best"]["metric"] == max(r["metric"] for r in recs)
    assert {r["job_id"] for r in recs} <= {j["job_id"] for j in jobs["jobs"] if j["platform"] == "slurm"}
