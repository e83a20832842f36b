"""The in-container runner in-process: safe extraction without tarfile's filters, and the start of the command
racing a stop signal. (The runner end to end, against the dev RGW, is tests/s3/test_runner.py.)"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fixtures.archives import BENIGN_MODES, VICTIM, benign, file_member, malicious, tar_bytes
from tao_mcp.entrypoint import runner


@pytest.fixture
def no_tar_filters(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Pythons of many TAO images (3.8.0-3.8.16, ..., 3.11.0-3.11.3) have no tarfile extraction filters."""
    for name in ("data_filter", "tar_filter", "fully_trusted_filter"):
        if hasattr(tarfile, name):
            monkeypatch.delattr(tarfile, name)


def tree(root: Path) -> dict[str, bytes | str | None]:
    """Every path under root: file bytes, link target, or None for a folder."""
    out: dict[str, bytes | str | None] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = os.readlink(path) if path.is_symlink() else None if path.is_dir() else path.read_bytes()
    return out


def setup(tmp_path: Path, members: list[Any], existing: bool) -> tuple[Path, Path, Path]:
    parent = tmp_path / "deep" / "er"
    parent.mkdir(parents=True)
    (parent / VICTIM).write_bytes(b"victim")
    archive = parent / "data.tar.gz"
    archive.write_bytes(tar_bytes(members))
    dest = parent / "data"
    if existing:
        (dest / "sub").mkdir(parents=True)
        (dest / "keep.txt").write_bytes(b"keep")
        (dest / "sub" / "keep2.txt").write_bytes(b"keep2")
    return parent, archive, dest


CASES = sorted(malicious("/x"))


@pytest.mark.parametrize("existing", [False, True], ids=["new-folder", "existing-folder"])
@pytest.mark.parametrize("case", CASES)
def test_malicious_archive_writes_nothing_outside(
    tmp_path: Path, no_tar_filters: None, case: str, existing: bool
) -> None:
    absolute = tmp_path / "absolute-target.txt"
    parent, archive, dest = setup(tmp_path, malicious(str(absolute))[case], existing)
    before = tree(parent)
    with pytest.raises(runner.RunnerError) as info:
        runner.extract(str(archive), str(dest))
    assert info.value.code == "E_UNSAFE_ARCHIVE", str(info.value)
    assert tree(parent) == before, "the refused archive changed files around or inside the destination"
    assert not absolute.exists() and not (tmp_path / "deep" / VICTIM).exists()


def test_extraction_drops_special_bits_and_keeps_the_existing_folder(tmp_path: Path, no_tar_filters: None) -> None:
    parent, archive, dest = setup(tmp_path, benign(), existing=True)
    (dest / "top").mkdir()
    (dest / "top" / "a.txt").write_bytes(b"old")  # the archive's file of the same name replaces it
    runner.extract(str(archive), str(dest))
    found = tree(dest)
    assert found["keep.txt"] == b"keep" and found["sub/keep2.txt"] == b"keep2"
    assert found["top/a.txt"] == b"a" and found["top/alias.txt"] == "a.txt" and found["dot/b.txt"] == b"b"
    assert found["replaced"] == b"new" and not (dest / "replaced").is_symlink()
    assert (dest / "top" / "hard.txt").stat().st_ino == (dest / "top" / "a.txt").stat().st_ino
    for rel, mode in BENIGN_MODES.items():
        assert stat.S_IMODE((dest / rel).stat().st_mode) == mode, rel
    assert sorted(p.name for p in parent.iterdir()) == ["data", "data.tar.gz", VICTIM], "a temporary folder was left"


def test_a_file_where_a_folder_is_is_refused_before_anything_moves(tmp_path: Path) -> None:
    _parent, archive, dest = setup(tmp_path, [file_member("a.txt", b"a"), file_member("sub", b"file")], existing=True)
    before = tree(dest)
    with pytest.raises(runner.RunnerError) as info:
        runner.extract(str(archive), str(dest))
    assert info.value.code == "E_EXTRACT_CONFLICT" and "sub" in info.value.cause
    assert tree(dest) == before


def test_system_destinations_are_refused_also_through_links(tmp_path: Path) -> None:
    for path in ("/", "/etc/x", "/usr/local/lib", "/lib64", "/proc/self", "/var/run/x"):
        with pytest.raises(runner.RunnerError) as info:
            runner.check_destination(path)
        assert info.value.code == "E_BAD_INPUT"
    (tmp_path / "link").symlink_to("/etc")
    with pytest.raises(runner.RunnerError):
        runner.check_destination(str(tmp_path / "link" / "data"))
    runner.check_destination(str(tmp_path / "data"))


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


def test_the_runner_writes_its_latest_message_to_the_phase_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    phase = tmp_path / "runner.phase"
    monkeypatch.setenv("TAO_RUNNER_PHASE_FILE", str(phase))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value-xyz")
    monkeypatch.setattr(runner, "SECRET_NAMES", ("AWS_SECRET_ACCESS_KEY",))
    runner.say("phase downloading inputs")
    runner.say("download 1/3 files: key s3cr3t-value-xyz")
    assert phase.read_text() == f"{runner.TAG} download 1/3 files: key ***\n"  # the latest only, redacted
    assert [p.name for p in tmp_path.iterdir()] == ["runner.phase"]  # no temporary file left
    monkeypatch.setenv("TAO_RUNNER_PHASE_FILE", str(tmp_path / "missing" / "runner.phase"))
    runner.say("still fine")  # no folder for it: the message still goes to the log, nothing raises
