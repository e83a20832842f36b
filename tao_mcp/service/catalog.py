"""Platform metadata and the presence-only credential view.

The presence rule (skill bank): a required variable is missing when unset or empty; a group is missing
when none of its members is set. Only names and booleans are ever produced here, never values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import yaml

from tao_mcp.errors import TaoError
from tao_mcp.models import CredentialGroup, CredentialState, PlatformDetail, PlatformSummary


@dataclass(frozen=True)
class PlatformRecord:
    name: str
    display_name: str
    aliases: tuple[str, ...]
    description: str
    required: tuple[dict[str, Any], ...]
    groups: tuple[dict[str, Any], ...]
    optional: tuple[dict[str, Any], ...]
    resource_defaults: dict[str, Any] = field(default_factory=dict)
    storage: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    features: tuple[str, ...] = ()
    source: str = "built-in"  # "built-in", or the skill bank file the record came from

    def missing(self, env: Mapping[str, str]) -> list[str]:
        names = [c["name"] for c in self.required if not env.get(c["name"])]
        names += [
            " or ".join(g["require_one_of"]) for g in self.groups if not any(env.get(n) for n in g["require_one_of"])
        ]
        return names

    def summary(self, env: Mapping[str, str]) -> PlatformSummary:
        from tao_mcp.drivers import DRIVERS

        missing = self.missing(env)
        available = self.name in DRIVERS
        return PlatformSummary(
            name=self.name,
            display_name=self.display_name,
            aliases=list(self.aliases),
            description=self.description,
            available=available,
            ready=available and not missing,
            missing=missing,
        )

    def detail(self, env: Mapping[str, str]) -> PlatformDetail:
        creds = [
            CredentialState(
                name=c["name"], present=bool(env.get(c["name"])), required=True, description=c.get("description", "")
            )
            for c in self.required
        ] + [
            CredentialState(
                name=c["name"],
                present=bool(env.get(c["name"])),
                required=False,
                description=c.get("description", ""),
                only_when=c.get("only_when"),
            )
            for c in self.optional
        ]
        groups = [
            CredentialGroup(
                name=g["name"],
                require_one_of=list(g["require_one_of"]),
                satisfied=any(env.get(n) for n in g["require_one_of"]),
                present=[n for n in g["require_one_of"] if env.get(n)],
            )
            for g in self.groups
        ]
        return PlatformDetail(
            **self.summary(env).model_dump(),
            credentials=creds,
            credential_groups=groups,
            storage=dict(self.storage),
            resource_defaults=dict(self.resource_defaults),
            options=dict(self.options),
        )


@cache
def _builtin() -> tuple[tuple[PlatformRecord, ...], dict[str, Any]]:
    data = yaml.safe_load(resources.files("tao_mcp.data").joinpath("platforms.yaml").read_text())
    records = tuple(
        PlatformRecord(
            name=p["name"],
            display_name=p["display_name"],
            aliases=tuple(p.get("aliases", ())),
            description=p["description"],
            required=tuple(p.get("required_credentials", ())),
            groups=tuple(p.get("credential_groups", ())),
            optional=tuple(p.get("optional_credentials", ())),
            resource_defaults=p.get("resource_defaults", {}),
            storage=p.get("storage", {}),
            options=p.get("options", {}),
        )
        for p in data["platforms"]
    )
    return records, data["s3_credentials"]


def builtin_platforms() -> tuple[PlatformRecord, ...]:
    return _builtin()[0]


def platforms(settings: Mapping[str, str] | None = None) -> tuple[PlatformRecord, ...]:
    """The platform records: the built-in ones, overridden by a skill bank found through `settings`.

    With no settings (or no skill bank at $TAO_SKILL_BANK_PATH, default ~/tao-skills-external) the built-in
    records are returned unchanged.
    """
    if settings is None:
        return builtin_platforms()
    from tao_mcp.service import skillbank

    return skillbank.platform_records(settings)


def s3_required() -> list[str]:
    return list(_builtin()[1]["required"])


def find_platform(name: str, settings: Mapping[str, str] | None = None) -> PlatformRecord:
    wanted = name.strip().lower()
    records = platforms(settings)
    for record in records:
        if wanted == record.name or wanted in record.aliases:
            return record
    known = ", ".join(p.name for p in records)
    raise TaoError("E_UNKNOWN_PLATFORM", f"no platform named '{name}'", f"use one of: {known} (see list_platforms)")


def require_credentials(record: PlatformRecord, env: Mapping[str, str]) -> None:
    missing = record.missing(env)
    if missing:
        raise TaoError(
            "E_MISSING_CREDENTIALS",
            f"{record.name} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not set",
            "set them in the server's environment or in ~/.config/tao/.env (or the file TAO_MCP_ENV_FILE names), "
            f"restart the server, and check with list_platforms(platform='{record.name}'); never paste values in chat",
        )
