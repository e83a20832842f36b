"""A counting fake driver for 10 000+ open jobs: no backend, no per-job state (memory stays the caller's).

Every observed job answers Running; with `churn`, a share of them changes its message on each sweep, so a sweep
also writes. It counts the calls and the ids it was asked about, which is what the measures compare.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tao_mcp.drivers import logfile
from tao_mcp.drivers.base import Evidence, JobRef, LaunchRequest, LogChunk, LogMark, LogMode, Observation, Preview


class CountingFakeDriver:
    platform = "slurm"
    storage_scheme = "lustre"

    def __init__(self, churn: float = 0.0) -> None:
        self.churn = churn
        self.calls = 0
        self.ids = 0
        self.largest_call = 0
        self.generation = 0
        self.log_reads = 0

    def parse_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        return dict(options)

    async def results_root(self, options: Mapping[str, Any]) -> str | None:
        return None

    async def preview(self, req: LaunchRequest) -> Preview:
        return Preview()

    async def launch(self, req: LaunchRequest) -> str:
        raise NotImplementedError("benchmarks store their jobs directly")

    async def find(self, refs: list[JobRef]) -> dict[str, str]:
        return {}

    async def observe(self, refs: list[JobRef]) -> dict[str, Observation]:
        self.calls += 1
        self.ids += len(refs)
        self.largest_call = max(self.largest_call, len(refs))
        self.generation += 1
        changing = int(len(refs) * self.churn)
        return {
            ref.job_id: Observation(
                "Running", "RUNNING", f"step {self.generation}" if i < changing else "", started_at=1.0
            )
            for i, ref in enumerate(refs)
        }

    async def read_log(
        self, ref: JobRef, *, mode: LogMode, at: LogMark | None, limit: int, context: int, max_bytes: int
    ) -> LogChunk:
        self.log_reads += 1
        return logfile.window_of(["epoch 1/10"])

    async def cancel(self, ref: JobRef) -> None:
        pass

    async def failure_evidence(self, ref: JobRef) -> list[Evidence]:
        return []

    async def aclose(self) -> None:
        pass
