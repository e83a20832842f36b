"""Real SLURM jobs: inside the job step PyTorch Lightning sees no SLURM-spawned ranks (TAO spawns its own), and the
USR1 sent ahead of the time limit makes the runner upload the results before SLURM's kill."""

from __future__ import annotations

import re
import subprocess
import uuid

import anyio
import pytest
from mcp.client import Client

from tao_mcp.server import build_server
from tests.helpers import call, call_error, dev_settings, plan_files, wait_done
from tests.s3_round_trip import s3_client, with_s3
from tests.slurm.test_slurm_models import request

pytestmark = [pytest.mark.anyio, pytest.mark.slurm]

LIGHTNING_VARS = (
    "SLURM_NTASKS",
    "SLURM_NTASKS_PER_NODE",
    "SLURM_PROCID",
    "SLURM_LOCALID",
    "SLURM_NODEID",
    "LOCAL_RANK",
    "RANK",
    "GROUP_RANK",
    "LOCAL_WORLD_SIZE",
)
# Lightning's SLURMEnvironment.detect(): `"SLURM_NTASKS" in os.environ` unless the job is named bash/interactive
DETECT = (
    "import os; print('lightning-slurm-detect', 'SLURM_NTASKS' in os.environ and "
    "os.environ.get('SLURM_JOB_NAME') not in ('bash', 'interactive'))"
)


async def test_lightning_does_not_see_slurm_ranks(slurm_env: dict[str, str]) -> None:
    show = " ".join(f'{name}="${{{name}-unset}}"' for name in (*LIGHTNING_VARS, "SLURM_STEP_ID", "NUM_GPU_PER_NODE"))
    async with Client(build_server(slurm_env), mode="legacy") as c:
        sub = await call(
            c, "submit_job", platform="slurm", gpu_count=0, command=f"echo tao-env {show}; python3 -c {DETECT!r}"
        )
        done = await wait_done(c, sub["job_id"])
        logs = await call(c, "job_logs", job_id=sub["job_id"], tail=50)
    assert done["status"] == "Complete", logs["lines"]
    line = next(x for x in logs["lines"] if x.startswith("tao-env "))
    seen = dict(pair.split("=", 1) for pair in line.removeprefix("tao-env ").split())
    assert seen["SLURM_STEP_ID"] != "unset"  # the command ran in a job step (srun), where SLURM sets them all
    assert seen["NUM_GPU_PER_NODE"] == "0"
    assert {name: seen[name] for name in LIGHTNING_VARS} == dict.fromkeys(LIGHTNING_VARS, "unset")
    assert "lightning-slurm-detect False" in logs["lines"]


@pytest.mark.slow
async def test_usr1_before_the_time_limit_uploads_results(slurm_env: dict[str, str]) -> None:
    env = with_s3(slurm_env)
    s3, bucket = s3_client(env), env["S3_BUCKET_NAME"]
    prefix = f"usr1-{uuid.uuid4().hex[:8]}"
    async with Client(build_server(env), mode="legacy") as c:
        sub = await call(
            c,
            "submit_job",
            platform="slurm",
            gpu_count=0,
            time_limit="1",
            results_uri=f"s3://{bucket}/{prefix}",
            command="echo partial > {results_dir}/metric.txt; exec sleep 600",
        )
        preview_done = await wait_done(c, sub["job_id"], budget_s=150)
        logs = await call(c, "job_logs", job_id=sub["job_id"], tail=80)
    lines = logs["lines"]
    assert any("stopped by SIGUSR1" in x for x in lines), lines
    assert any("phase uploading outputs" in x for x in lines), lines
    body = s3.get_object(Bucket=bucket, Key=f"{prefix}/metric.txt")["Body"].read()
    assert body == b"partial\n"
    assert preview_done["status"] in ("Error", "Complete")  # ended by the runner, not at the limit
    assert not any("DUE TO TIME LIMIT" in x for x in lines), lines


def trained_epochs(lines: list[str]) -> list[int]:
    """The epochs the stand-in reported done (`standin epoch 3 done`, or `standin epoch 3/8 ...`)."""
    return [int(m.group(1)) for m in (re.match(r"standin epoch (\d+)", x) for x in lines) if m]


@pytest.mark.slow
async def test_requeued_job_resumes_from_its_last_checkpoint(model_env: dict[str, str]) -> None:
    """`scontrol requeue` mid-run: the second run of the same job starts after the first run's last checkpoint."""
    args = request(model_env)
    args["env"] = {**args["env"], "STANDIN_EPOCH_SECONDS": "3"}
    args["spec_overrides"]["train.num_epochs"] = 8
    async with Client(build_server(model_env), mode="legacy") as c:
        sub = await call(c, "submit_job", **args, options={"requeue": True})
        with anyio.fail_after(120):
            while True:
                lines = (await call(c, "job_logs", job_id=sub["job_id"], tail=50))["lines"]
                if any(x.startswith("standin epoch 2 done") for x in lines):
                    break
                await anyio.sleep(1)
        backend_id = (await call(c, "job_status", job_id=sub["job_id"]))["backend_id"]
        subprocess.run(["scontrol", "requeue", backend_id], check=True, capture_output=True, timeout=30)
        done = await wait_done(c, sub["job_id"], budget_s=420)
        lines = (await call(c, "job_logs", job_id=sub["job_id"], tail=200))["lines"]
    assert done["status"] == "Complete", lines
    resumed = [x for x in lines if x.startswith("standin resumed from ")]
    assert len(resumed) == 1, lines
    last = int(resumed[0].rsplit(" ", 1)[-1]) - 1  # the first run's last checkpoint
    assert last >= 2 and f"model_epoch_{last:03d}.pth" in resumed[0]
    assert any("resuming from " in x and f"(epoch {last})" in x for x in lines), lines
    done_epochs = trained_epochs(lines)
    assert done_epochs == [*range(1, last + 1), *range(last + 1, 9)]  # no epoch trained twice


async def test_resume_from_an_earlier_job(model_env: dict[str, str]) -> None:
    """submit_job(resume_from=<job id>): the new job starts after the earlier job's last checkpoint; a platform that
    cannot read the earlier job's lustre:// results is refused."""
    env = {**model_env, **dev_settings("k8s", "scripts/dev/k8s up")}
    first = request(model_env)
    first["env"] = {**first["env"], "STANDIN_EPOCH_SECONDS": "0.1"}
    first["spec_overrides"]["train.num_epochs"] = 3
    async with Client(build_server(env), mode="legacy") as c:
        earlier = await call(c, "submit_job", **first)
        assert (await wait_done(c, earlier["job_id"], budget_s=180))["status"] == "Complete"
        second = {**first, "spec_overrides": {**first["spec_overrides"], "train.num_epochs": 5}}
        dry = await call(c, "submit_job", **second, resume_from=earlier["job_id"], dry_run=True)
        job_env = next(v for k, v in (await plan_files(c, dry)).items() if k.endswith("job.env"))
        assert (
            f"TAO_RESUME_FROM=lustre://{model_env['SLURM_BASE_RESULTS_DIR']}/results/{earlier['job_id']}\n" in job_env
        )
        elsewhere = await call_error(
            c, "submit_job", **{**second, "platform": "kubernetes"}, resume_from=earlier["job_id"], dry_run=True
        )
        assert elsewhere.startswith("E_BAD_INPUT") and "cannot read" in elsewhere
        unknown = await call_error(c, "submit_job", **second, resume_from="000000000000", dry_run=True)
        assert unknown.startswith("E_UNKNOWN_JOB")
        later = await call(c, "submit_job", **second, resume_from=earlier["job_id"])
        done = await wait_done(c, later["job_id"], budget_s=180)
        lines = (await call(c, "job_logs", job_id=later["job_id"], tail=100))["lines"]
    assert done["status"] == "Complete", lines
    resumed = next(x for x in lines if x.startswith("standin resumed from "))
    assert f"/results/{earlier['job_id']}/model_epoch_003.pth at epoch 4" in resumed
    assert trained_epochs(lines) == [4, 5]
