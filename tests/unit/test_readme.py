"""The README's settings, options and policy tables are generated from the models: they must be current."""

from __future__ import annotations

from tao_mcp.readme import blocks, missing_blocks, regenerate
from tests.helpers import REPO


def test_readme_generated_blocks_are_current() -> None:
    text = (REPO / "README.md").read_text()
    assert missing_blocks(text) == []
    assert regenerate(text) == text, "README.md is out of date: run `tao-mcp docs --write` and review the diff"


def test_every_option_and_setting_has_a_description() -> None:
    from tao_mcp.drivers import MODELS, platform_models

    for platform in MODELS:
        options, settings = platform_models(platform)
        assert all(options.help().values()), platform
        assert all(settings.variables().values()), platform
    assert set(blocks()) == {*MODELS, "policy"}
