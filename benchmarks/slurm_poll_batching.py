"""How much the batched SLURM sweep saves: one squeue+sacct round for N jobs vs one round per job.

Needs the dev cluster (scripts/dev/slurm-cluster up). Submits N held jobs, times both ways, cancels them,
prints the ratio. Usage (from the repository root): python -m benchmarks.slurm_poll_batching [N]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import anyio
from dotenv import dotenv_values

from tao_mcp.drivers.base import JobRef
from tao_mcp.drivers.slurm import SlurmDriver
from tests.helpers import launch_request

REPO = Path(__file__).resolve().parents[1]


async def main(n: int) -> None:
    settings = {k: v for k, v in dotenv_values(REPO / ".dev" / "slurm.env").items() if v}
    driver = SlurmDriver(settings)
    options = driver.parse_options({"hold": True})
    refs = []
    for _ in range(n):
        request = launch_request(command="true", options=options)
        backend_id = await driver.launch(request)
        refs.append(JobRef(request.job_id, request.backend_name, backend_id, options, time.time()))
    try:
        await driver.observe(refs)  # warm the SSH connection
        start = time.perf_counter()
        batched = await driver.observe(refs)
        t_batched = time.perf_counter() - start
        start = time.perf_counter()
        for ref in refs:
            await driver.observe([ref])
        t_single = time.perf_counter() - start
    finally:
        for ref in refs:
            await driver.cancel(ref)
        await driver.aclose()
    assert len(batched) == n
    print(
        f"jobs={n} batched_sweep_s={t_batched:.3f} per_job_sweeps_s={t_single:.3f} "
        f"ratio={t_single / t_batched:.1f}x ssh_rounds=1 vs {n}"
    )


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 20)
