"""tao-mcp's catalog agrees with the skill bank's own scripts (list_tao_models.py, resolve_tao_image.py) on the
fixture bank, model by model: the scripts run live when the bank holds them, else their recorded answers stand in
(fixtures/bank_oracle.py says how they were recorded)."""

from __future__ import annotations

from typing import Any

import pytest

from fixtures.bank_oracle import BANK, RESOLVE_CASES, case_id, oracle, reason_parts
from tao_mcp.errors import TaoError
from tao_mcp.service.metadata import images, listing

SETTINGS = {"TAO_SKILL_BANK_PATH": str(BANK)}
ANSWERS, WHERE = oracle()


def test_oracle_covers_every_fixture_model() -> None:
    listed = {m.model for m in listing.list_models(SETTINGS, limit=100).models}
    assert set(ANSWERS["models"]) == listed, WHERE


@pytest.mark.parametrize("model", sorted(ANSWERS["models"]))
def test_models_and_actions_match_list_tao_models(model: str) -> None:
    [info] = [m for m in listing.list_models(SETTINGS, limit=100).models if m.model == model]
    ours = {
        "network_arch": info.network_arch,
        "actions": sorted(a.name for a in info.actions),
        "automl_enabled": info.automl_enabled,
        "backend_actions": {b: sorted(a) for b, a in info.backend_actions.items()},
    }
    assert ours == ANSWERS["models"][model], WHERE


@pytest.mark.parametrize("action", sorted(ANSWERS["automl"]))
def test_automl_support_matches_list_tao_models(action: str) -> None:
    result = listing.list_models(SETTINGS, scope="automl", action=None if action == "-" else action, limit=100)
    ours = {
        "supported": {m.model: {a.name: a.automl_default_parameters for a in m.actions} for m in result.models},
        "unsupported": {u.model: reason_parts(u.reason) for u in result.unsupported},
    }
    expected = ANSWERS["automl"][action]
    for model in sorted(set(ours["supported"]) | set(expected["supported"])):
        assert ours["supported"].get(model) == expected["supported"].get(model), (model, WHERE)
    for model in sorted(set(ours["unsupported"]) | set(expected["unsupported"])):
        assert ours["unsupported"].get(model) == expected["unsupported"].get(model), (model, WHERE)


def _ours(model: str, action: str, backend: str, workload: str) -> dict[str, Any]:
    try:
        r = images.resolve_image(SETTINGS, model, action, backend, workload)
    except TaoError:
        return {"error": True}
    return {
        # for an unknown versions.yaml key the script repeats the key as the image; tao-mcp says null + the key
        "image": r.declared_image if r.resolved_from == "unresolved_key" else r.image,
        "resolved_from": r.resolved_from,
        "backend": r.backend,
        "build_required": r.build_required,
        "override_key": r.override_key,
    }


@pytest.mark.parametrize("case", RESOLVE_CASES, ids=[case_id(c) for c in RESOLVE_CASES])
def test_resolve_image_matches_resolve_tao_image(case: tuple[str, str, str, str]) -> None:
    ours, expected = _ours(*case), dict(ANSWERS["images"][case_id(case)])
    if not expected.get("error") and expected["backend"] is None and ours["backend"] is not None:
        # the script names the backend only when its contract supplies the image; tao-mcp always names it
        assert case[0] in {"rtdetr", "cosmos_reason"}
        expected["backend"] = ours["backend"]
    assert ours == expected, WHERE
