"""Imports run one way: tools -> service -> drivers / storage / entrypoint, and no platform driver imports another."""

from __future__ import annotations

import ast
from pathlib import Path

from tao_mcp.drivers import DRIVERS

PACKAGE = Path(__file__).resolve().parents[2] / "tao_mcp"
PLATFORM_MODULES = sorted({module for module, _ in DRIVERS.values()})
TOP = ("tao_mcp.tools", "tao_mcp.server", "tao_mcp.cli", "tao_mcp.http_auth")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every tao_mcp module a file imports, at the top or inside a function (lazy imports count too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
    return {name for name in found if name.startswith("tao_mcp")}


def under(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def offences(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{module_name(path)} imports {name}"
        for path in sorted((PACKAGE / folder).rglob("*.py"))
        for name in sorted(imports(path))
        if under(name, *forbidden)
    ]


def test_lower_layers_never_import_upward() -> None:
    assert offences("drivers", ("tao_mcp.service", *TOP)) == []
    assert offences("storage", ("tao_mcp.service", "tao_mcp.drivers", *TOP)) == []
    assert offences("entrypoint", ("tao_mcp.service", "tao_mcp.drivers", "tao_mcp.storage", *TOP)) == []
    assert offences("service", (*TOP, *PLATFORM_MODULES)) == []  # drivers only through the registry


def test_tools_and_server_reach_drivers_only_through_the_service() -> None:
    assert offences("tools", ("tao_mcp.drivers",)) == []
    server_side = [PACKAGE / "server.py", PACKAGE / "cli.py", PACKAGE / "http_auth.py"]
    assert [
        f"{p.name} imports {n}" for p in server_side if p.exists() for n in imports(p) if under(n, "tao_mcp.drivers")
    ] == []


def test_no_platform_driver_imports_another() -> None:
    found = []
    for path in sorted((PACKAGE / "drivers").rglob("*.py")):
        own = [m for m in PLATFORM_MODULES if under(module_name(path), m)]
        others = [m for m in PLATFORM_MODULES if m not in own]
        found += [f"{module_name(path)} imports {name}" for name in sorted(imports(path)) if under(name, *others)]
    assert found == []
