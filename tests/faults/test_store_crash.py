"""The store file survives SIGKILL during a write burst: it opens, passes integrity_check, loses no acknowledged job."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tao_mcp.service.store import JobStore
from tests.faults.conftest import N, Tally
from tests.helpers import REPO

pytestmark = pytest.mark.faults

KILLS_PER_N = 4


def burst_then_kill(db: Path, delay_s: float) -> set[str]:
    """Start a writer, SIGKILL it delay_s after it is ready; the ids it acknowledged (printed after commit)."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    writer = subprocess.Popen(
        [sys.executable, "-m", "tests.faults.store_writer", str(db)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    ready = writer.stdout.readline()
    assert ready.strip() == "ready", writer.stderr.read() if writer.stderr else ready
    time.sleep(delay_s)
    writer.send_signal(signal.SIGKILL)
    out, err = writer.communicate(timeout=30)
    assert writer.returncode == -signal.SIGKILL, err
    return {line.split()[1] for line in out.splitlines() if line.startswith("ack ")}


def test_sigkill_during_write_burst_loses_no_acknowledged_job(tmp_path: Path, rng: random.Random, tally: Tally) -> None:
    db = tmp_path / "jobs.sqlite3"
    acknowledged: set[str] = set()
    for _ in range(KILLS_PER_N * N):
        acknowledged |= burst_then_kill(db, rng.uniform(0.05, 0.6))
        tally.injected += 1
        with sqlite3.connect(db) as conn:  # the file a restarted server opens
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            stored = {row[0] for row in conn.execute("SELECT job_id FROM jobs")}
        missing = acknowledged - stored
        tally.lost += len(missing)
        assert not missing, f"{len(missing)} acknowledged jobs missing after SIGKILL: {sorted(missing)[:5]}"
        JobStore(db).close()  # and the product opens it (schema, WAL recovery)
    assert acknowledged, "the writer acknowledged nothing: the burst never ran"
