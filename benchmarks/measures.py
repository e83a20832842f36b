"""The measures of the scale table: each returns Rows; A and B are timed alternately in one run."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from benchmarks.fake_driver import CountingFakeDriver
from benchmarks.stores import BASE_TIME, fill
from tao_mcp import cursor as cursor_codec
from tao_mcp.service.jobs import JobService
from tao_mcp.service.poller import SWEEP_CHUNK, PlatformPoller
from tao_mcp.service.redaction import Redactor
from tao_mcp.service.registry import DriverRegistry
from tao_mcp.service.store import JobStore
from tao_mcp.states import JobState

REPO = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024


@dataclass
class Row:
    measure: str
    goal: str
    result: str
    ratio: float | None  # measured / goal bound (<= 1 passes) or B/A
    passed: bool


@dataclass(frozen=True)
class Sizes:
    stored: int  # the big history (100 000)
    open_jobs: int  # open jobs in a sweep (10 000)
    status_open: int  # open jobs beside the one job_status asks about (1 000)
    reps: int

    @classmethod
    def pick(cls, quick: bool) -> Sizes:
        return cls(5_000, 2_000, 200, 5) if quick else cls(100_000, 10_000, 1_000, 30)


def interleaved(a: Callable[[], Any], b: Callable[[], Any], reps: int) -> tuple[float, float]:
    """Median seconds of A and of B, timed alternately (drift and noise hit both alike)."""
    times_a: list[float] = []
    times_b: list[float] = []
    for _ in range(reps):
        for fn, times in ((a, times_a), (b, times_b)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(times_a), statistics.median(times_b)


async def ainterleaved(
    a: Callable[[], Awaitable[Any]], b: Callable[[], Awaitable[Any]], reps: int
) -> tuple[float, float]:
    times_a: list[float] = []
    times_b: list[float] = []
    for _ in range(reps):
        for fn, times in ((a, times_a), (b, times_b)):
            start = time.perf_counter()
            await fn()
            times.append(time.perf_counter() - start)
    return statistics.median(times_a), statistics.median(times_b)


def ratio_row(measure: str, a: float, b: float, goal: float, what: str) -> Row:
    ratio = b / a if a > 0 else math.inf
    result = f"{what}: {b * 1e3:.2f} ms vs {a * 1e3:.2f} ms"
    return Row(measure, f"<= {goal:g}x", result, ratio, ratio <= goal)


def service(store: JobStore, driver: CountingFakeDriver | None = None) -> JobService:
    fake = driver or CountingFakeDriver()
    settings = {"SLURM_USER": "bench", "SLURM_HOSTNAME": "fake", "SSH_KEY_PATH": "/nonexistent"}  # never used
    return JobService(settings, store, Redactor(), DriverRegistry(settings, load=lambda platform, settings: fake))


def cursor_at_depth(total: int, depth: float) -> str:
    """The list cursor after `depth` of a newest-first listing of a store made by `fill`."""
    index = total - 1 - int(total * depth)
    return cursor_codec.encode("jobs", BASE_TIME + index // 2, f"b{index:08d}")


# ---- list_jobs ------------------------------------------------------------------------------------------------


def list_jobs_service(sizes: Sizes, tmp: Path) -> list[Row]:
    small, big = 100, sizes.stored
    svc_a = service(fill(tmp / "small.sqlite3", small))
    svc_b = service(fill(tmp / "big.sqlite3", big))
    cases: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("list_jobs(status=Running)", {"status": JobState.RUNNING}, {}),
        ("list_jobs(platform=slurm)", {"platform": "slurm"}, {}),
        ("list_jobs(status=Running, platform=slurm)", {"status": JobState.RUNNING, "platform": "slurm"}, {}),
        (
            "list_jobs(cursor at 90% depth)",
            {"cursor": cursor_at_depth(small, 0.9)},
            {"cursor": cursor_at_depth(big, 0.9)},
        ),
    ]
    rows = []
    for name, args_a, args_b in cases:
        kwargs_a = {"status": None, "platform": None, "limit": 50, "cursor": None, **args_a}
        # Pages of the same length on both sides: the small store holds fewer matches than a 50-job page.
        kwargs_a["limit"] = page = len(svc_a.list(**kwargs_a).jobs)
        kwargs_b = {**kwargs_a, **args_b}
        assert page and len(svc_b.list(**kwargs_b).jobs) == page, name  # a benchmark of nothing is broken
        a, b = interleaved(lambda k=kwargs_a: svc_a.list(**k), lambda k=kwargs_b: svc_b.list(**k), sizes.reps * 4)
        rows.append(ratio_row(f"{name}, service", a, b, 1.5, f"{big:,} stored vs {small}, pages of {page}"))
    return rows


async def list_jobs_mcp(sizes: Sizes, tmp: Path) -> list[Row]:
    from mcp.client import Client

    from tao_mcp.server import build_server

    small, big = 100, sizes.stored
    page = 10  # every Running job of the small store: pages of the same length on both sides
    envs = []
    for name, total in (("mcp-small", small), ("mcp-big", big)):
        state = tmp / name
        state.mkdir()
        fill(state / "jobs.sqlite3", total, platforms=("slurm",)).close()
        # No SLURM settings: the pollers of the stored open jobs stop at missing credentials, touching nothing.
        envs.append({"TAO_MCP_STATE_DIR": str(state), "TAO_MCP_ENV_FILE": str(tmp / "none.env"), "HOME": str(tmp)})
    async with Client(build_server(envs[0]), mode="legacy") as a, Client(build_server(envs[1]), mode="legacy") as b:

        async def call(client: Any) -> None:
            result = await client.call_tool("list_jobs", {"status": "Running", "limit": page})
            assert not result.is_error and len(result.structured_content["jobs"]) == page, result

        t_a, t_b = await ainterleaved(lambda: call(a), lambda: call(b), sizes.reps * 2)
    return [ratio_row("list_jobs(status=Running), MCP", t_a, t_b, 1.5, f"{big:,} stored vs {small}, pages of {page}")]


# ---- job_status -----------------------------------------------------------------------------------------------


async def job_status(sizes: Sizes, tmp: Path) -> list[Row]:
    few, many = 1, sizes.status_open
    drivers = (CountingFakeDriver(), CountingFakeDriver())
    services = (
        service(fill(tmp / "status-1.sqlite3", few, open_share=1, platforms=("slurm",)), drivers[0]),
        service(fill(tmp / "status-n.sqlite3", many, open_share=1, platforms=("slurm",)), drivers[1]),
    )
    asked: list[int] = []
    async with anyio.create_task_group() as tg:
        for svc in services:
            await svc.start(tg)
            await svc.poller("slurm").refresh(max_age=0)

        def due(index: int) -> Callable[[], Awaitable[None]]:
            svc, driver = services[index], drivers[index]
            job_id = f"b{(few, many)[index] - 1:08d}"

            async def call() -> None:
                poller = svc.poller("slurm")
                poller.covered_at = 0.0  # a sweep is due: the last reading is older than the poll interval
                poller._read_at.clear()
                before = driver.ids
                status = await svc.status(job_id)
                assert status.status == JobState.RUNNING and status.backend_reachable, status
                asked.append(driver.ids - before)

            return call

        a, b = await ainterleaved(due(0), due(1), sizes.reps * 4)
        tg.cancel_scope.cancel()
    row = ratio_row("job_status, sweep due", a, b, 1.5, f"{many:,} open vs {few}")
    row.result += f"; backend ids read per call: median {statistics.median(asked):g}"
    return [row]


# ---- sweeps ---------------------------------------------------------------------------------------------------


async def loop_stall(sizes: Sizes, tmp: Path) -> list[Row]:
    """The longest the event loop went unserved while a sweep of every open job ran (10% of them changing)."""
    n = sizes.open_jobs
    store = fill(tmp / "stall.sqlite3", n, open_share=1, platforms=("slurm",))
    driver = CountingFakeDriver(churn=0.1)

    async def get_driver() -> CountingFakeDriver:
        return driver

    poller = PlatformPoller("slurm", store, get_driver)  # type: ignore[arg-type]
    walls: list[float] = []

    async def sweeps() -> None:
        for _ in range(3):
            start = time.perf_counter()
            assert await poller.sweep() and poller.last_error is None
            walls.append(time.perf_counter() - start)

    lags = await stalls(sweeps)
    worst, p99 = lags[-1], lags[int(len(lags) * 0.99)]
    # The same ticker with nothing else to do, as long: how much of the stall this machine adds by itself.
    baseline = (await stalls(lambda: anyio.sleep(sum(walls))))[-1]
    assert driver.largest_call <= SWEEP_CHUNK
    goal = 0.050
    result = (
        f"{n:,} open: worst stall {worst * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms (idle loop on this machine: worst "
        f"{baseline * 1e3:.1f} ms) during "
        f"sweeps of {statistics.median(walls) * 1e3:.0f} ms ({driver.calls // 3} driver calls each, "
        f"<= {driver.largest_call} ids)"
    )
    return [Row("event-loop stall during a sweep", "never > 50 ms", result, worst / goal, worst <= goal)]


async def stalls(work: Callable[[], Awaitable[Any]], step: float = 0.002) -> list[float]:
    """How long a task asking to wake every `step` seconds waited beyond it, tick by tick, while `work` ran."""
    lags: list[float] = []
    running = True

    async def ticker() -> None:
        while running:
            start = time.perf_counter()
            await anyio.sleep(step)
            lags.append(time.perf_counter() - start - step)

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await work()
        running = False
    return sorted(lags)


def rss(sizes: Sizes, tmp: Path) -> list[Row]:
    """Peak RSS growth of a sweep in a fresh process, at N and 4N open jobs (bounded by the chunk, not N)."""
    growth = {}
    for n in (sizes.open_jobs, 4 * sizes.open_jobs):
        path = tmp / f"rss-{n}.sqlite3"
        fill(path, n, open_share=1, platforms=("slurm",)).close()
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.rss_probe", str(path)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            check=True,
        )
        probe = json.loads(out.stdout)
        growth[n] = (probe["peak_growth_bytes"] / MIB, probe["settled_growth_bytes"] / MIB)
    worst = max(peak for peak, _ in growth.values())
    result = ", ".join(
        f"{n:,} open: +{peak:.1f} MiB peak, +{settled:.1f} settled" for n, (peak, settled) in growth.items()
    )
    return [Row("RSS of a sweep (per 10 000 open jobs)", "<= 5 MiB", result, worst / 5, worst <= 5)]


async def slurm_sweep(sizes: Sizes, tmp: Path) -> list[Row]:
    """A sweep of N open SLURM jobs against the dev cluster (ids that do not exist: the rounds are the point)."""
    from dotenv import dotenv_values

    from tao_mcp.drivers.slurm import SlurmDriver

    env = REPO / ".dev" / "slurm.env"
    if not env.is_file():
        raise RuntimeError(f"{env} is missing: run scripts/dev/slurm-cluster up")
    n = sizes.open_jobs
    store = fill(tmp / "slurm.sqlite3", n, open_share=1, platforms=("slurm",))
    with store._lock:
        store._db.execute("UPDATE jobs SET backend_id = CAST(90000000 + rowid AS TEXT), created_at = ?", (time.time(),))
    settings = {k: v for k, v in dotenv_values(env).items() if v}
    settings["TAO_MCP_STATE_DIR"] = str(tmp)
    driver = SlurmDriver(settings)
    rounds = 0
    run = driver.ssh.run

    async def counted(cmd: str, **kwargs: Any) -> tuple[int, str, str]:
        nonlocal rounds
        rounds += 1
        return await run(cmd, **kwargs)

    driver.ssh.run = counted  # type: ignore[method-assign]

    async def get_driver() -> SlurmDriver:
        return driver

    poller = PlatformPoller("slurm", store, get_driver)  # type: ignore[arg-type]
    try:
        start = time.perf_counter()
        await poller.sweep()
        wall = time.perf_counter() - start
    finally:
        await driver.aclose()
    bound = math.ceil(n / 1000)
    ok = poller.last_error is None and rounds <= bound
    result = f"{n:,} open: {rounds} SSH rounds in {wall:.1f} s" + (
        f"; error: {poller.last_error}" if poller.last_error else ""
    )
    return [Row("SLURM sweep", f"works, <= {bound} rounds", result, rounds / bound, ok)]
