"""A SLURM sweep of many jobs is split into rounds of at most IDS_PER_ROUND ids (each round one SSH exec whose
script is one `bash -c` argument: the kernel refuses a single argument over 128 KiB)."""

from __future__ import annotations

import re
import time

import anyio

from tao_mcp.drivers.base import JobRef
from tao_mcp.drivers.slurm import SlurmDriver
from tao_mcp.drivers.slurm.driver import IDS_PER_ROUND
from tao_mcp.drivers.slurm.parse import MARK


def test_ten_thousand_jobs_are_read_in_rounds_of_at_most_a_thousand_ids(tmp_path) -> None:  # type: ignore[no-untyped-def]
    driver = SlurmDriver(
        {"SLURM_HOSTNAME": "login", "SLURM_USER": "u", "SSH_KEY_PATH": "/k", "TAO_MCP_STATE_DIR": str(tmp_path)}
    )
    scripts: list[str] = []

    async def run(cmd: str, **_: object) -> tuple[int, str, str]:
        scripts.append(cmd)
        # squeue answers for no id (all purged), sacct prints nothing: an answer, not an outage
        return (
            0,
            f"{MARK}squeue\nslurm_load_jobs error: Invalid job id specified\n{MARK}rc=1\n{MARK}sacct\n{MARK}rc=0\n",
            "",
        )

    driver.ssh.run = run  # type: ignore[method-assign]
    refs = [JobRef(f"j{i}", f"tao-j{i}", str(7_000_000 + i), {}, time.time()) for i in range(10_000)]
    assert anyio.run(driver.observe, refs) == {}
    assert len(scripts) == 10
    asked: list[str] = []
    for script in scripts:
        squeue_ids = re.search(r"squeue .* -j ([0-9,]+)", script).group(1).split(",")  # type: ignore[union-attr]
        sacct_ids = re.search(r"sacct .* -j ([0-9,]+)", script).group(1).split(",")  # type: ignore[union-attr]
        assert squeue_ids == sacct_ids and len(squeue_ids) <= IDS_PER_ROUND
        assert len(script.encode()) < 128 * 1024
        asked += squeue_ids
    assert sorted(asked) == sorted(r.backend_id for r in refs)  # every job asked about exactly once


def test_a_requeue_job_preempted_or_on_a_failed_node_is_pending_while_slurm_holds_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    driver = SlurmDriver(
        {"SLURM_HOSTNAME": "login", "SLURM_USER": "u", "SSH_KEY_PATH": "/k", "TAO_MCP_STATE_DIR": str(tmp_path)}
    )
    squeue = "".join(
        f"{i}|{state}|None|1700000000|1700000100|debug|0:0|tao-j{i}\n"
        for i, state in ((101, "PREEMPTED"), (102, "NODE_FAIL"), (103, "PREEMPTED"), (104, "FAILED"))
    )
    sacct = "105|NODE_FAIL|0:0|None|1700000000|1700000100|debug|tao-j105\n"  # purged from slurmctld: final

    async def run(cmd: str, **_: object) -> tuple[int, str, str]:
        return 0, f"{MARK}squeue\n{squeue}{MARK}rc=0\n{MARK}sacct\n{sacct}{MARK}rc=0\n", ""

    driver.ssh.run = run  # type: ignore[method-assign]
    requeue = {"requeue": True}
    refs = [
        JobRef("a", "tao-j101", "101", requeue, time.time()),
        JobRef("b", "tao-j102", "102", requeue, time.time()),
        JobRef("c", "tao-j103", "103", {}, time.time()),  # no requeue: the preemption ends it
        JobRef("d", "tao-j104", "104", requeue, time.time()),  # a failure is a failure
        JobRef("e", "tao-j105", "105", requeue, time.time()),
    ]
    seen = {job: (obs.status.value, obs.message) for job, obs in anyio.run(driver.observe, refs).items()}
    assert seen["a"] == ("Pending", "PREEMPTED: requeued (requeue=true)")
    assert seen["b"] == ("Pending", "NODE_FAIL: requeued (requeue=true)")
    assert seen["c"][0] == seen["d"][0] == seen["e"][0] == "Error"
