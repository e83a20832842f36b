"""The job policy, through MCP with dry runs (nothing reaches a backend): every refusal, and the allowed paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tao_mcp.drivers.docker_options import DockerOptions
from tao_mcp.errors import TaoError
from tao_mcp.service.policy import DEFAULT_FORWARDABLE, JobPolicy, is_control_plane
from tests.helpers import call, call_error, mcp_client, plan_files

pytestmark = pytest.mark.anyio

HOST_ACCESS = "TAO_MCP_ALLOW_HOST_ACCESS"
ROOTS = "TAO_MCP_DOCKER_MOUNT_ROOTS"


@pytest.fixture
def env(base_env: dict[str, str], canaries: dict[str, str]) -> dict[str, str]:
    # Docker dry runs never contact the engine; the address only has to be well formed.
    return {**base_env, **canaries, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}


def docker_job(**options: Any) -> dict[str, Any]:
    return {"platform": "docker", "image": "busybox", "command": "true", "dry_run": True, "options": options}


async def refused(env: dict[str, str], **args: Any) -> str:
    async with mcp_client(env) as c:
        text = await call_error(c, "submit_job", **args)
    assert text.startswith("E_POLICY: ") and " Fix: " in text, text
    return text


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"network": "host"}, "options.network='host'"),
        ({"network": "container:other"}, "options.network='container:other'"),
        ({"ipc": "host"}, "options.ipc='host'"),
        ({"pid": "host"}, "options.pid='host'"),
        ({"privileged": True}, "options.privileged=true"),
        ({"cap_add": ["sys_admin"]}, "options.cap_add=['SYS_ADMIN']"),
        ({"user": "0"}, "options.user='0' (uid 0)"),
        ({"user": "root:root"}, "options.user='root:root' (uid 0)"),
    ],
)
async def test_docker_host_access_is_refused_by_default(env: dict[str, str], options: dict, named: str) -> None:
    text = await refused(env, **docker_job(**options))
    assert named in text and f"{HOST_ACCESS}=1" in text


async def test_docker_host_access_is_allowed_with_the_switch(env: dict[str, str]) -> None:
    options = {"network": "host", "ipc": "host", "pid": "host", "privileged": True, "cap_add": ["SYS_PTRACE"]}
    async with mcp_client({**env, HOST_ACCESS: "1"}) as c:
        result = await call(c, "submit_job", **docker_job(**options, user="0"))
    launch = result["preview"]["launch"]
    for flag in ("--network host", "--ipc host", "--pid host", "--privileged", "--cap-add SYS_PTRACE", "--user 0"):
        assert flag in launch


async def test_docker_binds_only_under_the_mount_roots(env: dict[str, str], tmp_path: Path) -> None:
    text = await refused(env, **docker_job(mounts=["/etc:/cfg:ro"]))
    assert "options.mounts[0] '/etc'" in text and f"{ROOTS} (none set)" in text and "named volume" in text
    allowed = {**env, ROOTS: f"{tmp_path},/srv/data"}
    text = await refused(allowed, **docker_job(mounts=[f"{tmp_path}/x:/x", "/srv/database:/db"]))
    assert "options.mounts[1] '/srv/database'" in text and "mounts[0]" not in text
    async with mcp_client(allowed) as c:
        ok = await call(c, "submit_job", **docker_job(mounts=[f"{tmp_path}/x:/results", "/srv/data:/d:ro", "v:/v"]))
    assert f"-v {tmp_path}/x:/results" in ok["preview"]["launch"] and ok["results_location"]
    async with mcp_client(env) as c:  # a named volume needs no root
        ok = await call(c, "submit_job", **docker_job(mounts=["results:/results"]))
    assert "-v results:/results" in ok["preview"]["launch"]


@pytest.mark.parametrize("source", ["/var/run/docker.sock", "/run/docker.sock", "/var/run", "/run", "/", "/var"])
async def test_the_docker_socket_is_never_bound(env: dict[str, str], source: str) -> None:
    everything = {**env, HOST_ACCESS: "1", ROOTS: "/"}
    text = await refused(everything, **docker_job(mounts=[f"{source}:/mnt/x"]))
    assert "exposes the Docker engine socket" in text


async def test_secret_env_forwards_only_listed_names(env: dict[str, str]) -> None:
    env = {**env, "GITHUB_PAT": "ghp-canary-value-123", "LEPTON_AUTH_TOKEN": "lepton-canary-tok-123"}
    text = await refused(env, **docker_job(), secret_env=["NGC_KEY", "GITHUB_PAT"])
    assert "GITHUB_PAT is not in TAO_MCP_FORWARDABLE_SECRETS" in text and "ghp-canary" not in text
    text = await refused(env, **docker_job(), secret_env=["LEPTON_AUTH_TOKEN"])
    assert "control-plane" in text and "lepton-canary" not in text
    # listing a control-plane name does not make it forwardable; listing another name does
    listed = {**env, "TAO_MCP_FORWARDABLE_SECRETS": "GITHUB_PAT,LEPTON_AUTH_TOKEN,SSH_KEY_PATH"}
    for name in ("LEPTON_AUTH_TOKEN", "SSH_KEY_PATH"):
        assert "control-plane" in await refused(listed, **docker_job(), secret_env=[name])
    async with mcp_client(listed) as c:
        ok = await call(c, "submit_job", **docker_job(), secret_env=["GITHUB_PAT"])
    assert "-e GITHUB_PAT" in ok["preview"]["launch"]
    # the policy answers before presence: no oracle on which other variables the server has
    assert "E_POLICY" in await refused(env, **docker_job(), secret_env=["NOT_SET_ANYWHERE_123"])


async def test_default_forwardable_secrets_pass(env: dict[str, str]) -> None:
    async with mcp_client(env) as c:
        ok = await call(c, "submit_job", **docker_job(), secret_env=["NGC_KEY", "HF_TOKEN", "SECRET_KEY"])
    assert ok["dry_run"] is True


async def test_list_platforms_shows_the_policy_in_force(env: dict[str, str]) -> None:
    async with mcp_client(env) as c:
        default = (await call(c, "list_platforms", platform="docker"))["platform"]
    assert default["policy"]["host_access"].startswith("refused") and "none" in default["policy"]["docker_mount_roots"]
    assert default["policy"]["forwardable_secrets"] == ", ".join(DEFAULT_FORWARDABLE)
    assert default["options"]["mounts"] == DockerOptions.help()["mounts"]
    async with mcp_client({**env, HOST_ACCESS: "1", ROOTS: "/srv"}) as c:
        result = await c.call_tool("list_platforms", {"platform": "docker"})
    policy = result.structured_content["platform"]["policy"]
    assert policy["host_access"] == "allowed" and policy["docker_mount_roots"] == "/srv"
    assert "Job policy:" in result.content[0].text


def test_bad_policy_settings_are_coded() -> None:
    for settings in ({HOST_ACCESS: "maybe"}, {ROOTS: "relative/path"}):
        with pytest.raises(TaoError) as err:
            JobPolicy(settings)
        assert err.value.code == "E_BAD_SETTING" and next(iter(settings)) in str(err.value)


def test_control_plane_names() -> None:
    for name in ("LEPTON_AUTH_TOKEN", "BREV_API_TOKEN", "SSH_KEY_PATH", "KUBECONFIG", "DOCKER_CERT_PATH"):
        assert is_control_plane(name)
    for name in DEFAULT_FORWARDABLE:
        assert not is_control_plane(name)


def k8s_job(**options: Any) -> dict[str, Any]:
    return {"platform": "kubernetes", "image": "busybox", "command": "true", "dry_run": True, "options": options}


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"host_network": True}, "options.host_network=true"),
        ({"service_account": "cluster-admin-sa"}, "options.service_account='cluster-admin-sa'"),
        ({"volumes": [{"host_path": "/", "mount_path": "/host"}]}, "hostPath volume '/' at /host"),
        ({"mounts": ["/var/lib/kubelet:/k"]}, "hostPath volume '/var/lib/kubelet' at /k"),
        ({"volumes": [{"secret": "other-team-creds", "mount_path": "/s"}]}, "Secret volume 'other-team-creds' at /s"),
    ],
)
async def test_kubernetes_host_access_is_refused_by_default(env: dict[str, str], options: dict, named: str) -> None:
    text = await refused(env, **k8s_job(**options))
    assert named in text and f"{HOST_ACCESS}=1" in text


async def test_kubernetes_allowed_with_the_switch_and_plain_volumes_always(env: dict[str, str]) -> None:
    async with mcp_client(env) as c:  # PVCs, config maps and emptyDir need no switch
        plain = {"volumes": [{"pvc": "data", "mount_path": "/results"}, {"config_map": "cfg", "mount_path": "/c"}]}
        await call(c, "submit_job", **k8s_job(**plain, image_pull_secrets=["ngc-pull"]))
    options = {"host_network": True, "service_account": "sa", "mounts": ["/data:/data:ro"]}
    async with mcp_client({**env, HOST_ACCESS: "1"}) as c:
        job = (await plan_files(c, await call(c, "submit_job", **k8s_job(**options))))["job.yaml"]
    assert "hostNetwork: true" in job and "serviceAccountName: sa" in job and "path: /data" in job


async def test_options_errors_name_the_key(env: dict[str, str]) -> None:
    async with mcp_client(env) as c:
        text = await call_error(c, "submit_job", **k8s_job(tolerations=7))
        assert text.startswith("E_BAD_INPUT: options.tolerations: ") and "Fix: give options.tolerations as" in text
        text = await call_error(c, "submit_job", **docker_job(qos="high"))
        assert text.startswith("E_BAD_INPUT: options.qos: not a Docker option") and "errors.pydantic" not in text
