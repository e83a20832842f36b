"""Platform faults never produce a false terminal state; batching, instances and the old `ls --json` shape."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from tao_mcp.config import load_settings
from tao_mcp.drivers.base import JobRef
from tao_mcp.drivers.brev import BrevDriver
from tao_mcp.errors import BackendUnreachable, TaoError
from tests.brev.brevkit import (
    FAKE,
    IMAGE,
    TOKEN,
    FakeBrev,
    client,
    error_text,
    submit,
    wait_done,
)
from tests.helpers import call, wait_status

pytestmark = [pytest.mark.anyio]

TERMINAL = {"Complete", "Error", "Canceled"}


def brev(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The fake CLI run the way a person at the server would (stdin from /dev/null)."""
    return subprocess.run(
        [str(FAKE / "brev"), *args], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )


async def watch_until_terminal(c: Any, job_id: str, budget_s: float = 60) -> list[dict[str, Any]]:
    """Every status on the way to the end (polled, with a deadline)."""
    seen: list[dict[str, Any]] = []
    with anyio.fail_after(budget_s):
        while True:
            status = await call(c, "job_status", job_id=job_id)
            seen.append(status)
            if status["status"] in TERMINAL:
                return seen
            await anyio.sleep(0.3)


async def test_token_expiring_mid_job_relogs_in_once(brev_env: dict[str, str], fake: FakeBrev) -> None:
    async with client(brev_env) as c:
        sub = await submit(c, "sleep 3; echo finished")
        await wait_done(c, sub["job_id"], until="running")
        logins = len(fake.calls("login"))
        assert logins == 1  # the fake starts logged out: the driver logged in with BREV_API_TOKEN
        fake.configure(token_expired=True)
        seen = await watch_until_terminal(c, sub["job_id"])
        assert seen[-1]["status"] == "Complete" and seen[-1]["exit_code"] == 0
        assert len(fake.calls("login")) == logins + 1
        assert all(s["status"] in ("Running", "Complete") for s in seen)


async def test_exec_reruns_and_lost_execs_are_not_terminal(brev_env: dict[str, str], fake: FakeBrev) -> None:
    async with client(brev_env) as c:
        sub = await submit(c, "sleep 4; echo the-end")
        await wait_done(c, sub["job_id"], until="running")
        fake.configure(exec_rerun_next=2, exec_lost_before_next=2)
        seen = await watch_until_terminal(c, sub["job_id"])
        assert seen[-1]["status"] == "Complete", seen[-1]
        assert all(s["status"] == "Running" for s in seen[:-1])
        assert any(s["backend_reachable"] is False for s in seen), "a lost exec must show as unreachable"
        assert "the-end" in (await call(c, "job_logs", job_id=sub["job_id"]))["lines"]


async def test_hanging_cli_times_out_without_a_state_change(brev_env: dict[str, str], fake: FakeBrev) -> None:
    async with client({**brev_env, "BREV_CLI_TIMEOUT": "3"}) as c:
        sub = await submit(c, "sleep 6; echo late")
        await wait_done(c, sub["job_id"], until="running")
        # The sweep and job_status's own read of this one job both meet a hanging CLI.
        fake.configure(exec_hang_next=3)
        st = await wait_status(c, sub["job_id"], lambda s: not s["backend_reachable"], budget_s=30)
        assert st["status"] == "Running"
        assert "did not finish within 3 s" in st["message"]
        done = await wait_done(c, sub["job_id"])
        assert done["status"] == "Complete"


async def test_launch_cut_off_is_reconciled_by_name_not_relaunched(brev_env: dict[str, str], fake: FakeBrev) -> None:
    fake.configure(exec_lost_after_if="__TAO_LAUNCH")
    async with client(brev_env) as c:
        sub = await submit(c, "echo launched-once")
        assert sub["status"] == "Unknown" and "reconciled" in sub["message"]
        done = await wait_done(c, sub["job_id"])
        assert done["status"] == "Complete" and done["backend_id"] == f"gpu-box/tao-{sub['job_id']}"
        logs = await call(c, "job_logs", job_id=sub["job_id"])
        assert logs["lines"].count("launched-once") == 1
    launches = [x for x in fake.calls("exec") if "__TAO_LAUNCH" in x["argv"][-1]]
    assert len(launches) == 1


async def test_old_ls_json_shape(brev_env: dict[str, str], fake: FakeBrev) -> None:
    fake.configure(ls_shape="old")
    async with client(brev_env) as c:
        sub = await submit(c, "echo old-cli")
        assert (await wait_done(c, sub["job_id"]))["status"] == "Complete"
    out = brev({**brev_env}, "ls", "--json").stdout
    assert out.lstrip().startswith("[")


async def test_stopped_instance_is_not_terminal(brev_env: dict[str, str], fake: FakeBrev) -> None:
    async with client(brev_env) as c:
        sub = await submit(c, "echo up; sleep 600")
        await wait_done(c, sub["job_id"], until="running")
        assert brev(brev_env, "stop", "gpu-box").returncode == 0
        st = await wait_status(c, sub["job_id"], lambda s: s["raw_state"].startswith("INSTANCE_STOP"))
        assert st["status"] == "Unknown" and "brev start gpu-box" in st["message"]
        fa = await call(c, "failure_analysis", job_id=sub["job_id"])
        assert fa["status"] == "Unknown"


async def test_driver_batches_one_exec_per_instance(brev_env: dict[str, str], fake: FakeBrev) -> None:
    async with client(brev_env) as c:
        jobs = [
            await submit(c, "sleep 30"),
            await submit(c, "sleep 30"),
            await submit(c, "sleep 30", instance="box-two", gpu_name="A100"),
        ]
        for job in jobs:
            await wait_done(c, job["job_id"], until="running")
    # the server (and its poller) is gone: every call from here on is the driver's
    driver = BrevDriver(load_settings(brev_env))
    refs = [
        JobRef(j["job_id"], f"tao-{j['job_id']}", j["backend_id"], {"instance": j["backend_id"].split("/")[0]}, 0)
        for j in jobs
    ]
    before = len(fake.calls())
    observed = await driver.observe(refs)
    calls = fake.calls()[before:]
    assert [x["argv"][0] for x in calls] == ["ls", "exec", "exec"]
    assert sorted(x["argv"][1] for x in calls if x["argv"][0] == "exec") == ["box-two", "gpu-box"]
    assert {o.status for o in observed.values()} == {"Running"} and len(observed) == 3
    for ref in refs:
        await driver.cancel(ref)
    with anyio.fail_after(20):
        while {o.status for o in (await driver.observe(refs)).values()} != {"Canceled"}:
            await anyio.sleep(0.3)


async def test_list_and_delete_instances(brev_env: dict[str, str], fake: FakeBrev) -> None:
    driver = BrevDriver(load_settings(brev_env))
    options = driver.parse_options({"instance": "to-delete", "type": "g5.xlarge"})
    assert await driver.ensure_ready(options) == "to-delete"
    listed = await driver.list_instances()
    assert [i["name"] for i in listed] == ["to-delete"]
    assert listed[0]["status"] == "RUNNING" and listed[0]["instance_type"] == "g5.xlarge" and listed[0]["gpu"]
    answer = await driver.delete_instance("to-delete")
    assert answer["status"] == "DELETING" and answer["previous_status"] == "RUNNING"
    with anyio.fail_after(10):
        while await driver.list_instances():
            await anyio.sleep(0.3)
    with pytest.raises(TaoError) as info:
        await driver.delete_instance("to-delete")
    assert info.value.code == "E_BREV_NO_INSTANCE"


async def test_missing_cli_and_unreachable_cli(brev_env: dict[str, str], fake: FakeBrev) -> None:
    driver = BrevDriver({**load_settings(brev_env), "PATH": "/nonexistent"})
    with pytest.raises(TaoError) as info:
        await driver.list_instances()
    assert info.value.code == "E_BREV_CLI_MISSING" and "BREV_CLI" in str(info.value)
    driver = BrevDriver({**load_settings(brev_env), "BREV_CLI_TIMEOUT": "1"})
    await driver.list_instances()  # logs in
    fake.configure(exec_hang_next=0)
    options = driver.parse_options({"instance": "hang", "type": "g5.xlarge"})
    await driver.ensure_ready(options)
    fake.configure(exec_hang_next=1)
    ref = JobRef("abc", "tao-abc", "hang/tao-abc", options, time.time())
    started = time.monotonic()
    with pytest.raises(BackendUnreachable):
        await driver.observe([ref])
    assert time.monotonic() - started < 5
    # the killed brev left no process behind
    assert f"{FAKE}/brev exec hang" not in _ps()
    # a cancelled MCP call (not a timeout) also kills brev and what it started
    patient = BrevDriver({**load_settings(brev_env), "BREV_CLI_TIMEOUT": "60"})
    fake.configure(exec_hang_next=1)
    with anyio.move_on_after(1.5) as scope:
        await patient.observe([ref])
    assert scope.cancelled_caught
    assert f"{FAKE}/brev exec hang" not in _ps()


def _ps() -> str:
    return subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout


async def test_instance_tools_through_mcp(brev_env: dict[str, str], fake: FakeBrev) -> None:
    async with client(brev_env) as c:
        sub = await submit(c, "echo on-box", instance="billed-box", type="g5.xlarge", gpu_name=None)
        await wait_done(c, sub["job_id"])
        listed = await call(c, "list_instances")
        assert [(i["name"], i["status"], i["health"]) for i in listed["instances"]] == [
            ("billed-box", "RUNNING", "HEALTHY")
        ]
        platform = await call(c, "list_platforms", platform="brev")
        assert platform["platform"]["diagnostics"]["running"] == "billed-box"
        deleted = await call(c, "delete_instance", name="billed-box")
        assert deleted["status"] == "DELETING"
        with anyio.fail_after(15):
            while (await call(c, "list_instances"))["instances"]:
                await anyio.sleep(0.3)
        result = await c.call_tool("delete_instance", {"name": "billed-box"})
        assert result.is_error and "E_BREV_NO_INSTANCE" in result.content[0].text


async def test_secrets_copy_failures_launch_nothing(brev_env: dict[str, str], fake: FakeBrev) -> None:
    """The secrets go by `brev copy` before the launch exec: a copy that fails launched nothing (no record, no
    launch exec, the local file gone), and the same submit launches once when the copy works again."""

    def secret_job(command: str, key: str) -> dict[str, Any]:
        return {
            "platform": "brev",
            "command": command,
            "image": IMAGE,
            "secret_env": ["NGC_KEY"],
            "options": {"instance": "gpu-box"},
            "idempotency_key": key,
        }

    async with client(brev_env) as c:
        await wait_done(c, (await submit(c, "echo warm"))["job_id"])  # the instance exists and answers exec
        fake.configure(copy_lost_next=1)
        text = await error_text(c, "submit_job", **secret_job("echo x", "copy-1"))
        assert text.startswith("E_BACKEND_UNREACHABLE:") and "nothing was sent" in text and "brev copy" in text
        assert len((await call(c, "list_jobs"))["jobs"]) == 1  # the warm-up job: nothing recorded
        fake.configure(copy_refused_next=1)
        text = await error_text(c, "submit_job", **secret_job("echo y", "copy-2"))
        assert text.startswith("E_BACKEND_REJECTED:") and "No space left" in text
        launches = [x for x in fake.calls("exec") if "__TAO_LAUNCH" in x["argv"][-1]]
        assert len(launches) == 1  # the warm-up job's only
        sources = [x["argv"][-2] for x in fake.calls("copy")]
        assert len(sources) == 2 and not any(os.path.exists(s) for s in sources)
        sub = await call(c, "submit_job", **secret_job("echo again", "copy-1"))
        assert (await wait_done(c, sub["job_id"]))["status"] == "Complete"
        assert "again" in (await call(c, "job_logs", job_id=sub["job_id"]))["lines"]
    assert len([x for x in fake.calls("exec") if "__TAO_LAUNCH" in x["argv"][-1]]) == 2


def test_fake_copy_is_scp_shaped(brev_env: dict[str, str], fake: FakeBrev, tmp_path: Path) -> None:
    """The fake's `brev copy`: one side INSTANCE:PATH, the container's files where exec runs, --host elsewhere."""
    assert brev(brev_env, "login", "--token", TOKEN).returncode == 0
    assert brev(brev_env, "create", "box", "--type", "g5.xlarge", "--detached").returncode == 0
    local = tmp_path / "f.txt"
    local.write_text("hello")
    local.chmod(0o600)
    deadline = time.monotonic() + 20
    while brev(brev_env, "copy", str(local), "box:f.txt").returncode != 0:  # DEPLOYING, then SSH not up yet
        assert time.monotonic() < deadline, "the fake instance never took a copy"
        time.sleep(0.2)
    home = fake.root / "instances" / "box" / "home"
    assert (home / "f.txt").read_text() == "hello" and (home / "f.txt").stat().st_mode & 0o777 == 0o600
    assert brev(brev_env, "exec", "box", "cat f.txt").stdout.startswith("hello")
    assert brev(brev_env, "copy", "--host", str(local), "box:f2.txt").returncode == 0
    assert not (home / "f2.txt").exists() and (fake.root / "instances" / "box" / "host" / "f2.txt").exists()
    assert brev(brev_env, "copy", "box:f.txt", str(tmp_path / "back.txt")).returncode == 0
    assert (tmp_path / "back.txt").read_text() == "hello"
    for args, error in (
        ((str(local), "nope:/x"), "instance nope not found"),
        ((str(local), str(tmp_path / "y")), "exactly one of source or destination"),
        ((str(local),), "accepts 2 arg(s)"),
        ((str(local), "box:missing/dir/f"), "No such file or directory"),
        ((str(tmp_path / "absent"), "box:f3"), "does not exist"),
    ):
        done = brev(brev_env, "copy", *args)
        assert done.returncode != 0 and error in done.stderr, (args, done.stderr)
