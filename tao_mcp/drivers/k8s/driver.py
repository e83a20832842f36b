"""KubernetesDriver: batch/v1 Jobs through the official `kubernetes` client.

The client library is imported lazily inside the functions that need it. Every call runs in a worker thread and
answers raw API JSON (`_preload_content=False`), which the pure modules (manifest, status) work on. A transport
failure or a 5xx raises BackendUnreachable and is never turned into a job state; "not found" is never success.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import anyio
import yaml

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
    never_connected,
    nothing_sent,
)
from tao_mcp.drivers.k8s import manifest, status
from tao_mcp.drivers.k8s.options import KubernetesOptions, KubernetesSettings
from tao_mcp.errors import BackendRejected, BackendUnreachable, TaoError
from tao_mcp.states import JobState

log = logging.getLogger(__name__)

PLATFORM = "kubernetes"
REQUEST_TIMEOUT = (5.0, 30.0)  # connect, read
MAX_SELECTOR_IDS = 100


class _NotFound(Exception):
    pass


class _Conflict(Exception):
    pass


def _api_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    try:
        data = json.loads(body) if body else {}
        message = data.get("message") if isinstance(data, dict) else None
    except (ValueError, TypeError):
        message = None
    return clip_text(" ".join(str(message or getattr(exc, "reason", None) or exc).split()), 600)


def _json(response: Any) -> Any:
    return json.loads(response.data) if response.data else {}


class KubernetesDriver:
    platform = PLATFORM
    storage_scheme = "pvc"  # results_root is /results only when a volume is mounted there (a PVC, hostPath...)

    def __init__(self, settings: KubernetesSettings | Mapping[str, str]) -> None:
        self.settings = KubernetesSettings.of(settings)
        self.kubeconfig = self.settings.kubeconfig
        self.context = self.settings.context
        self.in_cluster = bool(self.settings.in_cluster_host)
        self.default_namespace = self.settings.namespace
        self.server = "the API server"
        self._api_client: Any = None
        self._lock = threading.Lock()
        self._canceled: set[str] = set()  # job ids this process deleted (their absence then means Canceled)
        self._version: tuple[str, str, str] | None = None

    # --- client -----------------------------------------------------------------------------------------------

    def _client(self) -> Any:
        """The ApiClient, built once (thread-safe; runs in a worker thread: loading a kubeconfig may exec)."""
        with self._lock:
            if self._api_client is not None:
                return self._api_client
            from kubernetes import client, config
            from kubernetes.config.config_exception import ConfigException

            cfg = client.Configuration()
            default_path = os.path.expanduser("~/.kube/config")
            try:
                if self.kubeconfig or os.path.exists(default_path) or not self.in_cluster:
                    path = self.kubeconfig or default_path
                    if not any(os.path.exists(p) for p in path.split(os.pathsep) if p):
                        raise TaoError(
                            "E_MISSING_CREDENTIALS",
                            f"no kubeconfig at {path} and the server is not running in a cluster",
                            "set KUBECONFIG to your kubeconfig file (and TAO_K8S_CONTEXT for a non-default context)",
                        )
                    config.load_kube_config(
                        config_file=path, context=self.context, client_configuration=cfg, persist_config=False
                    )
                else:
                    config.load_incluster_config(client_configuration=cfg)
            except TaoError:
                raise
            except Exception as exc:  # ConfigException, a YAML error, a malformed structure: the file's fault
                # A YAML error quotes the offending line, which may hold a token: name its kind and line only.
                mark = getattr(exc, "problem_mark", None)
                why = (
                    clip_text(" ".join(str(exc).split()), 300)
                    if isinstance(exc, ConfigException)
                    else f"{type(exc).__name__}{f' at line {mark.line + 1}' if mark else ''}: not a valid kubeconfig"
                )
                raise TaoError(
                    "E_BAD_SETTING",
                    f"the Kubernetes configuration could not be loaded ({why})",
                    "check KUBECONFIG and TAO_K8S_CONTEXT (kubectl config get-contexts lists the contexts)",
                ) from None
            cfg.retries = 1  # an outage answers in seconds, not after urllib3's default retries
            self.server = cfg.host or self.server
            self._api_client = client.ApiClient(cfg)
            return self._api_client

    def _translate(self, what: str, exc: Exception) -> Exception:
        from kubernetes.client.exceptions import ApiException

        if isinstance(exc, TaoError):
            return exc
        if isinstance(exc, ApiException):
            code = exc.status or 0
            message = _api_message(exc)
            if code == 404:
                return _NotFound(message)
            if code == 409:
                return _Conflict(message)
            if code == 0 or code >= 500 or code == 429:
                return BackendUnreachable(PLATFORM, f"{what}: HTTP {code} from {self.server}: {message}")
            if code == 401:
                return TaoError(
                    "E_BAD_SETTING",
                    f"{what}: the API server at {self.server} refused the credentials (401 Unauthorized)",
                    "refresh the kubeconfig credentials (KUBECONFIG / TAO_K8S_CONTEXT) and retry",
                )
            if code == 403:
                return BackendRejected(
                    PLATFORM, f"{what}: forbidden: {message}", "ask for RBAC rights on Jobs, Pods, Secrets and Services"
                )
            return BackendRejected(PLATFORM, f"{what}: {message}", "fix the request Kubernetes names above")
        # urllib3 errors (connection refused, timeouts, TLS), OS errors: transport
        text = clip_text(" ".join(str(exc).split()), 300) or type(exc).__name__
        return BackendUnreachable(
            PLATFORM,
            f"{what}: cannot reach {self.server} ({type(exc).__name__}: {text})",
            "check that the Kubernetes API server is up and KUBECONFIG points at it, then retry; jobs are unaffected",
            sent=False if never_connected(exc) else None,
        )

    async def _call(self, what: str, method: tuple[str, str], *args: Any, **kwargs: Any) -> Any:
        """Run one API call, method = (api group, method name), in a worker thread; the raw response back."""

        def run() -> Any:
            from kubernetes import client

            api_class = {"core": client.CoreV1Api, "batch": client.BatchV1Api, "version": client.VersionApi}[method[0]]
            call = getattr(api_class(self._client()), method[1])
            return call(*args, _request_timeout=REQUEST_TIMEOUT, _preload_content=False, **kwargs)

        try:
            response = await anyio.to_thread.run_sync(run, abandon_on_cancel=True)
        except Exception as exc:  # translated: transport -> BackendUnreachable, 404 -> _NotFound, ...
            raise self._translate(what, exc) from None
        return response

    async def _json_call(self, what: str, method: tuple[str, str], *args: Any, **kw: Any) -> Any:
        response = await self._call(what, method, *args, **kw)
        try:
            return _json(response)
        except ValueError:
            raise BackendUnreachable(PLATFORM, f"{what}: the API server answered something that is not JSON") from None

    async def prepare(self) -> None:
        """Import the client and load the kubeconfig (seconds on a cold process; E_BAD_SETTING if malformed)."""
        await anyio.to_thread.run_sync(self._client)

    async def probe(self) -> None:
        """Readiness: the API server answers GET /version (not cached, unlike server_version)."""
        await self._json_call("reading the server version", ("version", "get_code"))

    async def server_version(self) -> tuple[str, str, str]:
        if self._version is None:
            from_api = await self._json_call("reading the server version", ("version", "get_code"))
            self._version = (
                str(from_api.get("major", "")),
                str(from_api.get("minor", "")),
                str(from_api.get("gitVersion", "")),
            )
        return self._version

    # --- options ----------------------------------------------------------------------------------------------

    def parse_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        return KubernetesOptions.parse(options, self.settings)

    async def results_root(self, options: Mapping[str, Any], *, resolve: bool = True) -> str | None:
        return manifest.results_root(options)

    def _namespace(self, ref: JobRef) -> str:
        if ref.backend_id and "/" in ref.backend_id:
            return ref.backend_id.split("/", 1)[0]
        return str(ref.options.get("namespace") or self.default_namespace)

    # --- launch -----------------------------------------------------------------------------------------------

    def check_request(self, req: LaunchRequest) -> None:
        """A job Kubernetes can never run: refused before it is recorded (HasRequestCheck)."""
        if not req.image:
            raise TaoError(
                "E_BAD_INPUT",
                "a Kubernetes Job runs a container and no image was given",
                "pass image='nvcr.io/nvidia/tao/tao-toolkit:<tag>' to submit_job",
            )

    async def preview(self, req: LaunchRequest) -> Preview:
        ns = req.options["namespace"]
        files = {"job.yaml": yaml.safe_dump(manifest.render_job(req), sort_keys=False, width=1000)}
        steps = []
        if req.secret_env:
            files["secret.yaml"] = yaml.safe_dump(manifest.render_secret(req), sort_keys=False, width=1000)
            steps.append(f"create Secret {req.backend_name} (keys {', '.join(sorted(req.secret_env))})")
        steps.append(f"create Job {req.backend_name}")
        if req.secret_env:
            steps.append("make the Job the Secret's owner (garbage-collected with it)")
        if req.num_nodes > 1:
            files["service.yaml"] = yaml.safe_dump(manifest.render_service(req), sort_keys=False, width=1000)
            steps.append(f"create headless Service {req.backend_name} owned by the Job (needs Kubernetes ≥ 1.21)")
            try:
                with anyio.fail_after(10):
                    major, minor, git_version = await self.server_version()
                if not manifest.multi_node_supported(major, minor):
                    steps.append(
                        f"NOTE: this cluster runs {git_version}: multi-node needs Kubernetes ≥ 1.21, launch fails"
                    )
            except (TaoError, TimeoutError) as exc:
                log.info("kubernetes preview: server version unknown (%s)", exc)
        return Preview(files=files, submit=f"namespace {ns}: " + "; ".join(steps))

    async def _require_indexed_jobs(self) -> None:
        major, minor, git_version = await self.server_version()
        if not manifest.multi_node_supported(major, minor):
            raise BackendRejected(
                PLATFORM,
                f"multi-node needs Kubernetes ≥ 1.21 (Indexed Jobs); this cluster runs "
                f"{git_version or major + '.' + minor}",
                "submit with num_nodes=1, or use a cluster at Kubernetes 1.21 or newer",
            )

    async def launch(self, req: LaunchRequest) -> str:
        ns = req.options["namespace"]
        name = req.backend_name
        with nothing_sent():  # before the Job is created (the Secret alone runs nothing)
            if req.num_nodes > 1:
                await self._require_indexed_jobs()
            if req.secret_env:
                secret = manifest.render_secret(req, req.secret_env)
                try:
                    await self._call("creating the job's Secret", ("core", "create_namespaced_secret"), ns, secret)
                except _Conflict:  # an interrupted launch of this same job id: refresh its values
                    patch = {"stringData": secret["stringData"]}
                    await self._call("updating the job's Secret", ("core", "patch_namespaced_secret"), name, ns, patch)
                except _NotFound as exc:
                    raise BackendRejected(
                        PLATFORM, f"namespace {ns} does not exist ({exc})", "create the namespace or choose another one"
                    ) from None
        # creating the Job: sent=False only when the API server could not be connected to
        body = manifest.render_job(req)
        try:
            created = await self._json_call("creating the Job", ("batch", "create_namespaced_job"), ns, body)
        except _Conflict:
            created = await self._json_call("reading the Job", ("batch", "read_namespaced_job"), name, ns)
            job_label = ((created.get("metadata") or {}).get("labels") or {}).get(manifest.JOB_ID_LABEL)
            if job_label != req.job_id:
                raise BackendRejected(
                    PLATFORM,
                    f"a Job named {name} that tao-mcp did not create exists in namespace {ns}",
                    "delete that Job or submit again (a new submit gets a new name)",
                ) from None
            log.info("kubernetes: Job %s/%s already existed (an earlier launch): reusing it", ns, name)
        except (BackendRejected, _NotFound, TaoError) as exc:
            if req.secret_env and not isinstance(exc, BackendUnreachable):
                await self._delete_quietly("Secret", name, ns)
            if isinstance(exc, _NotFound):
                raise BackendRejected(
                    PLATFORM, f"namespace {ns} does not exist ({exc})", "create the namespace or choose another one"
                ) from None
            raise
        if req.num_nodes > 1 and (created.get("spec") or {}).get("completionMode") != "Indexed":
            # 1.21 has Indexed Jobs behind the alpha IndexedJob gate: with it off the field is silently dropped
            await self.cancel(JobRef(req.job_id, name, f"{ns}/{name}", req.options, 0.0))
            raise BackendRejected(
                PLATFORM,
                "the API server dropped completionMode: Indexed (the IndexedJob feature gate is off on this cluster)",
                "submit with num_nodes=1, or enable the IndexedJob feature gate (default on from Kubernetes 1.22)",
            )
        uid = (created.get("metadata") or {}).get("uid")
        owner = [manifest.owner_reference(name, uid)] if uid else []
        if req.secret_env and owner:
            try:
                patch = {"metadata": {"ownerReferences": owner}}
                await self._call("owning the Secret", ("core", "patch_namespaced_secret"), name, ns, patch)
            except (TaoError, _NotFound, _Conflict) as exc:
                log.warning("kubernetes: could not make Job %s own its Secret (%s); cancel deletes it", name, exc)
        if req.num_nodes > 1:
            service = manifest.render_service(req)
            service["metadata"]["ownerReferences"] = owner
            with contextlib.suppress(_Conflict):
                await self._call("creating the headless Service", ("core", "create_namespaced_service"), ns, service)
        return f"{ns}/{name}"

    async def _delete_quietly(self, kind: str, name: str, ns: str) -> None:
        method = ("core", f"delete_namespaced_{kind.lower()}")
        try:
            await self._call(f"deleting the {kind}", method, name, ns)
        except (_NotFound, _Conflict):
            pass
        except TaoError as exc:
            log.warning("kubernetes: could not delete %s %s/%s: %s", kind, ns, name, exc)

    # --- status -----------------------------------------------------------------------------------------------

    def _selector(self, job_ids: list[str]) -> str:
        if len(job_ids) == 1:
            return f"{manifest.SELECTOR},{manifest.JOB_ID_LABEL}={job_ids[0]}"
        if len(job_ids) <= MAX_SELECTOR_IDS:
            return f"{manifest.SELECTOR},{manifest.JOB_ID_LABEL} in ({','.join(sorted(job_ids))})"
        return manifest.SELECTOR

    async def _list(self, ns: str, job_ids: list[str]) -> tuple[dict[str, dict], dict[str, list[dict]]]:
        """One Job list and one Pod list for the namespace: job id -> Job, job id -> pods."""
        selector = self._selector(job_ids)
        jobs = await self._json_call("listing Jobs", ("batch", "list_namespaced_job"), ns, label_selector=selector)
        pods = await self._json_call("listing Pods", ("core", "list_namespaced_pod"), ns, label_selector=selector)
        by_job: dict[str, dict] = {}
        for job in jobs.get("items") or []:
            job_id = ((job.get("metadata") or {}).get("labels") or {}).get(manifest.JOB_ID_LABEL)
            if job_id:
                by_job[job_id] = job
        pods_by_job: dict[str, list[dict]] = defaultdict(list)
        for pod in pods.get("items") or []:
            job_id = ((pod.get("metadata") or {}).get("labels") or {}).get(manifest.JOB_ID_LABEL)
            if job_id:
                pods_by_job[job_id].append(pod)
        return by_job, pods_by_job

    def _by_namespace(self, refs: list[JobRef]) -> dict[str, list[JobRef]]:
        groups: dict[str, list[JobRef]] = defaultdict(list)
        for ref in refs:
            groups[self._namespace(ref)].append(ref)
        return groups

    async def observe(self, refs: list[JobRef]) -> dict[str, Observation]:
        result: dict[str, Observation] = {}
        for ns, group in self._by_namespace(refs).items():
            jobs, pods = await self._list(ns, [r.job_id for r in group])
            for ref in group:
                job = jobs.get(ref.job_id)
                job_pods = pods.get(ref.job_id, [])
                canceled = ref.job_id in self._canceled or bool(getattr(ref, "cancel_requested", False))
                if job is not None and job["metadata"].get("name") == ref.backend_name:
                    result[ref.job_id] = status.observe(job, job_pods)
                elif canceled and job_pods:
                    result[ref.job_id] = Observation(
                        JobState.CANCELING, "Terminating", "waiting for the job's pods to go"
                    )
                else:
                    result[ref.job_id] = status.not_found(canceled)
        return result

    async def find(self, refs: list[JobRef]) -> dict[str, str]:
        found: dict[str, str] = {}
        for ns, group in self._by_namespace(refs).items():
            selector = self._selector([r.job_id for r in group])
            jobs = await self._json_call("listing Jobs", ("batch", "list_namespaced_job"), ns, label_selector=selector)
            names = {r.backend_name: r for r in group}
            for job in jobs.get("items") or []:
                name = (job.get("metadata") or {}).get("name")
                if name in names:
                    found[names[name].job_id] = f"{ns}/{name}"
        return found

    # --- logs -------------------------------------------------------------------------------------------------

    async def _pods(self, ref: JobRef) -> list[dict[str, Any]]:
        pods = await self._json_call(
            "listing the job's Pods",
            ("core", "list_namespaced_pod"),
            self._namespace(ref),
            label_selector=self._selector([ref.job_id]),
        )
        return status.sort_pods(pods.get("items") or [])

    async def _pod_log(self, ns: str, pod: str, n: int) -> list[logfile.Row]:
        """The pod's last n lines with their timestamps (`tail_lines`: the kubelet reads them from the end)."""
        try:
            response = await self._call(
                f"reading the log of pod {pod}",
                ("core", "read_namespaced_pod_log"),
                pod,
                ns,
                container=manifest.CONTAINER,
                tail_lines=n,
                timestamps=True,
            )
        except _NotFound:
            return []
        except BackendRejected as exc:
            # 400: the container has not started (ContainerCreating, ImagePullBackOff): no log yet
            log.debug("kubernetes: no log for %s: %s", pod, exc)
            return []
        return logfile.split_stamped(response.data or b"")

    async def read_log(
        self, ref: JobRef, *, mode: LogMode, at: LogMark | None, limit: int, context: int, max_bytes: int
    ) -> LogChunk:
        ns = self._namespace(ref)
        pods = [p["metadata"]["name"] for p in await self._pods(ref)]

        async def tail(n: int, until: int | None) -> list[logfile.Row]:
            if len(pods) == 1:
                return await self._pod_log(ns, pods[0], n)
            rows = [(ts, f"[{pod}] {line}") for pod in pods for ts, line in await self._pod_log(ns, pod, n)]
            return sorted(rows, key=lambda r: r[0])[-n:]  # several pods: one log in time order, each line named

        return await logfile.read_stream(tail, mode=mode, at=at, limit=limit, context=context)

    # --- cancel / evidence / replicas -------------------------------------------------------------------------

    async def cancel(self, ref: JobRef) -> None:
        ns = self._namespace(ref)
        name = ref.backend_id.split("/", 1)[1] if ref.backend_id and "/" in ref.backend_id else ref.backend_name
        body = {"propagationPolicy": "Foreground"}
        with contextlib.suppress(_NotFound):  # already gone: observe() reports Canceled once no pod is left
            await self._call("deleting the Job", ("batch", "delete_namespaced_job"), name, ns, body=body)
        self._canceled.add(ref.job_id)
        # owned by the Job (garbage-collected with it); deleted here too in case the owner patch failed
        await self._delete_quietly("Secret", name, ns)
        await self._delete_quietly("Service", name, ns)

    async def _events(self, ns: str, names: set[str]) -> list[dict[str, Any]]:
        events = await self._json_call("listing events", ("core", "list_namespaced_event"), ns)
        return [e for e in events.get("items") or [] if (e.get("involvedObject") or {}).get("name") in names]

    async def failure_evidence(self, ref: JobRef) -> list[Evidence]:
        ns = self._namespace(ref)
        try:
            job = await self._json_call("reading the Job", ("batch", "read_namespaced_job"), ref.backend_name, ns)
        except _NotFound:
            job = None
        pods = await self._pods(ref)
        names = {ref.backend_name, *(p["metadata"]["name"] for p in pods)}
        return status.evidence(job, pods, await self._events(ns, names))

    async def replicas(self, ref: JobRef) -> list[dict[str, Any]]:
        """One row per pod: name, index, node, phase, ready, restarts, exit_code, readiness_issue{reason,message}."""
        return status.replicas(await self._pods(ref))

    async def read_job_manifest(self, ref: JobRef) -> dict[str, Any]:
        """The Job object as the API server stores it (tests check it carries no secret value)."""
        try:
            return await self._json_call(
                "reading the Job", ("batch", "read_namespaced_job"), ref.backend_name, self._namespace(ref)
            )
        except _NotFound:
            raise TaoError("E_UNKNOWN_JOB", f"no Job {ref.backend_name}", "check the namespace") from None

    async def aclose(self) -> None:
        client, self._api_client = self._api_client, None
        if client is not None:
            try:
                await anyio.to_thread.run_sync(client.close, abandon_on_cancel=True)
            except Exception as exc:  # closing a pool must never fail shutdown
                log.debug("kubernetes: closing the client: %s", exc)
