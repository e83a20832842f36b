"""Workflows on the dev SLURM cluster: a TAO chain where each step reads the previous step's output, a sweep
held to max_parallel (checked on the backend's own timestamps), a failure that skips its dependents, and a server
SIGKILLed mid-workflow that resumes it without launching any step twice (counted with sacct)."""

from __future__ import annotations

import itertools
import json
import sqlite3
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client import Client

from tao_mcp.server import build_server
from tests.faults.harness import ServerLog, call_until_killed, stdio_server
from tests.helpers import call, call_error, structured, wait_done
from tests.slurm.test_slurm_models import request  # model_env: tests/slurm/conftest.py

pytestmark = [pytest.mark.anyio, pytest.mark.slurm]


async def wait_workflow(
    c: Any, workflow_id: str, budget_s: float = 240
) -> tuple[dict[str, Any], list[tuple[float, float | None]]]:
    """wait_for_workflow until done, with the progress notifications (value, total) it sent."""
    seen: list[tuple[float, float | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total))

    with anyio.fail_after(budget_s):
        while True:
            r = await c.call_tool(
                "wait_for_workflow", {"workflow_id": workflow_id, "timeout_s": 30}, progress_callback=on_progress
            )
            result = structured(r)
            if result["done"]:
                return result, seen


async def sacct(job_ids: list[str]) -> list[dict[str, str]]:
    """The backend's own record of these jobs (by their names tao-<job id>): one row per backend job, once
    accounting shows at least one row per name (it lags the scheduler) or after 20 s."""
    with anyio.move_on_after(20):
        while len(rows := sacct_rows(job_ids)) < len(job_ids):
            await anyio.sleep(0.5)
    return rows


def sacct_rows(job_ids: list[str]) -> list[dict[str, str]]:
    names = ",".join(f"tao-{j}" for j in job_ids)
    out = subprocess.run(
        ["sacct", "-n", "-P", "-X", "--allusers", "--name", names, "-S", "now-1days", "-o", "JobID,JobName,Submit,End"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    keys = ("id", "name", "submit", "end")
    return [dict(zip(keys, line.split("|"), strict=True)) for line in out.splitlines() if line.strip()]


def sacct_states(job_id: str) -> list[str]:
    out = subprocess.run(
        ["sacct", "-n", "-P", "-X", "--allusers", "--name", f"tao-{job_id}", "-S", "now-1days", "-o", "State"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.splitlines()


def most_in_flight(rows: list[dict[str, str]]) -> int:
    """How many of these jobs the backend held at once (submitted, not ended); touching intervals do not overlap."""
    events = []
    for row in rows:
        events += [(datetime.fromisoformat(row["submit"]), 1), (datetime.fromisoformat(row["end"]), -1)]
    events.sort(key=lambda e: (e[0], e[1]))  # an end before a submit in the same second
    return max(itertools.accumulate(delta for _, delta in events))


async def test_train_evaluate_export_chain_reads_each_previous_output(model_env: dict[str, str]) -> None:
    # a workflow step is one plain job (no AutoML routing), so it takes no automl_policy
    train = {**{k: v for k, v in request(model_env).items() if k != "automl_policy"}, "id": "train"}
    path = train["env"]
    evaluate = {
        "id": "evaluate",
        "depends_on": ["train"],
        "platform": "slurm",
        "model": "dino",
        "action": "evaluate",
        "gpu_count": 0,
        "env": path,
        "spec_overrides": {"evaluate.checkpoint": "{{steps.train.results}}/model.pth"},
    }
    export = {
        "id": "export",
        "depends_on": ["evaluate"],
        "platform": "slurm",
        "model": "dino",
        "action": "export",
        "gpu_count": 0,
        "env": path,
        "spec_overrides": {"export.checkpoint": "{{steps.evaluate.outputs.results_dir}}/best.pth"},
    }
    async with Client(build_server(model_env), mode="legacy") as c:
        dry = await call(c, "submit_workflow", name="chain", steps=[train, evaluate, export], dry_run=True)
        assert dry["dry_run"] and [s["step"] for s in dry["steps"]] == ["train", "evaluate", "export"]
        checkpoint = dry["steps"][0]["results_location"] + "/model.pth"  # an example location: nothing ran
        rendered = json.loads(dry["steps"][1]["rendered"])
        assert rendered["spec_overrides"] == {"evaluate.checkpoint": checkpoint}
        assert rendered["entrypoint"]["evaluate"]["checkpoint"] == checkpoint.removeprefix("lustre://")
        assert await call(c, "list_jobs") == {
            "jobs": [],
            "next_cursor": None,
            "next": "job_status(job_id=...) for details",
        }

        started = await call(c, "submit_workflow", name="chain", steps=[train, evaluate, export], max_parallel=1)
        done, progress = await wait_workflow(c, started["workflow_id"])
        assert done["status"] == "Complete", done
        steps = {s["step"]: s for s in done["steps"]}
        assert all(s["status"] == "Complete" for s in steps.values())
        assert progress and all(total == 3 for _, total in progress) and max(p for p, _ in progress) >= 2

        # each step read what the one before wrote
        eval_log = await call(c, "job_logs", job_id=steps["evaluate"]["job_id"])
        train_dir = steps["train"]["results_location"].removeprefix("lustre://")
        assert any(f"{train_dir}/model.pth (weights)" in line for line in eval_log["lines"]), eval_log["lines"]
        onnx = steps["export"]["outputs"]["export.onnx_file"]
        assert onnx.startswith(steps["export"]["results_location"])
        assert Path(onnx.removeprefix("lustre://")).read_text() == "onnx of weights"

        # train's metric comes from its status.json kpi (the runner forwards the records); the others report none
        scored = await call(c, "workflow_status", workflow_id=started["workflow_id"], metric="val_acc")
        assert [s["metric"] is not None for s in scored["steps"]] == [True, False, False]
        assert scored["best"]["step"] == "train" and scored["best"]["value"] == scored["steps"][0]["metric"]
        listed = {j["job_id"]: j for j in (await call(c, "list_jobs"))["jobs"]}
        assert {(j["workflow_id"], j["step"]) for j in listed.values()} == {
            (started["workflow_id"], s) for s in ("train", "evaluate", "export")
        }
        workflows = await call(c, "list_workflows")
        assert [(w["workflow_id"], w["status"], w["steps"]) for w in workflows["workflows"]] == [
            (started["workflow_id"], "Complete", 3)
        ]
    with sqlite3.connect(Path(model_env["TAO_MCP_STATE_DIR"]) / "jobs.sqlite3") as conn:
        assert conn.execute("SELECT COUNT(*) FROM plans").fetchone() == (0,)  # checking a step stores no plan


async def test_sweep_runs_every_combination_at_most_max_parallel_at_once(slurm_env: dict[str, str]) -> None:
    sweep = {
        "id": "sweep",
        "platform": "slurm",
        "gpu_count": 0,
        "matrix": {"epochs": [1, 2, 3], "bs": [8, 16]},
        "command": "sleep 3; echo epochs={{matrix.epochs}} bs={{matrix.bs}}; echo val_acc: $(({{matrix.epochs}} * {{matrix.bs}}))",
    }
    async with Client(build_server(slurm_env), mode="legacy") as c:
        started = await call(c, "submit_workflow", name="sweep", steps=[sweep], max_parallel=2)
        assert sum(1 for s in started["steps"] if s["job_id"]) == 2  # the first two start with the submit
        done, _ = await wait_workflow(c, started["workflow_id"])
        assert done["status"] == "Complete"
        assert sorted(s["step"] for s in done["steps"]) == sorted(
            f"sweep[epochs={e},bs={b}]" for e in (1, 2, 3) for b in (8, 16)
        )
        status = await call(c, "workflow_status", workflow_id=started["workflow_id"], metric="val_acc")
    assert {s["step"]: s["metric"] for s in status["steps"]}["sweep[epochs=2,bs=8]"] == 16
    assert status["best"]["step"] == "sweep[epochs=3,bs=16]" and status["best"]["value"] == 48
    rows = await sacct([s["job_id"] for s in done["steps"]])
    assert len(rows) == 6
    assert most_in_flight(rows) == 2


async def test_a_failed_step_skips_its_dependents_and_ends_the_workflow_in_error(slurm_env: dict[str, str]) -> None:
    base = {"platform": "slurm", "gpu_count": 0}
    steps = [
        {**base, "id": "prepare", "command": "echo failing; exit 3"},
        {**base, "id": "train", "depends_on": ["prepare"], "command": "echo never"},
        {**base, "id": "export", "depends_on": ["train"], "command": "echo never"},
        {**base, "id": "side", "command": "echo independent"},
    ]
    async with Client(build_server(slurm_env), mode="legacy") as c:
        started = await call(c, "submit_workflow", name="failing", steps=steps)
        done, _ = await wait_workflow(c, started["workflow_id"])
    by_step = {s["step"]: s for s in done["steps"]}
    assert done["status"] == "Error"
    assert by_step["prepare"]["status"] == "Error" and by_step["side"]["status"] == "Complete"
    assert by_step["train"]["status"] == by_step["export"]["status"] == "Skipped"
    assert by_step["train"]["job_id"] is None and by_step["export"]["job_id"] is None
    assert "prepare ended Error" in by_step["train"]["message"]
    assert done["next"] == f"failure_analysis(job_id='{by_step['prepare']['job_id']}')"


async def test_a_server_killed_mid_workflow_resumes_it_without_launching_a_step_twice(
    slurm_env: dict[str, str], tmp_path: Path
) -> None:
    """SIGKILL right after a step's job was launched and before its job id was stored with the step; the next
    server process finds the open workflow, submits that step again under its derived key, gets the same job."""
    steps = [
        {"id": "first", "platform": "slurm", "gpu_count": 0, "command": "sleep 2; echo first"},
        {"id": "second", "depends_on": ["first"], "platform": "slurm", "gpu_count": 0, "command": "echo second"},
        {"id": "third", "depends_on": ["second"], "platform": "slurm", "gpu_count": 0, "command": "echo third"},
    ]
    logs = ServerLog(tmp_path)
    await call_until_killed(
        slurm_env, logs, "workflow.after_launch", 0.0, [("submit_workflow", {"name": "killed", "steps": steps})]
    )
    db = Path(slurm_env["TAO_MCP_STATE_DIR"]) / "jobs.sqlite3"
    with sqlite3.connect(db) as conn:
        (workflow_id,) = conn.execute("SELECT workflow_id FROM workflows").fetchone()
        unrecorded = conn.execute("SELECT unit FROM workflow_units WHERE job_id IS NULL").fetchall()
        launched = conn.execute("SELECT job_id FROM jobs").fetchall()
    assert len(unrecorded) == 3 and len(launched) == 1  # the kill fell between the launch and the record

    with open(logs.next(), "w") as errlog:
        async with stdio_server(slurm_env, errlog) as c:
            listed = structured(await c.call_tool("list_workflows", {}))
            assert [w["workflow_id"] for w in listed["workflows"]] == [workflow_id]
            done, _ = await wait_workflow(c, workflow_id)
    assert done["status"] == "Complete", logs.tail()
    job_ids = [s["job_id"] for s in done["steps"]]
    assert job_ids[0] == launched[0][0]  # the step launched before the kill kept its job
    with sqlite3.connect(db) as conn:
        assert sorted(j for (j,) in conn.execute("SELECT job_id FROM jobs")) == sorted(job_ids)
    rows = await sacct(job_ids)
    assert sorted(row["name"] for row in rows) == sorted(f"tao-{j}" for j in job_ids)  # one backend job each


async def test_cancel_workflow_cancels_the_running_step_and_never_starts_the_rest(slurm_env: dict[str, str]) -> None:
    base = {"platform": "slurm", "gpu_count": 0}
    steps = [
        {**base, "id": "long", "command": "sleep 300"},
        {**base, "id": "after", "depends_on": ["long"], "command": "echo never"},
    ]
    async with Client(build_server(slurm_env), mode="legacy") as c:
        started = await call(c, "submit_workflow", name="canceled", steps=steps)
        job_id = started["steps"][0]["job_id"]
        canceled = await call(c, "cancel_workflow", workflow_id=started["workflow_id"])
        again = await call(c, "cancel_workflow", workflow_id=started["workflow_id"])
    by_step = {s["step"]: s for s in canceled["steps"]}
    assert canceled["status"] == "Canceled" and again["status"] == "Canceled"
    assert by_step["long"]["status"] == "Canceled" and by_step["after"]["status"] == "Canceled"
    assert by_step["after"]["job_id"] is None
    with anyio.fail_after(15):  # accounting lags the scheduler by about a second
        while not (states := sacct_states(job_id)):
            await anyio.sleep(0.5)
    assert len(states) == 1 and states[0].startswith("CANCELLED")


async def test_a_command_that_names_pem_armor_runs_as_a_step_as_it_does_as_a_job(slurm_env: dict[str, str]) -> None:
    """Armor text alone is no key: submit_job and submit_workflow both accept it and run exactly what was given."""
    command = "printf '%s\\n' '-----BEGIN RSA PRIVATE KEY-----' | grep -c -- '-----BEGIN RSA PRIVATE KEY-----'"
    async with Client(build_server(slurm_env), mode="legacy") as c:
        job = await call(c, "submit_job", platform="slurm", gpu_count=0, command=command)
        started = await call(
            c,
            "submit_workflow",
            name="armor",
            steps=[{"id": "a", "platform": "slurm", "gpu_count": 0, "command": command}],
        )
        done, _ = await wait_workflow(c, started["workflow_id"])
        step_job = done["steps"][0]["job_id"]
        logs = await call(c, "job_logs", job_id=step_job)
        listed = {j["job_id"]: j for j in (await call(c, "list_jobs"))["jobs"]}
    assert done["status"] == "Complete"
    assert "1" in [line.strip() for line in logs["lines"]]  # the step's grep found the armor line it printed
    assert listed[job["job_id"]]["command"] == listed[step_job]["command"] == command[:120]


async def test_a_step_using_a_forwarded_secret_by_variable_runs_it_with_the_value(slurm_env: dict[str, str]) -> None:
    """`Bearer $NGC_KEY` names the secret the step forwards with secret_env: accepted (no credential value is in the
    step), and a dry-run plan launches that very command, not a masked one."""
    command = 'printf "Authorization: Bearer $NGC_KEY" | wc -c'
    step = {"platform": "slurm", "gpu_count": 0, "command": command, "secret_env": ["NGC_KEY"]}
    expected = str(len("Authorization: Bearer ") + len(slurm_env["NGC_KEY"]))
    async with Client(build_server(slurm_env), mode="legacy") as c:
        started = await call(c, "submit_workflow", name="byname", steps=[{"id": "a", **step}])
        plan = await call(c, "submit_job", **step, dry_run=True)
        planned = await call(c, "submit_job", plan_id=plan["plan_id"])
        done, _ = await wait_workflow(c, started["workflow_id"])
        job_done = await wait_done(c, planned["job_id"])
        outputs = [
            [line.strip() for line in (await call(c, "job_logs", job_id=job_id))["lines"]]
            for job_id in (done["steps"][0]["job_id"], planned["job_id"])
        ]
    assert done["status"] == "Complete" and job_done["status"] == "Complete"
    assert plan["preview"]["command"] == command
    assert all(expected in lines for lines in outputs), outputs


async def test_refusals_name_the_step_and_retries_return_the_first_workflow(slurm_env: dict[str, str]) -> None:
    ok = {"id": "a", "platform": "slurm", "gpu_count": 0, "command": "echo a"}
    async with Client(build_server(slurm_env), mode="legacy") as c:
        bad_gpu = await call_error(
            c, "submit_workflow", name="w", steps=[ok, {**ok, "id": "b", "depends_on": ["a"], "gpu_count": -1}]
        )
        secret = await call_error(c, "submit_workflow", name="w", steps=[{**ok, "env": {"LEAK": slurm_env["NGC_KEY"]}}])
        in_command = await call_error(
            c, "submit_workflow", name="w", steps=[{**ok, "command": f"echo {slurm_env['HF_TOKEN']}"}], dry_run=True
        )
        cycle = await call_error(
            c, "submit_workflow", name="w", steps=[{**ok, "depends_on": ["b"]}, {**ok, "id": "b", "depends_on": ["a"]}]
        )
        unknown = await call_error(c, "workflow_status", workflow_id="nosuchworkflow")
        assert (await call(c, "list_jobs"))["jobs"] == []  # nothing was launched or recorded by a refusal

        first = await call(c, "submit_workflow", name="w", steps=[ok], idempotency_key="wf-key")
        retry = await call(c, "submit_workflow", name="w", steps=[ok], idempotency_key="wf-key")
        conflict = await call_error(
            c, "submit_workflow", name="w", steps=[{**ok, "command": "echo b"}], idempotency_key="wf-key"
        )
        second = await call(c, "submit_workflow", name="w2", steps=[ok])
        page = await call(c, "list_workflows", limit=1)
        rest = await call(c, "list_workflows", limit=1, cursor=page["next_cursor"])
    assert bad_gpu.startswith("E_BAD_INPUT: step 'b': gpu_count is -1")
    assert secret.startswith("E_SECRET_IN_ENV: step 'a': ") and slurm_env["NGC_KEY"] not in secret
    assert in_command.startswith("E_WORKFLOW_INVALID: step 'a' holds a credential value")
    assert slurm_env["HF_TOKEN"] not in in_command
    assert cycle.startswith("E_WORKFLOW_INVALID: the steps a, b depend on each other in a cycle")
    assert unknown.startswith("E_UNKNOWN_WORKFLOW: ")
    assert retry["reused"] and retry["workflow_id"] == first["workflow_id"]
    assert retry["steps"][0]["job_id"] == first["steps"][0]["job_id"]
    assert conflict.startswith("E_IDEMPOTENCY_CONFLICT: ")
    assert [w["workflow_id"] for w in page["workflows"] + rest["workflows"]] == [
        second["workflow_id"],
        first["workflow_id"],
    ]
    assert rest["next_cursor"] is None
