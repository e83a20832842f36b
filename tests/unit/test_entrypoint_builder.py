"""The entrypoint builder (server side) and the runner's pure parts: modes, validation, quoting, secrets, size."""

from __future__ import annotations

import ast
import base64
import dataclasses
import json
import math
import shlex
import sys
import tomllib
import zlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tao_mcp.entrypoint import runner
from tao_mcp.entrypoint.builder import build_entrypoint, runner_blob, shipped_runner
from tao_mcp.errors import TaoError

RUNNER = Path(runner.__file__)
CANARIES = {
    "ACCESS_KEY": "canary-access-7d1e2f",
    "SECRET_KEY": "canary-secret-93ab0c",
    "NGC_KEY": "canary-ngc-55aa11",
    "HF_TOKEN": "canary-hf-66bb22",
}
S3 = {"S3_BUCKET_NAME": "bkt", "S3_ENDPOINT_URL": "http://127.0.0.1:7480", "CLOUD_REGION": "eu-west-1", **CANARIES}


def build(**kw: Any) -> Any:
    kw.setdefault("job_id", "job123")
    kw.setdefault("settings", S3)
    return build_entrypoint(**kw)


def refused(code: str, **kw: Any) -> str:
    with pytest.raises(TaoError) as info:
        build(**kw)
    assert info.value.code == code, str(info.value)
    text = str(info.value)
    assert "Fix: " in text
    for value in CANARIES.values():
        assert value not in text
    return text


def job_of(plan: Any) -> dict[str, Any]:
    return json.loads(zlib.decompress(base64.b64decode(plan.runner_job)))


# ---------------------------------------------------------------- modes


def test_modes_are_inferred() -> None:
    assert build(command="echo hi").mode == "plain"
    assert build(command="train -e {config_path}", specs={"a": 1}).mode == "config"
    assert build(command="train", args={"a": 1}).mode == "args"
    assert build(command="train", inputs={"/data": "s3://bkt/d/"}).mode == "passthrough"
    assert build(command="echo {job_id}").mode == "passthrough"  # a placeholder needs the runner
    refused("E_BAD_INPUT", command="x", specs={"a": 1}, args={"b": 2})


def test_plain_mode_leaves_the_command_alone() -> None:
    command = """echo "${HOME}" '{}' $(date) {x}"""
    plan = build(command=command)
    assert plan.command == command and plan.env == {} and plan.secret_env == {} and plan.results_location is None


def test_the_command_survives_braces_dollars_and_quotes() -> None:
    command = """python3 -c "print('{}'.format(1))" && echo "${HOME}" '$PATH' {job_id} "{results_dir}" """
    plan = build(command=command, outputs=[])
    assert job_of(plan)["command"] == command
    assert plan.details["command"] == command.replace("{job_id}", "job123")
    assert shlex.split(plan.command)[0].startswith("TAO_PY=")


# ---------------------------------------------------------------- specs must be nested


@pytest.mark.parametrize(
    ("specs", "nested"),
    [
        ({"train.output_dir": "/x"}, '{"train": {"output_dir": "/x"}}'),
        ({"train": {"optim.lr": 0.1}}, '{"optim": {"lr": 0.1}}'),
        ({"dataset.sources[0].image_dir": "s3://b/i"}, '{"dataset": {"sources": [{"image_dir": "s3://b/i"}]}}'),
    ],
)
def test_flat_dotted_spec_keys_are_refused_with_the_nested_form(specs: dict[str, Any], nested: str) -> None:
    text = refused("E_FLAT_SPEC_KEY", command="t -e {config_path}", specs=specs)
    assert nested in text and "nested" in text


# ---------------------------------------------------------------- payload validation


@pytest.mark.parametrize(
    ("kw", "where"),
    [
        ({"specs": {"train": {"lr": math.nan}}}, "specs.train.lr"),
        ({"specs": {"train": {"lrs": [0.1, math.inf]}}}, "specs.train.lrs[1]"),
        ({"args": {"lr": -math.inf}}, "args.lr"),
        ({"specs": {"a": {1: "x"}}}, "specs.a"),
        ({"specs": {"a": [{"b": {1, 2}}]}}, "specs.a[0].b"),
        ({"args": {"weird key": b"bytes"}}, 'args["weird key"]'),
        ({"specs": {"a": object()}}, "specs.a"),
    ],
)
def test_payloads_are_validated_with_the_location(kw: dict[str, Any], where: str) -> None:
    text = refused("E_BAD_INPUT", command="t {config_path}", **kw)
    assert where in text


def test_declarations_are_checked() -> None:
    specs = {"dataset": {"dir": None}, "train": {"ckpt": 3}}
    text = refused("E_BAD_INPUT", command="t", specs=specs, inputs=["dataset.dir"])
    assert "dataset.dir" in text and "optional" in text
    assert build(command="t", specs=specs, inputs={"dataset.dir": {"optional": True}}).mode == "config"
    refused("E_BAD_INPUT", command="t", specs=specs, inputs=["train.ckpt"])  # not a string
    refused("E_BAD_URI", command="t", specs={"d": "gs://b/x"}, inputs=["d"])
    refused("E_BAD_URI", command="t", specs={"d": "s3:///x"}, inputs=["d"])
    refused("E_BAD_URI", command="t", specs={"d": "lustre:///a/../b"}, inputs=["d"])
    refused("E_BAD_URI", command="t", specs={"d": "ngc://just-a-name"}, inputs=["d"])
    refused("E_BAD_URI", command="t", specs={"o": "ngc://a/b:1"}, outputs=["o"])
    refused("E_BAD_INPUT", command="t", specs={"a": [1]}, outputs=["a[3].x"])
    refused("E_BAD_INPUT", command="t", inputs={"relative/path": "s3://bkt/x"})
    refused("E_BAD_URI", command="t", inputs={"/data": "lustre:///already/local"})
    refused("E_BAD_INPUT", command="t", outputs={"/out": "lustre:///x"})
    refused("E_BAD_INPUT", command="t", specs={"a": None}, config_format="toml")
    refused("E_BAD_INPUT", command="t", specs={}, config_format="ini")
    refused("E_BAD_INPUT", command="t", args={"bad key;rm": 1})
    refused("E_BAD_URI", command="t", outputs=[], results_uri="http://x")
    refused("E_BAD_INPUT", command="t", outputs=[], upload_excludes=[""])


@pytest.mark.parametrize(
    "path", ["/", "//", "/etc", "/etc/cron.d", "/usr/lib/python3", "/bin", "/lib64/x", "/libx32", "/proc/1", "/sys",
             "/dev/shm/x", "/boot", "/sbin/x", "/var/run/x", "/run", "/var/lock"]
)  # fmt: skip
def test_system_paths_are_refused_as_destinations(path: str) -> None:
    text = refused("E_BAD_INPUT", command="t", inputs={path: "s3://bkt/data.tar.gz"})
    assert "system folder" in text and "/workspace/data" in text
    spec = {"d": "s3://bkt/x", "o": f"lustre://{path}"}
    refused("E_BAD_INPUT", command="t", specs=spec, inputs={"d": {"container_path": path}})
    refused("E_BAD_INPUT" if path not in ("/", "//") else "E_BAD_URI", command="t", specs=spec, outputs=["o"])
    refused("E_BAD_INPUT" if path not in ("/", "//") else "E_BAD_URI", command="t", results_uri=f"file://{path}")


@pytest.mark.parametrize("path", ["/workspace/data", "/etcetera", "/usrdata/x", "/library", "/var/lib/x", "/tmp/x"])
def test_ordinary_paths_are_destinations(path: str) -> None:
    assert build(command="t", inputs={path: "s3://bkt/data.tar.gz"}).mode == "passthrough"
    plan = build(command="t", specs={"d": "s3://bkt/x"}, inputs={"d": {"container_path": path}})
    assert plan.details["downloads"] == {"s3://bkt/x": path}
    assert build(command="t", outputs=[], results_uri=f"file://{path}").results_location == f"file://{path}"


def test_inputs_container_path_must_be_an_absolute_path() -> None:
    for bad in ("relative/x", "/a/../etc", 7):
        refused("E_BAD_INPUT", command="t", specs={"d": "s3://bkt/x"}, inputs={"d": {"container_path": bad}})


def test_undeclared_remote_values_get_a_warning() -> None:
    plan = build(command="t {config_path}", specs={"a": "s3://bkt/x", "b": "s3://bkt/y"}, inputs=["a"])
    assert len(plan.warnings) == 1 and "b holds s3://" in plan.warnings[0]


def test_hub_values_in_specs_are_inputs_and_endpoints_follow_them() -> None:
    hubs = {
        "TAO_NGC_API_URL": "http://ngc.mirror",
        "TAO_NGC_AUTH_URL": "http://authn.mirror",
        "HF_ENDPOINT": "http://hf",
    }
    specs = {"train": {"pretrained_model_path": "ngc://nvidia/tao/m:1"}, "extra": ["hf://datasets/org/set@v1/x.json"]}
    plan = build(command="t {config_path}", specs=specs, settings={**S3, **hubs})
    assert not plan.warnings
    assert [(i["at"], i["uri"]) for i in job_of(plan)["inputs"]] == [
        ("train.pretrained_model_path", "ngc://nvidia/tao/m:1"),
        ("extra[0]", "hf://datasets/org/set@v1/x.json"),
    ]
    assert {k: plan.env[k] for k in hubs} == hubs
    assert plan.secret_env["NGC_KEY"] == "NGC_KEY" and plan.secret_env["HF_TOKEN"] == "HF_TOKEN"
    assert plan.spec["extra"][0] == "{results_dir}/inputs/extra_0/x.json"
    s3_only = build(command="t", inputs={"/d": "s3://bkt/x"}, settings={**S3, **hubs})
    assert not set(hubs) & set(s3_only.env)  # base URLs travel only with the scheme that uses them
    for bad in ("hf://org", "hf://org/name/../etc", "hf://org/na me", "hf://spaces/org/x/y"):
        refused("E_BAD_URI", command="t", inputs={"/d": bad})


def test_selective_input_covers_the_files_named_under_it() -> None:
    specs = {"root": "s3://bkt/ds/", "ann": "s3://bkt/ds/a/train.json", "other": "s3://bkt/elsewhere.json"}
    plan = build(command="t {config_path}", specs=specs, inputs={"root": {"type": "folder", "selective": True}})
    assert len(plan.warnings) == 1 and "other holds s3://" in plan.warnings[0]  # only what it does not cover
    assert plan.details["downloads"] == {"s3://bkt/ds/a/train.json": "{results_dir}/inputs/root/ds/a/train.json"}
    assert plan.spec["root"] == "{results_dir}/inputs/root/ds" and plan.spec["ann"].endswith("/ds/a/train.json")
    refused("E_BAD_INPUT", command="t", specs={"m": "ngc://o/t/m:1"}, inputs={"m": {"selective": True}})


def test_too_large_a_job_is_refused_before_launch() -> None:
    specs = {"classes": [f"{i:08x}-{zlib.crc32(str(i).encode()):08x}" for i in range(20000)]}
    assert "too large" in refused("E_BAD_INPUT", command="t {config_path}", specs=specs)


# ---------------------------------------------------------------- credentials, env and results location


def test_s3_credentials_are_names_only() -> None:
    plan = build(command="t {config_path}", specs={"d": "s3://bkt/data/"}, inputs=["d"], outputs=[])
    assert plan.secret_env == {"AWS_ACCESS_KEY_ID": "ACCESS_KEY", "AWS_SECRET_ACCESS_KEY": "SECRET_KEY"}
    assert plan.env == {
        "TAO_RESULTS_S3_URI": "s3://bkt/results/job123",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:7480",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    assert (plan.results_location, plan.results_source) == ("s3://bkt/results/job123", "bucket")
    everything = (
        repr(plan)
        + json.dumps(dataclasses.asdict(plan), default=str)
        + zlib.decompress(base64.b64decode(plan.runner_job)).decode()
    )
    for value in CANARIES.values():
        assert value not in everything, "a secret value is in the plan"


def test_missing_credentials_name_the_variables() -> None:
    no_keys = {"S3_BUCKET_NAME": "bkt"}
    text = refused("E_MISSING_CREDENTIALS", command="t", inputs={"/d": "s3://bkt/x"}, settings=no_keys)
    assert "ACCESS_KEY" in text and "SECRET_KEY" in text
    text = refused("E_MISSING_CREDENTIALS", command="t", inputs={"/d": "s3://bkt/x"}, settings={"ACCESS_KEY": "abcdef"})
    assert "missing: SECRET_KEY" in text and "abcdef" not in text
    text = refused("E_MISSING_CREDENTIALS", command="t", inputs={"/m": "ngc://nvidia/tao/m:1"}, settings={})
    assert "NGC_KEY" in text
    plan = build(command="t", outputs=[], settings=no_keys)  # a bucket without keys: a warning, local results
    assert plan.results_location is None and any("S3_BUCKET_NAME" in w for w in plan.warnings)


def test_results_location() -> None:
    explicit = build(command="t", outputs=[], results_uri="s3://other/run7/")
    assert (explicit.results_location, explicit.results_source) == ("s3://other/run7", "explicit")
    assert explicit.env["TAO_RESULTS_URI"] == "s3://other/run7/" and "TAO_RESULTS_S3_URI" not in explicit.env
    lustre = build(command="t", outputs=[], results_uri="lustre:///scratch/run7", settings={})
    assert lustre.results_location == "lustre:///scratch/run7" and lustre.secret_env == {}
    nothing = build(command="t", outputs=[], settings={})
    assert (nothing.results_location, nothing.results_source, nothing.env) == (None, None, {})


def test_hf_token_only_when_present() -> None:
    with_token = build(command="t", inputs={"/m": "hf_model://org/name"}, settings={"HF_TOKEN": "x" * 10})
    assert with_token.secret_env == {"HF_TOKEN": "HF_TOKEN"}
    assert build(command="t", inputs={"/m": "hf_model://org/name"}, settings={}).secret_env == {}


# ---------------------------------------------------------------- the dry-run view


def test_config_plan_shows_the_rewritten_spec() -> None:
    specs = {
        "dataset": {"train_data_sources": [{"image_dir": "s3://bkt/coco/images.tar.gz"}]},
        "train": {"pretrained_model_path": "lustre:///models/m.pth"},
        "results_dir": None,
    }
    plan = build(
        command="dino train -e {config_path}",
        specs=specs,
        inputs={"dataset.train_data_sources[0].image_dir": {"type": "file"}, "train.pretrained_model_path": {}},
        outputs={"results_dir": {"type": "folder"}},
    )
    assert plan.spec == {
        "dataset": {
            "train_data_sources": [{"image_dir": "{results_dir}/inputs/dataset.train_data_sources_0_.image_dir/images"}]
        },
        "train": {"pretrained_model_path": "/models/m.pth"},
        "results_dir": "{results_dir}",
    }
    assert plan.details["command"] == "dino train -e {results_dir}/spec.yaml"
    assert specs["results_dir"] is None, "the caller's spec must not be modified"


def test_list_values_are_inputs_one_by_one() -> None:
    specs = {"data": {"shards": ["s3://bkt/a.tar", "s3://bkt/b/", "/local/c"]}}
    plan = build(command="t {config_path}", specs=specs, inputs=["data.shards"])
    assert [i["at"] for i in job_of(plan)["inputs"]] == ["data.shards[0]", "data.shards[1]"]
    assert plan.spec["data"]["shards"][2] == "/local/c"


# ---------------------------------------------------------------- the runner: size, standard library, Python 3.8


def test_runner_is_small_enough_to_travel_inline() -> None:
    compressed = len(base64.b64decode(runner_blob()))  # every job command carries it (120k chars at most)
    # 20 KiB since the status.json follower (training progress): ~27 KiB of base64 leaves ~90k for the job itself
    assert compressed <= 20 * 1024, f"runner is {compressed} bytes compressed"
    assert len(runner_blob()) <= 27 * 1024
    shipped = zlib.decompress(base64.b64decode(runner_blob())).decode()
    assert ast.dump(ast.parse(shipped, feature_version=(3, 8))) == ast.dump(
        ast.parse(shipped_runner(RUNNER.read_text()))
    )
    assert '"""' not in shipped  # docstrings (and comments) stay home


def test_runner_imports_only_the_standard_library_at_top_level() -> None:
    tree = ast.parse(RUNNER.read_text())
    top = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            top.add(node.module.split(".")[0])
    assert top - {"__future__"} <= sys.stdlib_module_names, top - set(sys.stdlib_module_names)
    optional = {
        n.names[0].name.split(".")[0] if isinstance(n, ast.Import) else (n.module or "").split(".")[0]
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom) and n not in tree.body
    }
    assert optional - set(sys.stdlib_module_names) == {"boto3", "botocore", "yaml"}


def test_runner_runs_on_python_3_8() -> None:
    source = RUNNER.read_text()
    tree = ast.parse(source, feature_version=(3, 8))  # syntax: no match, no parenthesized context managers...
    assert "from __future__ import annotations" in source  # so `X | None` annotations are never evaluated
    for node in ast.walk(tree):  # runtime uses of 3.10+ unions: isinstance(x, int | float)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "isinstance":
            assert not isinstance(node.args[1], ast.BinOp), ast.unparse(node)
    for newer in (".removeprefix(", ".removesuffix(", "functools.cache", "import UTC", "strict=True"):
        assert newer not in source, newer


# ---------------------------------------------------------------- the runner's pure helpers


def test_render_args_round_trips_through_the_shell() -> None:
    args = {"a": "x y", "b": "it's", "c": '"q"', "d": "$HOME `id`", "e": True, "f": False, "g": None, "h": [1, "2 3"]}
    rendered = " ".join(runner.render_args(args))
    assert shlex.split(rendered) == [
        "--a",
        "x y",
        "--b",
        "it's",
        "--c",
        '"q"',
        "--d",
        "$HOME `id`",
        "--e",
        "--h",
        "1",
        "2 3",
    ]


def test_only_three_placeholders_are_substituted() -> None:
    values = {"config_path": "/r/spec.yaml", "results_dir": "/r dir", "job_id": "j1"}
    text = "x {config_path} {results_dir} {job_id} ${HOME} {} {other} {{job_id}}"
    assert runner.substitute(text, values) == "x /r/spec.yaml /r dir j1 ${HOME} {} {other} {j1}"
    assert runner.substitute("{results_dir}/x", values, quote=True) == "'/r dir'/x"


@pytest.mark.parametrize(
    ("rel", "is_dir", "excluded"),
    [
        ("inputs", True, True),
        ("a/inputs", True, True),
        ("inputs", False, False),
        ("x.tmp", False, True),
        ("deep/x.tmp", False, True),
        ("cache", True, True),
        ("sub/cache", True, False),
        ("logs/a.txt", False, True),
        ("model.pth", False, False),
    ],
)
def test_exclude_patterns(rel: str, is_dir: bool, excluded: bool) -> None:
    assert runner.excluded(rel, is_dir, ["inputs/", "*.tmp", "/cache/", "logs/*.txt"]) is excluded


def test_yaml_fallback_and_toml_writer_round_trip() -> None:
    spec = {
        "f": [1e-05, 1e20, -0.5, 2.0],
        "s": ["yes", "No", "null", "1e5", "a: b", "#c", "\x85\x7f\u2028", "😀"],
        "n": {"x": None, "l": [{"a": [1, {}]}]},
        "b": [True, False],
    }
    assert yaml.safe_load(runner.yaml_flow(spec)) == spec
    without_null = json.loads(json.dumps(spec).replace("null,", '"null",').replace('"x": null', '"x": 0'))
    assert tomllib.loads(runner.toml_doc(without_null)) == without_null
