"""The data path end to end: a real SLURM job reads a dataset from S3 (Ceph RGW) and writes results back."""

from __future__ import annotations

import json
import uuid
from typing import Any

import anyio
import pytest
from mcp.client import Client

from tao_mcp.server import build_server
from tests.conftest import assert_no_canary, dev_settings, structured
from tests.slurm.test_slurm_mcp import call, wait_done

pytestmark = [pytest.mark.anyio, pytest.mark.slurm]

COUNT_FILES = (
    'python3 -c \'import json, os, sys; spec = json.load(open(sys.argv[1])); data = spec["dataset"]["path"]; '
    'os.makedirs(spec["results_dir"], exist_ok=True); '
    'open(os.path.join(spec["results_dir"], "count.txt"), "w").write(str(len(os.listdir(data)))); '
    'print("lr", spec["train"]["lr"])\' {config_path}'
)


@pytest.fixture
def s3_slurm_env(slurm_env: dict[str, str]) -> dict[str, str]:
    return {**slurm_env, **dev_settings("s3", "scripts/dev/s3 up")}


@pytest.fixture
def bucket(s3_slurm_env: dict[str, str]) -> Any:
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=s3_slurm_env["S3_ENDPOINT_URL"],
        aws_access_key_id=s3_slurm_env["ACCESS_KEY"],
        aws_secret_access_key=s3_slurm_env["SECRET_KEY"],
        region_name="us-east-1",
    )
    return s3, s3_slurm_env["S3_BUCKET_NAME"]


async def test_config_mode_job_reads_and_writes_s3(s3_slurm_env: dict[str, str], bucket: Any) -> None:
    s3, name = bucket
    prefix = f"e2e-{uuid.uuid4().hex[:8]}"
    for i in range(3):
        s3.put_object(Bucket=name, Key=f"{prefix}/dataset/img{i}.txt", Body=f"image {i}".encode())
    results_uri = f"s3://{name}/{prefix}/results"
    async with Client(build_server(s3_slurm_env), mode="legacy") as c:
        args = {
            "platform": "slurm",
            "gpu_count": 0,
            "command": COUNT_FILES,
            "config_format": "json",
            "specs": {"dataset": {"path": f"s3://{name}/{prefix}/dataset/"}, "train": {"lr": 0.001}},
            "inputs": {"dataset.path": {"type": "folder"}},
            "outputs": {"results_dir": {"type": "folder"}},
            "results_uri": results_uri,
        }
        preview = structured(await c.call_tool("submit_job", {**args, "dry_run": True}))
        assert "dataset" in preview["preview"]["entrypoint"]
        sub = structured(await c.call_tool("submit_job", args))
        assert sub["results_location"].startswith(results_uri)
        done = await wait_done(c, sub["job_id"], budget_s=180)
        logs = await call(c, "job_logs", job_id=sub["job_id"])
        assert done["status"] == "Complete", logs["lines"]
        assert "lr 0.001" in logs["lines"]
        assert any("[tao-runner]" in line and "download" in line for line in logs["lines"])
        status = await call(c, "job_status", job_id=sub["job_id"])
        listing = await call(c, "list_path", uri=status["results_location"])
        names = {e["name"]: e for e in listing["entries"]}
        assert "count.txt" in names and names["count.txt"]["size"] == 1
        body = s3.get_object(Bucket=name, Key=names["count.txt"]["uri"].split(f"{name}/", 1)[1])["Body"].read()
        assert body == b"3"
        check = await call(c, "check_path", uri=names["count.txt"]["uri"])
        assert check["exists"] and check["kind"] == "file"
        texts = json.dumps([sub, done, logs, status, listing, check, preview])
        assert_no_canary(texts, {"SECRET_KEY": s3_slurm_env["SECRET_KEY"]})


async def test_status_reports_runner_phase(s3_slurm_env: dict[str, str], bucket: Any) -> None:
    s3, name = bucket
    prefix = f"phase-{uuid.uuid4().hex[:8]}"
    s3.put_object(Bucket=name, Key=f"{prefix}/in.txt", Body=b"x")
    async with Client(build_server(s3_slurm_env)) as c:
        sub = await call(
            c,
            "submit_job",
            platform="slurm",
            gpu_count=0,
            command="sleep 30",
            inputs={f"/tmp/tao-phase-{prefix}/in.txt": f"s3://{name}/{prefix}/in.txt"},
        )
        with anyio.fail_after(90):
            while True:
                status = await call(c, "job_status", job_id=sub["job_id"])
                if status["status"] == "Running" and "running command" in status["message"]:
                    break
                await anyio.sleep(1)
        await call(c, "cancel_job", job_id=sub["job_id"])


async def test_lustre_paths_over_the_slurm_link(slurm_env: dict[str, str]) -> None:
    async with Client(build_server(slurm_env), mode="legacy") as c:
        sub = await call(
            c,
            "submit_job",
            platform="slurm",
            gpu_count=0,
            command='mkdir -p "$TAO_RESULTS_ROOT/$TAO_JOB_ID" && echo 42 > "$TAO_RESULTS_ROOT/$TAO_JOB_ID/metric.txt"',
        )
        done = await wait_done(c, sub["job_id"])
        assert done["status"] == "Complete"
        location = done["results_location"]
        assert location.startswith("lustre:///")
        listing = await call(c, "list_path", uri=location + "/")
        assert [e["name"] for e in listing["entries"]] == ["metric.txt"]
        check = await call(c, "check_path", uri=location + "//metric.txt")
        assert check["exists"] and check["size"] == 3
        missing = await c.call_tool("list_path", {"uri": location + "/nope"})
        assert missing.is_error and "E_NOT_FOUND" in missing.content[0].text
