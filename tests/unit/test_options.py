"""The options and settings models: one error shape for every platform, defaults from settings, stored form."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tao_mcp.drivers import MODELS, platform_models
from tao_mcp.drivers.brev.options import BrevSettings
from tao_mcp.drivers.docker_options import DockerOptions, DockerSettings
from tao_mcp.drivers.k8s.options import KubernetesOptions, KubernetesSettings
from tao_mcp.drivers.lepton.options import LeptonOptions, LeptonSettings
from tao_mcp.drivers.slurm.options import SlurmOptions, SlurmSettings
from tao_mcp.errors import TaoError

SLURM = {"SLURM_HOSTNAME": "login1", "SLURM_USER": "alice", "SSH_KEY_PATH": "/k"}
LEPTON = {"LEPTON_WORKSPACE_ID": "ws1", "LEPTON_AUTH_TOKEN": "tok-canary-123456"}


def error(fn: Callable[..., Any], *args: Any) -> TaoError:
    with pytest.raises(TaoError) as info:
        fn(*args)
    return info.value


@pytest.mark.parametrize("platform", sorted(MODELS))
def test_an_unknown_option_names_the_key_and_the_accepted_ones(platform: str) -> None:
    options, _ = platform_models(platform)
    err = error(options.parse, {"qos_level": 1, **({"instance": "box"} if platform == "brev" else {})})
    text = str(err)
    assert text.startswith(f"E_BAD_INPUT: options.qos_level: not a {options.label} option. Fix: use only ")
    assert all(name in err.fix for name in options.model_fields) and "pydantic" not in text


@pytest.mark.parametrize(
    ("model", "options", "where"),
    [
        (DockerOptions, {"memory": "lots"}, "options.memory: "),
        (DockerOptions, {"mounts": ["/a:/b", "/c:/b"]}, "options.mounts: two mounts have the same target"),
        (KubernetesOptions, {"tolerations": 7}, "options.tolerations: "),
        (KubernetesOptions, {"volumes": [{"mount_path": "/x"}]}, "options.volumes[0] needs exactly one of"),
        (SlurmOptions, {"cpus": "many"}, "options.cpus: "),
        (SlurmOptions, {"mounts": ["/a/../etc:/b"]}, "options.mounts: "),
        (LeptonOptions, {"mounts": ["a:b:c:d:e"]}, "options.mounts[0]: "),
        (LeptonOptions, {"shared_memory_size": -1}, "options.shared_memory_size: "),
    ],
)
def test_bad_values_name_the_option_and_the_fix(model: Any, options: dict, where: str) -> None:
    err = error(model.parse, options)
    assert err.code == "E_BAD_INPUT" and err.cause.startswith(where), err.cause
    assert f"list_platforms(platform='{model.platform}')" in err.fix


def test_defaults_come_from_the_settings_model() -> None:
    settings = SlurmSettings.from_env({**SLURM, "SLURM_PARTITION": "batch", "SLURM_CONTAINER_MOUNTS": "/l:/l"})
    parsed = SlurmOptions.parse({"mounts": "/d:/d:ro"}, settings)
    assert parsed["partition"] == "batch" and parsed["mounts"] == ["/l:/l", "/d:/d:ro"]
    assert DockerOptions.parse({}, DockerSettings.from_env({"DOCKER_PULL_POLICY": "never"}))["pull"] == "never"
    assert (
        KubernetesOptions.parse({}, KubernetesSettings.from_env({"TAO_K8S_NAMESPACE": "team"}))["namespace"] == "team"
    )
    lepton = LeptonSettings.from_env({**LEPTON, "LEPTON_NODE_GROUP": "g1"})
    assert LeptonOptions.parse({}, lepton)["node_group"] == "g1"
    assert "mounts" not in KubernetesOptions.parse({"mounts": ["pvc:c:/results"]}, KubernetesSettings())


@pytest.mark.parametrize(
    ("model", "env", "variable"),
    [
        (DockerSettings, {"DOCKER_PULL_POLICY": "sometimes"}, "DOCKER_PULL_POLICY"),
        (KubernetesSettings, {"TAO_K8S_NAMESPACE": "Not_A_Namespace"}, "TAO_K8S_NAMESPACE"),
        (SlurmSettings, {**SLURM, "SLURM_SSH_PORT": "ssh"}, "SLURM_SSH_PORT"),
        (SlurmSettings, {**SLURM, "SLURM_CONTAINER_MOUNTS": "/a"}, "SLURM_CONTAINER_MOUNTS"),
        (LeptonSettings, {**LEPTON, "LEPTON_WORKSPACE_URL": "ftp://x"}, "LEPTON_WORKSPACE_URL"),
        (BrevSettings, {"BREV_READY_TIMEOUT": "0"}, "BREV_READY_TIMEOUT"),
    ],
)
def test_bad_settings_name_the_variable(model: Any, env: dict, variable: str) -> None:
    err = error(model.from_env, env)
    assert err.code == "E_BAD_SETTING" and err.cause.startswith(f"{variable}: ") and variable in err.fix


def test_missing_required_settings_are_missing_credentials() -> None:
    assert error(SlurmSettings.from_env, {"SLURM_USER": "a"}).code == "E_MISSING_CREDENTIALS"
    err = error(LeptonSettings.from_env, {"LEPTON_WORKSPACE_ID": "ws"})
    assert err.code == "E_MISSING_CREDENTIALS" and "LEPTON_AUTH_TOKEN" in err.cause


def test_secret_settings_stay_secret() -> None:
    settings = LeptonSettings.from_env(LEPTON)
    assert "tok-canary" not in repr(settings) and "tok-canary" not in str(settings.model_dump())
    brev = BrevSettings.from_env({"BREV_API_TOKEN": "brev-canary-123456", "PATH": "/bin", "HF_TOKEN": "x" * 8})
    assert brev.token() == "brev-canary-123456" and "brev-canary" not in repr(brev)
    assert brev.child_environment == {"PATH": "/bin"}  # the brev CLI never sees secrets
