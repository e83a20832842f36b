"""The shared poller: one batched backend read per sweep for every open job, shared by concurrent callers."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest

from tao_mcp.drivers import logfile
from tao_mcp.drivers.base import Evidence, JobRef, LaunchRequest, LogChunk, LogMark, LogMode, Observation, Preview
from tao_mcp.errors import BackendUnreachable
from tao_mcp.service.jobs import JobService, SubmitParams
from tao_mcp.service.redaction import Redactor
from tao_mcp.service.registry import DriverRegistry
from tao_mcp.service.store import JobStore

pytestmark = pytest.mark.anyio


class CountingDriver:
    """A minimal in-memory driver: records how often the backend is asked."""

    platform = "slurm"
    storage_scheme = "lustre"

    def __init__(self) -> None:
        self.observe_calls: list[int] = []
        self.launched: dict[str, str] = {}
        self.state: dict[str, Observation] = {}
        self.down = False

    def parse_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        return dict(options)

    async def results_root(self, options: Mapping[str, Any], *, resolve: bool = True) -> str | None:
        return "/scratch/results"

    async def preview(self, req: LaunchRequest) -> Preview:
        return Preview(files={"script": req.command}, submit="run")

    async def launch(self, req: LaunchRequest) -> str:
        backend_id = str(100 + len(self.launched))
        self.launched[req.job_id] = backend_id
        self.state[req.job_id] = Observation("Pending", "PENDING", pending_reason="Priority")
        return backend_id

    async def find(self, refs: list[JobRef]) -> dict[str, str]:
        return {r.job_id: self.launched[r.job_id] for r in refs if r.job_id in self.launched}

    async def observe(self, refs: list[JobRef]) -> dict[str, Observation]:
        self.observe_calls.append(len(refs))
        await anyio.sleep(0.05)
        if self.down:
            raise BackendUnreachable("slurm", "ssh: connection refused")
        return {r.job_id: self.state[r.job_id] for r in refs if r.job_id in self.state}

    async def read_log(
        self, ref: JobRef, *, mode: LogMode, at: LogMark | None, limit: int, context: int, max_bytes: int
    ) -> LogChunk:
        return logfile.window_of(["line"])

    async def cancel(self, ref: JobRef) -> None:
        self.state[ref.job_id] = Observation("Canceled", "CANCELLED by 0")

    async def failure_evidence(self, ref: JobRef) -> list[Evidence]:
        return []

    async def aclose(self) -> None:
        pass


@pytest.fixture
async def service(tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = {"SLURM_USER": "u", "SLURM_HOSTNAME": "h", "SSH_KEY_PATH": "/k"}
    driver = CountingDriver()
    drivers = DriverRegistry(settings, load=lambda platform, settings: driver)
    svc = JobService(settings, JobStore(tmp_path / "jobs.sqlite3"), Redactor(), drivers)
    async with anyio.create_task_group() as tg:
        await svc.start(tg)
        yield svc, driver
        tg.cancel_scope.cancel()


async def test_one_batched_sweep_serves_many_jobs_and_callers(service) -> None:  # type: ignore[no-untyped-def]
    svc, driver = service
    for i in range(5):
        await svc.submit(SubmitParams(platform="slurm", command=f"echo {i}"))
    poller = svc.poller("slurm")
    await poller.refresh(max_age=0)
    driver.observe_calls.clear()
    poller.last_sweep_at = 0.0  # the last sweep is stale: the next waiter needs one

    async with anyio.create_task_group() as tg:
        for _ in range(20):  # 20 concurrent waiters
            tg.start_soon(poller.refresh)
    assert driver.observe_calls and all(n == 5 for n in driver.observe_calls)
    assert len(driver.observe_calls) <= 2, driver.observe_calls


async def test_job_status_reads_only_that_job_when_its_reading_is_stale(service) -> None:  # type: ignore[no-untyped-def]
    svc, driver = service
    ids = [(await svc.submit(SubmitParams(platform="slurm", command=f"echo {i}"))).job_id for i in range(5)]
    poller = svc.poller("slurm")
    await poller.refresh(max_age=0)
    driver.observe_calls.clear()
    poller.covered_at = 0.0  # the last sweep's readings are stale
    results: list[str] = []

    async def status(job_id: str) -> None:
        results.append((await svc.status(job_id)).status)

    async with anyio.create_task_group() as tg:
        for job_id in ids * 4:  # 20 concurrent status calls, 4 per job
            tg.start_soon(status, job_id)
    assert results == ["Pending"] * 20
    # One single-job read per job (concurrent callers share it), never a sweep of the platform for a status.
    assert driver.observe_calls.count(1) == 5, driver.observe_calls
    assert set(driver.observe_calls) <= {1, 5}  # 5: only the timed background sweep, if it came due meanwhile
    before = len(driver.observe_calls)
    assert (await svc.status(ids[0])).status == "Pending"  # just read: fresh, answered from the store
    assert len(driver.observe_calls) == before


def test_freshness_rule() -> None:
    from tao_mcp.service.poller import POLL_INTERVAL_S, PlatformPoller

    poller = PlatformPoller("slurm", None, None)  # type: ignore[arg-type]
    poller.covered_at = 1000.0
    assert poller.fresh("j", created_at=900.0, now=1000.0 + POLL_INTERVAL_S)
    assert not poller.fresh("j", created_at=900.0, now=1000.1 + POLL_INTERVAL_S)  # older than the poll interval
    assert not poller.fresh("j", created_at=1000.5, now=1001.0)  # created after the sweep began: not covered
    poller.unanswered.add("j")
    assert not poller.fresh("j", created_at=900.0, now=1001.0)
    poller.unanswered.clear()
    poller.last_error = "ssh: connection refused"
    assert not poller.fresh("j", created_at=900.0, now=1001.0)


def test_a_requested_sweep_is_not_followed_by_an_unrequested_one() -> None:
    from tao_mcp.service.poller import BACKOFF_S, POLL_INTERVAL_S, next_backoff

    step = next_backoff(3, asked=True, had_jobs=True)
    assert BACKOFF_S[step] == POLL_INTERVAL_S > 0  # the next sweep waits a poll interval (or a request)
    assert BACKOFF_S[next_backoff(step, asked=False, had_jobs=True)] > POLL_INTERVAL_S
    assert BACKOFF_S[next_backoff(0, asked=False, had_jobs=False)] == max(BACKOFF_S)
    assert min(BACKOFF_S) > 0


async def test_unreachable_backend_is_never_terminal(service) -> None:  # type: ignore[no-untyped-def]
    svc, driver = service
    job_id = (await svc.submit(SubmitParams(platform="slurm", command="echo"))).job_id
    driver.down = True
    status = await svc.status(job_id)
    assert status.status == "Pending" and status.backend_reachable is False
    assert "unreachable" in status.message
    driver.down = False
    driver.state[job_id] = Observation("Complete", "COMPLETED", exit_code=0)
    with anyio.fail_after(10):
        while (status := await svc.status(job_id)).status != "Complete":
            await anyio.sleep(0.1)
    assert status.backend_reachable is True and status.exit_code == 0


async def test_idle_loop_backs_off(service) -> None:  # type: ignore[no-untyped-def]
    svc, driver = service
    await svc.submit(SubmitParams(platform="slurm", command="echo"))
    with anyio.fail_after(10):
        while not driver.observe_calls:
            await anyio.sleep(0.05)
    await anyio.sleep(1.0)
    # Kick -> one sweep, then the first backoff step (2 s): no second sweep within the second.
    assert len(driver.observe_calls) == 1, driver.observe_calls


async def test_wait_progress_is_strictly_increasing(service) -> None:  # type: ignore[no-untyped-def]
    svc, _driver = service
    job_id = (await svc.submit(SubmitParams(platform="slurm", command="echo"))).job_id
    seen: list[tuple[float, str]] = []

    async def progress(value: float, total: float | None, message: str) -> None:
        seen.append((value, message))

    result = await svc.wait(job_id, 3, "terminal", progress)
    assert result.done is False and "wait_for_job" in result.next
    assert len(seen) >= 1 and seen[0][1].startswith("PENDING (Priority)")
    assert all(b[0] > a[0] for a, b in itertools.pairwise(seen))


async def test_platform_extras_are_refused_where_the_driver_has_none(service) -> None:  # type: ignore[no-untyped-def]
    from tao_mcp.errors import TaoError
    from tao_mcp.service.extras import PlatformExtras

    svc, _ = service
    extras = PlatformExtras(svc, svc.drivers)
    job_id = (await svc.submit(SubmitParams(platform="slurm", command="echo"))).job_id
    with pytest.raises(TaoError) as err:
        await extras.replicas(job_id)
    assert err.value.code == "E_NOT_SUPPORTED" and "Lepton" in str(err.value)
    assert await extras.diagnostics("slurm") is None


async def test_a_job_the_backend_did_not_answer_for_is_flagged(service) -> None:  # type: ignore[no-untyped-def]
    svc, driver = service
    answered = (await svc.submit(SubmitParams(platform="slurm", command="echo 1"))).job_id
    silent = (await svc.submit(SubmitParams(platform="slurm", command="echo 2"))).job_id
    del driver.state[silent]  # e.g. one Brev instance's exec failed while the others answered
    svc.poller("slurm").covered_at = 0.0
    assert (await svc.status(answered)).backend_reachable is True
    quiet = await svc.status(silent)
    assert quiet.status == "Pending" and quiet.backend_reachable is False
    assert "no answer for this job" in quiet.message


async def test_a_sweep_reads_in_driver_chunks_and_store_batches(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tao_mcp.service import poller as poller_module
    from tao_mcp.service.store import JobRecord
    from tests.helpers import launch_request

    monkeypatch.setattr(poller_module, "SWEEP_CHUNK", 10)
    monkeypatch.setattr(poller_module, "STORE_BATCH", 3)
    store = JobStore(tmp_path / "jobs.sqlite3")
    driver = CountingDriver()
    for i in range(25):
        request = launch_request(f"job{i:02d}")
        store.insert(JobRecord.launching(request, platform="slurm", digest="d", command="echo"))
        store.set_launch_state(request.job_id, "launched", str(100 + i))
        driver.state[request.job_id] = Observation("Running", "RUNNING", started_at=1.0)
    limits: list[int] = []
    applied: list[int] = []
    open_refs, apply_many = store.open_refs, store.apply_many
    monkeypatch.setattr(store, "open_refs", lambda *a, **k: limits.append(k["limit"]) or open_refs(*a, **k))
    monkeypatch.setattr(store, "apply_many", lambda obs: applied.append(len(obs)) or apply_many(obs))

    async def get_driver() -> CountingDriver:
        return driver

    poller = poller_module.PlatformPoller("slurm", store, get_driver)  # type: ignore[arg-type]
    assert await poller.sweep() and poller.last_error is None
    assert driver.observe_calls == [10, 10, 5]  # one driver call per chunk
    assert max(limits) == 3 and max(applied) <= 3 and sum(applied) == 25  # store work in batches
    assert all(r.status == "Running" for r in (store.get(f"job{i:02d}") for i in range(25)) if r)
