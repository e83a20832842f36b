"""Browsing the data jobs read and write: the storage backends (tao_mcp/storage) with what they need from the
server — its settings, and for lustre:// the read-only shell of the platform that mounts it."""

from __future__ import annotations

from collections.abc import Mapping

from tao_mcp import storage
from tao_mcp.drivers.base import HasShell
from tao_mcp.service.registry import DriverRegistry, unsupported
from tao_mcp.storage import LustreExec, PathCheck, PathListing

LUSTRE_PLATFORM = "slurm"  # lustre:// paths are read on the SLURM login node


class StorageService:
    def __init__(self, settings: Mapping[str, str], drivers: DriverRegistry) -> None:
        self.settings = settings
        self.drivers = drivers

    async def list_path(self, uri: str, limit: int, cursor: str | None) -> PathListing:
        lustre_exec, roots = await self._lustre_link(uri)
        return await storage.list_path(
            uri, limit=limit, cursor=cursor, settings=self.settings, lustre_exec=lustre_exec, lustre_roots=roots
        )

    async def check_path(self, uri: str) -> PathCheck:
        lustre_exec, roots = await self._lustre_link(uri)
        return await storage.check_path(uri, settings=self.settings, lustre_exec=lustre_exec, lustre_roots=roots)

    async def _lustre_link(self, uri: str) -> tuple[LustreExec | None, list[str] | None]:
        """The shell for a lustre:// URI and the folders it may browse (its platform's credentials are checked
        first); (None, None) for other schemes."""
        if not uri.startswith("lustre:"):
            return None, None
        driver = await self.drivers.get(LUSTRE_PLATFORM)
        if not isinstance(driver, HasShell):  # the SLURM driver always has one
            raise unsupported(LUSTRE_PLATFORM, "shell for lustre:// paths", "use s3:// or file:// paths")
        return driver.exec_readonly, await driver.browse_roots()
