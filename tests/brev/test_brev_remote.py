"""Pure parts of the Brev driver: exec output unwrapping, `ls --json` shapes, the state table, options, preview."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tao_mcp.drivers.base import LaunchRequest
from tao_mcp.drivers.brev import BrevDriver, remote
from tao_mcp.drivers.brev.cli import Instance, parse_ls
from tao_mcp.drivers.brev.driver import _instance_observation
from tao_mcp.errors import TaoError

pytestmark = [pytest.mark.anyio]

ROW = {
    "name": "box",
    "id": "x1",
    "status": "RUNNING",
    "build_status": "COMPLETED",
    "shell_status": "READY",
    "health_status": "HEALTHY",
    "instance_type": "g5.xlarge",
    "gpu": "A10G x1",
}


def test_unwrap_takes_the_last_complete_run_and_drops_the_instance_line() -> None:
    out = "__TAO_BEGIN t1\nfirst\n__RC=0 t1\n__TAO_BEGIN t1\nsecond\n__RC=0 t1\nbox\n"
    section = remote.unwrap(out, "t1")
    assert section.text == "second" and section.rc == 0
    assert remote.unwrap("__TAO_BEGIN t1\n__RC=2 t1\nbox", "t1") == remote.Section(2, "")
    for broken in ("__TAO_BEGIN t1\npartial output", "box\n", "__RC=0 t1\n", "__TAO_BEGIN t1\n__RC=0 other\n"):
        with pytest.raises(remote.Unwrapped):
            remote.unwrap(broken, "t1")
    # a log line that looks like a marker without the nonce changes nothing
    assert remote.unwrap("__TAO_BEGIN t1\n__RC=9\nlog\n__RC=0 t1\nbox", "t1").text == "__RC=9\nlog"


def test_wrapped_script_always_exits_zero_and_reports_the_code() -> None:
    import subprocess

    script = remote.wrap("echo hi; exit 7", "n")
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and remote.unwrap(done.stdout, "n") == remote.Section(7, "hi")


def test_ls_json_both_shapes() -> None:
    new = parse_ls(json.dumps({"workspaces": [ROW], "org": "o"}))
    old = parse_ls(json.dumps([ROW]))
    assert new == old and new["box"].running and new["box"].instance_type == "g5.xlarge"
    assert parse_ls(json.dumps({"workspaces": []})) == {}
    assert parse_ls(json.dumps([{"name": "b", "status": "deploying", "instanceType": "t"}]))["b"].status == "DEPLOYING"
    notice = "A new version of brev is available: v0.6.330\n" + json.dumps({"workspaces": [ROW]})
    assert parse_ls(notice) == new
    with pytest.raises(ValueError):
        parse_ls("Error: not json")


@pytest.mark.parametrize(
    ("facts", "status", "raw"),
    [
        (remote.JobFacts(started=True, phase="pulling", wrapper="alive"), "Pending", "PULLING"),
        (remote.JobFacts(started=True), "Pending", "STARTING"),
        (
            remote.JobFacts(started=True, phase="running", wrapper="alive", state={"Status": "running"}),
            "Running",
            "RUNNING",
        ),
        (remote.JobFacts(started=True, exit_code=0, state={"Status": "exited", "ExitCode": 0}), "Complete", "EXITED"),
        (remote.JobFacts(started=True, exit_code=2, state={"Status": "exited", "ExitCode": 2}), "Error", "EXITED"),
        (
            remote.JobFacts(started=True, exit_code=137, state={"OOMKilled": True, "Status": "exited"}),
            "Error",
            "OOMKilled",
        ),
        (remote.JobFacts(started=True, exit_code=125, phase="pull_failed"), "Error", "ErrImagePull"),
        (remote.JobFacts(started=True, exit_code=143, timed_out=True), "Error", "TIMEOUT"),
        (remote.JobFacts(started=True, exit_code=143, canceled=True), "Canceled", "CANCELED"),
        (remote.JobFacts(started=True, canceled=True, wrapper="dead"), "Canceled", "CANCELED"),
        # the wrapper died but docker knows the end
        (
            remote.JobFacts(started=True, wrapper="dead", state={"Status": "exited", "ExitCode": 0}),
            "Complete",
            "EXITED",
        ),
        (
            remote.JobFacts(started=True, wrapper="alive", state={"Status": "exited", "ExitCode": 0}),
            "Running",
            "EXITED",
        ),
        (remote.JobFacts(started=True, wrapper="dead"), "Error", "LOST"),
        (remote.JobFacts(files=False), "Unknown", "NOT_FOUND"),  # container not found is not success
        (remote.JobFacts(), "Unknown", "LAUNCH_INCOMPLETE"),
    ],
)
def test_state_table(facts: remote.JobFacts, status: str, raw: str) -> None:
    obs = remote.classify(facts, "box")
    assert (obs.status, obs.raw_state) == (status, raw)


def test_status_output_parses() -> None:
    text = (
        "@@job a\nstarted=1\nphase=running\nwrapper=alive\n"
        'state={"Status":"running","ExitCode":0,"OOMKilled":false,"StartedAt":"2026-01-02T03:04:05.123456789Z",'
        '"FinishedAt":"0001-01-01T00:00:00Z"}\n@@job b\nfiles=missing\n'
    )
    facts = remote.parse_status(text)
    obs = remote.classify(facts["a"], "box")
    assert obs.status == "Running" and obs.started_at == pytest.approx(1767323045.123456)
    assert facts["b"].files is False


def test_instance_states() -> None:
    assert _instance_observation("box", Instance("box", "RUNNING")) is None
    starting = _instance_observation("box", Instance("box", "STARTING"))
    assert (
        starting is not None and starting.status == "Pending" and "not RUNNING yet" in (starting.pending_reason or "")
    )
    stopped = _instance_observation("box", Instance("box", "STOPPED"))
    assert stopped is not None and stopped.status == "Unknown"
    gone = _instance_observation("box", None)
    assert gone is not None and gone.status == "Error" and "deleted" in gone.message


def test_options() -> None:
    driver = BrevDriver({"PATH": "/nonexistent", "BREV_RESULTS_DIR": "/data/results"})
    created = driver.parse_options({"gpu_name": "L4"})
    assert created["create"] and created["instance"].startswith("tao-mcp-")
    assert driver.parse_options({"instance": "box"})["create"] is False
    for bad in (
        {},
        {"type": "a", "gpu_name": "b"},
        {"instance": "x; rm -rf /"},
        {"results_dir": "../x"},
        {"zone": "z"},
    ):
        with pytest.raises(TaoError) as info:
            driver.parse_options(bad)
        assert info.value.code == "E_BAD_INPUT"
    with_default = BrevDriver({"PATH": "/nonexistent", "BREV_INSTANCE": "mine"})
    assert with_default.parse_options({})["instance"] == "mine"
    with pytest.raises(TaoError):
        BrevDriver({"BREV_RESULTS_DIR": "relative/dir"})


async def test_preview_shows_secret_names_only() -> None:
    driver = BrevDriver({"PATH": "/nonexistent", "BREV_RESULTS_DIR": "/data/results"})
    options = driver.parse_options({"instance": "box", "gpu_name": "L4", "shm_size": "16g"})
    req = LaunchRequest(
        "j1", "tao-j1", "echo hi", "img:1", 2, 1, {"A": "b"}, {"NGC_KEY": "value-xyz-123"}, None, options
    )
    preview = await driver.preview(req)
    text = json.dumps(preview.files) + preview.submit
    assert "value-xyz-123" not in text and "dmFsdWUteHl6LTEyMw" not in text
    assert "NGC_KEY=<secret: value not shown>" in text and "--gpus 2" in text and "--shm-size 16g" in text
    assert "brev create box --gpu-name L4 --detached" in preview.submit
    assert await driver.results_root(options) == "/data/results"
    no_image = LaunchRequest("j1", "tao-j1", "echo", None, 1, 1, {}, {}, None, options)
    with pytest.raises(TaoError):
        await driver.preview(no_image)


def test_env_file_refuses_line_breaks_without_echoing_the_value() -> None:
    with pytest.raises(TaoError) as info:
        remote.env_file({"KEY": "line1\nline2-secret"}, "secret_env")
    assert "line2-secret" not in str(info.value) and "KEY" in str(info.value)


def test_launch_body_moves_the_copied_secrets_and_starts_once(tmp_path: Path) -> None:
    """The launch exec carries no secret value; it moves what brev copy delivered into place (a re-run finds it
    moved already and starts nothing twice), and starts nothing when the secrets file never arrived."""
    import os
    import subprocess

    req = LaunchRequest("j1", "tao-j1", "true", "img:1", 0, 1, {}, {"NGC_KEY": "value-xyz-123"}, None, {})
    files = remote.render_files(req, str(tmp_path / "results"), None)
    home = tmp_path / "home"
    shim = Path(__file__).resolve().parents[2] / "fixtures" / "brev" / "shim"  # the wrapper runs the fake docker
    env = {
        "HOME": str(home),
        "PATH": f"{shim}:{os.environ['PATH']}",
        "FAKE_DOCKER_ROOT": str(tmp_path / "docker"),
        "FAKE_BREV_STATE": str(tmp_path / "state"),
    }

    def run(body: str) -> str:
        done = subprocess.run(["bash", "-c", remote.wrap(body, "n")], env=env, capture_output=True, text=True)
        return remote.unwrap(done.stdout, "n").text

    staged = remote.staged_dir(remote.Section(0, run(remote.stage_body("j1"))))
    assert staged == str(home / ".tao-mcp/jobs/j1") and os.stat(staged).st_mode & 0o077 == 0
    body = remote.launch_body("j1", files, str(tmp_path / "results"), with_secrets=True)
    assert "value-xyz-123" not in body and "dmFsdWUteHl6LTEyMw" not in body
    (home / ".tao-mcp/jobs/j1" / remote.INCOMING_SECRETS).write_text(files.secrets)
    launches = [remote.launch_outcome(remote.Section(0, run(body))) for _ in range(2)]
    assert launches == ["started", "exists"]
    secrets = home / ".tao-mcp/jobs/j1/secrets.env"
    assert secrets.read_text() == "NGC_KEY=value-xyz-123\n" and secrets.stat().st_mode & 0o777 == 0o600
    other = remote.launch_body("j2", files, str(tmp_path / "results"), with_secrets=True)
    assert remote.launch_outcome(remote.Section(0, run(other))) == "nosecrets"
    assert not (home / ".tao-mcp/jobs/j2/started").exists()
