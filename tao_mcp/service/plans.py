"""Plans: a dry run the user can confirm, stored so that the confirmed plan is what gets launched.

A dry run stores what it rendered under a `plan_id` (never a job id: nothing exists on a backend yet). The
agent shows the summary, the user confirms, and the launch tool is called with the `plan_id` alone. A plan
expires after TAO_MCP_PLAN_TTL_S (default one hour) and is refused after, coded. Its files are readable in full
as the MCP resources `tao://plans/{plan_id}/{name}`.

The API is generic over the kind of launch ("job" for submit_job; AutoML and workflows add their own kinds): the
caller stores whatever arguments it needs to launch again, the rendered files and the summary it showed.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tao_mcp.config import positive_seconds
from tao_mcp.errors import TaoError
from tao_mcp.models import PlanFile
from tao_mcp.service import principal
from tao_mcp.service.store import JobStore

PLAN_TTL_S = 3600.0  # default of TAO_MCP_PLAN_TTL_S
KEEP_EXPIRED_S = 7 * 86400  # an expired plan is remembered this long, so it is refused as expired, not unknown
URI_PREFIX = "tao://plans/"
URI_TEMPLATE = URI_PREFIX + "{plan_id}/{name}"
PLAN_ID_PREFIX = "plan-"


@dataclass(frozen=True)
class Plan:
    plan_id: str
    kind: str
    arguments: dict[str, Any]
    files: dict[str, str]  # resource name -> full text
    summary: dict[str, Any]
    created_at: float
    expires_at: float
    principal: str | None = None

    def listing(self) -> list[PlanFile]:
        """Every file once: its resource URI, size and sha256 (what a dry-run result shows instead of the text)."""
        return [
            PlanFile(
                path=name,
                size=len(text.encode()),
                sha256=hashlib.sha256(text.encode()).hexdigest(),
                uri=resource_uri(self.plan_id, name),
            )
            for name, text in self.files.items()
        ]


def resource_uri(plan_id: str, name: str) -> str:
    return f"{URI_PREFIX}{plan_id}/{name}"


def resource_names(paths: list[str]) -> dict[str, str]:
    """A name per rendered path that fits one URI segment: the base name, numbered when two share it."""
    names: dict[str, str] = {}
    for path in paths:
        base = path.rstrip("/").rsplit("/", 1)[-1] or "file"
        name, n = base, 1
        while name in names.values():
            n += 1
            name = f"{n}-{base}"
        names[path] = name
    return names


def plan_ttl(settings: Mapping[str, str]) -> float:
    return positive_seconds(settings, "TAO_MCP_PLAN_TTL_S", PLAN_TTL_S, "3600")


class PlanService:
    def __init__(self, settings: Mapping[str, str], store: JobStore) -> None:
        self.settings = settings
        self.store = store

    def create(self, kind: str, arguments: dict[str, Any], files: dict[str, str], summary: dict[str, Any]) -> Plan:
        """Store a plan (arguments, files and summary pass through the store's redactor) and return it.

        The launch runs the stored arguments, so they must hold nothing the redactor masks (it would launch the
        mask): a credential value there is refused, as submit_workflow refuses one in a step."""
        if json.dumps(self.store.redactor.data(arguments), sort_keys=True) != json.dumps(arguments, sort_keys=True):
            raise TaoError(
                "E_BAD_INPUT",
                "the dry run's arguments hold a credential value; a plan is stored to be launched later, never "
                "with a secret in it",
                "pass credentials by name: secret_env=['<VARIABLE>'] forwards one from the server environment",
            )
        now = time.time()
        plan = Plan(
            plan_id=PLAN_ID_PREFIX + uuid.uuid4().hex[:12],
            kind=kind,
            arguments=arguments,
            files=files,
            summary=summary,
            created_at=now,
            expires_at=now + plan_ttl(self.settings),
            principal=principal.owner(),
        )
        self.store.put_plan(plan.__dict__, purge_before=now - KEEP_EXPIRED_S)
        return self.get(plan.plan_id)  # as stored (redacted)

    def get(self, plan_id: str, kind: str | None = None, *, allow_expired: bool = False) -> Plan:
        """The plan, refused coded when it is unknown (or another principal's), of another kind, or expired."""
        row = self.store.get_plan(plan_id)
        plan = principal.visible(
            Plan(**row) if row else None,
            "E_UNKNOWN_PLAN",
            f"no plan with id '{plan_id}' in this server's store",
            "run the tool again with dry_run=True and use the plan_id it returns",
        )
        if kind is not None and plan.kind != kind:
            raise TaoError(
                "E_UNKNOWN_PLAN",
                f"plan '{plan_id}' is a {plan.kind} plan, not a {kind} plan",
                f"launch it with the tool that made it (its dry run was a {plan.kind} dry run)",
            )
        if time.time() >= plan.expires_at and not allow_expired:
            ago = int(time.time() - plan.expires_at)
            raise TaoError(
                "E_PLAN_EXPIRED",
                f"plan '{plan_id}' expired {ago} s ago (plans are kept {int(plan_ttl(self.settings))} s)",
                "run the dry run again, show the new plan to the user and submit its plan_id once confirmed",
            )
        return plan

    def take(self, plan_id: str, kind: str) -> Plan:
        """What a launch calls: the unexpired plan of this kind the user confirmed, or a coded refusal."""
        return self.get(plan_id, kind)

    def file(self, plan_id: str, name: str) -> str:
        plan = self.get(plan_id)
        if name not in plan.files:
            raise TaoError(
                "E_NOT_FOUND",
                f"plan '{plan_id}' has no file '{name}'",
                f"read one of: {', '.join(sorted(plan.files))}",
            )
        return plan.files[name]

    def complete(self, prefix: str, kind: str | None = None, limit: int = 100) -> list[str]:
        """Unexpired plan ids this caller may use, newest first (completion/complete)."""
        rows = self.store.plan_ids(prefix=prefix, kind=kind, now=time.time(), limit=limit)
        return [plan_id for plan_id, owner in rows if principal.may_see(owner)]


__all__ = ["URI_TEMPLATE", "Plan", "PlanService", "resource_names", "resource_uri"]
