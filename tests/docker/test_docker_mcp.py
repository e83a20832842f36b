"""An agent drives real Docker containers end to end through MCP (dev engine: scripts/dev/docker up)."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.docker.conftest import PrivateDockerd
from tests.helpers import (
    FAILING_COMMAND,
    Transcript,
    assert_no_canary,
    assert_program_error,
    assert_progress_increasing,
    call,
    call_error,
    wait_done,
    wait_with_progress,
)
from tests.helpers import mcp_client as client
from tests.s3_round_trip import s3_round_trip, with_s3

pytestmark = [pytest.mark.anyio, pytest.mark.docker]

MODES = ["legacy", "modern"]


def job(env: dict[str, str], command: str, image_key: str = "TAO_MCP_TEST_IMAGE", **extra: Any) -> dict[str, Any]:
    return {"platform": "docker", "gpu_count": 0, "image": env[image_key], "command": command, **extra}


@pytest.mark.parametrize("mode", MODES)
async def test_submit_wait_complete_logs(docker_env: dict[str, str], mode: str, docker_client: Any) -> None:
    async with client(docker_env, mode) as c:
        sub = await call(c, "submit_job", **job(docker_env, "echo hello-from-docker; sleep 3; echo done-$TAO_JOB_ID"))
        assert sub["status"] == "Pending" and len(sub["backend_id"]) == 64
        assert sub["backend_name"] == f"tao-{sub['job_id']}" and sub["next"].startswith("wait_for_job")
        done, seen = await wait_with_progress(c, sub["job_id"], budget_s=120, step_s=30)
        assert done["status"] == "Complete" and done["exit_code"] == 0, done
        assert_progress_increasing(seen)
        assert any(m and m.startswith(("PENDING", "RUNNING")) for _, m in seen), seen
        logs = await call(c, "job_logs", job_id=sub["job_id"])
        assert logs["lines"] == ["hello-from-docker", f"done-{sub['job_id']}"] and logs["truncated"] is False
        status = await call(c, "job_status", job_id=sub["job_id"])
        assert status["raw_state"] == "exited" and status["backend_reachable"] is True
        listed = await call(c, "list_jobs", platform="docker")
        assert sub["job_id"] in [j["job_id"] for j in listed["jobs"]]
    container = docker_client.containers.get(sub["backend_id"])
    assert container.labels["tao-mcp.job-id"] == sub["job_id"] and container.labels["tao-mcp.managed"] == "true"


async def test_nonzero_exit_is_error_with_code(docker_env: dict[str, str]) -> None:
    command = FAILING_COMMAND
    async with client(docker_env) as c:
        sub = await call(c, "submit_job", **job(docker_env, command, "TAO_MCP_TEST_PY_IMAGE"))
        await assert_program_error(c, sub["job_id"])


async def test_memory_limit_oom_is_host_oom(docker_env: dict[str, str]) -> None:
    command = "echo allocating; python3 -c 'x = bytearray(400 * 1024 * 1024); print(len(x))'"
    async with client(docker_env) as c:
        sub = await call(c, "submit_job", **job(docker_env, command, "TAO_MCP_TEST_PY_IMAGE", memory="48m"))
        done = await wait_done(c, sub["job_id"])
        assert done["status"] == "Error" and done["exit_code"] == 137
        fa = await call(c, "failure_analysis", job_id=sub["job_id"])
        assert fa["category"] == "host_oom" and fa["err_class"] == "ERR_RESOURCE", fa
        assert fa["confidence"] == "high"
        assert any("OOMKilled=true" in e["text"] for e in fa["evidence"]), fa["evidence"]


async def test_nonexistent_image_is_image_pull_naming_image_and_ngc_key(docker_env: dict[str, str]) -> None:
    image = f"nvcr.io/nvidia/tao/no-such-image-{uuid.uuid4().hex[:6]}:0.0"
    env = {k: v for k, v in docker_env.items() if k != "NGC_KEY"}
    async with client(env) as c:
        r = await c.call_tool("submit_job", {**job(env, "true"), "image": image})
        assert r.is_error
        text = r.content[0].text
        assert "E_BACKEND_REJECTED: docker refused" in text and f"failed to pull image {image}" in text
        fix = text.split("Fix:", 1)[1]
        assert image in fix and "NGC_KEY" in fix
        listed = await call(c, "list_jobs", platform="docker")
        job_id = listed["jobs"][0]["job_id"]
        status = await call(c, "job_status", job_id=job_id)
        assert status["status"] == "Error" and status["raw_state"] == "LAUNCH_REFUSED"
        fa = await call(c, "failure_analysis", job_id=job_id)
        assert fa["category"] == "image_pull", fa


async def test_gpu_request_is_a_coded_rejection(docker_env: dict[str, str]) -> None:
    async with client(docker_env) as c:
        r = await c.call_tool("submit_job", {**job(docker_env, "true"), "gpu_count": 1})
        assert r.is_error
        text = r.content[0].text
        assert "E_BACKEND_REJECTED: docker refused" in text and "GPUs" in text and "gpu_count=0" in text


async def test_cancel_running_job_confirmed_and_repeatable(docker_env: dict[str, str], docker_client: Any) -> None:
    async with client(docker_env) as c:
        sub = await call(c, "submit_job", **job(docker_env, "echo started; sleep 600"))
        running = await wait_done(c, sub["job_id"], until="running")
        assert running["status"] == "Running"
        first = await call(c, "cancel_job", job_id=sub["job_id"])
        assert first["status"] == "Canceled" and first["raw_state"].startswith("canceled"), first
        again = await call(c, "cancel_job", job_id=sub["job_id"])
        assert again["status"] == "Canceled"
    container = docker_client.containers.get(sub["backend_id"])
    assert container.status == "exited"


async def test_restart_finds_job_again(docker_env: dict[str, str]) -> None:
    async with client(docker_env) as c:
        sub = await call(c, "submit_job", **job(docker_env, "sleep 4; echo survived-restart"))
    async with client(docker_env, "modern") as c:  # a new server, same state directory
        listed = await call(c, "list_jobs")
        assert sub["job_id"] in [j["job_id"] for j in listed["jobs"]]
        done = await wait_done(c, sub["job_id"])
        assert done["status"] == "Complete"
        assert "survived-restart" in (await call(c, "job_logs", job_id=sub["job_id"]))["lines"]


async def test_idempotent_submit_launches_once(docker_env: dict[str, str], docker_client: Any) -> None:
    async with client(docker_env) as c:
        args = {**job(docker_env, "echo once"), "idempotency_key": f"key-{uuid.uuid4().hex}"}
        first = await call(c, "submit_job", **args)
        second = await call(c, "submit_job", **args)
        assert second["job_id"] == first["job_id"] and second["reused"] is True
        conflict = await c.call_tool("submit_job", {**args, "command": "echo other"})
        assert conflict.is_error and "E_IDEMPOTENCY_CONFLICT" in conflict.content[0].text
        await wait_done(c, first["job_id"])
    found = docker_client.containers.list(all=True, filters={"label": f"tao-mcp.job-id={first['job_id']}"})
    assert len(found) == 1


async def test_canary_secrets_never_leave_the_server(docker_env: dict[str, str], canaries: dict[str, str]) -> None:
    seen = Transcript()

    args = {
        **job(docker_env, 'echo "ngc=$NGC_KEY"; echo "hf-len=${#HF_TOKEN}"'),
        "secret_env": ["NGC_KEY", "HF_TOKEN"],
    }
    async with client(docker_env) as c:
        preview = seen.keep(await c.call_tool("submit_job", {**args, "dry_run": True}))
        assert "-e NGC_KEY" in preview["preview"]["launch"] and "-e HF_TOKEN" in preview["preview"]["launch"]
        sub = seen.keep(await c.call_tool("submit_job", args))
        seen.keep(await c.call_tool("wait_for_job", {"job_id": sub["job_id"], "timeout_s": 30}))
        done = await wait_done(c, sub["job_id"])
        assert done["status"] == "Complete"
        logs = seen.keep(await c.call_tool("job_logs", {"job_id": sub["job_id"]}))
        # the container really received the secrets; the server masked them on the way out
        assert logs["lines"][1] == f"hf-len={len(canaries['HF_TOKEN'])}"
        assert logs["lines"][0] != "ngc=" and logs["lines"][0].startswith("ngc=")
        seen.keep(await c.call_tool("job_status", {"job_id": sub["job_id"]}))
        seen.keep(await c.call_tool("failure_analysis", {"job_id": sub["job_id"]}))
        seen.keep(await c.call_tool("list_platforms", {"platform": "docker"}))
    seen.assert_clean(canaries)
    db = sqlite3.connect(Path(docker_env["TAO_MCP_STATE_DIR"]) / "jobs.sqlite3")
    assert_no_canary(json.dumps(db.execute("SELECT * FROM jobs").fetchall()), canaries)


async def test_s3_inputs_and_outputs_with_host_network(docker_env: dict[str, str]) -> None:
    # RGW listens on the host's 127.0.0.1: the container needs the host network, which the job policy allows
    # only with TAO_MCP_ALLOW_HOST_ACCESS=1.
    env = {**with_s3(docker_env), "TAO_MCP_ALLOW_HOST_ACCESS": "1"}
    image = env["TAO_MCP_TEST_PY_IMAGE"]
    async with client(env) as c:
        preview = await s3_round_trip(c, env, {"platform": "docker", "image": image, "options": {"network": "host"}})
    assert "--network host" in preview["preview"]["launch"]


async def test_results_on_a_host_bind_mount(docker_env: dict[str, str], tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    results.chmod(0o777)
    command = 'mkdir -p "$TAO_RESULTS_ROOT/$TAO_JOB_ID" && echo 42 > "$TAO_RESULTS_ROOT/$TAO_JOB_ID/metric.txt"'
    env = {**docker_env, "TAO_MCP_DOCKER_MOUNT_ROOTS": str(tmp_path)}
    async with client(env) as c:
        sub = await call(c, "submit_job", **job(env, command), options={"mounts": [f"{results}:/results"]})
        assert sub["results_location"] == f"file:///results/{sub['job_id']}"
        done = await wait_done(c, sub["job_id"])
        assert done["status"] == "Complete"
    assert (results / sub["job_id"] / "metric.txt").read_text() == "42\n"


async def test_daemon_outage_is_not_terminal_and_recovers(
    docker_env: dict[str, str], private_dockerd: PrivateDockerd
) -> None:
    env = {**docker_env, "DOCKER_HOST": private_dockerd.host}
    async with client(env) as c:
        sub = await call(c, "submit_job", **job(env, "echo before; sleep 12; echo after-outage"))
        await wait_done(c, sub["job_id"], until="running")
        private_dockerd.stop()  # live-restore: the container keeps running without its daemon
        outage_started = time.monotonic()
        wait = await call(c, "wait_for_job", job_id=sub["job_id"], timeout_s=3)
        assert wait["done"] is False and wait["status"] == "Running", wait
        assert wait["backend_reachable"] is False and "unreachable" in wait["message"]
        status = await call(c, "job_status", job_id=sub["job_id"])
        assert status["status"] == "Running" and "unreachable" in status["message"]
        assert "does not answer" in status["message"]
        logs = await c.call_tool("job_logs", {"job_id": sub["job_id"]})
        assert logs.is_error and "E_BACKEND_UNREACHABLE" in logs.content[0].text
        assert time.monotonic() - outage_started < 12, "the outage checks must finish while the job still runs"
        private_dockerd.start()
        done = await wait_done(c, sub["job_id"])
        assert done["status"] == "Complete" and done["backend_reachable"] is True, done
        assert (await call(c, "job_logs", job_id=sub["job_id"]))["lines"] == ["before", "after-outage"]


@pytest.mark.slow
async def test_wait_ends_when_the_backend_stays_unreachable(
    docker_env: dict[str, str], private_dockerd: PrivateDockerd
) -> None:
    """A daemon stopped mid-run for longer than TAO_MCP_UNREACHABLE_GRACE_S: wait_for_job ends (done, outcome
    backend_unreachable, tells the agent to stop polling), the job stays open, and a later reading resumes it."""
    env = {**docker_env, "DOCKER_HOST": private_dockerd.host, "TAO_MCP_UNREACHABLE_GRACE_S": "4"}
    async with client(env) as c:
        sub = await call(c, "submit_job", **job(env, "echo before; sleep 25; echo after-outage"))
        await wait_done(c, sub["job_id"], until="running")
        private_dockerd.stop()
        wait = await call(c, "wait_for_job", job_id=sub["job_id"], timeout_s=50)
        assert wait["done"] is True and wait["outcome"] == "backend_unreachable", wait
        assert wait["status"] == "Running" and wait["backend_reachable"] is False
        assert wait["since_last_reading_s"] >= 4 and wait["waited_s"] < 50
        assert "stop polling" in wait["next"] and "tell the user" in wait["next"]
        analysis = await call(c, "failure_analysis", job_id=sub["job_id"])
        assert analysis["category"] == "backend_unreachable" and "backend unreachable" in analysis["summary"]
        assert "queued" not in analysis["summary"]
        assert (await call(c, "list_jobs", status="Running"))["jobs"][0]["job_id"] == sub["job_id"]  # still open
        private_dockerd.start()
        done = await wait_done(c, sub["job_id"])
        assert done["status"] == "Complete" and done["outcome"] == "finished" and done["backend_reachable"] is True, (
            done
        )


async def test_list_platforms_reports_preflight_facts(docker_env: dict[str, str], tmp_path: Path) -> None:
    async with client(docker_env) as c:
        detail = (await call(c, "list_platforms", platform="docker"))["platform"]
        facts = detail["diagnostics"]
        assert facts["reachable"] is True and str(facts["server_version"]).startswith("20.10"), facts
        assert facts["nvidia_runtime"] is False and facts["gpus_visible"] is False
    assert detail["state"] == "ready" and detail["ready"] is True


async def test_absent_engine_is_unreachable_and_submit_fails_fast(docker_env: dict[str, str], tmp_path: Path) -> None:
    """Readiness means reachable: an absent socket is `unreachable` with the probe's reason, and submit_job is
    refused within the probe bound with nothing recorded (it once succeeded with status Unknown)."""
    down = {**docker_env, "DOCKER_HOST": f"unix://{tmp_path}/no-daemon.sock"}
    async with client(down) as c:
        listing = {p["name"]: p for p in (await call(c, "list_platforms"))["platforms"]}
        assert listing["docker"]["state"] == "unreachable" and listing["docker"]["ready"] is False
        assert "does not answer" in listing["docker"]["reason"]
        detail = (await call(c, "list_platforms", platform="docker"))["platform"]
        assert detail["state"] == "unreachable" and "no-daemon.sock" in detail["reason"]
        text = await call_error(c, "submit_job", **job(down, "true"))
        assert text.startswith("E_BACKEND_UNREACHABLE:") and "nothing was sent" in text, text
        assert (await call(c, "list_jobs"))["jobs"] == []


async def test_job_policy_refuses_host_takeover_before_the_engine(
    docker_env: dict[str, str], docker_client: Any
) -> None:
    """Real submits (no dry run): the refusals come before anything reaches the engine."""
    attempts = [
        ({"mounts": ["/etc:/host"]}, "TAO_MCP_DOCKER_MOUNT_ROOTS"),
        ({"mounts": ["/:/host"]}, "Docker engine socket"),
        ({"mounts": ["/var/run/docker.sock:/var/run/docker.sock"]}, "Docker engine socket"),
        ({"network": "host"}, "TAO_MCP_ALLOW_HOST_ACCESS=1"),
        ({"user": "0"}, "TAO_MCP_ALLOW_HOST_ACCESS=1"),
    ]
    async with client(docker_env) as c:
        for options, named in attempts:
            text = await call_error(c, "submit_job", **job(docker_env, "true"), options=options)
            assert text.startswith("E_POLICY: ") and named in text, text
        text = await call_error(c, "submit_job", **job(docker_env, "true"), secret_env=["DOCKER_HOST"])
        assert text.startswith("E_POLICY: ") and "control-plane" in text
        assert (await call(c, "list_jobs"))["jobs"] == []  # no record: the refusal came before the launch
