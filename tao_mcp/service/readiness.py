"""Readiness that means reachable: each platform is `ready`, `unreachable` (with the probe's reason),
`not_configured` (the missing variable names) or `no_driver`.

The probe is the driver's cheap read (drivers/base.py HasProbe), bounded (TAO_MCP_PROBE_TIMEOUT_S, default 3 s),
run for all platforms in parallel and cached for PROBE_TTL_S. submit_job asks the same readings before anything is
sent, so a backend that cannot be reached is refused fast, with no open job recorded.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import anyio

from tao_mcp.drivers import DRIVERS
from tao_mcp.drivers.base import HasProbe
from tao_mcp.errors import BackendUnreachable, TaoError
from tao_mcp.service.metadata.platforms import PlatformRecord
from tao_mcp.service.registry import DriverRegistry

PROBE_TTL_S = 30.0
DEFAULT_PROBE_TIMEOUT_S = 3.0

State = Literal["ready", "unreachable", "not_configured", "no_driver"]


@dataclass(frozen=True)
class Reading:
    state: State
    reason: str | None = None  # unreachable: the probe's answer; not_configured: what is missing
    missing: list[str] = field(default_factory=list)
    at: float = 0.0  # time.monotonic() of the probe (0: no probe was needed)
    error: TaoError | None = None  # a coded refusal that is not about reachability (a bad setting): submit says it


def probe_timeout(settings: Mapping[str, str]) -> float:
    raw = settings.get("TAO_MCP_PROBE_TIMEOUT_S") or ""
    try:
        value = float(raw) if raw else DEFAULT_PROBE_TIMEOUT_S
    except ValueError:
        raise TaoError(
            "E_BAD_SETTING", f"TAO_MCP_PROBE_TIMEOUT_S={raw!r} is not a number", "give seconds, e.g. 3"
        ) from None
    if value <= 0:
        raise TaoError("E_BAD_SETTING", f"TAO_MCP_PROBE_TIMEOUT_S={raw!r} is not positive", "give seconds, e.g. 3")
    return value


class Readiness:
    def __init__(self, settings: Mapping[str, str], drivers: DriverRegistry, ttl: float = PROBE_TTL_S) -> None:
        self.settings = settings
        self.drivers = drivers
        self.ttl = ttl
        self._cache: dict[str, Reading] = {}
        self._locks: dict[str, anyio.Lock] = {}

    async def check(self, record: PlatformRecord, *, recheck_unreachable: bool = False) -> Reading:
        """The platform's reading: from the cache when younger than the TTL, else a fresh probe (one at a time
        per platform: concurrent callers share it). recheck_unreachable: a cached failure is probed again."""
        if record.name not in DRIVERS:
            return Reading("no_driver", "no driver in this tao-mcp version")
        missing = record.missing(self.settings)
        if missing:
            return Reading("not_configured", "missing " + ", ".join(missing), missing)
        lock = self._locks.setdefault(record.name, anyio.Lock())
        async with lock:
            cached = self._cache.get(record.name)
            fresh = cached is not None and time.monotonic() - cached.at < self.ttl
            if fresh and cached and not (recheck_unreachable and cached.state != "ready"):
                return cached
            reading = await self._probe(record.name)
            self._cache[record.name] = reading
            return reading

    async def check_all(self, records: Iterable[PlatformRecord]) -> dict[str, Reading]:
        """Every platform's reading, probed in parallel (the listing takes one probe bound, not their sum)."""
        readings: dict[str, Reading] = {}

        async def one(record: PlatformRecord) -> None:
            readings[record.name] = await self.check(record)

        async with anyio.create_task_group() as tg:
            for record in records:
                tg.start_soon(one, record)
        return readings

    def forget(self, platform: str) -> None:
        """A later reading must probe again (e.g. a launch found the backend unreachable)."""
        self._cache.pop(platform, None)

    async def _probe(self, platform: str) -> Reading:
        bound = probe_timeout(self.settings)
        try:
            driver = await self.drivers.get(platform)
        except TaoError as exc:  # a setting the driver refuses (E_BAD_SETTING, ...): not configured
            return Reading("not_configured", str(exc), at=time.monotonic())
        if not isinstance(driver, HasProbe):
            return Reading("ready", at=time.monotonic())
        try:
            await driver.prepare()  # local set-up: not part of the backend's answer time
            with anyio.fail_after(bound):
                await driver.probe()
        except TimeoutError:
            return Reading("unreachable", f"no answer within {bound:g} s", at=time.monotonic())
        except BackendUnreachable as exc:
            return Reading(
                "unreachable", exc.cause.removeprefix(f"{platform} backend unreachable: "), at=time.monotonic()
            )
        except TaoError as exc:  # refused login, missing CLI: the backend cannot be used; the coded text says why
            return Reading("unreachable", str(exc), at=time.monotonic(), error=exc)
        return Reading("ready", at=time.monotonic())


def unreachable_error(platform: str, reading: Reading) -> TaoError:
    """submit_job's answer when the probe failed: nothing was sent and no job was recorded."""
    return TaoError(
        "E_BACKEND_UNREACHABLE",
        f"{platform} backend unreachable: {reading.reason}; nothing was sent and no job was recorded",
        f"start or fix the {platform} backend (or its settings) and submit again; "
        f"list_platforms(platform='{platform}') shows the same probe",
    )
