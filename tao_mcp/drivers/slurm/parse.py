"""Pure parsing of squeue / sacct / sbatch output and the SLURM state table.

Nothing here talks to a cluster: every function takes text and returns facts, so the recorded outputs under
fixtures/slurm/ test it exhaustively. The commands are run with SLURM_TIME_FORMAT=%s (epoch seconds); the
ISO form SLURM prints by default is still accepted (read as this machine's local time).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from tao_mcp.drivers.base import Observation
from tao_mcp.states import TERMINAL, JobState

# squeue and sacct fields, in the order the driver asks for them (see driver.py). squeue's long format (-O) is
# used because only it has the exit code; `Field:|` means "no padding, no truncation, then a |".
SQUEUE_FORMAT = "JobID:|,State:|,Reason:|,StartTime:|,EndTime:|,Partition:|,exit_code:|,Name:"
SACCT_FIELDS = "JobID,State,ExitCode,Reason,Start,End,Partition,JobName"
EVIDENCE_FIELDS = "JobID,State,ExitCode,Reason,NodeList,MaxRSS"

PENDING_STATES = frozenset({"PENDING", "CONFIGURING", "RESIZING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD"})
RUNNING_STATES = frozenset({"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT"})
PAUSED_STATES = frozenset({"SUSPENDED", "STOPPED"})
CANCELED_STATES = frozenset({"CANCELLED", "REVOKED"})
ERROR_STATES = frozenset(
    {"FAILED", "BOOT_FAIL", "NODE_FAIL", "OUT_OF_MEMORY", "DEADLINE", "TIMEOUT", "PREEMPTED", "SPECIAL_EXIT"}
)

# what SLURM requeues a --requeue job after (the driver reads them as Pending while slurmctld holds the job)
REQUEUED_AFTER = frozenset({"PREEMPTED", "NODE_FAIL"})
# sacct's state of a job sent back to the queue (`scontrol requeue`, a requeue after a failure)
REQUEUED_STATES = frozenset({"REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"})

_MESSAGES = {
    "PREEMPTED": "preempted by a higher-priority job",
    "TIMEOUT": "reached its time limit",
    "OUT_OF_MEMORY": "ran out of host memory",
    "NODE_FAIL": "a node of the job failed",
    "BOOT_FAIL": "a node failed to boot",
    "DEADLINE": "reached its deadline",
    "FAILED": "failed",
}
_NO_VALUE = frozenset({"", "None", "none", "N/A", "Unknown", "(null)", "n/a"})
_JOB_ID = re.compile(r"^\d+(?:_(?:\d+|\[[^\]]*\]))?$")  # 123, array task 123_4, pending array 123_[1-5]


@dataclass(frozen=True)
class JobRow:
    """One job line of squeue or sacct (steps are dropped)."""

    job_id: str
    state: str  # full text, e.g. "CANCELLED by 1000"
    reason: str | None = None
    exit_code: str | None = None  # "code:signal" (sacct only)
    start: float | None = None
    end: float | None = None
    partition: str | None = None
    name: str | None = None


def state_key(raw_state: str) -> str:
    """`CANCELLED by 1000` -> CANCELLED; `CANCELLED+` (truncated column) -> CANCELLED."""
    word = raw_state.strip().split(" ", 1)[0] if raw_state.strip() else ""
    return word.rstrip("+").upper()


def map_state(raw_state: str) -> JobState:
    key = state_key(raw_state)
    if key in PENDING_STATES:
        return JobState.PENDING
    if key in RUNNING_STATES:
        return JobState.RUNNING
    if key == "COMPLETED":
        return JobState.COMPLETE
    if key in CANCELED_STATES:
        return JobState.CANCELED
    if key in PAUSED_STATES:
        return JobState.PAUSED
    if key in ERROR_STATES:
        return JobState.ERROR
    return JobState.UNKNOWN


def exit_code(text: str | None) -> int | None:
    """sacct's `code:signal` -> one exit code: a signal wins as 128+signal (as a shell reports it)."""
    if not text or text.strip() in _NO_VALUE:
        return None
    code, _, signal = text.strip().partition(":")
    try:
        rc = int(code)
        sig = int(signal) if signal else 0
    except ValueError:
        return None
    return 128 + sig if sig > 0 else rc


def parse_time(text: str | None) -> float | None:
    """Epoch seconds (SLURM_TIME_FORMAT=%s) or ISO `2024-05-01T12:00:00`; None for Unknown/N/A/None."""
    if text is None:
        return None
    value = text.strip()
    if value in _NO_VALUE:
        return None
    if value.isdigit():
        seconds = float(value)
        return seconds if seconds > 0 else None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return None if value in _NO_VALUE else value


def _is_job_line(job_id: str) -> bool:
    return bool(_JOB_ID.match(job_id))


def wait_status(text: str | None) -> str | None:
    """squeue's exit_code is the raw wait(2) status (exit 4 -> 1024, SIGKILL -> 9): turn it into sacct's `4:0`."""
    if text is None or not text.strip().isdigit():
        return None
    status = int(text.strip())
    return f"{status >> 8}:{status & 0x7F}"


def parse_squeue(text: str) -> dict[str, JobRow]:
    """`squeue -h -t all -O <SQUEUE_FORMAT>` -> {job id: row}. Error lines and steps are ignored."""
    rows: dict[str, JobRow] = {}
    for line in text.splitlines():
        parts = line.split("|", 7)
        if len(parts) < 3 or not _is_job_line(parts[0].strip()):
            continue
        parts += [""] * (8 - len(parts))
        job_id, state, reason, start, end, partition, code, name = (p.strip() for p in parts)
        rows[job_id] = JobRow(
            job_id=job_id,
            state=state,
            reason=_clean(reason),
            exit_code=wait_status(code),
            start=parse_time(start),
            end=parse_time(end),
            partition=_clean(partition),
            name=name or None,
        )
    return rows


def parse_sacct(text: str) -> dict[str, JobRow]:
    """`sacct -n -P -X -o JobID,State,ExitCode,Reason,Start,End,Partition,JobName` -> {job id: row}.

    Step lines (`123.batch`, `123.0`, `123+0`) are skipped; a requeued job listed twice keeps its last line.
    """
    rows: dict[str, JobRow] = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < 2 or not _is_job_line(parts[0].strip()):
            continue
        parts += [""] * (8 - len(parts))
        job_id, state, code, reason, start, end, partition = (p.strip() for p in parts[:7])
        name = "|".join(parts[7:]).strip()  # a job name may itself contain '|'
        rows[job_id] = JobRow(
            job_id=job_id,
            state=state,
            reason=_clean(reason),
            exit_code=_clean(code) or None,
            start=parse_time(start),
            end=parse_time(end),
            partition=_clean(partition),
            name=name or None,
        )
    return rows


def parse_names(text: str) -> list[tuple[str, str]]:
    """`squeue -o '%i|%j'` / `sacct -o JobID,JobName` lines -> [(backend id, name)] (job lines only)."""
    found: list[tuple[str, str]] = []
    for line in text.splitlines():
        job_id, sep, name = line.partition("|")
        if sep and _is_job_line(job_id.strip()) and name.strip():
            found.append((job_id.strip(), name.strip()))
    return found


def parse_sbatch(stdout: str) -> str | None:
    """`sbatch --parsable` prints `123` or `123;cluster`; plain sbatch prints `Submitted batch job 123`."""
    for line in stdout.splitlines():
        line = line.strip()
        match = re.fullmatch(r"(\d+)(?:;\S+)?", line) or re.search(r"Submitted batch job (\d+)", line)
        if match:
            return match.group(1)
    return None


def observation(row: JobRow) -> Observation:
    """One squeue or sacct row -> the normalized Observation (state table in docs/platforms.md)."""
    status = map_state(row.state)
    key = state_key(row.state)
    code = exit_code(row.exit_code)
    if status == JobState.COMPLETE and code is None:
        code = 0  # COMPLETED means every process exited 0
    if status == JobState.PENDING:
        reason = row.reason or "None"
        message = f"{key} ({reason})"
        return Observation(status, row.state, message, pending_reason=row.reason, started_at=None)
    message = row.state
    if status == JobState.ERROR and key in _MESSAGES:
        message += f": {_MESSAGES[key]}"
    if row.reason and status in (JobState.ERROR, JobState.PAUSED):
        message += f"; reason {row.reason}"
    if code and status != JobState.COMPLETE:
        message += f"; exit code {code}" + (f" (ExitCode {row.exit_code})" if row.exit_code else "")
    return Observation(
        status=status,
        raw_state=row.state,
        message=message,
        exit_code=code,
        started_at=row.start,
        ended_at=row.end if status in TERMINAL else None,
    )


def merge(live: JobRow | None, accounted: JobRow | None) -> Observation | None:
    """squeue (slurmctld) is authoritative while it still knows the job; sacct covers jobs it has purged.

    sacct lags sbatch by about a second and may still say PENDING/RUNNING for a job slurmctld has finished, so
    it only refines a squeue row it agrees with: its state text (`CANCELLED by 1000`) and its times (a job
    cancelled while pending has no start in sacct, while squeue reports start = end = the cancel time).
    One exception: a requeued job, which sacct records as REQUEUED at once while squeue shows the old run's
    teardown (COMPLETING) for a few seconds, is Pending (reason Requeued), not Running.
    The exit code comes from squeue when it has one: sacct folds exit statuses >= 128 (a shell's report of
    a signal) into `code-128:0`, so `exit 137` reads `9:0` there.
    """
    if live is not None:
        if (
            accounted is not None
            and state_key(live.state) == "COMPLETING"
            and state_key(accounted.state) in (REQUEUED_STATES)
        ):
            # Requeued: squeue still shows the old run's teardown; the job is waiting in the queue again.
            message = f"{state_key(accounted.state)}: the previous run is ending; the job waits in the queue again"
            return Observation(JobState.PENDING, accounted.state, message, pending_reason="Requeued")
        if accounted is not None and map_state(accounted.state) == map_state(live.state):
            finished = map_state(live.state) in TERMINAL
            live = JobRow(
                live.job_id,
                accounted.state if state_key(accounted.state) == state_key(live.state) else live.state,
                live.reason,
                live.exit_code or accounted.exit_code,
                accounted.start if finished else (live.start or accounted.start),
                (accounted.end or live.end) if finished else live.end,
                live.partition,
                live.name,
            )
        return observation(live)
    if accounted is not None:
        return observation(accounted)
    return None


def parse_evidence(text: str) -> list[dict[str, str]]:
    """`sacct -n -P -o JobID,State,ExitCode,Reason,NodeList,MaxRSS` with steps -> one dict per line."""
    names = EVIDENCE_FIELDS.split(",")
    rows = []
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < 3 or not re.match(r"^\d+", parts[0].strip()):
            continue
        parts += [""] * (len(names) - len(parts))
        rows.append({name: parts[i].strip() for i, name in enumerate(names)})
    return rows


# --- one SSH round, several commands ---------------------------------------------------------------------------

MARK = "@@tao:"


@dataclass(frozen=True)
class Section:
    """The combined stdout+stderr of one command of a round, and its exit status (None: never finished)."""

    text: str
    rc: int | None


def sections(stdout: str) -> dict[str, Section]:
    """Split the output of `round_script` into its commands' sections."""
    found: dict[str, Section] = {}
    name: str | None = None
    lines: list[str] = []
    for line in stdout.splitlines():
        if line.startswith(MARK):
            tag = line[len(MARK) :].strip()
            if tag.startswith("rc="):
                if name is not None:
                    rc = tag[3:]
                    found[name] = Section("\n".join(lines), int(rc) if rc.lstrip("-").isdigit() else None)
                name, lines = None, []
            else:
                name, lines = tag, []
            continue
        if name is not None:
            lines.append(line)
    if name is not None:  # cut off mid-command
        found[name] = Section("\n".join(lines), None)
    return found


def error_text(section: Section | None, limit: int = 400) -> str:
    """The non-data lines of a failed section (SLURM's own error messages), shortened."""
    if section is None:
        return "no output"
    text = " ".join(line.strip() for line in section.text.splitlines() if "|" not in line and line.strip())
    text = text or f"exit status {section.rc}"
    return text if len(text) <= limit else text[:limit] + "…"


def squeue_ok(section: Section | None) -> bool:
    """squeue answered. `Invalid job id specified` (every id already purged) is an answer: no live jobs."""
    if section is None:
        return False
    return section.rc == 0 or (section.rc is not None and "Invalid job id specified" in section.text)
