"""Run in a fresh process: the peak RSS growth of sweeps over the open jobs of the store at argv[1] (JSON)."""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

import anyio

from benchmarks.fake_driver import CountingFakeDriver
from tao_mcp.service.poller import PlatformPoller
from tao_mcp.service.store import JobStore


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


async def main(path: str) -> None:
    store = JobStore(Path(path))
    driver = CountingFakeDriver(churn=0.1)

    async def get_driver() -> CountingFakeDriver:
        return driver

    poller = PlatformPoller("slurm", store, get_driver)  # type: ignore[arg-type]
    gc.collect()
    base = status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    for _ in range(3):
        await poller.sweep()
    gc.collect()
    peak, settled = status_kib("VmHWM"), status_kib("VmRSS")
    growth = {"peak_growth_bytes": max(0, peak - base) * 1024, "settled_growth_bytes": max(0, settled - base) * 1024}
    print(json.dumps({**growth, "driver_ids": driver.ids}))


if __name__ == "__main__":
    anyio.run(main, sys.argv[1])
