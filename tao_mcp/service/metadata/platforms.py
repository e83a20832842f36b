"""Platform metadata: the built-in records, overlaid by the skill bank's, and the presence-only credential view.

The presence rule (skill bank): a required variable is missing when unset or empty; a group is missing
when none of its members is set. Only names and booleans are ever produced here, never values.
Bank layouts: the current one (skills/platform/tao-run-on-<name>/references/skill_info.yaml) overrides the legacy
one (skills/platform/platforms.manifest.json), which overrides the built-in records.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from tao_mcp.errors import TaoError
from tao_mcp.models import CredentialGroup, CredentialState, PlatformDetail, PlatformSummary
from tao_mcp.service.metadata.bank import bad_bank, bank_root, read_mapping

PLATFORM_PREFIX = "tao-run-on-"
SCALAR = (str, int, float, bool, type(None))


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
    features: tuple[str, ...] = ()
    dataset_examples: tuple[str, ...] = ()  # data URIs in the form this platform reads
    preflight_checks: tuple[str, ...] = ()  # what to check before the dry run
    source: str = "built-in"  # "built-in", or the skill bank file the record came from

    def missing(self, env: Mapping[str, str]) -> list[str]:
        names = [c["name"] for c in self.required if not env.get(c["name"])]
        names += [
            " or ".join(g["require_one_of"]) for g in self.groups if not any(env.get(n) for n in g["require_one_of"])
        ]
        return names

    def summary(self, env: Mapping[str, str], state: str | None = None, reason: str | None = None) -> PlatformSummary:
        """`state`/`reason`: the readiness service's probed reading; without it, the configuration alone
        (no_driver / not_configured / ready)."""
        from tao_mcp.drivers import DRIVERS

        missing = self.missing(env)
        available = self.name in DRIVERS
        if state is None:
            state = "no_driver" if not available else ("not_configured" if missing else "ready")
            if state == "not_configured":
                reason = "missing " + ", ".join(missing)
            elif state == "no_driver":
                reason = "no driver in this tao-mcp version"
        return PlatformSummary(
            name=self.name,
            display_name=self.display_name,
            aliases=list(self.aliases),
            description=self.description,
            available=available,
            state=state,
            reason=reason,
            ready=state == "ready",
            missing=missing,
        )

    def detail(self, env: Mapping[str, str], state: str | None = None, reason: str | None = None) -> PlatformDetail:
        creds = [
            CredentialState(
                name=c["name"],
                present=bool(env.get(c["name"])),
                required=True,
                description=c.get("description", ""),
                how_to_get=c.get("how_to_get"),
            )
            for c in self.required
        ] + [
            CredentialState(
                name=c["name"],
                present=bool(env.get(c["name"])),
                required=False,
                description=c.get("description", ""),
                only_when=c.get("only_when"),
                how_to_get=c.get("how_to_get"),
            )
            for c in self.optional
        ]
        groups = [
            CredentialGroup(
                name=g["name"],
                require_one_of=list(g["require_one_of"]),
                satisfied=any(env.get(n) for n in g["require_one_of"]),
                present=[n for n in g["require_one_of"] if env.get(n)],
                how_to_get=g.get("how_to_get"),
            )
            for g in self.groups
        ]
        return PlatformDetail(
            **self.summary(env, state, reason).model_dump(),
            credentials=creds,
            credential_groups=groups,
            storage=dict(self.storage),
            resource_defaults=dict(self.resource_defaults),
            dataset_examples=list(self.dataset_examples),
            preflight_checks=list(self.preflight_checks),
            options=option_help(self.name),
        )


def option_help(platform: str) -> dict[str, str]:
    """submit_job options of a platform with a driver, from its options model (the single source)."""
    from tao_mcp.drivers import MODELS, platform_models

    return platform_models(platform)[0].help() if platform in MODELS else {}


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
            dataset_examples=tuple(p.get("dataset_examples", ())),
            preflight_checks=tuple(p.get("preflight_checks", ())),
        )
        for p in data["platforms"]
    )
    return records, data["s3_credentials"]


def builtin_platforms() -> tuple[PlatformRecord, ...]:
    return _builtin()[0]


def s3_required() -> list[str]:
    return list(_builtin()[1]["required"])


# ---------------------------------------------------------------- the skill bank overlay


def _names(value: Any, path: Path, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise bad_bank(path, f"has {what} that is not a list of names")
    return tuple(value)


def _creds(items: Any, path: Path, what: str, definitions: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
    """[{name, source?, description?, only_when?, how_to_get?} | "NAME", ...] -> [{name, description, only_when?,
    how_to_get?}]; description and how_to_get default to the manifest's credential_definitions."""
    if items is None:
        return ()
    if not isinstance(items, list):
        raise bad_bank(path, f"has {what} that is not a list")
    out: list[dict[str, Any]] = []
    for item in items:
        entry = {"name": item} if isinstance(item, str) else item
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
            raise bad_bank(path, f"has an entry in {what} without a name: {item!r}")
        definition = definitions.get(entry["name"])
        description = entry.get("description") or (
            definition.get("description") if isinstance(definition, dict) else None
        )
        cred: dict[str, Any] = {"name": entry["name"], "description": str(description or "")}
        if entry.get("only_when"):
            cred["only_when"] = str(entry["only_when"])
        how_to_get = entry.get("how_to_get") or (definition.get("how_to_get") if isinstance(definition, dict) else None)
        if how_to_get:
            cred["how_to_get"] = str(how_to_get)
        out.append(cred)
    return tuple(out)


def _groups(items: Any, path: Path) -> tuple[dict[str, Any], ...]:
    if items is None:
        return ()
    if not isinstance(items, list):
        raise bad_bank(path, "has credential_groups that is not a list")
    out = []
    for i, g in enumerate(items):
        members = g.get("require_one_of") if isinstance(g, dict) else None
        if not isinstance(members, list) or not members or not all(isinstance(m, str) for m in members):
            raise bad_bank(path, f"has credential_groups[{i}] without a require_one_of list of names")
        group = {"name": str(g.get("name") or "_or_".join(members)), "require_one_of": list(members)}
        for key in ("preferred", "description", "how_to_get"):
            if g.get(key):
                group[key] = str(g[key])
        out.append(group)
    return tuple(out)


def _scalars(value: Any, path: Path, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_bank(path, f"has {what} that is not a mapping")
    return {str(k): v for k, v in value.items() if isinstance(v, SCALAR)}


def _storage(value: Any, path: Path) -> dict[str, str]:
    return {k: str(v) for k, v in _scalars(value, path, "storage").items() if v is not None}


def _hints(record: Mapping[str, Any], path: Path) -> dict[str, tuple[str, ...]]:
    """dataset_examples and preflight_checks, when the bank gives them (else the earlier record's stay)."""
    return {key: _names(record[key], path, key) for key in ("dataset_examples", "preflight_checks") if record.get(key)}


def _overlay(records: list[PlatformRecord], name: str, fields: dict[str, Any], aliases: Iterable[str]) -> None:
    """A bank record overrides the built-in (or earlier) record sharing its name or an alias; else it is added.

    The matched record keeps its canonical name (drivers are keyed by it); the bank's name becomes an alias.
    """
    name = name.strip().lower()
    keys = {name, *(a.lower() for a in aliases)}
    for i, base in enumerate(records):
        if keys & {base.name, *base.aliases}:
            merged_aliases = tuple(dict.fromkeys([*base.aliases, *(k for k in sorted(keys) if k != base.name)]))
            resource_defaults = {**base.resource_defaults, **fields.pop("resource_defaults", {})}
            optional = fields.pop("optional", None)
            required = fields.get("required")
            builtin = next((r for r in builtin_platforms() if r.name == base.name), None)
            if required is not None:  # a bank entry without its own text keeps the earlier record's
                known = {c["name"]: c for c in (*base.required, *base.optional)}
                required = tuple({**known.get(c["name"], {}), **{k: v for k, v in c.items() if v}} for c in required)
                fields["required"] = required
            if required is not None and builtin is not None:
                # A variable the driver treats as optional (built-in record) stays optional whatever the bank
                # says: the driver runs without it, and each variable is listed once.
                optional_names = {c["name"] for c in builtin.optional}
                demoted = tuple(c for c in required if c["name"] in optional_names)
                fields["required"] = tuple(c for c in required if c["name"] not in optional_names)
                optional = tuple(optional or ()) + demoted if demoted else optional
            if optional is not None:  # the bank's optional list, plus built-in ones it does not mention
                named = {c["name"] for c in optional}
                by_name = {c["name"]: c for c in base.optional}
                # a bank entry without its own text keeps the built-in one ("what it is for")
                optional = tuple({**by_name.get(c["name"], {}), **{k: v for k, v in c.items() if v}} for c in optional)
                optional = optional + tuple(c for c in base.optional if c["name"] not in named)
            if optional is not None or required is not None:
                required_names = {c["name"] for c in fields.get("required", base.required)}
                fields["optional"] = tuple(c for c in (optional or base.optional) if c["name"] not in required_names)
            records[i] = dataclasses.replace(
                base, aliases=merged_aliases, resource_defaults=resource_defaults, **fields
            )
            return
    records.append(
        PlatformRecord(
            name=name,
            display_name=fields.pop("display_name", name),
            aliases=tuple(a.lower() for a in aliases if a.lower() != name),
            description=fields.pop("description", f"{name} (from the skill bank; tao-mcp has no driver for it)"),
            required=fields.pop("required", ()),
            groups=fields.pop("groups", ()),
            optional=fields.pop("optional", ()),
            **fields,
        )
    )


def _legacy(records: list[PlatformRecord], path: Path) -> None:
    manifest = read_mapping(path)
    platforms = manifest.get("platforms")
    if not isinstance(platforms, list):
        raise bad_bank(path, "has no platforms list")
    definitions = manifest.get("credential_definitions") or {}
    if not isinstance(definitions, dict):
        raise bad_bank(path, "has credential_definitions that is not a mapping")
    for i, p in enumerate(platforms):
        if not isinstance(p, dict) or not isinstance(p.get("name"), str) or not p["name"]:
            raise bad_bank(path, f"has platforms[{i}] without a name")
        fields: dict[str, Any] = {
            "required": _creds(p.get("required_credentials"), path, "required_credentials", definitions),
            "groups": _groups(p.get("credential_groups"), path),
            "optional": _creds(p.get("optional_credentials"), path, "optional_credentials", definitions),
            "source": str(path),
        }
        for key in ("display_name", "description"):
            if isinstance(p.get(key), str) and p[key]:
                fields[key] = p[key]
        if p.get("storage"):
            fields["storage"] = _storage(p["storage"], path)
        if p.get("resource_defaults"):
            fields["resource_defaults"] = _scalars(p["resource_defaults"], path, "resource_defaults")
        fields |= _hints(p, path)
        _overlay(records, p["name"], fields, _names(p.get("aliases"), path, "aliases"))


def _current(records: list[PlatformRecord], folder: Path) -> None:
    name = folder.name[len(PLATFORM_PREFIX) :]
    info_path = folder / "references" / "skill_info.yaml"
    if not info_path.is_file():  # credential-free: say so rather than inventing a gate
        base = next((r for r in records if name in (r.name, *r.aliases)), None)
        text = base.description if base else f"{name} (from the skill bank; tao-mcp has no driver for it)"
        fields: dict[str, Any] = {
            "required": (),
            "groups": (),
            "description": f"{text} The skill bank declares no credentials for it (credential-free).",
            "source": str(folder),
        }
        _overlay(records, name, fields, ())
        return
    info = read_mapping(info_path)
    if info.get("type") not in (None, "platform"):
        raise bad_bank(info_path, f"has type {info.get('type')!r}, not platform")
    fields = {
        "required": _creds(info.get("required_credentials"), info_path, "required_credentials", {}),
        "groups": _groups(info.get("credential_groups"), info_path),
        "optional": _creds(info.get("optional_credentials"), info_path, "optional_credentials", {}),
        "resource_defaults": _scalars(info.get("resource_defaults"), info_path, "resource_defaults"),
        "features": _names(info.get("features"), info_path, "features"),
        "source": str(info_path),
    }
    for key in ("display_name", "description"):
        if isinstance(info.get(key), str) and info[key]:
            fields[key] = info[key]
    if info.get("cloud_storage") or info.get("storage"):
        fields["storage"] = _storage(info.get("cloud_storage") or info.get("storage"), info_path)
    fields |= _hints(info, info_path)
    _overlay(records, name, fields, _names(info.get("aliases"), info_path, "aliases"))


def platform_records(settings: Mapping[str, str]) -> tuple[PlatformRecord, ...]:
    """Built-in platform records, overridden by the legacy manifest, then by the current per-platform layout."""
    records = list(builtin_platforms())
    root = bank_root(settings)
    if root is None:
        return tuple(records)
    platform_dir = root / "skills" / "platform"
    legacy = platform_dir / "platforms.manifest.json"
    if legacy.is_file():
        _legacy(records, legacy)
    if platform_dir.is_dir():
        for folder in sorted(platform_dir.iterdir()):
            if folder.is_dir() and folder.name.startswith(PLATFORM_PREFIX) and len(folder.name) > len(PLATFORM_PREFIX):
                _current(records, folder)
    return tuple(records)


def intake_defaults(settings: Mapping[str, str]) -> dict[str, Any]:
    """Launch-intake defaults: long-running monitoring on, status every 5 minutes (legacy manifest may say)."""
    out: dict[str, Any] = {"long_running_enabled": True, "status_interval_minutes": 5}
    root = bank_root(settings)
    legacy = root / "skills" / "platform" / "platforms.manifest.json" if root else None
    if legacy and legacy.is_file():
        manifest = read_mapping(legacy)
        if isinstance(manifest.get("default_long_running_enabled"), bool):
            out["long_running_enabled"] = manifest["default_long_running_enabled"]
        if isinstance(manifest.get("default_status_interval_minutes"), int | float):
            out["status_interval_minutes"] = manifest["default_status_interval_minutes"]
    return out


# ---------------------------------------------------------------- lookup


def platforms(settings: Mapping[str, str] | None = None) -> tuple[PlatformRecord, ...]:
    """The platform records: the built-in ones, overridden by a skill bank found through `settings`.

    With no settings (or no skill bank at $TAO_SKILL_BANK_PATH, default ~/tao-skills-external) the built-in
    records are returned unchanged.
    """
    if settings is None:
        return builtin_platforms()
    return platform_records(settings)


def find_platform(name: str, settings: Mapping[str, str] | None = None) -> PlatformRecord:
    wanted = name.strip().lower()
    records = platforms(settings)
    for record in records:
        if wanted == record.name or wanted in record.aliases:
            return record
    from tao_mcp.drivers import DRIVERS

    # only platforms a job can be submitted to: a skill-bank-only record (no driver) is no choice
    known = ", ".join(p.name for p in records if p.name in DRIVERS)
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
