"""The error catalogue: every code the source spells is catalogued once, none is unused, docs/errors.md follows."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import tao_mcp
from tao_mcp import errors
from tao_mcp.errors import CATALOGUE, TaoError

PACKAGE = Path(tao_mcp.__file__).parent
DOC = PACKAGE.parent / "docs" / "errors.md"
CODE = re.compile(r"\bE_[A-Z0-9_]*[A-Z0-9]\b")
PLACEHOLDERS = {"E_CODE"}  # the format's name in docstrings, not a code


def codes_outside_catalogue(path: Path) -> set[str]:
    """Codes spelled in errors.py other than as CATALOGUE keys (the exception classes raise two)."""
    tree = ast.parse(path.read_text())
    keys: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "CATALOGUE":
            assert isinstance(node.value, ast.Dict)
            keys = {id(k) for k in node.value.keys}
    assert keys, "CATALOGUE not found in errors.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in keys:
            found |= set(CODE.findall(node.value))
    return found


def codes_in_source() -> dict[str, list[str]]:
    used: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        found = codes_outside_catalogue(path) if path.name == "errors.py" and path.parent == PACKAGE else None
        if found is None:
            found = set(CODE.findall(path.read_text()))
        for code in found - PLACEHOLDERS:
            used.setdefault(code, []).append(str(path.relative_to(PACKAGE.parent)))
    return used


def test_every_code_in_the_source_is_catalogued() -> None:
    unknown = {code: where for code, where in codes_in_source().items() if code not in CATALOGUE}
    assert not unknown, f"add these codes to CATALOGUE in tao_mcp/errors.py: {unknown}"


def test_the_catalogue_has_no_unused_code() -> None:
    unused = set(CATALOGUE) - set(codes_in_source())
    assert not unused, f"no source file raises these catalogued codes; remove them: {sorted(unused)}"


def test_each_code_has_a_one_line_meaning_and_fix() -> None:
    for name, code in CATALOGUE.items():
        assert CODE.fullmatch(name), name
        for text in (code.meaning, code.fix):
            assert text and "\n" not in text and "|" not in text and not text.endswith("."), (name, text)


def test_an_unknown_code_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="E_NO_SUCH_CODE"):
        TaoError("E_NO_SUCH_CODE", "cause", "fix")


def test_the_default_fix_comes_from_the_catalogue() -> None:
    exc = TaoError("E_UNKNOWN_JOB", "no job abc.")
    assert str(exc) == f"E_UNKNOWN_JOB: no job abc. Fix: {CATALOGUE['E_UNKNOWN_JOB'].fix}."
    assert str(TaoError("E_UNKNOWN_JOB", "no job abc", "list_jobs.")).endswith("Fix: list_jobs.")


def test_docs_errors_md_is_generated_from_the_catalogue() -> None:
    assert DOC.is_file(), "write it: python -m tao_mcp.errors > docs/errors.md"
    assert DOC.read_text() == errors.catalogue_markdown(), "regenerate: python -m tao_mcp.errors > docs/errors.md"
