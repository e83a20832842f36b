"""What only some platforms have, offered by their drivers as optional capabilities (drivers/base.py): replica
views (Lepton, Kubernetes: HasReplicas), live preflight diagnostics (Docker, Brev: HasDiagnostics) and billed
instances (Brev: HasInstances)."""

from __future__ import annotations

from typing import Any

import anyio

from tao_mcp.drivers.base import HasDiagnostics, HasInstances, HasReplicas
from tao_mcp.errors import TaoError
from tao_mcp.models import Instance, InstanceDeletion, InstanceList, Replica, ReplicaList
from tao_mcp.service.jobs import JobService, next_hint
from tao_mcp.service.metadata.platforms import find_platform
from tao_mcp.service.registry import DriverRegistry, unsupported

UNSUPPORTED_FIX = "use job_status, job_logs and failure_analysis"


class PlatformExtras:
    def __init__(self, jobs: JobService, drivers: DriverRegistry) -> None:
        self.jobs = jobs
        self.drivers = drivers

    async def replicas(self, job_id: str) -> ReplicaList:
        record = self.jobs.record(job_id)
        driver = await self.drivers.get(record.platform)
        if not isinstance(driver, HasReplicas):
            raise unsupported(record.platform, "replica view (Lepton and Kubernetes do)", UNSUPPORTED_FIX)
        items = await driver.replicas(record.ref()) if record.backend_id else []
        replicas = [Replica.model_validate(self.jobs.redactor.data(item)) for item in items]
        hint = f"failure_analysis(job_id='{job_id}')" if any(r.readiness_issue for r in replicas) else next_hint(record)
        return ReplicaList(
            job_id=job_id,
            platform=record.platform,
            status=record.status,
            replicas=replicas,
            next=hint,
        )

    async def diagnostics(self, platform: str) -> dict[str, Any] | None:
        """Live preflight facts for list_platforms; never fails the listing."""
        try:
            driver = await self.drivers.get(platform)
        except TaoError:
            return None
        if not isinstance(driver, HasDiagnostics):
            return None
        try:
            with anyio.fail_after(15):
                return dict(await driver.diagnostics())
        except TaoError as exc:
            return {"reachable": False, "error": str(exc)}
        except TimeoutError:
            return {"reachable": False, "error": "no answer within 15 s"}

    async def list_instances(self, platform: str) -> InstanceList:
        platform = find_platform(platform, self.jobs.settings).name
        items = await (await self._instances(platform)).list_instances()
        instances = [Instance.model_validate(self.jobs.redactor.data(item)) for item in items]
        return InstanceList(
            platform=platform,
            instances=instances,
            next="delete_instance(name=...) for instances you no longer need: they bill until deleted",
        )

    async def delete_instance(self, platform: str, name: str) -> InstanceDeletion:
        platform = find_platform(platform, self.jobs.settings).name
        answer = self.jobs.redactor.data(await (await self._instances(platform)).delete_instance(name))
        return InstanceDeletion(
            platform=platform,
            name=name,
            status=str(answer.get("status", "deleting")),
            message=str(answer.get("message", "")),
            next=f"list_instances(platform='{platform}') to confirm",
        )

    async def _instances(self, platform: str) -> HasInstances:
        driver = await self.drivers.get(platform)
        if not isinstance(driver, HasInstances):
            raise unsupported(platform, "instances (Brev does)", UNSUPPORTED_FIX)
        return driver
