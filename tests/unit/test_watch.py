"""One reader per job: facts shared by every caller, and waiters that never ask for a platform sweep."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from tao_mcp.drivers import logfile
from tao_mcp.drivers.base import JobRef, LogChunk, LogMark, LogMode, Observation
from tao_mcp.service.jobs import JobService, SubmitParams
from tao_mcp.service.redaction import Redactor
from tao_mcp.service.registry import DriverRegistry
from tao_mcp.service.store import JobStore
from tao_mcp.service.watch import LAST_LINE, JobWatches
from tests.unit.test_poller import CountingDriver

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_concurrent_callers_share_one_read_and_a_fresh_value_answers() -> None:
    clock = Clock()
    watches = JobWatches(clock=clock)
    reads = 0

    async def read() -> str:
        nonlocal reads
        reads += 1
        await anyio.sleep(0.05)
        return f"line {reads}"

    got: list[str] = []

    async def ask() -> None:
        got.append(await watches.fact("j", LAST_LINE, 10.0, read))

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(ask)
    assert reads == 1 and got == ["line 1"] * 50 and watches.reads[LAST_LINE] == 1
    clock.now += 10.0
    assert await watches.fact("j", LAST_LINE, 10.0, read) == "line 1"  # still fresh
    clock.now += 0.5
    assert await watches.fact("j", LAST_LINE, 10.0, read) == "line 2"  # older than max_age: read again
    assert watches.peek("j", LAST_LINE).value == "line 2"  # type: ignore[union-attr]


async def test_a_failed_read_reaches_its_sharers_and_is_not_remembered() -> None:
    watches = JobWatches()
    calls = 0

    async def failing() -> str:
        nonlocal calls
        calls += 1
        await anyio.sleep(0.05)
        raise RuntimeError("backend down")

    errors: list[str] = []

    async def ask() -> None:
        try:
            await watches.fact("j", "x", 10.0, failing)
        except RuntimeError as exc:
            errors.append(str(exc))

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(ask)
    assert calls == 1 and errors == ["backend down"] * 5
    assert watches.peek("j", "x") is None


async def test_a_cancelled_reader_does_not_cancel_its_sharers() -> None:
    watches = JobWatches()
    started = anyio.Event()
    calls = 0

    async def slow() -> str:
        nonlocal calls
        calls += 1
        started.set()
        await anyio.sleep(0.2)
        return "value"

    got: list[str] = []
    owner = anyio.CancelScope()

    async def first() -> None:
        with owner:
            await watches.fact("j", "x", 10.0, slow)

    async def second() -> None:
        got.append(await watches.fact("j", "x", 10.0, slow))

    async with anyio.create_task_group() as tg:
        tg.start_soon(first)
        await started.wait()
        tg.start_soon(second)
        await anyio.sleep(0.05)
        owner.cancel()
    assert got == ["value"] and calls == 2


def test_memory_is_bounded_by_the_most_recent_jobs() -> None:
    watches = JobWatches(max_jobs=3)
    for i in range(10):
        watches.put(f"j{i}", LAST_LINE, i)
    assert [watches.peek(f"j{i}", LAST_LINE) is not None for i in range(10)] == [False] * 7 + [True] * 3


class LogCountingDriver(CountingDriver):
    def __init__(self) -> None:
        super().__init__()
        self.log_reads = 0

    async def read_log(
        self, ref: JobRef, *, mode: LogMode, at: LogMark | None, limit: int, context: int, max_bytes: int
    ) -> LogChunk:
        self.log_reads += 1
        return logfile.window_of(["epoch 3/10"])


async def _waiters(tmp_path: Path, count: int) -> tuple[int, list[int]]:
    """(log reads, single-job observes) made while `count` waiters watch one running job for 2.5 s."""
    settings = {"SLURM_USER": "u", "SLURM_HOSTNAME": "h", "SSH_KEY_PATH": "/k"}
    driver = LogCountingDriver()
    svc = JobService(
        settings,
        JobStore(tmp_path / f"jobs{count}.sqlite3"),
        Redactor(),
        DriverRegistry(settings, load=lambda p, s: driver),
    )
    async with anyio.create_task_group() as tg:
        await svc.start(tg)
        job_id = (await svc.submit(SubmitParams(platform="slurm", command="echo"))).job_id
        driver.state[job_id] = Observation("Running", "RUNNING", started_at=1.0)
        poller = svc.poller("slurm")

        async def no_sweep(max_age: float = 1.0) -> None:
            raise AssertionError("wait_for_job asked for a sweep of the whole platform")

        poller.refresh = no_sweep  # type: ignore[method-assign]
        await svc.status(job_id)  # Running in the store
        driver.log_reads = 0
        driver.observe_calls.clear()

        async def progress(value: float, total: float | None, message: str) -> None:
            pass

        async def wait() -> None:
            result = await svc.wait(job_id, 2.5, "terminal", progress)
            assert result.outcome == "still_waiting"

        async with anyio.create_task_group() as waiters:
            for _ in range(count):
                waiters.start_soon(wait)
        tg.cancel_scope.cancel()
    return driver.log_reads, driver.observe_calls


async def test_fifty_waiters_cost_the_backend_what_one_costs(tmp_path: Path) -> None:
    one_logs, one_observes = await _waiters(tmp_path, 1)
    many_logs, many_observes = await _waiters(tmp_path, 50)
    assert one_logs == many_logs == 1  # the last line is read once per LOG_HINT_EVERY_S, whoever waits
    # single-job reads at most once per poll interval (plus one timed background sweep of the one open job)
    assert len(many_observes) <= len(one_observes) + 1 <= 4, (one_observes, many_observes)
