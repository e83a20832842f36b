"""BrevDriver: jobs are docker containers on Brev GPU instances, driven through the `brev` CLI.

- An instance is named by the `instance` option (or BREV_INSTANCE) and reused; with `type` / `gpu_name` it is
  created when it does not exist. submit waits at most BREV_READY_TIMEOUT (40 s) for RUNNING and a working
  exec; past that it fails with E_BREV_INSTANCE_NOT_READY naming the instance (which keeps starting and bills)
  so the agent submits again with options={"instance": ...} once list_instances shows it RUNNING.
  Instances are never deleted implicitly: delete_instance is the agent's (destructive) tool.
- A launch is: the probe exec; when the job has secrets, an exec that makes the job directory and a `brev copy`
  of secrets.env into it; then one exec (remote.launch_body) that writes the other files and starts the job once.
  The backend id is `<instance>/tao-<job_id>`.
- observe: one `brev ls --json` per sweep plus one exec per RUNNING instance covering all its jobs.
- Secrets reach the container through `--env-file secrets.env` (mode 0600 on the instance). A secret value is never
  on a command line: not in brev's argv (readable by any local user in /proc/<pid>/cmdline), not in the remote
  shell command (visible on the instance). brev exec has no usable stdin (it must be /dev/null), so the values
  travel as a file: written 0600 in a private temporary directory on the server, `brev copy`-ed to the instance
  (scp under the hood), moved into place by the launch exec; the local file is removed at once. They are never
  in a preview, an error, a log line or the job store either.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from collections.abc import Mapping
from typing import Any

import anyio

from tao_mcp.drivers import logfile
from tao_mcp.drivers.base import (
    Evidence,
    JobRef,
    LaunchRequest,
    LogChunk,
    LogMark,
    LogMode,
    Observation,
    Preview,
    nothing_sent,
)
from tao_mcp.drivers.brev import remote
from tao_mcp.drivers.brev.cli import PLATFORM, STARTING, BrevCLI, Instance, Result
from tao_mcp.drivers.brev.options import INSTANCE_NAME, BrevOptions, BrevSettings
from tao_mcp.errors import BackendRejected, BackendUnreachable, TaoError
from tao_mcp.states import JobState

log = logging.getLogger(__name__)

LAUNCH_TIMEOUT_S = 90.0
CANCEL_TIMEOUT_S = 90.0
POLL_S = 2.0
PARALLEL_EXECS = 4
# scp's answer from the instance itself (not a lost connection): the copy was refused there
_REFUSED_COPY = re.compile(r"No space left|Permission denied|No such file or directory|Disk quota", re.IGNORECASE)


class BrevDriver:
    platform = "brev"
    storage_scheme = "file"

    def __init__(self, settings: BrevSettings | Mapping[str, str]) -> None:
        self.settings = BrevSettings.of(settings)
        self.cli = BrevCLI(self.settings)
        self.ready_s = self.settings.ready_timeout
        self.poll_s = min(POLL_S, self.ready_s / 4)
        self.default_instance = self.settings.instance
        self.results_dir = self.settings.results_dir

    # --- options ----------------------------------------------------------------------------------------------

    def parse_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        return BrevOptions.parse(options, self.settings)

    async def results_root(self, options: Mapping[str, Any], *, resolve: bool = True) -> str | None:
        """An explicit results_dir; else None when S3 is configured (the bucket, as on every other platform: the
        instance disk dies with the instance); else BREV_RESULTS_DIR on the instance."""
        if options.get("results_dir"):
            return str(options["results_dir"])
        return None if self.settings.s3_results else self.results_dir

    def results_warning(self, options: Mapping[str, Any], results_root: str | None) -> str | None:
        if not results_root:
            return None
        return (
            f"results stay on the disk of Brev instance {options.get('instance')} ({results_root}/<job_id>) and are "
            "lost when the instance is deleted: set S3_BUCKET_NAME (with ACCESS_KEY/SECRET_KEY) or pass "
            "results_uri='s3://...' to keep them"
        )

    # --- launch -----------------------------------------------------------------------------------------------

    def check_request(self, req: LaunchRequest) -> None:
        """A job Brev can never run: refused before it is recorded (HasRequestCheck)."""
        if not req.image:
            raise TaoError(
                "E_BAD_INPUT", "Brev jobs run in a container and no image was given", "pass image=... to submit_job"
            )
        if req.num_nodes != 1:
            raise TaoError("E_BAD_INPUT", "a Brev job runs on one instance", "set num_nodes=1")

    def _files(self, req: LaunchRequest) -> tuple[remote.LaunchFiles, str]:
        """The job's files, and the instance directory bind-mounted for results (used when TAO_RESULTS_ROOT is set)."""
        self.check_request(req)
        root = req.options.get("results_dir") or self.results_dir
        return remote.render_files(req, root, req.options.get("shm_size")), root

    async def preview(self, req: LaunchRequest) -> Preview:
        files, _root = self._files(req)
        jdir = f"{remote.JOBS_DIR}/{req.job_id}"
        instance = req.options["instance"]
        steps = []
        if req.options.get("create"):
            what = (
                f"--type {req.options['type']}" if req.options.get("type") else f"--gpu-name {req.options['gpu_name']}"
            )
            steps.append(f"brev create {instance} {what} --detached   # only if {instance} does not exist yet")
            steps.append(f"brev ls --json   # until {instance} is RUNNING (at most {self.ready_s:.0f} s)")
        steps.append(f"brev exec {instance} '<probe>'")
        if req.secret_env:
            steps.append(f"brev exec {instance} '<makes {jdir} (mode 0700)>'")
            steps.append(
                f"brev copy <local temporary file, mode 0600> {instance}:<{jdir}>/{remote.INCOMING_SECRETS}"
                "   # the secret values travel as a file, never on a command line"
            )
        steps.append(
            f"brev exec {instance} '<writes the other files above, moves the secrets into secrets.env (mode 0600) "
            "and starts run.sh detached>'"
        )
        return Preview(
            files={
                f"{jdir}/command.sh": files.command,
                f"{jdir}/job.env": files.env,
                f"{jdir}/secrets.env": remote.preview_secrets(req.secret_env),
                f"{jdir}/run.sh": files.run,
            },
            submit="\n".join(steps),
        )

    async def launch(self, req: LaunchRequest) -> str:
        files, root = self._files(req)
        remote.check_id(req.backend_name)
        tag = remote.nonce()
        with_secrets = bool(req.secret_env)
        script = remote.wrap(remote.launch_body(req.job_id, files, root, with_secrets=with_secrets), tag)
        if len(script.encode()) > remote.MAX_SCRIPT_BYTES:
            raise TaoError(
                "E_BAD_INPUT",
                f"the command and environment are {len(script.encode()) // 1024} KiB, more than one brev exec carries",
                "put long scripts in the image or on the instance and run them by path",
            )
        with nothing_sent():  # before the launch exec: an outage here started nothing (staged files at most)
            instance = await self.ensure_ready(req.options)
            if with_secrets:
                await self._send_secrets(instance, req.job_id, files.secrets)
        secret_texts = [v for v in req.secret_env.values() if v] + [files.secrets]
        try:
            result = await self.cli.call(["exec", instance, script], timeout=LAUNCH_TIMEOUT_S, what="brev exec")
        except BackendUnreachable as exc:
            raise BackendUnreachable(
                PLATFORM,
                f"{_scrub(exc.cause, secret_texts)}; whether the job started on {instance} is unknown",
                "do not resubmit: the job is reconciled by its name on the next status check",
            ) from None
        try:
            section = remote.unwrap(result.out, tag)
        except remote.Unwrapped:
            raise BackendUnreachable(
                PLATFORM,
                f"the launch exec on {instance} was cut off ({_scrub(_tail(result), secret_texts)}); "
                "whether the job started is unknown",
                "do not resubmit: the job is reconciled by its name on the next status check",
            ) from None
        outcome = remote.launch_outcome(section)
        if outcome == "nosecrets":
            raise BackendRejected(
                PLATFORM,
                f"the secrets file brev copy delivered is missing on {instance}; nothing was started",
                "submit_job again (a new job copies the secrets again)",
            )
        if outcome not in ("started", "exists"):
            raise BackendRejected(
                PLATFORM,
                f"the job files could not be written on {instance} ({_scrub(section.text[-300:], secret_texts)})",
                "check the free disk space on the instance (brev shell) and the results_dir option",
            )
        if outcome == "exists":
            log.info("brev: %s was already started on %s (a repeated launch started nothing)", req.job_id, instance)
        return f"{instance}/{req.backend_name}"

    async def _send_secrets(self, instance: str, job_id: str, content: str) -> None:
        """The secret env as a file, never on a command line (argv is readable by any local user, here and on the
        instance): written 0600 in a private temporary directory, `brev copy`-ed into the job directory that an
        exec made first (0700), where the launch exec moves it into place. The local copy is removed either way.

        Plain `brev copy`, not `--host`: the job files and `docker run` live where `brev exec` runs."""
        staged = remote.staged_dir(await self._exec(instance, remote.stage_body(job_id)))
        if staged is None:
            raise BackendRejected(
                PLATFORM,
                f"the job directory could not be made on {instance} under {remote.JOBS_DIR}",
                "check the free disk space and the home directory on the instance (brev shell)",
            )
        with tempfile.TemporaryDirectory(prefix="tao-mcp-brev-") as local:  # mode 0700
            path = os.path.join(local, "secrets.env")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(content)
            target = f"{instance}:{staged}/{remote.INCOMING_SECRETS}"
            result = await self.cli.call(["copy", path, target], timeout=LAUNCH_TIMEOUT_S, what="brev copy")
        if result.rc != 0:
            cause = f"brev copy of the secrets file to {instance} failed ({_tail(result)}); nothing was started"
            if _REFUSED_COPY.search(result.err + result.out):
                raise BackendRejected(PLATFORM, cause, "check the free disk space on the instance (brev shell)")
            raise BackendUnreachable(PLATFORM, cause, "retry submit_job shortly")

    async def ensure_ready(self, options: Mapping[str, Any]) -> str:
        """The instance RUNNING and answering exec, within BREV_READY_TIMEOUT; created or started if needed."""
        name = options["instance"]
        deadline = time.monotonic() + self.ready_s
        instances = await self.cli.ls()
        inst = instances.get(name)
        if inst is None:
            if not options.get("create"):
                known = ", ".join(sorted(instances)) or "none"
                raise TaoError(
                    "E_BREV_NO_INSTANCE",
                    f"there is no Brev instance named {name} (yours: {known})",
                    "pass options={'instance': '<one of yours>'}, or add options.gpu_name / options.type to create it",
                )
            await self._create(name, options, timeout=self._left(deadline))
        elif inst.status in ("STOPPED", "STOPPING"):
            if inst.status == "STOPPING":
                inst = await self._wait_status(name, deadline, until={"STOPPED"}) or inst
            if inst.status == "STOPPED":
                log.info("brev: starting stopped instance %s for a job", name)
                result = await self.cli.call(["start", name])
                if result.rc != 0:
                    raise BackendRejected(PLATFORM, f"brev start {name}: {_tail(result)}", "start it in the console")
        elif inst.status in ("FAILURE", "DELETING"):
            raise BackendRejected(
                PLATFORM,
                f"instance {name} is {inst.status}",
                "choose another instance, or delete_instance it and create a new one (options.gpu_name / type)",
            )
        if inst is None or not inst.running:
            inst = await self._wait_status(name, deadline, until={"RUNNING", "FAILURE"})
        if inst is not None and inst.status == "FAILURE":
            raise BackendRejected(
                PLATFORM,
                f"instance {name} failed to start (FAILURE)",
                f"delete_instance('{name}') and submit again with another type or gpu_name",
            )
        if inst is None or not inst.running or not await self._probe(name, deadline):
            status = inst.status if inst is not None else "not listed"
            detail = "RUNNING but not answering exec yet" if inst is not None and inst.running else status
            raise TaoError(
                "E_BREV_INSTANCE_NOT_READY",
                f"instance {name} is {detail} after {self.ready_s:.0f} s; nothing was launched "
                f"({name} keeps starting and bills while it exists)",
                f"call list_instances until {name} is RUNNING (usually a few minutes), then submit_job again with "
                f"options={{'instance': '{name}'}}; delete_instance(name='{name}') if you no longer need it",
            )
        return name

    def _left(self, deadline: float) -> float:
        """A per-call timeout that keeps submit within BREV_READY_TIMEOUT (plus a little slack)."""
        return max(5.0, min(self.cli.timeout, deadline - time.monotonic() + 5.0))

    async def _create(self, name: str, options: Mapping[str, Any], timeout: float) -> None:
        args = ["create", name]
        args += ["--type", options["type"]] if options.get("type") else ["--gpu-name", options["gpu_name"]]
        result = await self.cli.call([*args, "--detached"], timeout=timeout, what="brev create")
        if result.rc != 0:
            text = _tail(result)
            if "already exists" in text:
                return  # a concurrent or repeated submit created it: reuse
            raise BackendRejected(
                PLATFORM,
                f"brev create {name}: {text}",
                "check options.type / options.gpu_name against `brev search` and your Brev organization's quota",
            )
        log.info("brev: created instance %s (%s)", name, " ".join(args[2:]))

    async def _wait_status(self, name: str, deadline: float, until: set[str]) -> Instance | None:
        inst: Instance | None = None
        while True:
            inst = (await self.cli.ls(timeout=self._left(deadline))).get(name)
            if inst is not None and inst.status in until:
                return inst
            if time.monotonic() + self.poll_s > deadline:
                return inst
            await anyio.sleep(self.poll_s)

    async def _probe(self, name: str, deadline: float) -> bool:
        """Hazard 5: RUNNING does not mean exec works. A trivial exec, retried until the deadline."""
        while True:
            tag = remote.nonce()
            try:
                result = await self.cli.call(
                    ["exec", name, remote.wrap("echo probe-ok", tag)],
                    timeout=self._left(deadline),
                    what="brev exec (probe)",
                )
                if "probe-ok" in remote.unwrap(result.out, tag).text:
                    return True
            except (BackendUnreachable, remote.Unwrapped) as exc:
                log.info("brev: %s not answering exec yet (%s)", name, exc)
            if time.monotonic() + self.poll_s > deadline:
                return False
            await anyio.sleep(self.poll_s)

    # --- remote rounds ----------------------------------------------------------------------------------------

    async def _exec(self, instance: str, body: str, *, timeout: float | None = None) -> remote.Section:
        tag = remote.nonce()
        result = await self.cli.call(["exec", instance, remote.wrap(body, tag)], timeout=timeout, what="brev exec")
        try:
            return remote.unwrap(result.out, tag)
        except remote.Unwrapped as exc:
            raise BackendUnreachable(
                PLATFORM, f"brev exec on {instance} was cut off ({exc}; {_tail(result)})"
            ) from None

    # --- status -----------------------------------------------------------------------------------------------

    async def observe(self, refs: list[JobRef]) -> dict[str, Observation]:
        by_instance: dict[str, list[JobRef]] = {}
        for ref in refs:
            located = _locate(ref)
            if located:
                by_instance.setdefault(located[0], []).append(ref)
        if not by_instance:
            return {}
        instances = await self.cli.ls()
        result: dict[str, Observation] = {}
        to_exec: dict[str, list[JobRef]] = {}
        for name, group in by_instance.items():
            inst = instances.get(name)
            obs = _instance_observation(name, inst)
            if obs is None:
                to_exec[name] = group
            else:
                for ref in group:
                    result[ref.job_id] = obs
        failures: list[str] = []
        limiter = anyio.CapacityLimiter(PARALLEL_EXECS)

        async def sweep(name: str, group: list[JobRef]) -> None:
            async with limiter:
                try:
                    section = await self._exec(name, remote.status_body([r.job_id for r in group]))
                except BackendUnreachable as exc:
                    failures.append(exc.cause)
                    return
            facts = remote.parse_status(section.text)
            for ref in group:
                if ref.job_id in facts:
                    result[ref.job_id] = remote.classify(facts[ref.job_id], name)

        async with anyio.create_task_group() as tg:
            for name, group in to_exec.items():
                tg.start_soon(sweep, name, group)
        if failures and not result:
            raise BackendUnreachable(PLATFORM, "; ".join(failures))
        for cause in failures:
            log.warning("brev: %s (those jobs keep their last known status)", cause)
        return result

    async def find(self, refs: list[JobRef]) -> dict[str, str]:
        by_instance: dict[str, list[JobRef]] = {}
        for ref in refs:
            name = ref.options.get("instance")
            if isinstance(name, str) and INSTANCE_NAME.match(name) and remote.SAFE_ID.match(ref.job_id):
                by_instance.setdefault(name, []).append(ref)
        if not by_instance:
            return {}
        instances = await self.cli.ls()
        found: dict[str, str] = {}
        for name, group in by_instance.items():
            inst = instances.get(name)
            if inst is None or not inst.running:
                continue  # a launch only ever happens on a RUNNING instance
            section = await self._exec(name, remote.find_body([r.job_id for r in group]))
            hits = remote.parse_found(section.text)
            for ref in group:
                if ref.job_id in hits:
                    found[ref.job_id] = f"{name}/{ref.backend_name}"
        return found

    # --- logs -------------------------------------------------------------------------------------------------

    async def read_log(
        self, ref: JobRef, *, mode: LogMode, at: LogMark | None, limit: int, context: int, max_bytes: int
    ) -> LogChunk:
        instance = self._instance_of(ref)
        outputs: list[str] = []

        async def run(cmd: str) -> str:
            outputs.append((await self._exec(instance, cmd)).text)
            return outputs[-1]

        chunk = await logfile.read_file(
            run, remote.log_path(ref.job_id), mode=mode, at=at, limit=limit, context=context, max_bytes=max_bytes
        )
        if chunk is None:
            raise BackendUnreachable(PLATFORM, f"reading the job log on {instance} failed ({outputs[-1][-300:]!r})")
        return chunk

    async def line_number(self, ref: JobRef, at: LogMark, bound: int) -> int | None:
        instance = self._instance_of(ref)

        async def run(cmd: str) -> str:
            return (await self._exec(instance, cmd)).text

        return await logfile.line_number(run, remote.log_path(ref.job_id), at, bound)

    # --- cancel / evidence ------------------------------------------------------------------------------------

    async def cancel(self, ref: JobRef) -> None:
        located = _locate(ref)
        if located is None:
            return
        instance, container = located
        inst = (await self.cli.ls()).get(instance)
        if inst is None or not inst.running:
            return  # nothing can run there; observe() reports the instance's state
        await self._exec(instance, remote.cancel_body(ref.job_id, container), timeout=CANCEL_TIMEOUT_S)

    async def failure_evidence(self, ref: JobRef) -> list[Evidence]:
        located = _locate(ref)
        if located is None:
            return []
        instance, container = located
        inst = (await self.cli.ls()).get(instance)
        evidence: list[Evidence] = []
        if inst is None:
            evidence.append(Evidence("state", f"instance {instance} no longer exists"))
            return evidence
        evidence.append(Evidence("state", f"instance {instance}: {inst.status} ({inst.instance_type}, {inst.gpu})"))
        if not inst.running:
            return evidence
        section = await self._exec(instance, remote.evidence_body(ref.job_id, container))
        facts = remote.parse_status("@@job x\n" + section.text).get("x", remote.JobFacts())
        state = facts.state
        if state:
            parts = [f"container {container}: {state.get('Status')}", f"ExitCode {state.get('ExitCode')}"]
            if state.get("OOMKilled") is True:
                parts.append("OOMKilled=true")
            if state.get("Error"):
                parts.append(f"error: {state.get('Error')}")
            evidence.append(Evidence("state", ", ".join(parts)))
        if facts.exit_code is not None:
            note = " (killed by SIGKILL: out of memory or a forced stop)" if facts.exit_code == 137 else ""
            evidence.append(Evidence("exit_code", f"container exit code {facts.exit_code}{note}"))
        if facts.timed_out:
            evidence.append(Evidence("state", "TIMEOUT: stopped by tao-mcp at its time limit"))
        if facts.phase == "pull_failed":
            evidence.append(Evidence("event", "ErrImagePull: docker pull failed"))
        for line in section.text.split("\n"):
            if line.startswith("pull="):
                evidence.append(Evidence("event", line[5:].partition(":")[2]))  # cut after redaction
        return evidence

    # --- instances (tools list_instances / delete_instance) ---------------------------------------------------

    async def list_instances(self) -> list[dict[str, Any]]:
        return [inst.as_dict() for inst in sorted((await self.cli.ls()).values(), key=lambda i: i.name)]

    async def delete_instance(self, name: str) -> dict[str, Any]:
        if not isinstance(name, str) or not INSTANCE_NAME.match(name):
            raise TaoError("E_BAD_INPUT", f"{name!r} is not an instance name", "use a name list_instances shows")
        instances = await self.cli.ls()
        if name not in instances:
            known = ", ".join(sorted(instances)) or "none"
            raise TaoError(
                "E_BREV_NO_INSTANCE",
                f"there is no Brev instance named {name} (yours: {known})",
                "use a name list_instances shows",
            )
        if instances[name].status == "DELETING":
            return {"name": name, "status": "DELETING", "previous_status": "DELETING", "message": "already deleting"}
        result = await self.cli.call(["delete", name], what="brev delete")
        if result.rc != 0:
            raise BackendRejected(
                PLATFORM, f"brev delete {name}: {_tail(result)}", "retry, or delete it in the console"
            )
        return {
            "name": name,
            "status": "DELETING",
            "previous_status": instances[name].status,
            "message": f"deletion of {name} requested; jobs still on it are lost; list_instances shows when it is gone",
        }

    async def prepare(self) -> None:
        """Nothing to set up before the probe: its first network step is the probe itself."""

    async def probe(self) -> None:
        """Readiness: `brev ls` works (the CLI exists and is logged in)."""
        await self.cli.ls()

    async def diagnostics(self) -> dict[str, Any]:
        """For list_platforms: the CLI works, is logged in (re-login with BREV_API_TOKEN), and the instances."""
        instances = await self.cli.ls()
        return {
            "reachable": True,
            "cli": self.cli.binary,
            "instances": len(instances),
            "running": ", ".join(sorted(n for n, i in instances.items() if i.running)) or "none",
            "results_dir": self.results_dir,
        }

    def _instance_of(self, ref: JobRef) -> str:
        located = _locate(ref)
        if located is None:
            raise TaoError("E_UNKNOWN_JOB", "this job has no Brev backend id yet", "check job_status first")
        return located[0]

    async def aclose(self) -> None:
        return None


def _locate(ref: JobRef) -> tuple[str, str] | None:
    """backend id `<instance>/tao-<job_id>` -> (instance, container); None when missing or malformed."""
    if not ref.backend_id or "/" not in ref.backend_id:
        return None
    instance, _, container = ref.backend_id.partition("/")
    if not INSTANCE_NAME.match(instance) or not remote.SAFE_ID.match(container) or not remote.SAFE_ID.match(ref.job_id):
        return None
    return instance, container


def _instance_observation(name: str, inst: Instance | None) -> Observation | None:
    """The job's state when the instance alone decides it; None when the instance must be asked (RUNNING)."""
    if inst is None:
        return Observation(
            JobState.ERROR, "INSTANCE_GONE", f"instance {name} no longer exists (deleted); the job is lost"
        )
    if inst.running:
        return None
    if inst.status in STARTING:
        return Observation(
            JobState.PENDING,
            f"INSTANCE_{inst.status}",
            f"instance {name} is {inst.status}",
            pending_reason=f"instance {name} is {inst.status}, not RUNNING yet",
        )
    if inst.status in ("FAILURE", "DELETING"):
        return Observation(
            JobState.ERROR, f"INSTANCE_{inst.status}", f"instance {name} is {inst.status}; the job is lost"
        )
    return Observation(
        JobState.UNKNOWN,
        f"INSTANCE_{inst.status or 'UNKNOWN'}",
        f"instance {name} is {inst.status or 'in an unknown state'}: the job's state cannot be read until it runs "
        f"again (brev start {name})",
    )


def _tail(result: Result) -> str:
    text = (result.err.strip() or result.out.strip())[-600:]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines[-4:]) or f"exit status {result.rc}"


def _scrub(text: str, values: list[str]) -> str:
    """Belt and braces: a CLI that echoes its command must not carry secrets (or their base64) into an error."""
    import base64

    for value in values:
        if not value:
            continue
        for variant in (value, base64.b64encode(value.encode()).decode()):
            if len(variant) >= 4:
                text = text.replace(variant, "[REDACTED]")
    return text
