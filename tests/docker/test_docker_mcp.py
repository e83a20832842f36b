"""An agent drives real Docker containers end to end through MCP (dev engine: scripts/dev/docker up)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.docker.conftest import PrivateDockerd
from tests.helpers import (
    call,
    call_error,
    wait_done,
)
from tests.helpers import mcp_client as client
from tests.s3_round_trip import s3_round_trip, with_s3

pytestmark = [pytest.mark.anyio, pytest.mark.docker]


def job(env: dict[str, str], command: str, image_key: str = "TAO_MCP_TEST_IMAGE", **extra: Any) -> dict[str, Any]:
    return {"platform": "docker", "gpu_count": 0, "image": env[image_key], "command": command, **extra}


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


async def test_a_job_docker_can_never_run_is_refused_before_it_is_recorded(
    docker_env: dict[str, str], docker_client: Any
) -> None:
    """No image, or several nodes: refused by the dry run and by the launch alike, with no job record left behind
    and no container created."""
    before = {c.id for c in docker_client.containers.list(all=True)}
    async with client(docker_env) as c:
        for changes, refusal in (
            ({"image": None}, "E_BAD_INPUT: a Docker job needs an image"),
            ({"num_nodes": 2}, "E_NOT_SUPPORTED: Docker runs a job on one host; num_nodes=2"),
        ):
            args = {k: v for k, v in {**job(docker_env, "true"), **changes}.items() if v is not None}
            for dry_run in (True, False):
                text = await call_error(c, "submit_job", **args, dry_run=dry_run)
                assert text.startswith(refusal), text
        assert (await call(c, "list_jobs"))["jobs"] == []
    assert {c.id for c in docker_client.containers.list(all=True)} <= before


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
