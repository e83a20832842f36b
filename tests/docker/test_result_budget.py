"""Every tool's result with default arguments fits the 8k-token budget, on realistic inputs: a real-size skill bank
(fixtures/skill_bank_large.py, 100 models), a job whose log has 2000 realistic lines (a failing one, for the
analysis), a model dry run, every platform's detail. Rule: tokens = characters / 4 over everything the client
receives (the text content plus the JSON of the structured content), rounded up; no tokenizer."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from fixtures.skill_bank_large import build as build_bank
from tao_mcp.server import build_server
from tao_mcp.service.workflows import MAX_UNITS
from tao_mcp.tools._common import RESULT_BUDGET_TOKENS
from tests.automl.common import BANK, POLL, automl_args, standin_tree
from tests.helpers import mcp_client as client
from tests.helpers import wait_done

pytestmark = [pytest.mark.anyio, pytest.mark.docker]

# a realistic training log line (~110 characters), 2000 of them, then a traceback
LOG = (
    'for i in $(seq 1 2000); do echo "Epoch $((i / 100))/20 step $i/2000: loss=0.8234 lr=0.0002 '
    'grad_norm=1.137 it/s=8.26 eta=00:12:31 [rank0]"; done; '
    "echo 'Traceback (most recent call last):'; echo 'RuntimeError: CUDA out of memory'; exit 1"
)
# a long training run's progress as the runner forwards it: 300 epochs, 8 metrics each
PROGRESS = (
    'for e in $(seq 1 300); do echo "[tao-progress] {\\"epoch\\":$e,\\"max_epoch\\":300,'
    '\\"kpi\\":{\\"loss\\":0.$e,\\"val_loss\\":0.$e,\\"val_mAP\\":0.$e,'
    '\\"val_mAP50\\":0.$e,\\"val_recall\\":0.$e,\\"lr\\":0.000$e,'
    '\\"grad_norm\\":1.$e,\\"time_per_step\\":0.$e}}"; done'
)


async def call_ok(c: Any, tool: str, **args: Any) -> Any:
    result = await c.call_tool(tool, args)
    assert not result.is_error, result.content[0].text
    return result.structured_content


def tokens(result: Any) -> int:
    text = "".join(getattr(c, "text", "") for c in result.content)
    structured = json.dumps(result.structured_content) if result.structured_content is not None else ""
    return math.ceil((len(text) + len(structured)) / 4)


async def test_every_tool_result_fits_the_budget(docker_env: dict[str, str], tmp_path: Path) -> None:
    bank = build_bank(tmp_path / "bank")
    data = tmp_path / "data"
    data.mkdir()
    for i in range(300):  # a dataset folder bigger than one listing page
        (data / f"image_{i:05d}.jpg").write_bytes(b"jpeg")
    env = {
        **docker_env,
        "TAO_SKILL_BANK_PATH": str(bank),
        "TAO_MCP_FILE_ROOTS": str(tmp_path),
        "ACCESS_KEY": docker_env.get("ACCESS_KEY") or "test-access-key",
        "SECRET_KEY": docker_env.get("SECRET_KEY") or "test-secret-key-value",
    }
    measured: dict[str, int] = {}
    async with client(env) as c:

        async def measure(label: str, tool: str, **args: Any) -> Any:
            result = await c.call_tool(tool, args)
            measured[label] = tokens(result)
            return result

        await measure("list_platforms()", "list_platforms")
        for platform in ("slurm", "kubernetes", "docker", "lepton", "brev", "azureml"):
            await measure(f"list_platforms({platform})", "list_platforms", platform=platform)
        await measure("list_models()", "list_models")
        await measure("list_models(automl)", "list_models", scope="automl")
        await measure("resolve_image", "resolve_image", model="dino", action="train")
        dry = await measure(
            "submit_job(dino, dry_run)",
            "submit_job",
            platform="docker",
            model="dino",
            action="train",
            automl_policy="off",
            dry_run=True,
            spec_overrides={
                "dataset.train_data_sources[0].image_dir": "s3://bucket/coco/images/",
                "dataset.train_data_sources[0].json_file": "s3://bucket/coco/annotations.json",
            },
        )
        assert not dry.is_error, dry.content[0].text
        plan = dry.structured_content
        assert plan["job_id"] is None and plan["plan_id"], plan
        # the plan summary (command, image, spec, launch line, runner by hash) stays within ~2k tokens
        assert len(json.dumps(plan["preview"])) / 4 <= 2000, {k: len(v) for k, v in plan["preview"].items()}
        sub = await measure(
            "submit_job", "submit_job", platform="docker", gpu_count=0, image=env["TAO_MCP_TEST_IMAGE"], command=LOG
        )
        assert not sub.is_error, sub.content[0].text
        job_id = sub.structured_content["job_id"]
        await measure("job_status", "job_status", job_id=job_id)
        await wait_done(c, job_id)
        await measure("wait_for_job", "wait_for_job", job_id=job_id)
        logs = await measure("job_logs (2000-line log)", "job_logs", job_id=job_id)
        page = logs.structured_content
        assert page["truncated"] is True and page["lines"], {k: v for k, v in page.items() if k != "lines"}
        analysis = await measure("failure_analysis", "failure_analysis", job_id=job_id)
        assert analysis.structured_content["status"] == "Error"
        await measure("cancel_job (finished)", "cancel_job", job_id=job_id)
        await measure("list_jobs", "list_jobs")
        await measure("job_replicas", "job_replicas", job_id=job_id)
        await measure("list_path", "list_path", uri=f"file://{data}")
        await measure("check_path", "check_path", uri=f"file://{data}")
        await measure("list_instances", "list_instances")
        # workflows at their largest: MAX_UNITS jobs (a model sweep's dry run; a real sweep canceled at once)
        sweep = {
            "id": "sweep",
            "platform": "docker",
            "model": "dino",
            "action": "train",
            "matrix": {"epochs": list(range(1, MAX_UNITS + 1))},
            "spec_overrides": {
                "dataset.train_data_sources[0].image_dir": "s3://bucket/coco/images/",
                "dataset.train_data_sources[0].json_file": "s3://bucket/coco/annotations.json",
                "train.num_epochs": "{{matrix.epochs}}",
            },
        }
        wf_dry = await measure("submit_workflow(dry_run)", "submit_workflow", name="big", steps=[sweep], dry_run=True)
        assert not wf_dry.is_error and len(wf_dry.structured_content["steps"]) == MAX_UNITS, wf_dry.content[0].text
        plain = {
            "id": "sweep",
            "platform": "docker",
            "gpu_count": 0,
            "image": env["TAO_MCP_TEST_IMAGE"],
            "command": "sleep 30; echo {{matrix.n}}",
            "matrix": {"n": list(range(MAX_UNITS))},
        }
        wf = await measure("submit_workflow", "submit_workflow", name="big", steps=[plain], max_parallel=1)
        workflow_id = wf.structured_content["workflow_id"]
        await measure("wait_for_workflow", "wait_for_workflow", workflow_id=workflow_id, timeout_s=1)
        await measure("cancel_workflow", "cancel_workflow", workflow_id=workflow_id)
        await measure("workflow_status", "workflow_status", workflow_id=workflow_id, metric="val_acc")
        await measure("list_workflows", "list_workflows")
        await measure("delete_instance", "delete_instance", name="no-such-instance")
        trained = await call_ok(
            c, "submit_job", platform="docker", gpu_count=0, image=env["TAO_MCP_TEST_IMAGE"], command=PROGRESS
        )
        await wait_done(c, trained["job_id"])
        series = await measure("job_metrics (300 epochs x 8)", "job_metrics", job_id=trained["job_id"])
        assert not series.is_error and len(series.structured_content["available"]) == 8, series.content[0].text
    # AutoML on the stand-in model bank: a review, a run that is stopped at once
    standin = standin_tree(tmp_path / "standin")
    automl_env = {**env, **POLL, "TAO_SKILL_BANK_PATH": str(BANK), "TAO_MCP_DOCKER_MOUNT_ROOTS": str(tmp_path)}
    args = automl_args(
        "/standin",
        "docker",
        200,
        image=env["TAO_MCP_TEST_PY_IMAGE"],
        options={"mounts": [f"{standin}:/standin:ro"]},
        env={"PATH": "/standin/bin:/usr/local/bin:/usr/bin:/bin", "STANDIN_SLEEP": "60"},
    )
    async with client(automl_env) as c:

        async def measure_automl(label: str, tool: str, **args: Any) -> Any:
            result = await c.call_tool(tool, args)
            assert not result.is_error, result.content[0].text
            measured[label] = tokens(result)
            return result.structured_content

        review = await measure_automl("start_automl(dry_run)", "start_automl", **args, dry_run=True)
        run = await measure_automl("start_automl", "start_automl", plan_id=review["plan_id"])
        await measure_automl("automl_status", "automl_status", run_id=run["run_id"])
        await measure_automl("wait_for_automl", "wait_for_automl", run_id=run["run_id"], timeout_s=1)
        await measure_automl("stop_automl", "stop_automl", run_id=run["run_id"])
        await measure_automl("list_automl_runs", "list_automl_runs")
    tools = {t.name for t in (await build_server(env).list_tools())}
    assert {label.split(" ")[0].split("(")[0] for label in measured} >= tools, "a tool is not measured"
    print("result tokens (chars / 4):", measured)
    over = {label: n for label, n in measured.items() if n > RESULT_BUDGET_TOKENS}
    assert not over, f"over the {RESULT_BUDGET_TOKENS}-token budget: {over} (all: {measured})"


async def test_large_results_tell_clients_their_size() -> None:
    tools = {t.name: t for t in await build_server({}).list_tools()}
    assert all(t.title for t in tools.values()), [n for n, t in tools.items() if not t.title]
    for name in ("submit_job", "job_logs", "list_models", "list_path", "failure_analysis", "list_platforms"):
        assert (tools[name].meta or {}).get("anthropic/maxResultSizeChars", 0) >= 4 * RESULT_BUDGET_TOKENS, name
    assert tools["submit_job"].annotations.idempotent_hint is False
    assert "idempotency_key" in tools["submit_job"].description
