"""An agent drives Brev jobs through MCP against the protocol-faithful fake `brev` CLI (fixtures/brev)."""

from __future__ import annotations

import itertools
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from tests.brev.brevkit import (
    IMAGE,
    FakeBrev,
    client,
    error_text,
    submit,
    wait_done,
)
from tests.helpers import (
    FAILING_COMMAND,
    REPO,
    Transcript,
    assert_no_canary,
    assert_program_error,
    call,
    structured,
    wait_status,
)

pytestmark = [pytest.mark.anyio]


async def test_submit_creates_instance_wait_complete_logs(brev_env: dict[str, str], fake: FakeBrev) -> None:
    async with client(brev_env) as c:
        sub = await submit(c, "echo hello-from-brev; sleep 2; echo done-$TAO_JOB_ID; ls -d $TAO_RESULTS_ROOT")
        assert sub["status"] == "Pending" and sub["backend_id"] == f"gpu-box/tao-{sub['job_id']}"
        assert sub["results_location"] == f"file://{brev_env['BREV_RESULTS_DIR']}/{sub['job_id']}"
        seen: list[tuple[float, str | None]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append((progress, message))

        with anyio.fail_after(60):
            while True:
                r = await c.call_tool(
                    "wait_for_job", {"job_id": sub["job_id"], "timeout_s": 20}, progress_callback=on_progress
                )
                done = structured(r)
                if done["done"]:
                    break
        assert done["status"] == "Complete" and done["exit_code"] == 0, done
        assert done["raw_state"] == "EXITED" and done["started_at"] and done["ended_at"]
        assert seen and all(b > a for a, b in itertools.pairwise(p for p, _ in seen))
        assert any(m and (m.startswith("PENDING") or m.startswith("RUNNING")) for _, m in seen), seen

        logs = await call(c, "job_logs", job_id=sub["job_id"])
        assert "hello-from-brev" in logs["lines"] and f"done-{sub['job_id']}" in logs["lines"]
        assert brev_env["BREV_RESULTS_DIR"] in logs["lines"]  # the results root exists on the instance
        grep = await call(c, "job_logs", job_id=sub["job_id"], grep="hello")
        assert len(grep["lines"]) == 1 and "hello-from-brev" in grep["lines"][0]
        tail = await call(c, "job_logs", job_id=sub["job_id"], tail=1)
        assert tail["lines"] == [brev_env["BREV_RESULTS_DIR"]] and tail["truncated"] is True

        # the container: labels, GPUs, and the environment only through --env-file
        container = fake.container("gpu-box", f"tao-{sub['job_id']}")
        assert container["Labels"] == {"tao-mcp.job-id": sub["job_id"], "tao-mcp.managed": "true"}
        args = container["Args"]
        assert args[args.index("--gpus") + 1] == "1" and "--env-file" in args and "-e" not in args
    # every brev call had stdin = /dev/null (a character device), never a pipe
    assert {c["stdin"] for c in fake.calls()} == {"chr"}
    assert fake.instances()["gpu-box"]["instance_type"] == "g6.xlarge"  # created from gpu_name=L4


async def test_failing_job_is_error_with_program_error(brev_env: dict[str, str]) -> None:
    command = FAILING_COMMAND
    async with client(brev_env) as c:
        sub = await submit(c, command)
        await assert_program_error(c, sub["job_id"])


async def test_oom_killed_container_is_host_oom(brev_env: dict[str, str]) -> None:
    async with client(brev_env) as c:
        sub = await submit(c, "echo allocating; sleep 30", image="fake/oom:latest")
        done = await wait_done(c, sub["job_id"])
        assert done["status"] == "Error" and done["exit_code"] == 137 and done["raw_state"] == "OOMKilled"
        fa = await call(c, "failure_analysis", job_id=sub["job_id"])
        assert fa["category"] == "host_oom" and fa["confidence"] == "high"
        assert any("OOMKilled" in e["text"] for e in fa["evidence"])


async def test_image_pull_failure_is_image_pull(brev_env: dict[str, str]) -> None:
    async with client(brev_env) as c:
        sub = await submit(c, "echo never", image="nonexistent/tao:1.0")
        done = await wait_done(c, sub["job_id"])
        assert done["status"] == "Error" and done["raw_state"] == "ErrImagePull"
        fa = await call(c, "failure_analysis", job_id=sub["job_id"])
        assert fa["category"] == "image_pull" and fa["err_class"] == "ERR_CONFIG"
        assert any("pull access denied" in e["text"] for e in fa["evidence"])


async def test_stuck_pull_is_pending_with_reason_then_canceled(brev_env: dict[str, str], fake: FakeBrev) -> None:
    async with client(brev_env) as c:
        sub = await submit(c, "echo never", image="fake/slowpull:1")
        st = await wait_status(c, sub["job_id"], lambda s: s["pending_reason"])
        assert st["status"] == "Pending" and st["pending_reason"] == "Pulling image" and st["raw_state"] == "PULLING"
        wait = await call(c, "wait_for_job", job_id=sub["job_id"], timeout_s=3)
        assert wait["done"] is False and "Pulling image" in json.dumps(wait) and wait["next"].startswith("wait_for")
        fa = await call(c, "failure_analysis", job_id=sub["job_id"])
        assert fa["category"] == "starting" and "Pulling image" in fa["summary"] + json.dumps(fa["evidence"])
        canceled = await call(c, "cancel_job", job_id=sub["job_id"])
        assert canceled["status"] == "Canceled"
        again = await call(c, "cancel_job", job_id=sub["job_id"])
        assert again["status"] == "Canceled"


async def test_cancel_running_job(brev_env: dict[str, str], fake: FakeBrev) -> None:
    async with client(brev_env) as c:
        sub = await submit(c, "echo started; sleep 600")
        running = await wait_done(c, sub["job_id"], until="running")
        assert running["status"] == "Running"
        canceled = await call(c, "cancel_job", job_id=sub["job_id"])
        assert canceled["status"] == "Canceled", canceled
        container = fake.container("gpu-box", f"tao-{sub['job_id']}")
        assert container["State"]["Running"] is False
        logs = await call(c, "job_logs", job_id=sub["job_id"])
        assert "started" in logs["lines"]


async def test_time_limit_is_timeout(brev_env: dict[str, str], fake: FakeBrev) -> None:
    from tao_mcp.drivers.base import LaunchRequest
    from tao_mcp.drivers.brev import remote

    # One minute is the smallest limit submit_job takes: check the watchdog the wrapper gets, and drive the
    # TIMEOUT path by touching the flag the watchdog sets (the fake's docker stop does the rest).
    req = LaunchRequest("j1", "tao-j1", "sleep 5", IMAGE, 1, 1, {}, {}, 1, {})
    script = remote.run_script(req, "/r", None)
    assert 'sleep 60 & S=$!; wait $S || exit 0; touch "$J/timed_out"; docker stop -t 30 tao-j1' in script
    async with client(brev_env) as c:
        sub = await submit(c, "echo start; sleep 600", time_limit=5)
        await wait_done(c, sub["job_id"], until="running")
        jdir = fake.job_dir("gpu-box", sub["job_id"])
        (jdir / "timed_out").touch()
        pid = fake.container("gpu-box", f"tao-{sub['job_id']}")["pid"]
        import os
        import signal

        os.killpg(pid, signal.SIGTERM)
        done = await wait_done(c, sub["job_id"])
        assert done["status"] == "Error" and done["raw_state"] == "TIMEOUT"
        fa = await call(c, "failure_analysis", job_id=sub["job_id"])
        assert fa["category"] == "timeout"


async def test_idempotent_submit_launches_once(brev_env: dict[str, str], fake: FakeBrev) -> None:
    async with client(brev_env) as c:
        first = await submit(c, "echo once", idempotency_key="k-brev-1")
        second = await submit(c, "echo once", idempotency_key="k-brev-1")
        assert second["reused"] is True and second["job_id"] == first["job_id"]
        await wait_done(c, first["job_id"])
        jobs = list((fake.root / "instances" / "gpu-box" / "home" / ".tao-mcp" / "jobs").iterdir())
        assert [p.name for p in jobs] == [first["job_id"]]
        launches = [x for x in fake.calls("exec") if "__TAO_LAUNCH" in x["argv"][-1]]
        assert len(launches) == 1


async def test_reuse_named_instance_and_bad_options(brev_env: dict[str, str], fake: FakeBrev) -> None:
    async with client(brev_env) as c:
        first = await submit(c, "echo a")
        await wait_done(c, first["job_id"])
        creates = len(fake.calls("create"))
        second = await call(
            c, "submit_job", platform="brev", command="echo b", image=IMAGE, options={"instance": "gpu-box"}
        )
        assert (await wait_done(c, second["job_id"]))["status"] == "Complete"
        assert len(fake.calls("create")) == creates == 1
        text = await error_text(c, "submit_job", platform="brev", command="echo c", image=IMAGE, options={})
        assert "E_BAD_INPUT:" in text and "instance" in text and "Fix:" in text
        text = await error_text(
            c, "submit_job", platform="brev", command="echo c", image=IMAGE, options={"instance": "nope"}
        )
        assert "E_BREV_NO_INSTANCE:" in text and "gpu-box" in text
        text = await error_text(c, "submit_job", platform="brev", command="echo c", image=IMAGE, options={"zone": 1})
        assert "E_BAD_INPUT:" in text and "zone" in text


async def test_instance_not_ready_in_time_is_a_coded_error(brev_env: dict[str, str], fake: FakeBrev) -> None:
    fake.configure(deploy_s=120)
    env = {**brev_env, "BREV_READY_TIMEOUT": "3"}
    async with client(env) as c:
        with anyio.fail_after(30):
            text = await error_text(
                c,
                "submit_job",
                platform="brev",
                command="echo x",
                image=IMAGE,
                options={"instance": "slow", "type": "g5.xlarge"},
            )
        assert "E_BREV_INSTANCE_NOT_READY:" in text and "slow" in text and "DEPLOYING" in text
        assert "list_instances" in text and "delete_instance" in text
    assert "slow" in fake.instances()  # never deleted implicitly
    assert not fake.calls("delete")


async def test_bad_credentials_name_the_token(brev_env: dict[str, str], fake: FakeBrev) -> None:
    async with client({**brev_env, "BREV_API_TOKEN": "wrong-token-123"}) as c:
        text = await error_text(
            c, "submit_job", platform="brev", command="echo x", image=IMAGE, options={"instance": "a"}
        )
        assert "E_BREV_AUTH:" in text and "BREV_API_TOKEN" in text and "wrong-token-123" not in text
    env = dict(brev_env)
    del env["BREV_API_TOKEN"]
    async with client(env) as c:
        text = await error_text(
            c, "submit_job", platform="brev", command="echo x", image=IMAGE, options={"instance": "a"}
        )
        assert "E_BREV_AUTH:" in text and "BREV_API_TOKEN" in text


def stdio_client_for(env: dict[str, str], errlog: Any) -> Client:
    params = StdioServerParameters(command=sys.executable, args=["-m", "tao_mcp"], env=env, cwd=str(REPO))
    return Client(stdio_client(params, errlog=errlog), mode="legacy")


async def test_restart_reattaches_over_stdio(brev_env: dict[str, str], fake: FakeBrev, tmp_path: Path) -> None:
    """A real stdio server (its stdin is the protocol pipe: a brev reading it would hang) restarted mid-job."""
    with anyio.fail_after(90):
        with open(tmp_path / "stderr1.log", "w") as err:
            async with stdio_client_for(brev_env, err) as c:
                sub = await submit(c, "sleep 4; echo survived-restart")
        with open(tmp_path / "stderr2.log", "w") as err:
            async with stdio_client_for(brev_env, err) as c:
                listed = await call(c, "list_jobs")
                assert sub["job_id"] in [j["job_id"] for j in listed["jobs"]]
                done = await wait_done(c, sub["job_id"])
                assert done["status"] == "Complete"
                logs = await call(c, "job_logs", job_id=sub["job_id"])
                assert "survived-restart" in logs["lines"]
    assert {c["stdin"] for c in fake.calls()} == {"chr"}


async def test_canary_secrets_never_leave_the_server(
    brev_env: dict[str, str], canaries: dict[str, str], fake: FakeBrev
) -> None:
    seen = Transcript()

    async with client(brev_env) as c:
        args = {
            "platform": "brev",
            "image": IMAGE,
            "command": "env | sort; echo NGC=$NGC_KEY",
            "secret_env": ["NGC_KEY", "HF_TOKEN", "SECRET_KEY"],
            "options": {"instance": "gpu-box", "gpu_name": "L4"},
        }
        preview = seen.keep(await c.call_tool("submit_job", {**args, "dry_run": True}))
        assert "NGC_KEY=<secret: value not shown>" in json.dumps(preview["preview"])
        sub = seen.keep(await c.call_tool("submit_job", args))
        done = await wait_done(c, sub["job_id"])
        assert done["status"] == "Complete"
        logs = seen.keep(await c.call_tool("job_logs", {"job_id": sub["job_id"], "tail": 500}))
        assert "NGC=[REDACTED]" in logs["lines"]  # the job really got it; the server masked it
        assert any(line.startswith("HF_TOKEN=") for line in logs["lines"])
        seen.keep(await c.call_tool("job_status", {"job_id": sub["job_id"]}))
        seen.keep(await c.call_tool("failure_analysis", {"job_id": sub["job_id"]}))
        seen.keep(await c.call_tool("list_jobs", {}))
        seen.keep(await c.call_tool("list_platforms", {"platform": "brev"}))
        seen.keep(await c.call_tool("job_logs", {"job_id": sub["job_id"], "grep": canaries["HF_TOKEN"]}))
    secrets = {**canaries, "BREV_API_TOKEN": brev_env["BREV_API_TOKEN"]}
    seen.assert_clean(secrets)
    db = sqlite3.connect(Path(brev_env["TAO_MCP_STATE_DIR"]) / "jobs.sqlite3")
    assert_no_canary(json.dumps(db.execute("SELECT * FROM jobs").fetchall()), secrets)
    jdir = fake.job_dir("gpu-box", sub["job_id"])
    for name in ("run.sh", "command.sh", "job.env"):
        assert_no_canary((jdir / name).read_text(), canaries)
    assert (jdir / "secrets.env").stat().st_mode & 0o077 == 0, "secrets.env must be private (0600)"
    assert canaries["NGC_KEY"] in (jdir / "secrets.env").read_text()
    assert_no_canary(json.dumps(fake.container("gpu-box", f"tao-{sub['job_id']}")["Args"]), canaries)
    assert_no_canary((fake.root / "calls.log").read_text(), {"token": brev_env["BREV_API_TOKEN"]})
