"""The four platforms as the fault suite sees them: how to submit a short or a long job, and the backend's own
count of the jobs a test launched (never the server's word for it) and whether the backend stopped one.

Every job the suite submits carries env TAO_FAULT_KEY=<its idempotency key>. Docker, Kubernetes and the Lepton
fake are counted by that marker in the backend's own job spec; SLURM accounting does not show the environment,
so there the jobs are counted by name (tao-<job id>) for every record the test's store holds.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from docker.errors import NotFound

MARKER = "TAO_FAULT_KEY"


@dataclass
class Backend:
    platform: str
    env: dict[str, str]
    launch_s: float  # about how long the driver's launch / cancel call takes: the "during" kill lands inside it
    slots: int = 8  # jobs the backend runs at once (the dev SLURM node has 2 CPUs)
    extra: dict[str, Any] = field(default_factory=dict)

    def submit_args(self, key: str, seconds: float) -> dict[str, Any]:
        """A CPU job that runs about `seconds` and completes."""
        return {
            "platform": self.platform,
            "gpu_count": 0,
            "command": f"sleep {seconds:g}; echo fault-ok",
            "env": {MARKER: key},
            "idempotency_key": key,
        }

    def jobs_for(self, key: str, job_ids: list[str]) -> list[str]:
        """The backend's jobs carrying this key (job_ids: every job id in the test's store)."""
        raise NotImplementedError

    def canceled(self, job_id: str) -> bool:
        """The backend itself says the job was stopped (not completed, not failed)."""
        raise NotImplementedError

    def cleanup(self, keys: list[str]) -> None:
        """Remove what the test left on a shared backend (finished jobs stay otherwise)."""


class Slurm(Backend):
    def _sacct(self, job_ids: list[str]) -> list[tuple[str, str, str]]:
        if not job_ids:
            return []
        names = ",".join(f"tao-{j}" for j in job_ids)
        out = subprocess.run(
            ["sacct", "-n", "-P", "-X", "--allusers", "--name", names, "-S", "now-1days", "-o", "JobID,JobName,State"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return [tuple(line.split("|", 2)) for line in out.splitlines() if line.strip()]  # type: ignore[misc]

    def jobs_for(self, key: str, job_ids: list[str]) -> list[str]:
        # accounting lags squeue by about a second: a job the server reported must show up within the deadline
        deadline = time.monotonic() + 10
        while True:
            rows = self._sacct(job_ids)
            if rows or time.monotonic() > deadline:
                return [row[0] for row in rows]
            time.sleep(0.5)

    def canceled(self, job_id: str) -> bool:
        return any(state.startswith("CANCELLED") for _, _, state in self._sacct([job_id]))


class Docker(Backend):
    def _client(self) -> Any:
        import docker

        return docker.DockerClient(base_url=self.env["DOCKER_HOST"], timeout=30)

    def _containers(self, key: str) -> list[dict[str, Any]]:
        client = self._client()
        try:
            found = []
            for item in client.api.containers(all=True, filters={"label": "tao-mcp.managed=true"}):
                try:
                    info = client.api.inspect_container(item["Id"])
                except NotFound:
                    continue  # removed between the list and the read (another test's cleanup)
                if f"{MARKER}={key}" in (info["Config"].get("Env") or []):
                    found.append(info)
            return found
        finally:
            client.close()

    def submit_args(self, key: str, seconds: float) -> dict[str, Any]:
        return {**super().submit_args(key, seconds), "image": self.env["TAO_MCP_TEST_IMAGE"]}

    def jobs_for(self, key: str, job_ids: list[str]) -> list[str]:
        return [c["Id"] for c in self._containers(key)]

    def canceled(self, job_id: str) -> bool:
        client = self._client()
        try:
            items = client.api.containers(all=True, filters={"label": f"tao-mcp.job-id={job_id}"})
            states = [client.api.inspect_container(i["Id"])["State"] for i in items]
        finally:
            client.close()
        return bool(states) and all(not s["Running"] for s in states) and all(s["ExitCode"] != 0 for s in states)

    def cleanup(self, keys: list[str]) -> None:
        client = self._client()
        try:
            for key in keys:
                for info in self._containers(key):
                    with contextlib.suppress(NotFound):
                        client.api.remove_container(info["Id"], force=True)
        finally:
            client.close()


class Kubernetes(Backend):
    def _kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = ["kubectl", f"--kubeconfig={self.env['KUBECONFIG']}", "--request-timeout=20s", *args]
        return subprocess.run(cmd, capture_output=True, text=True, check=check)

    def _jobs(self, key: str) -> list[dict[str, Any]]:
        items = json.loads(
            self._kubectl("get", "jobs", "-A", "-l", "app.kubernetes.io/managed-by=tao-mcp", "-o", "json").stdout
        )["items"]
        marked = []
        for job in items:
            containers = job["spec"]["template"]["spec"].get("containers") or []
            envs = [e for c in containers for e in c.get("env") or []]
            if any(e.get("name") == MARKER and e.get("value") == key for e in envs):
                marked.append(job)
        return marked

    def submit_args(self, key: str, seconds: float) -> dict[str, Any]:
        args = super().submit_args(key, seconds)
        return {**args, "image": self.env["TAO_MCP_TEST_IMAGE"], "options": {"image_pull_policy": "IfNotPresent"}}

    def jobs_for(self, key: str, job_ids: list[str]) -> list[str]:
        return [f"{j['metadata']['namespace']}/{j['metadata']['name']}" for j in self._jobs(key)]

    def canceled(self, job_id: str) -> bool:
        # cancel deletes the Job (Foreground): gone, or going with no pod left running
        out = self._kubectl("get", "jobs", "-A", "-l", f"tao-mcp/job-id={job_id}", "-o", "json").stdout
        jobs = json.loads(out)["items"]
        return all(j["metadata"].get("deletionTimestamp") for j in jobs)

    def cleanup(self, keys: list[str]) -> None:
        for key in keys:
            for job in self._jobs(key):
                meta = job["metadata"]
                self._kubectl("delete", "job", "-n", meta["namespace"], meta["name"], "--wait=false", check=False)


class Lepton(Backend):
    @property
    def fake(self) -> Any:
        return self.extra["fake"]

    def submit_args(self, key: str, seconds: float) -> dict[str, Any]:
        args = super().submit_args(key, seconds)
        args["env"] = {**args["env"], "FAKE_DURATION_S": f"{seconds:g}"}
        return {**args, "image": "nvcr.io/nvidia/tao/tao-toolkit:5.5.0-pyt"}

    def jobs_for(self, key: str, job_ids: list[str]) -> list[str]:
        return [job.id for job in list(self.fake.jobs.values()) if job.env.get(MARKER) == key]

    def canceled(self, job_id: str) -> bool:
        jobs = [j for j in list(self.fake.jobs.values()) if j.name == f"tao-{job_id}"]
        return bool(jobs) and all(j.deleted_at is not None or j.stopped_at is not None for j in jobs)
