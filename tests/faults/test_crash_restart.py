"""SIGKILL the server at each crash point of submit_job and cancel_job, restart it on the same state directory,
retry the same call: exactly one backend job per idempotency key (counted on the backend), none lost, a cancel
still cancels and touches no other job. For SLURM, Docker, Kubernetes and the Lepton fake."""

from __future__ import annotations

import random
import sqlite3
import traceback
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from fixtures.lepton.fake_lepton import FakeLepton
from tao_mcp.service.crashpoints import CANCEL_POINTS, SUBMIT_POINTS
from tests.faults.backends import Backend, Docker, Kubernetes, Lepton, Slurm
from tests.faults.conftest import N, Tally
from tests.faults.harness import ServerLog, call_until_killed, stdio_server
from tests.helpers import call, dev_settings, mcp_client, structured, wait_done, wait_status

pytestmark = [pytest.mark.anyio, pytest.mark.faults, pytest.mark.slow]

PLATFORMS = [
    pytest.param("slurm", marks=pytest.mark.slurm),
    pytest.param("docker", marks=pytest.mark.docker),
    pytest.param("kubernetes", marks=pytest.mark.k8s),
    pytest.param("lepton"),
]
LEPTON_TOKEN = "lepton-fault-token-0123456789"


@pytest.fixture
def backend(request: pytest.FixtureRequest, base_env: dict[str, str]) -> Iterator[Backend]:
    """The platform under test with the settings its dev script wrote (or the in-process Lepton fake)."""
    platform = request.param
    if platform == "slurm":
        yield Slurm(
            "slurm", {**base_env, **dev_settings("slurm", "scripts/dev/slurm-cluster up")}, launch_s=1.0, slots=2
        )
    elif platform == "docker":
        yield Docker("docker", {**base_env, **dev_settings("docker", "scripts/dev/docker up")}, launch_s=0.5)
    elif platform == "kubernetes":
        yield Kubernetes("kubernetes", {**base_env, **dev_settings("k8s", "scripts/dev/k8s up")}, launch_s=0.3)
    else:
        fake = FakeLepton(token=LEPTON_TOKEN).start()
        env = {
            **base_env,
            "LEPTON_WORKSPACE_URL": fake.url,
            "LEPTON_WORKSPACE_ID": fake.workspace_id,
            "LEPTON_AUTH_TOKEN": LEPTON_TOKEN,
            "LEPTON_HTTP_TIMEOUT_S": "2",
        }
        try:
            yield Lepton("lepton", env, launch_s=0.05, extra={"fake": fake})
        finally:
            fake.stop()


def store_job_ids(state_dir: Path, key: str) -> list[str]:
    with sqlite3.connect(state_dir / "jobs.sqlite3") as conn:
        return [row[0] for row in conn.execute("SELECT job_id FROM jobs WHERE idempotency_key = ?", (key,))]


def key_for(backend: Backend, what: str, rng: random.Random) -> str:
    return f"fault-{backend.platform[:4]}-{what.replace('.', '-').replace('_', '-')}-{rng.getrandbits(32):08x}"


def count_launches(tally: Tally, backend: Backend, key: str, state_dir: Path) -> list[str]:
    jobs = backend.jobs_for(key, store_job_ids(state_dir, key))
    tally.lost += not jobs
    tally.duplicated += max(0, len(jobs) - 1)
    return jobs


@dataclass
class Scenario:
    """One crash point of one test, with its own state directory and server logs (points run concurrently)."""

    backend: Backend
    point: str
    delay_s: float
    keys: list[str]
    directory: Path
    logs: ServerLog

    @property
    def env(self) -> dict[str, str]:
        # Several servers start at once on a 2-core machine: the readiness probe before submit gets a bound that
        # covers a loaded start (this suite tests crashes, not the probe's bound).
        return {
            **self.backend.env,
            "TAO_MCP_STATE_DIR": str(self.directory / "state"),
            "TAO_MCP_PROBE_TIMEOUT_S": "30",
        }

    @property
    def state_dir(self) -> Path:
        return self.directory / "state"


def scenarios(
    backend: Backend, points: tuple[str, ...], rng: random.Random, tmp_path: Path, keys: int
) -> list[Scenario]:
    """N rounds of every point; random values drawn up front, in order, so a seed replays exactly."""
    out = []
    for round_ in range(N):
        for point in points:
            delay = rng.uniform(0, backend.launch_s) if point.endswith(("during_launch", "during_backend")) else 0.0
            directory = tmp_path / f"{point}-{round_}"
            (directory / "state").mkdir(parents=True)
            out.append(
                Scenario(
                    backend,
                    point,
                    delay,
                    [key_for(backend, f"{point}-{i}", rng) for i in range(keys)],
                    directory,
                    ServerLog(directory),
                )
            )
    return out


def leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaves(sub)]
    return [exc]


async def run_all(run: Callable[[Scenario], Awaitable[None]], cases: list[Scenario]) -> None:
    """Run the scenarios concurrently, as many at once as the backend has room for jobs; report every failure."""
    failures: list[str] = []
    limiter = anyio.CapacityLimiter(max(1, cases[0].backend.slots // len(cases[0].keys)))

    async def one(case: Scenario) -> None:
        logs = case.logs
        try:
            async with limiter:
                await run(case)
        # collected: one failing point must not hide the others. pytest.fail raised inside the client's task groups
        # arrives as a BaseExceptionGroup (Failed is a BaseException), so that is caught too.
        except (Exception, pytest.fail.Exception, BaseExceptionGroup) as exc:
            # An exception group (a task group in the client) says nothing by itself: show the innermost errors.
            inner = "".join(line for leaf in leaves(exc) for line in traceback.format_exception_only(leaf))
            failures.append(f"{case.point} (delay {case.delay_s:.3f}s): {inner}\n{logs.tail(15)}")
        finally:
            case.backend.cleanup(case.keys)

    async with anyio.create_task_group() as tg:
        for case in cases:
            tg.start_soon(one, case)
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("backend", PLATFORMS, indirect=True)
async def test_submit_killed_at_each_point_then_retried_launches_exactly_once(
    backend: Backend, rng: random.Random, tally: Tally, tmp_path: Path
) -> None:
    async def run(case: Scenario) -> None:
        (key,) = case.keys
        args = case.backend.submit_args(key, seconds=2)
        logs = case.logs
        answered = await call_until_killed(case.env, logs, case.point, case.delay_s, [("submit_job", args)])
        tally.injected += 1
        with open(logs.next(), "w") as errlog:
            async with stdio_server(case.env, errlog) as c:
                retried = await call(c, "submit_job", **args)
                if answered and not answered[0].is_error:  # the kill landed after the answer: same job
                    assert retried["job_id"] == structured(answered[0])["job_id"]
                done = await wait_done(c, retried["job_id"], budget_s=240)
        jobs = count_launches(tally, case.backend, key, case.state_dir)
        if jobs and done["status"] != "Complete":
            tally.lost += 1  # launched, yet the job the agent was given did not complete
        assert len(jobs) == 1, f"{len(jobs)} backend jobs for one idempotency key"
        assert done["status"] == "Complete", f"the retried job ended {done['status']}: {done['message']}"

    await run_all(run, scenarios(backend, SUBMIT_POINTS, rng, tmp_path, keys=1))


@pytest.mark.parametrize("backend", PLATFORMS, indirect=True)
async def test_cancel_killed_at_each_point_then_retried_cancels_that_job_only(
    backend: Backend, rng: random.Random, tally: Tally, tmp_path: Path
) -> None:
    async def run(case: Scenario) -> None:
        target_key, bystander_key = case.keys
        logs = case.logs
        async with mcp_client(case.env) as c:  # setup on an in-process server (same state directory)
            target = (await call(c, "submit_job", **case.backend.submit_args(target_key, 600)))["job_id"]
            bystander = (await call(c, "submit_job", **case.backend.submit_args(bystander_key, 20)))["job_id"]
            await wait_status(c, target, lambda s: s["status"] == "Running", budget_s=240)
        for key in (target_key, bystander_key):  # before the cancel: Kubernetes deletes a canceled Job
            assert len(count_launches(tally, case.backend, key, case.state_dir)) == 1
        await call_until_killed(case.env, logs, case.point, case.delay_s, [("cancel_job", {"job_id": target})])
        tally.injected += 1
        with open(logs.next(), "w") as errlog:
            async with stdio_server(case.env, errlog) as c:
                result = await call(c, "cancel_job", job_id=target)
                if result["status"] == "Canceling":
                    result = await wait_status(c, target, lambda s: s["status"] != "Canceling", budget_s=120)
                other = await wait_done(c, bystander, budget_s=240)
        if other["status"] != "Complete":
            tally.false_terminal += 1
        assert result["status"] == "Canceled", f"the retried cancel left {result}"
        assert case.backend.canceled(target), "the backend did not stop the canceled job"
        assert other["status"] == "Complete", (
            f"the job next to the canceled one ended {other['status']}: {other['message']}"
        )
        assert not case.backend.canceled(bystander), "the backend stopped a job nobody canceled"
        assert len(count_launches(tally, case.backend, bystander_key, case.state_dir)) == 1

    await run_all(run, scenarios(backend, CANCEL_POINTS, rng, tmp_path, keys=2))
