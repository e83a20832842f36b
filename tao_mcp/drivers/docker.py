"""DockerDriver: one container per job on a Docker engine (DOCKER_HOST or the local socket), via the docker SDK.

The container is named `tao-<job_id>` and labelled `tao-mcp.job-id=<job_id>`, `tao-mcp.managed=true`; it is kept
after it exits (its state, exit code and log are the job's record). Every status sweep is ONE
`GET /containers/json?all=1&filters={"label": ["tao-mcp.managed=true"]}`. The docker SDK is imported only inside
functions, and every SDK call runs in a worker thread. A daemon that cannot be reached raises BackendUnreachable —
never a job state.

Cancel renames the container to `tao-<job_id>.canceled` before stopping it: the rename is durable on the engine,
shows in the one list call, and lets a stateless driver report Canceled (not Error 143) for a stop it asked for.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import anyio

from tao_mcp.drivers import logfile
from tao_mcp.drivers.base import (
    RAW_LINE_CHARS,
    Evidence,
    JobRef,
    LaunchRequest,
    LogChunk,
    LogMark,
    LogMode,
    Observation,
    Preview,
    clip_text,
    never_connected,
    nothing_sent,
    with_distributed_env,
)
from tao_mcp.drivers.docker_options import (
    DockerOptions,
    DockerSettings,
    mount_text,
    parse_mount,
    results_root_of,
)
from tao_mcp.errors import BackendRejected, BackendUnreachable, TaoError
from tao_mcp.states import JobState

log = logging.getLogger(__name__)

PLATFORM = "docker"
LABEL_JOB = "tao-mcp.job-id"
LABEL_MANAGED = "tao-mcp.managed"
MANAGED_FILTER = f"{LABEL_MANAGED}=true"
CANCELED_SUFFIX = ".canceled"
API_TIMEOUT = 60
STOP_TIMEOUT = 10
NGC_REGISTRY = "nvcr.io"
EXITED = re.compile(r"^Exited \((-?\d+)\)")
GPU_DRIVER_MISSING = 'could not select device driver ""'
NO_SUCH_SHELL = re.compile(r'exec: "/bin/bash": stat /bin/bash: no such file or directory|"/bin/bash".*not found', re.I)

T = TypeVar("T")

# gpus='all': the container counts the GPUs it was given (a NUM_GPU_PER_NODE set in env wins)
COUNT_GPUS = "export NUM_GPU_PER_NODE=\"${NUM_GPU_PER_NODE:-$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')}\""


def _registry(image: str) -> str | None:
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first.lower()
    return None


def split_image(image: str) -> tuple[str, str]:
    """repository, tag-or-digest ('latest' when absent), the way `docker pull` reads a reference."""
    if "@" in image:
        repo, _, digest = image.partition("@")
        return repo, digest
    head, _, last = image.rpartition("/")
    if ":" in last:
        name, _, tag = last.partition(":")
        return (f"{head}/{name}" if head else name), tag
    return image, "latest"


# --- states -------------------------------------------------------------------------------------------------------


def observation_from_summary(item: Mapping[str, Any]) -> Observation:
    """One row of GET /containers/json -> Observation (mapping table in docs/platforms.md: Docker)."""
    state = str(item.get("State") or "").lower()
    status_text = str(item.get("Status") or "")
    names = [str(n).lstrip("/") for n in item.get("Names") or []]
    canceled = any(n.endswith(CANCELED_SUFFIX) for n in names)
    if state == "created":
        if canceled:
            return Observation(JobState.CANCELED, "canceled (never started)", "canceled before the container started")
        return Observation(
            JobState.PENDING, state, "container created, not started yet", pending_reason="ContainerCreated"
        )
    if state in ("running", "restarting"):
        return Observation(JobState.RUNNING, state, status_text or state, started_at=None)
    if state == "paused":
        return Observation(JobState.PAUSED, state, status_text or state)
    if state in ("exited", "dead"):
        match = EXITED.match(status_text)
        code = int(match.group(1)) if match else None
        if canceled:
            return Observation(
                JobState.CANCELED, f"canceled ({state}, exit {code})", "stopped by cancel_job", exit_code=code
            )
        if state == "exited" and code == 0:
            return Observation(JobState.COMPLETE, state, "exited with code 0", exit_code=0)
        what = f"exit code {code}" if code is not None else "no exit code"
        note = " (SIGKILL: out of memory or killed)" if code == 137 else ""
        return Observation(JobState.ERROR, state, f"container {state} with {what}{note}", exit_code=code)
    if state == "removing":
        return Observation(JobState.UNKNOWN, state, "the container is being removed")
    return Observation(
        JobState.UNKNOWN, state or "unknown", status_text or f"unrecognized container state {state!r}", None
    )


def removed_observation(ref: JobRef) -> Observation:
    return Observation(
        JobState.ERROR,
        "REMOVED",
        f"container {ref.backend_name} is no longer on the docker engine (removed outside tao-mcp); "
        "its outcome is unknown",
    )


# --- the driver ---------------------------------------------------------------------------------------------------


class DockerDriver:
    platform = "docker"
    storage_scheme = "file"

    def __init__(self, settings: DockerSettings | Mapping[str, str]) -> None:
        self.settings = DockerSettings.of(settings)
        self.environment = self.settings.client_environment()
        self.host = self.settings.host or "unix:///var/run/docker.sock"
        self.ngc_key = self.settings.ngc_key.get_secret_value() if self.settings.ngc_key else None
        self.default_pull = self.settings.pull_policy
        self._client: Any = None
        self._lock = anyio.Lock()

    # --- transport ----------------------------------------------------------------------------------------------

    def _unreachable(self, exc: BaseException) -> BackendUnreachable:
        text = clip_text(str(exc).split("\n")[0], 300)
        return BackendUnreachable(
            PLATFORM,
            f"the docker engine at {self.host} does not answer ({type(exc).__name__}: {text})",
            "start dockerd (or fix DOCKER_HOST) and retry; jobs are unaffected and are read again when it answers",
            sent=False if never_connected(exc) else None,
        )

    async def _docker(self) -> Any:
        async with self._lock:
            if self._client is None:
                self._client = await self._run(self._connect, connect=False)
            return self._client

    def _connect(self) -> Any:
        import docker

        return docker.from_env(environment=self.environment, timeout=API_TIMEOUT)

    async def _run(self, fn: Callable[[], T], *, connect: bool = True) -> T:
        """An SDK call in a worker thread; transport failures become BackendUnreachable."""
        import requests
        from docker.errors import APIError, DockerException

        def call() -> T:
            try:
                return fn()
            except APIError:
                raise
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError, OSError) as e:
                raise self._unreachable(e) from None
            except DockerException as e:  # "Error while fetching server API version": no daemon
                if connect:
                    raise
                raise self._unreachable(e) from None

        return await anyio.to_thread.run_sync(call, abandon_on_cancel=True)

    async def _list(self) -> list[dict[str, Any]]:
        client = await self._docker()
        return await self._run(lambda: client.api.containers(all=True, filters={"label": MANAGED_FILTER}))

    # --- options ------------------------------------------------------------------------------------------------

    def parse_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        return DockerOptions.parse(options, self.settings)

    async def results_root(self, options: Mapping[str, Any], *, resolve: bool = True) -> str | None:
        return results_root_of(parse_mount(m) for m in options.get("mounts") or [])

    # --- launch -------------------------------------------------------------------------------------------------

    def _gpu_count(self, req: LaunchRequest) -> int:
        gpus = req.options.get("gpus")
        if gpus == "all":
            return -1
        return int(gpus) if gpus is not None else req.gpu_count

    def check_request(self, req: LaunchRequest) -> None:
        """A job Docker can never run: refused before it is recorded (HasRequestCheck)."""
        if not req.image:
            raise TaoError(
                "E_BAD_INPUT", "a Docker job needs an image", "pass image='nvcr.io/nvidia/tao/tao-toolkit:<tag>'"
            )
        if req.num_nodes > 1:
            raise TaoError(
                "E_NOT_SUPPORTED",
                f"Docker runs a job on one host; num_nodes={req.num_nodes} needs a multi-node platform",
                "submit with num_nodes=1, or to slurm, kubernetes or lepton for a multi-node job",
            )

    def _create_args(self, req: LaunchRequest, shell: str) -> dict[str, Any]:
        """Keyword arguments of containers.create (secret values are added by launch only)."""
        self.check_request(req)
        opts = req.options
        gpus = self._gpu_count(req)
        command = req.command
        if gpus < 0:  # gpus='all': the container counts what it got
            command = f"{COUNT_GPUS}\n{command}"
        environment = with_distributed_env(req, max(gpus, 0))
        if gpus < 0 and "NUM_GPU_PER_NODE" not in req.env:
            environment.pop("NUM_GPU_PER_NODE")
        args: dict[str, Any] = {
            "image": req.image,
            "command": [shell, "-c", command],
            "name": req.backend_name,
            "labels": {LABEL_JOB: req.job_id, LABEL_MANAGED: "true"},
            "environment": environment,
            "detach": True,
        }
        mounts = [parse_mount(m) for m in opts.get("mounts") or []]
        if mounts:
            args["volumes"] = [mount_text(m) for m in mounts]
        if opts.get("memory"):
            args["mem_limit"] = opts["memory"]
            args["memswap_limit"] = opts["memory"]  # no swap on top: the limit is the limit
        if opts.get("cpus"):
            args["nano_cpus"] = int(float(opts["cpus"]) * 1e9)
        for key, arg in (
            ("shm_size", "shm_size"),
            ("user", "user"),
            ("network", "network_mode"),
            ("runtime", "runtime"),
            ("workdir", "working_dir"),
            ("ipc", "ipc_mode"),
            ("pid", "pid_mode"),
            ("privileged", "privileged"),
            ("cap_add", "cap_add"),
        ):
            if opts.get(key):
                args[arg] = opts[key]
        return args

    def _docker_run_line(self, args: Mapping[str, Any], secret_names: Iterable[str], pull: str, gpus: int) -> str:
        """The equivalent `docker run` (what an operator would type); secrets appear as `-e NAME` only."""
        parts = ["docker", "run", "-d", "--name", args["name"]]
        for key, value in args["labels"].items():
            parts += ["--label", f"{key}={value}"]
        parts += [f"--pull={pull}"]
        for name, value in args["environment"].items():
            parts += ["-e", f"{name}={value}"]
        for name in sorted(secret_names):
            parts += ["-e", name]  # value taken from the server environment, never written out
        for volume in args.get("volumes", []):
            parts += ["-v", volume]
        if gpus:
            parts += ["--gpus", "all" if gpus < 0 else str(gpus)]
        flags = {
            "mem_limit": "--memory",
            "memswap_limit": "--memory-swap",
            "shm_size": "--shm-size",
            "user": "--user",
            "network_mode": "--network",
            "runtime": "--runtime",
            "working_dir": "--workdir",
            "ipc_mode": "--ipc",
            "pid_mode": "--pid",
        }
        for key, flag in flags.items():
            if args.get(key):
                parts += [flag, str(args[key])]
        if args.get("privileged"):
            parts.append("--privileged")
        for capability in args.get("cap_add") or []:
            parts += ["--cap-add", capability]
        if args.get("nano_cpus"):
            parts += ["--cpus", f"{args['nano_cpus'] / 1e9:g}"]
        parts += [args["image"], *args["command"]]
        return shlex.join(parts)

    async def preview(self, req: LaunchRequest) -> Preview:
        gpus = self._gpu_count(req)
        args = self._create_args(req, "/bin/bash")
        spec = {
            **{k: v for k, v in args.items() if k != "detach"},
            "secret_env": sorted(req.secret_env),  # names only
            "gpus": "all" if gpus < 0 else gpus,
            "pull": req.options.get("pull", self.default_pull),
            "shell_fallback": "/bin/sh when the image has no /bin/bash",
        }
        if req.time_limit_minutes:
            spec["time_limit"] = f"{req.time_limit_minutes} min: not enforced by Docker (cancel_job stops the job)"
        if _registry(req.image or "") == NGC_REGISTRY:
            spec["registry_login"] = "nvcr.io as $oauthtoken with NGC_KEY" + ("" if self.ngc_key else " (NOT SET)")
        submit = self._docker_run_line(args, req.secret_env, str(spec["pull"]), gpus)
        return Preview(files={"container.json": json.dumps(spec, indent=2, sort_keys=True)}, submit=submit)

    async def _ensure_image(self, client: Any, image: str, pull: str) -> None:
        from docker.errors import APIError, ImageNotFound

        present = True
        if pull != "always":
            try:
                await self._run(lambda: client.images.get(image))
            except ImageNotFound:
                present = False
        if present and pull != "always":
            return
        if pull == "never":
            raise BackendRejected(
                PLATFORM,
                f"failed to pull image {image}: it is not on the docker host and the pull policy is never",
                f"load or build {image} on the docker host (docker pull / docker load), or submit with pull='missing'",
            )
        repo, tag = split_image(image)
        auth = None
        if _registry(image) == NGC_REGISTRY and self.ngc_key:
            auth = {"username": "$oauthtoken", "password": self.ngc_key}
        try:
            await self._run(lambda: client.images.pull(repo, tag=tag, auth_config=auth))
        except APIError as exc:
            raise BackendRejected(
                PLATFORM, f"failed to pull image {image}: {_explain(exc)}", self._pull_fix(image)
            ) from None

    def _pull_fix(self, image: str) -> str:
        if _registry(image) == NGC_REGISTRY:
            key = "NGC_KEY is set but was refused" if self.ngc_key else "NGC_KEY is not set"
            return (
                f"check that {image} exists (name and tag) and that your NGC key may pull it ({key}; "
                "set NGC_KEY in the server environment to an NGC API key), or docker load it on the host"
            )
        return (
            f"check the image name and tag {image!r}, that the docker host can reach its registry and is logged in "
            "to it (for nvcr.io images set NGC_KEY), or build/load it on the docker host"
        )

    async def launch(self, req: LaunchRequest) -> str:
        from docker.errors import APIError, NotFound

        self._create_args(req, "/bin/bash")  # validates (an image is required) before the engine is touched
        gpus = self._gpu_count(req)
        pull = str(req.options.get("pull") or self.default_pull)
        with nothing_sent():  # before the container is created: an outage here launched nothing
            client = await self._docker()
            await self._ensure_image(client, req.image or "", pull)
        # create: sent=False only when the engine could not be connected to; after a create, start's outage is
        # "unknown" (the container exists and is found again by its name)
        last_error = ""
        for shell in ("/bin/bash", "/bin/sh"):
            args = self._create_args(req, shell)
            args["environment"] = {**args["environment"], **req.secret_env}  # the SDK environment; never rendered
            if gpus:
                from docker.types import DeviceRequest

                args["device_requests"] = [DeviceRequest(count=gpus, capabilities=[["gpu"]])]
            create = functools.partial(client.containers.create, **args)
            try:
                container = await self._run(create)
            except APIError as exc:
                if exc.status_code != 409:
                    raise self._rejected(exc, req) from None
                # a launch that happened already (same deterministic name)
                adopted = await self._adopt(client, req)
                if adopted:
                    return adopted
                try:
                    container = await self._run(create)
                except APIError as again:
                    raise self._rejected(again, req) from None
            try:
                await self._run(container.start)
                return str(container.id)
            except APIError as exc:
                last_error = _explain(exc)
                with anyio.CancelScope(shield=True):
                    try:
                        await self._run(functools.partial(container.remove, force=True))
                    except (APIError, NotFound, TaoError) as cleanup:
                        log.warning("docker: could not remove %s after a failed start: %s", req.backend_name, cleanup)
                if shell == "/bin/bash" and NO_SUCH_SHELL.search(last_error):
                    log.info("docker: %s has no /bin/bash; running the command with /bin/sh", req.image)
                    continue
                raise self._rejected(exc, req) from None
        raise BackendRejected(PLATFORM, f"the container could not start: {last_error}", "use an image with a shell")

    async def _adopt(self, client: Any, req: LaunchRequest) -> str | None:
        """The id of this job's container from an earlier launch; None when that launch never started it.

        A launch interrupted between create and start (server killed) leaves a container that never ran. It may
        have been created for a shell the image lacks (the /bin/bash attempt), so it is removed and created
        again rather than started: nothing ran, so nothing is launched twice.
        """
        container = await self._run(lambda: client.containers.get(req.backend_name))
        if container.labels.get(LABEL_JOB) != req.job_id:
            raise BackendRejected(
                PLATFORM,
                f"a container named {req.backend_name} exists and does not belong to job {req.job_id}",
                f"remove it (docker rm {req.backend_name}) and submit again",
            )
        if container.status == "created":
            await self._run(functools.partial(container.remove, force=True))
            return None
        return str(container.id)

    def _rejected(self, exc: Any, req: LaunchRequest) -> TaoError:
        text = _explain(exc)
        if GPU_DRIVER_MISSING in text or "capabilities: [[gpu]]" in text:
            return BackendRejected(
                PLATFORM,
                f"the docker engine at {self.host} cannot give containers GPUs ({text}): the NVIDIA Container "
                "Toolkit is not installed or not configured for this dockerd",
                "install nvidia-container-toolkit on the docker host and run `nvidia-ctk runtime configure "
                "--runtime=docker` then restart dockerd; or submit with gpu_count=0 for a CPU-only job",
            )
        if "No such image" in text or "pull access denied" in text or "manifest unknown" in text:
            return BackendRejected(
                PLATFORM, f"failed to pull image {req.image}: {text}", self._pull_fix(req.image or "")
            )
        if "network" in text.lower() and "not found" in text.lower():
            return BackendRejected(PLATFORM, text, "give network as bridge, host, none or an existing network name")
        if "bind source path does not exist" in text or "invalid mount config" in text.lower():
            return BackendRejected(PLATFORM, text, "create the mount source on the docker host, or fix mounts")
        if "unknown or invalid runtime" in text:
            return BackendRejected(PLATFORM, text, "drop the runtime option or give a runtime dockerd knows")
        return BackendRejected(PLATFORM, text, "fix the image or the Docker options named above and submit again")

    # --- status -------------------------------------------------------------------------------------------------

    async def observe(self, refs: list[JobRef]) -> dict[str, Observation]:
        if not refs:
            return {}
        items = await self._list()
        by_job: dict[str, dict[str, Any]] = {}
        for item in items:
            job_id = (item.get("Labels") or {}).get(LABEL_JOB)
            if job_id:
                by_job[job_id] = item
        result: dict[str, Observation] = {}
        for ref in refs:
            mine = by_job.get(ref.job_id)
            if mine is not None and ref.backend_id and not str(mine.get("Id", "")).startswith(ref.backend_id):
                log.warning("docker: job %s is container %s, not %s", ref.job_id, mine.get("Id"), ref.backend_id)
            result[ref.job_id] = observation_from_summary(mine) if mine is not None else removed_observation(ref)
        return result

    async def find(self, refs: list[JobRef]) -> dict[str, str]:
        if not refs:
            return {}
        wanted = {ref.job_id: ref for ref in refs}
        found: dict[str, str] = {}
        for item in await self._list():
            job_id = (item.get("Labels") or {}).get(LABEL_JOB)
            ref = wanted.get(job_id or "")
            names = [str(n).lstrip("/") for n in item.get("Names") or []]
            if item.get("State") == "created":
                # Created but never started: a launch cut off between create and start is not a launched job. The
                # retried launch meets the name (409) and starts this very container (_adopt).
                continue
            if ref is not None and any(n in (ref.backend_name, ref.backend_name + CANCELED_SUFFIX) for n in names):
                found[ref.job_id] = str(item["Id"])
        return found

    async def _container(self, ref: JobRef) -> Any | None:
        from docker.errors import NotFound

        client = await self._docker()
        for key in (ref.backend_id, ref.backend_name, ref.backend_name + CANCELED_SUFFIX):
            if not key:
                continue
            try:
                container = await self._run(functools.partial(client.containers.get, key))
            except NotFound:
                continue
            if container.labels.get(LABEL_JOB) == ref.job_id:
                return container
        return None

    # --- logs ---------------------------------------------------------------------------------------------------

    async def read_log(
        self, ref: JobRef, *, mode: LogMode, at: LogMark | None, limit: int, context: int, max_bytes: int
    ) -> LogChunk:
        container = await self._container(ref)
        if container is None:
            return logfile.empty(at)

        async def tail(n: int, until: int | None) -> list[logfile.Row]:
            return await self._run(lambda: _log_tail(container, n))

        return await logfile.read_stream(tail, mode=mode, at=at, limit=limit, context=context)

    # --- cancel / evidence --------------------------------------------------------------------------------------

    async def cancel(self, ref: JobRef) -> None:
        from docker.errors import APIError

        container = await self._container(ref)
        if container is None:
            return  # nothing to stop; observe() reports the missing container
        await self._run(container.reload)
        if container.status in ("exited", "dead"):
            return  # finished on its own: its real outcome stands
        name = container.name.lstrip("/")
        try:
            if not name.endswith(CANCELED_SUFFIX):
                await self._run(lambda: container.rename(ref.backend_name + CANCELED_SUFFIX))
            if container.status == "paused":
                await self._run(container.unpause)
            await self._run(lambda: container.stop(timeout=STOP_TIMEOUT))
            await self._run(container.reload)
        except APIError as exc:
            if exc.status_code == 404:
                return
            raise BackendRejected(
                PLATFORM, f"stopping {ref.backend_name}: {_explain(exc)}", "retry cancel_job"
            ) from None
        if container.status not in ("exited", "dead", "created"):
            log.warning("docker: %s still %s after stop", ref.backend_name, container.status)

    async def failure_evidence(self, ref: JobRef) -> list[Evidence]:
        container = await self._container(ref)
        if container is None:
            return [Evidence("state", removed_observation(ref).message)]
        attrs = container.attrs
        state = attrs.get("State") or {}
        host = attrs.get("HostConfig") or {}
        evidence = [Evidence("state", f"container {container.name.lstrip('/')}: {state.get('Status', '?')}")]
        code = state.get("ExitCode")
        if state.get("Status") in ("exited", "dead") and code not in (None, 0):
            note = " (SIGKILL)" if code == 137 else (" (SIGTERM)" if code == 143 else "")
            evidence.append(Evidence("exit_code", f"exit code {code}{note}"))
        if state.get("OOMKilled"):
            limit = host.get("Memory") or 0
            where = f"its memory limit of {limit // (1024 * 1024)} MiB" if limit else "the host's memory"
            evidence.append(
                Evidence("state", f"State.OOMKilled=true: the kernel killed the container for exceeding {where}")
            )
        if state.get("Error"):
            evidence.append(Evidence("reason", f"docker: {state['Error']}"))
        return evidence

    # --- diagnostics --------------------------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Import the docker SDK and build the client (no request to the engine)."""
        await self._docker()

    async def probe(self) -> None:
        """Readiness: the engine answers a ping."""
        client = await self._docker()
        await self._run(client.ping)

    async def diagnostics(self) -> dict[str, str | bool | None]:
        """Preflight facts for the agent; never raises for an unreachable daemon or missing GPUs."""
        facts: dict[str, str | bool | None] = {
            "docker_host": self.host,
            "reachable": False,
            "server_version": None,
            "api_version": None,
            "default_runtime": None,
            "runtimes": None,
            "nvidia_runtime": None,
            "gpus_visible": None,
            "error": None,
        }
        try:
            client = await self._docker()
            info = await self._run(client.info)
            version = await self._run(client.version)
        except TaoError as exc:
            facts["error"] = exc.cause
            return facts
        except Exception as exc:  # diagnostics report, they do not fail
            facts["error"] = f"{type(exc).__name__}: {clip_text(str(exc), 300)}"
            return facts
        runtimes = sorted((info.get("Runtimes") or {}).keys())
        nvidia = "nvidia" in runtimes or info.get("DefaultRuntime") == "nvidia"
        cdi = any("nvidia.com/gpu" in str(d) for d in info.get("DiscoveredDevices") or [])
        facts.update(
            reachable=True,
            server_version=str(version.get("Version") or info.get("ServerVersion") or ""),
            api_version=str(version.get("ApiVersion") or ""),
            default_runtime=str(info.get("DefaultRuntime") or ""),
            runtimes=", ".join(runtimes),
            nvidia_runtime=nvidia,
            # Without running a container, GPUs are "visible" only through the NVIDIA runtime or CDI devices.
            gpus_visible=bool(nvidia or cdi),
        )
        return facts

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(client.close)


def _explain(exc: Any) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return clip_text(" ".join(str(text).split()), 800)


def _log_tail(container: Any, n: int) -> list[logfile.Row]:
    """The container's last n lines with their timestamps (`logs(tail=n)`: the daemon reads them backward from
    the end), streamed so one enormous line keeps only its head (clip marks the cut)."""
    rows: list[logfile.Row] = []
    pending = b""
    for chunk in container.logs(stdout=True, stderr=True, stream=True, follow=False, timestamps=True, tail=n):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        rows += (logfile.stamped(raw) for raw in complete)
        if len(pending) > RAW_LINE_CHARS * 4:
            pending = pending[: RAW_LINE_CHARS * 4]
    if pending:
        rows.append(logfile.stamped(pending))
    return rows
