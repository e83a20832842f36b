"""A write burst against a job store, for tests/faults/test_store_crash.py (run as a script, killed mid-burst).

Inserts jobs and moves each one through launched -> Running -> Complete as fast as it can; after each insert's
commit returns it prints `ack <job_id>` (the acknowledgement a crash must never lose).
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

from tao_mcp.drivers.base import LaunchRequest, Observation
from tao_mcp.service.store import JobRecord, JobStore


def main(path: str) -> None:
    store = JobStore(Path(path))
    print("ready", flush=True)
    n = 0
    while True:
        job_id = uuid.uuid4().hex[:12]
        request = LaunchRequest(job_id, f"tao-{job_id}", "echo burst", None, 0, 1, {}, {}, 5, {})
        store.insert(JobRecord.launching(request, platform="slurm", digest="d", command="echo", idempotency_key=job_id))
        print(f"ack {job_id}", flush=True)
        store.set_launch_state(job_id, "launched", str(n))
        store.apply(job_id, Observation("Running", "RUNNING", "padding " * 40))
        if n % 2:
            store.apply(job_id, Observation("Complete", "COMPLETED", exit_code=0))
        n += 1


if __name__ == "__main__":
    main(sys.argv[1])
