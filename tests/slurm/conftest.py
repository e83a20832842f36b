"""Fixtures of the SLURM tests that run TAO model actions."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from tests.helpers import REPO, dev_settings

BANK = REPO / "fixtures" / "skill_bank"


@pytest.fixture
def model_env(slurm_env: dict[str, str]) -> dict[str, str]:
    """Cluster + S3 settings, the fixture skill bank, and a stand-in `dino` CLI installed on the cluster.

    The cluster's folder is shared by every test run on the machine: the stand-in goes into a folder named by its
    content, so a run never executes another worktree's version of it. STANDIN_BIN names that folder."""
    source = REPO / "fixtures" / "standin" / "tao_standin.py"
    bin_dir = (
        Path(slurm_env["SLURM_BASE_RESULTS_DIR"])
        / f"standin-bin-{hashlib.sha256(source.read_bytes()).hexdigest()[:12]}"
    )
    bin_dir.mkdir(exist_ok=True)
    target = bin_dir / "dino"
    if not target.exists():
        partial = bin_dir / f".dino.{os.getpid()}"
        shutil.copy(source, partial)
        partial.chmod(0o755)
        partial.replace(target)  # whole or absent, also for a concurrent run installing the same content
    bin_dir.chmod(0o755)
    settings = {**slurm_env, **dev_settings("s3", "scripts/dev/s3 up"), "TAO_SKILL_BANK_PATH": str(BANK)}
    return {**settings, "STANDIN_BIN": str(bin_dir)}
