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
import time
from collections.abc import Callable, Mapping
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
from tao_mcp.drivers.lepton import render, status
from tao_mcp.drivers.lepton.client import PLATFORM, Conflict, LeptonClient, NotFound, reject_fix
from tao_mcp.drivers.lepton.logs import LokiLogs
from tao_mcp.drivers.lepton.options import LeptonOptions, LeptonSettings
from tao_mcp.drivers.lepton.render import backend_job_name, secret_ref_name
from tao_mcp.errors import BackendRejected, BackendUnreachable, TaoError
from tao_mcp.states import TERMINAL, JobState

log = logging.getLogger(__name__)

MISSING_GRACE_S = 60.0  # a job absent from listings and answering 404 this long after creation is gone
PAGE_SIZE = 100
MAX_PAGES = 50
REPLICA_TTL_S = 5.0  # pending diagnostics are re-read at most this often per job
MAX_REPLICA_READS = 8  # per sweep


class LeptonDriver:
    platform = "lepton"
    storage_scheme = "file"

    def __init__(self, settings: LeptonSettings | Mapping[str, str]) -> None:
        self.settings = LeptonSettings.of(settings)
        self.default_node_group = self.settings.node_group
        self.unk_grace = self.settings.unk_grace
        self.client = LeptonClient(
            self.settings.base_url, self.settings.auth_token.get_secret_value(), self.settings.http_timeout
        )
        self.logs = LokiLogs(self.client)
        self._node_groups: list[dict[str, Any]] | None = None
        self._canceled: set[str] = set()  # backend ids this process asked to stop
        self._unk_since: dict[str, float] = {}
        self._replica_seen: dict[str, tuple[str, float, tuple[str, str] | None]] = {}
        self._prefixes: dict[tuple[str, str], str | None] = {}  # (volume, node group) -> storage path prefix
        self._pull_ready: set[str] = set()  # image-pull secrets known to exist in the workspace

    def parse_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        return LeptonOptions.parse(options, self.settings)

    # --- workspace facts --------------------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Nothing to set up before the probe: its first network step is the probe itself."""

    async def probe(self) -> None:
        """Readiness: GET of the workspace answers with this token (one attempt: the reason, not a retry loop)."""
        await self.client.workspace_get("/workspace", read=False)

    async def node_groups(self) -> list[dict[str, Any]]:
        if self._node_groups is None:
            answer = await self.client.workspace_get("/dedicated-node-groups")
            groups = answer if isinstance(answer, list) else (answer or {}).get("node_groups") or []
            self._node_groups = [dict(g) for g in groups if isinstance(g, Mapping)]
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

    async def _mounts(self, options: Mapping[str, Any], group: Mapping[str, Any] | None) -> list[dict[str, str]]:
        mounts = [dict(m) for m in options.get("mounts") or []]
        if options.get("persistent_results") and not mounts:
            volume = render.persistent_volume(group)
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
                volume = render.persistent_volume(group)
                if volume is None:
                    raise TaoError(
                        "E_BAD_INPUT",
                        f"mount {mount['mount_path']} names no volume and the node group has none to default to",
                        "give each mount a 'from': 'node-nfs:<volume>'",
                    )
                mount["from"] = volume["from"]
            mount["path"] = render.under_prefix(mount["path"], await self._path_prefix(mount["from"], group))
        return mounts

    async def _path_prefix(self, source: str, group: Mapping[str, Any] | None) -> str | None:
        """The workspace's storage path prefix on a volume (GET /storage-permission): a shared volume is split per
        workspace, and a mount outside the workspace's prefix is refused. None: the volume has no restriction."""
        volume = source.partition(":")[2]
        group_id = str(((group or {}).get("metadata") or {}).get("id") or "")
        if (volume, group_id) not in self._prefixes:
            params = {"nodegroup_id": group_id} if group_id else {}
            try:
                answer = await self.client.get(f"/storage-permission/{volume}", **params)
            except NotFound:
                answer = []
            items = answer if isinstance(answer, list) else []
            prefixes = [str(i["path_prefix"]) for i in items if isinstance(i, Mapping) and i.get("path_prefix")]
            self._prefixes[(volume, group_id)] = prefixes[0] if prefixes else None
        return self._prefixes[(volume, group_id)]

    def _ngc_pull_secret(self, req: LaunchRequest) -> str | None:
        """The nvcr.io pull secret's name when the image is on nvcr.io, no pull secret is given and NGC_KEY is set."""
        given = req.options.get("image_pull_secrets")
        if given or render.registry(req.image) != "nvcr.io" or not self.settings.ngc_key:
            return None
        return self.settings.ngc_pull_secret

    async def _ensure_pull_secret(self, name: str) -> None:
        """Create the nvcr.io image-pull secret from NGC_KEY once; an existing secret of that name is reused (its
        value is never read back: Lepton returns names only)."""
        if name in self._pull_ready:
            return
        answer = await self.client.get("/imagepullsecrets")
        items = answer if isinstance(answer, list) else []
        if name not in {(i.get("metadata") or {}).get("name") for i in items if isinstance(i, Mapping)}:
            assert self.settings.ngc_key is not None
            spec = {"registry_server": "nvcr.io", "username": "$oauthtoken"}
            body = {"metadata": {"name": name}, "spec": {**spec, "password": self.settings.ngc_key.get_secret_value()}}
            try:
                await self.client.http("POST", "/imagepullsecrets", body=body, read=False)
            except Conflict:
                pass  # created meanwhile (another launch or server): reuse it
            except NotFound:
                raise BackendRejected(
                    PLATFORM,
                    "this workspace has no image-pull secrets API (POST /imagepullsecrets answered 404)",
                    "create the nvcr.io pull secret in the Lepton console and pass options={'image_pull_secrets': "
                    "['<name>']}",
                ) from None
            log.info("lepton: created the image-pull secret %s for nvcr.io", name)
        self._pull_ready.add(name)

    async def results_root(self, options: Mapping[str, Any], *, resolve: bool = True) -> str | None:
        if not options.get("persistent_results"):
            return None
        mounts = await self._mounts(options, await self._node_group(options.get("node_group")))
        return f"{mounts[0]['mount_path'].rstrip('/')}/{render.RESULTS_SUBDIR}" if mounts else None

    async def _shape(self, req: LaunchRequest, group: Mapping[str, Any] | None) -> str:
        if req.options.get("resource_shape"):
            return str(req.options["resource_shape"])
        params: dict[str, Any] = {"purpose": "job"}
        group_id = ((group or {}).get("metadata") or {}).get("id")
        if group_id:
            params["node_groups"] = group_id
        answer = await self.client.workspace_get("/shapes", **params)
        shapes = answer if isinstance(answer, list) else (answer or {}).get("shapes") or []
        chosen = render.choose_shape([dict(s) for s in shapes if isinstance(s, Mapping)], req.gpu_count)
        if chosen is None:
            sizes = sorted({int((s.get("spec") or {}).get("accelerator_num") or 0) for s in shapes})
            raise TaoError(
                "E_BAD_INPUT",
                f"no Lepton shape has {req.gpu_count} GPU(s) or more (shapes offer {sizes or 'none'})",
                "lower gpu_count, or pass options={'resource_shape': '<shape id>'}",
            )
        return chosen

    # --- launch -----------------------------------------------------------------------------------------------

    def check_request(self, req: LaunchRequest) -> None:
        """A job Lepton can never run: refused before it is recorded (HasRequestCheck)."""
        if not req.image:
            raise TaoError(
                "E_BAD_INPUT", "Lepton jobs need a container image", "pass image=... (e.g. an nvcr.io/nvidia/tao image)"
            )

    async def preview(self, req: LaunchRequest) -> Preview:
        self.check_request(req)
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
        pull = self._ngc_pull_secret(req)
        body = render.job_body(req, shape, group, mounts, [pull] if pull else None)
        files = {"job.json": json.dumps(body, indent=2, sort_keys=True)}
        steps = []
        if pull:
            steps.append(
                f"POST {self.client.base}/imagepullsecrets (nvcr.io pull secret {pull} from NGC_KEY, only when the "
                "workspace lacks it; value not shown)"
            )
        if req.secret_env:
            names = ", ".join(secret_ref_name(req.job_id, n) for n in sorted(req.secret_env))
            steps.append(f"POST {self.client.base}/usersecrets (workspace secrets {names}; values not shown)")
        steps.append(f"POST {self.client.base}/jobs (job.json)")
        return Preview(files=files, submit="\n".join(steps))

    async def launch(self, req: LaunchRequest) -> str:
        self.check_request(req)
        with nothing_sent():  # before POST /jobs: an outage here created no job
            group = await self._node_group(req.options.get("node_group"))
            shape = await self._shape(req, group)
            mounts = await self._mounts(req.options, group)
            pull = self._ngc_pull_secret(req)
            if pull:
                await self._ensure_pull_secret(pull)
            body = render.job_body(req, shape, group, mounts, [pull] if pull else None)
            if req.secret_env:
                items = [
                    {"name": secret_ref_name(req.job_id, n), "value": v} for n, v in sorted(req.secret_env.items())
                ]
                try:
                    await self.client.http("POST", "/usersecrets", body=items, read=False)
                except NotFound:
                    raise BackendRejected(
                        PLATFORM,
                        "this workspace has no secret store (POST /usersecrets answered 404); secrets are never sent "
                        "as plain environment values",
                        "drop secret_env, or use a workspace with user secrets",
                    ) from None
                except Conflict as exc:
                    raise BackendRejected(PLATFORM, f"POST /usersecrets: {exc.message}", "retry submit_job") from None
        # POST /jobs: the client says sent=False only when it could not connect
        try:
            answer = await self.client.http("POST", "/jobs", body=body, read=False)
        except Conflict:
            # Our deterministic name is taken: an earlier attempt of this very launch got through.
            found = await self.find([JobRef(req.job_id, req.backend_name, None, req.options, time.time())])
            if req.job_id in found:
                return found[req.job_id]
            raise BackendRejected(
                PLATFORM,
                f"a job named {body['metadata']['id']} already exists",
                "submit_job again (a new job id gives a new name)",
            ) from None
        except NotFound as exc:
            raise BackendRejected(PLATFORM, f"POST /jobs answered 404: {exc}", reject_fix("/jobs")) from None
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
            answer = await self.client.workspace_get(
                "/jobs", job_query_mode="alive_and_archive", page=page, page_size=PAGE_SIZE
            )
            jobs = answer if isinstance(answer, list) else (answer or {}).get("jobs") or []
            if not jobs:
                break
            seen += [dict(j) for j in jobs if isinstance(j, Mapping) and wanted(j)]
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
            ref = by_name.get(str(meta.get("name"))) or by_name.get(str(meta.get("id")))
            label = (meta.get("labels") or {}).get("tao-mcp-job-id")
            if ref is None or (label and label != ref.job_id) or not meta.get("id"):
                continue
            created = status.to_epoch((job.get("status") or {}).get("creation_time")) or 0.0
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
                jobs[backend_id] = await self.client.get(f"/jobs/{backend_id}", job_query_mode="alive_and_archive")
            except NotFound:
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
                        JobState.CANCELED, "Deleted", f"the job no longer exists on Lepton: {who}"
                    )
                continue
            obs = status.map_state(job, canceled_by_us=ours)
            if obs is None:
                first = self._unk_since.setdefault(backend_id, now)
                if now - first >= self.unk_grace:
                    result[ref.job_id] = Observation(
                        JobState.UNKNOWN, "UNK", f"Lepton reports UNK since {status.human_age(now - first)} ago"
                    )
                continue
            self._unk_since.pop(backend_id, None)
            if obs.status == JobState.PENDING and replica_reads < MAX_REPLICA_READS:
                issue, fresh = await self._pending_issue(backend_id, obs.raw_state, now)
                replica_reads += fresh
                if issue:
                    reason, message = issue
                    obs.pending_reason = reason
                    obs.message = f"{obs.message}: {reason}" + (f" — {clip_text(message, 300)}" if message else "")
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
            answer = await self.client.get("/usersecrets")
            items = answer if isinstance(answer, list) else (answer or {}).get("secrets") or []
            for item in items:
                name = item.get("name") if isinstance(item, Mapping) else item
                if isinstance(name, str) and name.startswith(prefixes):
                    with contextlib.suppress(NotFound):
                        await self.client.http("DELETE", f"/usersecrets/{name}", read=False)
        except (TaoError, NotFound, Conflict) as exc:
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
        except (BackendUnreachable, NotFound) as exc:  # diagnostics only: never changes the state
            log.info("lepton: replicas of %s not read (%s)", backend_id, exc)
            return (cached[2] if cached else None), 1
        self._replica_seen[backend_id] = (raw_state, now, issue)
        return issue, 1

    async def replicas(self, ref: JobRef) -> list[dict[str, Any]]:
        """The job's replicas: [{id, node, phase, readiness_issue: {reason, message}}] (stuck-Pending diagnostics)."""
        if not ref.backend_id:
            return []
        return status.replicas(
            await self.client.get(f"/jobs/{ref.backend_id}/replicas", job_query_mode="alive_and_archive")
        )

    # --- logs -------------------------------------------------------------------------------------------------

    async def read_log(
        self, ref: JobRef, *, mode: LogMode, at: LogMark | None, limit: int, context: int, max_bytes: int
    ) -> LogChunk:
        backend_id = ref.backend_id
        if not backend_id:
            return logfile.empty(at)
        since = int(max(ref.created_at - 300, 0) * 1e9)

        async def tail(n: int, until: int | None) -> list[logfile.Row]:
            return await self.logs.tail(backend_id, since, n, until)

        try:
            return await logfile.read_stream(tail, mode=mode, at=at, limit=limit, context=context, until_supported=True)
        except NotFound:
            return logfile.empty(at)

    # --- cancel / evidence ------------------------------------------------------------------------------------

    async def cancel(self, ref: JobRef) -> None:
        backend_id = ref.backend_id
        if not backend_id:
            backend_id = (await self.find([ref])).get(ref.job_id)
            if not backend_id:
                return
        self._canceled.add(backend_id)
        try:
            await self.client.http("DELETE", f"/jobs/{backend_id}", read=False)
        except NotFound:
            return  # already gone; observe() confirms

    async def failure_evidence(self, ref: JobRef) -> list[Evidence]:
        if not ref.backend_id:
            return []
        try:
            job = await self.client.get(f"/jobs/{ref.backend_id}", job_query_mode="alive_and_archive")
        except NotFound:
            return [Evidence("state", f"Lepton has no job {ref.backend_id} any more (deleted)")]
        evidence = status.job_evidence(job)
        try:
            events = await self.client.get(f"/jobs/{ref.backend_id}/events")
        except NotFound:
            events = []
        evidence += status.event_evidence(events)
        try:
            replicas = await self.replicas(ref)
        except NotFound:
            replicas = []
        return evidence + status.replica_evidence(replicas)

    async def aclose(self) -> None:
        self.client.close()
