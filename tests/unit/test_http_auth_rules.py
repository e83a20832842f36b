"""The HTTP front door's pure parts: the tokens file, the static verifier, the start-up plan, job visibility."""

from __future__ import annotations

import hashlib
from pathlib import Path

import anyio
import pytest

from tao_mcp.errors import TaoError
from tao_mcp.http_auth import (
    DEFAULT_ADMIN_SCOPE,
    StaticTokenVerifier,
    is_loopback,
    load_tokens_file,
    plan_http,
    principal_of,
)
from tao_mcp.service import principal
from tao_mcp.service.principal import Principal, acting_as


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tokens"
    path.write_text(text)
    return path


def test_tokens_file_lines_comments_and_admin_flag(tmp_path: Path) -> None:
    path = write(tmp_path, f"# team\n\nalice:{sha('a-token')}\nops.bot@x:{sha('b-token').upper()}:admin\n")
    entries = load_tokens_file(path)
    assert [(e.principal, e.admin) for e in entries] == [("alice", False), ("ops.bot@x", True)]


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        ("alice:plain-token-pasted-by-mistake\n", "line 1: the hash"),
        (f"alice:{sha('x')}:root\n", "line 1 is not"),
        (f"al ice:{sha('x')}\n", "line 1: the principal name"),
        (f"alice:{sha('x')}\nbob:{sha('x')}\n", "line 2 repeats"),
        ("# nothing\n", "holds no token"),
    ],
)
def test_tokens_file_errors_name_the_line_not_its_content(tmp_path: Path, text: str, cause: str) -> None:
    with pytest.raises(TaoError) as err:
        load_tokens_file(write(tmp_path, text))
    assert err.value.code == "E_BAD_SETTING" and cause in str(err.value)
    assert "plain-token" not in str(err.value)


def test_static_verifier_maps_tokens_to_principals(tmp_path: Path) -> None:
    entries = load_tokens_file(write(tmp_path, f"alice:{sha('a-token')}\nroot:{sha('r-token')}:admin\n"))
    verifier = StaticTokenVerifier(entries, scopes=["mcp"])

    async def check() -> None:
        alice = await verifier.verify_token("a-token")
        root = await verifier.verify_token("r-token")
        assert await verifier.verify_token("a-token ") is None
        assert await verifier.verify_token(sha("a-token")) is None  # the hash itself is not a token
        assert principal_of(alice) == Principal("alice", admin=False) and alice.scopes == ["mcp"]
        assert principal_of(root) == Principal("root", admin=True) and DEFAULT_ADMIN_SCOPE in root.scopes
        assert "a-token" not in alice.model_dump_json()  # the SDK keeps the hash for the request, not the token

    anyio.run(check)


def test_plan_refuses_what_is_unsafe(tmp_path: Path) -> None:
    tokens = str(write(tmp_path, f"alice:{sha('a')}\n"))
    with pytest.raises(TaoError, match="E_HTTP_AUTH_REQUIRED"):
        plan_http({}, host="127.0.0.1", port=1)
    with pytest.raises(TaoError, match="E_HTTP_UNSAFE_BIND"):
        plan_http({}, host="0.0.0.0", port=1, allowed_hosts=["x"], no_auth=True)
    with pytest.raises(TaoError, match="E_HTTP_UNSAFE_BIND"):
        plan_http({"TAO_MCP_HTTP_TOKENS_FILE": tokens}, host="10.1.2.3", port=1)
    with pytest.raises(TaoError, match="TAO_MCP_OAUTH_RESOURCE_URL"):
        plan_http({"TAO_MCP_OAUTH_ISSUER": "https://idp.example"}, host="0.0.0.0", port=1, allowed_hosts=["x"])
    local = plan_http({}, host="::1", port=1, no_auth=True)
    assert local.auth is None and "--no-auth" in local.notices[0]


def test_plan_checks_hosts_everywhere(tmp_path: Path) -> None:
    tokens = str(write(tmp_path, f"alice:{sha('a')}\n"))
    plan = plan_http(
        {"TAO_MCP_HTTP_TOKENS_FILE": tokens},
        host="0.0.0.0",
        port=8765,
        allowed_hosts=["gpu-box", "10.0.0.5:8765"],
        allowed_origins=["https://ui.example"],
    )
    security = plan.transport_security
    assert security.enable_dns_rebinding_protection
    assert {"gpu-box", "gpu-box:*", "10.0.0.5:8765", "127.0.0.1:*"} <= set(security.allowed_hosts)
    assert "https://ui.example" in security.allowed_origins
    assert plan.auth is not None and plan.auth.resource_server_url is None  # no OAuth: no metadata published
    oauth = plan_http({"TAO_MCP_OAUTH_ISSUER": "https://idp.example/realms/t"}, host="127.0.0.1", port=9)
    assert str(oauth.auth.resource_server_url) == "http://127.0.0.1:9/mcp"
    assert oauth.verifier.settings.audience == "http://127.0.0.1:9/mcp"


def test_loopback_names() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "10.0.0.1", "gpu-box", "::"))


def test_visibility_and_idempotency_scope() -> None:
    assert principal.may_see("alice") and principal.may_see(None)  # single-user mode sees all
    assert principal.scoped_key("k") == "k"
    with acting_as(Principal("alice")):
        assert principal.may_see("alice") and not principal.may_see("bob") and not principal.may_see(None)
        assert principal.owner() == "alice" and principal.scoped_key("k") != "k"
    with acting_as(Principal("root", admin=True)):
        assert principal.may_see("bob") and principal.visible_owner() == (False, None)
