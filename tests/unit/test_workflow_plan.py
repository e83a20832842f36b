"""A workflow's plan is checked before anything is stored: every refusal is coded and names the step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tao_mcp.errors import TaoError
from tao_mcp.service.jobs import JobService
from tao_mcp.service.redaction import Redactor
from tao_mcp.service.registry import DriverRegistry
from tao_mcp.service.store import JobRecord, JobStore
from tao_mcp.service.workflows import (
    MAX_COMBINATIONS,
    Produced,
    WorkflowService,
    plan,
    unit_key,
    unit_params,
    units_of,
)
from tests.helpers import launch_request


def step(step_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": step_id, "platform": "slurm", "command": "echo", **fields}


def refusal(steps: Any) -> str:
    with pytest.raises(TaoError) as caught:
        plan(steps)
    assert caught.value.code == "E_WORKFLOW_INVALID"
    return caught.value.cause


def test_steps_come_back_in_dependency_order() -> None:
    ordered = plan([step("export", depends_on=["eval"]), step("train"), step("eval", depends_on=["train"])])
    assert [s.id for s in ordered] == ["train", "eval", "export"]


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([], "non-empty"),
        ([step("a"), step("a")], "two steps have the id 'a'"),
        ([step("a", depends_on=["nope"])], "step 'a': depends_on names 'nope'"),
        ([step("a", depends_on=["a"])], "step 'a' depends on itself"),
        ([step("a", depends_on=["b"]), step("b", depends_on=["a"]), step("c")], "a, b depend on each other"),
        ([step("a", partiton="gpu")], "step 'a': unknown argument(s) partiton"),
        ([step("a", idempotency_key="k")], "step 'a': unknown argument(s) idempotency_key"),
        ([{"id": "a", "command": "echo"}], "step 'a': platform is missing"),
        ([step("a", command="echo {{steps.b.results}}"), step("b")], "refers to 'b', which is not among"),
        ([step("a"), step("b", depends_on=["a"], command="{{steps.a.result}}")], "not a reference this server"),
        ([step("a", command="{{env.HOME}}")], "not a reference this server knows"),
        ([step("a", command="echo {{matrix.lr}}")], "names no parameter of its matrix"),
        ([step("a", matrix={"lr": [1, 2]})], "matrix parameter(s) lr are not used"),
        ([step("a", matrix={"lr": []}, command="{{matrix.lr}}")], "non-empty list"),
        ([step("a", matrix={"lr": [1, 1]}, command="{{matrix.lr}}")], "repeats a value"),
        (
            [
                step("s", matrix={"lr": [1, 2]}, command="{{matrix.lr}}"),
                step("b", depends_on=["s"], command="{{steps.s.results}}"),
            ],
            "refers to the sweep 's'",
        ),
        (
            [step("a", matrix={"x": list(range(MAX_COMBINATIONS + 1))}, command="{{matrix.x}}")],
            f"combinations; at most {MAX_COMBINATIONS}",
        ),
        (
            [step(f"s{i}", matrix={"x": list(range(20))}, command="{{matrix.x}}") for i in range(4)],
            "expands into 80 jobs",
        ),
    ],
)
def test_a_bad_plan_is_refused_with_the_step_named(steps: Any, expected: str) -> None:
    assert expected in refusal(steps)


def test_references_render_with_the_referenced_values_and_matrix_types() -> None:
    ordered = plan(
        [
            step("train", outputs=["/out"]),
            step(
                "sweep",
                depends_on=["train"],
                matrix={"lr": [0.1, 0.01], "gpus": [0, 1]},
                command="run --from {{ steps.train.results }}/model --lr {{matrix.lr}}",
                gpu_count="{{matrix.gpus}}",
                inputs={"/ckpt": "{{steps.train.outputs./out}}"},
            ),
        ]
    )
    units = units_of(ordered)
    assert [u.key for u in units] == [
        "train",
        "sweep[lr=0.1,gpus=0]",
        "sweep[lr=0.1,gpus=1]",
        "sweep[lr=0.01,gpus=0]",
        "sweep[lr=0.01,gpus=1]",
    ]
    produced = {"train": Produced("s3://b/results/abc", {"/out": "s3://b/results/abc/out"})}
    params = unit_params(units[2], produced, "wf1")
    assert params.command == "run --from s3://b/results/abc/model --lr 0.1"
    assert params.gpu_count == 1  # a whole-string reference keeps the value's type
    assert params.inputs == {"/ckpt": "s3://b/results/abc/out"}
    assert params.name == "sweep-lr0.1-gpus1"
    assert params.workflow == {"workflow_id": "wf1", "step": "sweep[lr=0.1,gpus=1]"}
    missing = Produced("s3://b/results/abc", {})
    with pytest.raises(TaoError, match=r"step 'sweep\[lr=0.1,gpus=0\]'.*declares no output '/out'"):
        unit_params(units[1], {"train": missing}, "wf1")


def test_a_step_argument_of_the_wrong_type_is_refused_with_the_step() -> None:
    (unit,) = units_of(plan([step("a", gpu_count="many")]))
    with pytest.raises(TaoError, match=r"step 'a': gpu_count: "):
        unit_params(unit, {}, "wf1")


def test_the_derived_idempotency_key_is_stable_per_workflow_and_unit() -> None:
    assert unit_key("wf1", "sweep[lr=0.1]") == unit_key("wf1", "sweep[lr=0.1]")
    assert len({unit_key("wf1", "a"), unit_key("wf2", "a"), unit_key("wf1", "b")}) == 3
    assert len(unit_key("wf1", "x" * 500)) <= 128


def test_a_store_written_before_workflows_gains_their_tables_and_keeps_its_jobs(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    old = JobStore(path)
    old.insert(JobRecord.launching(launch_request("oldjob"), platform="slurm", digest="d", command="echo"))
    old.close()
    store = JobStore(path)
    WorkflowService(JobService({}, store, Redactor(), DriverRegistry({})))
    WorkflowService(JobService({}, store, Redactor(), DriverRegistry({})))  # a second open changes nothing
    tables = {row["name"] for row in store.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"jobs", "workflows", "workflow_units"} <= tables
    assert store.get("oldjob") is not None
    assert store.query("SELECT COUNT(*) AS n FROM workflows")[0]["n"] == 0
