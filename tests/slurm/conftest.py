"""Fixtures of the SLURM tests that run TAO model actions."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import REPO, dev_settings

BANK = REPO / "fixtures" / "skill_bank"


@pytest.fixture
def model_env(slurm_env: dict[str, str]) -> dict[str, str]:
    """Cluster + S3 settings, the fixture skill bank, and a stand-in `dino` CLI installed on the cluster."""
    bin_dir = Path(slurm_env["SLURM_BASE_RESULTS_DIR"]) / "standin-bin"
    bin_dir.mkdir(exist_ok=True)
    target = bin_dir / "dino"
    shutil.copy(REPO / "fixtures" / "standin" / "tao_standin.py", target)
    target.chmod(0o755)
    bin_dir.chmod(0o755)
    return {**slurm_env, **dev_settings("s3", "scripts/dev/s3 up"), "TAO_SKILL_BANK_PATH": str(BANK)}
