"""SlurmDriver: SSH to a login node; stage files over SFTP; sbatch / squeue / sacct / scancel.

Every status sweep is one SSH round trip per 1 000 jobs (squeue for live jobs, sacct for finished ones and exit
codes).
A command that cannot be run or answered raises BackendUnreachable — never a job state.
"""

from __future__ import annotations

import logging
import re
import shlex
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

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
    clip_text,
    nothing_sent,
)
from tao_mcp.drivers.slurm import parse, script
from tao_mcp.drivers.slurm.options import SlurmOptions, SlurmSettings
from tao_mcp.drivers.slurm.ssh import SSHConfig, SSHPool
from tao_mcp.errors import BackendRejected, BackendUnreachable, TaoError
from tao_mcp.states import JobState

log = logging.getLogger(__name__)

PLATFORM = "slurm"
QUERY_TIMEOUT = 60.0
NO_PHASE = "@@phase:none"
IDS_PER_ROUND = 1000  # job ids (or names) per squeue/sacct call: a 10 000-job sweep is 10 rounds
PROBE_TIMEOUT = 10.0  # the service bounds the probe more tightly; this only ends the remote command
SUBMIT_TIMEOUT = 90.0
HOME_PLACEHOLDER = "$HOME/tao-mcp"
_BACKEND_ID = re.compile(r"^[0-9]+(?:_[0-9]+)?$")
_TRANSPORTISH = (
    "Unable to contact slurm controller",
    "Socket timed out",
    "Connection refused",
    "Zero Bytes were transmitted or received",
    "Slurm backup controller in standby mode",
)


def _since(refs: Iterable[JobRef]) -> str:
    """sacct -S: the day before the earliest job was created (a day of slack covers any cluster time zone)."""
    earliest = min((ref.created_at for ref in refs), default=time.time())
    return datetime.fromtimestamp(max(earliest - 86400, 0), tz=UTC).strftime("%Y-%m-%d")


def round_script(commands: Mapping[str, str]) -> str:
    """Several commands in one SSH exec, each output section delimited and followed by its exit status."""
    lines = ["export SLURM_TIME_FORMAT=%s"]
    for name, cmd in commands.items():
        lines.append(f"echo '{parse.MARK}{name}'; {cmd} 2>&1; echo \"{parse.MARK}rc=$?\"")
    return "\n".join(lines)


class SlurmDriver:
    platform = "slurm"
    storage_scheme = "lustre"

    def __init__(self, settings: SlurmSettings | Mapping[str, str]) -> None:
        self.settings = SlurmSettings.of(settings)
        self.user = self.settings.user
        self.base_setting = self.settings.base_results_dir
        self.ssh = SSHPool(
            SSHConfig(
                hosts=self.settings.hostnames,
                user=self.user,
                port=self.settings.port,
                key_path=self.settings.key_path,
                agent_sock=self.settings.agent_sock,
                known_hosts=self.settings.known_hosts,
                learned_hosts=self.settings.learned_hosts(),
                strict_host_keys=self.settings.strict_host_keys == "yes",
            )
        )
        self._base: str | None = self.base_setting

    # --- options ----------------------------------------------------------------------------------------------

    def parse_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        return SlurmOptions.parse(options, self.settings)

    # --- paths ------------------------------------------------------------------------------------------------

    async def _base_dir(self) -> str:
        """SLURM_BASE_RESULTS_DIR, else the remote home + /tao-mcp (one SSH call, then cached)."""
        if self._base:
            return self._base
        rc, out, err = await self.ssh.run('printf "%s" "$HOME"', failover=True, timeout=QUERY_TIMEOUT)
        home = out.strip()
        if rc != 0 or not home.startswith("/"):
            raise BackendUnreachable(
                PLATFORM, f"could not read $HOME on the login node ({clip_text(err.strip(), 200)})"
            )
        try:
            self._base = script.check_path(home.rstrip("/") + "/tao-mcp", "the default base directory")
        except TaoError:
            raise TaoError(
                "E_BAD_SETTING",
                "the remote home directory has characters the job files cannot use",
                "set SLURM_BASE_RESULTS_DIR to a plain absolute path (letters, digits, _ . / -)",
            ) from None
        return self._base

    async def results_root(self, options: Mapping[str, Any], *, resolve: bool = True) -> str | None:
        if not resolve:  # a dry run needs no SSH, and renders the same whatever an earlier launch learned
            return script.results_root(self.base_setting or HOME_PLACEHOLDER)
        return script.results_root(await self._base_dir())

    # --- launch -----------------------------------------------------------------------------------------------

    def check_request(self, req: LaunchRequest) -> None:
        script.layout(req, req.options, self.settings.limits())  # E_GPU_LAYOUT before the job is recorded

    async def preview(self, req: LaunchRequest) -> Preview:
        # SLURM_BASE_RESULTS_DIR, else $HOME: a dry run needs no SSH and renders the same before and after a launch
        # has read the home (a confirmed plan is checked against a fresh rendering).
        base = self.base_setting
        if base is None:
            # Rendered with a marker path, then shown as $HOME/tao-mcp (sbatch would need the real path).
            job = script.render(req, "/__HOME__/tao-mcp", req.options, self.settings.limits())
            files = {
                k.replace("/__HOME__", "$HOME"): v.replace("/__HOME__", "$HOME")
                for k, v in script.preview_files(job, req.secret_env).items()
            }
            return Preview(files=files, submit=job.submit.replace("/__HOME__", "$HOME"))
        job = script.render(req, base, req.options, self.settings.limits())
        return Preview(files=script.preview_files(job, req.secret_env), submit=job.submit)

    async def launch(self, req: LaunchRequest) -> str:
        with nothing_sent():  # staging: an outage here leaves files at most, never a queued job
            job = script.render(req, await self._base_dir(), req.options, self.settings.limits())
            await self.ssh.mkdir(job.job_dir, 0o700)
            await self.ssh.write_file(job.command_path, job.command, 0o700)
            await self.ssh.write_file(job.env_path, job.env, 0o600)
            if req.secret_env:
                await self.ssh.write_file(job.secrets_path, script.render_secrets(req.secret_env), 0o600)
            await self.ssh.write_file(job.sbatch_path, job.sbatch, 0o600)
        # sbatch: the pool says sent=False only when the command never reached the login node
        rc, out, err = await self.ssh.run(job.submit, failover=False, timeout=SUBMIT_TIMEOUT)
        backend_id = parse.parse_sbatch(out) if rc == 0 else None
        if backend_id:
            if err.strip():
                log.info("slurm: sbatch for %s warned: %s", req.job_id, clip_text(err.strip(), 500))
            return backend_id
        message = clip_text("; ".join(line.strip() for line in (err or out).splitlines() if line.strip()), 800)
        message = message or f"exit status {rc}"
        if any(marker in message for marker in _TRANSPORTISH):
            raise BackendUnreachable(
                PLATFORM,
                f"sbatch could not reach slurmctld: {message}; whether the job was queued is unknown",
                "do not resubmit: the job is reconciled by its name on the next status check",
            )
        if rc == 0:
            raise BackendUnreachable(
                PLATFORM,
                f"sbatch exited 0 without printing a job id ({message}); the job is reconciled by its name",
                "check job_status shortly; do not resubmit",
            )
        raise BackendRejected(PLATFORM, message, _submit_fix(message))

    # --- status -----------------------------------------------------------------------------------------------

    async def observe(self, refs: list[JobRef]) -> dict[str, Observation]:
        # backend ids come from our own sbatch parse; anything else is never put on a command line
        by_id = {ref.backend_id: ref for ref in refs if ref.backend_id and _BACKEND_ID.match(ref.backend_id)}
        result: dict[str, Observation] = {}
        for chunk in _chunks(list(by_id.items())):
            result.update(await self._observe_round(dict(chunk)))
        return result

    async def _observe_round(self, by_id: dict[str, JobRef]) -> dict[str, Observation]:
        """One SSH round (squeue + sacct) for at most IDS_PER_ROUND jobs."""
        ids = ",".join(by_id)
        cmds = {
            "squeue": f"squeue -h -t all -O {shlex.quote(parse.SQUEUE_FORMAT)} -j {ids}",
            "sacct": f"sacct -n -P -X -j {ids} -S {_since(by_id.values())} -o {parse.SACCT_FIELDS}",
        }
        sq, sa = await self._round(cmds)
        live = parse.parse_squeue(sq.text) if sq is not None and parse.squeue_ok(sq) else {}
        accounted = parse.parse_sacct(sa.text) if sa is not None and sa.rc == 0 else {}
        if not parse.squeue_ok(sq) and not (sa is not None and sa.rc == 0):
            raise BackendUnreachable(
                PLATFORM, f"squeue: {parse.error_text(sq)}; sacct: {parse.error_text(sa)}", _query_fix()
            )
        if sa is None or sa.rc != 0:
            log.info("slurm: sacct failed (%s); finished jobs are read from squeue only", parse.error_text(sa))
        result: dict[str, Observation] = {}
        for backend_id, ref in by_id.items():
            obs = parse.merge(live.get(backend_id), accounted.get(backend_id))
            if obs is not None and backend_id in live and ref.options.get("requeue"):
                obs = _requeued(obs)
            if obs is not None:
                result[ref.job_id] = obs
        return result

    async def find(self, refs: list[JobRef]) -> dict[str, str]:
        by_name = {ref.backend_name: ref for ref in refs if script.SAFE_WORD.match(ref.backend_name)}
        found: dict[str, str] = {}
        for chunk in _chunks(list(by_name.items())):
            found.update(await self._find_round(dict(chunk)))
        return found

    async def _find_round(self, by_name: dict[str, JobRef]) -> dict[str, str]:
        names = ",".join(by_name)
        user = shlex.quote(self.user)
        cmds = {
            "squeue": f"squeue -h -t all -u {user} -n {names} -o '%i|%j'",
            "sacct": f"sacct -n -P -X -u {user} --name {names} -S {_since(by_name.values())} -o JobID,JobName",
        }
        sq, sa = await self._round(cmds)
        ok_sq = parse.squeue_ok(sq)
        ok_sa = sa is not None and sa.rc == 0
        if not ok_sq and not ok_sa:
            raise BackendUnreachable(
                PLATFORM, f"squeue: {parse.error_text(sq)}; sacct: {parse.error_text(sa)}", _query_fix()
            )
        found: dict[str, str] = {}
        pairs = (parse.parse_names(sq.text) if ok_sq and sq is not None else []) + (
            parse.parse_names(sa.text) if ok_sa and sa is not None else []
        )
        for backend_id, name in pairs:
            ref = by_name.get(name)
            if ref is None:
                continue
            previous = found.get(ref.job_id)
            if previous and previous != backend_id:
                log.warning("slurm: several jobs named %s (%s, %s); keeping the newest", name, previous, backend_id)
            if previous is None or _id_order(backend_id) > _id_order(previous):
                found[ref.job_id] = backend_id
        return found

    async def _round(self, cmds: Mapping[str, str]) -> tuple[parse.Section | None, ...]:
        rc, out, err = await self.ssh.run(round_script(cmds), failover=True, timeout=QUERY_TIMEOUT)
        found = parse.sections(out)
        if not found:
            raise BackendUnreachable(
                PLATFORM, f"the status commands printed nothing (exit {rc}: {clip_text(err.strip(), 300)})"
            )
        return tuple(found.get(name) for name in cmds)

    # --- logs -------------------------------------------------------------------------------------------------

    async def read_log(
        self, ref: JobRef, *, mode: LogMode, at: LogMark | None, limit: int, context: int, max_bytes: int
    ) -> LogChunk:
        failed: list[str] = []
        path, run = await self._log_shell(ref, failed)
        chunk = await logfile.read_file(run, path, mode=mode, at=at, limit=limit, context=context, max_bytes=max_bytes)
        if chunk is None:
            raise BackendUnreachable(PLATFORM, f"reading the job log failed ({(failed or ['no window'])[-1]})")
        return chunk

    async def line_number(self, ref: JobRef, at: LogMark, bound: int) -> int | None:
        path, run = await self._log_shell(ref, [])
        return await logfile.line_number(run, path, at, bound)

    async def _log_shell(self, ref: JobRef, failed: list[str]) -> tuple[str, Callable[[str], Awaitable[str | None]]]:
        """The job log's quoted path and a runner of scripts over it (None when one fails; `failed` says why)."""
        path = shlex.quote(f"{script.job_dir(await self._base_dir(), ref.job_id)}/job.log")

        async def run(cmd: str) -> str | None:
            rc, out, err = await self.ssh.run(cmd, failover=True, timeout=QUERY_TIMEOUT)
            if rc != 0:
                failed.append(f"exit {rc}: {clip_text(err.strip(), 300)}")
                return None
            return out

        return path, run

    async def runner_phase(self, ref: JobRef) -> str | None:
        path = shlex.quote(f"{script.job_dir(await self._base_dir(), ref.job_id)}/{script.RUNNER_PHASE_FILE}")
        cmd = f"if [ -f {path} ]; then head -c {script.RUNNER_PHASE_BYTES} {path}; else echo '{NO_PHASE}'; fi"
        rc, out, err = await self.ssh.run(cmd, failover=True, timeout=QUERY_TIMEOUT)
        if rc != 0:
            raise BackendUnreachable(PLATFORM, f"reading the runner phase failed (exit {rc}: {clip_text(err, 300)})")
        return None if out.strip() == NO_PHASE else out

    # --- cancel / evidence ------------------------------------------------------------------------------------

    async def cancel(self, ref: JobRef) -> None:
        if ref.backend_id:
            cmd = f"scancel {shlex.quote(ref.backend_id)}"
        elif script.SAFE_WORD.match(ref.backend_name):
            cmd = f"scancel -u {shlex.quote(self.user)} -n {shlex.quote(ref.backend_name)}"
        else:
            return
        rc, out, err = await self.ssh.run(cmd, failover=True, timeout=QUERY_TIMEOUT)
        message = clip_text(err.strip() or out.strip(), 500)
        if rc == 0 or "Invalid job id specified" in message or "already completing or completed" in message:
            return
        if any(marker in message for marker in _TRANSPORTISH):
            raise BackendUnreachable(PLATFORM, f"scancel: {message}", _query_fix())
        raise BackendRejected(PLATFORM, f"scancel: {message}", "check that the job belongs to SLURM_USER")

    async def failure_evidence(self, ref: JobRef) -> list[Evidence]:
        if not ref.backend_id:
            return []
        cmd = f"sacct -n -P -j {shlex.quote(ref.backend_id)} -S {_since([ref])} -o {parse.EVIDENCE_FIELDS} --units=M"
        (section,) = await self._round({"sacct": cmd})
        if section is None or section.rc != 0:
            raise BackendUnreachable(PLATFORM, f"sacct: {parse.error_text(section)}", _query_fix())
        evidence: list[Evidence] = []
        for row in parse.parse_evidence(section.text):
            job_id, state = row["JobID"], row["State"]
            where = f"job {job_id}" if job_id == ref.backend_id else f"step {job_id}"
            facts = [(label, row[key]) for key, label in (("NodeList", "nodes"), ("MaxRSS", "max RSS"))]
            extra = ", ".join(f"{label} {value}" for label, value in facts if value and value != "None assigned")
            evidence.append(Evidence("state", f"{where}: {state}" + (f" ({extra})" if extra else "")))
            raw = row["ExitCode"]
            if raw and raw != "0:0":
                code, _, signal = raw.partition(":")
                note = f" (killed by signal {signal})" if signal not in ("", "0") else f" (exit status {code})"
                evidence.append(Evidence("exit_code", f"{where}: ExitCode {raw}{note}"))
            if row["Reason"] and row["Reason"] not in ("None", ""):
                evidence.append(Evidence("reason", f"{where}: reason {row['Reason']}"))
        return evidence

    async def browse_roots(self) -> list[str]:
        """SLURM_BROWSE_ROOTS, else the results base directory and the sources of SLURM_CONTAINER_MOUNTS."""
        if self.settings.browse_roots:
            return list(self.settings.browse_roots)
        return [await self._base_dir(), *dict.fromkeys(m.split(":", 1)[0] for m in self.settings.container_mounts)]

    async def prepare(self) -> None:
        """Nothing to set up before the probe: its first network step is the probe itself."""

    async def probe(self) -> None:
        """Readiness: an SSH login and `sinfo -h -o %P` (slurmctld answers) on a login node."""
        rc, out, err = await self.ssh.run("sinfo -h -o %P", failover=True, timeout=PROBE_TIMEOUT)
        if rc != 0:
            message = (err or out).strip()[:300] or f"exit status {rc}"
            raise BackendUnreachable(PLATFORM, f"sinfo on the login node failed: {message}", _query_fix())

    async def exec_readonly(self, cmd: str) -> tuple[int, str, str]:
        """One read-only shell command on a login node (fails over across hosts): lustre:// browsing."""
        return await self.ssh.run(cmd, failover=True, timeout=QUERY_TIMEOUT)

    async def aclose(self) -> None:
        await self.ssh.aclose()


def _requeued(obs: Observation) -> Observation:
    """A requeue=true job that slurmctld still holds after a preemption or a node failure is about to run again
    (and resume from its checkpoint): Pending, not the terminal Error. Once slurmctld has purged a job that was
    never requeued, sacct's state stands."""
    key = parse.state_key(obs.raw_state)
    if key not in parse.REQUEUED_AFTER:
        return obs
    return Observation(JobState.PENDING, obs.raw_state, f"{key}: requeued (requeue=true)", pending_reason=key)


def _chunks(items: list[Any]) -> Iterator[list[Any]]:
    """At most IDS_PER_ROUND items at a time: each round's command line stays far below the kernel's 128 KiB
    limit on one argument (the whole round script is one `bash -c` argument on the login node)."""
    for at in range(0, len(items), IDS_PER_ROUND):
        yield items[at : at + IDS_PER_ROUND]


def _id_order(backend_id: str) -> tuple[int, str]:
    head = backend_id.split("_", 1)[0]
    return (int(head) if head.isdigit() else -1, backend_id)


def _query_fix() -> str:
    return "check that slurmctld/slurmdbd answer on the login node (squeue, sacct) and retry; the job is unaffected"


def _submit_fix(message: str) -> str:
    lowered = message.lower()
    if "partition" in lowered:
        return "pass an existing partition in submit_job(partition=...) (or SLURM_PARTITION); sinfo lists them"
    if "account" in lowered or "association" in lowered:
        return "pass an account you belong to: submit_job(account=...) or SLURM_ACCOUNT; sacctmgr show assoc lists them"
    if "memory" in lowered:
        return "ask for less memory (submit_job memory=...) or a partition whose nodes have more"
    if "time limit" in lowered:
        return "lower time_limit to the partition's limit"
    if "gres" in lowered or "gpu" in lowered:
        return "ask for fewer GPUs per node, or a partition that has GPUs"
    if "node count" in lowered or "nodes" in lowered:
        return "ask for fewer nodes"
    return "fix the option SLURM names above (partition, account, cpus, memory, GPUs, time limit) and submit again"
