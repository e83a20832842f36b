"""The entrypoint builder: one shell command, run unchanged by every platform as `bash -c <command>`.

From the user's command and the declared data (specs or args, inputs, outputs) it infers the mode, validates
everything it can on the server (so a mistake is an error now, not a failed job later), and wraps the command
in the in-container runner (runner.py, shipped inline as zlib + base64). The plan names the secrets the
container needs (container variable -> server variable) but never holds a secret value.
"""

from __future__ import annotations

import ast
import base64
import json
import math
import re
import shlex
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Literal

from tao_mcp.entrypoint import runner
from tao_mcp.errors import TaoError

Mode = Literal["config", "args", "passthrough", "plain"]
FORMATS = {"yaml": "yaml", "yml": "yaml", "json": "json", "toml": "toml"}
INPUT_SCHEMES = (*runner.REMOTE, *runner.LOCAL)
OUTPUT_SCHEMES = ("s3://", *runner.LOCAL)
URI = re.compile(r"^([a-z][a-z0-9_+.-]*)://")
# One argument to `bash -c` may not exceed 128 KiB (Linux MAX_ARG_STRLEN); stay clear of it.
MAX_COMMAND_CHARS = 120_000
IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
HUB_SCHEMES = ("ngc://", "hf://", "hf_model://", "hf_dataset://")
# The model hubs' base URLs the runner reads (defaults: the real services), forwarded when the server sets them.
HUB_ENDPOINTS = {"TAO_NGC_AUTH_URL": "ngc://", "TAO_NGC_API_URL": "ngc://", "HF_ENDPOINT": "hf"}


@dataclass(frozen=True)
class EntrypointPlan:
    command: str  # the final shell command, run by every platform as `bash -c <command>`
    mode: Mode  # plain = nothing declared: the user's command unchanged, no runner
    results_location: str | None  # s3://... when results go to S3; None = the platform decides (TAO_RESULTS_ROOT)
    env: dict[str, str]  # NON-secret env the runner needs
    secret_env: dict[str, str]  # container variable -> server variable holding the value (names only)
    spec: dict[str, Any] | None  # config mode: the spec as the runner will write it ({results_dir} unresolved)
    # "explicit": results_uri was given and wins everywhere; "bucket": the S3_BUCKET_NAME default, which a
    # platform TAO_RESULTS_ROOT overrides inside the container; None: no S3 results.
    results_source: Literal["explicit", "bucket"] | None = None
    warnings: tuple[str, ...] = ()
    runner_job: str | None = None  # the job description (zlib+base64 JSON), for platforms that stage runner.py
    details: dict[str, Any] = field(default_factory=dict)  # dry-run display: inputs -> local paths, outputs
    # declared outputs: (name: spec path / argument / container path, local path, the URI given for it or None)
    declared_outputs: tuple[tuple[str, str, str | None], ...] = ()

    def output_uris(self, results_location: str | None) -> dict[str, str]:
        """Where each declared output ends up: the URI given for it, else its place under the results location
        (what a later workflow step reads as {{steps.<id>.outputs.<name>}})."""
        found: dict[str, str] = {}
        for name, local, uri in self.declared_outputs:
            if uri:
                found[name] = uri
            elif results_location and local.startswith("{results_dir}"):
                found[name] = results_location.rstrip("/") + local[len("{results_dir}") :]
            elif results_location:
                found[name] = f"{results_location.rstrip('/')}/{local.rstrip('/').rsplit('/', 1)[-1]}"
        return found


def bad(cause: str, fix: str, code: str = "E_BAD_INPUT") -> TaoError:
    return TaoError(code, cause, fix)


# ---------------------------------------------------------------- payload validation


def where_of(base: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{base}[{key}]"
    return f"{base}.{key}" if IDENT.match(key) else f"{base}[{json.dumps(key)}]"


def check_json(value: Any, where: str) -> None:
    """Finite numbers, string keys, JSON-able values only; the error names the location of the bad value."""
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise bad(f"{where} is {value!r}; numbers must be finite", "use a finite number, or a string such as 'inf'")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise bad(f"{where} has the key {key!r} ({type(key).__name__}); keys must be strings", "quote the key")
            check_json(item, where_of(where, key))
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_json(item, where_of(where, i))
        return
    raise bad(
        f"{where} is a {type(value).__name__}, which JSON cannot carry",
        "use strings, numbers, booleans, null, lists and objects only",
    )


def nested_form(path: str, value: Any) -> str:
    try:
        tokens = runner.parse_path(path)
    except runner.RunnerError:
        tokens = path.split(".")
    shown: Any = "..." if isinstance(value, dict | list) else value
    for token in reversed(tokens):
        shown = [shown] if isinstance(token, int) else {token: shown}
    text = json.dumps(shown)
    return text if len(text) <= 200 else text[:197] + "..."


def check_nested(spec: dict[str, Any], where: str = "specs") -> None:
    """Flat dotted keys ("train.output_dir") are the classic mistake: refuse them and show the nested form."""
    for key, value in spec.items():
        if "." in key:
            raise bad(
                f"{where_of(where, key)}: specs are nested dicts, and {key!r} is a flat dotted key "
                "(it would not be rewritten or downloaded, and would create a duplicate of the nested value)",
                f"write it nested: {nested_form(key, value)}" + (f" inside {where}" if where != "specs" else ""),
                "E_FLAT_SPEC_KEY",
            )
        if isinstance(value, dict):
            check_nested(value, where_of(where, key))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    check_nested(item, where_of(where_of(where, key), i))


def check_uri(uri: str, where: str, allowed: tuple[str, ...], writes: bool = False) -> bool:
    """True when uri has a scheme we handle; False for a plain container path; an error for anything else.
    writes: the job writes there (an output or results location), so / and system folders are refused."""
    m = URI.match(uri)
    if not m:
        return False
    if not uri.startswith(allowed):
        raise bad(
            f"{where} uses the scheme {m.group(1)}://, which is not supported here",
            f"use one of {', '.join(allowed)} or a plain container path",
            "E_BAD_URI",
        )
    if uri.startswith("s3://") and not uri[5:].split("/", 1)[0]:
        raise bad(f"{where} {uri!r} has no bucket", "write s3://<bucket>/<key>", "E_BAD_URI")
    if uri.startswith(runner.LOCAL):
        path = runner.local_path(uri)
        if ".." in path.split("/") or path == "/":
            raise bad(f"{where} {uri!r} is not an absolute path without '..'", "write lustre:///abs/path", "E_BAD_URI")
        if writes:
            refuse_system_path(path, f"{where} {uri!r}")
    if uri.startswith("ngc://") and not re.fullmatch(r"ngc://[\w.-]+(/[\w.-]+){1,2}:[\w.-]+", uri):
        raise bad(f"{where} {uri!r} is not an NGC model version", "write ngc://org[/team]/model:version", "E_BAD_URI")
    if uri.startswith("hf_") and not re.fullmatch(r"hf_(model|dataset)://[\w.-]+/[\w.-]+(@[\w./-]+)?/?", uri):
        raise bad(f"{where} {uri!r} is not a Hugging Face repo", "write hf_model://org/name[@revision]", "E_BAD_URI")
    if uri.startswith("hf://") and (
        not re.fullmatch(r"hf://((datasets|models)/)?[\w.-]+/[\w.-]+(@[\w.-]+)?(/[\w.@+=, -]+)*/?", uri)
        or ".." in uri.split("/")
        or uri.startswith("hf://spaces/")
    ):
        raise bad(
            f"{where} {uri!r} is not a Hugging Face file or folder",
            "write hf://org/name[@revision]/path (datasets: hf://datasets/org/name[@revision]/path; Spaces are not "
            "supported)",
            "E_BAD_URI",
        )
    return True


# ---------------------------------------------------------------- declarations per mode


def declarations(decl: Any, what: str) -> dict[str, dict[str, Any]]:
    """inputs/outputs of config and args mode: {path: {type, optional, container_path}} or [path, ...]."""
    if decl is None:
        return {}
    if isinstance(decl, list):
        items: dict[str, Any] = {}
        for i, name in enumerate(decl):
            if not isinstance(name, str):
                raise bad(f"{what}[{i}] is not a string", f"list {what} as spec paths or argument names")
            items[name] = {}
        return items
    if not isinstance(decl, dict):
        raise bad(f"{what} must be an object or a list", f"give {what} as {{'a.b': {{'type': 'folder'}}}} or ['a.b']")
    out: dict[str, dict[str, Any]] = {}
    for name, value in decl.items():
        if isinstance(value, str):
            value = {"type": value}
        elif value is None:
            value = {}
        elif not isinstance(value, dict):
            raise bad(f"{where_of(what, name)} must be an object like {{'type': 'folder'}}", "fix the declaration")
        out[name] = value
    return out


def declared_value(container: dict[str, Any], name: str, mode: Mode) -> Any:
    if mode == "args":
        return container.get(name, runner.MISSING)
    try:
        return runner.get_path(container, runner.parse_path(name))
    except runner.RunnerError as exc:
        raise bad(exc.cause, "write spec paths like dataset.train_data_sources[0].image_dir") from None


def keyed_items(
    container: dict[str, Any], mode: Mode, inputs: Any, outputs: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Config and args mode: inputs/outputs are spec paths (or argument names) whose values are URIs."""
    label = "specs" if mode == "config" else "args"
    job_inputs: list[dict[str, Any]] = []
    for name, decl in declarations(inputs, "inputs").items():
        value = declared_value(container, name, mode)
        if value is runner.MISSING or value in (None, "", []):
            if decl.get("optional"):
                continue
            raise bad(
                f"input {name!r} is declared but {label} has no value at {name}",
                f"set {label} {name} to an s3:// (or ngc://, hf_model://, lustre://) URI or a container path, "
                "or mark the input optional",
            )
        if mode == "args" and isinstance(value, list):
            raise bad(f"args {name} is a list; an input argument takes one URI", "give one URI per input argument")
        values = [(name, value)] if not isinstance(value, list) else [(f"{name}[{i}]", v) for i, v in enumerate(value)]
        for at, item in values:
            if not isinstance(item, str):
                raise bad(f"{label} {at} is not a string, so it cannot be an input URI", "set it to a URI or a path")
            if check_uri(item, f"{label} {at}", INPUT_SCHEMES):
                entry: dict[str, Any] = {"at": at, "uri": item}
                if decl.get("selective"):
                    entry["selective"] = check_selective(name, item, mode)
                if decl.get("container_path") and len(values) == 1:
                    entry["to"] = container_path(decl["container_path"], f"inputs {name} container_path", writes=True)
                job_inputs.append(entry)
    job_outputs: list[dict[str, Any]] = []
    for name, decl in declarations(outputs, "outputs").items():
        value = declared_value(container, name, mode)
        kind = decl.get("type") or "folder"
        if kind not in ("folder", "file", "model"):
            raise bad(f"outputs {name} has type {kind!r}", "use type folder, file or model")
        entry = {"at": name, "type": kind}
        if isinstance(value, str) and value:
            check_uri(value, f"{label} {name}", OUTPUT_SCHEMES, writes=True)
            entry["uri"] = value
        elif value not in (runner.MISSING, None, ""):
            raise bad(
                f"{label} {name} is not a string, so it cannot be an output location", "set it to a URI or unset it"
            )
        job_outputs.append(entry)
    return job_inputs, job_outputs


def check_selective(name: str, uri: str, mode: Mode) -> bool:
    """A selective input is an s3:// folder of which only the files the spec names are downloaded."""
    if mode != "config" or not uri.startswith("s3://"):
        raise bad(
            f"input {name!r} is selective, which needs specs (config mode) and an s3:// folder, not {uri!r}",
            "drop selective, or point it at s3://bucket/folder/ and name the files in the spec under that URI",
        )
    return True


def hub_references(tree: Any, where: str, known: set[str], found: list[dict[str, Any]]) -> None:
    """ngc:// and Hugging Face values anywhere in specs or args (pretrained models): inputs even when undeclared."""
    if isinstance(tree, str):
        if tree.startswith(HUB_SCHEMES) and where not in known:
            check_uri(tree, f"specs {where}", INPUT_SCHEMES)
            found.append({"at": where, "uri": tree})
    elif isinstance(tree, dict):
        for key, value in tree.items():
            hub_references(value, f"{where}.{key}" if where else key, known, found)
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            hub_references(value, f"{where}[{i}]", known, found)


def passthrough_items(inputs: Any, outputs: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Passthrough: inputs {container path: uri}; outputs [container path] or {container path: s3 uri}."""
    job_inputs: list[dict[str, Any]] = []
    if inputs is not None and not isinstance(inputs, dict):
        raise bad("inputs must be an object {container_path: uri} without specs or args", "e.g. {'/data': 's3://b/d/'}")
    for path, uri in (inputs or {}).items():
        container_path(path, "inputs key", writes=True)
        if not isinstance(uri, str) or not check_uri(uri, f"inputs[{json.dumps(path)}]", runner.REMOTE):
            raise bad(
                f"inputs[{json.dumps(path)}] must be an s3://, ngc:// or hf:// URI",
                "lustre:// and file:// data is already on the platform: mount it or use its path in the command",
                "E_BAD_URI",
            )
        job_inputs.append({"at": None, "uri": uri, "to": path})
    pairs = {p: None for p in outputs} if isinstance(outputs, list) else outputs or {}
    if not isinstance(pairs, dict):
        raise bad("outputs must be a list of container paths or {container_path: s3 uri}", "e.g. ['/workspace/out']")
    job_outputs: list[dict[str, Any]] = []
    for path, uri in pairs.items():
        container_path(path, "outputs key")
        if uri is not None and not (
            isinstance(uri, str) and uri.startswith("s3://") and check_uri(uri, path, ("s3://",))
        ):
            raise bad(f"outputs[{json.dumps(path)}] must map to an s3:// URI or null", "e.g. {'/out': 's3://b/out/'}")
        job_outputs.append({"at": None, "from": path, "uri": uri})
    return job_inputs, job_outputs


def container_path(path: Any, what: str, writes: bool = False) -> str:
    """An absolute path in the container (or under {results_dir}); writes: inputs land there, so not a system path."""
    if not isinstance(path, str) or not (path.startswith("/") or path.startswith("{results_dir}")):
        raise bad(f"{what} {path!r} is not an absolute container path", "write it like /workspace/data")
    if ".." in path.split("/"):
        raise bad(f"{what} {path!r} contains '..'", "write a plain absolute path")
    if writes and path.startswith("/"):
        refuse_system_path(path, f"{what} {path!r}")
    return path


def refuse_system_path(path: str, where: str) -> None:
    if runner.system_path(path):
        raise bad(
            f"{where} is / or a system folder ({', '.join(runner.SYSTEM_DIRS[:5])}, /lib*, ...), "
            "which the job may not write to",
            "use a folder of your own, such as /workspace/data",
        )


def undeclared_uris(tree: Any, where: str, declared: set[str], found: list[str], covered: tuple[str, ...] = ()) -> None:
    """covered: the folders of selective inputs (the files named under them are downloaded)."""
    if isinstance(tree, str):
        if tree.startswith(runner.REMOTE) and where not in declared and not (covered and tree.startswith(covered)):
            found.append(
                f"{where} holds {tree.split('://')[0]}:// data that is not declared in inputs or outputs: "
                "it reaches the command unchanged (not downloaded)"
            )
    elif isinstance(tree, dict):
        for key, value in tree.items():
            undeclared_uris(value, f"{where}.{key}" if where else key, declared, found, covered)
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            undeclared_uris(value, f"{where}[{i}]", declared, found, covered)


# ---------------------------------------------------------------- the runner blob and the command


def shipped_runner(source: str) -> str:
    """runner.py as it travels: without docstrings and comments (an ast round trip), so more fits in a command."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                node.body = node.body[1:] or [ast.Pass()]
    return ast.unparse(tree) + "\n"


@cache
def runner_blob() -> str:
    source = resources.files("tao_mcp.entrypoint").joinpath("runner.py").read_text(encoding="utf-8")
    return base64.b64encode(zlib.compress(shipped_runner(source).encode(), 9)).decode()


def encode_job(job: dict[str, Any]) -> str:
    return base64.b64encode(zlib.compress(json.dumps(job, separators=(",", ":")).encode(), 9)).decode()


def wrap(job_b64: str) -> str:
    loader = (
        "import base64,sys,zlib;sys.version_info<(3,8) and sys.exit('[tao-runner] error E_NO_PYTHON: "
        "Python 3.8+ is needed, this image has '+sys.version.split()[0]);"
        f"exec(compile(zlib.decompress(base64.b64decode('{runner_blob()}')),'tao-runner','exec'))"
    )
    no_python = (
        "echo '[tao-runner] error E_NO_PYTHON: neither python3 nor python is on PATH in this image. "
        "Fix: use an image with Python 3.8+'; echo '[tao-runner] exit 127'; exit 127"
    )
    return (
        f"TAO_PY=$(command -v python3 || command -v python) || {{ {no_python}; }}; "
        f'exec "$TAO_PY" -c {shlex.quote(loader)} {shlex.quote(job_b64)}'
    )


# ---------------------------------------------------------------- credentials and results


def s3_secret_env(settings: Mapping[str, str], why: str) -> dict[str, str]:
    if settings.get("ACCESS_KEY") and settings.get("SECRET_KEY"):
        return {"AWS_ACCESS_KEY_ID": "ACCESS_KEY", "AWS_SECRET_ACCESS_KEY": "SECRET_KEY"}
    if settings.get("AWS_ACCESS_KEY_ID") and settings.get("AWS_SECRET_ACCESS_KEY"):
        names = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
        names += ["AWS_SESSION_TOKEN"] if settings.get("AWS_SESSION_TOKEN") else []
        return {n: n for n in names}
    missing = [n for n in ("ACCESS_KEY", "SECRET_KEY") if not settings.get(n)]
    raise TaoError(
        "E_MISSING_CREDENTIALS",
        f"{why} needs ACCESS_KEY, SECRET_KEY; missing: {', '.join(missing)}",
        "set them in the server environment or ~/.config/tao/.env (names only are ever shown), then retry",
    )


def check_results_uri(results_uri: str) -> None:
    if not isinstance(results_uri, str) or not URI.match(results_uri):
        raise bad(
            f"results_uri {results_uri!r} is not a URI", "use s3://bucket/prefix or lustre:///abs/path", "E_BAD_URI"
        )
    check_uri(results_uri, "results_uri", OUTPUT_SCHEMES, writes=True)


def build_entrypoint(
    *,
    job_id: str,
    command: str,
    specs: dict[str, Any] | None = None,
    args: dict[str, Any] | None = None,
    inputs: dict[str, Any] | None = None,
    outputs: dict[str, Any] | list[str] | None = None,
    config_format: str = "yaml",
    upload_excludes: list[str] | None = None,
    results_uri: str | None = None,
    resume_key: str | None = None,
    gpus_key: str | None = None,
    resume_from: str | None = None,
    settings: Mapping[str, str],
) -> EntrypointPlan:
    """resume_key: where a checkpoint goes to resume (a spec path in config mode, an argument in args mode);
    gpus_key: where the GPU count is, set in the container to the GPUs per node the platform gave (NUM_GPU_PER_NODE);
    resume_from: an earlier job's results location, searched for its latest checkpoint (runner.py, auto-resume)."""
    if not isinstance(command, str) or not command.strip() or "\0" in command:
        raise bad("command is empty or contains a NUL character", "give the shell command to run")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", job_id):
        raise bad(f"job id {job_id!r} is not usable in paths", "use the job id tao-mcp minted")
    if specs is not None and args is not None:
        raise bad("both specs and args were given", "give specs (config mode) or args (args mode), not both")
    fmt = FORMATS.get(str(config_format).lower())
    if fmt is None:
        raise bad(f"config_format {config_format!r} is unknown", "use yaml, json or toml")
    for value, name in ((specs, "specs"), (args, "args"), (inputs, "inputs"), (outputs, "outputs")):
        check_json(value, name)
    if specs is not None and not isinstance(specs, dict):
        raise bad("specs must be an object (a nested dict)", "give specs as {'train': {'num_epochs': 10}}")
    if args is not None and not isinstance(args, dict):
        raise bad("args must be an object {name: value}", "give args as {'epochs': 10, 'verbose': True}")
    excludes = list(upload_excludes or [])
    if not all(isinstance(p, str) and p for p in excludes):
        raise bad("upload_excludes must be a list of non-empty glob patterns", "e.g. ['inputs/', '*.tmp']")
    if results_uri is not None:
        check_results_uri(results_uri)

    declared = any(x is not None for x in (specs, args, inputs, outputs, results_uri, resume_from))
    placeholders = any("{" + p + "}" in command for p in runner.PLACEHOLDERS)
    if not declared and not placeholders:
        return EntrypointPlan(command=command, mode="plain", results_location=None, env={}, secret_env={}, spec=None)
    mode: Mode = "config" if specs is not None else "args" if args is not None else "passthrough"

    warnings: list[str] = []
    if mode == "config":
        assert specs is not None
        check_nested(specs)
        job_inputs, job_outputs = keyed_items(specs, mode, inputs, outputs)
        if fmt == "toml":
            check_toml(specs, "specs")
        if "{config_path}" not in command:
            warnings.append("the command has no {config_path}: the written spec file is not passed to it")
    elif mode == "args":
        assert args is not None
        bad_keys = [k for k in args if not k or not re.fullmatch(r"-{0,2}[A-Za-z0-9][A-Za-z0-9_.:-]*", k)]
        if bad_keys:
            raise bad(f"args key(s) {', '.join(map(repr, bad_keys))} are not option names", "use names like epochs")
        job_inputs, job_outputs = keyed_items(args, mode, inputs, outputs)
    else:
        job_inputs, job_outputs = passthrough_items(inputs, outputs)
    container = specs if mode == "config" else args if mode == "args" else None
    if container is not None:
        known = {i["at"] for i in job_inputs} | {o["at"] for o in job_outputs}
        known |= {n for n in declarations(inputs, "inputs")} | set(declarations(outputs, "outputs"))
        covered = tuple(i["uri"].rstrip("/") + "/" for i in job_inputs if i.get("selective"))
        if mode == "config":  # pretrained models named in a spec are downloaded even when undeclared
            hub_references(container, "", known, job_inputs)
            known |= {i["at"] for i in job_inputs}
        undeclared_uris(container, "", known, warnings, covered)

    uris = [i["uri"] for i in job_inputs] + [o["uri"] for o in job_outputs if o.get("uri")]
    uris += [results_uri] if results_uri else []
    uris += [resume_from] if resume_from else []
    env: dict[str, str] = {}
    if resume_from:
        env["TAO_RESUME_FROM"] = resume_from
    secret_env: dict[str, str] = {}
    results_location: str | None = None
    results_source: Literal["explicit", "bucket"] | None = None
    uses_s3 = any(u.startswith("s3://") for u in uris)
    if results_uri:
        env["TAO_RESULTS_URI"] = results_uri
        results_location, results_source = results_uri.rstrip("/"), "explicit"
    elif settings.get("S3_BUCKET_NAME"):
        try:
            s3_secret_env(settings, "S3_BUCKET_NAME")
        except TaoError:
            warnings.append(
                "S3_BUCKET_NAME is set but ACCESS_KEY/SECRET_KEY are not: results will not be uploaded to S3"
            )
        else:
            results_location = f"s3://{settings['S3_BUCKET_NAME']}/results/{job_id}"
            results_source = "bucket"
            env["TAO_RESULTS_S3_URI"] = results_location
            uses_s3 = True
    if uses_s3:
        secret_env.update(s3_secret_env(settings, "s3:// data"))
        if settings.get("S3_ENDPOINT_URL"):
            env["AWS_ENDPOINT_URL"] = settings["S3_ENDPOINT_URL"]
        if settings.get("CLOUD_REGION"):
            env["AWS_DEFAULT_REGION"] = settings["CLOUD_REGION"]
    if any(u.startswith("ngc://") for u in uris):
        if not settings.get("NGC_KEY"):
            raise TaoError(
                "E_MISSING_CREDENTIALS",
                "ngc:// inputs need NGC_KEY; missing: NGC_KEY",
                "set it in the server environment or ~/.config/tao/.env, then retry",
            )
        secret_env["NGC_KEY"] = "NGC_KEY"
    if any(u.startswith("hf") for u in uris) and settings.get("HF_TOKEN"):
        secret_env["HF_TOKEN"] = "HF_TOKEN"
    for name, scheme in HUB_ENDPOINTS.items():  # non-secret base URLs (a mirror, or a test fake)
        if settings.get(name) and any(u.startswith(scheme) for u in uris):
            env[name] = settings[name]

    job: dict[str, Any] = {
        "v": 1,
        "job_id": job_id,
        "mode": mode,
        "command": command,
        "config_format": fmt,
        "spec": specs,
        "args": args,
        "inputs": job_inputs,
        "outputs": job_outputs,
        "excludes": excludes,
    }
    if resume_key and mode in ("config", "args"):
        job["resume_key"] = resume_key
    if gpus_key and mode in ("config", "args"):
        job["gpus_key"] = gpus_key
    try:  # the runner's own (pure) preparation, so a spec it cannot rewrite fails now, not in the container
        prepared = runner.prepare(job, "{results_dir}", "{results_dir}/inputs")
    except runner.RunnerError as exc:
        raise bad(exc.cause, exc.fix or "fix the spec or the declarations", exc.code) from None
    job_b64 = encode_job(job)
    final = wrap(job_b64)
    if len(final) > MAX_COMMAND_CHARS:
        raise bad(
            f"the job description is too large for one command line ({len(final)} characters)",
            "shrink the inline spec (put large values, such as class lists, in a file the job reads)",
        )
    return EntrypointPlan(
        command=final,
        mode=mode,
        results_location=results_location,
        env=env,
        secret_env=secret_env,
        spec=prepared["spec"],
        results_source=results_source,
        warnings=tuple(warnings),
        runner_job=job_b64,
        declared_outputs=tuple(
            (item.get("at") or item.get("from") or "", local, item.get("uri"))
            for item, (local, _uri, _kind) in zip(job_outputs, prepared["outputs"], strict=True)
        ),
        details={
            "command": runner.final_command(job, prepared, quote=False),
            "downloads": {uri: dest for uri, dest, _ in prepared["fetches"]},
            "uploads": [{"from": local, "to": uri} for local, uri, _ in prepared["outputs"]],
            "excludes": excludes,
        },
    )


def check_toml(tree: Any, where: str) -> None:
    if tree is None:
        raise bad(f"{where} is null, which TOML cannot represent", "remove it or use config_format yaml or json")
    if isinstance(tree, dict):
        for key, value in tree.items():
            check_toml(value, where_of(where, key))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            check_toml(value, where_of(where, i))
