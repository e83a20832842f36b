"""What only some platforms have, offered by their drivers as optional methods: replica views (Lepton,
Kubernetes), live preflight diagnostics (Docker, Brev) and billed instances (Brev)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from tao_mcp.errors import TaoError
from tao_mcp.models import Instance, InstanceDeletion, InstanceList, Replica, ReplicaList
from tao_mcp.service.jobs import JobService, next_hint
from tao_mcp.service.metadata.platforms import find_platform


class PlatformExtras:
    def __init__(self, jobs: JobService) -> None:
        self.jobs = jobs

    async def _extra(self, platform: str, method: str, what: str) -> Callable[..., Awaitable[Any]]:
        driver = await self.jobs.driver(platform)
        fn = getattr(driver, method, None)
        if fn is None:
            raise TaoError(
                "E_NOT_SUPPORTED", f"{platform} has no {what}", "use job_status, job_logs and failure_analysis"
            )
        return fn

    async def replicas(self, job_id: str) -> ReplicaList:
        record = self.jobs.record(job_id)
        fetch = await self._extra(record.platform, "replicas", "replica view (Lepton and Kubernetes do)")
        items = await fetch(record.ref()) if record.backend_id else []
        replicas = [Replica.model_validate(self.jobs.redactor.data(item)) for item in items]
        hint = f"failure_analysis(job_id='{job_id}')" if any(r.readiness_issue for r in replicas) else next_hint(record)
        return ReplicaList(
            job_id=job_id,
            platform=record.platform,
            status=record.status,  # type: ignore[arg-type]
            replicas=replicas,
            next=hint,
        )

    async def diagnostics(self, platform: str) -> dict[str, Any] | None:
        """Live preflight facts for list_platforms; never fails the listing."""
        try:
            driver = await self.jobs.driver(platform)
        except TaoError:
            return None
        probe = getattr(driver, "diagnostics", None)
        if probe is None:
            return None
        try:
            with anyio.fail_after(15):
                return dict(await probe())
        except TaoError as exc:
            return {"reachable": False, "error": str(exc)}
        except TimeoutError:
            return {"reachable": False, "error": "no answer within 15 s"}

    async def list_instances(self, platform: str) -> InstanceList:
        platform = find_platform(platform, self.jobs.settings).name
        fetch = await self._extra(platform, "list_instances", "instances (Brev does)")
        instances = [Instance.model_validate(self.jobs.redactor.data(item)) for item in await fetch()]
        return InstanceList(
            platform=platform,
            instances=instances,
            next="delete_instance(name=...) for instances you no longer need: they bill until deleted",
        )

    async def delete_instance(self, platform: str, name: str) -> InstanceDeletion:
        platform = find_platform(platform, self.jobs.settings).name
        delete = await self._extra(platform, "delete_instance", "instances (Brev does)")
        answer = self.jobs.redactor.data(await delete(name))
        return InstanceDeletion(
            platform=platform,
            name=name,
            status=str(answer.get("status", "deleting")),
            message=str(answer.get("message", "")),
            next=f"list_instances(platform='{platform}') to confirm",
        )
