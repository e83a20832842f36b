"""`tao-mcp --http` needs a key: static bearer tokens, OAuth JWTs from an issuer, Host checks, per-principal jobs.

Every test runs the real entry point on a loopback port (uvicorn) and talks to it over HTTP.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp.shared.exceptions import MCPError

from fixtures.lepton.fake_lepton import FakeLepton
from tao_mcp.service.store import JobRecord, JobStore
from tests.backends import LEPTON_TOKEN
from tests.helpers import REPO, call, call_error, launch_request, wait_done
from tests.http_server import bearer_client, free_port, http_server

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore:resources/.*subscribe is removed")]

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
IMAGE = "nvcr.io/nvidia/tao/tao-toolkit:5.5.0-pyt"


def post_initialize(url: str, token: str | None, host: str | None = None, origin: str | None = None) -> httpx2.Response:
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    if host:
        headers["host"] = host
    if origin:
        headers["origin"] = origin
    return httpx2.post(url, json=INITIALIZE, headers=headers, timeout=10)


@pytest.fixture
def tokens(tmp_path: Path) -> dict[str, str]:
    """Three principals' tokens (root is an admin); the tokens file holds only their sha256."""
    names = {"alice": "", "bob": "", "root": ":admin"}
    values = {name: secrets.token_urlsafe(32) for name in names}
    lines = ["# principal:sha256hex(token)[:admin]"]
    lines += [f"{n}:{hashlib.sha256(values[n].encode()).hexdigest()}{flag}" for n, flag in names.items()]
    (tmp_path / "tokens").write_text("\n".join(lines) + "\n")
    return values


@pytest.fixture
def token_env(base_env: dict[str, str], tmp_path: Path, tokens: dict[str, str]) -> dict[str, str]:
    return {**base_env, "TAO_MCP_HTTP_TOKENS_FILE": str(tmp_path / "tokens")}


# ---- refusing to start -------------------------------------------------------------------------------------------


def start_refused(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tao_mcp", "--http", "--port", str(free_port()), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_http_without_authentication_refuses_to_start(base_env: dict[str, str]) -> None:
    done = start_refused(base_env)
    assert done.returncode == 2
    assert "E_HTTP_AUTH_REQUIRED" in done.stderr and "TAO_MCP_HTTP_TOKENS_FILE" in done.stderr, done.stderr


def test_no_auth_on_a_non_loopback_host_refuses_to_start(base_env: dict[str, str]) -> None:
    done = start_refused(base_env, "--no-auth", "--host", "0.0.0.0", "--allowed-hosts", "tao.test")
    assert done.returncode == 2
    assert "E_HTTP_UNSAFE_BIND" in done.stderr and "--no-auth" in done.stderr, done.stderr


def test_non_loopback_host_without_allowed_hosts_refuses_to_start(token_env: dict[str, str]) -> None:
    done = start_refused(token_env, "--host", "0.0.0.0")
    assert done.returncode == 2
    assert "E_HTTP_UNSAFE_BIND" in done.stderr and "--allowed-hosts" in done.stderr, done.stderr


def test_malformed_tokens_file_refuses_to_start(base_env: dict[str, str], tmp_path: Path) -> None:
    secret_line = "alice:not-a-hash-but-maybe-a-pasted-token"
    (tmp_path / "bad-tokens").write_text(f"# ok\n{secret_line}\n")
    done = start_refused({**base_env, "TAO_MCP_HTTP_TOKENS_FILE": str(tmp_path / "bad-tokens")})
    assert done.returncode == 2
    assert "E_BAD_SETTING" in done.stderr and "line 2" in done.stderr, done.stderr
    assert "not-a-hash" not in done.stderr  # the error names the line, never its content


# ---- static bearer tokens ----------------------------------------------------------------------------------------


async def test_bearer_tokens_and_host_checks(token_env: dict[str, str], tokens: dict[str, str], tmp_path: Path) -> None:
    async with http_server(token_env, tmp_path / "server.log") as url:
        no_token = post_initialize(url, None)
        assert no_token.status_code == 401 and "Bearer" in no_token.headers["www-authenticate"]
        assert post_initialize(url, "wrong-" + tokens["alice"]).status_code == 401
        assert post_initialize(url, hashlib.sha256(tokens["alice"].encode()).hexdigest()).status_code == 401
        assert post_initialize(url, tokens["alice"]).status_code == 200
        # DNS rebinding: the right token from a page served under a foreign name is still refused.
        assert post_initialize(url, tokens["alice"], host="evil.example").status_code == 421
        async with bearer_client(url, tokens["alice"]) as c:
            platforms = await call(c, "list_platforms")
        assert platforms["platforms"]
    log = (tmp_path / "server.log").read_text()
    assert "3 (1 admin)" in log
    for value in tokens.values():
        assert value not in log


async def test_non_loopback_bind_checks_host_names(
    token_env: dict[str, str], tokens: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    args = ("--host", "0.0.0.0", "--allowed-hosts", "tao.test", "--allowed-origins", "https://ui.tao.test")
    async with http_server(token_env, tmp_path / "server.log", *args, port=port) as url:
        alice = tokens["alice"]
        assert post_initialize(url, alice, host="evil.example").status_code == 421
        assert post_initialize(url, alice, host=f"evil.example:{port}").status_code == 421
        assert post_initialize(url, alice, host=f"tao.test:{port}").status_code == 200
        assert post_initialize(url, None, host=f"tao.test:{port}").status_code == 401
        # A browser page of another origin is refused even with the right token and Host.
        assert post_initialize(url, alice, host=f"tao.test:{port}", origin="https://evil.example").status_code == 403
        assert post_initialize(url, alice, host=f"tao.test:{port}", origin="https://ui.tao.test").status_code == 200


async def test_each_principal_sees_only_its_own_jobs(
    token_env: dict[str, str], tokens: dict[str, str], tmp_path: Path, fake_lepton: FakeLepton
) -> None:
    env = {
        **token_env,
        "LEPTON_WORKSPACE_URL": fake_lepton.url,
        "LEPTON_WORKSPACE_ID": fake_lepton.workspace_id,
        "LEPTON_AUTH_TOKEN": LEPTON_TOKEN,
    }
    job_env = {"FAKE_LOG_TEXT": "alice-was-here", "FAKE_DURATION_S": "1"}
    async with http_server(env, tmp_path / "server.log") as url:
        async with bearer_client(url, tokens["alice"]) as alice:
            sub = await call(
                alice, "submit_job", platform="lepton", image=IMAGE, command="x", env=job_env, idempotency_key="k1"
            )
            job_id = sub["job_id"]
            await wait_done(alice, job_id, budget_s=60)
            assert "alice-was-here" in "\n".join((await call(alice, "job_logs", job_id=job_id))["lines"])
            assert [j["job_id"] for j in (await call(alice, "list_jobs"))["jobs"]] == [job_id]

        async with bearer_client(url, tokens["bob"]) as bob:
            missing = await call_error(bob, "job_status", job_id="0123456789ab")
            for tool in ("job_status", "wait_for_job", "job_logs", "failure_analysis", "cancel_job"):
                refused = await call_error(bob, tool, job_id=job_id)
                # Word for word the answer for an id that never existed: no existence oracle.
                assert refused.replace(job_id, "0123456789ab") == missing, (tool, refused)
                assert refused.startswith("E_UNKNOWN_JOB")
            assert (await call(bob, "list_jobs"))["jobs"] == []
            # Idempotency keys are per principal: bob's "k1" launches bob's own job, not alice's.
            bobs = await call(bob, "submit_job", platform="lepton", image=IMAGE, command="y", idempotency_key="k1")
            assert bobs["job_id"] != job_id and not bobs.get("reused")
            assert [j["job_id"] for j in (await call(bob, "list_jobs"))["jobs"]] == [bobs["job_id"]]

        async with bearer_client(url, tokens["bob"], mode="legacy") as bob:
            # resources/subscribe: alice's job is not a resource bob may subscribe to, in the same words as none.
            with pytest.raises(MCPError) as nothing:
                await bob.subscribe_resource("tao://jobs/0123456789ab")
            for uri in (f"tao://jobs/{job_id}", f"tao://jobs/{job_id}/logs"):
                with pytest.raises(MCPError) as hidden:
                    await bob.subscribe_resource(uri)
                assert str(hidden.value).replace(job_id, "0123456789ab").replace("/logs", "") == str(nothing.value)
        async with bearer_client(url, tokens["alice"], mode="legacy") as alice:
            await alice.subscribe_resource(f"tao://jobs/{job_id}")  # its owner may

        async with bearer_client(url, tokens["root"]) as root:
            assert (await call(root, "job_status", job_id=job_id))["status"] == "Complete"
            seen = {j["job_id"] for j in (await call(root, "list_jobs"))["jobs"]}
            assert seen == {job_id, bobs["job_id"]}
            await call(root, "cancel_job", job_id=bobs["job_id"])
    assert len(fake_lepton.posted_jobs()) == 2
    # The principal is stored with each job (a restart keeps the ownership).
    import sqlite3

    db = sqlite3.connect(Path(env["TAO_MCP_STATE_DIR"]) / "jobs.sqlite3")
    owners = dict(db.execute("SELECT job_id, principal FROM jobs").fetchall())
    db.close()
    assert owners == {job_id: "alice", bobs["job_id"]: "bob"}


async def test_a_workflow_and_its_jobs_belong_to_the_principal_that_submitted_it(
    token_env: dict[str, str], tokens: dict[str, str], tmp_path: Path, fake_lepton: FakeLepton
) -> None:
    env = {
        **token_env,
        "LEPTON_WORKSPACE_URL": fake_lepton.url,
        "LEPTON_WORKSPACE_ID": fake_lepton.workspace_id,
        "LEPTON_AUTH_TOKEN": LEPTON_TOKEN,
    }
    step = {"platform": "lepton", "image": IMAGE, "env": {"FAKE_DURATION_S": "1"}}
    steps = [{**step, "id": "a", "command": "x"}, {**step, "id": "b", "depends_on": ["a"], "command": "y"}]
    async with http_server(env, tmp_path / "server.log") as url:
        async with bearer_client(url, tokens["alice"]) as alice:
            started = await call(alice, "submit_workflow", name="mine", steps=steps, idempotency_key="k1")
            workflow_id = started["workflow_id"]
            with anyio.fail_after(90):
                while not (done := await call(alice, "wait_for_workflow", workflow_id=workflow_id))["done"]:
                    pass
            assert done["status"] == "Complete"
        async with bearer_client(url, tokens["bob"]) as bob:
            missing = await call_error(bob, "workflow_status", workflow_id="0123456789ab")
            for tool in ("workflow_status", "wait_for_workflow", "cancel_workflow"):
                refused = await call_error(bob, tool, workflow_id=workflow_id)
                assert refused.replace(workflow_id, "0123456789ab") == missing, (tool, refused)
                assert refused.startswith("E_UNKNOWN_WORKFLOW")
            assert (await call(bob, "list_workflows"))["workflows"] == []
            assert (await call(bob, "list_jobs"))["jobs"] == []
            # bob's "k1" is bob's own workflow
            bobs = await call(bob, "submit_workflow", name="mine", steps=steps[:1], idempotency_key="k1")
            assert bobs["workflow_id"] != workflow_id and not bobs["reused"]
    import sqlite3

    db = sqlite3.connect(Path(env["TAO_MCP_STATE_DIR"]) / "jobs.sqlite3")
    owners = dict(db.execute("SELECT workflow_id, principal FROM workflows").fetchall())
    job_owners = [
        owner
        for (owner,) in db.execute(
            "SELECT principal FROM jobs WHERE job_id IN (?, ?)", [s["job_id"] for s in done["steps"]]
        )
    ]
    db.close()
    assert owners == {workflow_id: "alice", bobs["workflow_id"]: "bob"}
    assert job_owners == ["alice", "alice"]  # the driver launched the later step as alice


# ---- OAuth 2.1: JWTs from an issuer ------------------------------------------------------------------------------


class Issuer:
    """A local OAuth issuer: an RSA key made here, its JWKS and metadata served over HTTP, tokens minted on demand."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "test-key-1"
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.documents: dict[str, Any] = {"/jwks.json": {"keys": [{**jwk, "kid": self.kid, "use": "sig"}]}}
        documents = self.documents

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_GET(self) -> None:
                body = json.dumps(documents.get(self.path)).encode()
                self.send_response(200 if self.path in documents else 404)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        # Discovery: the server finds the JWKS through the issuer's metadata (no TAO_MCP_OAUTH_JWKS_URL).
        self.documents["/.well-known/openid-configuration"] = {"issuer": self.url, "jwks_uri": self.url + "/jwks.json"}
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def token(self, audience: str, *, subject: str = "carol", ttl: int = 300, key: Any = None, **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": self.url, "sub": subject, "aud": audience, "iat": now, "exp": now + ttl, **claims}
        return jwt.encode(payload, key or self.key, algorithm="RS256", headers={"kid": self.kid})


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    issuer = Issuer()
    try:
        yield issuer
    finally:
        issuer.httpd.shutdown()


async def test_oauth_jwt_from_the_issuer(base_env: dict[str, str], issuer: Issuer, tmp_path: Path) -> None:
    port = free_port()
    resource = f"http://127.0.0.1:{port}/mcp"
    env = {**base_env, "TAO_MCP_OAUTH_ISSUER": issuer.url}
    # A job alice launched earlier (a refused launch: terminal, so no backend is asked about it).
    store = JobStore(Path(env["TAO_MCP_STATE_DIR"]) / "jobs.sqlite3")
    alices = JobRecord.launching(launch_request(), platform="slurm", digest="d", command="x", principal="alice")
    store.insert(alices)
    store.mark_failed_launch(alices.job_id, "refused")
    store.close()
    async with http_server(env, tmp_path / "server.log", port=port) as url:
        assert url == resource
        good = issuer.token(resource, scope="tao-mcp:admin other")
        assert post_initialize(url, good).status_code == 200
        async with bearer_client(url, issuer.token(resource)) as carol:
            assert (await call(carol, "list_jobs"))["jobs"] == []
            assert (await call_error(carol, "job_status", job_id=alices.job_id)).startswith("E_UNKNOWN_JOB")
        async with bearer_client(url, issuer.token(resource, subject="alice")) as alice:
            assert (await call(alice, "job_status", job_id=alices.job_id))["status"] == "Error"
        async with bearer_client(url, good) as admin:
            assert [j["job_id"] for j in (await call(admin, "list_jobs"))["jobs"]] == [alices.job_id]

        refused = {
            "expired": issuer.token(resource, ttl=-600),
            "wrong audience": issuer.token("http://127.0.0.1:1/mcp"),
            "other key": issuer.token(resource, key=rsa.generate_private_key(public_exponent=65537, key_size=2048)),
            "other issuer": issuer.token(resource, iss="http://evil.example"),
            "no subject": jwt.encode(
                {"iss": issuer.url, "aud": resource, "exp": int(time.time()) + 300},
                issuer.key,
                algorithm="RS256",
                headers={"kid": issuer.kid},
            ),
        }
        for why, token in refused.items():
            answer = post_initialize(url, token)
            assert answer.status_code == 401, why

        # Protected-resource metadata (RFC 9728) points clients at the issuer, and a 401 points at it.
        meta_url = f"http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp"
        meta = httpx2.get(meta_url, timeout=10).json()
        assert meta["resource"] == resource and meta["authorization_servers"] == [issuer.url], meta
        assert meta_url in post_initialize(url, None).headers["www-authenticate"]
    log = (tmp_path / "server.log").read_text()
    assert "ExpiredSignatureError" in log and "InvalidAudienceError" in log
    assert good not in log
