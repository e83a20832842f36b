"""The pure parts of the AutoML route: search space and GPU-hours bound, the metric reader, the spec recovered
from the engine's command, and the repair of a stuck resume."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from tao_mcp.errors import TaoError
from tao_mcp.service.automl import engine, review
from tao_mcp.service.automl.adapter import spec_of
from tao_mcp.service.automl.metric import metric_from_lines

SCHEMA = {
    "type": "object",
    "properties": {
        "train": {
            "type": "object",
            "properties": {
                "num_epochs": {"type": "integer", "minimum": 1, "automl_enabled": False},
                "optim": {
                    "type": "object",
                    "properties": {"lr": {"type": "number", "minimum": 1e-5, "maximum": 1e-2, "automl_enabled": True}},
                },
                "optimizer": {"type": "string", "enum": ["sgd", "adamw"]},
            },
        }
    },
}


def test_search_space_defaults_requests_and_ranges() -> None:
    (lr,) = review.search_space(SCHEMA, None, None)
    assert (lr.name, lr.type, lr.min, lr.max) == ("train.optim.lr", "float", 1e-5, 1e-2)
    narrowed = review.search_space(SCHEMA, ["train.optim.lr", "train.optimizer"], {"train.optim.lr": {"max": 1e-3}})
    assert narrowed[0].max == 1e-3 and narrowed[1].type == "categorical" and narrowed[1].options == ["sgd", "adamw"]
    assert review.engine_ranges(narrowed) == {
        "train.optim.lr": {"valid_min": 1e-5, "valid_max": 1e-3},
        "train.optimizer": {"valid_options": ["sgd", "adamw"]},
    }
    for bad in (
        (["train.nope"], None),
        (None, {"train.optimizer": {"min": 1}}),
        (None, {"train.optim.lr": {"min": 1, "max": 0}}),
    ):
        with pytest.raises(TaoError) as err:
            review.search_space(SCHEMA, *bad)
        assert err.value.code == "E_BAD_INPUT"


def test_gpu_hours_bound_and_direction() -> None:
    assert review.gpu_hours(8, 8, 2, 90) == 192.0 and review.gpu_hours(8, 1, 1, None) is None
    assert review.direction_of("val_loss", None) == "minimize" and review.direction_of("mAP", None) == "maximize"
    assert review.direction_of("wer", "maximize") == "maximize"


def test_metric_from_status_records_in_log_lines() -> None:
    lines = [
        "12: [tao-progress] " + json.dumps({"epoch": 1, "kpi": {"val_acc": 0.5}}),
        "13: plain line with kpi word",
        json.dumps({"kpi": {"val_acc": 0.75, "loss": 1.0}}),
        json.dumps({"kpi": {"val_acc": float("nan")}}),
        json.dumps({"kpi": {"val_acc": True}}),
    ]
    assert metric_from_lines(lines, "val_acc") == 0.75
    assert metric_from_lines(lines, "mAP") is None


def test_spec_recovered_from_the_engines_command() -> None:
    spec = {"train": {"optim": {"lr": 0.001}}, "results_dir": "/results"}
    command = "cat > /tmp/r.py <<'EOF'\n...\nEOF\npython /tmp/r.py --mode config --specs " + shlex.quote(
        json.dumps(spec)
    )
    assert spec_of(command) == spec
    with pytest.raises(ValueError):
        spec_of("echo no specs")


def test_repair_adopts_or_fails_a_recommendation_saved_before_its_job(tmp_path: Path) -> None:
    controller = engine.controller_path(tmp_path, "s1")
    controller.parent.mkdir(parents=True)
    recs = [
        {"id": 0, "status": "success", "job_id": "j0"},
        {"id": 1, "status": "pending", "job_id": None},
        {"id": 2, "status": "pending", "job_id": None},
    ]
    controller.write_text(json.dumps(recs))
    (tmp_path / "active_jobs.json").write_text(json.dumps([]))
    notes = engine.repair_resume(tmp_path, "s1", {1: "j1"}.get, keep_cancel=False)
    assert notes == [
        "rec 1: adopted its job j1",
        "rec 2: marked failed (the server stopped before its job was created)",
    ]
    active = json.loads((tmp_path / "active_jobs.json").read_text())
    assert active == [{"rec_id": 1, "job_id": "j1", "updated_at": None}]
    assert [r["status"] for r in json.loads(controller.read_text())] == ["success", "pending", "failure"]
    assert engine.repair_resume(tmp_path, "s1", {}.get, keep_cancel=False) == []  # repaired once


def test_repair_drops_a_cancel_intent_left_by_a_shutdown(tmp_path: Path) -> None:
    controller = engine.controller_path(tmp_path, "s1")
    controller.parent.mkdir(parents=True)
    controller.write_text(json.dumps([{"id": 0, "status": "pending", "job_id": "j0"}]))
    entry = {"rec_id": 0, "job_id": "j0", "cancel_requested": True, "cancel_reason": "x", "cancel_requested_at": "t"}
    (tmp_path / "active_jobs.json").write_text(json.dumps([entry]))
    engine.repair_resume(tmp_path, "s1", {}.get, keep_cancel=True)
    assert json.loads((tmp_path / "active_jobs.json").read_text())[0]["cancel_requested"] is True
    engine.repair_resume(tmp_path, "s1", {}.get, keep_cancel=False)
    assert json.loads((tmp_path / "active_jobs.json").read_text()) == [{"rec_id": 0, "job_id": "j0"}]
