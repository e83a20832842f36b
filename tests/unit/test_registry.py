"""The driver registry, the optional capabilities (drivers/base.py protocols) and the storage service's use of them."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tao_mcp.drivers import DRIVERS
from tao_mcp.drivers.base import HasDiagnostics, HasInstances, HasReplicas, HasShell
from tao_mcp.errors import TaoError
from tao_mcp.service.registry import DriverRegistry
from tao_mcp.service.storage import StorageService

pytestmark = pytest.mark.anyio

CAPABILITIES = (HasReplicas, HasDiagnostics, HasInstances, HasShell)
SLURM = {"SLURM_USER": "u", "SLURM_HOSTNAME": "h", "SSH_KEY_PATH": "/k", "SLURM_PARTITION": "p"}


def test_each_driver_declares_exactly_its_capabilities() -> None:
    expected = {
        "slurm": {HasShell},
        "kubernetes": {HasReplicas},
        "lepton": {HasReplicas},
        "docker": {HasDiagnostics},
        "brev": {HasDiagnostics, HasInstances},
    }
    assert set(DRIVERS) == set(expected)
    for platform, (module, name) in DRIVERS.items():
        driver_class = getattr(importlib.import_module(module), name)
        assert {c for c in CAPABILITIES if issubclass(driver_class, c)} == expected[platform], platform


class ShellDriver:
    """Just enough of a driver for the registry: a shell that answers one stat header."""

    def __init__(self, settings: Mapping[str, str]) -> None:
        self.closed = False
        self.commands: list[str] = []

    async def exec_readonly(self, cmd: str) -> tuple[int, str, str]:
        self.commands.append(cmd)
        return 0, "NOTFOUND\n", ""

    async def browse_roots(self) -> list[str]:
        return ["/scratch"]

    async def aclose(self) -> None:
        self.closed = True


async def test_a_driver_is_loaded_once_after_its_credentials_and_closed_at_the_end() -> None:
    loaded: list[str] = []

    def load(platform: str, settings: Mapping[str, str]) -> Any:
        loaded.append(platform)
        return ShellDriver(settings)

    with pytest.raises(TaoError) as err:
        await DriverRegistry({}, load=load).get("slurm")
    assert err.value.code == "E_MISSING_CREDENTIALS" and loaded == []
    registry = DriverRegistry(SLURM, load=load)
    first = await registry.get("slurm")
    assert await registry.get("slurm") is first and loaded == ["slurm"]
    await registry.aclose()
    assert first.closed  # type: ignore[attr-defined]


async def test_storage_reads_lustre_through_the_slurm_shell_only(tmp_path: Path) -> None:
    shell = ShellDriver({})
    registry = DriverRegistry({**SLURM, "TAO_MCP_FILE_ROOTS": str(tmp_path)}, load=lambda platform, settings: shell)
    storage = StorageService(registry.settings, registry)
    assert not (await storage.check_path("lustre:///scratch/data")).exists
    assert (
        len(shell.commands) == 1 and "/scratch/data" in shell.commands[0] and "for r in /scratch;" in shell.commands[0]
    )
    (tmp_path / "a.txt").write_text("x")
    listing = await storage.list_path(f"file://{tmp_path}", limit=10, cursor=None)
    assert [e.name for e in listing.entries] == ["a.txt"] and len(shell.commands) == 1
    with pytest.raises(TaoError) as err:  # no SLURM credentials: lustre:// says which variables are missing
        await StorageService({}, DriverRegistry({})).check_path("lustre:///scratch")
    assert err.value.code == "E_MISSING_CREDENTIALS" and "SLURM" in str(err.value)
