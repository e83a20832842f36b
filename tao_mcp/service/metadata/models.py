"""TAO model records: the skill bank's skills/models/<skill>/references/skill_info.yaml (with the bank's
schemas.manifest.json entry), or the built-in tao_mcp/data/models.yaml when the bank has none; lookup and listing."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from tao_mcp import cursor as cursor_codec
from tao_mcp.errors import TaoError
from tao_mcp.models import ActionInfo, ModelInfo, ModelList
from tao_mcp.service.metadata.bank import bad_bank, bank_notes, bank_root, read_file, read_mapping


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


def action_record(record: ModelRecord, action: str) -> dict[str, Any]:
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


MODELS_PER_PAGE = 25  # a page of a real-size bank (~100 models) stays well within the 8k-token result budget


def list_models(
    settings: Mapping[str, str],
    scope: str = "all",
    action: str | None = None,
    limit: int = MODELS_PER_PAGE,
    cursor: str | None = None,
) -> ModelList:
    if scope not in ("all", "automl"):
        raise TaoError("E_BAD_INPUT", f"scope {scope!r} is unknown", "use scope='all' or scope='automl'")
    start = 0
    if cursor:
        for_scope, for_action, start = cursor_codec.decode(cursor, "models", str, str, int)
        if (for_scope, for_action) != (scope, action or ""):
            raise cursor_codec.bad_cursor(
                f"it was made for list_models(scope='{for_scope}', action='{for_action}'): repeat those arguments"
            )
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
    total = len(models)
    models = models[start : start + limit]
    next_cursor = cursor_codec.encode("models", scope, action or "", start + limit) if start + limit < total else None
    if scope == "automl":
        hint = (
            "AutoML-capable marks what the skill bank declares, but tao-mcp does not route AutoML runs yet: "
            "plain training works (submit_job(model=..., action='train')); resolve_image(model=..., action='train') "
            "next"
        )
    else:
        hint = "resolve_image(model='<model>', action='<action>') for the image to confirm with the user"
    if next_cursor:
        hint = f"{hint}; more models: list_models(cursor='{next_cursor}') with the same scope and action"
    return ModelList(
        models=models,
        total=total,
        next_cursor=next_cursor,
        scope=scope,
        action=action,
        source="skill bank" if root else "built-in",
        skill_bank=str(root) if root else None,
        notes=bank_notes(settings),
        next=hint if models else "list_models() without filters shows every model",
    )
