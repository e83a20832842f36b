"""The TAO skill bank: platform and model metadata read from $TAO_SKILL_BANK_PATH (default ~/tao-skills-external).

Formats: /work/shared/design/skill-bank.md. Everything falls back to metadata shipped in the package
(tao_mcp/data/platforms.yaml, tao_mcp/data/models.yaml) so the server is useful with no skill bank installed.
Files are parsed with yaml.safe_load / json and cached per (path, mtime, size); the directories are listed on
every call, so edits to the bank are seen without a restart. Credential views stay presence-only (catalog.py).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from tao_mcp.entrypoint import runner
from tao_mcp.errors import TaoError
from tao_mcp.models import ActionInfo, ImageResolution, ModelInfo, ModelList
from tao_mcp.service import catalog
from tao_mcp.service.catalog import PlatformRecord

DEFAULT_BANK = "~/tao-skills-external"
PLATFORM_PREFIX = "tao-run-on-"
MODES = ("config", "args", "passthrough")
CONFIG_FORMATS = {"yaml": "yaml", "yml": "yaml", "json": "json", "toml": "toml"}
SCALAR = (str, int, float, bool, type(None))

try:  # libyaml when available: the bank holds ~100 model records
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader


# ---------------------------------------------------------------- locating and reading the bank


def bank_path(settings: Mapping[str, str]) -> Path:
    return Path(settings.get("TAO_SKILL_BANK_PATH") or DEFAULT_BANK).expanduser().absolute()


def bank_root(settings: Mapping[str, str]) -> Path | None:
    """The skill bank directory, or None when it does not exist (the built-in metadata is used then)."""
    path = bank_path(settings)
    return path if path.is_dir() else None


def bank_notes(settings: Mapping[str, str]) -> list[str]:
    explicit = settings.get("TAO_SKILL_BANK_PATH")
    if explicit and bank_root(settings) is None:
        return [f"TAO_SKILL_BANK_PATH={explicit} is not a directory: the built-in metadata is used"]
    return []


def bad_bank(path: Path, why: str) -> TaoError:
    return TaoError(
        "E_BAD_SKILL_BANK",
        f"the skill bank file {path} {why}",
        "fix or remove that file, or point TAO_SKILL_BANK_PATH at another skill bank "
        "(a missing skill bank means the built-in metadata is used)",
    )


_CACHE: dict[Path, tuple[int, int, Any]] = {}


def read_file(path: Path) -> Any:
    """Parse a YAML or JSON bank file (cached per path + mtime + size). Treat the result as read-only."""
    try:
        st = path.stat()
        hit = _CACHE.get(path)
        if hit and hit[0] == st.st_mtime_ns and hit[1] == st.st_size:
            return hit[2]
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise bad_bank(path, f"cannot be read ({type(exc).__name__}: {exc})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.load(text, Loader=_Loader)  # a SafeLoader
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise bad_bank(path, f"is not valid {kind} ({first})") from None
    _CACHE[path] = (st.st_mtime_ns, st.st_size, data)
    return data


def read_mapping(path: Path) -> dict[str, Any]:
    data = read_file(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise bad_bank(path, f"holds a {type(data).__name__}, not a mapping")
    return data


# ---------------------------------------------------------------- platforms


def _names(value: Any, path: Path, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise bad_bank(path, f"has {what} that is not a list of names")
    return tuple(value)


def _creds(items: Any, path: Path, what: str, definitions: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
    """[{name, source?, description?, only_when?} | "NAME", ...] -> [{name, description, only_when?}]."""
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
        if g.get("preferred"):
            group["preferred"] = str(g["preferred"])
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
            if optional is not None:  # the bank's optional list, plus built-in ones it does not mention
                named = {c["name"] for c in optional}
                optional = tuple(optional) + tuple(c for c in base.optional if c["name"] not in named)
                fields["optional"] = optional
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
    _overlay(records, name, fields, _names(info.get("aliases"), info_path, "aliases"))


def platform_records(settings: Mapping[str, str]) -> tuple[PlatformRecord, ...]:
    """Built-in platform records, overridden by the legacy manifest, then by the current per-platform layout."""
    records = list(catalog.builtin_platforms())
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


# ---------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelRecord:
    skill: str  # the skill directory name
    data: dict[str, Any]
    directory: Path | None  # None for built-in records
    source: str  # "built-in" or the skill_info.yaml path
    manifest: dict[str, Any] = field(default_factory=dict)  # this model's entry in schemas.manifest.json

    @property
    def network_arch(self) -> str:
        return str(self.data.get("network_arch") or self.manifest.get("network_arch") or self.skill)

    @property
    def actions(self) -> dict[str, Any]:
        actions = self.data.get("actions") or {}
        if not isinstance(actions, dict):
            raise bad_bank(Path(self.source), "has actions that is not a mapping")
        return actions

    @property
    def automl_enabled(self) -> bool:
        value = self.data.get("automl_enabled", self.manifest.get("automl_enabled", True))
        return value is not False

    def match_keys(self) -> set[str]:
        keys = [self.skill, self.data.get("network_arch"), self.data.get("model"), self.data.get("name")]
        for extra in ("aliases", "huggingface_model_ids"):
            value = self.data.get(extra) or []
            keys += [value] if isinstance(value, str) else list(value) if isinstance(value, list) else []
        return {str(k).strip().lower() for k in keys if k}

    def schema_state(self, action: str) -> tuple[bool, bool]:
        """(packaged, valid) of schemas/<action>.schema.json."""
        if self.directory is None:
            return False, False
        path = self.directory / "schemas" / f"{action}.schema.json"
        if not path.is_file():
            return False, False
        try:
            return True, isinstance(read_file(path), dict)
        except TaoError:
            return True, False

    def schema_failure(self, action: str) -> str | None:
        failures = self.manifest.get("failures") or {}
        if self.directory is not None:
            local = self.directory / "schemas" / "manifest.json"
            if local.is_file():
                with contextlib.suppress(TaoError):  # an unreadable manifest only loses failure notes
                    failures = {**failures, **(read_mapping(local).get("failures") or {})}
        value = failures.get(action) if isinstance(failures, dict) else None
        if value is None:
            return None
        return value if isinstance(value, str) else json.dumps(value)[:300]

    def automl_capable(self, action: str) -> bool:
        return self.automl_enabled and not self.data.get("automl_blocked_reason") and self.schema_state(action)[1]

    def template_path(self, action: str) -> Path | None:
        if self.directory is None:
            return None
        path = self.directory / "references" / f"spec_template_{action}.yaml"
        return path if path.is_file() else None


@cache
def _builtin_models() -> tuple[ModelRecord, ...]:
    data = yaml.safe_load(resources.files("tao_mcp.data").joinpath("models.yaml").read_text())
    return tuple(ModelRecord(skill, record, None, "built-in") for skill, record in data["models"].items())


def model_records(settings: Mapping[str, str]) -> tuple[tuple[ModelRecord, ...], Path | None]:
    """The bank's model records (and the bank root), or the built-in ones (and None) when it has none."""
    root = bank_root(settings)
    models_dir = root / "skills" / "models" if root else None
    if models_dir is None or not models_dir.is_dir():
        return _builtin_models(), None
    manifest_path = models_dir / "schemas.manifest.json"
    manifest = (read_mapping(manifest_path).get("models") or {}) if manifest_path.is_file() else {}
    if not isinstance(manifest, dict):
        raise bad_bank(manifest_path, "has models that is not a mapping")
    records = []
    for folder in sorted(models_dir.iterdir()):
        info = folder / "references" / "skill_info.yaml"
        if folder.is_dir() and info.is_file():
            entry = manifest.get(folder.name)
            records.append(
                ModelRecord(
                    folder.name, read_mapping(info), folder, str(info), entry if isinstance(entry, dict) else {}
                )
            )
    if not records:
        return _builtin_models(), None
    return tuple(records), root


def _listing(records: Iterable[ModelRecord], limit: int = 12) -> str:
    names = [r.skill for r in records]
    return ", ".join(names[:limit]) + (f", … ({len(names)} in all)" if len(names) > limit else "")


def find_model(settings: Mapping[str, str], model: str) -> ModelRecord:
    """An exact skill directory name first; else a case-insensitive match on the directory name, network_arch,
    model, name, aliases and huggingface_model_ids. None or several matches are errors listing names."""
    records, _ = model_records(settings)
    if not isinstance(model, str) or not model.strip():
        raise TaoError("E_UNKNOWN_MODEL", "no model was named", f"use one of: {_listing(records)} (see list_models)")
    for record in records:
        if record.skill == model:
            return record
    wanted = model.strip().lower()
    matches = [r for r in records if wanted in r.match_keys()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise TaoError(
            "E_UNKNOWN_MODEL",
            f"no model matches '{model}'",
            f"use one of: {_listing(records)} (see list_models)",
        )
    shown = ", ".join(f"{r.skill} (network_arch {r.network_arch})" for r in matches)
    raise TaoError(
        "E_AMBIGUOUS_MODEL",
        f"'{model}' matches {len(matches)} models: {shown}",
        f"pass the skill directory name exactly, e.g. model='{matches[0].skill}'",
    )


def _action_record(record: ModelRecord, action: str) -> dict[str, Any]:
    actions = record.actions
    if action not in actions:
        raise TaoError(
            "E_UNKNOWN_ACTION",
            f"model {record.skill} has no action '{action}'",
            f"use one of: {', '.join(actions) or '(none declared)'}",
        )
    entry = actions[action] or {}
    if not isinstance(entry, dict):
        raise bad_bank(Path(record.source), f"has actions.{action} that is not a mapping")
    return entry


def list_models(settings: Mapping[str, str], scope: str = "all", action: str | None = None) -> ModelList:
    if scope not in ("all", "automl"):
        raise TaoError("E_BAD_INPUT", f"scope {scope!r} is unknown", "use scope='all' or scope='automl'")
    records, root = model_records(settings)
    models: list[ModelInfo] = []
    for record in records:
        names = [a for a in record.actions if action is None or a == action]
        infos = []
        for name in names:
            packaged, valid = record.schema_state(name)
            entry = record.actions[name] if isinstance(record.actions[name], dict) else {}
            info = ActionInfo(
                name=name,
                mode=str(entry["mode"]) if entry.get("mode") else None,
                spec_template=record.template_path(name) is not None,
                schema_packaged=packaged,
                schema_valid=valid,
                schema_failure=record.schema_failure(name),
                automl_capable=record.automl_capable(name),
            )
            if scope == "all" or info.automl_capable:
                infos.append(info)
        if not infos:
            continue
        contracts = record.data.get("backend_contracts") or {}
        defaults = (record.data.get("backend_selection") or {}).get("defaults") or {}
        aliases = record.data.get("aliases") or []
        models.append(
            ModelInfo(
                model=record.skill,
                name=str(record.data["name"]) if record.data.get("name") else None,
                network_arch=record.network_arch,
                aliases=[str(a) for a in ([aliases] if isinstance(aliases, str) else aliases)],
                automl_enabled=record.automl_enabled,
                automl_blocked_reason=str(record.data["automl_blocked_reason"])
                if record.data.get("automl_blocked_reason")
                else None,
                actions=infos,
                backends=[str(b) for b in contracts] if isinstance(contracts, dict) else [],
                default_backends={str(k): str(v) for k, v in defaults.items()} if isinstance(defaults, dict) else {},
                source=record.source,
            )
        )
    if scope == "automl":
        hint = (
            "train AutoML-capable models through the AutoML route unless the user turns it off or asks for a plain "
            "run; resolve_image(model=..., action='train') next"
        )
    else:
        hint = "resolve_image(model='<model>', action='<action>') for the image to confirm with the user"
    return ModelList(
        models=models,
        scope=scope,  # type: ignore[arg-type]
        action=action,
        source="skill bank" if root else "built-in",
        skill_bank=str(root) if root else None,
        notes=bank_notes(settings),
        next=hint if models else "list_models() without filters shows every model",
    )


# ---------------------------------------------------------------- backends and images


@dataclass(frozen=True)
class Backend:
    name: str
    reason: str
    action: dict[str, Any]  # the contract's entry for the action (may override command, image, ...)
    pinned: dict[str, Any]  # the backend_contracts mapping entry ({path, container_image}) when a mapping
    contract: dict[str, Any]
    contract_path: str


def _contract(record: ModelRecord, name: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    entry = record.data["backend_contracts"][name]
    pinned = entry if isinstance(entry, dict) else {}
    rel = entry if isinstance(entry, str) else pinned.get("path")
    if not rel:
        return {}, pinned, ""
    if record.directory is None:
        return {}, pinned, str(rel)
    for base in (record.directory, record.directory / "references"):
        path = base / str(rel)
        if path.is_file():
            return read_mapping(path), pinned, str(rel)
    raise bad_bank(Path(record.source), f"names the backend contract {rel} for {name}, which does not exist")


def _support(contract: dict[str, Any], name: str, action: str) -> tuple[bool, str, dict[str, Any]]:
    actions = contract.get("actions")
    if actions is None and isinstance(contract.get("supported_actions"), list):
        actions = contract["supported_actions"]
    if isinstance(actions, list):
        return (action in actions), f"the {name} backend does not support {action}", {}
    if not isinstance(actions, dict):
        return True, "", {}  # a contract that lists no actions does not restrict them
    entry = actions.get(action)
    if entry is None:
        return False, f"the {name} backend contract does not list {action}", {}
    if isinstance(entry, bool):
        return entry, f"the {name} backend does not support {action}", {}
    if not isinstance(entry, dict):
        return False, f"the {name} backend contract has an unreadable entry for {action}", {}
    reason = str(entry.get("reason") or f"the {name} backend does not support {action}")
    return entry.get("supported") is True, reason, entry


def select_backend(record: ModelRecord, action: str, backend: str = "auto") -> Backend | None:
    contracts = record.data.get("backend_contracts")
    requested = (backend or "auto").strip()
    if not contracts:
        if requested.lower() in ("auto", "", "default"):
            return None
        raise TaoError(
            "E_BACKEND_UNSUPPORTED",
            f"model {record.skill} has a single implementation; backend '{requested}' does not apply",
            "omit backend (or pass backend='auto')",
        )
    if not isinstance(contracts, dict):
        raise bad_bank(Path(record.source), "has backend_contracts that is not a mapping")
    names = [str(n) for n in contracts]
    selection = record.data.get("backend_selection") or {}
    defaults = (selection.get("defaults") or {}) if isinstance(selection, dict) else {}
    if requested.lower() != "auto":
        if requested not in contracts:
            raise TaoError(
                "E_BACKEND_UNSUPPORTED",
                f"model {record.skill} has no backend '{requested}'",
                f"use one of: {', '.join(names)}, or backend='auto'",
            )
        chosen, reason = requested, "requested"
    elif isinstance(defaults, dict) and defaults.get(action) in contracts:
        chosen, reason = str(defaults[action]), f"backend_selection.defaults.{action}"
    elif isinstance(selection, dict) and selection.get("default") in contracts:
        chosen, reason = str(selection["default"]), "backend_selection.default"
    else:
        usable = [n for n in names if _support(_contract(record, n)[0], n, action)[0]]
        if not usable:
            reasons = "; ".join(_support(_contract(record, n)[0], n, action)[1] for n in names)
            raise TaoError(
                "E_BACKEND_UNSUPPORTED",
                f"no backend of {record.skill} supports {action}: {reasons}",
                f"choose another action ({', '.join(record.actions)})",
            )
        chosen = usable[0]
        reason = f"the only backend supporting {action}" if len(usable) == 1 else f"first backend supporting {action}"
    contract, pinned, rel = _contract(record, chosen)
    ok, why, entry = _support(contract, chosen, action)
    if not ok:
        others = [n for n in names if n != chosen and _support(_contract(record, n)[0], n, action)[0]]
        raise TaoError(
            "E_BACKEND_UNSUPPORTED",
            f"{record.skill} {action} on the {chosen} backend ({reason}): {why}",
            f"pass backend='{others[0]}'" if others else f"choose another action ({', '.join(record.actions)})",
        )
    return Backend(chosen, reason, entry, pinned, contract, rel)


def _versions(root: Path | None) -> tuple[dict[str, Any], Path | None]:
    if root is None:
        return {}, None
    for path in (root / "versions.yaml", root / "skills" / "versions.yaml"):
        if path.is_file():
            return read_mapping(path), path
    return {}, None


def _lookup_key(versions: dict[str, Any], key: str) -> str | None:
    node: Any = versions.get("images") or {}
    parts = key.split(".")
    if parts[0] == "images":
        parts = parts[1:]
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, str) and node else None


def _image_candidates(record: ModelRecord, action: str, entry: dict[str, Any], chosen: Backend | None) -> list:
    out: list[tuple[str, Any]] = []
    if chosen is not None:
        b = f"backend_contracts.{chosen.name}"
        out += [
            (f"{b}.actions.{action}.container_image", chosen.action.get("container_image")),
            (f"{b}.actions.{action}.image", chosen.action.get("image")),
            (f"{b}.container_image", chosen.pinned.get("container_image")),
            (f"{chosen.contract_path}:container_image", chosen.contract.get("container_image")),
            (f"{chosen.contract_path}:image", chosen.contract.get("image")),
        ]
    out += [
        (f"actions.{action}.container_image", entry.get("container_image")),
        (f"actions.{action}.image", entry.get("image")),
        ("container_image", record.data.get("container_image")),
        ("image", record.data.get("image")),
    ]
    return out


def _resolve(
    settings: Mapping[str, str], record: ModelRecord, action: str, entry: dict[str, Any], chosen: Backend | None
) -> ImageResolution:
    _, root = model_records(settings)
    declared = source = None
    for where, value in _image_candidates(record, action, entry, chosen):
        if value in (None, ""):
            continue
        if not isinstance(value, str):
            raise bad_bank(Path(record.source), f"has {where} that is not a string")
        declared, source = value.strip(), where
        break
    resolved_from: Literal["absolute", "versions.yaml", "unresolved_key", "none"]
    if declared is None:
        image, resolved_from = None, "none"
    elif "/" in declared or ":" in declared:
        image, resolved_from = declared, "absolute"
    else:
        versions, _ = _versions(root)
        image = _lookup_key(versions, declared)
        resolved_from = "versions.yaml" if image else "unresolved_key"
    target = f"submit_job(model='{record.skill}', action='{action}'"
    target += f", backend='{chosen.name}'" if chosen else ""
    if image:
        hint = f"ask the user to confirm the image {image} (or give image=<uri>), then {target}, dry_run=True)"
    else:
        hint = f"no image could be resolved: ask the user for one, then {target}, image=<uri>, dry_run=True)"
    contracts = record.data.get("backend_contracts")
    return ImageResolution(
        image=image,
        declared_image=declared,
        resolved_from=resolved_from,
        source=source,
        model=record.skill,
        network_arch=record.network_arch,
        action=action,
        backend=chosen.name if chosen else None,
        backend_reason=chosen.reason if chosen else None,
        backends=[str(b) for b in contracts] if isinstance(contracts, dict) else [],
        skill_bank=str(root) if root else None,
        next=hint,
    )


def resolve_image(
    settings: Mapping[str, str], model: str, action: str = "train", backend: str = "auto"
) -> ImageResolution:
    record = find_model(settings, model)
    entry = _action_record(record, action)
    return _resolve(settings, record, action, entry, select_backend(record, action, backend))


# ---------------------------------------------------------------- the action plan (submit_job model/action)


@dataclass(frozen=True)
class ActionPlan:
    model: str  # skill directory
    network_arch: str
    action: str
    backend: str | None
    command: str
    mode: Literal["config", "args", "passthrough"]
    config_format: str
    inputs: dict[str, Any] | list[str]  # as declared (config/args: spec paths -> {type, optional})
    outputs: dict[str, Any] | list[str]
    upload_excludes: list[str]
    specs: dict[str, Any] | None  # config mode: template <- specs <- spec_overrides <- gpu_count (nested)
    args: dict[str, Any] | None  # args mode: template <- specs <- spec_overrides (flat)
    image: str | None
    image_source: Literal["override", "resolved"]
    image_resolution: ImageResolution
    template: str | None  # the spec template file used as the base
    gpu_spec_key: str | None
    warnings: tuple[str, ...] = ()

    def entrypoint_kwargs(self) -> dict[str, Any]:
        """The build_entrypoint(...) keyword arguments this plan decides (add job_id, settings, results_uri)."""
        kwargs: dict[str, Any] = {
            "command": self.command,
            "config_format": self.config_format,
            "upload_excludes": list(self.upload_excludes),
        }
        if self.mode == "config":
            kwargs.update(specs=self.specs, inputs=self.inputs or None, outputs=self.outputs or None)
        elif self.mode == "args":
            kwargs.update(args=self.args, inputs=self.inputs or None, outputs=self.outputs or None)
        else:
            kwargs.update(inputs=self.inputs or None, outputs=self.outputs or None)
        return kwargs


def _bad_input(cause: str, fix: str) -> TaoError:
    return TaoError("E_BAD_INPUT", cause, fix)


def merge_nested(base: dict[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """Nested merge (dicts merge, everything else replaces); returns a new tree, inputs untouched."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge_nested(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _tokens(key: str, where: str) -> list[str | int]:
    if not isinstance(key, str) or not key:
        raise _bad_input(f"{where}: override keys must be non-empty strings", "write keys like train.num_epochs")
    try:
        return runner.parse_path(key)
    except runner.RunnerError:
        raise _bad_input(
            f"{where}: {key!r} is not a dotted spec path", "write it like dataset.train_data_sources[0].image_dir"
        ) from None


def _step(node: Any, token: str | int, want_list: bool, where: str) -> Any:
    fresh: Any = [] if want_list else {}
    if isinstance(token, str):
        if not isinstance(node, dict):
            raise _bad_input(f"cannot set {where}: the value above '{token}' is not a mapping", "fix the path")
        if node.get(token) is None:
            node[token] = fresh
        child = node[token]
    else:
        if not isinstance(node, list):
            raise _bad_input(f"cannot set {where}: the value above [{token}] is not a list", "fix the path")
        if token == len(node):
            node.append(fresh)
        elif token > len(node):
            raise _bad_input(
                f"cannot set {where}: index [{token}] is past the end of a {len(node)}-item list",
                f"use an index up to [{len(node)}] (that one appends)",
            )
        elif node[token] is None:
            node[token] = fresh
        child = node[token]
    if (want_list and not isinstance(child, list)) or (not want_list and not isinstance(child, dict)):
        kind = "list" if want_list else "mapping"
        raise _bad_input(f"cannot set {where}: the spec holds a {type(child).__name__} there, not a {kind}", "fix it")
    return child


def _assign(node: Any, token: str | int, value: Any, where: str) -> None:
    if isinstance(token, str):
        if not isinstance(node, dict):
            raise _bad_input(f"cannot set {where}: the value above '{token}' is not a mapping", "fix the path")
        node[token] = value
    elif not isinstance(node, list):
        raise _bad_input(f"cannot set {where}: the value above [{token}] is not a list", "fix the path")
    elif token < len(node):
        node[token] = value
    elif token == len(node):
        node.append(value)
    else:
        raise _bad_input(
            f"cannot set {where}: index [{token}] is past the end of a {len(node)}-item list",
            f"use an index up to [{len(node)}] (that one appends)",
        )


def _get(node: Any, token: str | int) -> Any:
    if isinstance(token, str):
        return node.get(token) if isinstance(node, dict) else None
    return node[token] if isinstance(node, list) and token < len(node) else None


def apply_override(tree: dict[str, Any], key: str, value: Any, where: str | None = None) -> None:
    """Set `key` (a dotted path, list indexes allowed) in tree; a mapping value merges into a mapping there,
    and its own keys may be dotted too."""
    where = where or key
    tokens = _tokens(key, where)
    node: Any = tree
    for i, token in enumerate(tokens[:-1]):
        node = _step(node, token, isinstance(tokens[i + 1], int), where)
    last = tokens[-1]
    if isinstance(value, Mapping):
        existing = _get(node, last)
        if not isinstance(existing, dict):
            existing = {}
            _assign(node, last, existing, where)
        for k, v in value.items():
            apply_override(existing, k, v, f"{where}.{k}")
    else:
        _assign(node, last, copy.deepcopy(value), where)


def apply_overrides(tree: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(tree)
    for key, value in overrides.items():
        apply_override(out, key, value)
    return out


def action_plan(
    settings: Mapping[str, str],
    model: str,
    action: str,
    specs: dict[str, Any] | None = None,
    spec_overrides: dict[str, Any] | None = None,
    gpu_count: int | None = None,
    image: str | None = None,
    backend: str = "auto",
) -> ActionPlan:
    """What submit_job(model=..., action=...) runs: the action record's command and declarations, the spec
    (packaged template <- specs (nested merge) <- spec_overrides (dotted keys expanded) <- gpu_count at
    gpu_spec_key), and the image (the given one, else resolve_image's)."""
    record = find_model(settings, model)
    entry = _action_record(record, action)
    chosen = select_backend(record, action, backend)
    if chosen is not None:  # a backend contract may replace parts of the action record
        entry = {**entry, **{k: v for k, v in chosen.action.items() if k not in ("supported", "reason")}}
    info = Path(record.source)
    command = entry.get("command")
    if not isinstance(command, str) or not command.strip():
        raise bad_bank(info, f"declares no command for actions.{action}")
    mode = str(entry.get("mode") or ("config" if "{config_path}" in command else "passthrough"))
    if mode not in MODES:
        raise bad_bank(info, f"has actions.{action}.mode {mode!r} (use config, args or passthrough)")
    config_format = CONFIG_FORMATS.get(str(entry.get("config_format") or "yaml").lower())
    if config_format is None:
        raise bad_bank(info, f"has actions.{action}.config_format {entry.get('config_format')!r}")
    inputs, outputs = entry.get("inputs") or {}, entry.get("outputs") or {}
    excludes = entry.get("upload_excludes") or []
    if not isinstance(inputs, dict | list) or not isinstance(outputs, dict | list) or not isinstance(excludes, list):
        raise bad_bank(info, f"has actions.{action} inputs/outputs/upload_excludes of the wrong type")
    for value, name in ((specs, "specs"), (spec_overrides, "spec_overrides")):
        if value is not None and not isinstance(value, dict):
            raise _bad_input(f"{name} must be an object", f"give {name} as {{'train': {{'num_epochs': 10}}}}")
    if gpu_count is not None and (isinstance(gpu_count, bool) or not isinstance(gpu_count, int) or gpu_count < 0):
        raise _bad_input(f"gpu_count is {gpu_count!r}", "give gpu_count >= 0")
    warnings: list[str] = []
    template_path = record.template_path(action)
    template: dict[str, Any] = {}
    if template_path is not None:
        template = read_mapping(template_path)
    # an action-level gpu_spec_key wins over the model's; an explicit null there means "no GPU count in the spec"
    gpu_key = entry["gpu_spec_key"] if "gpu_spec_key" in entry else record.data.get("gpu_spec_key")
    gpu_key = str(gpu_key) if gpu_key else None

    merged_specs: dict[str, Any] | None = None
    merged_args: dict[str, Any] | None = None
    if mode == "config":
        merged_specs = merge_nested(template, specs or {})
        merged_specs = apply_overrides(merged_specs, spec_overrides or {})
        # A template's output paths (results_dir: /results) are placeholders: unless the caller set an output,
        # the runner places it under this job's results directory.
        for key in outputs if isinstance(outputs, dict) else ():
            tokens = _tokens(key, f"outputs key {key}")
            explicit = any(
                runner.get_path(t, tokens) is not runner.MISSING for t in (specs or {}, _expanded(spec_overrides))
            )
            if not explicit and runner.get_path(merged_specs, tokens) is not runner.MISSING:
                apply_override(merged_specs, key, None)
        if gpu_count is not None and gpu_key:
            tokens = _tokens(gpu_key, f"gpu_spec_key {gpu_key}")
            before = runner.get_path(merged_specs, tokens)
            explicit = any(
                runner.get_path(t, tokens) is not runner.MISSING for t in (specs or {}, _expanded(spec_overrides))
            )
            if explicit and before not in (runner.MISSING, gpu_count):
                warnings.append(f"{gpu_key} was {before!r} in the specs; gpu_count={gpu_count} replaces it")
            apply_override(merged_specs, gpu_key, gpu_count)
        if template_path is None and not specs and not spec_overrides:
            warnings.append(f"no spec template is packaged for {record.skill} {action}: give the whole spec in specs")
    elif mode == "args":
        merged_args = {**template, **(specs or {}), **(spec_overrides or {})}
        if gpu_count is not None and gpu_key:
            merged_args[gpu_key] = gpu_count
    elif specs or spec_overrides:
        raise _bad_input(
            f"{record.skill} {action} runs in passthrough mode and takes no specs or spec_overrides",
            "drop them; pass data through inputs/outputs",
        )
    if gpu_count is not None and not gpu_key and mode != "passthrough":
        warnings.append(f"{record.skill} declares no gpu_spec_key: the spec's GPU count was not set")

    resolution = _resolve(settings, record, action, entry, chosen)
    if image is not None:
        if not isinstance(image, str) or not image.strip():
            raise _bad_input("image is empty", "give an image URI such as nvcr.io/nvidia/tao/tao-toolkit:<tag>")
        final_image, image_source = image.strip(), "override"
    else:
        final_image, image_source = resolution.image, "resolved"
        if final_image is None:
            what = (
                f"the versions.yaml key '{resolution.declared_image}' is not defined"
                if resolution.resolved_from == "unresolved_key"
                else "no container image is declared"
            )
            raise TaoError(
                "E_NO_IMAGE",
                f"{record.skill} {action}: {what}",
                "ask the user for the image and pass image=<uri>",
            )
    return ActionPlan(
        model=record.skill,
        network_arch=record.network_arch,
        action=action,
        backend=chosen.name if chosen else None,
        command=command,
        mode=mode,  # type: ignore[arg-type]
        config_format=config_format,
        inputs=copy.deepcopy(inputs),
        outputs=copy.deepcopy(outputs),
        upload_excludes=[str(p) for p in excludes],
        specs=merged_specs,
        args=merged_args,
        image=final_image,
        image_source=image_source,  # type: ignore[arg-type]
        image_resolution=resolution,
        template=str(template_path) if template_path else None,
        gpu_spec_key=gpu_key,
        warnings=tuple(warnings),
    )


def _expanded(overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    return apply_overrides({}, overrides or {})
