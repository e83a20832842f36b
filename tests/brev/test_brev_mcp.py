"""An agent drives Brev jobs through MCP against the protocol-faithful fake `brev` CLI (fixtures/brev)."""

from __future__ import annotations

import json

import anyio
import pytest

from tests.brev.brevkit import (
    IMAGE,
    FakeBrev,
    client,
    error_text,
    submit,
    wait_done,
)
from tests.helpers import (
    call,
    wait_status,
)

pytestmark = [pytest.mark.anyio]


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


async def test_a_job_brev_can_never_run_is_refused_before_it_is_recorded(
    brev_env: dict[str, str], fake: FakeBrev
) -> None:
    """No image, or several nodes: refused by the dry run and the launch alike, before any record or brev call."""
    async with client(brev_env) as c:
        for args, expected in (
            ({"command": "echo a"}, "E_BAD_INPUT: Brev jobs run in a container and no image was given"),
            ({"command": "echo a", "image": IMAGE, "num_nodes": 2}, "E_BAD_INPUT: a Brev job runs on one instance"),
        ):
            for dry_run in (True, False):
                text = await error_text(
                    c, "submit_job", platform="brev", options={"instance": "gpu-box"}, dry_run=dry_run, **args
                )
                assert text.startswith(expected) and "Fix:" in text, text
        assert (await call(c, "list_jobs"))["jobs"] == []
    assert fake.calls("exec") == [] and fake.calls("copy") == []
