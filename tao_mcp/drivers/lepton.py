"""LeptonDriver: DGX Cloud Lepton batch jobs over plain HTTP (no leptonai SDK).

Every status sweep is one paged `GET /jobs?job_query_mode=alive_and_archive` listing for all active jobs (it stops
as soon as every wanted job was seen); stuck-pending jobs additionally get a rate-limited replica read so their
pending reason (NoCapacity, ImagePullBackOff, ConfigError ...) is known. Transport failures, timeouts and 5xx answers
raise BackendUnreachable, never a job state. Secrets go to the workspace secret store (`POST /usersecrets`) and reach
the container as `value_from.secret_name_ref`; they are never plain `envs` values.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shlex
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio

from tao_mcp.drivers import logfile
from tao_mcp.drivers.base import (
    LOG_LINE_CHARS,
    TERMINAL,
    Evidence,
    JobRef,
    LaunchRequest,
    LogChunk,
    Observation,
    Preview,
)
from tao_mcp.errors import BackendRejected, BackendUnreachable, TaoError

log = logging.getLogger(__name__)

PLATFORM = "lepton"
GATEWAY = "https://gateway.dgxc-lepton.nvidia.com"
GATEWAY_BASE = GATEWAY + "/api/v2/workspaces/{workspace_id}"
OPTIONS = (
    "node_group",
    "resource_shape",
    "mounts",
    "persistent_results",
    "image_pull_secrets",
    "ttl_seconds_after_finished",
    "max_job_failure_retry",
    "shared_memory_size",
    "intra_job_communication",
)
OPTIONS_HELP = (
    "accepted Lepton options: node_group (name or id of a dedicated node group; default LEPTON_NODE_GROUP or the "
    "only one), resource_shape (e.g. gpu.1xh100; default: chosen from /shapes for gpu_count), mounts (list of "
    "{path, mount_path, from} or 'volume:path:mount_path'), persistent_results (bool: mount the node group's "
    "NFS/Lustre volume and keep results there), image_pull_secrets (list of names), ttl_seconds_after_finished "
    "(int >= 0), max_job_failure_retry (int >= 0), shared_memory_size (MiB, int >= 0), intra_job_communication "
    "(bool; default true when num_nodes > 1)"
)
NAME_RULE = re.compile(r"^[a-z][a-z0-9-]{0,35}$")
VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
SECRET_NAME = re.compile(r"[^A-Za-z0-9_]")
PENDING_STATES = {"Queueing", "Awaiting", "Starting", "Restarting", "PendingRetry"}
CANCELING_STATES = {"Stopping", "Terminating", "Deleting"}
CANCELED_STATES = {"Stopped", "Deleted"}
DEFAULT_TTL_S = 600
DEFAULT_TIMEOUT_S = 20.0
DEFAULT_UNK_GRACE_S = 300.0
MISSING_GRACE_S = 60.0  # a job absent from listings and answering 404 this long after creation is gone
PAGE_SIZE = 100
MAX_PAGES = 50
READ_ATTEMPTS = 4
MAX_RETRY_AFTER_S = 10.0
REPLICA_TTL_S = 5.0  # pending diagnostics are re-read at most this often per job
MAX_REPLICA_READS = 8  # per sweep
LOG_PAGE = 2000
MAX_CACHED_LINES = 200_000
LOG_CACHE_JOBS = 8
RESULTS_SUBDIR = "tao-mcp"


# Multi-node rendezvous from the variables Lepton sets with intra_job_communication (leptonai's torchrun recipe);
# values the user set win.
MULTI_NODE_ENV = (
    'export MASTER_ADDR="${MASTER_ADDR:-${LEPTON_JOB_SERVICE_PREFIX:-${LEPTON_JOB_NAME}-job-svc}-0.'
    '${LEPTON_SUBDOMAIN:-${LEPTON_JOB_NAME}-job-svc}}" MASTER_PORT="${MASTER_PORT:-29500}" '
    'NODE_RANK="${NODE_RANK:-${LEPTON_JOB_WORKER_INDEX:-0}}" NUM_NODES="${NUM_NODES:-${LEPTON_JOB_TOTAL_WORKERS:-1}}" '
    'WORLD_SIZE="${WORLD_SIZE:-${LEPTON_JOB_TOTAL_WORKERS:-1}}"'
)


class _NotFound(Exception):
    pass


class _Conflict(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class _LogCache:
    lines: list[str]
    offset: int  # absolute position of lines[0] (older lines were dropped past MAX_CACHED_LINES)
    last_ts: int  # newest timestamp read (ns)
    at_last_ts: int  # lines already read whose timestamp is last_ts (Loki's start is inclusive)


def backend_job_name(backend_name: str) -> str:
    """Lepton job names: lowercase, start with a letter, [a-z0-9-], at most 36 chars, not ending in '-'."""
    name = re.sub(r"[^a-z0-9-]+", "-", backend_name.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"tao-{name}"
    return name[:36].rstrip("-")


def secret_ref_name(job_id: str, env_name: str) -> str:
    """The workspace secret holding one secret of one job (per job, so a rotated value never changes a live job)."""
    return f"TAO_MCP_{SECRET_NAME.sub('_', job_id)}_{env_name}"


def to_epoch(value: Any) -> float | None:
    """Lepton times come as epoch seconds, ms or ns, or ISO text."""
    if value in (None, "", 0):
        return None
    if isinstance(value, int | float) or (isinstance(value, str) and re.fullmatch(r"\d+(?:\.\d+)?", value)):
        number = float(value)
    elif isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    else:
        return None
    while number > 1e11:  # ms, us, ns -> s
        number /= 1000
    return number


def choose_shape(shapes: list[dict[str, Any]], gpu_count: int) -> str | None:
    """The shape with exactly gpu_count accelerators, else the smallest larger one (fewest GPUs, then CPU, memory)."""
    candidates = []
    for shape in shapes:
        spec = shape.get("spec") or {}
        listable = spec.get("listable_in")
        if isinstance(listable, list) and listable and "job" not in listable:
            continue
        num = int(spec.get("accelerator_num") or 0)
        if num >= gpu_count and (gpu_count > 0 or num == 0):
            key = (num, float(spec.get("cpu") or 0), float(spec.get("memory_in_mb") or 0))
            candidates.append((key, (shape.get("metadata") or {}).get("id")))
    candidates = [c for c in candidates if c[1]]
    return min(candidates)[1] if candidates else None


def _counts(status: Mapping[str, Any]) -> tuple[int, int, int, int]:
    def get(key: str) -> int:
        try:
            return int(status.get(key) or 0)
        except (TypeError, ValueError):
            return 0

    return get("ready"), get("active"), get("succeeded"), get("failed")


def map_state(job: Mapping[str, Any], *, canceled_by_us: bool = False) -> Observation | None:
    """One Lepton job object -> an Observation (None: UNK, which the caller keeps for a grace period)."""
    status = job.get("status") or {}
    spec = job.get("spec") or {}
    state = str(status.get("state") or "UNK")
    ready, active, succeeded, failed = _counts(status)
    completions = int(spec.get("completions") or 1)
    started = to_epoch(status.get("start_time"))
    for entry in status.get("job_history") or []:
        if started is None and isinstance(entry, Mapping) and entry.get("state") == "Running":
            started = to_epoch(entry.get("time"))
    ended = to_epoch(status.get("completion_time"))
    counts = f"ready {ready}/{active}, succeeded {succeeded}, failed {failed}"
    if state in PENDING_STATES:
        return Observation("Pending", state, f"Lepton {state}", pending_reason=state)
    if state == "Running":
        if active and ready < active:
            return Observation(
                "Pending",
                state,
                f"starting workers {ready}/{active}",
                pending_reason=f"starting workers {ready}/{active}",
            )
        return Observation("Running", state, f"Lepton Running ({counts})", started_at=started)
    if state == "Completed":
        return Observation("Complete", state, f"Lepton Completed ({counts})", exit_code=0, ended_at=ended)
    if state == "Failed":
        return Observation("Error", state, f"Lepton Failed ({counts})", ended_at=ended)
    if state in CANCELING_STATES | CANCELED_STATES:
        who = "stopped by cancel_job" if canceled_by_us else "stopped outside tao-mcp (unless cancel_job asked)"
        if state in CANCELING_STATES:
            return Observation("Canceling", state, f"Lepton {state}: {who}")
        return Observation("Canceled", state, f"Lepton {state}: {who}", ended_at=ended)
    if state == "Archived":
        if failed and failed > 0 and succeeded < completions:
            return Observation("Error", "Archived/Failed", f"Lepton Archived after failing ({counts})", ended_at=ended)
        if succeeded >= completions:
            return Observation(
                "Complete",
                "Archived/Completed",
                f"Lepton Archived after completing ({counts})",
                exit_code=0,
                ended_at=ended,
            )
        for entry in reversed(status.get("job_history") or []):
            earlier = entry.get("state") if isinstance(entry, Mapping) else None
            if earlier and earlier not in ("Archived", "UNK"):
                inner = map_state({**job, "status": {**status, "state": earlier}}, canceled_by_us=canceled_by_us)
                if inner is not None and inner.status in TERMINAL:
                    inner.raw_state = f"Archived/{earlier}"
                    return inner
        return Observation("Unknown", "Archived", f"Lepton Archived without an outcome ({counts})")
    if state == "UNK":
        return None
    return Observation("Unknown", state, f"Lepton reports an unfamiliar state {state!r} ({counts})")


def _error_text(resp: Any) -> str:
    try:
        body = resp.json()
    except ValueError:
        return (resp.text or "").strip()[:300]
    if isinstance(body, Mapping):
        code, message = body.get("code"), body.get("message")
        return ": ".join(str(x) for x in (code, message) if x)[:500] or json.dumps(body)[:300]
    return str(body)[:300]


class LeptonDriver:
    platform = "lepton"
    storage_scheme = "file"

    def __init__(self, settings: Mapping[str, str]) -> None:
        get = lambda name: (settings.get(name) or "").strip()  # noqa: E731
        self.token = get("LEPTON_AUTH_TOKEN")
        if not self.token:
            raise TaoError(
                "E_MISSING_CREDENTIALS", "LEPTON_AUTH_TOKEN is not set", "set LEPTON_AUTH_TOKEN to a workspace token"
            )
        url, workspace = get("LEPTON_WORKSPACE_URL"), get("LEPTON_WORKSPACE_ID")
        if url:
            if not re.match(r"^https?://", url):
                raise TaoError(
                    "E_BAD_SETTING",
                    "LEPTON_WORKSPACE_URL is not an http(s) URL",
                    "set it to the workspace base, e.g. https://<host>/api/v2/workspaces/<id>",
                )
            self.base = url.rstrip("/")
        elif workspace:
            if not re.fullmatch(r"[A-Za-z0-9_-]+", workspace):
                raise TaoError(
                    "E_BAD_SETTING", "LEPTON_WORKSPACE_ID has unexpected characters", "set it to the workspace id"
                )
            self.base = GATEWAY_BASE.format(workspace_id=workspace)
        else:
            raise TaoError(
                "E_MISSING_CREDENTIALS",
                "neither LEPTON_WORKSPACE_ID nor LEPTON_WORKSPACE_URL is set",
                "set LEPTON_WORKSPACE_ID (or the full LEPTON_WORKSPACE_URL)",
            )
        self.gateway = self.base.startswith(GATEWAY)
        self.default_node_group = get("LEPTON_NODE_GROUP") or None
        self.timeout = self._number(get, "LEPTON_HTTP_TIMEOUT_S", DEFAULT_TIMEOUT_S)
        self.unk_grace = self._number(get, "LEPTON_UNK_GRACE_S", DEFAULT_UNK_GRACE_S)
        self._local = threading.local()
        self._sessions: list[Any] = []  # one requests.Session per worker thread, closed by aclose()
        self._sessions_lock = threading.Lock()
        self._node_groups: list[dict[str, Any]] | None = None
        self._canceled: set[str] = set()  # backend ids this process asked to stop
        self._unk_since: dict[str, float] = {}
        self._replica_seen: dict[str, tuple[str, float, tuple[str, str] | None]] = {}
        self._logs: OrderedDict[str, _LogCache] = OrderedDict()

    @staticmethod
    def _number(get: Callable[[str], str], name: str, default: float) -> float:
        raw = get(name)
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise TaoError(
                "E_BAD_SETTING", f"{name} is not a number", f"set {name} to seconds, e.g. {default:g}"
            ) from None
        if value <= 0:
            raise TaoError("E_BAD_SETTING", f"{name} must be positive", f"set {name} to seconds, e.g. {default:g}")
        return value

    # --- HTTP -------------------------------------------------------------------------------------------------

    def _session(self) -> Any:
        session = getattr(self._local, "session", None)
        if session is None:
            import requests

            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {self.token}"
            session.headers["Accept"] = "application/json"
            if self.gateway:
                session.headers["origin"] = GATEWAY
            self._local.session = session
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def _call(self, method: str, path: str, params: Mapping[str, Any] | None, body: Any, read: bool) -> Any:
        """Blocking; run in a worker thread. Reads retry 429 (Retry-After) and 5xx with backoff; writes never."""
        import requests

        url = self.base + path
        attempts = READ_ATTEMPTS if read else 1
        what = f"{method} {path}"
        for attempt in range(attempts):
            delay = min(0.5 * 2**attempt, 4.0)
            try:
                resp = self._session().request(method, url, params=params, json=body, timeout=self.timeout)
            except requests.Timeout:
                problem = f"{what} timed out after {self.timeout:g}s"
            except requests.RequestException as exc:
                problem = f"{what} failed: {type(exc).__name__}"
            else:
                code = resp.status_code
                if code < 300:
                    if not resp.content:
                        return None
                    try:
                        return resp.json()
                    except ValueError:
                        problem = f"{what} answered {code} with a body that is not JSON"
                        raise BackendUnreachable(PLATFORM, problem) from None
                if code == 429 or code >= 500:
                    problem = f"{what} answered HTTP {code} ({_error_text(resp)})"
                    if code == 429:
                        retry_after = resp.headers.get("Retry-After", "")
                        try:
                            delay = min(max(float(retry_after), 0.0), MAX_RETRY_AFTER_S)
                        except ValueError:
                            delay = 1.0
                elif code in (401, 403):
                    raise TaoError(
                        "E_LEPTON_AUTH",
                        f"Lepton refused LEPTON_AUTH_TOKEN (HTTP {code} on {what}: {_error_text(resp)})",
                        "set LEPTON_AUTH_TOKEN to a valid token of the workspace named by LEPTON_WORKSPACE_ID / "
                        "LEPTON_WORKSPACE_URL (Lepton console: Settings > Tokens), restart the server, and check with "
                        "list_platforms(platform='lepton')",
                    )
                elif code == 404:
                    raise _NotFound(_error_text(resp))
                elif code == 409:
                    raise _Conflict(_error_text(resp))
                else:
                    raise BackendRejected(PLATFORM, f"{what}: HTTP {code}: {_error_text(resp)}", _reject_fix(path))
            if attempt + 1 < attempts:
                log.info("lepton: %s; retrying in %.1fs", problem, delay)
                time.sleep(delay)
        fix = None
        if method == "POST" and path == "/jobs":
            fix = "do not resubmit: whether the job was created is unknown; it is reconciled by its name shortly"
        elif not read:
            fix = f"retry shortly; check the {PLATFORM} settings with list_platforms(platform='lepton') if it persists"
        raise BackendUnreachable(PLATFORM, problem, fix)

    async def _http(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None, body: Any = None, read: bool = True
    ) -> Any:
        return await anyio.to_thread.run_sync(
            lambda: self._call(method, path, params, body, read), abandon_on_cancel=True
        )

    async def _get(self, path: str, **params: Any) -> Any:
        return await self._http("GET", path, params=params or None)

    async def _workspace_get(self, path: str, **params: Any) -> Any:
        """A workspace-level read: 404 means the settings name no workspace (or a wrong base URL)."""
        try:
            return await self._get(path, **params)
        except _NotFound as exc:
            raise TaoError(
                "E_BAD_SETTING",
                f"GET {path} answered 404 ({exc}): LEPTON_WORKSPACE_URL / LEPTON_WORKSPACE_ID name no workspace",
                "set LEPTON_WORKSPACE_ID to the workspace id, or LEPTON_WORKSPACE_URL to the full base "
                "https://<host>/api/v2/workspaces/<id>, and restart the server",
            ) from None

    # --- options ----------------------------------------------------------------------------------------------

    def parse_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise TaoError("E_BAD_INPUT", f"unknown Lepton option(s): {', '.join(unknown)}", OPTIONS_HELP)

        def text(key: str, default: str | None = None) -> str | None:
            value = options.get(key)
            if value is None or value == "":
                return default
            if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_.:-]{1,128}", value):
                raise TaoError("E_BAD_INPUT", f"{key} {value!r} is not a plain Lepton name", OPTIONS_HELP)
            return value

        def integer(key: str, default: int | None) -> int | None:
            value = options.get(key)
            if value is None or value == "":
                return default
            if isinstance(value, str) and value.strip().isdigit():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise TaoError("E_BAD_INPUT", f"{key} {value!r} is not an integer >= 0", OPTIONS_HELP)
            return value

        def boolean(key: str) -> bool | None:
            value = options.get(key)
            if value is None:
                return None
            if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
                value = value.lower() in ("true", "yes", "1")
            if not isinstance(value, bool):
                raise TaoError("E_BAD_INPUT", f"{key} {value!r} is not true or false", OPTIONS_HELP)
            return value

        secrets = options.get("image_pull_secrets") or []
        if isinstance(secrets, str):
            secrets = [s.strip() for s in secrets.split(",") if s.strip()]
        if not isinstance(secrets, list | tuple) or not all(
            isinstance(s, str) and re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", s) for s in secrets
        ):
            raise TaoError("E_BAD_INPUT", "image_pull_secrets must be a list of secret names", OPTIONS_HELP)

        return {
            "node_group": text("node_group", self.default_node_group),
            "resource_shape": text("resource_shape"),
            "mounts": _parse_mounts(options.get("mounts")),
            "persistent_results": bool(boolean("persistent_results")),
            "image_pull_secrets": list(secrets),
            "ttl_seconds_after_finished": integer("ttl_seconds_after_finished", DEFAULT_TTL_S),
            "max_job_failure_retry": integer("max_job_failure_retry", None),
            "shared_memory_size": integer("shared_memory_size", None),
            "intra_job_communication": boolean("intra_job_communication"),
        }

    # --- workspace facts --------------------------------------------------------------------------------------

    async def node_groups(self) -> list[dict[str, Any]]:
        if self._node_groups is None:
            answer = await self._workspace_get("/dedicated-node-groups")
            groups = answer if isinstance(answer, list) else (answer or {}).get("node_groups") or []
            self._node_groups = [g for g in groups if isinstance(g, Mapping)]
        return self._node_groups

    async def _node_group(self, wanted: str | None) -> dict[str, Any] | None:
        groups = await self.node_groups()
        if wanted:
            for group in groups:
                meta = group.get("metadata") or {}
                if wanted in (meta.get("id"), meta.get("name")):
                    return group
            names = ", ".join(str((g.get("metadata") or {}).get("name")) for g in groups) or "none"
            raise TaoError(
                "E_BAD_INPUT",
                f"the workspace has no dedicated node group named {wanted!r} (it has: {names})",
                "pass options={'node_group': <one of those>} or fix LEPTON_NODE_GROUP",
            )
        if len(groups) == 1:
            return groups[0]
        if not groups:
            return None
        names = ", ".join(str((g.get("metadata") or {}).get("name")) for g in groups)
        raise TaoError(
            "E_BAD_INPUT",
            f"the workspace has several dedicated node groups ({names}) and none was chosen",
            "pass options={'node_group': '<name>'} or set LEPTON_NODE_GROUP",
        )

    @staticmethod
    def _persistent_volume(group: Mapping[str, Any] | None) -> dict[str, str] | None:
        for volume in ((group or {}).get("spec") or {}).get("volumes") or []:
            if not isinstance(volume, Mapping):
                continue
            source = str(volume.get("from") or "")
            name = str(volume.get("name") or source.partition(":")[2])
            kind = source.partition(":")[0] if ":" in source else str(volume.get("type") or "")
            if kind in ("node-nfs", "node-lustre", "nfs", "lustre") and VOLUME_NAME.match(name):
                source = source if ":" in source else f"node-nfs:{name}"
                return {"path": "/", "mount_path": f"/mnt/{name}", "from": source}
        return None

    async def _mounts(self, options: Mapping[str, Any], group: Mapping[str, Any] | None) -> list[dict[str, str]]:
        mounts = [dict(m) for m in options.get("mounts") or []]
        if options.get("persistent_results") and not mounts:
            volume = self._persistent_volume(group)
            if volume is None:
                name = ((group or {}).get("metadata") or {}).get("name", "none")
                raise TaoError(
                    "E_BAD_INPUT",
                    f"persistent_results was asked for but node group {name} has no NFS/Lustre volume",
                    "pass options={'mounts': [{'path': ..., 'mount_path': ..., 'from': 'node-nfs:<volume>'}]} "
                    "or drop persistent_results (results then go to S3 with results_uri)",
                )
            mounts = [volume]
        for mount in mounts:
            if "from" not in mount:
                volume = self._persistent_volume(group)
                if volume is None:
                    raise TaoError(
                        "E_BAD_INPUT",
                        f"mount {mount['mount_path']} names no volume and the node group has none to default to",
                        "give each mount a 'from': 'node-nfs:<volume>'",
                    )
                mount["from"] = volume["from"]
        return mounts

    async def results_root(self, options: Mapping[str, Any]) -> str | None:
        if not options.get("persistent_results"):
            return None
        mounts = await self._mounts(options, await self._node_group(options.get("node_group")))
        return f"{mounts[0]['mount_path'].rstrip('/')}/{RESULTS_SUBDIR}" if mounts else None

    async def _shape(self, req: LaunchRequest, group: Mapping[str, Any] | None) -> str:
        if req.options.get("resource_shape"):
            return str(req.options["resource_shape"])
        params: dict[str, Any] = {"purpose": "job"}
        group_id = ((group or {}).get("metadata") or {}).get("id")
        if group_id:
            params["node_groups"] = group_id
        answer = await self._workspace_get("/shapes", **params)
        shapes = answer if isinstance(answer, list) else (answer or {}).get("shapes") or []
        chosen = choose_shape([s for s in shapes if isinstance(s, Mapping)], req.gpu_count)
        if chosen is None:
            sizes = sorted({int((s.get("spec") or {}).get("accelerator_num") or 0) for s in shapes})
            raise TaoError(
                "E_BAD_INPUT",
                f"no Lepton shape has {req.gpu_count} GPU(s) or more (shapes offer {sizes or 'none'})",
                "lower gpu_count, or pass options={'resource_shape': '<shape id>'}",
            )
        return chosen

    # --- launch -----------------------------------------------------------------------------------------------

    def _body(
        self, req: LaunchRequest, shape: str, group: Mapping[str, Any] | None, mounts: list[dict[str, str]]
    ) -> dict[str, Any]:
        opts = req.options
        command = req.command
        if req.num_nodes > 1:
            command = f"{MULTI_NODE_ENV}\n{command}"
        if req.time_limit_minutes:
            command = f"exec timeout -k 60 {req.time_limit_minutes * 60} bash -c {shlex.quote(command)}"
        envs: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in req.env.items()]
        envs += [
            {"name": name, "value_from": {"secret_name_ref": secret_ref_name(req.job_id, name)}}
            for name in sorted(req.secret_env)
        ]
        spec: dict[str, Any] = {
            "resource_shape": shape,
            "container": {"image": req.image, "command": ["/bin/bash", "-c", command]},
            "completions": req.num_nodes,
            "parallelism": req.num_nodes,
            "envs": envs,
        }
        group_id = ((group or {}).get("metadata") or {}).get("id")
        if group_id:
            spec["affinity"] = {"allowed_dedicated_node_groups": [group_id]}
        if mounts:
            spec["mounts"] = mounts
        if opts.get("image_pull_secrets"):
            spec["image_pull_secrets"] = list(opts["image_pull_secrets"])
        intra = opts.get("intra_job_communication")
        if intra is None:
            intra = req.num_nodes > 1
        spec["intra_job_communication"] = bool(intra)
        for key in ("ttl_seconds_after_finished", "max_job_failure_retry", "shared_memory_size"):
            if opts.get(key) is not None:
                spec[key] = opts[key]
        return {
            "metadata": {"id": backend_job_name(req.backend_name), "labels": {"tao-mcp-job-id": req.job_id}},
            "spec": spec,
        }

    def _require_image(self, req: LaunchRequest) -> None:
        if not req.image:
            raise TaoError(
                "E_BAD_INPUT", "Lepton jobs need a container image", "pass image=... (e.g. an nvcr.io/nvidia/tao image)"
            )

    async def preview(self, req: LaunchRequest) -> Preview:
        self._require_image(req)
        try:
            group = await self._node_group(req.options.get("node_group"))
            shape = await self._shape(req, group)
            mounts = await self._mounts(req.options, group)
        except BackendUnreachable as exc:
            log.info("lepton preview: workspace not read (%s)", exc.cause)
            name = req.options.get("node_group")
            group = {"metadata": {"id": name}} if name else None
            shape = req.options.get("resource_shape") or f"<smallest /shapes entry with >= {req.gpu_count} GPUs>"
            mounts = [dict(m) for m in req.options.get("mounts") or []]
        body = self._body(req, shape, group, mounts)
        files = {"job.json": json.dumps(body, indent=2, sort_keys=True)}
        steps = []
        if req.secret_env:
            names = ", ".join(secret_ref_name(req.job_id, n) for n in sorted(req.secret_env))
            steps.append(f"POST {self.base}/usersecrets (workspace secrets {names}; values not shown)")
        steps.append(f"POST {self.base}/jobs (job.json)")
        return Preview(files=files, submit="\n".join(steps))

    async def launch(self, req: LaunchRequest) -> str:
        self._require_image(req)
        group = await self._node_group(req.options.get("node_group"))
        shape = await self._shape(req, group)
        mounts = await self._mounts(req.options, group)
        body = self._body(req, shape, group, mounts)
        if req.secret_env:
            items = [{"name": secret_ref_name(req.job_id, n), "value": v} for n, v in sorted(req.secret_env.items())]
            try:
                await self._http("POST", "/usersecrets", body=items, read=False)
            except _NotFound:
                raise BackendRejected(
                    PLATFORM,
                    "this workspace has no secret store (POST /usersecrets answered 404); secrets are never sent as "
                    "plain environment values",
                    "drop secret_env, or use a workspace with user secrets",
                ) from None
            except _Conflict as exc:
                raise BackendRejected(PLATFORM, f"POST /usersecrets: {exc.message}", "retry submit_job") from None
        try:
            answer = await self._http("POST", "/jobs", body=body, read=False)
        except _Conflict:
            # Our deterministic name is taken: an earlier attempt of this very launch got through.
            found = await self.find([JobRef(req.job_id, req.backend_name, None, req.options, time.time())])
            if req.job_id in found:
                return found[req.job_id]
            raise BackendRejected(
                PLATFORM,
                f"a job named {body['metadata']['id']} already exists",
                "submit_job again (a new job id gives a new name)",
            ) from None
        except _NotFound as exc:
            raise BackendRejected(PLATFORM, f"POST /jobs answered 404: {exc}", _reject_fix("/jobs")) from None
        job_id = ((answer or {}).get("metadata") or {}).get("id") if isinstance(answer, Mapping) else None
        if not job_id:
            raise BackendUnreachable(
                PLATFORM,
                "POST /jobs answered without metadata.id; the job is reconciled by its name",
                "check job_status shortly; do not resubmit",
            )
        return str(job_id)

    # --- status -----------------------------------------------------------------------------------------------

    async def _list(self, wanted: Callable[[Mapping[str, Any]], bool], need: int) -> list[dict[str, Any]]:
        """Paged alive_and_archive listing; stops at an empty page or once `need` wanted jobs were seen."""
        seen: list[dict[str, Any]] = []
        for page in range(1, MAX_PAGES + 1):
            answer = await self._workspace_get(
                "/jobs", job_query_mode="alive_and_archive", page=page, page_size=PAGE_SIZE
            )
            jobs = answer if isinstance(answer, list) else (answer or {}).get("jobs") or []
            if not jobs:
                break
            seen += [j for j in jobs if isinstance(j, Mapping) and wanted(j)]
            if need and len(seen) >= need:
                break
        return seen

    async def find(self, refs: list[JobRef]) -> dict[str, str]:
        by_name = {backend_job_name(ref.backend_name): ref for ref in refs}
        if not by_name:
            return {}

        def ours(job: Mapping[str, Any]) -> bool:
            meta = job.get("metadata") or {}
            return meta.get("name") in by_name or meta.get("id") in by_name

        found: dict[str, tuple[float, str]] = {}
        for job in await self._list(ours, 0):
            meta = job.get("metadata") or {}
            ref = by_name.get(meta.get("name")) or by_name.get(meta.get("id"))
            label = (meta.get("labels") or {}).get("tao-mcp-job-id")
            if ref is None or (label and label != ref.job_id) or not meta.get("id"):
                continue
            created = to_epoch((job.get("status") or {}).get("creation_time")) or 0.0
            if ref.job_id not in found or created > found[ref.job_id][0]:
                found[ref.job_id] = (created, str(meta["id"]))
        return {job_id: backend_id for job_id, (_, backend_id) in found.items()}

    async def observe(self, refs: list[JobRef]) -> dict[str, Observation]:
        by_id = {ref.backend_id: ref for ref in refs if ref.backend_id}
        if not by_id:
            return {}
        jobs = {
            str(j["metadata"]["id"]): j
            for j in await self._list(lambda j: (j.get("metadata") or {}).get("id") in by_id, len(by_id))
        }
        for backend_id in set(by_id) - set(jobs):  # rare: not listed; one direct read says whether it still exists
            try:
                jobs[backend_id] = await self._get(f"/jobs/{backend_id}", job_query_mode="alive_and_archive")
            except _NotFound:
                jobs[backend_id] = {}
        now = time.time()
        result: dict[str, Observation] = {}
        replica_reads = 0
        for backend_id, ref in by_id.items():
            job = jobs.get(backend_id)
            ours = backend_id in self._canceled
            if not job:
                if ours or now - ref.created_at > MISSING_GRACE_S:
                    who = "deleted by cancel_job" if ours else "deleted outside tao-mcp (unless cancel_job asked)"
                    result[ref.job_id] = Observation(
                        "Canceled", "Deleted", f"the job no longer exists on Lepton: {who}"
                    )
                continue
            obs = map_state(job, canceled_by_us=ours)
            if obs is None:
                first = self._unk_since.setdefault(backend_id, now)
                if now - first >= self.unk_grace:
                    result[ref.job_id] = Observation(
                        "Unknown", "UNK", f"Lepton reports UNK since {human_age(now - first)} ago"
                    )
                continue
            self._unk_since.pop(backend_id, None)
            if obs.status == "Pending" and replica_reads < MAX_REPLICA_READS:
                issue, fresh = await self._pending_issue(backend_id, obs.raw_state, now)
                replica_reads += fresh
                if issue:
                    reason, message = issue
                    obs.pending_reason = reason
                    obs.message = f"{obs.message}: {reason}" + (f" — {message[:300]}" if message else "")
            result[ref.job_id] = obs
            if obs.status in TERMINAL:
                self._replica_seen.pop(backend_id, None)
        finished = [
            ref.job_id for ref in by_id.values() if ref.job_id in result and result[ref.job_id].status in TERMINAL
        ]
        if finished:
            await self._drop_secrets(finished)
        return result

    async def _drop_secrets(self, job_ids: list[str]) -> None:
        """Best effort: delete the per-job workspace secrets of jobs that ended (one list call, then deletes)."""
        prefixes = tuple(secret_ref_name(job_id, "") for job_id in job_ids)
        try:
            answer = await self._get("/usersecrets")
            items = answer if isinstance(answer, list) else (answer or {}).get("secrets") or []
            for item in items:
                name = item.get("name") if isinstance(item, Mapping) else item
                if isinstance(name, str) and name.startswith(prefixes):
                    with contextlib.suppress(_NotFound):
                        await self._http("DELETE", f"/usersecrets/{name}", read=False)
        except (TaoError, _NotFound, _Conflict) as exc:
            log.info("lepton: secrets of finished jobs not deleted (%s)", exc)

    async def _pending_issue(self, backend_id: str, raw_state: str, now: float) -> tuple[tuple[str, str] | None, int]:
        cached = self._replica_seen.get(backend_id)
        if cached and cached[0] == raw_state and now - cached[1] < REPLICA_TTL_S:
            return cached[2], 0
        issue = None
        try:
            for replica in await self.replicas(JobRef("", "", backend_id, {}, now)):
                readiness = replica.get("readiness_issue") or {}
                if readiness.get("reason"):
                    issue = (str(readiness["reason"]), str(readiness.get("message") or ""))
                    break
        except (BackendUnreachable, _NotFound) as exc:  # diagnostics only: never changes the state
            log.info("lepton: replicas of %s not read (%s)", backend_id, exc)
            return (cached[2] if cached else None), 1
        self._replica_seen[backend_id] = (raw_state, now, issue)
        return issue, 1

    async def replicas(self, ref: JobRef) -> list[dict[str, Any]]:
        """The job's replicas: [{id, node, phase, readiness_issue: {reason, message}}] (stuck-Pending diagnostics)."""
        if not ref.backend_id:
            return []
        answer = await self._get(f"/jobs/{ref.backend_id}/replicas", job_query_mode="alive_and_archive")
        items = answer if isinstance(answer, list) else (answer or {}).get("replicas") or []
        out = []
        for item in items:
            if not isinstance(item, Mapping):
                continue
            status = item.get("status") or {}
            node = status.get("node") or {}
            issue = status.get("readiness_issue") or {}
            out.append(
                {
                    "id": (item.get("metadata") or {}).get("id"),
                    "node": node.get("name") or node.get("id"),
                    "node_group": node.get("node_group_id"),
                    "phase": status.get("phase") or status.get("state"),
                    "readiness_issue": (
                        {"reason": issue.get("reason"), "message": issue.get("message") or ""}
                        if issue.get("reason")
                        else None
                    ),
                }
            )
        return out

    # --- logs -------------------------------------------------------------------------------------------------

    async def _fetch_new_lines(self, backend_id: str, since_ns: int | None) -> _LogCache:
        cache = self._logs.get(backend_id) or _LogCache([], 0, since_ns or 0, 0)
        end_ns = int((time.time() + 300) * 1e9)
        while True:
            answer = await self._get(
                "/logs",
                job=backend_id,
                start=cache.last_ts,
                end=end_ns,
                limit=LOG_PAGE,
                direction="forward",
                job_query_mode="alive_and_archive",
            )
            entries = _loki_entries(answer)
            skip = cache.at_last_ts
            fresh = []
            for ts, line in entries:
                if ts < cache.last_ts:
                    continue
                if ts == cache.last_ts and skip > 0:
                    skip -= 1
                    continue
                fresh.append((ts, line))
            for ts, line in fresh:
                cache.lines.append(line[:LOG_LINE_CHARS])
                cache.at_last_ts = cache.at_last_ts + 1 if ts == cache.last_ts else 1
                cache.last_ts = ts
            if len(cache.lines) > MAX_CACHED_LINES:
                drop = len(cache.lines) - MAX_CACHED_LINES
                del cache.lines[:drop]
                cache.offset += drop
            if len(entries) < LOG_PAGE or not fresh:
                break
        self._logs[backend_id] = cache
        self._logs.move_to_end(backend_id)
        while len(self._logs) > LOG_CACHE_JOBS:
            self._logs.popitem(last=False)
        return cache

    async def read_log(self, ref: JobRef, *, start: int | None, limit: int, grep: str | None) -> LogChunk:
        logfile.check_grep(grep)
        if not ref.backend_id:
            return logfile.empty(start, grep)
        since = int(max(ref.created_at - 300, 0) * 1e9)
        try:
            cache = await self._fetch_new_lines(ref.backend_id, since)
        except _NotFound:
            return logfile.empty(start, grep)
        return logfile.window(cache.lines, start=start, limit=logfile.clamp(limit), grep=grep, offset=cache.offset)

    # --- cancel / evidence ------------------------------------------------------------------------------------

    async def cancel(self, ref: JobRef) -> None:
        backend_id = ref.backend_id
        if not backend_id:
            backend_id = (await self.find([ref])).get(ref.job_id)
            if not backend_id:
                return
        self._canceled.add(backend_id)
        try:
            await self._http("DELETE", f"/jobs/{backend_id}", read=False)
        except _NotFound:
            return  # already gone; observe() confirms

    async def failure_evidence(self, ref: JobRef) -> list[Evidence]:
        if not ref.backend_id:
            return []
        evidence: list[Evidence] = []
        try:
            job = await self._get(f"/jobs/{ref.backend_id}", job_query_mode="alive_and_archive")
        except _NotFound:
            return [Evidence("state", f"Lepton has no job {ref.backend_id} any more (deleted)")]
        status = (job or {}).get("status") or {}
        ready, active, succeeded, failed = _counts(status)
        evidence.append(
            Evidence(
                "state",
                f"Lepton state {status.get('state', 'UNK')} (ready {ready}/{active}, succeeded {succeeded}, "
                f"failed {failed})",
            )
        )
        history = [h.get("state") for h in status.get("job_history") or [] if isinstance(h, Mapping)]
        if history:
            evidence.append(Evidence("state", "Lepton state history: " + " -> ".join(str(h) for h in history[-8:])))
        try:
            events = await self._get(f"/jobs/{ref.backend_id}/events")
        except _NotFound:
            events = []
        events = events if isinstance(events, list) else (events or {}).get("events") or []
        for event in events[-12:]:
            if not isinstance(event, Mapping):
                continue
            count = event.get("count")
            text = f"{event.get('type', 'Event')} {event.get('reason', '')}".strip()
            text += f": {event['message']}" if event.get("message") else ""
            evidence.append(Evidence("event", text + (f" (x{count})" if count and count != 1 else "")))
        try:
            replicas = await self.replicas(ref)
        except _NotFound:
            replicas = []
        for replica in replicas:
            issue = replica.get("readiness_issue")
            if issue:
                where = f"replica {replica['id']}" + (f" on {replica['node']}" if replica.get("node") else "")
                evidence.append(Evidence("replica", f"{where}: {issue['reason']}: {issue['message']}"))
        return evidence

    async def aclose(self) -> None:
        with self._sessions_lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()


def human_age(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds}s" if seconds < 120 else f"{seconds // 60}m"


def _loki_entries(answer: Any) -> list[tuple[int, str]]:
    """Loki `{"data":{"result":[{"stream":{...},"values":[["<ns>","line"],...]}]}}` -> merged, sorted entries."""
    data = (answer or {}).get("data") if isinstance(answer, Mapping) else None
    streams = (data or {}).get("result") or []
    entries: list[tuple[int, int, int, str]] = []
    for s_index, stream in enumerate(streams):
        if not isinstance(stream, Mapping):
            continue
        values = stream.get("values") or []
        order = sorted(range(len(values)), key=lambda i: int(values[i][0]))  # backward streams come newest first
        for position, i in enumerate(order):
            ts, line = values[i][0], values[i][1]
            for part in str(line).rstrip("\n").split("\n"):
                entries.append((int(ts), s_index, position, part))
    entries.sort()
    return [(ts, line) for ts, _, _, line in entries]


def _parse_mounts(value: Any) -> list[dict[str, str]]:
    if value is None or value == "":
        return []
    if isinstance(value, str | Mapping):
        value = [value]
    if not isinstance(value, list | tuple):
        raise TaoError("E_BAD_INPUT", "mounts must be a list", OPTIONS_HELP)
    out: list[dict[str, str]] = []
    for item in value:
        if isinstance(item, str):
            parts = item.split(":")
            if len(parts) == 3:
                volume, path, mount_path = parts
                item = {"from": f"node-nfs:{volume}", "path": path, "mount_path": mount_path}
            elif len(parts) == 4:  # node-nfs:volume:path:mount_path
                item = {"from": f"{parts[0]}:{parts[1]}", "path": parts[2], "mount_path": parts[3]}
            elif len(parts) == 2:
                item = {"path": parts[0], "mount_path": parts[1]}
            else:
                raise TaoError("E_BAD_INPUT", f"mount {item!r} is not volume:path:mount_path", OPTIONS_HELP)
        if not isinstance(item, Mapping) or set(item) - {"path", "mount_path", "from"}:
            raise TaoError("E_BAD_INPUT", f"mount {item!r} has keys other than path, mount_path, from", OPTIONS_HELP)
        path, mount_path = str(item.get("path") or "/"), str(item.get("mount_path") or "")
        for label, p in (("path", path), ("mount_path", mount_path)):
            if not re.fullmatch(r"/[A-Za-z0-9_./-]*", p) or ".." in p.split("/"):
                raise TaoError("E_BAD_INPUT", f"mount {label} {p!r} is not a plain absolute path", OPTIONS_HELP)
        mount = {"path": path, "mount_path": mount_path}
        if item.get("from"):
            source = str(item["from"])
            if not re.fullmatch(r"[a-z-]+:[A-Za-z0-9_.-]+", source):
                raise TaoError("E_BAD_INPUT", f"mount from {source!r} is not like node-nfs:<volume>", OPTIONS_HELP)
            mount["from"] = source
        out.append(mount)
    return out


def _reject_fix(path: str) -> str:
    if path.startswith("/usersecrets"):
        return "check the secret names in secret_env; the workspace refused to store them"
    if path.startswith("/jobs"):
        return (
            "fix what Lepton names above (image, resource_shape, node_group, mounts, image_pull_secrets) and "
            "submit_job again; list_platforms(platform='lepton') shows the options"
        )
    return "check the Lepton settings and options and retry"
