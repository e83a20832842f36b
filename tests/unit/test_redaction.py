from __future__ import annotations

import logging

from tao_mcp.service.redaction import MASK, RedactingFilter, Redactor, is_secret_name


def test_secret_names() -> None:
    for name in (
        "NGC_KEY",
        "HF_TOKEN",
        "SECRET_KEY",
        "ACCESS_KEY",
        "LEPTON_AUTH_TOKEN",
        "BREV_API_TOKEN",
        "DB_PASSWORD",
    ):
        assert is_secret_name(name), name
    for name in ("SSH_KEY_PATH", "SLURM_USER", "S3_ENDPOINT_URL", "LEPTON_WORKSPACE_ID", "SSH_AUTH_SOCK", "PATH"):
        assert not is_secret_name(name), name


def test_values_and_token_shapes_are_masked() -> None:
    r = Redactor.from_settings({"NGC_KEY": "s3cr3t-value-1", "SLURM_USER": "alice", "X": "y"})
    text = "key=s3cr3t-value-1 user=alice hf=hf_abcdefghijklmnopqrstuvwxyz12 nv=nvapi-" + "a" * 30
    out = r.text(text)
    assert "s3cr3t-value-1" not in out and "hf_abc" not in out and "nvapi-" not in out
    assert "user=alice" in out and out.count(MASK) == 3


def test_short_values_are_not_masked() -> None:
    assert Redactor(["1", "abc"]).text("1 abc") == "1 abc"


def test_nested_data_and_keys() -> None:
    r = Redactor(["topsecret!"])
    assert r.data({"a": ["x topsecret!", {"topsecret!": 1}]}) == {"a": [f"x {MASK}", {MASK: 1}]}


def test_logging_filter_masks_messages_and_args(caplog) -> None:  # type: ignore[no-untyped-def]
    r = Redactor(["topsecret!"])
    logger = logging.getLogger("test.redaction")
    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter(r))
    caplog.handler.addFilter(RedactingFilter(r))
    logger.warning("value %s here", "topsecret!")
    assert "topsecret!" not in caplog.text and MASK in caplog.text
