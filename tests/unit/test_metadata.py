"""service/metadata: platforms (built-in, current layout, legacy layout), models, images, action plans."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tao_mcp.entrypoint.builder import build_entrypoint
from tao_mcp.errors import TaoError
from tao_mcp.service.metadata import actions, bank, images, listing, models, overrides, platforms

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
BANK = FIXTURES / "skill_bank"
LEGACY = FIXTURES / "skill_bank_legacy"


def env(bank: Path | str, **extra: str) -> dict[str, str]:
    return {"TAO_SKILL_BANK_PATH": str(bank), **extra}


@pytest.fixture
def nobank(tmp_path: Path) -> dict[str, str]:
    return env(tmp_path / "no-such-bank")


@pytest.fixture
def bank_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "bank"
    shutil.copytree(BANK, dest)
    return dest


def code_of(fn: Any, *args: Any, **kwargs: Any) -> TaoError:
    with pytest.raises(TaoError) as err:
        fn(*args, **kwargs)
    return err.value


# ---------------------------------------------------------------- platforms


def test_builtin_platforms_without_a_bank(nobank: dict[str, str]) -> None:
    records = platforms.platforms(nobank)
    assert records == platforms.builtin_platforms() == platforms.platforms()
    assert {p.name for p in records} == {"slurm", "lepton", "brev", "kubernetes", "docker"}
    for alias, name in (
        ("docker", "docker"),
        ("local-docker", "docker"),
        ("remote-docker", "docker"),
        ("k8s", "kubernetes"),
    ):
        assert platforms.find_platform(alias, nobank).name == name
    assert all(p.source == "built-in" for p in records)
    lepton = platforms.find_platform("lepton", nobank)
    assert [c["name"] for c in lepton.required] == ["LEPTON_WORKSPACE_ID", "LEPTON_AUTH_TOKEN"]


def test_default_bank_path_is_under_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert bank.bank_root({}) is None
    (tmp_path / "tao-skills-external").symlink_to(BANK)
    assert bank.bank_root({}) == tmp_path / "tao-skills-external"
    slurm = platforms.find_platform("slurm", {})
    # the bank lists SLURM_PARTITION as required; the driver runs without it, so it stays optional, listed once
    assert "SLURM_PARTITION" not in [c["name"] for c in slurm.required]
    assert [c["name"] for c in slurm.optional].count("SLURM_PARTITION") == 1
    assert "account charged" in [c.get("description") for c in slurm.optional]  # the bank was read


def test_current_layout_overrides_builtins() -> None:
    settings = env(BANK)
    records = {p.name: p for p in platforms.platforms(settings)}
    assert set(records) == {"slurm", "lepton", "brev", "kubernetes", "docker", "azureml"}
    slurm = records["slurm"]
    # the bank's SLURM_PARTITION is required there, optional for the driver: listed once, as optional
    assert [c["name"] for c in slurm.required] == ["SLURM_USER", "SLURM_HOSTNAME"]
    assert slurm.groups[0]["require_one_of"] == ["SSH_KEY_PATH", "SSH_AUTH_SOCK"]
    assert slurm.optional[0] == {
        "name": "SLURM_ACCOUNT",
        "description": "account charged",
        "only_when": "the cluster charges jobs to an account",
    }
    # built-in optional credentials the bank does not mention are kept; display data stay built-in and the
    # options come from the driver's options model
    assert "NGC_KEY" in [c["name"] for c in slurm.optional] and "partition" in slurm.detail(settings).options
    assert slurm.display_name == "SLURM cluster" and slurm.aliases == ("slurm-lustre", "cluster")
    assert slurm.storage == {"protocol": "lustre", "uri_format": "lustre:///{absolute_path}", "metadata_key": "slurm"}
    assert slurm.resource_defaults["num_gpus"] == 4 and "gres" not in slurm.resource_defaults  # scalars only
    assert slurm.features == ("gpu-scheduling", "failure-analysis")
    assert slurm.source.endswith("tao-run-on-slurm/references/skill_info.yaml")
    # Lepton is not in the current bank: the built-in record stays
    assert records["lepton"].source == "built-in"
    # a folder without skill_info.yaml is credential-free, and says so
    docker = records["docker"]
    assert docker.required == () and docker.groups == () and "credential-free" in docker.description
    assert platforms.find_platform("local-docker", settings) is not None
    assert platforms.find_platform("local-docker", settings).name == "docker"
    assert platforms.find_platform("k8s", settings).name == "kubernetes"
    # a bank-only platform is listed, without a driver
    azure = records["azureml"].summary({})
    assert azure.display_name == "Azure ML" and not azure.available and not azure.ready
    assert azure.missing == ["AZUREML_WORKSPACE"]
    # the detail model accepts the bank's data
    assert records["slurm"].detail({}).resource_defaults["partition"] == "batch"


def test_legacy_layout() -> None:
    settings = env(LEGACY)
    records = {p.name: p for p in platforms.platforms(settings)}
    assert set(records) == {"slurm", "lepton", "brev", "kubernetes", "docker"}
    assert records["slurm"].display_name == "SLURM (legacy manifest)"
    assert records["slurm"].required[0] == {
        "name": "SLURM_USER",
        "description": "cluster login name",
        "how_to_get": "ask the cluster admin",  # from credential_definitions
    }
    assert records["lepton"].required[1]["description"] == "Lepton API token"  # from credential_definitions
    docker = platforms.find_platform("docker", settings)
    assert docker.name == "docker" and docker.display_name == "Docker (legacy manifest)"
    assert (
        platforms.find_platform("local-docker", settings)
        == docker
        == platforms.find_platform("remote-docker", settings)
    )
    assert platforms.find_platform("k8s", settings).display_name == "Kubernetes (legacy manifest)"
    assert all(p.source.endswith("platforms.manifest.json") for p in records.values())
    assert platforms.intake_defaults(settings) == {"long_running_enabled": True, "status_interval_minutes": 10}
    assert platforms.intake_defaults(env(BANK)) == {"long_running_enabled": True, "status_interval_minutes": 5}


@pytest.mark.parametrize("bank", [None, BANK, LEGACY], ids=["built-in", "current", "legacy"])
def test_presence_flags_flip_and_values_never_appear(bank: Path | None, tmp_path: Path) -> None:
    settings = env(bank or tmp_path / "none")
    slurm = platforms.find_platform("slurm", settings)
    required = [c["name"] for c in slurm.required]
    secrets = {name: f"value-of-{name.lower()}-xyz" for name in required}
    unset = slurm.detail(settings)
    assert not unset.ready and set(required) <= set(unset.missing) and "SSH_KEY_PATH or SSH_AUTH_SOCK" in unset.missing
    assert not any(c.present for c in unset.credentials)
    full = {**settings, **secrets, "SSH_KEY_PATH": "/secret/key/path-xyz"}
    detail = slurm.detail(full)
    assert detail.ready and detail.missing == []
    assert all(c.present for c in detail.credentials if c.required)
    assert detail.credential_groups[0].satisfied and detail.credential_groups[0].present == ["SSH_KEY_PATH"]
    text = detail.model_dump_json() + slurm.summary(full).model_dump_json()
    assert not any(v in text for v in [*secrets.values(), "/secret/key/path-xyz"])
    platforms.require_credentials(slurm, full)
    full[required[0]] = ""  # empty counts as missing
    assert slurm.missing(full) == [required[0]]
    assert code_of(platforms.require_credentials, slurm, full).code == "E_MISSING_CREDENTIALS"
    lepton = platforms.find_platform("dgxc", settings)
    assert lepton.missing({"LEPTON_WORKSPACE_ID": "w"}) == ["LEPTON_AUTH_TOKEN"]
    assert lepton.missing({"LEPTON_WORKSPACE_ID": "w", "LEPTON_AUTH_TOKEN": "t"}) == []


def test_unknown_platform_offers_only_platforms_with_a_driver() -> None:
    err = code_of(platforms.find_platform, "mainframe", env(BANK))
    assert err.code == "E_UNKNOWN_PLATFORM" and "slurm" in str(err) and "azureml" not in str(err)
    assert platforms.find_platform("azureml", env(BANK)).name == "azureml"  # still listed by list_platforms


def test_bad_platform_file_is_named(bank_copy: Path) -> None:
    bad = bank_copy / "skills/platform/tao-run-on-slurm/references/skill_info.yaml"
    bad.write_text("required_credentials: [unclosed\n")
    err = code_of(platforms.platforms, env(bank_copy))
    assert err.code == "E_BAD_SKILL_BANK" and str(bad) in str(err) and "YAML" in str(err)
    bad.write_text("credential_groups: [{name: x}]\n")
    err = code_of(platforms.platforms, env(bank_copy))
    assert err.code == "E_BAD_SKILL_BANK" and "require_one_of" in str(err)


def test_bad_legacy_manifest_is_named(tmp_path: Path) -> None:
    manifest = tmp_path / "skills/platform/platforms.manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text('{"schema_version": 3, "platforms": [')
    err = code_of(platforms.platforms, env(tmp_path))
    assert err.code == "E_BAD_SKILL_BANK" and str(manifest) in str(err) and "JSON" in str(err)


@pytest.mark.parametrize("bank", [None, BANK, LEGACY], ids=["built-in", "current", "legacy"])
def test_the_banks_platform_aliases_without_the_legacy_manifest(bank: Path | None, tmp_path: Path) -> None:
    # the legacy manifest named cluster, local-k8s and dgx-cloud; the current layout has no aliases at all
    settings = env(bank or tmp_path / "none")
    for alias, name in (("cluster", "slurm"), ("local-k8s", "kubernetes"), ("dgx-cloud", "lepton"), ("DGXC", "lepton")):
        assert platforms.find_platform(alias, settings).name == name


def test_dataset_examples_preflight_checks_and_how_to_get(tmp_path: Path) -> None:
    builtin = platforms.find_platform("slurm", env(tmp_path / "none")).detail({})
    assert any(e.startswith("lustre:///") for e in builtin.dataset_examples) and builtin.preflight_checks
    how = {c.name: c.how_to_get for c in builtin.credentials}
    assert how["SLURM_HOSTNAME"] and "login host" in how["SLURM_HOSTNAME"]
    assert "BatchMode" in (builtin.credential_groups[0].how_to_get or "")
    # the current layout says nothing about them: the built-in hints stay
    current = platforms.find_platform("slurm", env(BANK)).detail({})
    assert current.dataset_examples == builtin.dataset_examples and current.preflight_checks
    assert {c.name: c.how_to_get for c in current.credentials}["SLURM_USER"] == how["SLURM_USER"]
    # the legacy manifest's own lists and definitions win
    legacy = platforms.find_platform("cluster", env(LEGACY)).detail({})
    assert legacy.dataset_examples == ["lustre:///lustre/datasets/coco"]
    assert legacy.preflight_checks == ["ssh $SLURM_USER@$SLURM_HOSTNAME true"]
    assert {c.name: c.how_to_get for c in legacy.credentials}["SLURM_HOSTNAME"] == "ask the cluster admin"
    lepton = platforms.find_platform("dgx-cloud", env(LEGACY)).detail({})
    assert {c.name: c.how_to_get for c in lepton.credentials}[
        "LEPTON_AUTH_TOKEN"
    ] == "DGX Cloud Lepton console > Tokens"


def test_five_platforms_with_aliases() -> None:
    names = {p.name for p in platforms.platforms()}
    assert names == {"slurm", "lepton", "brev", "kubernetes", "docker"}
    assert platforms.find_platform("k8s").name == "kubernetes"
    assert platforms.find_platform("Local-Docker").name == "docker"


def test_unknown_platform_lists_choices() -> None:
    with pytest.raises(TaoError) as err:
        platforms.find_platform("mainframe")
    assert err.value.code == "E_UNKNOWN_PLATFORM" and "slurm" in str(err.value)


def test_presence_rule_groups_and_empty_values() -> None:
    slurm = platforms.find_platform("slurm")
    env = {"SLURM_USER": "u", "SLURM_HOSTNAME": "", "SSH_AUTH_SOCK": "/run/agent"}
    assert slurm.missing(env) == ["SLURM_HOSTNAME"]
    detail = slurm.detail(env)
    assert detail.credential_groups[0].satisfied and detail.credential_groups[0].present == ["SSH_AUTH_SOCK"]
    assert '"u"' not in detail.model_dump_json() and "/run/agent" not in detail.model_dump_json()
    with pytest.raises(TaoError) as err:
        platforms.require_credentials(slurm, env)
    assert err.value.code == "E_MISSING_CREDENTIALS" and "SLURM_HOSTNAME" in str(err.value)


# ---------------------------------------------------------------- list_models

FIXTURE_MODELS = [
    "classification_pyt",
    "cosmos_reason",
    "dino",
    "mask2former",
    "nvdinov2",
    "ocdnet",
    "rtdetr",
    "segformer",
    "visual_changenet",
]


def test_list_models_all() -> None:
    result = listing.list_models(env(BANK))
    assert result.source == "skill bank" and result.skill_bank == str(BANK) and result.scope == "all"
    by_model = {m.model: m for m in result.models}
    assert list(by_model) == FIXTURE_MODELS  # _shared (no skill_info) and the deploy variant file are not models
    dino = by_model["dino"]
    assert dino.network_arch == "dino" and dino.name == "tao-train-dino" and dino.aliases == ["detr", "DINO-DETR"]
    by_action = {a.name: a for a in dino.actions}
    # gen_trt_engine: listed by the bank-wide schemas.manifest.json only (no command: submit_job cannot run it)
    assert list(by_action) == ["train", "evaluate", "export", "gen_trt_engine"]
    assert by_action["export"].declared and not by_action["gen_trt_engine"].declared
    assert by_action["gen_trt_engine"].automl_reason == "schemas/gen_trt_engine.schema.json is not packaged"
    # distill: listed by the model's schemas/manifest.json only
    assert [(a.name, a.declared) for a in by_model["nvdinov2"].actions] == [("train", True), ("distill", False)]
    assert by_action["train"].schema_packaged and by_action["train"].schema_valid and by_action["train"].automl_capable
    assert by_action["train"].spec_template and not by_action["evaluate"].spec_template
    assert by_action["evaluate"].schema_failure == "evaluate schema not generated yet"  # per-model manifest
    assert not by_action["evaluate"].automl_capable
    seg = {a.name: a for a in by_model["segformer"].actions}["train"]
    assert seg.schema_packaged and not seg.schema_valid and not seg.automl_capable
    ocd = {a.name: a for a in by_model["ocdnet"].actions}
    assert not ocd["train"].schema_packaged and "schema generation failed" in (ocd["train"].schema_failure or "")
    assert ocd["convert"].mode == "args" and ocd["shell"].mode == "passthrough"
    assert by_model["visual_changenet"].automl_enabled is False
    assert by_model["mask2former"].automl_blocked_reason and by_model["mask2former"].automl_enabled
    assert by_model["rtdetr"].backends == ["pytorch", "tensorrt"]
    assert by_model["rtdetr"].backend_actions == {
        "pytorch": ["train", "evaluate", "inference"],
        "tensorrt": ["evaluate", "inference"],
    }
    # a contract without an action list supports nothing; export exists only in the framework contract
    assert by_model["cosmos_reason"].backend_actions == {
        "cosmos-framework": ["train", "evaluate", "export"],
        "cosmos-rl": ["train"],
        "source-build": ["train"],
        "legacy": [],
    }
    assert by_model["rtdetr"].default_backends == {"train": "pytorch", "evaluate": "pytorch", "inference": "tensorrt"}
    assert by_model["dino"].backends == [] and result.next.startswith("resolve_image(")


def test_list_models_automl_scope_keeps_capable_pairs() -> None:
    result = listing.list_models(env(BANK), scope="automl")
    pairs = {(m.model, a.name) for m in result.models for a in m.actions}
    assert pairs == {
        ("classification_pyt", "train"),
        ("cosmos_reason", "train"),
        ("dino", "train"),
        ("nvdinov2", "train"),
        ("nvdinov2", "distill"),  # a schema-manifest-only action with a valid schema
        ("rtdetr", "train"),
    }
    assert all(a.automl_capable for m in result.models for a in m.actions)
    # the others, with the reason (as list_tao_models.py --scope automl gives it)
    why = {u.model: u.reason for u in result.unsupported}
    assert why == {
        "visual_changenet": "automl_enabled is false in model metadata",
        "mask2former": "AutoML search space is not validated for panoptic training yet",
        "segformer": "train: schemas/train.schema.json is invalid JSON",
        "ocdnet": "train: schemas/train.schema.json is not packaged; convert: schemas/convert.schema.json is not "
        "packaged; shell: schemas/shell.schema.json is not packaged",
    }
    assert result.total == len(FIXTURE_MODELS) == len(result.models) + len(result.unsupported)
    # automl_default_parameters: the model's schemas/manifest.json entry, else the schema file
    params = {(m.model, a.name): a.automl_default_parameters for m in result.models for a in m.actions}
    assert params[("nvdinov2", "distill")] == ["distill.temperature"]
    assert params[("nvdinov2", "train")] == ["train.optim.lr", "model.backbone.drop_path_rate"]
    assert params[("classification_pyt", "train")] == ["train.optim.lr", "train.num_epochs"]
    assert params[("dino", "train")] == []
    assert all(a.automl_default_parameters == [] for m in listing.list_models(env(BANK)).models for a in m.actions)
    assert "AutoML" in result.next
    assert listing.list_models(env(BANK), scope="automl", action="export").models == []


def test_list_models_action_filter_and_bad_scope() -> None:
    result = listing.list_models(env(BANK), action="export")
    assert {m.model for m in result.models} == {"classification_pyt", "dino"}
    assert all([a.name for a in m.actions] == ["export"] for m in result.models)
    assert code_of(listing.list_models, env(BANK), scope="some").code == "E_BAD_INPUT"


def test_builtin_models_when_no_bank(nobank: dict[str, str]) -> None:
    result = listing.list_models(nobank)
    assert result.source == "built-in" and result.skill_bank is None
    assert {"dino", "classification_pyt"} <= {m.model for m in result.models}
    assert "is not a directory" in result.notes[0]
    assert listing.list_models(nobank, scope="automl").models == []  # no schemas ship with the package
    # a bank without models (the legacy fixture) falls back to the built-in list too
    assert listing.list_models(env(LEGACY)).source == "built-in"
    image = images.resolve_image(nobank, "dino")
    assert image.resolved_from == "absolute" and image.image and image.image.startswith("nvcr.io/nvidia/tao/")


def test_builtin_models_are_well_formed(nobank: dict[str, str]) -> None:
    for model in listing.list_models(nobank).models:
        for action in model.actions:
            plan = actions.action_plan(nobank, model.model, action.name, gpu_count=1)
            assert plan.mode == "config" and "{config_path}" in plan.command and plan.image


# ---------------------------------------------------------------- resolve_image

PYT = "nvcr.io/nvidia/tao/tao-toolkit:7.1.0-pyt"
DEPLOY = "nvcr.io/nvidia/tao/tao-toolkit:7.1.0-deploy"
CASES = [
    # model, action, image, resolved_from, source, backend, backend_reason
    ("dino", "train", PYT, "versions.yaml", "container_image", None, None),
    ("dino", "evaluate", PYT, "versions.yaml", "container_image", None, None),
    ("dino", "export", PYT, "versions.yaml", "container_image", None, None),
    ("classification_pyt", "train", PYT, "absolute", "container_image", None, None),
    ("classification_pyt", "inference", PYT + "-inference", "absolute", "actions.inference.image", None, None),
    ("classification_pyt", "export", DEPLOY, "absolute", "actions.export.container_image", None, None),
    (
        "classification_pyt",
        "gen_trt_engine",
        DEPLOY,
        "versions.yaml",
        "actions.gen_trt_engine.container_image",
        None,
        None,
    ),
    ("rtdetr", "train", PYT, "absolute", "container_image", "pytorch", "backend_selection.defaults.train"),
    ("rtdetr", "evaluate", PYT, "absolute", "container_image", "pytorch", "backend_selection.defaults.evaluate"),
    (
        "rtdetr",
        "inference",
        DEPLOY,
        "absolute",
        "backend_contracts.tensorrt.container_image",
        "tensorrt",
        "backend_selection.defaults.inference",
    ),
    ("visual_changenet", "train", PYT, "absolute", "container_image", None, None),
    ("ocdnet", "train", None, "unresolved_key", "container_image", None, None),
    ("ocdnet", "convert", None, "unresolved_key", "container_image", None, None),
    (
        "ocdnet",
        "shell",
        "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04",
        "absolute",
        "actions.shell.container_image",
        None,
        None,
    ),
    ("segformer", "train", PYT, "absolute", "container_image", None, None),
    ("mask2former", "train", PYT + "-m2f", "absolute", "image", None, None),
]


def test_cases_cover_every_fixture_model_and_action() -> None:
    listed = {(m.model, a.name) for m in listing.list_models(env(BANK)).models for a in m.actions if a.declared}
    listed -= {("cosmos_reason", "train"), ("cosmos_reason", "evaluate"), ("nvdinov2", "train")}  # see below
    assert listed == {(c[0], c[1]) for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_resolve_image(case: tuple[Any, ...]) -> None:
    model, action, image, resolved_from, source, backend, reason = case
    result = images.resolve_image(env(BANK), model, action)
    assert (result.image, result.resolved_from, result.source) == (image, resolved_from, source)
    assert (result.backend, result.backend_reason) == (backend, reason)
    assert result.model == model and result.action == action and result.network_arch == model
    assert result.confirmation_required is True and result.override_key == "image"
    assert result.skill_bank == str(BANK)
    assert f"submit_job(model='{model}', action='{action}'" in result.next and "dry_run=True" in result.next
    if resolved_from == "versions.yaml":
        assert result.declared_image in ("tao_toolkit.pyt", "tao_toolkit.deploy")
    if image is None:
        assert result.declared_image == "tao_toolkit.tf2" and "image=<uri>" in result.next


def test_resolve_image_backends() -> None:
    settings = env(BANK)
    chosen = images.resolve_image(settings, "rtdetr", "evaluate", backend="tensorrt")
    assert chosen.backend == "tensorrt" and chosen.backend_reason == "requested"
    assert (
        chosen.image == DEPLOY + "-eval"
        and chosen.source == "backend_contracts.tensorrt.actions.evaluate.container_image"
    )
    assert chosen.backends == ["pytorch", "tensorrt"] and "backend='tensorrt'" in chosen.next
    assert images.resolve_image(settings, "rtdetr", "inference", backend="pytorch").image == PYT
    err = code_of(images.resolve_image, settings, "rtdetr", "train", backend="tensorrt")
    assert err.code == "E_BACKEND_UNSUPPORTED" and "TensorRT engines cannot be trained" in str(err)
    assert "backend='pytorch'" in str(err)
    err = code_of(images.resolve_image, settings, "rtdetr", "train", backend="jax")
    assert err.code == "E_BACKEND_UNSUPPORTED" and "pytorch, tensorrt" in str(err)
    err = code_of(images.resolve_image, settings, "dino", "train", backend="pytorch")
    assert err.code == "E_BACKEND_UNSUPPORTED" and "single implementation" in str(err)


def test_backend_auto_without_defaults_uses_a_supporting_backend(bank_copy: Path) -> None:
    info = bank_copy / "skills/models/rtdetr/references/skill_info.yaml"
    info.write_text(
        info.read_text().replace(
            "  defaults: {train: pytorch, evaluate: pytorch, inference: tensorrt}", "  defaults: {}"
        )
    )
    result = images.resolve_image(env(bank_copy), "rtdetr", "train")
    assert result.backend == "pytorch" and result.backend_reason == "the only backend supporting train"
    result = images.resolve_image(env(bank_copy), "rtdetr", "evaluate")
    assert result.backend == "pytorch" and result.backend_reason == "first backend supporting evaluate"


def test_model_lookup() -> None:
    settings = env(BANK)
    assert models.find_model(settings, "dino").skill == "dino"
    assert models.find_model(settings, "dino-detr").skill == "dino"  # alias, case-insensitive
    assert models.find_model(settings, "NVIDIA/dino-fan-small").skill == "dino"  # huggingface_model_ids
    assert models.find_model(settings, "tao-train-rtdetr").skill == "rtdetr"  # name
    assert models.find_model(settings, "Classification").skill == "classification_pyt"  # model
    assert models.find_model(settings, "RT-DETR").skill == "rtdetr"
    assert images.resolve_image(settings, "Visual_ChangeNet").model == "visual_changenet"


def test_model_errors() -> None:
    settings = env(BANK)
    err = code_of(images.resolve_image, settings, "yolo_v9")
    assert err.code == "E_UNKNOWN_MODEL" and "dino" in err.fix and "list_models" in err.fix
    err = code_of(images.resolve_image, settings, "detr")
    assert err.code == "E_AMBIGUOUS_MODEL" and "dino" in err.cause and "rtdetr" in err.cause
    err = code_of(images.resolve_image, settings, "dino", "distill")
    assert err.code == "E_UNKNOWN_ACTION" and err.fix == "use one of: train, evaluate, export"
    assert code_of(images.resolve_image, settings, "  ").code == "E_UNKNOWN_MODEL"
    # the deploy variant record is not a model
    assert code_of(images.resolve_image, settings, "tao-deploy-classification").code == "E_UNKNOWN_MODEL"


def test_bad_model_files_are_named(bank_copy: Path) -> None:
    settings = env(bank_copy)
    info = bank_copy / "skills/models/dino/references/skill_info.yaml"
    original = info.read_text()
    info.write_text(original + "\n  broken: [\n")
    err = code_of(listing.list_models, settings)
    assert err.code == "E_BAD_SKILL_BANK" and str(info) in str(err)
    info.write_text("- a list\n")
    assert "not a mapping" in str(code_of(images.resolve_image, settings, "dino"))
    info.write_text(original)
    (bank_copy / "versions.yaml").write_text("images: {tao_toolkit: {pyt: [\n")
    err = code_of(images.resolve_image, settings, "dino")
    assert err.code == "E_BAD_SKILL_BANK" and "versions.yaml" in str(err)
    (bank_copy / "skills/models/rtdetr/references/backends/pytorch.yaml").unlink()
    err = code_of(images.resolve_image, settings, "rtdetr", "train")
    assert err.code == "E_BAD_SKILL_BANK" and "references/backends/pytorch.yaml" in str(err)


def test_edits_are_seen_without_restart(bank_copy: Path) -> None:
    settings = env(bank_copy)
    assert images.resolve_image(settings, "segformer").image == PYT
    info = bank_copy / "skills/models/segformer/references/skill_info.yaml"
    info.write_text(info.read_text().replace(PYT, "registry.example.com/tao/segformer:dev-build-2"))
    assert images.resolve_image(settings, "segformer").image == "registry.example.com/tao/segformer:dev-build-2"


# ---------------------------------------------------------------- the action plan


def test_action_plan_with_template_and_dotted_overrides() -> None:
    settings = env(BANK)
    plan = actions.action_plan(
        settings,
        "DINO-DETR",
        "train",
        specs={"train": {"num_epochs": 3}, "dataset": {"batch_size": 8}},
        spec_overrides={
            "dataset.train_data_sources[0].image_dir": "s3://bucket/coco/train2017",
            "dataset.train_data_sources[0].json_file": "s3://bucket/coco/annotations/train.json",
            "dataset.train_data_sources[1]": {
                "image_dir": "s3://bucket/extra/images",
                "json_file": "s3://bucket/extra/a.json",
            },
            "train.optim.lr": 0.0001,
            "train": {"optim.lr_steps": [8, 10]},
        },
        gpu_count=8,
    )
    assert (plan.model, plan.network_arch, plan.action, plan.backend) == ("dino", "dino", "train", None)
    assert plan.command == "dino train -e {config_path}" and plan.mode == "config" and plan.config_format == "yaml"
    assert plan.inputs == {
        "dataset.train_data_sources[0].image_dir": {"type": "folder"},
        "dataset.train_data_sources[0].json_file": {"type": "file"},
        "train.pretrained_model_path": {"type": "file", "optional": True},
    }
    assert plan.outputs == {"results_dir": {"type": "folder"}} and plan.upload_excludes == ["inputs/"]
    assert plan.template and plan.template.endswith("spec_template_train.yaml")
    assert plan.gpu_spec_key == "train.num_gpus" and plan.warnings == ()
    specs = plan.specs
    assert specs is not None
    assert specs["train"] == {
        "num_gpus": 8,
        "num_epochs": 3,
        "pretrained_model_path": None,
        "optim": {"lr": 0.0001, "lr_steps": [8, 10]},
    }
    assert specs["dataset"]["batch_size"] == 8 and specs["dataset"]["num_classes"] == 91  # template kept
    assert specs["dataset"]["train_data_sources"] == [
        {"image_dir": "s3://bucket/coco/train2017", "json_file": "s3://bucket/coco/annotations/train.json"},
        {"image_dir": "s3://bucket/extra/images", "json_file": "s3://bucket/extra/a.json"},
    ]
    assert specs["model"] == {"backbone": "fan_small", "num_feature_levels": 4}
    assert (plan.image, plan.image_source, plan.image_resolution.resolved_from) == (PYT, "resolved", "versions.yaml")
    # the packaged template is not modified by a plan
    again = actions.action_plan(settings, "dino", "train")
    assert again.specs is not None and again.specs["train"]["num_epochs"] == 12
    assert again.specs["dataset"]["train_data_sources"][0]["image_dir"] == "/data/train/images"
    # the plan feeds build_entrypoint unchanged
    built = build_entrypoint(
        job_id="job-1", settings={"ACCESS_KEY": "a", "SECRET_KEY": "b"}, **plan.entrypoint_kwargs()
    )
    assert built.mode == "config"
    assert set(built.details["downloads"]) == {"s3://bucket/coco/train2017", "s3://bucket/coco/annotations/train.json"}
    assert built.spec is not None and built.spec["train"]["num_gpus"] == 8


def test_action_plan_gpu_count_and_image_override() -> None:
    settings = env(BANK)
    plan = actions.action_plan(
        settings, "dino", "train", spec_overrides={"train.num_gpus": 2}, gpu_count=4, image="my.registry/tao:custom"
    )
    assert plan.specs is not None and plan.specs["train"]["num_gpus"] == 4
    assert "gpu_count=4 replaces it" in plan.warnings[0]
    assert plan.image == "my.registry/tao:custom" and plan.image_source == "override"
    assert plan.image_resolution.image == PYT
    evaluate = actions.action_plan(
        settings, "dino", "evaluate", specs={"evaluate": {"checkpoint": "s3://b/m.pth"}}, gpu_count=2
    )
    assert evaluate.specs == {"evaluate": {"checkpoint": "s3://b/m.pth", "num_gpus": 2}}  # the action's gpu_spec_key
    assert any("no spec template" in w for w in actions.action_plan(settings, "dino", "evaluate").warnings)
    export = actions.action_plan(
        settings, "dino", "export", specs={"export": {"checkpoint": "s3://b/m.pth"}}, gpu_count=1
    )
    assert export.specs == {"export": {"checkpoint": "s3://b/m.pth"}} and export.gpu_spec_key is None
    untouched = actions.action_plan(settings, "dino", "train")
    assert untouched.specs is not None and untouched.specs["train"]["num_gpus"] == 1  # no gpu_count: template value


def test_action_plan_modes_and_backends() -> None:
    settings = env(BANK)
    args = actions.action_plan(
        settings,
        "ocdnet",
        "convert",
        specs={"input_dir": "s3://b/in"},
        spec_overrides={"verbose": True},
        gpu_count=2,
        image="x.io/ocd:1",
    )
    assert (
        args.mode == "args"
        and args.specs is None
        and args.args == {"input_dir": "s3://b/in", "verbose": True, "gpus": 2}
    )
    kwargs = args.entrypoint_kwargs()
    assert kwargs["args"] == args.args and "specs" not in kwargs
    shell = actions.action_plan(settings, "ocdnet", "shell")
    assert shell.mode == "passthrough" and shell.command == "nvidia-smi" and shell.specs is None and shell.args is None
    err = code_of(actions.action_plan, settings, "ocdnet", "shell", specs={"a": 1})
    assert err.code == "E_BAD_INPUT" and "passthrough" in str(err)
    trt = actions.action_plan(settings, "rtdetr", "inference")
    assert trt.backend == "tensorrt" and trt.command == "rtdetr-trt inference -e {config_path}"
    assert trt.inputs == {"inference.trt_engine": {"type": "file"}} and trt.image == DEPLOY
    torch = actions.action_plan(settings, "rtdetr", "inference", backend="pytorch")
    assert torch.command == "rtdetr inference -e {config_path}" and torch.image == PYT
    assert actions.action_plan(settings, "segformer", "train").config_format == "toml"


def test_action_plan_errors() -> None:
    settings = env(BANK)
    err = code_of(actions.action_plan, settings, "ocdnet", "train")
    assert err.code == "E_NO_IMAGE" and "tao_toolkit.tf2" in str(err) and "image=<uri>" in str(err)
    assert actions.action_plan(settings, "ocdnet", "train", image="x.io/ocd:1").image == "x.io/ocd:1"
    err = code_of(
        actions.action_plan,
        settings,
        "dino",
        "train",
        spec_overrides={"dataset.train_data_sources[5].image_dir": "s3://b/x"},
    )
    assert err.code == "E_BAD_INPUT" and "past the end" in str(err)
    err = code_of(actions.action_plan, settings, "dino", "train", spec_overrides={"model.backbone.name": "x"})
    assert err.code == "E_BAD_INPUT" and "not a mapping" in str(err)
    err = code_of(actions.action_plan, settings, "dino", "train", spec_overrides={"a..b": 1})
    assert err.code == "E_BAD_INPUT" and "dotted spec path" in str(err)
    assert code_of(actions.action_plan, settings, "dino", "train", gpu_count=-1).code == "E_BAD_INPUT"
    assert code_of(actions.action_plan, settings, "dino", "train", specs=["x"]).code == "E_BAD_INPUT"
    assert code_of(actions.action_plan, settings, "dino", "infer").code == "E_UNKNOWN_ACTION"
    assert code_of(actions.action_plan, settings, "rtdetr", "train", backend="tensorrt").code == "E_BACKEND_UNSUPPORTED"
    # flat dotted keys in specs (not spec_overrides) are left to the entrypoint builder, which explains them
    plan = actions.action_plan(settings, "dino", "train", specs={"train.num_epochs": 3})
    err = code_of(build_entrypoint, job_id="j", settings={}, **plan.entrypoint_kwargs())
    assert err.code == "E_FLAT_SPEC_KEY"


def test_apply_overrides_helpers() -> None:
    tree = {"a": {"b": [1, {"c": 2}]}}
    out = overrides.apply_overrides(tree, {"a.b[1].c": 3, "a.b[2]": 4, "x.y[0].z": "new", "a": {"d": {"e.f": 5}}})
    assert out == {"a": {"b": [1, {"c": 3}, 4], "d": {"e": {"f": 5}}}, "x": {"y": [{"z": "new"}]}}
    assert tree == {"a": {"b": [1, {"c": 2}]}}
    assert overrides.merge_nested({"a": {"b": 1, "c": [1]}}, {"a": {"c": [2]}, "d": 1}) == {
        "a": {"b": 1, "c": [2]},
        "d": 1,
    }


# ---------------------------------------------------------------- multi-backend models (the bank's Cosmos layout)

COSMOS_FRAMEWORK = "nvcr.io/nvidia/cosmos/cosmos-framework:1.2.0"
COSMOS_RL = "nvcr.io/nvidia/cosmos/cosmos-rl:0.3.1"


def test_backend_aliases_and_workload_hint() -> None:
    settings = env(BANK)
    auto = images.resolve_image(settings, "cosmos_reason", "train")
    assert (auto.backend, auto.backend_reason, auto.image) == (
        "cosmos-framework",
        "backend_selection.defaults.train",
        COSMOS_FRAMEWORK,
    )
    assert auto.backend_contract == "references/backends/framework.yaml"
    for alias, name in (("rl", "cosmos-rl"), ("COSMOS_RL", "cosmos-rl"), ("framework", "cosmos-framework")):
        assert images.resolve_image(settings, "cosmos_reason", "train", backend=alias).backend == name
    for workload in ("automl", "HPO"):
        tuned = images.resolve_image(settings, "cosmos_reason", "train", workload=workload)
        assert tuned.backend == "cosmos-rl" and tuned.image == COSMOS_RL and tuned.resolved_from == "versions.yaml"
        assert workload.lower() in (tuned.backend_reason or "")
    # an explicit backend wins over the hint; an unrelated hint keeps the default
    assert images.resolve_image(settings, "cosmos_reason", "train", "framework", "automl").backend == "cosmos-framework"
    assert images.resolve_image(settings, "cosmos_reason", "evaluate", workload="wts").backend == "cosmos-framework"
    err = code_of(images.resolve_image, settings, "cosmos_reason", "evaluate", workload="hpo")
    assert err.code == "E_BACKEND_UNSUPPORTED" and "Cosmos-RL evaluates inside training" in err.cause
    # a model with a single implementation ignores the hint
    assert images.resolve_image(settings, "dino", "train", workload="automl").backend is None


def test_export_through_the_framework_contract_and_unsupported_backends() -> None:
    settings = env(BANK)
    export = images.resolve_image(settings, "cosmos_reason", "export")
    assert export.backend == "cosmos-framework" and export.image == COSMOS_FRAMEWORK
    plan = actions.action_plan(settings, "cosmos_reason", "export", gpu_count=1)
    assert plan.command == "cosmos-framework export -e {config_path}" and plan.backend == "cosmos-framework"
    assert plan.outputs == {"export.output_dir": {"type": "folder"}} and plan.image == COSMOS_FRAMEWORK
    err = code_of(images.resolve_image, settings, "cosmos_reason", "export", backend="rl")
    assert err.code == "E_BACKEND_UNSUPPORTED" and "does not list export" in err.cause
    assert "backend='cosmos-framework'" in err.fix
    err = code_of(images.resolve_image, settings, "cosmos_reason", "train", backend="legacy")
    assert err.code == "E_BACKEND_UNSUPPORTED" and "lists no actions" in err.cause and "supported: true" in err.cause
    assert code_of(images.resolve_image, settings, "cosmos_reason", "distill").code == "E_UNKNOWN_ACTION"


def test_repository_derived_image_policy() -> None:
    settings = env(BANK)
    built = images.resolve_image(settings, "cosmos_reason", "train", backend="source-build")
    assert built.image is None and built.declared_image is None and built.build_required
    assert built.resolved_from == "repository_derived" and built.override_key == "image_tag"
    assert "clean repository checkout" in built.next and "image=<uri>" in built.next
    err = code_of(actions.action_plan, settings, "cosmos_reason", "train", backend="source-build")
    assert err.code == "E_NO_IMAGE"
    plan = actions.action_plan(settings, "cosmos_reason", "train", backend="source-build", image="reg.example/cr:abc")
    assert plan.image == "reg.example/cr:abc" and plan.image_source == "override"


def test_schema_manifest_only_actions_do_not_run() -> None:
    settings = env(BANK)
    for model, action in (("dino", "gen_trt_engine"), ("nvdinov2", "distill")):
        err = code_of(images.resolve_image, settings, model, action)
        assert err.code == "E_UNKNOWN_ACTION" and "schema manifests" in err.cause and "submit_job(command=" in err.fix
        assert code_of(actions.action_plan, settings, model, action).code == "E_UNKNOWN_ACTION"
