"""One data-path scenario every platform runs: a config-mode job reads a dataset from S3 (Ceph RGW) and
writes its results back; then list_path/check_path show them. Platform tests pass their own submit arguments
(image, network) and check platform specifics on the returned preview."""

from __future__ import annotations

import json
import uuid
from typing import Any

from tests.helpers import assert_no_canary, call, dev_settings, wait_done

# Reads the spec the runner wrote, counts the downloaded dataset, writes results_dir/count.txt.
COUNT_FILES = (
    'python3 -c \'import json, os, sys; spec = json.load(open(sys.argv[1])); data = spec["dataset"]["path"]; '
    'os.makedirs(spec["results_dir"], exist_ok=True); '
    'open(os.path.join(spec["results_dir"], "count.txt"), "w").write(str(len(os.listdir(data)))); '
    'print("lr", spec["train"]["lr"])\' {config_path}'
)


def with_s3(env: dict[str, str]) -> dict[str, str]:
    return {**env, **dev_settings("s3", "scripts/dev/s3 up")}


def s3_client(env: dict[str, str]) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=env["S3_ENDPOINT_URL"],
        aws_access_key_id=env["ACCESS_KEY"],
        aws_secret_access_key=env["SECRET_KEY"],
        region_name="us-east-1",
    )


async def s3_round_trip(c: Any, env: dict[str, str], platform_args: dict[str, Any]) -> dict[str, Any]:
    """Seed 3 objects, run COUNT_FILES on them, check logs, results in S3 and listings. Returns the dry run."""
    s3, bucket = s3_client(env), env["S3_BUCKET_NAME"]
    prefix = f"e2e-{uuid.uuid4().hex[:8]}"
    for i in range(3):
        s3.put_object(Bucket=bucket, Key=f"{prefix}/dataset/img{i}.txt", Body=f"image {i}".encode())
    results_uri = f"s3://{bucket}/{prefix}/results"
    args = {
        "gpu_count": 0,
        "command": COUNT_FILES,
        "config_format": "json",
        "specs": {"dataset": {"path": f"s3://{bucket}/{prefix}/dataset/"}, "train": {"lr": 0.001}},
        "inputs": {"dataset.path": {"type": "folder"}},
        "outputs": {"results_dir": {"type": "folder"}},
        "results_uri": results_uri,
        **platform_args,
    }
    preview = await call(c, "submit_job", **args, dry_run=True)
    assert "dataset" in preview["preview"]["entrypoint"]
    sub = await call(c, "submit_job", **args)
    assert sub["results_location"].startswith(results_uri)
    done = await wait_done(c, sub["job_id"], budget_s=180)
    logs = await call(c, "job_logs", job_id=sub["job_id"])
    assert done["status"] == "Complete", logs["lines"]
    assert "lr 0.001" in logs["lines"]
    assert any("[tao-runner]" in line and "download" in line for line in logs["lines"])
    status = await call(c, "job_status", job_id=sub["job_id"])
    listing = await call(c, "list_path", uri=status["results_location"])
    names = {e["name"]: e for e in listing["entries"]}
    assert "count.txt" in names and names["count.txt"]["size"] == 1, listing
    key = names["count.txt"]["uri"].split(f"{bucket}/", 1)[1]
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"3"
    check = await call(c, "check_path", uri=names["count.txt"]["uri"])
    assert check["exists"] and check["kind"] == "file"
    assert_no_canary(json.dumps([preview, sub, done, logs, status, listing, check]), {"SECRET_KEY": env["SECRET_KEY"]})
    return preview
