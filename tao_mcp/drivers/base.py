"""The one contract between the service layer and a platform driver.

A driver is thin: it turns a normalized LaunchRequest into the platform's calls and the platform's answers
back into Observations. It keeps no durable state (the job store does) and never imports another driver.
Transport failures raise BackendUnreachable; they are never turned into a job state.
"""

from __future__ import annotations

import contextlib
import re
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from tao_mcp.errors import BackendUnreachable
from tao_mcp.states import JobState

# Bounds of one read_log answer on every platform: cost stays bounded whatever the job printed. A driver cuts
# a longer line at RAW_LINE_CHARS and marks it with RAW_CUT; the service redacts the raw window first and only
# then cuts lines to LOG_LINE_CHARS for results (a cut before redaction would leak a secret's prefix).
LOG_LINE_CHARS = 4000
RAW_LINE_CHARS = 16000
RAW_CUT = "@@log:cut@@"
MAX_LOG_LINES = 5000


def clip_text(text: str, limit: int) -> str:
    """`text` bounded to `limit` characters for a message. A cut inside a word drops that word: redaction runs
    later, and half a secret is no longer recognisable as one."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    if not text[limit].isspace():
        head = re.sub(r"\S+$", "", head)
    return head.rstrip() + " …"


@dataclass(frozen=True)
class LaunchRequest:
    """Everything a driver needs to start one job. Built by the service; already validated."""

    job_id: str
    backend_name: str  # deterministic, derived from job_id: how a lost launch is found again
    command: str  # the final shell command (the entrypoint builder's output); run with bash -c
    image: str | None
    gpu_count: int
    num_nodes: int
    env: Mapping[str, str]  # non-secret environment (includes TAO_JOB_ID)
    secret_env: Mapping[str, str]  # name -> value; only via the platform's secret mechanism, never rendered
    time_limit_minutes: int | None
    options: Mapping[str, Any]  # platform options, as returned by Driver.parse_options


def master_port(job_id: str) -> int:
    """A per-job rendezvous port in 29500-30499, so two jobs sharing a node do not collide."""
    return 29500 + zlib.crc32(job_id.encode()) % 1000


def distributed_env(req: LaunchRequest, gpus_per_node: int | None = None) -> dict[str, str]:
    """The multi-GPU variables TAO PyTorch containers read (NUM_GPU_PER_NODE: processes TAO spawns per node;
    NUM_NODES and WORLD_SIZE: nodes). A single-node job also gets its rank and rendezvous address; a multi-node
    platform adds NODE_RANK, MASTER_ADDR and MASTER_PORT itself (they differ per node or come from the platform)."""
    gpus = req.gpu_count if gpus_per_node is None else gpus_per_node
    env = {
        "NUM_GPU_PER_NODE": str(max(int(gpus), 0)),
        "NUM_NODES": str(req.num_nodes),
        "WORLD_SIZE": str(req.num_nodes),
    }
    if req.num_nodes <= 1:
        env.update(NODE_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(master_port(req.job_id)))
    return env


def with_distributed_env(req: LaunchRequest, gpus_per_node: int | None = None) -> dict[str, str]:
    """The job's environment with distributed_env under it: a value the user set in env wins."""
    return {**distributed_env(req, gpus_per_node), **req.env}


@dataclass(frozen=True)
class JobRef:
    """What a driver gets back from the store to address an existing job."""

    job_id: str
    backend_name: str
    backend_id: str | None
    options: Mapping[str, Any]
    created_at: float  # epoch seconds
    cancel_requested: bool = False  # cancel_job asked (possibly in an earlier server process)


@dataclass
class Observation:
    """One normalized reading of a job's state from the backend."""

    status: JobState
    raw_state: str
    message: str = ""
    pending_reason: str | None = None
    exit_code: int | None = None
    started_at: float | None = None  # epoch seconds
    ended_at: float | None = None

    def __post_init__(self) -> None:
        self.status = JobState(self.status)  # a misspelled state fails here, in the driver, not in the store


@dataclass(frozen=True, order=True)
class LogMark:
    """A position in a job's log, meaningful only to the driver that made it: a byte offset (log files: SLURM,
    Brev) or a timestamp in ns plus the lines already taken at that instant (log streams: Docker, Kubernetes,
    Lepton, where lines may share a timestamp). Marks of one log compare in log order."""

    at: int
    skip: int = 0


@dataclass
class LogChunk:
    """A window of a job's raw log (lines as printed, RAW_CUT-marked when cut). `marks[i]` is where lines[i]
    begins; the first `context` lines come before the position asked for (redaction context: the service
    redacts them with the rest and drops them). Drivers never filter: grep runs in the service, on redacted text."""

    lines: list[str]
    marks: list[LogMark]
    begin: LogMark  # where the window (after its context) begins: marks[context] when it has lines
    end: LogMark  # after its last complete line: where the next page begins
    older: bool  # lines exist before `begin`
    newer: bool  # lines existed after `end` when read
    context: int = 0
    scanned: int = 0  # bytes the window covers (grep reports how much of the log it searched)
    # The first shown line's (lines[context]) number when the read tells it at no extra cost: `number` counted
    # from the log's start (1 = its first line), `from_end` counted back from its end when read (-1 = its last
    # line). The window's lines are consecutive: the next line is one more.
    number: int | None = None
    from_end: int | None = None


LogMode = Literal["tail", "after", "before"]


@dataclass
class Evidence:
    source: Literal["state", "exit_code", "event", "replica", "log", "reason"]
    text: str
    line: int | None = None


@dataclass
class Preview:
    """A dry run: what would be written and run, with secret values absent (names only)."""

    files: dict[str, str] = field(default_factory=dict)  # path -> content
    submit: str = ""  # the command that would launch it


class Driver(Protocol):
    platform: str
    storage_scheme: str  # URI scheme of results that persist on the platform (lustre, file, ...)

    def parse_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Validate platform options with the platform's options model (drivers/options.py; E_BAD_INPUT naming
        options.<key>), defaults from its settings filled in; return the normalized dict to store."""

    async def results_root(self, options: Mapping[str, Any], *, resolve: bool = True) -> str | None:
        """Absolute path where results persist without uploading (becomes TAO_RESULTS_ROOT), or None.

        resolve=False (a dry run): do not touch the backend to find it; a part only the backend knows is shown
        symbolically (SLURM: $HOME when SLURM_BASE_RESULTS_DIR is not set)."""

    async def preview(self, req: LaunchRequest) -> Preview: ...

    async def launch(self, req: LaunchRequest) -> str:
        """Start the job; return the backend id. Must not be retried blindly after it may have run."""

    async def find(self, refs: list[JobRef]) -> dict[str, str]:
        """Reconcile by deterministic name: job_id -> backend id for the jobs the backend knows."""

    async def observe(self, refs: list[JobRef]) -> dict[str, Observation]:
        """Batched state of many jobs (one backend round per sweep). Missing key = backend has no record."""

    async def read_log(
        self, ref: JobRef, *, mode: LogMode, at: LogMark | None, limit: int, context: int, max_bytes: int
    ) -> LogChunk:
        """`limit` lines: the log's last ones (tail), the first ones at or after `at` (after), or the last ones
        before `at` (before); plus up to `context` lines before them. Read backward from the end wherever the
        platform can (cost independent of the log's size); at most about `max_bytes` of log. Raw text: the service
        redacts it (never return, log or filter it anywhere else). drivers/logfile.py does the work for files and
        streams."""

    async def cancel(self, ref: JobRef) -> None:
        """Ask the backend to stop the job. Confirmation comes from a later observe()."""

    async def failure_evidence(self, ref: JobRef) -> list[Evidence]:
        """Platform facts beyond the state (events, replica issues, OOM flags). May be empty."""

    async def aclose(self) -> None: ...


# ---- optional capabilities: what only some platforms have. A driver has one when it defines its method(s);
# the services ask with isinstance(driver, HasX), never with getattr.


@runtime_checkable
class HasReplicas(Protocol):
    """Per-replica view of a job (Kubernetes pods, Lepton replicas): the diagnosis of a job stuck in Pending."""

    async def replicas(self, ref: JobRef) -> list[dict[str, Any]]:
        """Rows of {id, node, phase, readiness_issue: {reason, message} | None, ...}; [] before the job exists."""


@runtime_checkable
class HasProbe(Protocol):
    """A cheap read that proves the backend answers (SSH + sinfo, Docker ping, K8s version, Lepton workspace,
    brev ls): list_platforms' readiness and submit_job's fail-fast check. The service bounds and caches it."""

    async def prepare(self) -> None:
        """Local set-up before the first probe (import the client library, load its configuration): outside the
        probe's bound, which measures the backend's answer, not a cold process importing a large library."""

    async def probe(self) -> None:
        """Return when the backend answered; raise BackendUnreachable (or a coded TaoError) with the reason."""


@runtime_checkable
class HasRequestCheck(Protocol):
    """Requests the platform can never run, known without the backend (SLURM: a GPU layout its nodes cannot
    hold). The service asks before anything is recorded or rendered, dry runs included: a refusal leaves nothing."""

    def check_request(self, req: LaunchRequest) -> None:
        """Raise a coded TaoError for a request no launch could run; touch no backend."""


@runtime_checkable
class HasEphemeralResults(Protocol):
    """Results that may be kept on a machine the user deletes (a Brev instance's disk): submit_job warns."""

    def results_warning(self, options: Mapping[str, Any], results_root: str | None) -> str | None:
        """The warning for a job whose results go to results_root (None: S3 or an explicit URI), else None."""


@runtime_checkable
class HasDiagnostics(Protocol):
    """Live preflight facts for list_platforms (Docker, Brev)."""

    async def diagnostics(self) -> Mapping[str, Any]:
        """{reachable: bool, ...}; raise TaoError only for what the agent must fix (it is shown as the error)."""


@runtime_checkable
class HasInstances(Protocol):
    """Billed machines the user owns and may delete (Brev)."""

    async def list_instances(self) -> list[dict[str, Any]]: ...

    async def delete_instance(self, name: str) -> dict[str, Any]:
        """Ask for deletion; return {name, status, message, ...}."""


@runtime_checkable
class HasRunnerPhase(Protocol):
    """The runner's phase file beside the job's log (platforms with a log file: SLURM): one small read instead
    of scanning the log for the runner's latest line."""

    async def runner_phase(self, ref: JobRef) -> str | None:
        """The file's raw text (the runner's latest message; the service redacts it), None when there is none."""


@runtime_checkable
class HasLineCount(Protocol):
    """Log files (SLURM, Brev), where a line's number is a count of newlines: job_logs(line_numbers=true)."""

    async def line_number(self, ref: JobRef, at: LogMark, bound: int) -> int | None:
        """The number of the line beginning at `at`: from the log's start (1 = first line) when at most `bound`
        bytes precede it, else negative, counted back from the log's end (-1 = last line), when at most `bound`
        bytes follow it, else None. Never counts more than `bound` bytes."""


@runtime_checkable
class HasShell(Protocol):
    """A read-only shell where the platform's shared file system is mounted (SLURM login node: lustre://)."""

    async def exec_readonly(self, cmd: str) -> tuple[int, str, str]:
        """Run one read-only shell command; (exit code, stdout, stderr). Transport failures: BackendUnreachable."""

    async def browse_roots(self) -> list[str]:
        """The folders the shell may browse (the job results and data folders unless a setting names others)."""


# Exception classes (by name: the clients are imported lazily) raised while a connection is being made, before any
# byte of a request left: refused, unresolvable, connect timeout, a missing unix socket.
_CONNECT_FAILURES = frozenset(
    {
        "ConnectionRefusedError",
        "NewConnectionError",
        "ConnectTimeoutError",
        "ConnectTimeout",
        "NameResolutionError",
        "gaierror",
        "NoValidConnectionsError",
        "FileNotFoundError",
    }
)


def never_connected(exc: BaseException) -> bool:
    """Whether a transport failure happened while connecting (the request never left), searched through the
    exception's causes, urllib3's `reason` and exceptions carried in `args`. A read timeout or a reset after
    connecting is not: the request may have arrived."""
    todo, seen = [exc], set()
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if any(cls.__name__ in _CONNECT_FAILURES for cls in type(current).__mro__):
            return True
        linked = (current.__cause__, current.__context__, getattr(current, "reason", None), *current.args)
        todo.extend(x for x in linked if isinstance(x, BaseException))
    return False


@contextlib.contextmanager
def nothing_sent() -> Iterator[None]:
    """Around the steps of a launch before the request that creates the job: an outage there launched nothing."""
    try:
        yield
    except BackendUnreachable as exc:
        exc.sent = False
        raise
