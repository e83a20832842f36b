"""Backend faults on the wire, through fixtures/faultproxy.py in front of sshd (SLURM), the Kubernetes API server,
the Lepton fake and the Ceph RGW (S3): connection refused, reset mid-response, a stall longer than the client's
timeout, a 5xx burst (HTTP backends). While a fault lasts the server keeps answering and never reports a false
terminal state (or, for storage, a false "does not exist"); when it ends the job reaches its true end state.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest
import yaml

from fixtures.faultproxy import FaultProxy
from fixtures.lepton.fake_lepton import FakeLepton
from tao_mcp.states import TERMINAL
from tests.faults.conftest import STALL_S, N, Tally
from tests.faults.harness import ServerLog, stdio_server
from tests.helpers import call, dev_settings, structured, wait_done, wait_status

pytestmark = [pytest.mark.anyio, pytest.mark.faults, pytest.mark.slow]

FAULT_S = 4.0  # how long a refuse / reset / 5xx fault lasts
ANSWER_S = 10.0  # a call that needs no backend (list_jobs) answers within this during any fault
# The clients' own read timeouts (the stall must outlast them to be a real stall): SLURM's ssh query timeout,
# the Kubernetes client's read timeout, the S3 client's read timeout; Lepton's is set below.
CLIENT_TIMEOUT_S = {"slurm": 60.0, "kubernetes": 30.0, "s3": 30.0, "lepton": 2.0}
LEPTON_TOKEN = "lepton-wire-token-0123456789"
# The submit-time readiness probe is not under test here: on a loaded machine a healthy API server through the
# proxy can take longer than the 3 s default to answer, which would refuse the submit before any fault.
PROBE = {"TAO_MCP_PROBE_TIMEOUT_S": "30"}


def stall_for(name: str) -> float:
    """TAO_FAULTS_STALL_S, but never shorter than the client's timeout plus a margin."""
    return max(STALL_S, CLIENT_TIMEOUT_S[name] + 5)


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)


class Wired:
    """A backend reached only through a fault proxy: the server settings point at the proxy."""

    def __init__(self, name: str, env: dict[str, str], proxy: FaultProxy, modes: list[str]) -> None:
        self.name, self.env, self.proxy, self.modes = name, env, proxy, modes


def slurm_through(proxy_dir: Path, base_env: dict[str, str]) -> Wired:
    settings = dev_settings("slurm", "scripts/dev/slurm-cluster up")
    proxy = FaultProxy((settings["SLURM_HOSTNAME"], int(settings.get("SLURM_SSH_PORT", "22")))).start()
    # the login node's key, also known under the proxy's port (paramiko looks hosts up as [host]:port)
    known = Path(settings["SLURM_SSH_KNOWN_HOSTS"]).read_text().splitlines()
    extra = [
        f"[127.0.0.1]:{proxy.port} {line.split(None, 1)[1]}"
        for line in known
        if line.strip() and not line.startswith("#")
    ]
    known_hosts = proxy_dir / "known_hosts"
    known_hosts.write_text("\n".join(known + extra) + "\n")
    env = {
        **base_env,
        **settings,
        "SLURM_HOSTNAME": "127.0.0.1",
        "SLURM_SSH_PORT": str(proxy.port),
        "SLURM_SSH_KNOWN_HOSTS": str(known_hosts),
    }
    return Wired("slurm", env | PROBE, proxy, ["refuse", "reset", "stall"])


def kubernetes_through(proxy_dir: Path, base_env: dict[str, str]) -> Wired:
    settings = dev_settings("k8s", "scripts/dev/k8s up")
    original = Path(settings["KUBECONFIG"])
    config = yaml.safe_load(original.read_text())
    for entry in config.get("clusters", []) + config.get("users", []):  # the copy lives elsewhere: absolute paths
        body = entry.get("cluster") or entry.get("user") or {}
        for name in ("certificate-authority", "client-certificate", "client-key", "tokenFile"):
            if body.get(name) and not Path(body[name]).is_absolute():
                body[name] = str(original.parent / body[name])
    cluster = config["clusters"][0]["cluster"]
    host, port = host_port(cluster["server"])
    proxy = FaultProxy((host, port)).start()
    # TLS passes through unchanged; the API server's certificate names 127.0.0.1, which the copy still uses
    cluster["server"] = f"https://127.0.0.1:{proxy.port}"
    kubeconfig = proxy_dir / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    return Wired(
        "kubernetes",
        {**base_env, **settings, "KUBECONFIG": str(kubeconfig), **PROBE},
        proxy,
        ["refuse", "reset", "stall"],
    )


def lepton_through(fake: FakeLepton, base_env: dict[str, str]) -> Wired:
    proxy = FaultProxy(host_port(fake.url)).start()
    env = {
        **base_env,
        "LEPTON_WORKSPACE_URL": f"http://127.0.0.1:{proxy.port}{urlsplit(fake.url).path}",
        "LEPTON_WORKSPACE_ID": fake.workspace_id,
        "LEPTON_AUTH_TOKEN": LEPTON_TOKEN,
        "LEPTON_HTTP_TIMEOUT_S": str(CLIENT_TIMEOUT_S["lepton"]),
    }
    return Wired("lepton", env | PROBE, proxy, ["refuse", "reset", "stall", "http5xx"])


@pytest.fixture
def wired(request: pytest.FixtureRequest, base_env: dict[str, str], tmp_path: Path) -> Iterator[Wired]:
    fake = None
    if request.param == "slurm":
        backend = slurm_through(tmp_path, base_env)
    elif request.param == "kubernetes":
        backend = kubernetes_through(tmp_path, base_env)
    else:
        fake = FakeLepton(token=LEPTON_TOKEN).start()
        backend = lepton_through(fake, base_env)
    try:
        yield backend
    finally:
        backend.proxy.stop()
        if fake is not None:
            fake.stop()


def job_args(backend: Wired, seconds: float) -> dict[str, Any]:
    args: dict[str, Any] = {"platform": backend.name, "gpu_count": 0, "command": f"sleep {seconds:.0f}; echo fault-ok"}
    if backend.name == "kubernetes":
        args |= {"image": backend.env["TAO_MCP_TEST_IMAGE"], "options": {"image_pull_policy": "IfNotPresent"}}
    if backend.name == "lepton":
        args |= {"image": "nvcr.io/nvidia/tao/tao-toolkit:5.5.0-pyt", "env": {"FAKE_DURATION_S": f"{seconds:.0f}"}}
    return args


async def ride_out(c: Any, backend: Wired, mode: str, job_id: str, tally: Tally) -> list[str]:
    """Hold one fault for its duration while calling the server; return what went wrong (empty = fine)."""
    problems: list[str] = []
    lasts = stall_for(backend.name) if mode == "stall" else FAULT_S
    backend.proxy.set_mode(mode)
    tally.injected += 1
    end = time.monotonic() + lasts
    try:
        while time.monotonic() < end:
            with anyio.fail_after(ANSWER_S):
                await call(c, "list_jobs")  # the server itself keeps answering
            # a status read may wait for a sweep stuck on the backend: bounded by the client timeout
            with anyio.fail_after(CLIENT_TIMEOUT_S[backend.name] * 2 + lasts + 30):
                status = structured(await c.call_tool("job_status", {"job_id": job_id}))
            if status["status"] in TERMINAL:
                tally.false_terminal += 1
                problems.append(f"{mode}: job_status said {status['status']} ({status['message']}) during the fault")
            await anyio.sleep(1)
    finally:
        backend.proxy.set_mode("pass")
    # recovery: a fresh reading from the backend once the fault is over
    recovered = await wait_status(
        c, job_id, lambda s: s["backend_reachable"], budget_s=CLIENT_TIMEOUT_S[backend.name] * 2 + 60
    )
    if recovered["status"] in TERMINAL:
        tally.false_terminal += 1
        problems.append(f"{mode}: after the fault the job was {recovered['status']}: {recovered['message']}")
    return problems


@pytest.mark.parametrize(
    "wired",
    [pytest.param("slurm", marks=pytest.mark.slurm), pytest.param("kubernetes", marks=pytest.mark.k8s), "lepton"],
    indirect=True,
)
async def test_wire_faults_never_end_a_running_job(
    wired: Wired, rng: random.Random, tally: Tally, tmp_path: Path
) -> None:
    modes = wired.modes * N
    rng.shuffle(modes)
    # the job outlives every fault (each plus its recovery), so any terminal state before the end is false
    runs_s = sum(stall_for(wired.name) if m == "stall" else FAULT_S for m in modes) + 30 * len(modes) + 30
    logs = ServerLog(tmp_path)
    problems: list[str] = []
    with open(logs.next(), "w") as errlog:
        try:
            async with stdio_server(wired.env, errlog) as c:
                job_id = (await call(c, "submit_job", **job_args(wired, runs_s)))["job_id"]
                await wait_status(c, job_id, lambda s: s["status"] == "Running", budget_s=180)
                for mode in modes:
                    problems += await ride_out(c, wired, mode, job_id, tally)
                await call(c, "cancel_job", job_id=job_id)  # the faults are over: no need to sit out the sleep
                done = await wait_done(c, job_id, budget_s=180)
        except BaseException:
            print(logs.tail())
            raise
    assert done["status"] == "Canceled", done
    assert not problems, "\n".join(problems)
    assert wired.proxy.affected, "no connection went through a fault: the proxy was not in the path"


@pytest.fixture
def s3_wired(base_env: dict[str, str]) -> Iterator[Wired]:
    settings = dev_settings("s3", "scripts/dev/s3 up")
    proxy = FaultProxy(host_port(settings["S3_ENDPOINT_URL"])).start()
    env = {**base_env, **settings, "S3_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}"}
    try:
        yield Wired("s3", env, proxy, ["refuse", "reset", "stall", "http5xx"])
    finally:
        proxy.stop()


async def test_wire_faults_on_s3_never_give_a_false_answer(
    s3_wired: Wired, rng: random.Random, tally: Tally, tmp_path: Path
) -> None:
    import boto3

    env = s3_wired.env
    bucket = env["S3_BUCKET_NAME"]
    prefix = f"faults/{uuid.uuid4().hex[:10]}"
    admin = boto3.client(  # straight to the RGW, not through the proxy
        "s3",
        endpoint_url=dev_settings("s3", "scripts/dev/s3 up")["S3_ENDPOINT_URL"],
        aws_access_key_id=env["ACCESS_KEY"],
        aws_secret_access_key=env["SECRET_KEY"],
        region_name="us-east-1",
    )
    admin.put_object(Bucket=bucket, Key=f"{prefix}/a.txt", Body=b"fault suite")
    modes = s3_wired.modes * N
    rng.shuffle(modes)
    problems: list[str] = []
    logs = ServerLog(tmp_path)
    with open(logs.next(), "w") as errlog:
        try:
            async with stdio_server(env, errlog) as c:
                baseline = await call(c, "list_path", uri=f"s3://{bucket}/{prefix}/")
                assert [e["name"] for e in baseline["entries"]] == ["a.txt"], baseline
                for mode in modes:
                    s3_wired.proxy.set_mode(mode)
                    tally.injected += 1
                    lasts = stall_for("s3") if mode == "stall" else FAULT_S
                    end = time.monotonic() + lasts
                    try:
                        while time.monotonic() < end:
                            with anyio.fail_after(CLIENT_TIMEOUT_S["s3"] * 3 + lasts + 30):
                                checked = await c.call_tool("check_path", {"uri": f"s3://{bucket}/{prefix}/a.txt"})
                            if not checked.is_error and not checked.structured_content["exists"]:
                                tally.false_terminal += 1
                                problems.append(f"{mode}: check_path said the object does not exist")
                            with anyio.fail_after(ANSWER_S):
                                await call(c, "list_jobs")
                            await anyio.sleep(1)
                    finally:
                        s3_wired.proxy.set_mode("pass")
                    after = await call(c, "list_path", uri=f"s3://{bucket}/{prefix}/")
                    if after["entries"] != baseline["entries"]:
                        problems.append(f"{mode}: after the fault list_path answered {after['entries']}")
        except BaseException:
            print(logs.tail())
            raise
        finally:
            admin.delete_object(Bucket=bucket, Key=f"{prefix}/a.txt")
    assert not problems, "\n".join(problems)
    assert s3_wired.proxy.affected, "no connection went through a fault: the proxy was not in the path"
