# The signature table keeps one signature per line.
# ruff: noqa: E501
"""Failure analysis: one taxonomy for every platform (docs/failures.md).

Platform facts (raw state, pending reason, exit code, events, replica issues, the driver's message) and the job's
log tail are matched against ONE table of signatures (`SIGNATURES`); a small, fixed decision procedure fuses the
matches into a `FailureAnalysis`. Adding a signature is one entry in the table; no code changes.

The table: `CATEGORIES` holds each category's defaults (err_class, retriable, summary, suggestion naming the tool,
argument or variable to change); each `Signature` row names a category, where it is looked for (`where`: raw state,
pending reason, exit code, platform events/message, log lines), a case-insensitive regex compiled once, a priority,
and optional overrides of the category's defaults. Each row also derives, from its regex, literals one of which any
match must contain; log lines without any of them skip the regexes (a 10 000-line tail takes well under a second).

How a signature is chosen:
- `priority` says how specific a signature is: SURE (unambiguous on its own -> high confidence), LIKELY (medium),
  HINT (generic: a bare traceback, an `ERROR` line, `NCCL WARN`). Ties go to the earlier table entry for platform
  facts and to the earlier log line for logs ("the first error usually matters more than the last").
- `decisive` facts (SLURM `TIMEOUT`, `OUT_OF_MEMORY`, `NODE_FAIL`, K8s `OOMKilled`, `ImagePullBackOff` ...) beat any
  log guess; when the log disagrees the summary says so and the confidence drops to medium. Generic states
  (`FAILED`, `exited`, `Failed`) have no signature: the log decides. Exit code 137 is a non-decisive fact
  (host_oom unless the log shows something more specific).
- `secondary` signatures are usually consequences of another failure (NCCL watchdog timeouts, connection resets,
  torchrun's ChildFailedError): an earlier non-secondary error wins over them.

Decisions worth knowing:
- A CUDA out-of-memory is gpu_oom (ERR_RESOURCE, not retriable), never gpu_hardware (the reference library's
  `RuntimeError.*CUDA` regex called it infrastructure and retried it).
- `CUDA error: an illegal memory access was encountered` is program_error: almost always a bug (an out-of-range
  index, a custom op). When the GPU really failed, Xid/ECC lines or node events come with it, and those
  gpu_hardware signatures have a higher priority, so they win.
- Log line numbers (evidence `line`, "log line N" in summaries) are 0-based positions in the whole log, the
  numbering job_logs uses.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from tao_mcp.drivers.base import Evidence
from tao_mcp.models import EvidenceItem, FailureAnalysis
from tao_mcp.states import JobState

ErrClass = Literal["ERR_PROGRAM", "ERR_INFRA", "ERR_RESOURCE", "ERR_CONFIG", "ERR_UNKNOWN", "NONE"]
Confidence = Literal["high", "medium", "low"]

# Where a signature is looked for.
STATE: Final = "state"  # the platform's raw state (SLURM TIMEOUT, K8s OOMKilled, Lepton Queueing)
REASON: Final = "reason"  # the pending reason (SLURM %r, K8s waiting reason, Lepton readiness issue)
EXIT: Final = "exit_code"  # str(exit_code)
EVENT: Final = "event"  # platform evidence texts (events, replica issues) and the driver's message
LOG: Final = "log"  # one line of the job's log

FACTS: Final = frozenset({STATE, REASON, EVENT})
ANY: Final = frozenset({STATE, REASON, EVENT, LOG})
ONLY_LOG: Final = frozenset({LOG})
ONLY_STATE: Final = frozenset({STATE})
ONLY_REASON: Final = frozenset({REASON})
ONLY_EXIT: Final = frozenset({EXIT})

# Signature priority (specificity).
HINT: Final = 1
LIKELY: Final = 2
SURE: Final = 3

MAX_EVIDENCE: Final = 20
MAX_TEXT: Final = 300
MAX_NODE_EVENTS: Final = 20
_SUMMARY_TEXT: Final = 160  # how much of a matched line goes into the summary
_WINDOW: Final = 20  # lines after a non-traceback error that still belong to its error window
_TB_SPAN: Final = 400  # longest traceback walked
_MATCH_CHARS: Final = 2000  # longer log lines are matched on their first characters only
_TAIL_LINES: Final = 5  # last log lines shown when nothing matched
_MAX_PLATFORM_EVIDENCE: Final = 6

_INHERIT: Final = "inherit"


@dataclass(frozen=True)
class Category:
    """Defaults of one category; a signature may override any of them."""

    err_class: ErrClass
    retriable: bool | None
    summary: str
    suggestion: str


_RESUBMIT = "then submit_job again"

CATEGORIES: Final[dict[str, Category]] = {
    "none": Category("NONE", None, "the job completed successfully", "nothing to fix"),
    "gpu_oom": Category(
        "ERR_RESOURCE",
        False,
        "the job ran out of GPU memory",
        "lower the batch size in specs (e.g. train.batch_size / dataset.batch_size) or request more GPU memory "
        f"(gpu_count / a larger shape or GPU type), {_RESUBMIT}; resubmitting unchanged will fail the same way",
    ),
    "host_oom": Category(
        "ERR_RESOURCE",
        False,
        "the job ran out of host (CPU) memory and was killed",
        "raise memory (SLURM `memory` option, Docker/Kubernetes memory limit, a larger Lepton/Brev shape) or lower "
        f"dataloader workers (e.g. dataset.workers / num_workers in specs), {_RESUBMIT}",
    ),
    "timeout": Category(
        "ERR_RESOURCE",
        False,
        "the job hit its time limit",
        "raise time_limit in submit_job or resume from the last checkpoint (e.g. train.resume_training_checkpoint_path "
        "in specs)",
    ),
    "image_pull": Category(
        "ERR_CONFIG",
        False,
        "the container image could not be pulled",
        "check the image name and tag in submit_job(image=...) (resolve_image shows the default) and the registry "
        "credential (NGC_KEY for nvcr.io, imagePullSecrets on Kubernetes); cancel_job the stuck job and submit_job "
        "again",
    ),
    "no_capacity": Category(
        "ERR_INFRA",
        None,
        "no free GPUs/nodes of the requested kind are available right now",
        "wait (wait_for_job(until='running')), or ask for fewer GPUs (gpu_count / num_nodes) or another "
        "shape/partition/node group; cancel_job if you cannot wait",
    ),
    "unschedulable": Category(
        "ERR_INFRA",
        None,
        "no node can run the job as requested",
        "lower gpu_count / num_nodes or choose another partition, node pool or shape (list_platforms shows the "
        "defaults); cancel_job and submit_job again",
    ),
    "quota": Category(
        "ERR_CONFIG",
        False,
        "the request exceeds a quota or limit of your account",
        "lower gpu_count / num_nodes, wait for your other jobs (list_jobs) to finish, or use another account/QOS "
        "(SLURM_ACCOUNT / the account option)",
    ),
    "gpu_hardware": Category(
        "ERR_INFRA",
        True,
        "a GPU or its driver failed on the node",
        "submit_job again unchanged (it will likely land on another node) and report the node to the cluster admins; "
        "see node_events",
    ),
    "nccl_network": Category(
        "ERR_INFRA",
        True,
        "NCCL / inter-node communication failed",
        "submit_job again (NCCL and network failures are often transient); if it repeats, set NCCL_DEBUG=INFO in env "
        "to see why, try NCCL_IB_DISABLE=1, or run on one node (num_nodes=1)",
    ),
    "node_failure": Category(
        "ERR_INFRA",
        True,
        "the node running the job failed",
        "submit_job again unchanged (a different node is likely); resume from the last checkpoint if one was written",
    ),
    "storage": Category(
        "ERR_INFRA",
        None,
        "reading or writing storage failed",
        "check the s3:// / lustre:// URIs in inputs, outputs and specs with check_path / list_path, and the S3 "
        f"settings (ACCESS_KEY, SECRET_KEY, S3_ENDPOINT_URL), {_RESUBMIT}",
    ),
    "credentials": Category(
        "ERR_CONFIG",
        False,
        "a credential is missing or was rejected",
        "set the missing or wrong variable (ACCESS_KEY / SECRET_KEY, NGC_KEY, HF_TOKEN, the platform token) in the "
        f"server environment (list_platforms shows what is missing), {_RESUBMIT}",
    ),
    "spec_error": Category(
        "ERR_PROGRAM",
        False,
        "the spec/config is invalid",
        f"fix the key or value named in the evidence in specs (compare with the model's spec template), {_RESUBMIT}",
    ),
    "program_error": Category(
        "ERR_PROGRAM",
        False,
        "the program failed",
        f"read the error with job_logs around the evidence lines, fix the command, code or inputs, {_RESUBMIT}",
    ),
    "canceled": Category(
        "NONE",
        None,
        "the job was canceled",
        "nothing to fix; submit_job again if the cancel was not intended",
    ),
    "unknown": Category(
        "ERR_UNKNOWN",
        None,
        "no known failure signature was found",
        "read the whole log with job_logs (e.g. grep='rror') and job_status; the platform may have more detail",
    ),
    # Pending (and other non-failure) states.
    "queued": Category(
        "NONE",
        None,
        "the job is queued behind other jobs",
        "wait (wait_for_job(until='running')); cancel_job if it should not run",
    ),
    "held": Category(
        "NONE",
        None,
        "the job is held",
        "held: release it with `scontrol release <id>` on the cluster or cancel_job",
    ),
    "dependency": Category(
        "NONE",
        None,
        "the job waits for another job it depends on",
        "wait for the dependency to finish; cancel_job if it will never be satisfied",
    ),
    "begin_time": Category(
        "NONE",
        None,
        "the job waits for its requested start time",
        "wait for the begin time; cancel_job and submit_job again to start it now",
    ),
    "starting": Category(
        "NONE",
        None,
        "the job is starting (pulling the image or creating its containers)",
        "wait (wait_for_job(until='running')); if it stays here, run failure_analysis again",
    ),
    "paused": Category(
        "NONE",
        None,
        "the job is suspended",
        "it continues when the platform or an admin resumes it; cancel_job if it is no longer needed",
    ),
}


def _skip_class(regex: str, i: int) -> int:
    """Index after the character class that starts at regex[i] == '['."""
    j = i + 1
    if j < len(regex) and regex[j] == "^":
        j += 1
    if j < len(regex) and regex[j] == "]":
        j += 1
    while j < len(regex) and regex[j] != "]":
        j += 2 if regex[j] == "\\" else 1
    return j + 1


def _skip_group(regex: str, i: int) -> int:
    """Index after the group that starts at regex[i] == '('."""
    depth, j = 0, i
    while j < len(regex):
        c = regex[j]
        if c == "\\":
            j += 2
            continue
        if c == "[":
            j = _skip_class(regex, j)
            continue
        depth += (c == "(") - (c == ")")
        j += 1
        if depth == 0:
            break
    return j


def _split_alternatives(regex: str) -> list[str]:
    """The top-level alternatives of a regex."""
    parts: list[str] = []
    start = i = 0
    while i < len(regex):
        c = regex[i]
        if c == "\\":
            i += 2
        elif c == "[":
            i = _skip_class(regex, i)
        elif c == "(":
            i = _skip_group(regex, i)
        elif c == "|":
            parts.append(regex[start:i])
            start = i = i + 1
        else:
            i += 1
    parts.append(regex[start:])
    return parts


def _literal_runs(alternative: str) -> list[str]:
    """Runs of characters every match of this alternative must contain (conservative: groups/classes break runs)."""
    runs: list[str] = []
    cur: list[str] = []
    i, n = 0, len(alternative)
    while i < n:
        c = alternative[i]
        token: str | None = None
        if c == "\\":
            nxt = alternative[i + 1 : i + 2]
            token = nxt if nxt and not nxt.isalnum() else None  # \. \( are literal; \d \s \b are not
            i += 2
        elif c == "[":
            i = _skip_class(alternative, i)
        elif c == "(":
            i = _skip_group(alternative, i)
        elif c == "{":  # a {m,n} quantifier (of the previous token, already dropped)
            end = alternative.find("}", i)
            i = n if end < 0 else end + 1
        elif c in ".^$?*+}|)":
            i += 1
        else:
            token = c
            i += 1
        quantifier = alternative[i : i + 1]
        if quantifier in ("?", "*", "{"):
            token = None  # optional or repeated: not required as written
        elif quantifier == "+" and token is not None:
            cur.append(token)
            token = None
        if token is None:
            if cur:
                runs.append("".join(cur))
            cur = []
        else:
            cur.append(token)
    if cur:
        runs.append("".join(cur))
    return runs


def _required_literals(regex: str) -> tuple[str, ...] | None:
    """One lowercase literal per alternative that any match must contain, or None (always try the regex)."""
    out: list[str] = []
    for alternative in _split_alternatives(regex):
        runs = _literal_runs(alternative)
        best = max(runs, key=len, default="")
        if len(best) < 3:
            return None
        out.append(best.lower())
    return tuple(out)


@dataclass(frozen=True)
class Signature:
    """One row of the table: a regex, where it is looked for, and what a match means."""

    category: str
    where: frozenset[str]
    regex: str
    priority: int = SURE
    decisive: bool = False  # a platform fact that beats any log guess
    secondary: bool = False  # usually a consequence of another failure: an earlier error wins
    summary: str = ""  # overrides the category's; may use {reason} {raw_state} {exit_code} {platform}
    suggestion: str = ""
    err_class: ErrClass | None = None
    retriable: bool | Literal["inherit"] | None = _INHERIT
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)
    # Lowercase strings of which a matching text contains at least one (a cheap pre-check; None: always try).
    literals: tuple[str, ...] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pattern", re.compile(self.regex, re.IGNORECASE))
        object.__setattr__(self, "literals", _required_literals(self.regex))

    def may_match(self, lowered: str) -> bool:
        return self.literals is None or any(lit in lowered for lit in self.literals)

    @property
    def info(self) -> Category:
        base = CATEGORIES[self.category]
        return Category(
            self.err_class or base.err_class,
            base.retriable if self.retriable == _INHERIT else self.retriable,
            self.summary or base.summary,
            self.suggestion or base.suggestion,
        )


_SHM = "raise the shared memory (Docker shm_size, Lepton shared_memory_size) or lower dataloader workers in specs"
_S3_FIX = "check the s3:// URI in inputs/outputs/specs with check_path or list_path"
_SIG = Signature
# Decoration before a log line's own text: `[rank0]: `, srun's `0: `, an ISO timestamp.
_LINE_PREFIX = r"^(?:\[[^\]]*\]:? ?|\d+: |\d{4}-\d\d-\d\d[T ][\d:.,]+Z? )*"

# fmt: off
SIGNATURES: Final[tuple[Signature, ...]] = (
    # --- GPU memory (ERR_RESOURCE). Listed before anything CUDA-related: a CUDA OOM is never gpu_hardware.
    _SIG("gpu_oom", ANY, r"CUDA out of memory|CUDA error: out of memory|(?<!java\.lang\.)\bOutOfMemoryError\b|cudaErrorMemoryAllocation|CUBLAS_STATUS_ALLOC_FAILED|CUDNN_STATUS_ALLOC_FAILED|OOM when allocating tensor|out of memory on device|RESOURCE_EXHAUSTED: *Out of memory"),
    _SIG("gpu_oom", ANY, r"\bRESOURCE_EXHAUSTED\b", LIKELY),
    # --- host memory
    _SIG("host_oom", ONLY_STATE, r"^OUT_OF_MEMORY\b", decisive=True, summary="the job exceeded its memory allocation and was killed"),
    _SIG("host_oom", FACTS, r"low on resource: memory|memory pressure", decisive=True, summary="the node ran low on memory and evicted the job"),
    _SIG("host_oom", ANY, r"\bOOMKill(?:ed|ing)?\b(?![\"']?\s*[:=]\s*(?:false|0)\b)|\boom[-_ ]kill|Out of memory: Kill(?:ed)? process|Memory cgroup out of memory|invoked oom-killer", decisive=True),
    _SIG("host_oom", ONLY_LOG, r"killed by signal: Killed", summary="a DataLoader worker was killed by the out-of-memory killer"),
    _SIG("host_oom", ONLY_LOG, r"(?<![\w.])MemoryError\b", summary="Python ran out of host memory (MemoryError)"),
    _SIG("host_oom", ONLY_LOG, r"unable to write to file </torch_|insufficient shared memory|\bshm\b.*(?:No space left|too small)", summary="the job ran out of shared memory (/dev/shm)", suggestion=_SHM),
    _SIG("host_oom", ONLY_LOG, r"^\s*Killed\s*$|\bline \d+:\s+\d+\s+Killed\b", LIKELY, summary="a process was killed with SIGKILL, usually by the out-of-memory killer"),
    _SIG("host_oom", ONLY_LOG, r"Cannot allocate memory|std::bad_alloc|Unable to allocate [\d.]+ [KMGT]?i?B for an array", LIKELY),
    _SIG("host_oom", ONLY_LOG, r"\bBus error\b", LIKELY, summary="a process died with a bus error, usually too little shared memory (/dev/shm)", suggestion=_SHM),
    _SIG("host_oom", ONLY_EXIT, r"^137$", LIKELY, summary="the process was killed with SIGKILL, usually by the out-of-memory killer or an eviction"),
    # --- time limit
    _SIG("timeout", ONLY_STATE, r"^(?:TIMEOUT|DEADLINE)\b", decisive=True),
    _SIG("timeout", ONLY_EXIT, r"^124$", LIKELY, summary="the command was stopped by its time limit (`timeout` exits 124)"),
    _SIG("timeout", ANY, r"DUE TO TIME LIMIT|DeadlineExceeded|active longer than specified deadline", decisive=True),
    # --- image pull (ERR_CONFIG)
    _SIG("image_pull", ANY, r"ImagePullBackOff|ErrImagePull|Back-off pulling image|InvalidImageName|ErrImageNeverPull|manifest (?:for \S+ )?unknown|pull access denied|repository does not exist|failed to pull (?:and unpack )?image|unauthorized: authentication required", decisive=True),
    _SIG("image_pull", ONLY_LOG, r"pyxis: .*(?:fail|error)|\benroot\b.*\b(?:failed|error)\b|\[ERROR\] URL \S+ returned error code", LIKELY),
    # --- capacity and scheduling
    _SIG("no_capacity", ONLY_REASON, r"^Resources$", decisive=True, summary="the job waits for free GPUs/nodes"),
    _SIG("no_capacity", FACTS, r"NoCapacity|\bno capacity\b|insufficient capacity|out of capacity|not enough capacity|InsufficientInstanceCapacity", decisive=True),
    _SIG("unschedulable", ONLY_REASON, r"^ReqNodeNotAvail", decisive=True, summary="the requested nodes are unavailable (down, drained or reserved)"),
    _SIG("unschedulable", ONLY_REASON, r"^(?:PartitionNodeLimit|PartitionTimeLimit|PartitionConfig|BadConstraints)$", decisive=True, err_class="ERR_CONFIG", retriable=False, summary="the request exceeds the partition's limits", suggestion="lower num_nodes / gpu_count or time_limit, or choose another partition (SLURM_PARTITION / the partition option); cancel_job and submit_job again"),
    _SIG("unschedulable", ONLY_REASON, r"^(?:PartitionDown|PartitionInactive|NodeDown)$", decisive=True, summary="the partition or its nodes are down"),
    _SIG("unschedulable", ANY, r"Requested node configuration is not available", decisive=True, err_class="ERR_CONFIG", retriable=False),
    _SIG("unschedulable", FACTS, r"Insufficient (?:nvidia\.com/gpu|cpu|memory)|FailedScheduling|Unschedulable|nodes are available|didn't match (?:Pod's )?node (?:affinity|selector)|untolerated taint", decisive=True),
    # --- storage (before quota: "Disk quota exceeded" is storage)
    _SIG("storage", ANY, r"No space left on device|\bENOSPC\b|low on resource: ephemeral-storage", retriable=False, summary="a disk filled up (No space left on device)", suggestion="free space or write results to a larger volume (TAO_RESULTS_ROOT / SLURM_BASE_RESULTS_DIR), or exclude big files with upload_excludes; then submit_job again"),
    _SIG("storage", ANY, r"Disk quota exceeded|\bEDQUOT\b", err_class="ERR_CONFIG", retriable=False, summary="your disk quota is exhausted (Disk quota exceeded)", suggestion="free space in your quota or write results elsewhere (TAO_RESULTS_ROOT / SLURM_BASE_RESULTS_DIR), then submit_job again"),
    _SIG("storage", ANY, r"Read-only file system|\bEROFS\b", err_class="ERR_CONFIG", retriable=False, summary="the job wrote to a read-only file system", suggestion="write results under a writable mount (TAO_RESULTS_ROOT, a writable Docker mount without :ro), then submit_job again"),
    _SIG("storage", ANY, r"\bAccessDenied\b|Access Denied|An error occurred \(403\)|\b403\b.{0,40}Forbidden|operation: Forbidden", err_class="ERR_CONFIG", retriable=False, summary="S3 refused access (AccessDenied / 403)", suggestion=f"check that the S3 credentials (ACCESS_KEY / SECRET_KEY) may read/write that bucket and {_S3_FIX}; then submit_job again"),
    _SIG("storage", ANY, r"NoSuchKey|NoSuchBucket|specified (?:key|bucket) does not exist|An error occurred \(404\)|operation: Not Found", err_class="ERR_CONFIG", retriable=False, summary="an S3 object or bucket does not exist (NoSuchKey / NoSuchBucket / 404)", suggestion=f"{_S3_FIX}, fix it, then submit_job again"),
    _SIG("storage", ANY, r"EndpointConnectionError|Could not connect to the endpoint URL|\bSlowDown\b|ServiceUnavailable|Stale file handle|Transport endpoint is not connected|Input/output error", LIKELY, retriable=True, summary="storage was unreachable or flaky (S3 endpoint or a shared mount)", suggestion="submit_job again; if it repeats, check S3_ENDPOINT_URL and the mount with check_path"),
    _SIG("storage", ONLY_LOG, r"\[tao-runner\].*\b(?:download|upload)\w*\b.*\b(?:fail\w*|error)\b|\[tao-runner\] error:.*\b(?:download|upload)", LIKELY, summary="the tao-runner could not download inputs or upload outputs"),
    # --- credentials (ERR_CONFIG)
    _SIG("credentials", ANY, r"missing credential|E_MISSING_CREDENTIALS", decisive=True, summary="a required credential was not provided to the job"),
    _SIG("credentials", ANY, r"InvalidAccessKeyId|SignatureDoesNotMatch|ExpiredToken|The AWS Access Key Id you provided|NoCredentialsError|Unable to locate credentials|PartialCredentialsError", summary="the S3 credentials are missing or invalid", suggestion="set ACCESS_KEY / SECRET_KEY (and S3_ENDPOINT_URL) correctly in the server environment (list_platforms shows what is set), then submit_job again"),
    _SIG("credentials", FACTS, r"CreateContainerConfigError|secret \"[^\"]+\" not found|couldn't find key \S+ in Secret", decisive=True, summary="a Kubernetes Secret the pod needs is missing"),
    _SIG("credentials", ANY, r"\b401\b.{0,40}Unauthori[sz]ed|Unauthori[sz]ed.{0,40}\b401\b|HTTP Error 401|401 Client Error|GatedRepoError|invalid (?:api key|token)"),
    # --- quota (ERR_CONFIG)
    _SIG("quota", ONLY_REASON, r"^(?:QOS|Assoc)\w+|^Max\w+Per(?:User|Account)", decisive=True, summary="the job is held back by an account/QOS limit"),
    _SIG("quota", ANY, r"exceeded quota|(?<!disk )quota exceeded|QuotaExceeded|exceeds? (?:your |the )?quota", decisive=True),
    # --- GPU hardware / driver (ERR_INFRA, retriable on another node)
    _SIG("gpu_hardware", ANY, r"\bXid\b|fallen off the bus|GPU is lost|Unable to determine the device handle", summary="the GPU reported a hardware error (NVIDIA Xid / fallen off the bus)"),
    _SIG("gpu_hardware", ANY, r"uncorrectable ECC|\bECC errors?\b|double bit ECC|row remapping failure|pending page retirement"),
    _SIG("gpu_hardware", ANY, r"cuInit\b.{0,40}(?:fail|error)|CUDA_ERROR_NO_DEVICE|no CUDA-capable device|driver version is insufficient|Found no NVIDIA driver|NVIDIA driver on your system is too old|Failed to initialize NVML|NVML.{0,40}(?:version mismatch|Unknown Error)|could not select device driver \"[^\"]*\" with capabilities: \[\[gpu\]\]|nvidia-container-cli: .*(?:error|fail)", summary="the node's GPU or NVIDIA driver is unusable (no device / driver mismatch)"),
    _SIG("gpu_hardware", ANY, r"CUDA error: (?:unknown error|unspecified launch failure)", LIKELY),
    # --- NCCL / network (ERR_INFRA, retriable)
    _SIG("nccl_network", ANY, r"Watchdog caught collective operation timeout|collective operation timeout|NCCL (?:communicator was aborted|timeout)", secondary=True, summary="an NCCL collective timed out (often because another rank died or the network stalled)"),
    _SIG("nccl_network", ANY, r"NCCL error|ncclSystemError|ncclInternalError|ncclRemoteError|ncclInvalidUsage|ncclUnhandledCudaError"),
    _SIG("nccl_network", ANY, r"\bibv_\w+.*(?:fail|error)|InfiniBand.*(?:error|fail)|\bRDMA\b.*(?:error|fail)|NET/IB.*(?:error|fail)", LIKELY),
    _SIG("nccl_network", ANY, r"RendezvousConnectionError|RendezvousTimeoutError|TCPStore.*(?:timed out|failed|refused)|DistNetworkError", LIKELY),
    _SIG("nccl_network", ANY, r"Connection reset by peer|DistBackendError", LIKELY, secondary=True),
    _SIG("nccl_network", ONLY_LOG, r"NCCL WARN|ProcessGroupNCCL", HINT, secondary=True),
    # --- node failure / preemption (ERR_INFRA, retriable)
    _SIG("node_failure", ONLY_STATE, r"^(?:NODE_FAIL|BOOT_FAIL)\b", decisive=True, summary="the node running the job failed"),
    _SIG("node_failure", ONLY_STATE, r"^PREEMPTED\b", decisive=True, summary="the job was preempted by the scheduler"),
    _SIG("node_failure", ANY, r"DUE TO (?:NODE FAILURE|PREEMPTION)", decisive=True),
    _SIG("node_failure", FACTS, r"Mount point not found", decisive=True, summary="the replica landed on a node with a broken mount (ConfigError: Mount point not found)", suggestion="cancel_job and submit_job again unchanged: a different node is likely"),
    _SIG("node_failure", FACTS, r"\bEvicted\b|\bNodeLost\b|NodeNotReady|node (?:was )?lost|TaintManagerEviction|NodeShutdown|\bPreempt(?:ed|ing)\b|spot (?:instance )?(?:interruption|reclaim)", decisive=True),
    # --- canceled
    _SIG("canceled", ONLY_STATE, r"^(?:CANCELL?ED|REVOKED)\b", decisive=True),
    _SIG("canceled", FACTS, r"(?:stopped|deleted|canceled) outside tao-mcp", decisive=True, summary="the job was stopped outside tao-mcp"),
    _SIG("canceled", ONLY_LOG, r"CANCELLED AT \S+ \*\*\*", LIKELY, summary="the job was canceled (scancel)"),
    # --- spec / config (ERR_PROGRAM)
    _SIG("spec_error", ANY, r"ConfigKeyError|ConfigAttributeError|ConfigTypeError|ConfigValueError|MissingMandatoryValue|Missing mandatory value|InterpolationResolutionError|omegaconf\.errors\.\w+|hydra\.errors\.\w+|Could not override '|Key '[^']*' (?:is )?not in struct|Error merging override|Cannot find primary config|Could not find '[^']*'"),
    _SIG("spec_error", ANY, r"pydantic(?:_core)?(?:\._pydantic_core)?\.ValidationError|\d+ validation errors? for \w+|yaml\.(?:scanner|parser)\.\w+Error|while parsing a (?:block|flow) mapping"),
    _SIG("spec_error", ANY, r"invalid device ordinal|num_gpus.{0,40}(?:exceed|more than|greater than|mismatch)", LIKELY, summary="the spec asks for more GPUs than the job has", suggestion="set num_gpus in specs to gpu_count (or raise gpu_count), then submit_job again"),
    _SIG("spec_error", ONLY_LOG, r"FileNotFoundError|No such file or directory: '", LIKELY, summary="an input path does not exist", suggestion="check the dataset / checkpoint paths in inputs and specs (check_path, list_path), then submit_job again"),
    _SIG("spec_error", ONLY_LOG, r"jsonschema\.exceptions\.ValidationError|\bInvalid (?:spec|config(?:uration)?)\b|spec validation failed", LIKELY),
    # --- program errors with a known shape (ERR_PROGRAM)
    _SIG("program_error", ONLY_LOG, r"illegal memory access", LIKELY, summary="a CUDA kernel made an illegal memory access (usually a bug: an out-of-range index or a custom op)", suggestion="rerun with CUDA_LAUNCH_BLOCKING=1 in env to locate it and check the inputs/labels; if node_events show Xid errors it is the GPU instead: submit_job again"),
    _SIG("program_error", ONLY_LOG, r"device-side assert triggered", LIKELY, summary="a CUDA device-side assert fired (often a label or class index out of range)", suggestion="check num_classes / class mappings in specs against the dataset, then submit_job again"),
    _SIG("program_error", ONLY_LOG, r"Segmentation fault|\bSIGSEGV\b|core dumped|Fatal Python error", LIKELY, summary="a process crashed (segmentation fault / abort)"),
    _SIG("program_error", ONLY_LOG, r"ModuleNotFoundError|ImportError|command not found", LIKELY, summary="a command or Python module is missing in the image", suggestion="check the command and the image (resolve_image shows the default), then submit_job again"),
    _SIG("program_error", ONLY_LOG, r"\bloss (?:is|became) nan\b|\bnan loss\b", LIKELY, summary="training diverged (NaN loss)", suggestion="lower the learning rate in specs or check the data, then submit_job again"),
    _SIG("program_error", ONLY_EXIT, r"^139$", LIKELY, summary="the process crashed with a segmentation fault"),
    _SIG("program_error", ONLY_LOG, r"ChildFailedError", HINT, secondary=True),
    # --- generic error lines: the start of an error window
    _SIG("program_error", ONLY_LOG, r"Traceback \(most recent call last\)", HINT),
    _SIG("program_error", ONLY_LOG, _LINE_PREFIX + r"(?:[A-Za-z_]\w{0,80}\.){0,8}[A-Za-z_]\w{0,80}(?:Error|Exception)(?::\s|:?\s*$)", HINT),
    _SIG("program_error", ONLY_LOG, r"^(?:srun|slurmstepd): error:", HINT, secondary=True),
    _SIG("program_error", ONLY_LOG, _LINE_PREFIX + r"\[?ERROR\b|- ERROR\]|- CRITICAL\]|\bFATAL\b|terminate called after throwing", HINT),
    # --- pending reasons and states
    _SIG("held", ONLY_REASON, r"^(?:JobHeldUser|launch failed requeued held|held)\b"),
    _SIG("held", ONLY_REASON, r"^JobHeldAdmin\b", summary="the job is held by an administrator", suggestion="ask the cluster admins to release it (scontrol release), or cancel_job"),
    _SIG("dependency", ONLY_REASON, r"^DependencyNeverSatisfied$", err_class="ERR_CONFIG", retriable=False, summary="the job's dependency can never be satisfied, so it will never start", suggestion="cancel_job and submit_job again without the dependency"),
    _SIG("dependency", ONLY_REASON, r"^Dependency$"),
    _SIG("begin_time", ONLY_REASON, r"^BeginTime$"),
    _SIG("queued", ONLY_REASON, r"^Priority$", summary="the job is queued behind higher-priority jobs"),
    _SIG("queued", FACTS, r"^(?:Queueing|Awaiting)$", LIKELY),
    _SIG("starting", FACTS, r"ContainerCreating|PodInitializing|Pulling image|\bInProgress\b|starting workers|^CONFIGURING$|^Starting$", LIKELY),
)
# fmt: on

NODE_CATEGORIES: Final = frozenset({"host_oom", "gpu_hardware", "node_failure"})

_LOG_SIGS: Final = tuple((i, s) for i, s in enumerate(SIGNATURES) if LOG in s.where)
_LOG_ALWAYS: Final = tuple((i, s) for i, s in _LOG_SIGS if s.literals is None)  # anchored or literal-free
# Fast gate: most log lines contain none of the signatures' literals (str `in` is much faster than regex here).
_LOG_LITERALS: Final = tuple(sorted({lit for _, s in _LOG_SIGS for lit in s.literals or ()}))
_TB_HEADER: Final = re.compile(r"Traceback \(most recent call last\)")
_FRAME: Final = re.compile(r'^\s+File "[^"]*", line \d+')
_LIB_FRAME: Final = re.compile(r'File "[^"]*(?:site-packages|dist-packages|/lib/python\d|<frozen|/usr/lib/)')
_EXC_LINE: Final = re.compile(r"^(?:[A-Za-z_]\w{0,80}\.){0,8}[A-Za-z_]\w{0,80}(?::\s|:?\s*$)")
_EXC_NAME_END: Final = re.compile(r"(?:Error|Exception|Exit|Interrupt|Failure|Warning)(?::|\s*$)")
_DECORATION: Final = re.compile(_LINE_PREFIX)
_PLATFORM_NAMES: Final = {
    "slurm": "SLURM",
    "kubernetes": "Kubernetes",
    "docker": "Docker",
    "lepton": "Lepton",
    "brev": "Brev",
}
_CONFIDENCE_ORDER: Final = {"low": 0, "medium": 1, "high": 2}
# Category pairs that do not contradict each other (one is a usual consequence of the other).
_COMPATIBLE: Final = frozenset(
    {
        frozenset({"node_failure", "nccl_network"}),
        frozenset({"gpu_hardware", "nccl_network"}),
        frozenset({"node_failure", "gpu_hardware"}),
        frozenset({"node_failure", "host_oom"}),
        frozenset({"timeout", "canceled"}),
    }
)


@dataclass(frozen=True)
class _Hit:
    sig: Signature
    order: int  # position in SIGNATURES
    source: str  # evidence source: state / reason / exit_code / event / replica / log
    text: str
    fact: bool  # a platform fact (not a log line)
    idx: int = 0  # index into log_lines (logs) or position among the facts
    line: int | None = None  # absolute log line

    @property
    def category(self) -> str:
        return self.sig.category

    @property
    def decisive(self) -> bool:
        return self.fact and self.sig.decisive


@dataclass(frozen=True)
class _Traceback:
    start: int
    prefix: str  # what precedes "Traceback" on its line (e.g. "[rank0]: "), repeated on every line of it
    frames: tuple[int, ...]
    exc: int | None

    def body(self, line: str) -> str:
        return line[len(self.prefix) :] if self.prefix and line.startswith(self.prefix) else _body(line)

    @property
    def end(self) -> int:
        return self.exc if self.exc is not None else (self.frames[-1] if self.frames else self.start)


@dataclass
class _LogScan:
    lines: Sequence[str]
    first_line: int
    hits: list[_Hit]
    tracebacks: list[_Traceback]
    chosen: _Hit | None = None
    earlier: _Hit | None = None  # best hit of an earlier error window of another category
    first_window: _Hit | None = None  # best hit of the first error window when chosen lies elsewhere
    final_exc: int | None = None  # index of the last Python exception line


@dataclass
class _Inputs:
    platform: str
    status: JobState
    raw_state: str
    exit_code: int | None
    reason: str
    message: str
    evidence: Sequence[Evidence]

    @property
    def label(self) -> str:
        return _PLATFORM_NAMES.get(self.platform.lower(), self.platform)


# ---------------------------------------------------------------------------------------------------------------------
# Public API


def analyze(
    *,
    platform: str,
    status: JobState,
    raw_state: str,
    exit_code: int | None,
    pending_reason: str | None,
    message: str,
    log_lines: list[str],
    log_first_line: int = 0,
    platform_evidence: Sequence[Evidence] = (),
) -> FailureAnalysis:
    """Explain why a job failed (or why it is still pending) from platform facts and its log tail.

    job_id, status and next are left at their defaults: the caller sets them with model_copy(update=...).
    """
    inp = _Inputs(
        platform=platform,
        status=status,
        raw_state=(raw_state or "").strip(),
        exit_code=exit_code,
        reason=(pending_reason or "").strip().strip("()").strip(),
        message=(message or "").strip(),
        evidence=tuple(platform_evidence),
    )
    facts = _match_facts(inp)
    node_events = _node_events(inp)
    base_evidence = _fact_evidence(inp, facts)

    if status == JobState.COMPLETE:
        return _result(
            "none", inp, summary="the job completed successfully", confidence="high", evidence=base_evidence
        ).model_copy(update={"node_events": node_events})
    if status in (JobState.PENDING, JobState.PAUSED):
        result = _pending(inp, facts, base_evidence) if status == JobState.PENDING else _paused(inp, base_evidence)
        return result.model_copy(update={"node_events": node_events})

    scan = _scan_log(log_lines, log_first_line)
    if status in (JobState.CANCELED, JobState.CANCELING):
        result = _canceled(inp, facts, scan, base_evidence)
    elif status == JobState.RUNNING:
        result = _running(inp, scan, base_evidence)
    else:
        result = _failed(inp, facts, scan, base_evidence)
    return result.model_copy(update={"node_events": node_events})


# ---------------------------------------------------------------------------------------------------------------------
# Matching


def _best_signature(text: str, kinds: frozenset[str]) -> tuple[int, Signature] | None:
    best: tuple[int, Signature] | None = None
    for order, sig in enumerate(SIGNATURES):
        if not (sig.where & kinds) or not sig.pattern.search(text):
            continue
        if best is None or sig.priority > best[1].priority:
            best = (order, sig)
    return best


def _fact_texts(inp: _Inputs) -> list[tuple[frozenset[str], str, str, int | None]]:
    """(kinds to match, evidence source, text, line) for every platform fact."""
    out: list[tuple[frozenset[str], str, str, int | None]] = []
    if inp.raw_state:
        out.append((ONLY_STATE, "state", inp.raw_state, None))
    if inp.reason:
        out.append((ONLY_REASON, "reason", inp.reason, None))
    if inp.exit_code is not None:
        out.append((ONLY_EXIT, "exit_code", str(inp.exit_code), None))
    if inp.message:
        out.append((frozenset({EVENT}), "message", inp.message, None))
    kinds_by_source = {
        "state": frozenset({STATE, EVENT}),
        "reason": frozenset({REASON, EVENT}),
        "log": ONLY_LOG,
    }
    for ev in inp.evidence:
        if ev.text:
            out.append((kinds_by_source.get(ev.source, frozenset({EVENT})), ev.source, ev.text, ev.line))
    return out


def _match_facts(inp: _Inputs) -> list[_Hit]:
    hits: list[_Hit] = []
    for pos, (kinds, source, text, line) in enumerate(_fact_texts(inp)):
        found = _best_signature(text, kinds)
        if found:
            order, sig = found
            hits.append(_Hit(sig, order, source, text, fact=source != "log", idx=pos, line=line))
    return hits


def _best_fact(hits: Iterable[_Hit]) -> _Hit | None:
    return max(hits, key=lambda h: (h.decisive, h.sig.priority, -h.order), default=None)


def _node_events(inp: _Inputs) -> list[str]:
    out: list[str] = []
    for ev in inp.evidence:
        if ev.source == "log" or not ev.text:
            continue
        if any(s.category in NODE_CATEGORIES and s.where & FACTS and s.pattern.search(ev.text) for s in SIGNATURES):
            text = _clip(ev.text)
            if text not in out:
                out.append(text)
        if len(out) >= MAX_NODE_EVENTS:
            break
    return out


# ---------------------------------------------------------------------------------------------------------------------
# The log


def _body(line: str) -> str:
    """The line without rank/label prefixes like `[rank0]: ` or `0: ` (indentation after them is kept)."""
    m = _DECORATION.match(line)
    return line[m.end() :] if m else line


def _is_exception_line(body: str) -> bool:
    """`ValueError: x`, `torch.OutOfMemoryError: ...`, `KeyboardInterrupt` (not indented, name ends like one)."""
    return bool(_EXC_LINE.match(body)) and bool(_EXC_NAME_END.search(body.split(" ", 1)[0] + " "))


def _walk_traceback(lines: Sequence[str], start: int) -> _Traceback:
    head = lines[start]
    m = _TB_HEADER.search(head)
    probe = _Traceback(start, head[: m.start()] if m else "", (), None)
    frames: list[int] = []
    for i in range(start + 1, min(len(lines), start + _TB_SPAN)):
        body = probe.body(lines[i])
        if not body.strip():
            continue
        if _TB_HEADER.search(body):
            break
        if body[0] in " \t":
            if _FRAME.match(body):
                frames.append(i)
            continue
        # The exception line: the first unindented line after the frames (any name: MissingMandatoryValue too).
        if (frames and _EXC_LINE.match(body)) or _is_exception_line(body):
            return _Traceback(start, probe.prefix, tuple(frames), i)
    return _Traceback(start, probe.prefix, tuple(frames), None)


def _scan_log(log_lines: Sequence[str], first_line: int) -> _LogScan:
    lines = log_lines
    hits: list[_Hit] = []
    tracebacks: list[_Traceback] = []
    final_exc: int | None = None
    for idx, raw in enumerate(lines):
        text = raw[:_MATCH_CHARS]
        lowered = text.lower()
        best: tuple[int, Signature] | None = None
        for order, sig in _LOG_SIGS if any(lit in lowered for lit in _LOG_LITERALS) else _LOG_ALWAYS:
            if (
                (best is None or sig.priority > best[1].priority)
                and sig.may_match(lowered)
                and sig.pattern.search(text)
            ):
                best = (order, sig)
        if best is None:
            continue
        hits.append(_Hit(best[1], best[0], "log", raw, fact=False, idx=idx, line=first_line + idx))
        if _TB_HEADER.search(text):
            tb = _walk_traceback(lines, idx)
            tracebacks.append(tb)
            if tb.exc is not None:
                final_exc = max(final_exc or 0, tb.exc)
        if _is_exception_line(_body(text)):
            final_exc = max(final_exc or 0, idx)
    scan = _LogScan(lines, first_line, hits, tracebacks, final_exc=final_exc)
    _choose(scan)
    return scan


def _traceback_of(scan: _LogScan, idx: int) -> _Traceback | None:
    for tb in scan.tracebacks:
        if tb.start <= idx <= tb.end:
            return tb
    return None


def _window_end(scan: _LogScan, idx: int) -> int:
    tb = _traceback_of(scan, idx)
    return tb.end if tb else idx + _WINDOW


def _pick(hits: Iterable[_Hit]) -> _Hit | None:
    """Most specific first, then the earliest line."""
    return max(hits, key=lambda h: (h.sig.priority, -h.idx), default=None)


def _promote(scan: _LogScan, hit: _Hit) -> _Hit:
    """A traceback header stands for its exception line (same or better signature)."""
    tb = _traceback_of(scan, hit.idx)
    if tb is None or tb.exc is None or hit.idx != tb.start:
        return hit
    exc_hit = next((h for h in scan.hits if h.idx == tb.exc), None)
    if exc_hit is None:  # e.g. `KeyboardInterrupt`: keep the header's meaning, show the exception line
        return _Hit(
            hit.sig, hit.order, "log", scan.lines[tb.exc], fact=False, idx=tb.exc, line=scan.first_line + tb.exc
        )
    return exc_hit if exc_hit.sig.priority >= hit.sig.priority else hit


def _choose(scan: _LogScan) -> None:
    if not scan.hits:
        return
    chosen = _pick(scan.hits)
    assert chosen is not None
    if chosen.sig.secondary:
        earlier = [h for h in scan.hits if h.idx < chosen.idx and not h.sig.secondary]
        chosen = _pick(earlier) or chosen
    chosen = _promote(scan, chosen)
    scan.chosen = chosen
    # The first error window: where the first non-secondary error starts.
    first = next((h for h in scan.hits if not h.sig.secondary), scan.hits[0])
    end = _window_end(scan, first.idx)
    if first.idx <= chosen.idx <= end:
        return
    window = _pick(h for h in scan.hits if first.idx <= h.idx <= end)
    if window is None or first.idx > chosen.idx:
        return
    window = _promote(scan, window)
    scan.first_window = window
    if window.category != chosen.category:
        scan.earlier = window


def _reportable(scan: _LogScan) -> _Hit | None:
    """The chosen log hit unless it is only a weak consequence (e.g. NCCL WARN)."""
    hit = scan.chosen
    if hit is None or (hit.sig.secondary and hit.sig.priority == HINT):
        return None
    return hit


# ---------------------------------------------------------------------------------------------------------------------
# Evidence


def _clip(text: str, limit: int = MAX_TEXT) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _exit_text(code: int) -> str:
    number = code - 128 if code > 128 else -code if code < 0 else 0
    if not number:
        return f"exit code {code}"
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    return f"exit code {code} = {name}"


def _fact_evidence(inp: _Inputs, facts: list[_Hit]) -> list[EvidenceItem]:
    out: list[EvidenceItem] = []
    if inp.raw_state:
        out.append(EvidenceItem(source="state", text=_clip(f"raw state {inp.raw_state}")))
    if inp.exit_code is not None:
        out.append(EvidenceItem(source="exit_code", text=_exit_text(inp.exit_code)))
    if inp.reason:
        out.append(EvidenceItem(source="reason", text=_clip(f"pending reason {inp.reason}")))
    if inp.message and inp.message != inp.raw_state:
        out.append(EvidenceItem(source="state", text=_clip(f"message: {inp.message}")))
    matched = {h.text for h in facts}
    ordered = sorted(inp.evidence, key=lambda ev: ev.text not in matched)  # matched platform evidence first
    for ev in ordered[:_MAX_PLATFORM_EVIDENCE]:
        if ev.text:
            out.append(EvidenceItem(source=ev.source, text=_clip(ev.text), line=ev.line))
    return out


def _log_item(scan: _LogScan, idx: int) -> EvidenceItem:
    return EvidenceItem(source="log", text=_clip(scan.lines[idx]), line=scan.first_line + idx)


def _block_indices(scan: _LogScan, hit: _Hit) -> list[int]:
    """The lines that show one error: a traceback's header, the frames nearest user code and the exception."""
    tb = _traceback_of(scan, hit.idx)
    if tb is None:
        return [hit.idx]
    out = [tb.start]
    user = [f for f in tb.frames if not _LIB_FRAME.search(scan.lines[f])]
    for frame in dict.fromkeys([*user[-1:], *tb.frames[-1:]]):
        out.append(frame)
        code = frame + 1
        if code < len(scan.lines) and code not in tb.frames and tb.body(scan.lines[code])[:1] in (" ", "\t"):
            out.append(code)
    if tb.exc is not None:
        out.append(tb.exc)
    if hit.idx not in out:
        out.append(hit.idx)
    return sorted(set(out))


def _log_evidence(scan: _LogScan, primary: _Hit | None, tail: bool) -> list[EvidenceItem]:
    idxs: list[int] = []
    if primary is not None and primary.source == "log" and not primary.fact:
        idxs += _block_indices(scan, primary)
    if scan.first_window is not None:
        idxs += _block_indices(scan, scan.first_window)
    elif scan.chosen is not None and scan.chosen is not primary:
        idxs += _block_indices(scan, scan.chosen)
    if scan.final_exc is not None:
        idxs.append(scan.final_exc)
    seen_categories = {h.category for h in (primary, scan.chosen, scan.first_window) if h is not None}
    for hit in scan.hits:  # first line of each other category
        if hit.category not in seen_categories and not (hit.sig.secondary and hit.sig.priority == HINT):
            seen_categories.add(hit.category)
            idxs.append(hit.idx)
    if tail:
        nonblank = [i for i in range(len(scan.lines)) if scan.lines[i].strip()]
        idxs += nonblank[-_TAIL_LINES:]
    return [_log_item(scan, i) for i in dict.fromkeys(idxs)]


def _merge_evidence(*groups: list[EvidenceItem]) -> list[EvidenceItem]:
    out: list[EvidenceItem] = []
    seen: set[tuple[str, str, int | None]] = set()
    for group in groups:
        for item in group:
            key = (item.source, item.text, item.line)
            if key not in seen:
                seen.add(key)
                out.append(item)
    return out[:MAX_EVIDENCE]


# ---------------------------------------------------------------------------------------------------------------------
# Building the answer


class _Fields(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _render(template: str, inp: _Inputs) -> str:
    fields = _Fields(
        reason=inp.reason or "none",
        raw_state=inp.raw_state or "unknown",
        exit_code="none" if inp.exit_code is None else str(inp.exit_code),
        platform=inp.label,
    )
    return template.format_map(fields)


def _where(hit: _Hit, inp: _Inputs) -> str:
    if hit.source == "log" and hit.line is not None:
        return f"log line {hit.line}: {_clip(hit.text, _SUMMARY_TEXT)}"
    if hit.source == "state" and hit.text == inp.raw_state:
        return f"{inp.label} state {hit.text}"
    if hit.source == "reason" and hit.text == inp.reason:
        return f"{inp.label} pending reason {_clip(hit.text, _SUMMARY_TEXT)}"
    if hit.source == "exit_code":
        return _exit_text(inp.exit_code if inp.exit_code is not None else 0)
    return f"{hit.source}: {_clip(hit.text, _SUMMARY_TEXT)}"


def _facts_phrase(inp: _Inputs, *, with_exit: bool = True) -> str:
    parts = []
    if inp.raw_state:
        parts.append(f"{inp.label} state {inp.raw_state}")
    if inp.exit_code is not None and with_exit:
        parts.append(f"exit code {inp.exit_code}")
    return ", ".join(parts)


def _cap(confidence: Confidence, limit: Confidence) -> Confidence:
    return confidence if _CONFIDENCE_ORDER[confidence] <= _CONFIDENCE_ORDER[limit] else limit


def _confidence_of(hit: _Hit) -> Confidence:
    return {SURE: "high", LIKELY: "medium"}.get(hit.sig.priority, "low")  # type: ignore[return-value]


def _result(
    category: str,
    inp: _Inputs,
    *,
    summary: str,
    confidence: Confidence,
    evidence: list[EvidenceItem],
    hit: _Hit | None = None,
) -> FailureAnalysis:
    info = hit.sig.info if hit is not None else CATEGORIES[category]
    return FailureAnalysis(
        category=category,
        err_class=info.err_class,
        retriable=info.retriable,
        confidence=confidence,
        summary=summary,
        evidence=_merge_evidence(evidence),
        suggestion=_render(info.suggestion, inp),
    )


def _headline(hit: _Hit, inp: _Inputs) -> str:
    return f"{_render(hit.sig.info.summary, inp)} ({_where(hit, inp)})"


def _pending(inp: _Inputs, facts: list[_Hit], evidence: list[EvidenceItem]) -> FailureAnalysis:
    pending_facts = [h for h in facts if h.fact]
    hit = _best_fact(pending_facts)
    if hit is None:
        why = f"raw state {inp.raw_state}" if inp.raw_state else "no raw state"
        summary = f"the job is pending and the platform gives no reason yet ({why})"
        return _result("queued", inp, summary=summary, confidence="low", evidence=evidence)
    confidence: Confidence = "high" if hit.decisive else _confidence_of(hit)
    summary = _headline(hit, inp)
    if hit.category == "node_failure":
        summary += "; it waits to be started again"
    return _result(hit.category, inp, summary=summary, confidence=confidence, evidence=evidence, hit=hit)


def _paused(inp: _Inputs, evidence: list[EvidenceItem]) -> FailureAnalysis:
    summary = f"the job is suspended ({inp.label} state {inp.raw_state or 'unknown'})"
    return _result("paused", inp, summary=summary, confidence="high", evidence=evidence)


def _canceled(inp: _Inputs, facts: list[_Hit], scan: _LogScan, evidence: list[EvidenceItem]) -> FailureAnalysis:
    hit = next((h for h in facts if h.category == "canceled" and h.fact), None)
    summary = _headline(hit, inp) if hit else "the job was canceled"
    if inp.status == JobState.CANCELING:
        summary = "a cancel of the job is in progress"
    log_hit = _reportable(scan)
    log_evidence: list[EvidenceItem] = []
    if log_hit is not None and log_hit.category != "canceled":
        summary += f"; before that its log showed {log_hit.category} at {_where(log_hit, inp)}"
        log_evidence = _log_evidence(scan, log_hit, tail=False)
    return _result("canceled", inp, summary=summary, confidence="high", evidence=evidence + log_evidence, hit=hit)


def _running(inp: _Inputs, scan: _LogScan, evidence: list[EvidenceItem]) -> FailureAnalysis:
    hit = _reportable(scan)
    if hit is None:
        lines = f"the last {len(scan.lines)} log lines" if scan.lines else "no log lines yet"
        summary = f"the job is running; no error in {lines}"
        return _result("none", inp, summary=summary, confidence="high", evidence=evidence)
    confidence: Confidence = "medium" if hit.sig.priority == SURE else "low"
    summary = f"the job is still running, but its log already shows an error: {_headline(hit, inp)}"
    return _result(
        hit.category,
        inp,
        summary=summary,
        confidence=confidence,
        evidence=evidence + _log_evidence(scan, hit, tail=False),
        hit=hit,
    )


def _conflicts(a: _Hit, b: _Hit) -> bool:
    """b (a log hit or a weaker fact) really contradicts a: specific, another category, not a usual consequence."""
    if a.category == b.category or frozenset({a.category, b.category}) in _COMPATIBLE:
        return False
    return b.sig.priority >= LIKELY and not (b.category == "program_error" and b.sig.priority < SURE)


def _failed(inp: _Inputs, facts: list[_Hit], scan: _LogScan, evidence: list[EvidenceItem]) -> FailureAnalysis:
    fact = _best_fact(facts)
    log = scan.chosen
    notes: list[str] = []
    exit_mentioned = False

    if fact is None and log is None:
        return _nothing_matched(inp, scan, evidence)

    if fact is not None and fact.decisive:
        primary = fact
        confidence: Confidence = "high"
        if log is not None and log.category == fact.category:
            notes.append(f"the log agrees ({_where(log, inp)})")
        elif log is not None and _conflicts(fact, log):
            confidence = "medium"
            notes.append(
                f"the log also shows {log.category} ({_where(log, inp)}), but the platform fact takes precedence"
            )
        elif log is not None and _reportable(scan) is not None:
            notes.append(f"first error in the log: {_where(log, inp)}")
    else:
        candidates = [h for h in (fact, log) if h is not None]
        if fact is not None and log is not None and fact.category == log.category:
            primary = log
            confidence = "high"
            notes.append(f"the platform agrees ({_where(fact, inp)})")
        else:
            # Ties go to the platform fact (e.g. exit 137 vs a generic traceback).
            primary = max(candidates, key=lambda h: (h.sig.priority, h.fact))
            confidence = _confidence_of(primary)
            if primary.category == "program_error" and primary.sig.priority == HINT and (inp.exit_code or 0) != 0:
                confidence = "medium"  # a traceback and a non-zero exit agree that the program failed
            other = next((h for h in candidates if h is not primary), None)
            exit_mentioned = other is not None and other.source == "exit_code"
            if other is not None and _conflicts(primary, other):
                confidence = _cap(confidence, "medium")
                notes.append(f"{_where(other, inp)} suggests {other.category} instead")
            elif other is not None and other.fact:
                notes.append(f"{_where(other, inp)} alone would suggest {other.category}")
            elif other is not None:
                notes.append(f"first error in the log: {_where(other, inp)}")
    if primary is log and log.sig.secondary:
        confidence = _cap(confidence, "medium")  # usually a consequence: the cause may be outside the log tail
    if primary is log and scan.earlier is not None:
        confidence = _cap(confidence, "medium")
        notes.append(f"an earlier error may be the cause: {scan.earlier.category} at {_where(scan.earlier, inp)}")
    if primary is log and scan.final_exc is not None and scan.final_exc > _window_end(scan, log.idx):
        notes.append(
            f"final exception at log line {scan.first_line + scan.final_exc}: {_clip(scan.lines[scan.final_exc], 120)}"
        )
    facts_phrase = _facts_phrase(inp, with_exit=not exit_mentioned)
    if primary.source == "log" and facts_phrase:
        notes.append(facts_phrase)
    if inp.status == JobState.UNKNOWN:
        notes.append("the job's status is Unknown")
    summary = "; ".join([_headline(primary, inp), *notes])
    log_evidence = _log_evidence(scan, primary if primary.source == "log" else log, tail=False)
    return _result(
        primary.category, inp, summary=summary, confidence=confidence, evidence=evidence + log_evidence, hit=primary
    )


def _nothing_matched(inp: _Inputs, scan: _LogScan, evidence: list[EvidenceItem]) -> FailureAnalysis:
    tail = _log_evidence(scan, None, tail=True)
    if inp.exit_code:
        summary = (
            f"the program exited with {_exit_text(inp.exit_code)} and its log matches no known failure signature"
            f" ({_facts_phrase(inp)})"
        )
        return _result("program_error", inp, summary=summary, confidence="low", evidence=evidence + tail)
    last = scan.first_line + len(scan.lines) - 1
    span = f"log lines {scan.first_line}-{last}" if scan.lines else "no log lines"
    summary = (
        f"no known failure signature in the raw state '{inp.raw_state or 'none'}', "
        f"exit code {inp.exit_code if inp.exit_code is not None else 'none'}, "
        f"the message, {len(inp.evidence)} platform evidence item(s) and {span}"
    )
    return _result("unknown", inp, summary=summary, confidence="low", evidence=evidence + tail)
