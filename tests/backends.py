"""Fixtures for every platform's backend, shared by the per-platform tests and the scenario suite (tests/scenarios):
the dev services scripts/dev starts (Docker, Kubernetes; SLURM's is in conftest.py) and the fakes under fixtures/
(Lepton's workspace API, the brev CLI). tests/conftest.py imports them, so every test directory sees them.

A backend that should be up and is not fails the test; it never skips."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fixtures.lepton.fake_lepton import FakeLepton
from tests.helpers import REPO, dev_settings

# ---- SLURM (scripts/dev/slurm-cluster up; slurm_env is in conftest.py) ----


def sacct_names(name: str, deadline_s: float = 20) -> list[str]:
    """Accounting rows for a job name; accounting lags squeue, so poll until the job has reached it."""
    end = time.monotonic() + deadline_s
    while True:
        out = subprocess.run(
            ["sacct", "-n", "-P", "-X", "--allusers", "--name", name, "-S", "now-1days", "-o", "JobID,State"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        rows = [line for line in out.splitlines() if line.strip()]
        if rows or time.monotonic() > end:
            return rows
        time.sleep(0.5)


# ---- Docker (scripts/dev/docker up) ----

DOCKER_START = "scripts/dev/docker up"


def docker_sdk(host: str) -> Any:
    import docker

    return docker.DockerClient(base_url=host, timeout=30)


@pytest.fixture(scope="session")
def docker_settings() -> dict[str, str]:
    settings = dev_settings("docker", DOCKER_START)
    try:
        client = docker_sdk(settings["DOCKER_HOST"])
        client.ping()
        for name in (settings["TAO_MCP_TEST_IMAGE"], settings["TAO_MCP_TEST_PY_IMAGE"]):
            client.images.get(name)
    except Exception as exc:
        pytest.fail(
            f"the dev docker engine at {settings.get('DOCKER_HOST')} is not ready ({exc}): run `{DOCKER_START}`"
        )
    return settings


@pytest.fixture
def docker_env(base_env: dict[str, str], docker_settings: dict[str, str], canaries: dict[str, str]) -> dict[str, str]:
    return {**base_env, **docker_settings, **canaries}


@pytest.fixture(scope="session")
def docker_client(docker_settings: dict[str, str]) -> Iterator[Any]:
    client = docker_sdk(docker_settings["DOCKER_HOST"])
    yield client
    client.close()


@pytest.fixture
def docker_cleanup(docker_settings: dict[str, str]) -> Iterator[None]:
    """Jobs keep their containers (state, exit code, log); a test removes the ones it made when it ends."""
    client = docker_sdk(docker_settings["DOCKER_HOST"])
    before = {c["Id"] for c in client.api.containers(all=True, filters={"label": "tao-mcp.managed=true"})}
    yield
    try:
        for item in client.api.containers(all=True, filters={"label": "tao-mcp.managed=true"}):
            if item["Id"] not in before:
                client.api.remove_container(item["Id"], force=True)
    finally:
        client.close()


# ---- Kubernetes (scripts/dev/k8s up) ----

K8S_START = "scripts/dev/k8s up"


def kubectl(env: dict[str, str], *args: str) -> list[str]:
    return ["kubectl", f"--kubeconfig={env['KUBECONFIG']}", "--request-timeout=10s", *args]


def kubectl_json(env: dict[str, str], *args: str) -> dict[str, Any]:
    out = subprocess.run(kubectl(env, *args, "-o", "json"), capture_output=True, text=True, check=True).stdout
    return json.loads(out)


@pytest.fixture
def k8s_env(base_env: dict[str, str], canaries: dict[str, str]) -> dict[str, str]:
    env = {**base_env, **dev_settings("k8s", K8S_START), **canaries}
    probe = subprocess.run(kubectl(env, "get", "--raw", "/readyz"), capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.fail(f"the dev Kubernetes API server does not answer ({probe.stderr.strip()[:200]}): run `{K8S_START}`")
    return env


# ---- Lepton: the fake workspace API in-process on a free port ----

LEPTON_TOKEN = "lepton-test-token-0123456789"


@pytest.fixture
def fake_lepton() -> Iterator[FakeLepton]:
    fake = FakeLepton(token=LEPTON_TOKEN).start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def lepton_env(base_env: dict[str, str], canaries: dict[str, str], fake_lepton: FakeLepton) -> dict[str, str]:
    return {
        **base_env,
        **canaries,
        "LEPTON_WORKSPACE_URL": fake_lepton.url,
        "LEPTON_WORKSPACE_ID": fake_lepton.workspace_id,
        "LEPTON_AUTH_TOKEN": LEPTON_TOKEN,
        "LEPTON_HTTP_TIMEOUT_S": "2",
    }


# ---- Brev: the fake `brev` CLI (fixtures/brev) and its state directory ----

BREV_FAKE = REPO / "fixtures" / "brev"
BREV_TOKEN = "brev-tok-7f3a9c2e1d"  # what the fake accepts for `brev login --token`


class FakeBrev:
    """The fake's state directory: switches (config.json), recorded calls, instance sandboxes."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def configure(self, **switches: Any) -> None:
        path = self.root / "config.json"
        current = json.loads(path.read_text()) if path.exists() else {}
        current.update(switches)
        path.write_text(json.dumps(current))

    def calls(self, verb: str | None = None) -> list[dict[str, Any]]:
        path = self.root / "calls.log"
        rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        return [r for r in rows if verb is None or r["argv"][:1] == [verb]]

    def job_dir(self, instance: str, job_id: str) -> Path:
        return self.root / "instances" / instance / "home" / ".tao-mcp" / "jobs" / job_id

    def container(self, instance: str, name: str) -> dict[str, Any]:
        return json.loads((self.root / "instances" / instance / "docker" / "containers" / f"{name}.json").read_text())

    def kill_everything(self) -> None:
        """Teardown: end every wrapper and container process a test left on the fake's instances."""
        import contextlib
        import os
        import signal

        pidfiles = list(self.root.glob("instances/*/home/.tao-mcp/jobs/*/wrapper.pid"))
        pids = [int(p.read_text().strip() or 0) for p in pidfiles]
        for path in self.root.glob("instances/*/docker/containers/*.json"):
            pids.append(int(json.loads(path.read_text()).get("pid") or 0))
        for pid in pids:
            if pid > 0:
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)

    def instances(self) -> dict[str, Any]:
        path = self.root / "state.json"
        return json.loads(path.read_text())["instances"] if path.exists() else {}


@pytest.fixture
def fake_brev(tmp_path: Path) -> Iterator[FakeBrev]:
    root = tmp_path / "fake-brev"
    root.mkdir()
    kit = FakeBrev(root)
    kit.configure(valid_token=BREV_TOKEN, deploy_s=1.0, ssh_delay_s=0.5, pull_seconds=3600)
    yield kit
    kit.kill_everything()


@pytest.fixture
def brev_env(base_env: dict[str, str], canaries: dict[str, str], fake_brev: FakeBrev, tmp_path: Path) -> dict[str, str]:
    return {
        **base_env,
        **canaries,
        "PATH": f"{BREV_FAKE}:{base_env.get('PATH', '/usr/bin:/bin')}",
        "FAKE_BREV_STATE": str(fake_brev.root),
        "BREV_API_TOKEN": BREV_TOKEN,
        "BREV_RESULTS_DIR": str(tmp_path / "results"),
        "BREV_CLI_TIMEOUT": "20",
    }
