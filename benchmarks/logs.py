"""Log measures: job_logs' tail on a big log vs a small one on every log reader, and a bounded grep.

SLURM (dev cluster): the big log is made on the cluster in about a second (`yes | head -c`, then the same text block
as the small log at its end) and removed afterwards; --quick makes it 64 MiB instead of 1 GiB. Docker (dev dockerd)
and Kubernetes (dev cluster): a container / pod that printed millions of lines (`seq`) vs a few thousand. Lepton:
the fake workspace (fixtures/lepton) answering Loki's backward query with a limit, a job of millions of lines vs a
few thousand; also counts the /logs requests and response bytes one tail costs.
"""

from __future__ import annotations

import shlex
import time
import uuid
from pathlib import Path
from typing import Any

import anyio

from benchmarks.measures import MIB, REPO, Row, Sizes, ainterleaved, ratio_row
from tao_mcp.drivers.base import JobRef
from tao_mcp.service import logs
from tao_mcp.service.redaction import Redactor

FILLER = shlex.quote("step 1 loss 0.5 lr 0.001 filler line of a long training log")


async def slurm_logs(sizes: Sizes, tmp: Path) -> list[Row]:
    from tao_mcp.drivers.slurm import SlurmDriver, script

    settings = dev_settings("slurm", "scripts/dev/slurm-cluster up")
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


async def tail_ratio(
    measure: str, driver: Any, refs: dict[str, JobRef], ends: dict[str, list[str]], sizes: Sizes, label: str
) -> Row:
    """job_logs' tail (200 lines) of the small and the big log, timed alternately; each must end on its own last
    lines (`ends`)."""
    redactor = Redactor()

    async def tail(which: str) -> None:
        window = await logs.read(driver, refs[which], redactor, limit=200)
        assert window.lines[-len(ends[which]) :] == ends[which], window.lines[-3:]

    small, big = await ainterleaved(lambda: tail("small"), lambda: tail("big"), sizes.reps)
    return ratio_row(measure, small, big, 2.0, label)


def dev_settings(name: str, start: str) -> dict[str, str]:
    from dotenv import dotenv_values

    env = REPO / ".dev" / f"{name}.env"
    if not env.is_file():
        raise RuntimeError(f"{env} is missing: run {start}")
    return {k: v for k, v in dotenv_values(env).items() if v}


def big_lines(sizes: Sizes) -> int:
    return 300_000 if sizes.reps < 10 else 3_000_000


async def docker_tail(sizes: Sizes, tmp: Path) -> list[Row]:
    """job_logs' tail on a container that printed millions of lines vs a few thousand (the dev dockerd)."""
    from tao_mcp.drivers.docker import DockerDriver

    settings = dev_settings("docker", "scripts/dev/docker up")
    import docker

    client = docker.DockerClient(base_url=settings["DOCKER_HOST"], timeout=120)
    lines = {"small": 5_000, "big": big_lines(sizes)}
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
        label = f"{lines['big']:,} lines vs {lines['small']:,}"
        ends = {k: [str(v)] for k, v in lines.items()}
        row = await tail_ratio("job_logs(tail=200) Docker", driver, refs, ends, sizes, label)
        await driver.aclose()
        return [row]
    finally:
        for container in made:
            container.remove(force=True)
        client.close()


async def k8s_tail(sizes: Sizes, tmp: Path) -> list[Row]:
    """job_logs' tail on a pod that printed millions of lines vs a few thousand (the dev Kubernetes cluster:
    `tail_lines`, which the kubelet reads from the end)."""
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    from tao_mcp.drivers.k8s import KubernetesDriver, manifest

    settings = dev_settings("k8s", "scripts/dev/k8s up")
    api = k8s_config.new_client_from_config(config_file=settings["KUBECONFIG"], context=settings.get("TAO_K8S_CONTEXT"))
    core = k8s.CoreV1Api(api)
    ns = settings.get("TAO_K8S_NAMESPACE") or "default"
    lines = {"small": 5_000, "big": big_lines(sizes)}
    refs: dict[str, JobRef] = {}
    made: list[str] = []
    try:
        for which, count in lines.items():
            job_id = f"bench{uuid.uuid4().hex[:7]}"
            pod = f"tao-{job_id}"
            container = {
                "name": manifest.CONTAINER,
                "image": settings["TAO_MCP_TEST_IMAGE"],
                "imagePullPolicy": "IfNotPresent",
                "command": ["seq", "1", str(count)],
            }
            body = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": pod, "labels": manifest.labels(job_id)},
                "spec": {"restartPolicy": "Never", "containers": [container]},
            }
            core.create_namespaced_pod(ns, body)
            made.append(pod)
            refs[which] = JobRef(job_id, pod, f"{ns}/{pod}", {"namespace": ns}, time.time())
        deadline = time.monotonic() + 300
        for pod in made:
            while (phase := core.read_namespaced_pod(pod, ns).status.phase) not in ("Succeeded", "Failed"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"pod {pod} still {phase} after 300 s")
                await anyio.sleep(0.5)
            if phase != "Succeeded":
                raise RuntimeError(f"pod {pod} ended {phase}")
        driver = KubernetesDriver(settings)
        label = f"{lines['big']:,} lines vs {lines['small']:,}"
        ends = {k: [str(v)] for k, v in lines.items()}
        row = await tail_ratio("job_logs(tail=200) Kubernetes", driver, refs, ends, sizes, label)
        await driver.aclose()
        return [row]
    finally:
        for pod in made:
            core.delete_namespaced_pod(pod, ns, grace_period_seconds=0)
        api.close()


async def lepton_tail(sizes: Sizes, tmp: Path) -> list[Row]:
    """job_logs' tail on a Lepton job of millions of lines vs a few thousand, against the fake workspace, whose
    /logs answers Loki's backward query with a limit computing only the lines asked for; also the /logs requests
    and response bytes of one tail of each (the same whatever the log's size)."""
    from fixtures.lepton.fake_lepton import FakeLepton
    from tao_mcp.drivers.lepton import LeptonDriver

    token = f"bench-{uuid.uuid4().hex}"
    fake = FakeLepton(token=token).start()
    settings = {
        "LEPTON_WORKSPACE_URL": fake.url,
        "LEPTON_WORKSPACE_ID": fake.workspace_id,
        "LEPTON_AUTH_TOKEN": token,
    }
    lines = {"small": 5_000, "big": 1_000_000 if sizes.reps < 10 else 10_000_000}
    refs: dict[str, JobRef] = {}
    driver = LeptonDriver(settings)
    try:
        for which, count in lines.items():
            name = f"bench-{uuid.uuid4().hex[:7]}"
            body = {
                "metadata": {"id": name},
                "spec": {
                    "resource_shape": fake.shapes[0]["metadata"]["id"],
                    "container": {"image": "bench", "command": ["/bin/bash", "-c", "true"]},
                    "envs": [
                        {"name": "FAKE_LOG_LINES", "value": str(count)},
                        {"name": "FAKE_DURATION_S", "value": "0.3"},
                    ],
                },
            }
            code, job = fake.handle("POST", "/jobs", {}, body, f"Bearer {token}")
            if code >= 300:
                raise RuntimeError(f"the fake refused the job: {job}")
            refs[which] = JobRef(name, name, job["metadata"]["id"], {}, time.time())
        deadline = time.monotonic() + 60
        for ref in refs.values():
            while fake.handle("GET", f"/jobs/{ref.backend_id}", {}, None, f"Bearer {token}")[1]["status"]["state"] != (
                "Completed"
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"fake job {ref.backend_id} did not complete in 60 s")
                await anyio.sleep(0.2)
        redactor = Redactor()
        cost: dict[str, tuple[int, int]] = {}
        for which, ref in refs.items():  # what one tail asks of the backend
            asked, sent = len(fake.requests), fake.sent_bytes
            await logs.read(driver, ref, redactor, limit=200)
            cost[which] = (len(fake.requests) - asked, fake.sent_bytes - sent)
        label = f"{lines['big']:,} lines vs {lines['small']:,}"
        ends = {k: [f"line {v}", "fake-lepton: done"] for k, v in lines.items()}
        row = await tail_ratio("job_logs(tail=200) Lepton", driver, refs, ends, sizes, label)
        (small_req, small_bytes), (big_req, big_bytes) = cost["small"], cost["big"]
        row.result += f"; per tail {big_req} vs {small_req} /logs requests, "
        row.result += f"{big_bytes / 1024:.0f} vs {small_bytes / 1024:.0f} KiB"
        row.passed = row.passed and big_req <= small_req and big_bytes <= 2 * small_bytes
        return [row]
    finally:
        await driver.aclose()
        fake.stop()
