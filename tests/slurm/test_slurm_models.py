"""submit_job by TAO model/action on SLURM: the catalog supplies command, spec, data and image."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from mcp.client import Client

from tao_mcp.server import build_server
from tests.helpers import plan_files, structured
from tests.slurm.test_slurm_mcp import call, wait_done

pytestmark = [pytest.mark.anyio, pytest.mark.slurm]


def dataset(env: dict[str, str]) -> tuple[str, str]:
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=env["S3_ENDPOINT_URL"],
        aws_access_key_id=env["ACCESS_KEY"],
        aws_secret_access_key=env["SECRET_KEY"],
        region_name="us-east-1",
    )
    bucket, prefix = env["S3_BUCKET_NAME"], f"coco-{uuid.uuid4().hex[:8]}"
    for i in range(4):
        s3.put_object(Bucket=bucket, Key=f"{prefix}/images/{i:04d}.jpg", Body=b"jpeg")
    s3.put_object(Bucket=bucket, Key=f"{prefix}/annotations.json", Body=json.dumps({"images": [1, 2, 3, 4]}).encode())
    return f"s3://{bucket}/{prefix}/images/", f"s3://{bucket}/{prefix}/annotations.json"


def request(env: dict[str, str], **extra: Any) -> dict[str, Any]:
    images, annotations = dataset(env)
    return {
        "platform": "slurm",
        "model": "dino",
        "action": "train",
        "automl_policy": "off",  # one plain run (dino is AutoML-capable: auto would answer with a review)
        "gpu_count": 0,
        "env": {"PATH": env["STANDIN_BIN"] + ":/usr/bin:/bin"},  # tests/slurm/conftest.py installs it
        "spec_overrides": {
            "dataset.train_data_sources[0].image_dir": images,
            "dataset.train_data_sources[0].json_file": annotations,
            "train.num_epochs": 1,
        },
        **extra,
    }


async def test_dry_run_shows_image_spec_and_command(model_env: dict[str, str]) -> None:
    async with Client(build_server(model_env), mode="legacy") as c:
        image = structured(await c.call_tool("resolve_image", {"model": "dino", "action": "train"}))
        dry = structured(await c.call_tool("submit_job", {**request(model_env), "dry_run": True}))
        preview = await plan_files(c, dry)
    action = json.loads(preview["model_action"])
    assert action["image"]["image"] == image["image"] and action["image"]["resolved_from"] == "versions.yaml"
    entry = json.loads(preview["entrypoint"])
    assert entry["mode"] == "config"
    spec = entry["spec"]
    assert spec["train"]["num_epochs"] == 1 and spec["train"]["num_gpus"] == 0  # gpu_count at gpu_spec_key
    assert spec["train"]["optim"]["lr"] == 0.0002  # the packaged template is the base
    # the declared input is downloaded and the spec rewritten to the local copy
    assert spec["dataset"]["train_data_sources"][0]["image_dir"].startswith("{results_dir}/inputs/")
    assert "/images/" in json.dumps(entry) and "s3://" in json.dumps(entry)
    assert "dino train -e {results_dir}/spec.yaml" in json.dumps(entry)
    assert spec["results_dir"] == "{results_dir}"  # the template placeholder yields to the job results dir
    assert any(path.endswith("command.sh") for path in preview)


async def test_model_action_runs_on_slurm_with_declared_outputs(model_env: dict[str, str]) -> None:
    async with Client(build_server(model_env), mode="legacy") as c:
        sub = structured(await c.call_tool("submit_job", request(model_env)))
        done = await wait_done(c, sub["job_id"], budget_s=180)
        logs = await call(c, "job_logs", job_id=sub["job_id"])
        assert done["status"] == "Complete", logs["lines"]
        line = next(x for x in logs["lines"] if x.startswith("standin dino train"))
        assert "4 images, 4 annotated, gpus=0 epochs=1" in line
        listing = await call(c, "list_path", uri=done["results_location"])
        names = {e["name"] for e in listing["entries"]}
        assert {"model.pth", "status.json"} <= names


async def test_model_action_refuses_a_command_too(model_env: dict[str, str]) -> None:
    async with Client(build_server(model_env)) as c:
        r = await c.call_tool("submit_job", {**request(model_env), "command": "echo hi"})
        unknown = await c.call_tool("submit_job", {**request(model_env), "model": "nosuchnet"})
    assert r.is_error and "E_BAD_INPUT" in r.content[0].text and "command" in r.content[0].text
    assert unknown.is_error and "E_UNKNOWN_MODEL" in unknown.content[0].text and "dino" in unknown.content[0].text
