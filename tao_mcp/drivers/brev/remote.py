"""The shell scripts tao-mcp runs on a Brev instance through `brev exec`, and the parsing of their output. Pure.

`brev exec` re-runs a command that exits non-zero and then loses its exit code, and appends the instance name
to stdout. So every script here: runs its body in a subshell, prints `__TAO_BEGIN <nonce>` before and
`__RC=<n> <nonce>` after it, always exits 0, and is safe to run twice. `unwrap` takes the last complete
BEGIN..RC section (a re-run prints two) and drops everything after it (the instance-name line).

Job files live on the instance in `$HOME/.tao-mcp/jobs/<job_id>/` (mode 0700):
  command.sh  the job's command      job.env  non-secret env (docker --env-file)
  secrets.env secret env, mode 0600  run.sh   the detached wrapper that pulls, runs the container, records the end
  secrets.env.incoming   the secrets as `brev copy` delivered them, until the launch moves them to secrets.env
  started/    created atomically by the first launch (a second run starts nothing)
  phase       pulling | running | pull_failed | exited | canceled      wrapper.pid  the wrapper's process group
  job.log     pull + container output       exit_code  written when the container ended
  cancel_requested, timed_out   flags
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from tao_mcp.drivers import logfile
from tao_mcp.drivers.base import LaunchRequest, Observation, with_distributed_env
from tao_mcp.errors import TaoError
from tao_mcp.states import JobState

JOBS_DIR = "$HOME/.tao-mcp/jobs"
INCOMING_SECRETS = "secrets.env.incoming"  # where `brev copy` puts the secrets file (remote.stage_body)
REMOTE_DIR = re.compile(r"^/[A-Za-z0-9_./-]+$")  # a path brev copy carries as is (it splits INSTANCE:PATH at ":")
SAFE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_SCRIPT_BYTES = 96 * 1024  # one exec argument travels as a single remote shell word (MAX_ARG_STRLEN is 128 KiB)
LABEL_JOB = "tao-mcp.job-id"
LABEL_MANAGED = "tao-mcp.managed"
_PULL_ERROR = re.compile(
    r"pull access denied|repository does not exist|manifest (?:for \S+ )?unknown|not found: manifest|"
    r"unauthorized|denied|no such host|toomanyrequests|Error response from daemon",
    re.IGNORECASE,
)


class Unwrapped(Exception):
    """The exec's output has no complete BEGIN..RC section: the command's outcome is unknown."""


@dataclass(frozen=True)
class Section:
    rc: int
    text: str


def nonce() -> str:
    return secrets.token_hex(6)


def wrap(body: str, tag: str) -> str:
    """The one command string given to `brev exec`: markers around a subshell, always exit 0."""
    return f"echo '__TAO_BEGIN {tag}'\n( {body}\n) 2>&1\necho \"__RC=$? {tag}\"\nexit 0"


def unwrap(output: str, tag: str) -> Section:
    lines = output.split("\n")
    begin_line, rc_line = f"__TAO_BEGIN {tag}", re.compile(rf"^__RC=(-?\d+) {re.escape(tag)}$")
    end = None
    for i in range(len(lines) - 1, -1, -1):
        match = rc_line.match(lines[i].rstrip("\r"))
        if match:
            end = (i, int(match.group(1)))
            break
    if end is None:
        raise Unwrapped("no completion marker")
    start = None
    for i in range(end[0] - 1, -1, -1):
        if lines[i].rstrip("\r") == begin_line:
            start = i
            break
    if start is None:
        raise Unwrapped("no start marker")
    return Section(rc=end[1], text="\n".join(lines[start + 1 : end[0]]))


def job_dir(job_id: str) -> str:
    """The job's directory as a double-quoted shell word ($HOME expands on the instance)."""
    check_id(job_id)
    return f'"{JOBS_DIR}/{job_id}"'


def check_id(value: str) -> str:
    if not SAFE_ID.match(value):
        raise TaoError("E_BAD_INPUT", f"{value!r} is not a valid tao-mcp job id", "use the job_id submit_job returned")
    return value


# --- launch -----------------------------------------------------------------------------------------------------


def env_file(env: Mapping[str, str], what: str) -> str:
    """docker --env-file content: NAME=value lines, taken literally by docker (no quoting, one line each)."""
    lines = []
    for name, value in env.items():
        if not ENV_NAME.match(name):
            raise TaoError("E_BAD_INPUT", f"{what} name {name!r} is not a variable name", "rename it")
        if "\n" in value or "\r" in value or "\0" in value:
            raise TaoError(
                "E_BAD_INPUT",
                f"the value of {what} {name} has a line break, which docker --env-file cannot carry",
                f"pass {name} on one line (e.g. base64-encode it and decode it in the command)",
            )
        lines.append(f"{name}={value}")
    return "\n".join(lines) + ("\n" if lines else "")


def preview_secrets(secret_env: Mapping[str, str]) -> str:
    return "".join(f"{name}=<secret: value not shown>\n" for name in sorted(secret_env))


def run_script(req: LaunchRequest, results_root: str, shm_size: str | None) -> str:
    """The wrapper started detached on the instance: pull, docker run (attached, output to job.log), exit code."""
    name = req.backend_name
    check_id(name)
    image = req.image or ""
    docker = [
        "docker run",
        f"--name {shlex.quote(name)}",
        f"--label {LABEL_JOB}={shlex.quote(req.job_id)}",
        f"--label {LABEL_MANAGED}=true",
    ]
    if req.gpu_count > 0:
        docker.append(f"--gpus {int(req.gpu_count)}")
    if shm_size:
        docker.append(f"--shm-size {shlex.quote(shm_size)}")
    docker += [
        '--env-file "$J/job.env"',
        '--env-file "$J/secrets.env"',
        f"-v {shlex.quote(results_root)}:{shlex.quote(results_root)}",
        '"$IMAGE" /bin/bash -c "$(cat "$J/command.sh")"',
        '>> "$J/job.log" 2>&1 < /dev/null',
    ]
    watchdog = ""
    stop_watchdog = ""
    if req.time_limit_minutes:
        seconds = int(req.time_limit_minutes) * 60
        # `wait` returns on TERM (trapped), so stopping the watchdog also ends its sleep
        watchdog = (
            f"( trap 'kill $S 2> /dev/null; exit 0' TERM; sleep {seconds} & S=$!; wait $S || exit 0; "
            f'touch "$J/timed_out"; docker stop -t 30 {shlex.quote(name)} ) > /dev/null 2>&1 &\nWD=$!\n'
        )
        stop_watchdog = 'kill "$WD" 2> /dev/null\n'
    return (
        "#!/bin/bash\n"
        "# tao-mcp job wrapper: runs detached on the Brev instance; records the container's end in exit_code.\n"
        'J="$1"\n'
        'echo $$ > "$J/wrapper.pid"\n'
        'finish() { printf \'%s\\n\' "$1" > "$J/exit_code.tmp" && mv -f "$J/exit_code.tmp" "$J/exit_code"; }\n'
        f"IMAGE={shlex.quote(image)}\n"
        'if ! docker image inspect "$IMAGE" > /dev/null 2>&1; then\n'
        '  echo pulling > "$J/phase"\n'
        '  echo "[tao-mcp] pulling image $IMAGE" >> "$J/job.log"\n'
        '  if ! docker pull "$IMAGE" >> "$J/job.log" 2>&1; then\n'
        '    echo pull_failed > "$J/phase"; finish 125; exit 0\n'
        "  fi\n"
        "fi\n"
        'if [ -e "$J/cancel_requested" ]; then echo canceled > "$J/phase"; finish 143; exit 0; fi\n'
        'echo running > "$J/phase"\n'
        f"{watchdog}" + " \\\n  ".join(docker) + "\n"
        "rc=$?\n"
        f"{stop_watchdog}"
        'echo exited > "$J/phase"\n'
        'finish "$rc"\n'
    )


@dataclass(frozen=True)
class LaunchFiles:
    command: str
    env: str
    secrets: str  # the real secret values: they travel as a file (brev copy), never in a command
    run: str


def render_files(req: LaunchRequest, results_root: str, shm_size: str | None) -> LaunchFiles:
    return LaunchFiles(
        command=req.command,
        env=env_file(with_distributed_env(req), "env"),
        secrets=env_file(req.secret_env, "secret_env"),
        run=run_script(req, results_root, shm_size),
    )


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def stage_body(job_id: str) -> str:
    """Makes the job directory (0700) before `brev copy` delivers the secrets into it; prints its absolute path,
    the destination that copy needs (scp does not expand $HOME the way exec's shell does)."""
    return "\n".join(
        [
            "umask 077",
            f"J={job_dir(job_id)}",
            'mkdir -p "$J" && cd "$J" && echo "__TAO_STAGE=$(pwd -P)"',
        ]
    )


def staged_dir(section: Section) -> str | None:
    """The absolute job directory stage_body printed; None when it could not be made or is not a plain path."""
    found = re.findall(r"^__TAO_STAGE=(.*)$", section.text, re.MULTILINE)
    return found[-1] if found and REMOTE_DIR.match(found[-1]) and "/../" not in f"{found[-1]}/" else None


def launch_body(job_id: str, files: LaunchFiles, results_root: str, *, with_secrets: bool) -> str:
    """Writes the job files (again, identically, if re-run) and starts the wrapper only once (mkdir is atomic).

    No secret value is in this command (a command line is readable by any local user, here and on the instance):
    with_secrets, `brev copy` delivered them beforehand as secrets.env.incoming, which this moves into place (a
    re-run finds it moved already); without the file it starts nothing. They never reach a docker command line.
    """
    j = job_dir(job_id)

    def write(name: str, content: str) -> str:
        return f'printf \'%s\' \'{_b64(content)}\' | base64 -d > "$J/{name}.tmp" && mv -f "$J/{name}.tmp" "$J/{name}"'

    if with_secrets:
        place_secrets = [
            f'if [ -f "$J/{INCOMING_SECRETS}" ]; then mv -f "$J/{INCOMING_SECRETS}" "$J/secrets.env"; fi',
            '[ -f "$J/secrets.env" ] || { echo "__TAO_LAUNCH=nosecrets"; exit 0; }',
        ]
    else:
        place_secrets = [': > "$J/secrets.env"']
    return "\n".join(
        [
            "umask 077",
            f"J={j}",
            'mkdir -p "$J" || { echo "__TAO_LAUNCH=nodir"; exit 0; }',
            *place_secrets,
            'chmod 600 "$J/secrets.env"',
            write("command.sh", files.command),
            write("job.env", files.env),
            write("run.sh", files.run),
            'chmod 600 "$J/job.env"',
            'touch "$J/job.log"',
            f"(umask 022; mkdir -p {shlex.quote(results_root)})",
            'if mkdir "$J/started" 2> /dev/null; then',
            '  setsid nohup bash "$J/run.sh" "$J" > /dev/null 2>&1 < /dev/null &',
            '  echo "__TAO_LAUNCH=started"',
            "else",
            '  echo "__TAO_LAUNCH=exists"',
            "fi",
        ]
    )


def launch_outcome(section: Section) -> str:
    found = re.findall(r"^__TAO_LAUNCH=(\w+)$", section.text, re.MULTILINE)
    return found[-1] if found else "unknown"


# --- status -----------------------------------------------------------------------------------------------------


def status_body(job_ids: Sequence[str]) -> str:
    ids = " ".join(check_id(j) for j in job_ids)
    return (
        f"for id in {ids}; do\n"
        f'  J="{JOBS_DIR}/$id"\n'
        '  echo "@@job $id"\n'
        '  if [ ! -d "$J" ]; then echo "files=missing"; continue; fi\n'
        '  [ -d "$J/started" ] && echo "started=1"\n'
        '  [ -f "$J/phase" ] && echo "phase=$(cat "$J/phase")"\n'
        '  [ -f "$J/exit_code" ] && echo "exit_code=$(cat "$J/exit_code")"\n'
        '  [ -e "$J/cancel_requested" ] && echo "canceled=1"\n'
        '  [ -e "$J/timed_out" ] && echo "timed_out=1"\n'
        '  if [ -f "$J/wrapper.pid" ]; then\n'
        '    if kill -0 "$(cat "$J/wrapper.pid")" 2> /dev/null; then echo "wrapper=alive"; '
        'else echo "wrapper=dead"; fi\n'
        "  fi\n"
        '  s=$(docker inspect --format \'{{json .State}}\' "tao-$id" 2> /dev/null) && echo "state=$s"\n'
        "done"
    )


@dataclass
class JobFacts:
    files: bool = True
    started: bool = False
    phase: str = ""
    exit_code: int | None = None
    canceled: bool = False
    timed_out: bool = False
    wrapper: str = ""  # alive | dead | "" (no pid file yet)
    state: dict[str, object] = field(default_factory=dict)


def parse_status(text: str) -> dict[str, JobFacts]:
    facts: dict[str, JobFacts] = {}
    current: JobFacts | None = None
    for line in text.split("\n"):
        line = line.rstrip("\r")
        if line.startswith("@@job "):
            current = facts.setdefault(line[6:].strip(), JobFacts())
            continue
        if current is None or "=" not in line:
            continue
        key, _, value = line.partition("=")
        if key == "files":
            current.files = value != "missing"
        elif key == "started":
            current.started = True
        elif key == "phase":
            current.phase = value.strip()
        elif key == "exit_code":
            current.exit_code = int(value) if value.strip().lstrip("-").isdigit() else None
        elif key == "canceled":
            current.canceled = True
        elif key == "timed_out":
            current.timed_out = True
        elif key == "wrapper":
            current.wrapper = value.strip()
        elif key == "state":
            try:
                loaded = json.loads(value)
            except ValueError:
                loaded = None
            if isinstance(loaded, dict):
                current.state = loaded
    return facts


def docker_time(value: object) -> float | None:
    """Docker's RFC 3339 with nanoseconds (`2024-05-01T12:00:00.123456789Z`); the zero time is None."""
    if not isinstance(value, str) or not value or value.startswith("0001-"):
        return None
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$", value.strip())
    if not match:
        return None
    base, frac, zone = match.groups()
    text = base + (f".{frac[:6]}" if frac else "") + ("+00:00" if zone in (None, "Z") else zone)
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def classify(f: JobFacts, instance: str) -> Observation:
    """One job's facts (from a status exec on a RUNNING instance) -> Observation (docs/platforms.md, Brev table)."""
    state = f.state
    started = docker_time(state.get("StartedAt"))
    ended = docker_time(state.get("FinishedAt"))
    oom = state.get("OOMKilled") is True
    docker_status = str(state.get("Status") or "")
    if not f.files:
        return Observation(
            JobState.UNKNOWN,
            "NOT_FOUND",
            f"the job's files are not on instance {instance} (removed, or the instance was replaced); "
            "container not found",
        )
    code = f.exit_code
    if code is None and docker_status in ("exited", "dead") and f.wrapper != "alive":
        code = _int(state.get("ExitCode"))  # the wrapper died before recording the end: trust docker
    if code is not None:
        if f.canceled:
            return Observation(
                JobState.CANCELED, "CANCELED", "canceled", exit_code=code, started_at=started, ended_at=ended
            )
        if f.timed_out:
            return Observation(
                JobState.ERROR,
                "TIMEOUT",
                "stopped at its time limit",
                exit_code=code,
                started_at=started,
                ended_at=ended,
            )
        if f.phase == "pull_failed":
            return Observation(
                JobState.ERROR,
                "ErrImagePull",
                "the image could not be pulled (see job_logs)",
                exit_code=code,
                ended_at=ended,
            )
        if oom:
            return Observation(
                JobState.ERROR,
                "OOMKilled",
                f"the container was OOMKilled (exit code {code})",
                exit_code=code,
                started_at=started,
                ended_at=ended,
            )
        if code == 0:
            return Observation(
                JobState.COMPLETE, "EXITED", "exited with code 0", exit_code=0, started_at=started, ended_at=ended
            )
        return Observation(
            JobState.ERROR, "EXITED", f"exited with code {code}", exit_code=code, started_at=started, ended_at=ended
        )
    if docker_status in ("running", "restarting", "exited", "dead"):
        return Observation(JobState.RUNNING, docker_status.upper(), "container running", started_at=started)
    if docker_status == "paused":
        return Observation(JobState.PAUSED, "PAUSED", "container paused", started_at=started)
    if f.wrapper == "alive" or (f.started and not f.wrapper):
        if f.phase == "pulling":
            return Observation(JobState.PENDING, "PULLING", "pulling the image", pending_reason="Pulling image")
        return Observation(
            JobState.PENDING, "STARTING", "starting the container", pending_reason="starting the container"
        )
    if f.canceled:
        return Observation(JobState.CANCELED, "CANCELED", "canceled before the container started")
    if not f.started:
        return Observation(JobState.UNKNOWN, "LAUNCH_INCOMPLETE", f"the launch on {instance} did not complete")
    return Observation(
        JobState.ERROR,
        "LOST",
        f"the job's wrapper on {instance} is gone without recording an exit code (instance restarted?)",
    )


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# --- find / cancel / logs / evidence ----------------------------------------------------------------------------


def find_body(job_ids: Sequence[str]) -> str:
    ids = " ".join(check_id(j) for j in job_ids)
    return f'for id in {ids}; do [ -d "{JOBS_DIR}/$id/started" ] && echo "found=$id"; done; true'


def parse_found(text: str) -> set[str]:
    return set(re.findall(r"^found=(\S+)$", text, re.MULTILINE))


def cancel_body(job_id: str, container: str) -> str:
    j = job_dir(job_id)
    c = shlex.quote(check_id(container))
    return "\n".join(
        [
            f"J={j}",
            'if [ ! -d "$J" ]; then echo "cancel=missing"; exit 0; fi',
            'touch "$J/cancel_requested"',
            f"if docker inspect --format '{{{{json .State}}}}' {c} > /dev/null 2>&1; then",
            f"  docker stop -t 10 {c} > /dev/null 2>&1",
            'elif [ -f "$J/wrapper.pid" ] && [ ! -f "$J/exit_code" ]; then',
            '  kill -TERM -- "-$(cat "$J/wrapper.pid")" 2> /dev/null',
            "fi",
            'echo "cancel=sent"',
        ]
    )


def log_path(job_id: str) -> str:
    """The job's log file as a shell word ($HOME expands on the instance)."""
    return f'"{JOBS_DIR}/{check_id(job_id)}/job.log"'


def evidence_body(job_id: str, container: str) -> str:
    j = job_dir(job_id)
    c = shlex.quote(check_id(container))
    return "\n".join(
        [
            f"J={j}",
            'if [ ! -d "$J" ]; then echo "files=missing"; exit 0; fi',
            '[ -f "$J/phase" ] && echo "phase=$(cat "$J/phase")"',
            '[ -f "$J/exit_code" ] && echo "exit_code=$(cat "$J/exit_code")"',
            '[ -e "$J/timed_out" ] && echo "timed_out=1"',
            f"s=$(docker inspect --format '{{{{json .State}}}}' {c} 2> /dev/null) && echo \"state=$s\"",
            "grep -n -i -E 'pull access denied|repository does not exist|manifest unknown|not found: manifest|"
            'unauthorized|toomanyrequests|Error response from daemon\' "$J/job.log" 2> /dev/null | head -n 5 '
            f"| {logfile.CLIP_FILTER} | sed 's/^/pull=/'",  # cut after redaction, in the service
            "true",
        ]
    )


def pull_error_line(line: str) -> bool:
    return bool(_PULL_ERROR.search(line))
