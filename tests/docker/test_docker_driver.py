"""DockerDriver against the repo's real dockerd (scripts/dev/docker up). Every wait polls with a deadline."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from tao_mcp.drivers import load_driver
from tao_mcp.drivers.base import JobRef, LaunchRequest, Observation
from tao_mcp.drivers.docker import DockerDriver, observation_from_summary, split_image
from tao_mcp.errors import BackendRejected, BackendUnreachable, TaoError
from tao_mcp.service import logs
from tao_mcp.service.redaction import Redactor
from tao_mcp.states import TERMINAL
from tests.helpers import REPO
from tests.logfakes import read_page

pytestmark = [pytest.mark.anyio, pytest.mark.docker]


@pytest.fixture
async def driver(docker_settings: dict[str, str]) -> AsyncIterator[DockerDriver]:
    d = DockerDriver(docker_settings)
    yield d
    await d.aclose()


def request(
    d: DockerDriver,
    command: str,
    image: str,
    *,
    options: dict[str, Any] | None = None,
    secrets: dict[str, str] | None = None,
    gpu_count: int = 0,
) -> LaunchRequest:
    job_id = uuid.uuid4().hex[:12]
    return LaunchRequest(
        job_id=job_id,
        backend_name=f"tao-{job_id}",
        command=command,
        image=image,
        gpu_count=gpu_count,
        num_nodes=1,
        env={"TAO_JOB_ID": job_id, "PLAIN": "visible"},
        secret_env=secrets or {},
        time_limit_minutes=None,
        options=d.parse_options(options or {}),
    )


def ref_of(req: LaunchRequest, backend_id: str | None) -> JobRef:
    return JobRef(req.job_id, req.backend_name, backend_id, req.options, time.time())


async def until_terminal(d: DockerDriver, ref: JobRef, budget: float = 60) -> Observation:
    with anyio.fail_after(budget):
        while True:
            obs = (await d.observe([ref]))[ref.job_id]
            if obs.status in TERMINAL:
                return obs
            await anyio.sleep(0.2)


def test_import_is_light() -> None:
    code = (
        "import sys, tao_mcp.drivers.docker; "
        "print(','.join(m for m in ('docker', 'requests', 'kubernetes', 'boto3', 'paramiko') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == ""


def test_parse_options_and_results_root(docker_settings: dict[str, str]) -> None:
    d = DockerDriver(docker_settings)
    opts = d.parse_options(
        {"mounts": ["/tmp:/results", "/etc:/cfg:ro"], "memory": "16GB", "shm_size": "1G", "cpus": 2, "pull": "never"}
    )
    assert opts["mounts"] == ["/tmp:/results", "/etc:/cfg:ro"]
    assert (opts["memory"], opts["shm_size"], opts["cpus"], opts["pull"]) == ("16g", "1g", 2.0, "never")
    assert anyio.run(d.results_root, opts) == "/results"
    assert anyio.run(d.results_root, d.parse_options({"mounts": ["/tmp:/results:ro"]})) is None
    assert anyio.run(d.results_root, d.parse_options({})) is None
    for bad in ({"memory": "lots"}, {"mounts": ["relative"]}, {"pull": "sometimes"}, {"hold": True}, {"cpus": 0}):
        with pytest.raises(TaoError) as err:
            d.parse_options(bad)
        assert err.value.code == "E_BAD_INPUT" and err.value.fix
    assert split_image("nvcr.io/nvidia/tao/tao-toolkit:5.5.0-pyt") == ("nvcr.io/nvidia/tao/tao-toolkit", "5.5.0-pyt")
    assert split_image("localhost:5000/x") == ("localhost:5000/x", "latest")


def test_state_mapping_table() -> None:
    def row(state: str, status: str, name: str = "/tao-x") -> dict[str, Any]:
        return {"State": state, "Status": status, "Names": [name]}

    assert observation_from_summary(row("created", "Created")).status == "Pending"
    assert observation_from_summary(row("running", "Up 3 seconds")).status == "Running"
    assert observation_from_summary(row("restarting", "Restarting (1) 1 second ago")).status == "Running"
    assert observation_from_summary(row("paused", "Up 3 seconds (Paused)")).status == "Paused"
    done = observation_from_summary(row("exited", "Exited (0) 2 seconds ago"))
    assert (done.status, done.exit_code) == ("Complete", 0)
    oom = observation_from_summary(row("exited", "Exited (137) 2 seconds ago"))
    assert (oom.status, oom.exit_code) == ("Error", 137)
    assert observation_from_summary(row("dead", "Dead")).status == "Error"
    canceled = observation_from_summary(row("exited", "Exited (143) 1 second ago", "/tao-x.canceled"))
    assert (canceled.status, canceled.exit_code) == ("Canceled", 143)


async def test_launch_complete_logs_find(driver: DockerDriver, docker_settings: dict[str, str], docker_client: Any):
    req = request(
        driver,
        "echo shell=$BASH_VERSION; for i in $(seq 1 30); do echo line-$i; done; echo plain=$PLAIN",
        docker_settings["TAO_MCP_TEST_PY_IMAGE"],
    )
    backend_id = await driver.launch(req)
    ref = ref_of(req, backend_id)
    obs = await until_terminal(driver, ref)
    assert (obs.status, obs.exit_code, obs.raw_state) == ("Complete", 0, "exited")

    container = docker_client.containers.get(backend_id)
    assert container.name == req.backend_name
    assert container.labels == {"tao-mcp.job-id": req.job_id, "tao-mcp.managed": "true"}
    assert container.attrs["Config"]["Cmd"][:2] == ["/bin/bash", "-c"]

    tail = await read_page(driver, ref, limit=5)
    assert tail.lines == ["line-27", "line-28", "line-29", "line-30", "plain=visible"]
    assert tail.older and not tail.newer
    before = await read_page(driver, ref, "before", tail.begin, 3)
    assert before.lines == ["line-24", "line-25", "line-26"] and before.newer
    after = await read_page(driver, ref, "after", before.end, 2)
    assert after.lines == ["line-27", "line-28"] and tail.marks[1] < after.end <= tail.marks[2]
    grep = await logs.grep(driver, ref, Redactor(), "line-2", limit=2)
    assert grep.lines == ["line-28", "line-29"] and grep.marks == tail.marks[1:3] and grep.more
    assert await driver.find([ref_of(req, None)]) == {req.job_id: backend_id}


async def test_shell_falls_back_to_sh_without_bash(driver: DockerDriver, docker_settings: dict[str, str]) -> None:
    req = request(driver, "echo from-sh; exit 4", docker_settings["TAO_MCP_TEST_IMAGE"])
    ref = ref_of(req, await driver.launch(req))
    obs = await until_terminal(driver, ref)
    assert (obs.status, obs.exit_code) == ("Error", 4)
    assert (await read_page(driver, ref, limit=10)).lines == ["from-sh"]
    evidence = [e.text for e in await driver.failure_evidence(ref)]
    assert "exit code 4" in evidence


async def test_memory_limit_oom_is_evidence(driver: DockerDriver, docker_settings: dict[str, str]) -> None:
    req = request(
        driver,
        "python3 -c 'x = bytearray(400 * 1024 * 1024); print(len(x))'",
        docker_settings["TAO_MCP_TEST_PY_IMAGE"],
        options={"memory": "48m"},
    )
    ref = ref_of(req, await driver.launch(req))
    obs = await until_terminal(driver, ref)
    assert (obs.status, obs.exit_code) == ("Error", 137)
    texts = [e.text for e in await driver.failure_evidence(ref)]
    assert any("OOMKilled=true" in t and "48 MiB" in t for t in texts), texts


async def test_secrets_via_sdk_environment_not_in_preview(driver: DockerDriver, docker_settings: dict[str, str]):
    secret = f"canary-{uuid.uuid4().hex}"
    req = request(
        driver, 'echo "len=${#MY_TOKEN}"', docker_settings["TAO_MCP_TEST_IMAGE"], secrets={"MY_TOKEN": secret}
    )
    preview = await driver.preview(req)
    rendered = preview.submit + "".join(preview.files.values())
    assert secret not in rendered and "MY_TOKEN" in rendered and "-e MY_TOKEN " in preview.submit
    ref = ref_of(req, await driver.launch(req))
    assert (await until_terminal(driver, ref)).status == "Complete"
    assert (await read_page(driver, ref, limit=5)).lines == [f"len={len(secret)}"]


async def test_cancel_confirmed_and_finished_job_keeps_outcome(driver: DockerDriver, docker_settings: dict[str, str]):
    req = request(
        driver, "trap 'exit 143' TERM; echo started; while :; do sleep 1; done", docker_settings["TAO_MCP_TEST_IMAGE"]
    )
    ref = ref_of(req, await driver.launch(req))
    with anyio.fail_after(30):
        while (await driver.observe([ref]))[ref.job_id].status != "Running":
            await anyio.sleep(0.2)
    await driver.cancel(ref)
    obs = (await driver.observe([ref]))[ref.job_id]  # cancel returns once stop() has returned
    assert obs.status == "Canceled" and obs.raw_state.startswith("canceled"), obs
    await driver.cancel(ref)  # repeating is harmless
    assert (await driver.observe([ref]))[ref.job_id].status == "Canceled"

    done = request(driver, "true", docker_settings["TAO_MCP_TEST_IMAGE"])
    done_ref = ref_of(done, await driver.launch(done))
    assert (await until_terminal(driver, done_ref)).status == "Complete"
    await driver.cancel(done_ref)
    assert (await driver.observe([done_ref]))[done_ref.job_id].status == "Complete"


async def test_removed_container_is_not_success(driver: DockerDriver, docker_settings: dict[str, str], docker_client):
    req = request(driver, "sleep 300", docker_settings["TAO_MCP_TEST_IMAGE"])
    ref = ref_of(req, await driver.launch(req))
    docker_client.containers.get(ref.backend_id).remove(force=True)
    obs = (await driver.observe([ref]))[ref.job_id]
    assert obs.status == "Error" and obs.raw_state == "REMOVED" and "removed outside tao-mcp" in obs.message
    assert (await read_page(driver, ref, limit=5)).lines == []


async def test_relaunch_same_name_adopts_instead_of_duplicating(driver: DockerDriver, docker_settings, docker_client):
    req = request(driver, "echo once", docker_settings["TAO_MCP_TEST_IMAGE"])
    first = await driver.launch(req)
    second = await driver.launch(req)
    assert first == second
    assert len(docker_client.containers.list(all=True, filters={"label": f"tao-mcp.job-id={req.job_id}"})) == 1


async def test_relaunch_after_a_kill_between_create_and_start_runs_the_job_once(
    driver: DockerDriver, docker_settings: dict[str, str], docker_client: Any
) -> None:
    """The server died after creating the container (with /bin/bash, which this image lacks) and before starting
    it: the retried launch must not start that container (it cannot run) but replace it and run the job once."""
    req = request(driver, "echo ran-once", docker_settings["TAO_MCP_TEST_IMAGE"])
    docker_client.containers.create(
        req.image,
        ["/bin/bash", "-c", "echo never"],
        name=req.backend_name,
        labels={"tao-mcp.job-id": req.job_id, "tao-mcp.managed": "true"},
    )
    ref = ref_of(req, await driver.launch(req))
    obs = await until_terminal(driver, ref)
    assert (obs.status, obs.exit_code) == ("Complete", 0)
    assert (await read_page(driver, ref, limit=5)).lines == ["ran-once"]
    assert len(docker_client.containers.list(all=True, filters={"label": f"tao-mcp.job-id={req.job_id}"})) == 1


async def test_gpu_request_without_nvidia_toolkit_is_coded_rejection(
    driver: DockerDriver, docker_settings, docker_client
):
    req = request(driver, "true", docker_settings["TAO_MCP_TEST_IMAGE"], gpu_count=1)
    with pytest.raises(BackendRejected) as err:
        await driver.launch(req)
    text = str(err.value)
    assert text.startswith("E_BACKEND_REJECTED:") and "cannot give containers GPUs" in text
    assert "could not select device driver" in text and "gpu_count=0" in err.value.fix
    assert docker_client.containers.list(all=True, filters={"label": f"tao-mcp.job-id={req.job_id}"}) == []


async def test_missing_image_with_pull_never_names_the_image(driver: DockerDriver) -> None:
    req = request(driver, "true", "ci/does-not-exist:nope", options={"pull": "never"})
    with pytest.raises(BackendRejected) as err:
        await driver.launch(req)
    assert (
        "failed to pull image ci/does-not-exist:nope" in err.value.cause and "ci/does-not-exist:nope" in err.value.fix
    )


async def test_nvcr_pull_failure_fix_names_ngc_key(docker_settings: dict[str, str]) -> None:
    d = DockerDriver({"DOCKER_HOST": docker_settings["DOCKER_HOST"]})
    try:
        req = request(d, "true", "nvcr.io/nvidia/tao/does-not-exist:0.0")
        with pytest.raises(BackendRejected) as err:
            await d.launch(req)
        assert "nvcr.io/nvidia/tao/does-not-exist:0.0" in err.value.fix and "NGC_KEY is not set" in err.value.fix
    finally:
        await d.aclose()


async def test_unreachable_daemon_raises_and_diagnostics_do_not(tmp_path: Any) -> None:
    d = load_driver("docker", {"DOCKER_HOST": f"unix://{tmp_path}/no-daemon.sock"})
    ref = JobRef("abc", "tao-abc", "deadbeef", {}, time.time())
    for call in (
        lambda: d.observe([ref]),
        lambda: d.find([ref]),
        lambda: read_page(d, ref, limit=5),
    ):
        with pytest.raises(BackendUnreachable) as err:
            await call()
        assert "does not answer" in err.value.cause and "dockerd" in err.value.fix
    facts = await d.diagnostics()  # type: ignore[attr-defined]
    assert facts["reachable"] is False and "does not answer" in str(facts["error"])
    await d.aclose()


async def test_diagnostics_on_the_dev_daemon(driver: DockerDriver) -> None:
    facts = await driver.diagnostics()
    assert facts["reachable"] is True and facts["error"] is None
    assert str(facts["server_version"]).startswith("20.10")
    assert facts["nvidia_runtime"] is False and facts["gpus_visible"] is False
    assert "nooom" in str(facts["runtimes"])
