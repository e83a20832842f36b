"""SlurmDriver against the real dev cluster (scripts/dev/slurm-cluster up): sbatch, squeue, sacct, scancel over SSH.

Every wait polls observe() with a deadline; nothing sleeps and hopes.
"""

from __future__ import annotations

import hashlib
import shlex
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from dotenv import dotenv_values

from tao_mcp.drivers import logfile
from tao_mcp.drivers.base import LOG_LINE_CHARS, RAW_CUT, RAW_LINE_CHARS, JobRef, LaunchRequest, LogMark, Observation
from tao_mcp.drivers.slurm import SlurmDriver, script
from tao_mcp.drivers.slurm import ssh as ssh_module
from tao_mcp.errors import BackendRejected, BackendUnreachable, TaoError
from tao_mcp.service import logs
from tao_mcp.service.redaction import Redactor
from tao_mcp.states import TERMINAL
from tests.helpers import launch_request
from tests.logfakes import read_page

pytestmark = [pytest.mark.anyio, pytest.mark.slurm]

REPO = Path(__file__).resolve().parents[2]
ENV_FILE = REPO / ".dev" / "slurm.env"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def settings() -> dict[str, str]:
    if not ENV_FILE.is_file():
        pytest.fail(f"{ENV_FILE} is missing: run scripts/dev/slurm-cluster up")
    return {k: v for k, v in dotenv_values(ENV_FILE).items() if v is not None}


@pytest.fixture
async def driver(settings: dict[str, str]) -> AsyncIterator[SlurmDriver]:
    drv = SlurmDriver(settings)
    try:
        yield drv
    finally:
        await drv.aclose()


def make_request(driver: SlurmDriver, command: str, **changes: Any) -> LaunchRequest:
    options = driver.parse_options(changes.pop("options", {}))
    return launch_request(command=command, options=options, **changes)


def ref_of(req: LaunchRequest, backend_id: str | None, created_at: float | None = None) -> JobRef:
    return JobRef(req.job_id, req.backend_name, backend_id, req.options, created_at or time.time())


async def launch(driver: SlurmDriver, req: LaunchRequest) -> JobRef:
    created = time.time()
    backend_id = await driver.launch(req)
    assert backend_id.isdigit()
    return ref_of(req, backend_id, created)


async def wait_until(
    driver: SlurmDriver, ref: JobRef, done: Callable[[Observation], bool], timeout: float = 60.0
) -> tuple[Observation, list[Observation]]:
    """Poll observe() until `done` holds; fail with the history at the deadline."""
    deadline = time.monotonic() + timeout
    seen: list[Observation] = []
    while True:
        obs = (await driver.observe([ref])).get(ref.job_id)
        if obs is not None:
            seen.append(obs)
            if done(obs):
                return obs, seen
        if time.monotonic() > deadline:
            pytest.fail(f"job {ref.backend_id} did not get there in {timeout} s; seen {[o.raw_state for o in seen]}")
        await anyio_sleep(0.5)


async def anyio_sleep(seconds: float) -> None:
    import anyio

    await anyio.sleep(seconds)


def terminal(obs: Observation) -> bool:
    return obs.status in TERMINAL


async def remote(driver: SlurmDriver, cmd: str) -> str:
    rc, out, err = await driver.ssh.run(cmd, failover=True, timeout=30)
    assert rc == 0, f"{cmd}: {err}"
    return out


async def log_text(driver: SlurmDriver, ref: JobRef) -> str:
    chunk = await read_page(driver, ref, "after", LogMark(0), 1000)
    return "\n".join(chunk.lines)


# --- lifecycle -----------------------------------------------------------------------------------------------


async def test_launch_runs_to_complete(driver: SlurmDriver) -> None:
    req = make_request(driver, 'echo "hello from $TAO_JOB_ID on node $NODE_RANK"; sleep 3; echo done')
    ref = await launch(driver, req)
    obs, seen = await wait_until(driver, ref, terminal)
    assert any(o.status in ("Pending", "Running") for o in seen), [o.raw_state for o in seen]
    assert (obs.status, obs.raw_state, obs.exit_code) == ("Complete", "COMPLETED", 0)
    assert obs.started_at and obs.ended_at and obs.ended_at >= obs.started_at
    assert abs(obs.started_at - time.time()) < 600  # epoch seconds, not a misread local time
    assert f"hello from {req.job_id} on node 0" in await log_text(driver, ref)
    # the job dir is private
    jdir = script.job_dir(await driver._base_dir(), req.job_id)
    assert (await remote(driver, f"stat -c %a {jdir}")).strip() == "700"


async def test_failing_command_is_error_with_its_exit_code(driver: SlurmDriver) -> None:
    ref = await launch(driver, make_request(driver, "echo about to fail >&2; exit 3"))
    obs, _ = await wait_until(driver, ref, terminal)
    assert (obs.status, obs.raw_state, obs.exit_code) == ("Error", "FAILED", 3)
    assert "about to fail" in await log_text(driver, ref)  # stderr goes to the same log
    evidence = await driver.failure_evidence(ref)
    texts = [(e.source, e.text) for e in evidence]
    assert ("state", f"job {ref.backend_id}: FAILED (nodes localhost)") in [(s, t.split(", max")[0]) for s, t in texts]
    assert ("exit_code", f"job {ref.backend_id}: ExitCode 3:0 (exit status 3)") in texts
    assert any(t.startswith(f"step {ref.backend_id}.batch: FAILED") for _, t in texts)


async def test_all_jobs_in_one_sweep(driver: SlurmDriver) -> None:
    ok = await launch(driver, make_request(driver, "true"))
    bad = await launch(driver, make_request(driver, "exit 2"))
    gone = JobRef("purged", "tao-purged", "999999", {}, time.time())
    never = JobRef("nobackend", "tao-nobackend", None, {}, time.time())
    deadline = time.monotonic() + 60
    while True:
        found = await driver.observe([ok, bad, gone, never])
        assert "purged" not in found and "nobackend" not in found
        if all(found.get(r.job_id) and found[r.job_id].status in TERMINAL for r in (ok, bad)):
            break
        assert time.monotonic() < deadline, found
        await anyio_sleep(0.5)
    assert (found[ok.job_id].status, found[bad.job_id].exit_code) == ("Complete", 2)
    # only unknown ids: squeue says "Invalid job id specified"; that is an answer, not a failure
    assert await driver.observe([gone]) == {}
    assert await driver.observe([]) == {}


async def test_hold_is_pending_job_held_user_and_cancel_is_canceled(driver: SlurmDriver) -> None:
    req = make_request(driver, "echo never", options={"hold": True})
    ref = await launch(driver, req)
    obs, _ = await wait_until(driver, ref, lambda o: o.status == "Pending")
    assert (obs.pending_reason, obs.message) == ("JobHeldUser", "PENDING (JobHeldUser)")
    # no log yet: an empty chunk, not an error
    chunk = await read_page(driver, ref, limit=10)
    assert (chunk.lines, chunk.older, chunk.newer) == ([], False, False)
    await driver.cancel(ref)
    obs, _ = await wait_until(driver, ref, terminal)
    assert obs.status == "Canceled" and obs.raw_state.startswith("CANCELLED")
    await driver.cancel(ref)  # cancelling a finished job is fine


async def test_cancel_running_job(driver: SlurmDriver) -> None:
    ref = await launch(driver, make_request(driver, "echo started; sleep 300"))
    await wait_until(driver, ref, lambda o: o.status == "Running")
    await driver.cancel(ref)
    obs, _ = await wait_until(driver, ref, terminal, timeout=60)
    assert obs.status == "Canceled"
    assert obs.raw_state.startswith("CANCELLED")


async def test_a_requeued_job_reads_pending_from_the_requeue_on(driver: SlurmDriver) -> None:
    """`scontrol requeue` of a running requeue=true job: while squeue still shows the old run's teardown
    (COMPLETING) sacct already says REQUEUED; the job is waiting in the queue again, never Running. The command
    ignores SIGTERM, so the teardown lasts the cluster's KillWait (5 s) and is seen, not raced."""
    command = "trap '' TERM; echo started; sleep 300"
    ref = await launch(driver, make_request(driver, command, options={"requeue": True}))
    try:
        await wait_until(driver, ref, lambda o: o.status == "Running")
        await remote(driver, f"scontrol requeue {ref.backend_id}")
        queued = await wait_until(driver, ref, lambda o: (o.raw_state, o.pending_reason) == ("PENDING", "BeginTime"))
    finally:
        await driver.cancel(ref)
    obs, seen = queued
    assert [o.status for o in seen] == ["Pending"] * len(seen), [(o.status, o.raw_state) for o in seen]
    assert obs.message == "PENDING (BeginTime)"  # held until its begin time, then it runs again
    teardown = [o for o in seen if o.raw_state == "REQUEUED"]
    assert teardown, [o.raw_state for o in seen]  # the requeue was seen before slurmctld queued the job again
    assert teardown[0].pending_reason == "Requeued"


async def test_cpus_beyond_the_node(driver: SlurmDriver) -> None:
    """SLURM 22.05 accepts a request no node can satisfy and keeps it PENDING with reason PartitionConfig."""
    nproc = int((await remote(driver, "nproc")).strip())
    ref = await launch(driver, make_request(driver, "true", options={"cpus": nproc + 64}))
    obs, _ = await wait_until(driver, ref, lambda o: o.pending_reason not in (None, "None"))
    assert (obs.status, obs.pending_reason, obs.message) == ("Pending", "PartitionConfig", "PENDING (PartitionConfig)")
    await driver.cancel(ref)
    assert (await wait_until(driver, ref, terminal))[0].status == "Canceled"


async def test_cpus_taken_is_pending_resources(driver: SlurmDriver) -> None:
    """All CPUs held by one job: the next one waits with reason Resources."""
    nproc = int((await remote(driver, "nproc")).strip())
    hog = await launch(driver, make_request(driver, "sleep 120", options={"cpus": nproc}))
    try:
        await wait_until(driver, hog, lambda o: o.status == "Running")
        waiter = await launch(driver, make_request(driver, "true", options={"cpus": 1}))
        obs, _ = await wait_until(driver, waiter, lambda o: o.status == "Pending" and o.pending_reason is not None)
        assert obs.pending_reason in ("Resources", "Priority"), obs
        await driver.cancel(waiter)
    finally:
        await driver.cancel(hog)
    await wait_until(driver, hog, terminal)


# --- find, logs, secrets, partitions ------------------------------------------------------------------------


async def test_find_by_name_after_the_id_was_lost(driver: SlurmDriver) -> None:
    req = make_request(driver, "sleep 2")
    created = time.time()
    backend_id = await driver.launch(req)
    forgotten = ref_of(req, None, created)
    unknown = JobRef("never-launched", "tao-never-launched", None, {}, created)
    assert await driver.find([forgotten, unknown]) == {req.job_id: backend_id}
    await wait_until(driver, ref_of(req, backend_id, created), terminal)
    # still found once finished (sacct), and a sweep without names is a no-op
    assert await driver.find([forgotten]) == {req.job_id: backend_id}
    assert await driver.find([]) == {}


async def test_sbatch_drop_is_unknown_outcome_then_found_by_name(driver: SlurmDriver, monkeypatch) -> None:
    """The connection drops after sbatch ran: never resubmitted elsewhere, reconciled by name."""
    real_exec = ssh_module._exec
    calls: list[str] = []

    def exec_then_drop(client: Any, cmd: str, timeout: float, stdin: bytes | None):
        result = real_exec(client, cmd, timeout, stdin)
        if cmd.startswith("sbatch"):
            calls.append(cmd)
            raise ssh_module._Dropped("simulated drop after sending")
        return result

    monkeypatch.setattr(ssh_module, "_exec", exec_then_drop)
    req = make_request(driver, "true")
    created = time.time()
    with pytest.raises(BackendUnreachable) as err:
        await driver.launch(req)
    assert "unknown" in str(err.value) and len(calls) == 1
    found = await driver.find([ref_of(req, None, created)])
    assert list(found) == [req.job_id]
    await wait_until(driver, ref_of(req, found[req.job_id], created), terminal)


async def test_read_log_tail_pages_and_grep_by_byte_offset(driver: SlurmDriver) -> None:
    long = "x" * (RAW_LINE_CHARS + 500)
    cmd = f"for i in $(seq 0 49); do echo line-$i; done; echo {long}; printf 'no-newline-at-end'"
    ref = await launch(driver, make_request(driver, cmd))
    await wait_until(driver, ref, terminal)
    jdir = script.job_dir(await driver._base_dir(), ref.job_id)
    size = int(await remote(driver, f"stat -c %s {jdir}/job.log"))

    tail = await read_page(driver, ref, limit=3)
    assert tail.lines[0] == "line-49" and tail.lines[2] == "no-newline-at-end"
    assert tail.lines[1] == "x" * RAW_LINE_CHARS + RAW_CUT  # raw, cut and marked (the service redacts, then cuts)
    assert tail.marks[2] == LogMark(size - len("no-newline-at-end")) and tail.end == tail.marks[2]
    assert tail.older and not tail.newer

    window = await read_page(driver, ref, "after", LogMark(len("".join(f"line-{i}\n" for i in range(10)))), 3)
    assert window.lines == ["line-10", "line-11", "line-12"]
    back = await read_page(driver, ref, "before", window.begin, 2)
    assert back.lines == ["line-8", "line-9"] and back.end == window.begin
    past_end = await read_page(driver, ref, "after", LogMark(size + 100), 5)
    assert past_end.lines == [] and not past_end.newer

    # grep is the service's, over the redacted window the driver returns
    found = await logs.grep(driver, ref, Redactor(), "line-4", limit=3)
    assert found.lines == ["line-47", "line-48", "line-49"] and found.more
    every = await logs.grep(driver, ref, Redactor(), "line-4", limit=100)
    assert every.lines == ["line-4", *(f"line-{i}" for i in range(40, 50))] and not every.older
    assert (await logs.grep(driver, ref, Redactor(), "-e'; rm -rf ~ #", limit=10)).lines == []
    cut = await logs.read(driver, ref, Redactor(), mode="before", at=tail.marks[2], limit=1)
    assert cut.lines[0].startswith("x" * 3000) and len(cut.lines[0]) == LOG_LINE_CHARS


async def test_pages_cut_inside_lines_and_characters_and_a_growing_log(
    driver: SlurmDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tiny spans put each range boundary inside a line and inside a multibyte character: pages back from the
    end and forward from the start still give every line once; a page after the end gets the lines written since."""
    monkeypatch.setattr(logfile, "FIRST_SPAN", 13)
    printed = [f"l{i:02d}-{'é' * (i % 4)}{'日本' * (i % 3)}" for i in range(30)]
    gate = f"/tmp/tao-mcp-gate-{uuid.uuid4().hex[:8]}"
    cmd = "; ".join(f"echo {w}" for w in printed) + f"; while [ ! -e {gate} ]; do sleep 0.2; done; echo grown-é"
    ref = await launch(driver, make_request(driver, cmd))
    deadline = time.monotonic() + 60
    while (tail := await read_page(driver, ref, limit=4)).lines[-1:] != [printed[-1]]:
        assert time.monotonic() < deadline, tail.lines
        await anyio_sleep(0.3)
    seen = tail.lines
    page = tail
    while page.older:
        page = await read_page(driver, ref, "before", page.begin, 4)
        seen = page.lines + seen
    assert seen == printed
    forward, at = [], LogMark(0)
    while (page := await read_page(driver, ref, "after", at, 7)).lines:
        forward += page.lines
        at = page.end
    assert forward == printed and at == tail.end
    await remote(driver, f"srun -N1 touch {gate} 2>/dev/null || touch {gate}")
    await wait_until(driver, ref, terminal)
    assert (await read_page(driver, ref, "after", at, 7)).lines == ["grown-é"]


async def test_secret_reaches_the_job_but_no_rendered_file(driver: SlurmDriver) -> None:
    value = f"canary-{uuid.uuid4().hex}-'quote' $HOME"
    digest = hashlib.sha256(value.encode()).hexdigest()
    req = make_request(
        driver,
        'printf "%s" "$TAO_TEST_SECRET" | sha256sum; echo "plain=$PLAIN_VALUE"',
        secret_env={"TAO_TEST_SECRET": value},
        env={"TAO_JOB_ID": "x", "PLAIN_VALUE": "a b 'c'"},
    )
    ref = await launch(driver, req)
    await wait_until(driver, ref, terminal)
    text = await log_text(driver, ref)
    assert digest in text and "plain=a b 'c'" in text
    assert value not in text
    jdir = script.job_dir(await driver._base_dir(), req.job_id)
    for name in ("job.sbatch", "command.sh", "job.env"):
        assert value not in await remote(driver, f"cat {jdir}/{name}"), name
    assert (await remote(driver, f"stat -c %a {jdir}/secrets.env")).strip() == "600"
    preview = await driver.preview(req)
    assert all(value not in content for content in preview.files.values())
    assert f"{jdir}/secrets.env" in preview.files


async def test_preview_touches_nothing(driver: SlurmDriver) -> None:
    req = make_request(driver, "echo hi", options={"hold": True})
    preview = await driver.preview(req)
    jdir = script.job_dir(await driver._base_dir(), req.job_id)
    assert preview.submit == f"sbatch --parsable --hold {jdir}/job.sbatch"
    assert set(preview.files) == {f"{jdir}/job.sbatch", f"{jdir}/command.sh", f"{jdir}/job.env"}
    assert (await remote(driver, f"test -e {jdir} && echo exists || echo absent")).strip() == "absent"
    assert await driver.results_root({}) == f"{await driver._base_dir()}/results"


async def test_partition_and_account_applied_and_bad_partition_rejected(
    driver: SlurmDriver, settings: dict[str, str]
) -> None:
    partition = settings.get("SLURM_PARTITION") or "debug"
    options = {"partition": partition, "account": "ci", "hold": True}
    ref = await launch(driver, make_request(driver, "true", options=options))
    try:
        applied = await remote(driver, f"squeue -h -o '%P|%a' -j {ref.backend_id}")
        assert applied.strip() == f"{partition}|ci"
    finally:
        await driver.cancel(ref)
    with pytest.raises(BackendRejected) as err:
        await driver.launch(make_request(driver, "true", options={"partition": "nosuchpartition"}))
    assert "invalid partition" in str(err.value).lower()
    assert err.value.code == "E_BACKEND_REJECTED" and "Fix: pass an existing partition" in str(err.value)


async def test_memory_beyond_the_node_is_rejected(driver: SlurmDriver) -> None:
    with pytest.raises(BackendRejected) as err:
        await driver.launch(make_request(driver, "true", options={"memory": "64T"}))
    assert "memory" in str(err.value).lower() or "node configuration" in str(err.value)


# --- container launchers -------------------------------------------------------------------------------------

STUB = r"""#!/bin/bash
# records argv (one per line), then runs the rest like the real program would
{ echo "== $(basename "$0")"; printf '%s\n' "$@"; } >> "$STUB_LOG"
case "$(basename "$0") $1" in
  "enroot import") exit 0 ;;
  srun*) while [[ "$1" == -* ]]; do shift; done; exec "$@" ;;
  *) while [ $# -gt 0 ] && [ "$1" != bash ]; do shift; done; exec "$@" ;;
esac
"""


async def stub_dir(driver: SlurmDriver) -> str:
    path = f"{await driver._base_dir()}/stubs-{uuid.uuid4().hex[:8]}"
    await driver.ssh.mkdir(path, 0o755)
    for name in ("srun", "apptainer", "singularity", "enroot"):
        await driver.ssh.write_file(f"{path}/{name}", STUB, 0o755)
    return path


def recorded(text: str) -> list[list[str]]:
    calls: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith("== "):
            calls.append([line[3:]])
        else:
            calls[-1].append(line)
    return calls


@pytest.mark.parametrize("launcher", ["pyxis", "apptainer", "enroot"])
async def test_container_launcher_command_lines(driver: SlurmDriver, launcher: str) -> None:
    stubs = await stub_dir(driver)
    log_file = f"{stubs}/argv-{launcher}.log"
    req = make_request(
        driver,
        'echo "ran inside with NGC=${#NGC_KEY} chars"',
        image="nvcr.io/nvidia/tao/tao-toolkit:5.5.0-pyt",
        env={"TAO_JOB_ID": "x", "PATH": f"{stubs}:/usr/local/bin:/usr/bin:/bin", "STUB_LOG": log_file},
        secret_env={"NGC_KEY": "0123456789"},
        options={"launcher": launcher, "mounts": ["/tmp:/data:ro"]},
    )
    ref = await launch(driver, req)
    obs, _ = await wait_until(driver, ref, terminal)
    assert obs.status == "Complete", await log_text(driver, ref)
    assert "ran inside with NGC=10 chars" in await log_text(driver, ref)

    calls = recorded(await remote(driver, f"cat {log_file}"))
    job = script.render(req, await driver._base_dir(), req.options)
    launch_lines = [shlex.split(line) for line in job.sbatch.splitlines()[-2:] if line and not line.startswith("#")]
    expected = [[argv[0], *argv[1:]] for argv in launch_lines if argv[0] in ("srun", "enroot")]
    assert calls[: len(expected)] == expected
    srun_call = next(c for c in calls if c[0] == "srun")
    joined = " ".join(srun_call)
    assert "0123456789" not in joined  # secrets travel as names only
    if launcher == "pyxis":
        assert "--container-image=nvcr.io#nvidia/tao/tao-toolkit:5.5.0-pyt" in srun_call
        assert any(a.startswith("--container-env=") and "NGC_KEY" in a for a in srun_call)
        assert f"--container-mounts={job.job_dir}:{job.job_dir},/tmp:/data:ro" in srun_call
    elif launcher == "apptainer":
        assert calls[1][0] == "apptainer" and "docker://nvcr.io/nvidia/tao/tao-toolkit:5.5.0-pyt" in calls[1]
    else:
        assert calls[0][:2] == ["enroot", "import"] and calls[2][:2] == ["enroot", "start"]
        assert "NGC_KEY" in calls[2]


async def test_charliecloud_for_real(driver: SlurmDriver, settings: dict[str, str]) -> None:
    rootfs = settings.get("TAO_MCP_DEV_CH_ROOTFS")
    assert rootfs, "TAO_MCP_DEV_CH_ROOTFS missing from .dev/slurm.env: rerun scripts/dev/slurm-cluster up"
    value = f"ch-secret-{uuid.uuid4().hex}"
    req = make_request(
        driver,
        '. /etc/os-release; echo "inside $ID $VERSION_ID job=$TAO_JOB_ID rank=$NODE_RANK"; '
        'printf "%s" "$CH_SECRET" | sha256sum',
        image=rootfs,
        secret_env={"CH_SECRET": value},
        options={"launcher": "charliecloud"},
    )
    ref = await launch(driver, req)
    obs, _ = await wait_until(driver, ref, terminal, timeout=90)
    text = await log_text(driver, ref)
    assert obs.status == "Complete", text
    assert f"inside debian 12 job={req.job_id} rank=0" in text
    assert hashlib.sha256(value.encode()).hexdigest() in text


# --- transport ----------------------------------------------------------------------------------------------


async def test_unreachable_is_an_error_never_a_state(settings: dict[str, str]) -> None:
    drv = SlurmDriver({**settings, "SLURM_SSH_PORT": "1"})
    try:
        with pytest.raises(BackendUnreachable):
            await drv.observe([JobRef("j", "tao-j", "1", {}, time.time())])
    finally:
        await drv.aclose()


async def test_failover_to_the_next_host(settings: dict[str, str]) -> None:
    host = settings["SLURM_HOSTNAME"].split(",")[0]
    drv = SlurmDriver({**settings, "SLURM_HOSTNAME": f"127.0.0.3,{host}"})  # nothing listens on 127.0.0.3
    try:
        assert await drv.observe([JobRef("j", "tao-j", "999998", {}, time.time())]) == {}
    finally:
        await drv.aclose()


async def test_unreadable_key_names_the_setting(settings: dict[str, str], tmp_path: Path) -> None:
    drv = SlurmDriver({**settings, "SSH_KEY_PATH": str(tmp_path / "missing-key")})
    try:
        with pytest.raises(TaoError) as err:
            await drv.observe([JobRef("j", "tao-j", "1", {}, time.time())])
        assert err.value.code == "E_SSH_AUTH" and "SSH_KEY_PATH" in str(err.value)
        assert str(tmp_path) not in str(err.value)
    finally:
        await drv.aclose()


async def test_strict_host_keys_reject_an_unknown_host(settings: dict[str, str], tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    drv = SlurmDriver({**settings, "SLURM_SSH_KNOWN_HOSTS": str(empty), "SLURM_SSH_STRICT_HOST_KEY_CHECKING": "yes"})
    try:
        with pytest.raises(TaoError) as err:
            await drv.observe([JobRef("j", "tao-j", "1", {}, time.time())])
        assert err.value.code == "E_SSH_HOSTKEY"
    finally:
        await drv.aclose()


async def test_reconnects_after_a_drop(driver: SlurmDriver) -> None:
    assert (await remote(driver, "echo one")).strip() == "one"
    for client in list(driver.ssh._clients.values()):
        client.get_transport().close()  # the login node dropped us
    assert (await remote(driver, "echo two")).strip() == "two"


async def test_a_cancelled_call_stops_waiting(driver: SlurmDriver) -> None:
    import anyio

    started = time.monotonic()
    with anyio.move_on_after(1):
        await driver.ssh.run("sleep 20", failover=True, timeout=30)
    assert time.monotonic() - started < 5
    assert (await remote(driver, "echo still-usable")).strip() == "still-usable"


async def test_command_timeout_is_unreachable(driver: SlurmDriver) -> None:
    with pytest.raises(BackendUnreachable):
        await driver.ssh.run("sleep 10", failover=False, timeout=1)


async def test_default_base_is_remote_home(settings: dict[str, str]) -> None:
    plain = {k: v for k, v in settings.items() if k != "SLURM_BASE_RESULTS_DIR"}
    drv = SlurmDriver(plain)
    try:
        home = (await remote(drv, 'printf %s "$HOME"')).strip()
        assert await drv.results_root({}) == f"{home}/tao-mcp/results"
        req = make_request(drv, "echo from-home")
        ref = await launch(drv, req)
        await wait_until(drv, ref, terminal)
        assert "from-home" in await log_text(drv, ref)
        assert (await remote(drv, f"stat -c %a {home}/tao-mcp/tao-mcp/{req.job_id}")).strip() == "700"
    finally:
        await drv.aclose()
    # unreachable and no base setting: the preview still renders, with $HOME in the paths
    down = SlurmDriver({**plain, "SLURM_SSH_PORT": "1"})
    try:
        preview = await down.preview(make_request(down, "echo hi"))
        assert preview.submit.startswith("sbatch --parsable $HOME/tao-mcp/tao-mcp/")
        assert all(path.startswith("$HOME/tao-mcp/tao-mcp/") for path in preview.files)
    finally:
        await down.aclose()


@pytest.mark.slow
async def test_time_limit_is_timeout_error(driver: SlurmDriver) -> None:
    ref = await launch(driver, make_request(driver, "sleep 600", time_limit_minutes=1))
    obs, _ = await wait_until(driver, ref, terminal, timeout=180)
    assert (obs.status, obs.raw_state) == ("Error", "TIMEOUT")


async def test_runner_phase_is_read_from_the_file_beside_the_log(driver: SlurmDriver) -> None:
    """The batch script tells the runner where its phase file goes; the driver reads that file, not the log."""
    cmd = 'echo "[tao-runner] download 2/5 files" > "$TAO_RUNNER_PHASE_FILE"; echo log-only-line'
    ref = await launch(driver, make_request(driver, cmd))
    await wait_until(driver, ref, terminal)
    assert (await driver.runner_phase(ref)) == "[tao-runner] download 2/5 files\n"
    jdir = script.job_dir(await driver._base_dir(), ref.job_id)
    await remote(driver, f"rm {shlex.quote(jdir + '/' + script.RUNNER_PHASE_FILE)}")
    assert await driver.runner_phase(ref) is None  # no file (an older job): the service falls back to the log
