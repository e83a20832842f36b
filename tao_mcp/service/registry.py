"""The drivers of one server process: one per platform, loaded on first use and kept until shutdown.

The services (jobs, extras, storage) share one registry, so a platform's connection (SSH link, API client) is
opened once. A platform's driver is loaded only after its credentials are present. An optional capability (a
`Has...` protocol of drivers/base.py) is asked for with isinstance; `unsupported` is the error when it is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import anyio

from tao_mcp.drivers import load_driver
from tao_mcp.drivers.base import Driver
from tao_mcp.errors import TaoError
from tao_mcp.service.metadata.platforms import find_platform, require_credentials

DriverLoader = Callable[[str, Mapping[str, str]], Driver]


class DriverRegistry:
    def __init__(self, settings: Mapping[str, str], load: DriverLoader = load_driver) -> None:
        self.settings = settings
        self._load = load  # tests hand in a loader of small fakes
        self._drivers: dict[str, Driver] = {}

    async def get(self, platform: str) -> Driver:
        """The platform's driver (canonical name); E_MISSING_CREDENTIALS before anything is loaded."""
        if platform not in self._drivers:
            require_credentials(find_platform(platform, self.settings), self.settings)
            self._drivers[platform] = self._load(platform, self.settings)
        return self._drivers[platform]

    async def aclose(self) -> None:
        for driver in self._drivers.values():
            with anyio.CancelScope(shield=True):
                await driver.aclose()


def unsupported(platform: str, what: str, fix: str) -> TaoError:
    """The answer when a platform's driver lacks a capability: `E_NOT_SUPPORTED: <platform> has no <what>`."""
    return TaoError("E_NOT_SUPPORTED", f"{platform} has no {what}", fix)
