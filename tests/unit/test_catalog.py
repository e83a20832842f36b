from __future__ import annotations

import pytest

from tao_mcp.errors import TaoError
from tao_mcp.service.metadata import platforms


def test_five_platforms_with_aliases() -> None:
    names = {p.name for p in platforms.platforms()}
    assert names == {"slurm", "lepton", "brev", "kubernetes", "docker"}
    assert platforms.find_platform("k8s").name == "kubernetes"
    assert platforms.find_platform("Local-Docker").name == "docker"


def test_unknown_platform_lists_choices() -> None:
    with pytest.raises(TaoError) as err:
        platforms.find_platform("mainframe")
    assert err.value.code == "E_UNKNOWN_PLATFORM" and "slurm" in str(err.value)


def test_presence_rule_groups_and_empty_values() -> None:
    slurm = platforms.find_platform("slurm")
    env = {"SLURM_USER": "u", "SLURM_HOSTNAME": "", "SSH_AUTH_SOCK": "/run/agent"}
    assert slurm.missing(env) == ["SLURM_HOSTNAME"]
    detail = slurm.detail(env)
    assert detail.credential_groups[0].satisfied and detail.credential_groups[0].present == ["SSH_AUTH_SOCK"]
    assert '"u"' not in detail.model_dump_json() and "/run/agent" not in detail.model_dump_json()
    with pytest.raises(TaoError) as err:
        platforms.require_credentials(slurm, env)
    assert err.value.code == "E_MISSING_CREDENTIALS" and "SLURM_HOSTNAME" in str(err.value)
