"""list_models: the TAO models a page at a time, with each action's schema and AutoML facts, the backend matrix of
multi-backend models and, for scope automl, why the other models are not AutoML-capable (as the bank's
list_tao_models.py --scope automl reports them)."""

from __future__ import annotations

from collections.abc import Mapping

from tao_mcp import cursor as cursor_codec
from tao_mcp.errors import TaoError
from tao_mcp.models import ActionInfo, ModelInfo, ModelList, UnsupportedModel
from tao_mcp.service.metadata.backends import supported_actions
from tao_mcp.service.metadata.bank import bank_notes
from tao_mcp.service.metadata.models import ModelRecord, model_records

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
    # one entry per model that matches: the model (with its listed actions) or, for scope automl, why not
    entries: list[ModelInfo | UnsupportedModel] = []
    for record in records:
        names = [a for a in record.action_names() if action is None or a == action]
        infos = [_action_info(record, name, with_parameters=scope == "automl") for name in names]
        if scope == "all":
            if infos:
                entries.append(_model_info(record, infos))
            continue
        capable = [i for i in infos if i.automl_capable]
        if capable:
            entries.append(_model_info(record, capable))
        else:
            entries.append(_unsupported(record, infos, action))
    total = len(entries)
    page = entries[start : start + limit]
    models = [e for e in page if isinstance(e, ModelInfo)]
    unsupported = [e for e in page if isinstance(e, UnsupportedModel)]
    next_cursor = cursor_codec.encode("models", scope, action or "", start + limit) if start + limit < total else None
    if scope == "automl":
        hint = (
            "start_automl(model=..., platform=..., metric=..., dry_run=True) reviews an AutoML run of one of these "
            "(the user confirms it, then start_automl(plan_id=...)); resolve_image(model=..., action='train') for "
            "the image"
        )
    else:
        hint = "resolve_image(model='<model>', action='<action>') for the image to confirm with the user"
    if next_cursor:
        hint = f"{hint}; more models: list_models(cursor='{next_cursor}') with the same scope and action"
    return ModelList(
        models=models,
        unsupported=unsupported,
        total=total,
        next_cursor=next_cursor,
        scope=scope,
        action=action,
        source="skill bank" if root else "built-in",
        skill_bank=str(root) if root else None,
        notes=bank_notes(settings),
        next=hint if models else "list_models() without filters shows every model",
    )


def _action_info(record: ModelRecord, name: str, with_parameters: bool) -> ActionInfo:
    declared = name in record.actions
    entry = record.actions[name] if declared and isinstance(record.actions[name], dict) else {}
    packaged, valid = record.schema_state(name)
    reason = record.automl_reason(name)
    return ActionInfo(
        name=name,
        declared=declared,
        mode=str(entry["mode"]) if entry.get("mode") else None,
        spec_template=record.template_path(name) is not None,
        schema_packaged=packaged,
        schema_valid=valid,
        schema_failure=record.schema_failure(name),
        automl_capable=reason is None,
        automl_reason=reason,
        automl_default_parameters=record.automl_parameters(name) if with_parameters and reason is None else [],
    )


def _model_info(record: ModelRecord, infos: list[ActionInfo]) -> ModelInfo:
    defaults = (record.data.get("backend_selection") or {}).get("defaults") or {}
    aliases = record.data.get("aliases") or []
    matrix = supported_actions(record)
    return ModelInfo(
        model=record.skill,
        name=str(record.data["name"]) if record.data.get("name") else None,
        network_arch=record.network_arch,
        aliases=[str(a) for a in ([aliases] if isinstance(aliases, str) else aliases)],
        automl_enabled=record.automl_enabled,
        automl_blocked_reason=str(record.data["automl_blocked_reason"])
        if record.data.get("automl_blocked_reason")
        else None,
        actions=infos,
        backends=list(matrix),
        backend_actions=matrix,
        default_backends={str(k): str(v) for k, v in defaults.items()} if isinstance(defaults, dict) else {},
        source=record.source,
    )


REASON_CHARS = 300  # one unsupported model's reason stays a line, whatever the bank's schema notes say


def _unsupported(record: ModelRecord, infos: list[ActionInfo], action: str | None) -> UnsupportedModel:
    if not record.automl_enabled or record.data.get("automl_blocked_reason"):
        reason = record.automl_reason("train") or ""
    elif action and not infos:
        reason = f"action '{action}' is not declared for this model"
    elif infos:
        reason = "; ".join(f"{i.name}: {record.automl_reason(i.name)}" for i in infos)
    else:
        reason = "no actions are declared"
    if len(reason) > REASON_CHARS:
        reason = reason[: REASON_CHARS - 1] + "…"
    return UnsupportedModel(
        model=record.skill, network_arch=record.network_arch, automl_enabled=record.automl_enabled, reason=reason
    )
