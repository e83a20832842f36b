"""Runner auto-resume: the checkpoint with the highest epoch in the job's results (or TAO_RESUME_FROM) becomes the
action's resume key; downloaded inputs are never taken for checkpoints; jobs that cannot resume do not look."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tao_mcp.entrypoint import runner

KEY = "train.resume_training_checkpoint_path"


@pytest.fixture(autouse=True)
def clean_resume_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """resume_from_checkpoint exports TAO_RESUME_CHECKPOINT: keep it out of the other tests."""
    monkeypatch.delenv("TAO_RESUME_FROM", raising=False)
    monkeypatch.delenv("TAO_RESUME_CHECKPOINT", raising=False)


def job(mode: str = "config", resume_key: str | None = KEY) -> dict[str, Any]:
    item: dict[str, Any] = {"job_id": "j1", "mode": mode, "command": "train", "spec": {"train": {"num_epochs": 9}}}
    if mode == "args":
        item.update(spec=None, args={"epochs": 9})
    if resume_key:
        item["resume_key"] = resume_key if mode == "config" else "resume"
    return item


def touch(path: Path, age: float = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("weights")
    if age:
        os.utime(path, (path.stat().st_mtime - age, path.stat().st_mtime - age))
    return path


@pytest.mark.parametrize(
    ("name", "epoch"),
    [
        ("model_epoch_004_step_00080.pth", 4),
        ("epoch=12-step=500.ckpt", 12),
        ("dino_model_epoch009.tlt", 9),
        ("model_latest.pth", -1),
    ],
)
def test_epoch_from_the_file_name(name: str, epoch: int) -> None:
    assert runner.checkpoint_epoch(f"/r/{name}") == epoch


def test_highest_epoch_wins_and_inputs_are_not_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = tmp_path / "results"
    touch(results / "train" / "model_epoch_002.pth")
    best = touch(results / "train" / "model_epoch_010.pth", age=100)  # older file, higher epoch
    touch(results / "train" / "model_latest.pth")
    touch(results / "inputs" / "pretrained" / "model_epoch_999.pth")  # a downloaded pretrained model
    touch(results / "train" / "events.log")
    item = job()
    plan = runner.prepare(item, str(results), str(results / "inputs"))
    runner.resume_from_checkpoint(item, plan, str(results), None, lambda: pytest.fail("no S3 here"))
    assert plan["spec"]["train"]["resume_training_checkpoint_path"] == str(best)
    assert os.environ["TAO_RESUME_CHECKPOINT"] == str(best)


def test_args_mode_sets_the_resume_argument(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAO_RESUME_FROM", raising=False)
    ckpt = touch(tmp_path / "epoch=3-step=9.ckpt")
    item = job("args")
    plan = runner.prepare(item, str(tmp_path), str(tmp_path / "inputs"))
    runner.resume_from_checkpoint(item, plan, str(tmp_path), None, lambda: pytest.fail("no S3 here"))
    assert plan["args"]["resume"] == str(ckpt)


def test_a_fresh_job_and_a_job_without_a_resume_key_change_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TAO_RESUME_FROM", raising=False)
    item = job()
    plan = runner.prepare(item, str(tmp_path), str(tmp_path / "inputs"))
    runner.resume_from_checkpoint(item, plan, str(tmp_path), None, lambda: pytest.fail("no S3 here"))
    assert "resume_training_checkpoint_path" not in plan["spec"]["train"]
    touch(tmp_path / "model_epoch_001.pth")
    plain = job(resume_key=None)
    plan = runner.prepare(plain, str(tmp_path), str(tmp_path / "inputs"))
    runner.resume_from_checkpoint(plain, plan, str(tmp_path), None, lambda: pytest.fail("must not look"))
    assert "resume_training_checkpoint_path" not in plan["spec"]["train"]


def test_resume_from_an_earlier_jobs_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    earlier = tmp_path / "results" / "old"
    ckpt = touch(earlier / "model_epoch_007.pth")
    monkeypatch.setenv("TAO_RESUME_FROM", f"lustre://{earlier}")
    new = tmp_path / "results" / "new"
    item = job()
    plan = runner.prepare(item, str(new), str(new / "inputs"))
    runner.resume_from_checkpoint(item, plan, str(new), None, lambda: pytest.fail("no S3 here"))
    assert plan["spec"]["train"]["resume_training_checkpoint_path"] == str(ckpt)


class FakeS3:
    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def list(self, bucket: str, prefix: str) -> Any:
        return [(k, len(v)) for k, v in sorted(self.objects.items()) if k.startswith(prefix)]

    def get(self, bucket: str, key: str, start: int) -> Any:
        import io

        return io.BytesIO(self.objects[key][start:]), bool(start)


def test_checkpoints_in_s3_results_are_downloaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAO_RESUME_FROM", raising=False)
    s3 = FakeS3(
        {
            "results/j1/train/model_epoch_001.pth": b"one",
            "results/j1/train/model_epoch_005.pth": b"five",
            "results/j1x/model_epoch_099.pth": b"another job",
        }
    )
    item = job()
    plan = runner.prepare(item, str(tmp_path), str(tmp_path / "inputs"))
    runner.resume_from_checkpoint(item, plan, str(tmp_path), "s3://b/results/j1", lambda: s3)  # type: ignore[arg-type,return-value]
    local = plan["spec"]["train"]["resume_training_checkpoint_path"]
    assert local == str(tmp_path / "inputs" / "resume" / "model_epoch_005.pth")
    assert Path(local).read_bytes() == b"five"


def test_action_plans_carry_the_resume_key_into_the_job(tmp_path: Path) -> None:
    """A config-mode train action resumes at TAO PyTorch's key unless its record declares another (or null)."""
    import json
    import shutil

    import yaml

    from tao_mcp.entrypoint.builder import build_entrypoint
    from tao_mcp.service.metadata import actions
    from tests.helpers import REPO

    bank = tmp_path / "bank"
    shutil.copytree(REPO / "fixtures" / "skill_bank", bank)
    settings = {"TAO_SKILL_BANK_PATH": str(bank)}
    train = actions.action_plan(settings, "dino", "train")
    assert train.resume_key == KEY
    assert actions.action_plan(settings, "dino", "evaluate").resume_key is None
    built = build_entrypoint(job_id="j1", settings={}, **train.entrypoint_kwargs())
    assert built.runner_job is not None and runner.decode_job(built.runner_job)["resume_key"] == KEY

    info = bank / "skills" / "models" / "dino" / "references" / "skill_info.yaml"
    record = yaml.safe_load(info.read_text())
    record["actions"]["train"]["resume_key"] = "train.checkpoint_to_resume"
    record["actions"]["evaluate"]["resume_key"] = None
    info.write_text(json.dumps(record))
    assert actions.action_plan(settings, "dino", "train").resume_key == "train.checkpoint_to_resume"
    record["actions"]["train"]["resume_key"] = None
    info.write_text(json.dumps(record))
    assert actions.action_plan(settings, "dino", "train").resume_key is None


@pytest.mark.parametrize("mode", ["config", "args"])
def test_the_gpu_count_follows_the_gpus_the_platform_gave(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """SLURM splitting 16 GPUs into 2 nodes of 8 (or Docker gpus='all') sets NUM_GPU_PER_NODE: the spec follows."""
    item = job(mode, resume_key=None)
    item["gpus_key"] = "train.num_gpus" if mode == "config" else "gpus"
    plan = runner.prepare(item, "/r", "/r/inputs")
    monkeypatch.setenv("NUM_GPU_PER_NODE", "8")
    runner.align_gpu_count(item, plan)
    assert (plan["spec"]["train"]["num_gpus"] if mode == "config" else plan["args"]["gpus"]) == 8
    monkeypatch.delenv("NUM_GPU_PER_NODE")
    item = job(mode, resume_key=None)
    plan = runner.prepare(item, "/r", "/r/inputs")
    runner.align_gpu_count(item, plan)  # no key, no variable: nothing changes
    assert "num_gpus" not in (plan["spec"] or {}).get("train", {}) and "gpus" not in plan["args"]
