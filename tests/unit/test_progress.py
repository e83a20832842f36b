"""Training progress: the runner's status.json follower (what it forwards, and what hostile status records cannot do)
and the server's reading of the marked lines (latest record, message, series, best epoch)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tao_mcp.entrypoint import build_entrypoint, runner
from tao_mcp.service import monitor
from tao_mcp.service import progress as training

REPO = Path(__file__).resolve().parents[2]
STANDIN = REPO / "fixtures" / "standin" / "tao_standin.py"


def forwarded(root: Path, capfd: pytest.CaptureFixture[str]) -> list[str]:
    follower = runner.StatusFollower(str(root), 1.0)
    follower.scan()
    return [line for line in capfd.readouterr().out.splitlines() if line]


def test_follower_forwards_each_new_record_once(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    subprocess.run([sys.executable, str(STANDIN), "epochs", str(tmp_path / "train"), "3", "0"], check=True)
    follower = runner.StatusFollower(str(tmp_path), 1.0)
    follower.scan()
    first = [line for line in capfd.readouterr().out.splitlines() if line.startswith(training.MARK)]
    assert len(first) == 5  # STARTED, three epochs, SUCCESS
    follower.scan()
    assert capfd.readouterr().out == ""  # nothing new, nothing forwarded
    records = [training.parse(line) for line in first]
    assert [r.epoch for r in records if r] == [None, 1, 2, 3, None]
    assert records[2] is not None and records[2].source == "train" and records[2].kpi["loss"] == 0.5
    final = training.latest(first)
    assert final is not None and final.status == "SUCCESS" and final.epoch == 3 and final.max_epoch == 3
    assert training.summary(final).percent == 100.0


def test_hostile_status_records_stay_one_bounded_line(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    hostile = {
        "status": "RUNNING\n[tao-runner] exit 0",
        "message": "x\r\n[tao-runner] phase uploading outputs\x1b[2J" + "y" * 5000,
        "epoch": "7",
        "max_epoch": 10,
        "kpi": {f"k{i}": i for i in range(100)} | {"bad": "nan-ish", "flag": True, "nested": {"a": 1}},
        "graphical": {"g": 1e400},
    }
    lines = [json.dumps(hostile), "{not json", "[1, 2]", "x" * 70_000, json.dumps({"epoch": 1, "max_epoch": 2})]
    (tmp_path / "status.json").write_text("\n".join(lines) + "\n")
    out = forwarded(tmp_path, capfd)
    assert len(out) == 2 and all(line.startswith(training.MARK + " {") for line in out), out
    assert all(len(line) <= runner.PROGRESS_LINE_CHARS + 20 and line.isprintable() for line in out)
    assert not any("[tao-runner]" in line for line in out)  # a status record cannot pass for a runner line
    record = training.parse(out[0])
    assert record is not None and record.status is None and record.epoch == 7 and len(record.kpi) <= 32
    assert record.message is not None and len(record.message) <= 200


def test_a_secret_in_status_json_is_masked_by_the_runner(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NGC_KEY", "nvapi-canary-0123456789")
    (tmp_path / "status.json").write_text(json.dumps({"message": "key nvapi-canary-0123456789", "epoch": 1}) + "\n")
    (line,) = forwarded(tmp_path, capfd)
    assert "nvapi-canary" not in line and "***" in line


def test_the_runner_forwards_records_while_the_command_runs(tmp_path: Path) -> None:
    plan = build_entrypoint(
        job_id="progress1",
        command=f"{sys.executable} {STANDIN} epochs {{results_dir}}/train 3 0.5",
        specs=None,
        args=None,
        inputs=None,
        outputs=None,
        config_format="yaml",
        upload_excludes=None,
        results_uri=None,
        settings={},
    )
    assert plan.mode == "passthrough" and plan.runner_job
    env = {**os.environ, "TAO_RUNNER_LOCAL_ROOT": str(tmp_path), "TAO_RUNNER_STATUS_POLL_S": "0.2"}
    done = subprocess.run(
        [sys.executable, runner.__file__, plan.runner_job], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    marked = [i for i, line in enumerate(lines) if line.startswith(training.MARK)]
    epochs = [i for i, line in enumerate(lines) if line.startswith("standin epoch")]
    assert len(marked) == 5, lines
    # followed while running: the first epoch's record is in the log before the command's last epoch line
    assert marked[1] < epochs[-1], lines
    assert training.series(lines)["loss"] == {1: 1.0, 2: 0.5, 3: 0.3333}


def test_message_series_and_best_epoch() -> None:
    lines = [
        training.MARK
        + " "
        + json.dumps({"epoch": e, "max_epoch": 50, "eta": "1:32:10", "kpi": {"loss": loss, "val_mAP": m}})
        for e, loss, m in ((6, 0.5, 0.64), (7, 0.412, 0.61))
    ]
    record = training.latest(["noise", *lines])
    assert record is not None
    assert training.message(record) == "epoch 7/50 — loss 0.412 — val_mAP 0.61 — eta 1:32:10"
    points = training.series(lines)
    loss, mAP = training.describe("loss", points["loss"], 100), training.describe("val_mAP", points["val_mAP"], 100)
    assert (loss.best_epoch, loss.goal, mAP.best_epoch, mAP.goal) == (7, "min", 6, "max")
    assert training.parse("[tao-progress] not json") is None and training.parse("epoch 3") is None


def test_update_clock_reports_a_boundary_missed_between_calls() -> None:
    clock = monitor.UpdateClock()
    assert clock.seconds_left("j", anchor=0.0, interval=60.0, now=30.0) == 30.0
    assert clock.seconds_left("j", anchor=0.0, interval=60.0, now=61.0) == 0.0  # passed between two calls
    clock.reported("j", anchor=0.0, interval=60.0, now=61.0)
    assert clock.seconds_left("j", anchor=0.0, interval=60.0, now=62.0) == 58.0


def test_monitor_choice_is_checked() -> None:
    assert monitor.monitor_choice(None, {}) == {"enabled": True, "interval_minutes": 5.0}
    assert monitor.monitor_choice({"interval_minutes": 1}, {})["interval_minutes"] == 1.0
    for bad in ({"interval_minutes": 0}, {"enabled": "yes"}, {"every": 5}):
        with pytest.raises(Exception, match="E_BAD_INPUT"):
            monitor.monitor_choice(bad, {})
