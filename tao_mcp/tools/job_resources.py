"""A job as MCP resources: tao://jobs/{job_id} (its status JSON, with training progress), .../logs (the last 200
lines) and .../metrics (the per-epoch series JSON; the chart comes with the job_metrics tool). Read through the same
service calls as the tools, redacted the same way. Completions for job_id: tools/completions.py.

A session may subscribe to any of the three (resources/subscribe): it is sent notifications/resources/updated for
that URI when the job's state or training progress changes, and notifications/resources/list_changed when a job
is submitted. A 2026-07-28 client listens instead (subscriptions/listen, naming the URIs in its filter): the same
changes are published to the SDK's subscription bus as ResourceUpdated / ResourcesListChanged. The registry is the
service's (service/subscriptions.py); this module only turns its callbacks into notifications and bus events."""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from mcp import types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.server.subscriptions import ListenHandler, ResourcesListChanged, ResourceUpdated, SubscriptionBus
from mcp.shared.exceptions import MCPError

from tao_mcp.errors import TaoError
from tao_mcp.service.jobs import LOG_DEFAULT_TAIL, JobService
from tao_mcp.service.metrics import job_metrics
from tao_mcp.service.store import JobRecord
from tao_mcp.tools._common import app


async def _read(ctx: Context, read: Callable[[], Awaitable[str]]) -> str:
    redactor = app(ctx).redactor
    try:
        return redactor.text(await read())
    except TaoError as exc:
        raise ResourceError(redactor.text(str(exc))) from None


JOBS_PREFIX = "tao://jobs/"
ASPECTS = ("", "/logs", "/metrics")


def job_of(uri: str) -> str | None:
    """The job id a tao://jobs/... URI names (None: not one of the job resources)."""
    if not uri.startswith(JOBS_PREFIX):
        return None
    job_id, _, aspect = uri.removeprefix(JOBS_PREFIX).partition("/")
    return job_id if job_id and ("/" + aspect if aspect else "") in ASPECTS else None


def _subscriber(ctx: ServerRequestContext[Any]) -> object:
    """The client connection: ctx.session is a new object per request, its connection lasts the session."""
    return ctx.session._connection  # no public accessor in mcp 2.x


def _jobs(ctx: ServerRequestContext[Any]) -> JobService:
    jobs: JobService = ctx.lifespan_context.jobs
    return jobs


async def _visible_job(jobs: JobService, uri: str) -> JobRecord | None:
    """The job a tao://jobs/... URI names, if it exists and the caller may see it; watched from now on."""
    job_id = job_of(uri)
    if job_id is None:
        return None
    try:
        record = await anyio.to_thread.run_sync(jobs.record, job_id)
    except TaoError:  # unknown, or another principal's: the same answer
        return None
    if not record.terminal:  # its platform's poller runs even if this server process never touched the job
        jobs.poller(record.platform).kick()
    return record


class ListenedJobs:
    """subscriptions/listen (2026-07-28): each job URI a listen stream names is subscribed once for the bus, however
    many streams name it (the bus hands every event to each stream whose filter names its URI, so one publish per
    change reaches them all). A URI naming no visible job is honored and never fires, as the spec has it."""

    def __init__(self, bus: SubscriptionBus) -> None:
        self.bus = bus
        self.handler = ListenHandler(bus)
        self.streams: Counter[str] = Counter()  # URI -> open listen streams naming it

    async def __call__(
        self, ctx: ServerRequestContext[Any], params: types.SubscriptionsListenRequestParams
    ) -> types.SubscriptionsListenResult:
        jobs = _jobs(ctx)
        jobs.subscriptions.on_list_changed(self, functools.partial(self.bus.publish, ResourcesListChanged()))
        listened = []
        for uri in dict.fromkeys(params.notifications.resource_subscriptions or ()):
            record = await _visible_job(jobs, uri)
            if record is None:
                continue
            if not self.streams[uri]:
                jobs.subscriptions.subscribe(
                    self,
                    record.job_id,
                    uri,
                    record.status,
                    notify=functools.partial(self.bus.publish, ResourceUpdated(uri)),
                    progress=jobs.known_progress(record.job_id),
                )
            self.streams[uri] += 1
            listened.append((record.job_id, uri))
        try:
            return await self.handler(ctx, params)
        finally:
            for job_id, uri in listened:
                self.streams[uri] -= 1
                if not self.streams[uri]:
                    del self.streams[uri]
                    jobs.subscriptions.unsubscribe(self, job_id, uri)


def register_subscriptions(server: MCPServer) -> None:
    """resources/subscribe and unsubscribe for the job resources, and the capabilities that say so."""

    async def subscribe(ctx: ServerRequestContext[Any], params: types.SubscribeRequestParams) -> types.EmptyResult:
        uri = str(params.uri)
        jobs = _jobs(ctx)
        record = await _visible_job(jobs, uri)
        if record is None:
            raise MCPError(
                types.INVALID_PARAMS, f"{uri} is not a job resource of this server (list_jobs names the jobs)"
            )
        session = ctx.session
        jobs.subscriptions.subscribe(
            _subscriber(ctx),
            record.job_id,
            uri,
            record.status,
            notify=lambda: session.send_resource_updated(uri),
            list_changed=session.send_resource_list_changed,
            progress=jobs.known_progress(record.job_id),
        )
        return types.EmptyResult()

    async def unsubscribe(ctx: ServerRequestContext[Any], params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        uri = str(params.uri)
        job_id = job_of(uri)
        if job_id is not None:
            _jobs(ctx).subscriptions.unsubscribe(_subscriber(ctx), job_id, uri)
        return types.EmptyResult()

    lowlevel = server._lowlevel_server  # no public hook for these handlers in mcp 2.x
    lowlevel.add_request_handler("resources/subscribe", types.SubscribeRequestParams, subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, unsubscribe)
    # Replaces the SDK's own listen handler with the same handler on the same bus, told which job URIs to watch.
    lowlevel.add_request_handler(
        "subscriptions/listen", types.SubscriptionsListenRequestParams, ListenedJobs(server._subscriptions)
    )
    # Every transport builds its initialize answer with create_initialization_options(): advertise listChanged.
    lowlevel.create_initialization_options = functools.partial(  # type: ignore[method-assign]
        lowlevel.create_initialization_options, NotificationOptions(resources_changed=True)
    )


def register(server: MCPServer) -> None:
    register_subscriptions(server)

    @server.resource(
        "tao://jobs/{job_id}",
        name="job",
        title="A job's status",
        description="The job's status as job_status returns it (JSON), with its training progress "
        "(epoch, max_epoch, percent, eta, latest metrics) once it reports some.",
        mime_type="application/json",
    )
    async def job(job_id: str, ctx: Context) -> str:
        async def read() -> str:
            status = await app(ctx).jobs.status(job_id)
            return json.dumps(status.model_dump(mode="json"), indent=1)

        return await _read(ctx, read)

    @server.resource(
        "tao://jobs/{job_id}/logs",
        name="job_logs",
        title="A job's log (last 200 lines)",
        description="The last 200 lines of the job's log, redacted, progress lines hidden (job_logs pages further).",
        mime_type="text/plain",
    )
    async def job_log(job_id: str, ctx: Context) -> str:
        async def read() -> str:
            page = await app(ctx).jobs.logs(job_id, LOG_DEFAULT_TAIL, None, None)
            return "\n".join(page.lines)

        return await _read(ctx, read)

    @server.resource(
        "tao://jobs/{job_id}/metrics",
        name="job_metrics",
        title="A job's training metrics",
        description="The job's per-epoch metric series (JSON: min/max/last/best epoch of each); the job_metrics tool "
        "adds a PNG chart.",
        mime_type="application/json",
    )
    async def job_metric_series(job_id: str, ctx: Context) -> str:
        async def read() -> str:
            metrics, _ = await job_metrics(app(ctx).jobs, job_id, None, None)
            return json.dumps(metrics.model_dump(mode="json"), indent=1)

        return await _read(ctx, read)
