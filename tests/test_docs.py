"""The project's documentation lives in the repository: every doc a docstring, comment or README names exists, and
nothing points at files outside the repository (other checkouts and CI machines do not have them)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.helpers import REPO

DOC_NAME = re.compile(r"(?<![\w/.-])((?:\.{0,2}/)?[\w./-]*[\w-]\.md)\b")
MARKDOWN_LINK = re.compile(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)")
# Written in two parts so that this file does not match itself.
OUTSIDE = re.compile(r"\.\./" + "shared|/work" + "/")


def repo_files(*suffixes: str) -> list[Path]:
    """The project's files as git sees them (tracked, or new and not ignored): caches and tool state such as
    .hypothesis/ or .mypy_cache/ hold absolute paths of this machine and are not part of the project."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    paths = (REPO / name for name in listed.split("\0") if name)
    return sorted(p for p in paths if p.is_file() and (not suffixes or p.suffix in suffixes or p.name in suffixes))


def resolves(name: str, where: Path) -> bool:
    """A doc named in `where`: relative to it, to the repository root, or (a bare name) in docs/."""
    candidates = [where.parent / name, REPO / name]
    if "/" not in name:
        candidates.append(REPO / "docs" / name)
    return any(c.is_file() for c in candidates)


def test_the_docs_exist_and_readme_links_the_architecture() -> None:
    for name in ("ARCHITECTURE.md", "platforms.md", "failures.md", "entrypoint.md", "skill-bank.md"):
        assert (REPO / "docs" / name).is_file(), name
    assert "docs/ARCHITECTURE.md" in (REPO / "README.md").read_text()


def test_every_doc_named_in_code_and_docs_exists() -> None:
    missing = []
    sources = [*repo_files(".py"), *repo_files(".md"), REPO / "fixtures" / "brev" / "brev"]
    for path in sources:
        if path.is_relative_to(REPO / "tests"):
            continue  # tests write files named README.md
        text = path.read_text(errors="replace")
        names = set(MARKDOWN_LINK.findall(text)) if path.suffix == ".md" else set(DOC_NAME.findall(text))
        missing += [f"{path.relative_to(REPO)}: {name}" for name in sorted(names) if not resolves(name, path)]
    assert not missing, "docs named but not in the repository:\n" + "\n".join(missing)


def test_nothing_points_outside_the_repository() -> None:
    offenders = []
    for path in repo_files():
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:120]}")
    assert not offenders, "paths outside the repository:\n" + "\n".join(offenders)
