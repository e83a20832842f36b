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

from fixtures import leaks
from tao_mcp.drivers.base import JobRef
from tests.backends import FakeBrev, kubectl, kubectl_json, sacct_names
from tests.helpers import FAILING_COMMAND, call, wait_status

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
    leak_done_line = "leak-job done"  # the careless job's last line: it really ran and printed its secrets

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
        return {**self.base(), **self.python_image(), "command": f"echo about-to-fail; {FAILING_COMMAND}"}

    def long_running(self) -> dict[str, Any]:
        return self.printing("started", seconds=600)

    def leaky(self, names: list[str], seed: str) -> dict[str, Any]:
        """A careless job printing the secrets `names` in every form, and a PEM key from `seed` (fixtures/leaks.py)."""
        return {**self.base(), **self.python_image(), "command": leaks.command(names, seed), "secret_env": names}

    def python_image(self) -> dict[str, Any]:
        """What a job whose command runs python3 adds to base()."""
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

    async def backend_misbehaves(self) -> None:
        """Called while the leaky job runs: a fault of the backend's own that could carry a credential."""

    def misbehaved(self, transcript: str) -> None:
        """The fault of backend_misbehaves really reached the agent."""

    def written(self, sub: dict[str, Any]) -> dict[str, str]:
        """What this platform's backend holds for the job besides the secret store (files, objects, requests), by
        where it is: none may hold any form of a canary."""
        return {}

    def secrets_at_rest(self, sub: dict[str, Any], canaries: dict[str, str]) -> None:
        """How the secret values reach the job: only through the platform's secret mechanism."""

    def store_dump(self) -> str:
        db = sqlite3.connect(Path(self.env["TAO_MCP_STATE_DIR"]) / "jobs.sqlite3")
        try:
            return "\n".join(db.iterdump())
        finally:
            db.close()


SLURM_JOB_FILES = ("job.sbatch", "command.sh", "job.env")


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

    def job_dir(self, sub: dict[str, Any]) -> Path:
        return Path(self.env["SLURM_BASE_RESULTS_DIR"]) / "tao-mcp" / sub["job_id"]

    def written(self, sub: dict[str, Any]) -> dict[str, str]:
        # the batch script and its companions on the login node's shared file system
        return {f"login node {name}": (self.job_dir(sub) / name).read_text() for name in SLURM_JOB_FILES}

    def secrets_at_rest(self, sub: dict[str, Any], canaries: dict[str, str]) -> None:
        secrets_file = self.job_dir(sub) / "secrets.env"
        assert secrets_file.stat().st_mode & 0o077 == 0, "the secrets file must be private (0600)"


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

    def container_env(self, sub: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """The container's inspect data without its environment, and the environment."""
        attrs = self.client.containers.get(sub["backend_id"]).attrs
        env = attrs["Config"].pop("Env")
        return attrs, env

    def written(self, sub: dict[str, Any]) -> dict[str, str]:
        # plain containers have no secret store: the values are in Config.Env and nowhere else of the container
        attrs, _ = self.container_env(sub)
        return {"the container's config (but its environment)": json.dumps(attrs)}

    def secrets_at_rest(self, sub: dict[str, Any], canaries: dict[str, str]) -> None:
        _, env = self.container_env(sub)
        holding = sorted(item for item in env if any(v in item for v in canaries.values()))
        assert holding == sorted(f"{n}={canaries[n]}" for n in canaries), holding


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

    def written(self, sub: dict[str, Any]) -> dict[str, str]:
        job = kubectl_json(self.env, "get", "job", f"tao-{sub['job_id']}")
        pods = kubectl_json(self.env, "get", "pods", "-l", f"tao-mcp/job-id={sub['job_id']}")
        return {"the Job as the API server stores it": json.dumps(job), "its pods' specs": json.dumps(pods)}

    def secrets_at_rest(self, sub: dict[str, Any], canaries: dict[str, str]) -> None:
        name = f"tao-{sub['job_id']}"
        job = kubectl_json(self.env, "get", "job", name)
        env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["NGC_KEY"]["valueFrom"]["secretKeyRef"] == {"name": name, "key": "NGC_KEY"}
        secret = kubectl_json(self.env, "get", "secret", name)
        owners = secret["metadata"].get("ownerReferences") or []
        assert [(o["kind"], o["name"], o["uid"]) for o in owners] == [("Job", name, job["metadata"]["uid"])]


# The workspace APIs that hold secret values: per-job user secrets, and the nvcr.io pull secret made from NGC_KEY.
LEPTON_SECRET_STORES = {"image_pull": ("POST", "/imagepullsecrets"), "user": ("POST", "/usersecrets")}


class Lepton(Platform):
    """The fake Lepton workspace runs no commands: a job's output and outcome are steered through FAKE_* envs."""

    name = "lepton"
    complete_raw_state = "Completed"
    canceled_raw_state = "Deleted"
    failing_exit_code = None  # Lepton reports no exit code
    failing_exception = "RuntimeError: boom"  # the fake's traceback
    leak_done_line = "fake-lepton: done"

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

    def leaky(self, names: list[str], seed: str) -> dict[str, Any]:
        env = {"FAKE_PRINT_SECRETS": "encoded", "FAKE_PEM_SEED": seed, "FAKE_DURATION_S": "6"}
        return {**self.base(), "env": env, "secret_env": names}

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

    async def backend_misbehaves(self) -> None:
        # A proxy in front of the API answers 5xx with the request's Authorization header in the body, while the
        # agent waits (progress notifications) and reads status.
        self.fake.echo_auth = True
        self.fake.fail_next_5xx = 12  # reads retry 4 times: three reads fail for good

    def misbehaved(self, transcript: str) -> None:
        assert self.fake.fail_next_5xx == 0, "the fake never answered 5xx"
        assert "upstream connect error" in transcript and "Authorization" in transcript, "no echoing error came back"

    def written(self, sub: dict[str, Any]) -> dict[str, str]:
        # the fake's request log: every request but those that store values as workspace secrets
        requests = [r for r in self.fake.requests if (r["method"], r["path"]) not in LEPTON_SECRET_STORES.values()]
        return {"the requests to the workspace": json.dumps(requests)}

    def secrets_at_rest(self, sub: dict[str, Any], canaries: dict[str, str]) -> None:
        assert not [n for n in self.fake.secrets if sub["job_id"] in n]  # per-job secrets are deleted at the end
        (body,) = self.fake.posted_jobs()
        refs = {e["name"]: e for e in body["spec"]["envs"] if "value_from" in e}
        assert set(refs) == set(canaries)  # secret_env: the platform names and the plain-looking one
        user_secrets = LEPTON_SECRET_STORES["user"]
        posted = [r["body"] for r in self.fake.requests if (r["method"], r["path"]) == user_secrets]
        stored = {item["name"]: item["value"] for item in posted[0]}
        for name, entry in refs.items():
            assert set(entry) == {"name", "value_from"}
            assert stored[entry["value_from"]["secret_name_ref"]] == canaries[name]
        # the values travelled only in the bodies of the secret stores: NGC_KEY also as the nvcr.io pull password
        for name, value in canaries.items():
            carriers = [(r["method"], r["path"]) for r in self.fake.requests if value in json.dumps(r)]
            stores = [LEPTON_SECRET_STORES[s] for s in ("image_pull", "user") if name == "NGC_KEY" or s == "user"]
            assert carriers == stores, (name, carriers)
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

    def written(self, sub: dict[str, Any]) -> dict[str, str]:
        jdir = self.fake.job_dir(self.instance, sub["job_id"])
        files = {f"instance {name}": (jdir / name).read_text() for name in ("run.sh", "command.sh", "job.env")}
        args = json.dumps(self.fake.container(self.instance, f"tao-{sub['job_id']}")["Args"])
        return {**files, "the container's arguments": args}

    def secrets_at_rest(self, sub: dict[str, Any], canaries: dict[str, str]) -> None:
        jdir = self.fake.job_dir(self.instance, sub["job_id"])
        assert jdir.stat().st_mode & 0o077 == 0, "the job directory must be private (0700)"
        assert (jdir / "secrets.env").stat().st_mode & 0o077 == 0, "secrets.env must be private (0600)"
        assert canaries["NGC_KEY"] in (jdir / "secrets.env").read_text()
        assert not (jdir / "secrets.env.incoming").exists()  # moved into place by the launch
        # no brev command line (its argv, readable by any local user, nor the command exec runs on the instance)
        # holds any form of a value: the secrets travel as a file, by one `brev copy` into the job directory, from
        # a private temporary file that is gone once submit_job answered
        leaks.assert_absent((self.fake.root / "calls.log").read_text(), canaries, "a brev command line")
        copies = [x["argv"] for x in self.fake.calls("copy") if sub["job_id"] in x["argv"][-1]]
        assert len(copies) == 1 and "--host" not in copies[0], copies
        source, target = copies[0][-2:]
        assert target == f"{self.instance}:{jdir.resolve()}/secrets.env.incoming", target
        assert not Path(source).exists() and not Path(source).parent.exists(), source
        # brev login --token is the one command line with a credential (the CLI offers no other non-interactive
        # login); the fake masks it in calls.log
        assert self.env["BREV_API_TOKEN"] not in (self.fake.root / "calls.log").read_text()


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
