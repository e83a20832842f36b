"""How each platform takes part in the scenario suite: the submit_job arguments of its jobs, what its backend
reports, and the checks only it can make (its backend objects, files and requests). test_scenarios.py runs the
same scenarios on every one of them."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tao_mcp.drivers.base import JobRef
from tests.backends import FakeBrev, kubectl, kubectl_json, sacct_names
from tests.helpers import FAILING_COMMAND, assert_no_canary, call, wait_status

TAO_IMAGE = "nvcr.io/nvidia/tao/tao-toolkit:5.5.0-pyt"  # the fakes never pull it
STANDIN = Path(__file__).resolve().parents[2] / "fixtures" / "standin" / "tao_standin.py"


class Platform:
    """A platform whose jobs run real shell commands (SLURM, Docker, Kubernetes, and the fake brev's instances)."""

    name = ""
    complete_raw_state = ""
    canceled_raw_state = ""  # prefix of the raw state after cancel_job
    failing_exit_code: int | None = 3
    failing_exception = "JSONDecodeError"
    cancel_confirms_at_once = True  # cancel_job answers Canceled itself (no Canceling to wait out)
    logs_survive_cancel = True
    secret_names = ("NGC_KEY", "HF_TOKEN", "SECRET_KEY")

    def __init__(self, env: dict[str, str], request: pytest.FixtureRequest) -> None:
        self.env = env
        self.request = request

    # --- the jobs -------------------------------------------------------------------------------------------

    def base(self) -> dict[str, Any]:
        return {"platform": self.name, "gpu_count": 0}

    def printing(self, *lines: str, seconds: float = 0, **extra: Any) -> dict[str, Any]:
        """A job that prints `lines` (shell words: $VARS expand) and then lasts about `seconds`."""
        steps = [f"echo {line}" for line in lines] + ([f"sleep {seconds:g}"] if seconds else [])
        return {**self.base(), "command": "; ".join(steps), **extra}

    def hello_extra(self) -> dict[str, Any]:
        return {}

    def growing(self, first: str, then: str, pause_s: float) -> dict[str, Any]:
        """A job that prints `first`, and `then` about pause_s later (its log grows while it is read)."""
        return {**self.base(), "command": f"echo {first}; sleep {pause_s:g}; echo {then}"}

    def failing(self) -> dict[str, Any]:
        """Prints `about-to-fail`, then fails like user code (a Python traceback, exit 3)."""
        return {**self.base(), "command": f"echo about-to-fail; {FAILING_COMMAND}"}

    def long_running(self) -> dict[str, Any]:
        return self.printing("started", seconds=600)

    def printing_secrets(self) -> dict[str, Any]:
        return {**self.base(), "command": "env | sort; echo NGC=$NGC_KEY", "secret_env": list(self.secret_names)}

    def python_image(self) -> dict[str, Any]:
        return {}

    def training(self, epochs: int, seconds: float) -> dict[str, Any]:
        """The stand-in TAO CLI writing `epochs` status.json records, `seconds` apart, under the runner (which the
        {results_dir} placeholder brings in) with its status.json follower scanning every second."""
        script = base64.b64encode(STANDIN.read_bytes()).decode()
        command = (
            f"echo {script} | base64 -d > {{results_dir}}/standin.py && "
            f"python3 {{results_dir}}/standin.py epochs {{results_dir}}/train {epochs} {seconds:g}"
        )
        return {**self.base(), **self.python_image(), "command": command, "env": {"TAO_RUNNER_STATUS_POLL_S": "1"}}

    def expected_lines(self, sub: dict[str, Any], printed: list[str]) -> list[str]:
        return printed

    secret_line = "NGC=[REDACTED]"  # what the job printed for $NGC_KEY, as the server returns it

    # --- what only this platform can check ------------------------------------------------------------------

    def check_backend_id(self, sub: dict[str, Any]) -> None:
        raise NotImplementedError

    async def after_hello(self, c: Any, sub: dict[str, Any], done: dict[str, Any]) -> None:
        pass

    def failure_evidence(self) -> str | None:
        return None

    async def after_cancel(self, sub: dict[str, Any], first: dict[str, Any]) -> None:
        pass

    def after_restart(self) -> None:
        pass

    def launched_once(self, first: dict[str, Any]) -> None:
        raise NotImplementedError

    def check_preview(self, files: dict[str, str]) -> None:
        raise NotImplementedError

    def after_secret_submit(self, sub: dict[str, Any]) -> None:
        pass

    def backend_secrets(self) -> dict[str, str]:
        """Credentials of the platform itself, which must not leave the server either."""
        return {}

    def secrets_at_rest(self, sub: dict[str, Any], canaries: dict[str, str]) -> None:
        pass

    def stored_rows(self) -> str:
        db = sqlite3.connect(Path(self.env["TAO_MCP_STATE_DIR"]) / "jobs.sqlite3")
        try:
            return json.dumps(db.execute("SELECT * FROM jobs").fetchall())
        finally:
            db.close()


class Slurm(Platform):
    name = "slurm"
    complete_raw_state = "COMPLETED"
    canceled_raw_state = "CANCELLED"

    def check_backend_id(self, sub: dict[str, Any]) -> None:
        assert sub["backend_id"].isdigit(), sub

    async def after_hello(self, c: Any, sub: dict[str, Any], done: dict[str, Any]) -> None:
        status = await call(c, "job_status", job_id=sub["job_id"])
        assert status["results_location"].startswith("lustre:///"), status

    async def after_cancel(self, sub: dict[str, Any], first: dict[str, Any]) -> None:
        states = sacct_names(sub["backend_name"])
        assert len(states) == 1 and "CANCELLED" in states[0], states

    def launched_once(self, first: dict[str, Any]) -> None:
        assert len(sacct_names(first["backend_name"])) == 1

    def check_preview(self, files: dict[str, str]) -> None:
        assert "NGC_KEY" in json.dumps(files)

    def secrets_at_rest(self, sub: dict[str, Any], canaries: dict[str, str]) -> None:
        job_dir = Path(self.env["SLURM_BASE_RESULTS_DIR"]) / "tao-mcp" / sub["job_id"]
        for name in ("job.sbatch", "command.sh", "job.env"):
            assert_no_canary((job_dir / name).read_text(), canaries)
        assert (job_dir / "secrets.env").stat().st_mode & 0o077 == 0, "the secrets file must be private (0600)"


class Docker(Platform):
    name = "docker"
    complete_raw_state = "exited"
    canceled_raw_state = "canceled"

    def __init__(self, env: dict[str, str], request: pytest.FixtureRequest) -> None:
        super().__init__(env, request)
        request.getfixturevalue("docker_cleanup")
        self.client = request.getfixturevalue("docker_client")

    def base(self) -> dict[str, Any]:
        return {**super().base(), "image": self.env["TAO_MCP_TEST_IMAGE"]}

    def failing(self) -> dict[str, Any]:
        return {**super().failing(), "image": self.env["TAO_MCP_TEST_PY_IMAGE"]}

    def python_image(self) -> dict[str, Any]:
        return {"image": self.env["TAO_MCP_TEST_PY_IMAGE"]}

    def check_backend_id(self, sub: dict[str, Any]) -> None:
        assert len(sub["backend_id"]) == 64, sub

    async def after_hello(self, c: Any, sub: dict[str, Any], done: dict[str, Any]) -> None:
        container = self.client.containers.get(sub["backend_id"])
        assert container.labels["tao-mcp.job-id"] == sub["job_id"] and container.labels["tao-mcp.managed"] == "true"

    async def after_cancel(self, sub: dict[str, Any], first: dict[str, Any]) -> None:
        assert self.client.containers.get(sub["backend_id"]).status == "exited"

    def launched_once(self, first: dict[str, Any]) -> None:
        found = self.client.containers.list(all=True, filters={"label": f"tao-mcp.job-id={first['job_id']}"})
        assert len(found) == 1

    def check_preview(self, files: dict[str, str]) -> None:
        launch = files["launch"]
        assert "-e NGC_KEY" in launch and "-e HF_TOKEN" in launch, launch


class Kubernetes(Platform):
    name = "kubernetes"
    complete_raw_state = "Complete"
    canceled_raw_state = "Deleted"
    cancel_confirms_at_once = False  # a Foreground deletion can outlast the call on a loaded machine
    logs_survive_cancel = False  # the pods, and with them their logs, are deleted

    def base(self) -> dict[str, Any]:
        return {
            **super().base(),
            "image": self.env["TAO_MCP_TEST_IMAGE"],
            "options": {"image_pull_policy": "IfNotPresent"},
        }

    def hello_extra(self) -> dict[str, Any]:
        return {"gpu_count": 1}  # the dev node advertises fake nvidia.com/gpu capacity

    def failing(self) -> dict[str, Any]:
        return {**super().failing(), "image": self.env["TAO_MCP_TEST_PY_IMAGE"]}

    def python_image(self) -> dict[str, Any]:
        return {"image": self.env["TAO_MCP_TEST_PY_IMAGE"]}

    def long_running(self) -> dict[str, Any]:
        command = "trap 'echo got-term; exit 143' TERM; echo started; while true; do sleep 1; done"
        return {**self.base(), "command": command}

    def check_backend_id(self, sub: dict[str, Any]) -> None:
        assert sub["backend_id"] == f"default/tao-{sub['job_id']}", sub

    async def after_hello(self, c: Any, sub: dict[str, Any], done: dict[str, Any]) -> None:
        from tao_mcp.drivers.k8s import KubernetesDriver

        job = kubectl_json(self.env, "get", "job", f"tao-{sub['job_id']}")
        pod_spec = job["spec"]["template"]["spec"]
        assert pod_spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert pod_spec["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] == 0
        assert job["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "tao-mcp"
        driver = KubernetesDriver(self.env)
        ref = JobRef(sub["job_id"], f"tao-{sub['job_id']}", sub["backend_id"], {"namespace": "default"}, 0.0)
        rows = await driver.replicas(ref)
        await driver.aclose()
        assert len(rows) == 1 and rows[0]["phase"] == "Succeeded" and rows[0]["node"] and rows[0]["exit_code"] == 0
        assert rows[0]["readiness_issue"] is None

    def failure_evidence(self) -> str | None:
        return "exit code 3"  # the pod's terminated state

    async def after_cancel(self, sub: dict[str, Any], first: dict[str, Any]) -> None:
        import subprocess

        gone = subprocess.run(kubectl(self.env, "get", "job", sub["backend_name"]), capture_output=True, text=True)
        assert gone.returncode != 0 and "NotFound" in gone.stderr
        pods = kubectl_json(self.env, "get", "pods", "-l", f"tao-mcp/job-id={sub['job_id']}")
        assert pods["items"] == []

    def launched_once(self, first: dict[str, Any]) -> None:
        jobs = kubectl_json(self.env, "get", "jobs", "-l", f"tao-mcp/job-id={first['job_id']}")
        assert len(jobs["items"]) == 1

    def check_preview(self, files: dict[str, str]) -> None:
        assert "secretKeyRef" in json.dumps(files)

    def secrets_at_rest(self, sub: dict[str, Any], canaries: dict[str, str]) -> None:
        name = f"tao-{sub['job_id']}"
        job = kubectl_json(self.env, "get", "job", name)
        assert_no_canary(json.dumps(job), canaries)  # the Job spec as the API server stores it
        env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["NGC_KEY"]["valueFrom"]["secretKeyRef"] == {"name": name, "key": "NGC_KEY"}
        secret = kubectl_json(self.env, "get", "secret", name)
        owners = secret["metadata"].get("ownerReferences") or []
        assert [(o["kind"], o["name"], o["uid"]) for o in owners] == [("Job", name, job["metadata"]["uid"])]


class Lepton(Platform):
    """The fake Lepton workspace runs no commands: a job's output and outcome are steered through FAKE_* envs."""

    name = "lepton"
    complete_raw_state = "Completed"
    canceled_raw_state = "Deleted"
    failing_exit_code = None  # Lepton reports no exit code
    failing_exception = "RuntimeError: boom"  # the fake's traceback
    secret_line = "NGC_KEY=[REDACTED]"

    def __init__(self, env: dict[str, str], request: pytest.FixtureRequest) -> None:
        super().__init__(env, request)
        self.fake = request.getfixturevalue("fake_lepton")

    def base(self) -> dict[str, Any]:
        return {"platform": "lepton", "image": TAO_IMAGE, "command": "python train.py"}

    def printing(self, *lines: str, seconds: float = 0, **extra: Any) -> dict[str, Any]:
        env = {"FAKE_LOG_TEXT": "|".join(lines), **({"FAKE_DURATION_S": f"{seconds:g}"} if seconds else {})}
        return {**self.base(), "env": env, **extra}

    def hello_extra(self) -> dict[str, Any]:
        return {"gpu_count": 2}

    def growing(self, first: str, then: str, pause_s: float) -> dict[str, Any]:
        # the fake spreads a job's 4 lines (start, first, then, done) over its run
        return {**self.base(), "env": {"FAKE_LOG_TEXT": f"{first}|{then}", "FAKE_DURATION_S": f"{pause_s * 3:g}"}}

    def failing(self) -> dict[str, Any]:
        return {**self.base(), "env": {"FAKE_LOG_TEXT": "about-to-fail", "FAKE_OUTCOME": "fail"}}

    def long_running(self) -> dict[str, Any]:
        # the fake spreads a job's lines over its run: 600 more lines put `started` in its first tenth of a second
        return {**self.base(), "env": {"FAKE_LOG_TEXT": "started", "FAKE_LOG_LINES": "600", "FAKE_DURATION_S": "60"}}

    def printing_secrets(self) -> dict[str, Any]:
        return {**self.base(), "env": {"FAKE_PRINT_SECRETS": "1"}, "secret_env": list(self.secret_names)}

    def training(self, epochs: int, seconds: float) -> dict[str, Any]:
        """The fake runs no command: it prints the lines the runner would forward, spread over the run."""
        records = [
            "[tao-progress] "
            + json.dumps({"epoch": e, "max_epoch": epochs, "kpi": {"loss": round(1 / e, 4)}, "status": "RUNNING"})
            for e in range(1, epochs + 1)
        ]
        records.append("[tao-progress] " + json.dumps({"status": "SUCCESS", "message": "done"}))
        env = {"FAKE_LOG_TEXT": "|".join(records), "FAKE_DURATION_S": f"{epochs * seconds:g}"}
        return {**self.base(), "command": "python train.py --results {results_dir}", "env": env}

    def expected_lines(self, sub: dict[str, Any], printed: list[str]) -> list[str]:
        return [f"fake-lepton: job {sub['backend_name']} replica start", *printed, "fake-lepton: done"]

    def check_backend_id(self, sub: dict[str, Any]) -> None:
        # the created job's metadata.id is the handle, not the name we asked for
        assert sub["backend_id"].startswith(sub["backend_name"] + "-"), sub

    async def after_hello(self, c: Any, sub: dict[str, Any], done: dict[str, Any]) -> None:
        (body,) = self.fake.posted_jobs()
        spec = body["spec"]
        assert body["metadata"]["id"] == sub["backend_name"]
        assert body["metadata"]["labels"] == {"tao-mcp-job-id": sub["job_id"]}
        assert spec["resource_shape"] == "gpu.2xa100"  # exact GPU match from /shapes
        assert spec["affinity"] == {"allowed_dedicated_node_groups": ["ng-a100-0001"]}
        assert spec["container"]["image"] == TAO_IMAGE and spec["container"]["command"][:2] == ["/bin/bash", "-c"]
        envs = {e["name"]: e for e in spec["envs"]}
        assert envs["TAO_JOB_ID"] == {"name": "TAO_JOB_ID", "value": sub["job_id"]}
        assert envs["FAKE_DURATION_S"]["value"] == "3"
        assert spec["completions"] == spec["parallelism"] == 1 and spec["intra_job_communication"] is False
        assert spec["ttl_seconds_after_finished"] == 3 * 24 * 3600  # the platform's own default
        assert spec["image_pull_secrets"] == ["tao-mcp-nvcr"]  # nvcr.io image + NGC_KEY: the workspace pull secret

    async def after_cancel(self, sub: dict[str, Any], first: dict[str, Any]) -> None:
        assert "cancel_job" in first["message"], first

    def launched_once(self, first: dict[str, Any]) -> None:
        assert len(self.fake.posted_jobs()) == 1

    def check_preview(self, files: dict[str, str]) -> None:
        assert "secret_name_ref" in files["job.json"]
        assert not self.fake.posted_jobs() and not self.fake.secrets  # a dry run launches nothing

    def after_secret_submit(self, sub: dict[str, Any]) -> None:
        assert any(name.startswith(f"TAO_MCP_{sub['job_id']}_") for name in self.fake.secrets)

    def backend_secrets(self) -> dict[str, str]:
        return {"LEPTON_AUTH_TOKEN": self.env["LEPTON_AUTH_TOKEN"]}

    def secrets_at_rest(self, sub: dict[str, Any], canaries: dict[str, str]) -> None:
        assert not [n for n in self.fake.secrets if sub["job_id"] in n]  # per-job secrets are deleted at the end
        (body,) = self.fake.posted_jobs()
        assert_no_canary(json.dumps(body), canaries)
        refs = {e["name"]: e for e in body["spec"]["envs"] if "value_from" in e}
        assert set(refs) == set(self.secret_names)
        posted = [r["body"] for r in self.fake.requests if (r["method"], r["path"]) == ("POST", "/usersecrets")]
        stored = {item["name"]: item["value"] for item in posted[0]}
        for name, entry in refs.items():
            assert set(entry) == {"name", "value_from"}
            assert stored[entry["value_from"]["secret_name_ref"]] == canaries[name]
        # the values travelled only in the POST /usersecrets body (and NGC_KEY once into the nvcr.io pull secret)
        carriers = [r for r in self.fake.requests if canaries["NGC_KEY"] in json.dumps(r)]
        assert [(r["method"], r["path"]) for r in carriers] == [("POST", "/imagepullsecrets"), ("POST", "/usersecrets")]
        assert self.fake.pull_secrets["tao-mcp-nvcr"]["password"] == canaries["NGC_KEY"]


class Brev(Platform):
    name = "brev"
    complete_raw_state = "EXITED"
    canceled_raw_state = "CANCELED"
    instance = "gpu-box"

    def __init__(self, env: dict[str, str], request: pytest.FixtureRequest) -> None:
        super().__init__(env, request)
        self.fake: FakeBrev = request.getfixturevalue("fake_brev")

    def base(self) -> dict[str, Any]:
        return {"platform": "brev", "image": TAO_IMAGE, "options": {"instance": self.instance, "gpu_name": "L4"}}

    def expected_lines(self, sub: dict[str, Any], printed: list[str]) -> list[str]:
        # job.log holds the image pull (the fake shim's first, fresh pull) before the container's output
        repo = TAO_IMAGE.rsplit(":", 1)[0]
        return [
            f"[tao-mcp] pulling image {TAO_IMAGE}",
            f"latest: Pulling from {repo}",
            "Digest: sha256:5f0b6d3c0e3f1f3bbd5c2dd9c1c8a1c5f2b3a4e5d6c7b8a9f0e1d2c3b4a59687",
            f"Status: Downloaded newer image for {TAO_IMAGE}",
            *printed,
        ]

    def check_backend_id(self, sub: dict[str, Any]) -> None:
        assert sub["backend_id"] == f"{self.instance}/tao-{sub['job_id']}", sub

    async def after_hello(self, c: Any, sub: dict[str, Any], done: dict[str, Any]) -> None:
        results = self.env["BREV_RESULTS_DIR"]
        assert sub["results_location"] == f"file://{results}/{sub['job_id']}"
        assert Path(results).is_dir()  # the results root was made on the instance
        assert done["started_at"] and done["ended_at"], done
        # the container: labels, GPUs, and the environment only through --env-file
        container = self.fake.container(self.instance, f"tao-{sub['job_id']}")
        assert container["Labels"] == {"tao-mcp.job-id": sub["job_id"], "tao-mcp.managed": "true"}
        args = container["Args"]
        assert args[args.index("--gpus") + 1] == "1" and "--env-file" in args and "-e" not in args
        self.after_restart()
        assert self.fake.instances()[self.instance]["instance_type"] == "g6.xlarge"  # created from gpu_name=L4

    async def after_cancel(self, sub: dict[str, Any], first: dict[str, Any]) -> None:
        assert self.fake.container(self.instance, f"tao-{sub['job_id']}")["State"]["Running"] is False

    def after_restart(self) -> None:
        # every brev call had stdin = /dev/null (a character device), never a pipe: a stdio server's stdin is
        # the protocol, which a brev reading it would swallow
        assert {call["stdin"] for call in self.fake.calls()} == {"chr"}

    def launched_once(self, first: dict[str, Any]) -> None:
        jobs = self.fake.job_dir(self.instance, first["job_id"]).parent
        assert [p.name for p in jobs.iterdir()] == [first["job_id"]]
        launches = [x for x in self.fake.calls("exec") if "__TAO_LAUNCH" in x["argv"][-1]]
        assert len(launches) == 1

    def check_preview(self, files: dict[str, str]) -> None:
        assert "NGC_KEY=<secret: value not shown>" in json.dumps(files), files

    def backend_secrets(self) -> dict[str, str]:
        return {"BREV_API_TOKEN": self.env["BREV_API_TOKEN"]}

    def secrets_at_rest(self, sub: dict[str, Any], canaries: dict[str, str]) -> None:
        jdir = self.fake.job_dir(self.instance, sub["job_id"])
        for name in ("run.sh", "command.sh", "job.env"):
            assert_no_canary((jdir / name).read_text(), canaries)
        assert (jdir / "secrets.env").stat().st_mode & 0o077 == 0, "secrets.env must be private (0600)"
        assert canaries["NGC_KEY"] in (jdir / "secrets.env").read_text()
        assert_no_canary(json.dumps(self.fake.container(self.instance, f"tao-{sub['job_id']}")["Args"]), canaries)
        assert_no_canary((self.fake.root / "calls.log").read_text(), {"token": self.env["BREV_API_TOKEN"]})


PLATFORMS: dict[str, tuple[type[Platform], str]] = {
    "slurm": (Slurm, "slurm_env"),
    "docker": (Docker, "docker_env"),
    "kubernetes": (Kubernetes, "k8s_env"),
    "lepton": (Lepton, "lepton_env"),
    "brev": (Brev, "brev_env"),
}


async def confirmed_cancel(c: Any, job_id: str, budget_s: float = 120) -> dict[str, Any]:
    """cancel_job, then (when the backend's deletion outlasted the call and it said Canceling) job_status until the
    backend confirms: the documented contract; a loaded machine can take longer than one call."""
    result = await call(c, "cancel_job", job_id=job_id)
    if result["status"] == "Canceling":
        result = await wait_status(c, job_id, lambda s: s["status"] != "Canceling", budget_s)
    return result
