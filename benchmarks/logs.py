"""Log measures on the dev SLURM cluster: job_logs' tail and a bounded grep on a big log vs a small one.

The big log is made on the cluster in about a second (`yes | head -c`, then the same text block as the small log at
its end) and removed afterwards; --quick makes it 64 MiB instead of 1 GiB.
"""

from __future__ import annotations

import shlex
import time
import uuid
from pathlib import Path

from benchmarks.measures import MIB, REPO, Row, Sizes, ainterleaved, ratio_row
from tao_mcp.drivers.base import JobRef
from tao_mcp.service import logs
from tao_mcp.service.redaction import Redactor

FILLER = shlex.quote("step 1 loss 0.5 lr 0.001 filler line of a long training log")


async def slurm_logs(sizes: Sizes, tmp: Path) -> list[Row]:
    from dotenv import dotenv_values

    from tao_mcp.drivers.slurm import SlurmDriver, script

    env = REPO / ".dev" / "slurm.env"
    if not env.is_file():
        raise RuntimeError(f"{env} is missing: run scripts/dev/slurm-cluster up")
    settings = {k: v for k, v in dotenv_values(env).items() if v}
    driver = SlurmDriver(settings)
    big_size = 64 * MIB if sizes.reps < 10 else 1024 * MIB  # --quick keeps it small
    ids = {"small": f"bench{uuid.uuid4().hex[:7]}", "big": f"bench{uuid.uuid4().hex[:7]}"}
    base = await driver._base_dir()
    dirs = {k: script.job_dir(base, v) for k, v in ids.items()}
    text = "".join(f"epoch {i} loss 0.{i:04d} [tao-runner] step {i}\n" for i in range(20_000))  # ~0.9 MiB
    small_log, big_log = (shlex.quote(dirs[k] + "/job.log") for k in ("small", "big"))
    make = " && ".join(
        [
            *(f"mkdir -p {shlex.quote(d)}" for d in dirs.values()),
            f"yes {FILLER} | head -c {big_size - len(text)} > {big_log}",
            f"tee {small_log} >> {big_log}",  # the text block, from stdin, ends both logs
        ]
    )
    refs = {k: JobRef(v, f"tao-{v}", "1", {}, time.time()) for k, v in ids.items()}
    redactor = Redactor()
    try:
        rc, _, err = await driver.ssh.run(make, failover=True, timeout=120, stdin=text.encode())
        if rc != 0:
            raise RuntimeError(f"making the logs failed: {err[-300:]}")

        async def tail(which: str) -> None:
            window = await logs.read(driver, refs[which], redactor, limit=200)
            assert len(window.lines) == 200

        small, big = await ainterleaved(lambda: tail("small"), lambda: tail("big"), sizes.reps)
        label = f"{big_size // MIB} MiB vs 1 MiB"
        rows = [ratio_row("job_logs(tail=200) SLURM", small, big, 2.0, label)]
        window = (8 if sizes.reps < 10 else 64) * MIB  # TAO_MCP_GREP_WINDOW_MB's default in the full run
        start = time.perf_counter()
        found = await logs.grep(driver, refs["big"], redactor, "no such text", limit=10, window_bytes=window)
        wall = time.perf_counter() - start
        ok = found.scanned <= window and found.older
        result = f"{big_size // MIB} MiB log: searched {found.scanned / MIB:.1f} MiB in {wall:.1f} s"
        goal = f"<= {window // MIB} MiB searched"
        rows.append(Row("grep bounded (SLURM)", goal, result, found.scanned / window, ok))
        return rows
    finally:
        await driver.ssh.run(f"rm -rf {' '.join(shlex.quote(d) for d in dirs.values())}", failover=True, timeout=60)
        await driver.aclose()


async def waiters(sizes: Sizes, tmp: Path) -> list[Row]:
    """wait_for_job by 50 callers on one running job vs by 1 (counting driver): the backend reads must be the same."""
    import anyio

    from benchmarks.fake_driver import CountingFakeDriver
    from benchmarks.measures import service
    from benchmarks.stores import fill

    counts: dict[int, tuple[int, int]] = {}
    for n in (1, 50):
        store = fill(tmp / f"waiters{n}.sqlite3", 1, open_share=1, platforms=("slurm",))
        with store._lock:
            store._db.execute("UPDATE jobs SET backend_id = '1', created_at = ?", (time.time(),))
        driver = CountingFakeDriver()
        svc = service(store, driver)
        async with anyio.create_task_group() as tg:
            await svc.start(tg)
            job_id = store.open_refs("slurm", after=None, limit=1)[0].job_id
            before = (driver.calls, driver.log_reads)

            async def progress(*report: object) -> None:
                pass

            async with anyio.create_task_group() as waiting:
                for _ in range(n):
                    waiting.start_soon(svc.wait, job_id, 2.5, "terminal", progress)
            counts[n] = (driver.calls - before[0], driver.log_reads - before[1])
            tg.cancel_scope.cancel()
    (obs1, logs1), (obs50, logs50) = counts[1], counts[50]
    ok = logs50 <= logs1 and obs50 <= obs1 + 1
    result = f"backend reads in 2.5 s: 1 waiter {obs1} state + {logs1} log, 50 waiters {obs50} state + {logs50} log"
    return [
        Row("50 waiters on one job vs 1", "same backend reads", result, (obs50 + logs50) / max(obs1 + logs1, 1), ok)
    ]


async def docker_tail(sizes: Sizes, tmp: Path) -> list[Row]:
    """job_logs' tail on a container that printed millions of lines vs a few thousand (the dev dockerd)."""
    from dotenv import dotenv_values

    from tao_mcp.drivers.docker import DockerDriver

    env = REPO / ".dev" / "docker.env"
    if not env.is_file():
        raise RuntimeError(f"{env} is missing: run scripts/dev/docker up")
    settings = {k: v for k, v in dotenv_values(env).items() if v}
    import docker

    client = docker.DockerClient(base_url=settings["DOCKER_HOST"], timeout=120)
    lines = {"small": 5_000, "big": 300_000 if sizes.reps < 10 else 3_000_000}
    refs: dict[str, JobRef] = {}
    made = []
    try:
        for which, count in lines.items():
            job_id = f"bench{uuid.uuid4().hex[:7]}"
            labels = {"tao-mcp.job-id": job_id, "tao-mcp.managed": "true"}
            container = client.containers.run(
                settings["TAO_MCP_TEST_IMAGE"],
                ["seq", "1", str(count)],
                name=f"tao-{job_id}",
                labels=labels,
                detach=True,
            )
            made.append(container)
            container.wait(timeout=300)
            refs[which] = JobRef(job_id, f"tao-{job_id}", container.id, {}, time.time())
        driver = DockerDriver(settings)
        redactor = Redactor()

        async def tail(which: str) -> None:
            window = await logs.read(driver, refs[which], redactor, limit=200)
            assert window.lines[-1] == str(lines[which])

        small, big = await ainterleaved(lambda: tail("small"), lambda: tail("big"), sizes.reps)
        await driver.aclose()
        label = f"{lines['big']:,} lines vs {lines['small']:,}"
        return [ratio_row("job_logs(tail=200) Docker", small, big, 2.0, label)]
    finally:
        for container in made:
            container.remove(force=True)
        client.close()
