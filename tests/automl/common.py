"""What every AutoML test shares: the stand-in `dino` CLI with its data in a mounted folder, the request, the
metric the stand-in computes, and a wait that polls wait_for_automl to a deadline."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import anyio

from tests.helpers import REPO, call

BANK = REPO / "fixtures" / "skill_bank"
POLL = {"TAO_MCP_AUTOML_POLL_S": "0.5"}


def standin_tree(root: Path) -> Path:
    """root/bin/dino (the stand-in) and root/data (4 images, their annotations), readable by any container user."""
    (root / "bin").mkdir(parents=True, exist_ok=True)
    (root / "data" / "images").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "fixtures" / "standin" / "tao_standin.py", root / "bin" / "dino")
    (root / "bin" / "dino").chmod(0o755)
    for i in range(4):
        (root / "data" / "images" / f"{i:04d}.jpg").write_bytes(b"jpeg")
    (root / "data" / "annotations.json").write_text(json.dumps({"images": [1, 2, 3, 4]}))
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() or path.name == "dino" else 0o644)
    return root


def expected_val_acc(lr: float) -> float:
    """The stand-in's metric (fixtures/standin/tao_standin.py: val_acc)."""
    return round(1.0 - abs(math.log10(lr) + 3.0) / 4.0, 6)


def automl_args(data_root: str, platform: str, budget: int, **extra: Any) -> dict[str, Any]:
    return {
        "model": "dino",
        "platform": platform,
        "metric": "val_acc",
        "direction": "maximize",
        "max_recommendations": budget,
        "gpu_count": 0,
        "time_limit": 10,
        "spec_overrides": {
            "dataset.train_data_sources[0].image_dir": f"{data_root}/data/images",
            "dataset.train_data_sources[0].json_file": f"{data_root}/data/annotations.json",
            "train.num_epochs": 1,
        },
        **extra,
    }


async def start_confirmed(c: Any, args: dict[str, Any]) -> dict[str, Any]:
    review = await call(c, "start_automl", **args, dry_run=True)
    return await call(c, "start_automl", plan_id=review["plan_id"])


async def wait_run(c: Any, run_id: str, budget_s: float, until: str | None = None) -> dict[str, Any]:
    """wait_for_automl until the run ends (or until one recommendation is running, with until='running')."""
    with anyio.fail_after(budget_s):
        while True:
            if until == "running":
                status = await call(c, "automl_status", run_id=run_id)
                if any(r["status"] == "running" and r["job_id"] for r in status["recommendations"]):
                    return status
                await anyio.sleep(0.5)
                continue
            run = await call(c, "wait_for_automl", run_id=run_id, timeout_s=20)
            if run["done"]:
                return run
