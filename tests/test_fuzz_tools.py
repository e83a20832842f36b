"""Fuzz every tool with arguments built from its own input schema, mutated: wrong types, out-of-range numbers,
hostile strings, foreign cursors, unknown keys, missing ones. Whatever fails must fail coded
(`E_CODE: cause. Fix: ...`), never as an internal error.

In-process client, no backend: every platform is configured but points at a closed local port (or a missing
CLI), so calls reach the drivers' validation and transport error paths without launching anything. Bounded:
a fixed number of examples per tool and no per-example deadline (a refused connection can take a moment).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio.from_thread
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp.client import Client

from tao_mcp import cursor
from tao_mcp.server import build_server
from tests.helpers import clean_environ

CODED = re.compile(r"^E_[A-Z0-9_]+: .+ Fix: .+", re.S)
EXAMPLES_PER_TOOL = 20
EXAMPLES = {"submit_job": 80}  # the widest input: every platform's options
# Known hostile inputs, tried before the generated ones (each once crashed a tool).
SEEDS: dict[str, list[dict[str, Any]]] = {
    "submit_job": [
        {"platform": "kubernetes", "command": "true", "options": {"tolerations": 7}},
        {"platform": "kubernetes", "command": "true", "options": {"tolerations": [{"key": 7}]}},
        {"platform": "docker", "command": "true", "options": {"mounts": [7], "memory": []}},
        {"platform": "slurm", "command": "true", "options": {"mounts": {"a": 1}, "cpus": "x"}},
        {"platform": "lepton", "command": "true", "options": {"resource_shape": {}}},
        {"platform": "brev", "command": "true", "options": {"instance": ["x"]}},
    ],
    "list_path": [
        {"uri": "lustre:///tmp", "cursor": "bC4x"},
        {"uri": "s3://bucket/prefix/", "cursor": "czMu_w"},
        {"uri": "file:///", "cursor": "Zi4"},
    ],
    "job_logs": [{"job_id": "x", "cursor": "L5"}],
    "list_jobs": [{"cursor": "////"}],
    "submit_workflow": [
        {"name": "w", "steps": [{"id": "a", "platform": "slurm", "command": "{{steps.a.results}}"}]},
        {"name": "w", "steps": [{"id": "a", "platform": "slurm", "command": "{{matrix.x}}", "matrix": {"x": [[1]]}}]},
        {"name": "w", "steps": [{"id": "a", "platform": "docker", "command": "true", "gpu_count": {"x": 1}}]},
        {"name": "w", "steps": [{"id": "a", "platform": "slurm", "command": "true", "depends_on": "b"}]},
        {"name": "w", "steps": [{"id": "a", "platform": "lepton", "command": "true", "options": [1]}], "dry_run": True},
    ],
    "list_workflows": [{"cursor": cursor.encode("workflows", -1.0, "x")}],
}
PLATFORMS = ["slurm", "docker", "kubernetes", "lepton", "brev"]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fuzz_env(tmp: Path) -> dict[str, str]:
    port = closed_port()
    kubeconfig = tmp / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: fuzz\n"
        f"clusters: [{{name: fuzz, cluster: {{server: 'https://127.0.0.1:{port}', insecure-skip-tls-verify: true}}}}]\n"
        "users: [{name: fuzz, user: {token: fuzz-token}}]\n"
        "contexts: [{name: fuzz, context: {cluster: fuzz, user: fuzz}}]\n"
    )
    key = tmp / "id_fuzz"
    key.write_text("not a key\n")
    key.chmod(0o600)
    (tmp / "files").mkdir()
    (tmp / "files" / "a.txt").write_text("a\n")
    return {
        **clean_environ(),
        "TAO_MCP_STATE_DIR": str(tmp / "state"),
        "TAO_MCP_ENV_FILE": str(tmp / "no.env"),
        "TAO_MCP_FILE_ROOTS": str(tmp / "files"),
        "SLURM_HOSTNAME": "127.0.0.1",
        "SLURM_SSH_PORT": str(port),
        "SLURM_USER": "fuzz",
        "SSH_KEY_PATH": str(key),
        "SLURM_BASE_RESULTS_DIR": "/tmp/tao-fuzz",
        "DOCKER_HOST": f"tcp://127.0.0.1:{port}",
        "KUBECONFIG": str(kubeconfig),
        "LEPTON_WORKSPACE_ID": "fuzz",
        "LEPTON_WORKSPACE_URL": f"http://127.0.0.1:{port}/api/v2/workspaces/fuzz",
        "LEPTON_AUTH_TOKEN": "fuzz-token",
        "BREV_CLI": str(tmp / "no-brev"),
        "S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "ACCESS_KEY": "fuzz-access",
        "SECRET_KEY": "fuzz-secret-value",
    }


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any, dict[str, Any]]]:
    env = fuzz_env(tmp_path_factory.mktemp("fuzz"))
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(Client(build_server(env))) as client,
    ):
        tools = {t.name: t.input_schema for t in portal.call(client.list_tools).tools}
        yield portal, client, tools


TOOLS = [
    "list_platforms",
    "submit_job",
    "job_status",
    "wait_for_job",
    "job_logs",
    "job_metrics",
    "failure_analysis",
    "cancel_job",
    "list_jobs",
    "list_path",
    "check_path",
    "list_models",
    "resolve_image",
    "job_replicas",
    "list_instances",
    "delete_instance",
    "submit_workflow",
    "workflow_status",
    "wait_for_workflow",
    "cancel_workflow",
    "list_workflows",
    "start_automl",
    "automl_status",
    "wait_for_automl",
    "stop_automl",
    "list_automl_runs",
]

WORDS = [
    "",
    " ",
    "slurm",
    "docker",
    "kubernetes",
    "k8s",
    "lepton",
    "brev",
    "azureml",
    "dino",
    "classification_pyt",
    "train",
    "evaluate",
    "yaml",
    "auto",
    "s3://",
    "s3://bucket/prefix/",
    "s3:///key",
    "lustre:///tmp",
    "lustre:///a/../b",
    "file:///",
    "file:///etc/passwd",
    "gs://x",
    "../../etc",
    "/:/host",
    "/var/run/docker.sock:/var/run/docker.sock",
    "0",
    "-1",
    "1e999",
    "nvcr.io/nvidia/tao/tao-toolkit:5.5.0-pyt",
    "a" * 300,
    "\x00\x01",
    "\ud7ff\u202e",
    "tao-0000000000",
    "L100",
    "garbage",
    cursor.encode("log", "tao-0000000000", 5),
    cursor.encode("jobs", 1.5, "x"),
    cursor.encode("workflows", 1.5, "x"),
    cursor.encode("lustre", "lustre:///tmp", 3),
    cursor.encode("s3", "s3://bucket/prefix", "token"),
    cursor.encode("file", "file:///", "a"),
    "gICA",
    "${HOME}",
    "$(reboot)",
    "; rm -rf /",
]
OPTION_KEYS = [
    "partition",
    "account",
    "mounts",
    "cpus",
    "memory",
    "launcher",
    "hold",
    "tolerations",
    "node_selector",
    "namespace",
    "service_account",
    "host_network",
    "volumes",
    "shm_size",
    "network",
    "user",
    "privileged",
    "instance",
    "type",
    "gpu_name",
    "results_dir",
    "node_group",
    "resource_shape",
    "pull_policy",
]
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(WORDS)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(OPTION_KEYS) | st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
STRINGS = st.sampled_from(WORDS) | st.text(max_size=80)
# Arguments whose useful values are few: mostly those, sometimes anything.
NAMED = {
    "platform": st.sampled_from(PLATFORMS),
    "options": st.dictionaries(st.sampled_from(OPTION_KEYS), JSON | STRINGS, min_size=1, max_size=3),
    "uri": st.sampled_from([w for w in WORDS if "://" in w]),
    "cursor": st.sampled_from([w for w in WORDS if w.isalnum() or w.startswith("W")]),
}


def resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str):
        return resolve(defs[ref.rsplit("/", 1)[-1]], defs)
    options = [o for o in node.get("anyOf", []) if o.get("type") != "null"]
    return resolve(options[0], defs) if options else node


def typed(node: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values near what the schema allows (its enum, its bounds +- a few, its type), plus hostile words."""
    if "enum" in node:
        return st.sampled_from(node["enum"]) | STRINGS
    kind = node.get("type")
    if kind == "integer":
        low, high = node.get("minimum", -10), node.get("maximum", 10**6)
        return st.integers(min_value=low - 3, max_value=high + 3) | st.sampled_from([0, -1, 2**63])
    if kind == "number":
        return st.floats(allow_nan=False) | st.integers(-5, 10**6)
    if kind == "boolean":
        return st.booleans()
    if kind == "string":
        return STRINGS
    if kind == "array":
        return st.lists(STRINGS | JSON, max_size=4)
    if kind == "object":
        return st.dictionaries(st.sampled_from(OPTION_KEYS) | STRINGS, JSON | STRINGS, max_size=4)
    return JSON


@st.composite
def arguments(draw: st.DrawFn, schema: dict[str, Any]) -> dict[str, Any]:
    defs, required = schema.get("$defs", {}), set(schema.get("required", []))
    args: dict[str, Any] = {}
    for name, node in schema.get("properties", {}).items():
        keep = draw(st.floats(0, 1)) < (0.9 if name in required else 0.5)
        if keep:
            chance = draw(st.floats(0, 1))
            if name in NAMED and chance < 0.6:
                args[name] = draw(NAMED[name])
            else:
                args[name] = draw(typed(resolve(node, defs)) if chance < 0.9 else JSON)
    if draw(st.floats(0, 1)) < 0.1:
        args[draw(st.sampled_from(["partiton", "platfrom", "x", "Job_Id"]))] = draw(JSON)
    return args


@pytest.mark.parametrize("tool", TOOLS)
def test_every_failure_is_coded(session: tuple[Any, Any, dict[str, Any]], tool: str) -> None:
    portal, client, schemas = session
    assert tool in schemas, f"{tool} is not listed: update TOOLS"

    def coded(args: dict[str, Any]) -> None:
        result = portal.call(client.call_tool, tool, args)
        if result.is_error:
            text = result.content[0].text
            assert CODED.match(text), f"{tool}({args!r}) gave an uncoded error: {text!r}"
            assert not text.startswith("E_INTERNAL"), f"{tool}({args!r}) crashed: {text!r}"

    for args in SEEDS.get(tool, []):
        coded(args)

    @settings(
        max_examples=EXAMPLES.get(tool, EXAMPLES_PER_TOOL),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(args=arguments(schemas[tool]))
    def check(args: dict[str, Any]) -> None:
        coded(args)

    check()


def test_the_fuzzed_tools_are_every_tool(session: tuple[Any, Any, dict[str, Any]]) -> None:
    assert set(session[2]) == set(TOOLS)
