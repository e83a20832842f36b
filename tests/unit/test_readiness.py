"""The readiness service: probes run in parallel, are bounded, cached, and never load a driver for a platform
that is not configured or has none."""

from __future__ import annotations

from collections.abc import Mapping

import anyio
import pytest

from tao_mcp.errors import BackendUnreachable
from tao_mcp.service.metadata.platforms import find_platform, platforms
from tao_mcp.service.readiness import Readiness
from tao_mcp.service.registry import DriverRegistry

pytestmark = pytest.mark.anyio

SETTINGS = {
    "SLURM_USER": "u",
    "SLURM_HOSTNAME": "h",
    "SSH_KEY_PATH": "/k",
    "TAO_MCP_PROBE_TIMEOUT_S": "0.5",
}


class ProbeDriver:
    """Only what readiness uses: a probe whose behaviour each platform's test chooses."""

    in_flight = 0
    most_in_flight = 0

    def __init__(self, platform: str, behaviour: str) -> None:
        self.platform = platform
        self.behaviour = behaviour
        self.probes = 0
        self.prepared = False

    async def prepare(self) -> None:
        # Slow local set-up (a cold import) is outside the bound: "slow_prepare" takes longer than the bound.
        if self.behaviour == "slow_prepare":
            await anyio.sleep(1.5)
        self.prepared = True

    async def probe(self) -> None:
        assert self.prepared, "probe before prepare"
        self.probes += 1
        ProbeDriver.in_flight += 1
        ProbeDriver.most_in_flight = max(ProbeDriver.most_in_flight, ProbeDriver.in_flight)
        try:
            await anyio.sleep(0.1)
            if self.behaviour == "down":
                raise BackendUnreachable(self.platform, "connection refused")
            if self.behaviour == "hang":
                await anyio.sleep(3600)
        finally:
            ProbeDriver.in_flight -= 1


def registry(behaviours: Mapping[str, str]) -> tuple[DriverRegistry, dict[str, ProbeDriver]]:
    drivers = {name: ProbeDriver(name, b) for name, b in behaviours.items()}
    return DriverRegistry(SETTINGS, load=lambda platform, settings: drivers[platform]), drivers  # type: ignore[arg-type,return-value]


async def test_states_reasons_parallel_probes_and_cache() -> None:
    behaviours = {"slurm": "slow_prepare", "docker": "down", "kubernetes": "hang", "brev": "ok"}
    drivers, fakes = registry(behaviours)
    readiness = Readiness(SETTINGS, drivers)
    ProbeDriver.most_in_flight = 0
    readings = await readiness.check_all(platforms(SETTINGS))
    assert readings["slurm"].state == "ready"  # its 1.5 s set-up did not count against the 0.5 s bound
    assert readings["docker"].state == "unreachable" and readings["docker"].reason == "connection refused"
    assert readings["kubernetes"].state == "unreachable" and readings["kubernetes"].reason == "no answer within 0.5 s"
    assert readings["lepton"].state == "not_configured" and "LEPTON_AUTH_TOKEN" in readings["lepton"].missing
    assert ProbeDriver.most_in_flight >= 3, "the probes ran one after another"
    assert "lepton" not in fakes or fakes["lepton"].probes == 0
    again = await readiness.check(find_platform("slurm", SETTINGS))
    assert again is readings["slurm"] and fakes["slurm"].probes == 1  # cached
    await readiness.check(find_platform("docker", SETTINGS), recheck_unreachable=True)
    assert fakes["docker"].probes == 2  # a failure is probed again when asked (submit, one platform's detail)


async def test_a_platform_without_a_driver_is_no_driver() -> None:
    from tao_mcp.service.metadata.platforms import PlatformRecord

    drivers, _ = registry({})
    record = PlatformRecord("azureml", "Azure ML", (), "bank only", (), (), ())
    reading = await Readiness(SETTINGS, drivers).check(record)
    assert reading.state == "no_driver"
