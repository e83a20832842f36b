"""The in-container runner in-process: the start of the command racing a stop signal.
(The runner end to end, against the dev RGW, is tests/s3/test_runner.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tao_mcp.entrypoint import runner

# ---------------------------------------------------------------- a stop signal while the command starts


@pytest.fixture
def runner_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {"phase": "run", "pgid": 0, "starting": False, "pending": (), "stop_signal": 0}.items():
        monkeypatch.setattr(runner.State, name, value)
    previous = signal.signal(signal.SIGTERM, runner.on_signal)
    yield
    signal.signal(signal.SIGTERM, previous)


def test_a_signal_between_popen_and_the_recorded_group_reaches_the_command(
    monkeypatch: pytest.MonkeyPatch, runner_state: None
) -> None:
    real_popen = subprocess.Popen

    def popen_then_signal(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        child = real_popen(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)  # its handler runs here, before run_command has recorded the child
        return child

    monkeypatch.setattr(runner.subprocess, "Popen", popen_then_signal)
    rc = runner.run_command("exec sleep 60", dict(os.environ))
    assert rc == 128 + signal.SIGTERM, "the queued SIGTERM was not forwarded to the command"
    assert runner.State.stop_signal == signal.SIGTERM and runner.State.pending == ()


def test_a_signal_before_the_start_keeps_the_command_from_running(tmp_path: Path, runner_state: None) -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    marker = tmp_path / "ran"
    assert runner.run_command(f"touch {marker}", dict(os.environ)) is None
    assert not marker.exists()
