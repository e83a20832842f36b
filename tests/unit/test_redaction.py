from __future__ import annotations

import base64
import json
import logging
import secrets
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from tao_mcp.service.redaction import MASK, RedactingFilter, Redactor, is_secret_name

REPO = Path(__file__).resolve().parents[2]
TRAINING_LOG = REPO / "fixtures" / "logs" / "tao_rtdetr_train.log"


def encodings(value: str) -> dict[str, str]:
    """Every encoded form of `value` the redactor must catch, as a job could print it."""
    raw = value.encode()
    forms = {
        "plain": value,
        "json": json.dumps(value)[1:-1],
        "url": quote(value, safe=""),
        "url_plus": quote_plus(value),
        "url_lower": quote(value, safe="").replace("%2F", "%2f").replace("%2B", "%2b"),
        "hex": raw.hex(),
        "HEX": raw.hex().upper(),
    }
    for pad in range(3):  # the secret at each byte alignment inside a longer base64 stream
        forms[f"b64+{pad}"] = base64.b64encode(b"x" * pad + raw + b"tail").decode()
        forms[f"b64url+{pad}"] = base64.urlsafe_b64encode(b"yz"[:pad] + raw).decode()
    return forms


def test_secret_names() -> None:
    for name in (
        "NGC_KEY",
        "HF_TOKEN",
        "SECRET_KEY",
        "ACCESS_KEY",
        "LEPTON_AUTH_TOKEN",
        "BREV_API_TOKEN",
        "DB_PASSWORD",
        "SSH_PASSPHRASE",
        "MY_APIKEY",
        "SMTP_PASS",
        "DOCKER_AUTH_CONFIG",
        "GCP_CREDENTIALS",
        "GITHUB_PAT",
        "TLS_PRIVATE",
        "AWS_ACCESS_KEY_ID",  # a known credential despite the _ID
    ):
        assert is_secret_name(name), name
    for name in (
        "SSH_KEY_PATH",
        "SLURM_USER",
        "S3_ENDPOINT_URL",
        "LEPTON_WORKSPACE_ID",
        "SSH_AUTH_SOCK",
        "PATH",
        "PWD",
        "TOKENIZERS_PARALLELISM",
        "TAO_MCP_HTTP_TOKENS_FILE",
        "AUTH_MODE",
        "GIT_AUTHOR_NAME",
        "XAUTHORITY",
        "PASSENGER_COUNT",
        "KEYBOARD",
    ):
        assert not is_secret_name(name), name


def test_values_and_token_shapes_are_masked() -> None:
    r = Redactor.from_settings({"NGC_KEY": "s3cr3t-value-1", "SLURM_USER": "alice", "X": "y"})
    text = "key=s3cr3t-value-1 user=alice hf=hf_abcdefghijklmnopqrstuvwxyz12 nv=nvapi-" + "a" * 30
    out = r.text(text)
    assert "s3cr3t-value-1" not in out and "hf_abc" not in out and "nvapi-" not in out
    assert "user=alice" in out and out.count(MASK) == 3


@pytest.mark.parametrize("length", [4, 5, 7, 16, 40, 64])
def test_every_encoding_at_every_alignment(length: int) -> None:
    value = secrets.token_urlsafe(64)[:length]
    r = Redactor.from_settings({"HF_TOKEN": value})
    for kind, form in encodings(value).items():
        if kind != "plain" and (form == value or (kind.startswith("b64") and length < 6)):
            continue  # an encoding that changes nothing, or a base64 fragment too short to mean anything
        out = r.text(f"before {form} after")
        assert form not in out and MASK in out, (kind, form, out)
        assert out.startswith("before ") and out.endswith(" after"), (kind, out)


def test_special_characters_in_values() -> None:
    value = 'p@ss/w+rd "quoted" \\ ünï'
    r = Redactor.from_settings({"DB_PASSWORD": value})
    for kind, form in encodings(value).items():
        assert form not in r.text(f"x {form} y"), kind


def test_short_configured_values_are_masked_down_to_four_chars() -> None:
    r = Redactor.from_settings({"NGC_KEY": "Zq7x", "HF_TOKEN": "abc", "FORWARDED": "k9#w"}, ["FORWARDED"])
    assert r.text("a Zq7x b k9#w c abc") == f"a {MASK} b {MASK} c abc"


def test_guessed_names_need_longer_values_and_skip_settings() -> None:
    settings = {"AUTH_RETRIES": "3", "SMTP_PASS": "open", "WIDGET_TOKEN": "long-enough-value", "MY_SECRET": "/etc/x"}
    r = Redactor.from_settings(settings)
    assert r.text("3 open /etc/x long-enough-value") == f"3 open /etc/x {MASK}"


def test_forwarded_names_are_registered_while_serving() -> None:
    r = Redactor.from_settings({"GITHUB_PAT": "pat-value-123", "BUILD_NOTE": "internal-thing-42"})
    assert "pat-value-123" not in r.text("pat-value-123")  # a secret name
    assert r.text("internal-thing-42") == "internal-thing-42"
    r.add_settings({"BUILD_NOTE": "internal-thing-42"}, ["BUILD_NOTE"])  # forwarded with secret_env
    assert r.text("x internal-thing-42") == f"x {MASK}"


def test_url_userinfo_and_headers() -> None:
    r = Redactor.from_settings({"S3_ENDPOINT_URL": "https://svc:hunter2@s3.example"})
    assert r.text("hunter2") == MASK  # the password of a URL in the settings is a known value
    out = r.text("clone https://bob:pa55w0rd@git.example/x.git and https://ghp_abcdefghijklmnopqrst@github.com/y")
    assert "pa55w0rd" not in out and "ghp_abc" not in out and "git.example/x.git" in out
    assert r.text("ssh://git@github.com/a.git and user@host") == "ssh://git@github.com/a.git and user@host"
    out = r.text('curl -H "Authorization: Bearer abc123.def" -H "x-api-key: zzz999" --password=qwerty12')
    assert "abc123" not in out and "zzz999" not in out and "qwerty12" not in out


def test_assignments_and_quoted_keys() -> None:
    r = Redactor()
    out = r.text("NGC_KEY=abcd1234 TOKENIZERS_PARALLELISM=false PATH=/usr/bin {'password': 'swordfish'}")
    assert "abcd1234" not in out and "swordfish" not in out
    assert "TOKENIZERS_PARALLELISM=false PATH=/usr/bin" in out and "NGC_KEY=" in out
    placeholders = 'NGC_KEY=<secret: value not shown> HF_TOKEN=$HF_TOKEN SECRET_KEY="${SECRET_KEY}"'
    assert r.text(placeholders) == placeholders


def test_docker_auth_config_leaves() -> None:
    auth = base64.b64encode(b"robot:registry-pass-77").decode()
    config = json.dumps({"auths": {"nvcr.io": {"auth": auth}}})
    r = Redactor.from_settings({"DOCKER_AUTH_CONFIG": config})
    assert auth not in r.text(f"auth is {auth}") and "registry-pass-77" not in r.text("registry-pass-77")


def test_pem_keys_keep_line_count_also_when_a_window_cuts_them() -> None:
    body = [base64.b64encode(secrets.token_bytes(48)).decode() for _ in range(6)]
    key = "\n".join(["-----BEGIN OPENSSH PRIVATE KEY-----", *body, "-----END OPENSSH PRIVATE KEY-----"])
    r = Redactor()
    text = f"before\n{key}\nafter"
    out = r.text(text)
    assert out.count("\n") == text.count("\n") and out.split("\n")[0] == "before" and out.endswith("\nafter")
    assert not any(line in out for line in body)
    head = "\n".join(text.split("\n")[:4])  # the window ends inside the key
    assert not any(line in r.text(head) for line in body)
    tail = "\n".join(text.split("\n")[4:])  # the window starts inside the key
    assert not any(line in r.text(tail) for line in body) and r.text(tail).endswith("\nafter")


def test_pem_armor_text_alone_is_no_key() -> None:
    r = Redactor()
    mentions = [
        'echo "-----BEGIN RSA PRIVATE KEY-----" | grep -c "BEGIN RSA"',
        "grep -rl -- '-----BEGIN OPENSSH PRIVATE KEY-----' /workspace/some/longer/path/of/Files2 || true",
        'grep -c -e "-----BEGIN RSA PRIVATE KEY-----" -e "-----END RSA PRIVATE KEY-----" /home/user/projects/id',
        "cd /workspace/datasets/imagenet2012 && grep -q -- '-----END EC PRIVATE KEY-----' k.pem",
    ]
    for text in mentions:
        assert r.text(text) == text
        assert not r.contains_secret(text)


def test_a_variable_reference_is_no_secret_but_the_value_in_its_place_is() -> None:
    """A command uses a secret it was given by name through a variable: the shapes leave the reference alone."""
    r = Redactor()
    references = [
        'curl -H "Authorization: Bearer $NGC_KEY" https://api.ngc.nvidia.com',
        "curl -H 'x-api-key: ${HF_TOKEN}' https://example.com",
        "git clone https://oauth2:$GH_TOKEN@github.com/org/repo",
        "docker login -u user --password $REGISTRY_PASS nvcr.io",
        '{"password": "$DB_PASSWORD"}',
    ]
    for text in [*references, 'print(f"Authorization: Bearer {token}")', 'url = f"https://user:{pw}@host/x"']:
        assert r.text(text) == text
    value = "Zx81kq0Lm2Pa77Qw"
    for text in references:
        filled = text.replace("$NGC_KEY", value).replace("${HF_TOKEN}", value).replace("$GH_TOKEN", value)
        filled = filled.replace("$REGISTRY_PASS", value).replace("$DB_PASSWORD", value)
        assert value not in r.text(filled), filled


def test_pem_keys_in_other_clothes_are_masked() -> None:
    body = [base64.b64encode(secrets.token_bytes(48)).decode() for _ in range(4)]
    key = "\n".join(["-----BEGIN RSA PRIVATE KEY-----", *body, "-----END RSA PRIVATE KEY-----"])
    r = Redactor()
    shapes = {
        "json": json.dumps({"key": key}),
        "one line": key.replace("\n", " "),
        "no breaks": key.replace("\n", ""),
        "prefixed": "\n".join(f"[rank0]: {line}" for line in key.split("\n")),
        "in a command": f"printf '%s' '{key}' > /tmp/id && echo done",
        "after a mention": f'echo "-----BEGIN RSA PRIVATE KEY-----"\n{key}',
    }
    for name, text in shapes.items():
        out = r.text(text)
        assert not any(line[:16] in out for line in body), name


def test_nested_data_and_keys() -> None:
    r = Redactor(["topsecret!"])
    assert r.data({"a": ["x topsecret!", {"topsecret!": 1}]}) == {"a": [f"x {MASK}", {MASK: 1}]}


def test_masking_is_idempotent() -> None:
    r = Redactor.from_settings({"NGC_KEY": "nvapi-" + "q" * 30, "DB_PASSWORD": "hunter2hunter2"})
    once = r.text("NGC_KEY=nvapi-" + "q" * 30 + " Authorization: Bearer hunter2hunter2")
    assert r.text(once) == once


def test_a_real_training_log_survives_a_realistic_secret_set() -> None:
    """False positives: ordinary training output must come back unchanged."""
    settings = {
        "NGC_KEY": "nvapi-" + secrets.token_urlsafe(48),
        "HF_TOKEN": "hf_" + secrets.token_hex(17),
        "WANDB_API_KEY": secrets.token_hex(20),
        "ACCESS_KEY": "TAOCEPHUSER7Q2M4XKZP",
        "SECRET_KEY": secrets.token_urlsafe(30),
        "LEPTON_AUTH_TOKEN": secrets.token_urlsafe(32),
        "BREV_API_TOKEN": secrets.token_hex(16),
        "DB_PASSWORD": "Zq7!",
        "SLURM_USER": "tao",
        "SSH_KEY_PATH": "/home/tao/.ssh/id_ed25519",
        "S3_ENDPOINT_URL": "https://s3.internal.example:7480",
        "TOKENIZERS_PARALLELISM": "false",
        "AUTH_MODE": "oauth",
    }
    r = Redactor.from_settings(settings)
    log = TRAINING_LOG.read_text()
    assert len(log.splitlines()) > 300
    out = r.text(log)
    changed = [(a, b) for a, b in zip(log.splitlines(), out.splitlines(), strict=True) if a != b]
    assert not changed, changed[:5]


def test_logging_filter_masks_messages_and_args(caplog) -> None:  # type: ignore[no-untyped-def]
    r = Redactor(["topsecret!"])
    logger = logging.getLogger("test.redaction")
    caplog.handler.addFilter(RedactingFilter(r))
    logger.warning("value %s here", "topsecret!")
    assert "topsecret!" not in caplog.text and MASK in caplog.text


def test_secrets_held_in_files_the_settings_name(tmp_path: Path) -> None:
    """The kubeconfig's user credentials and the SSH key are secrets the server holds too."""
    import yaml

    from tao_mcp.service.redaction import file_secrets

    token, key_data, id_token = secrets.token_urlsafe(24), base64.b64encode(b"k" * 40).decode(), secrets.token_hex(20)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "clusters": [{"name": "dev", "cluster": {"server": "https://10.0.0.1:6443"}}],
                "users": [
                    {"name": "a", "user": {"token": token}},
                    {
                        "name": "b",
                        "user": {
                            "client-key-data": key_data,
                            "auth-provider": {"config": {"id-token": id_token, "client-id": "kubectl"}},
                        },
                    },
                    {"name": "c", "user": {"exec": {"env": [{"name": "AWS_PROFILE", "value": "default"}]}}},
                ],
            }
        )
    )
    key_line = base64.b64encode(secrets.token_bytes(52)).decode()
    ssh_key = tmp_path / "id"
    ssh_key.write_text(f"-----BEGIN OPENSSH PRIVATE KEY-----\n{key_line}\n-----END OPENSSH PRIVATE KEY-----\n")
    r = Redactor()
    r.add(file_secrets({"KUBECONFIG": str(kubeconfig), "SSH_KEY_PATH": str(ssh_key)}))
    out = r.text(f"{token} {key_data} {id_token} line {key_line} https://10.0.0.1:6443 kubectl default")
    assert out == f"{MASK} {MASK} {MASK} line {MASK} https://10.0.0.1:6443 kubectl default"
    assert file_secrets({"KUBECONFIG": str(tmp_path / "absent"), "SSH_KEY_PATH": str(tmp_path)}) == []
    other_key, body = (
        "\n".join(["-----BEGIN OPENSSH PRIVATE KEY-----", "Zm9v" * 16, "-----END OPENSSH PRIVATE KEY-----"]),
        "Zm9v" * 16,
    )
    assert body not in r.text(other_key)  # the known key's armor lines do not hide another key's shape
