"""The front door of `tao-mcp --http`: who may call, from which Host/Origin, and as which principal.

Two ways to authenticate, usable together (a request must pass one):
- static bearer tokens: TAO_MCP_HTTP_TOKENS_FILE, one `principal:sha256hex(token)[:admin]` a line. Only the
  hash is on disk; a presented token is hashed and compared in constant time with every entry.
- OAuth 2.1 resource server: a JWT signed by TAO_MCP_OAUTH_ISSUER's keys (its JWKS), with this server as the
  audience; the SDK serves the protected-resource metadata that points clients at the issuer.
Without either, `--http` refuses to start; `--no-auth` is accepted on a loopback host only.
DNS-rebinding protection (Host and Origin checks) is on for every host; a non-loopback host needs the names
clients use (`--allowed-hosts`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.transport_security import TransportSecuritySettings

from tao_mcp.errors import TaoError
from tao_mcp.service.principal import Principal

log = logging.getLogger(__name__)

ADMIN_FLAG = "admin"
DEFAULT_ADMIN_SCOPE = "tao-mcp:admin"
PRINCIPAL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
# Asymmetric algorithms only: a shared-secret (HS*) or unsigned token is never accepted from an issuer.
JWT_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
LOOPBACK_NAMES = ("localhost",)


class PrincipalToken(AccessToken):
    """An accepted bearer token with the facts tao-mcp needs: who (subject) and whether an admin."""

    admin: bool = False


def principal_of(token: AccessToken | None) -> Principal | None:
    if token is None:
        return None
    name = token.subject or token.client_id
    return Principal(name=name, admin=isinstance(token, PrincipalToken) and token.admin)


# ---- static tokens ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenEntry:
    principal: str
    digest: bytes  # sha256 of the token
    admin: bool


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def load_tokens_file(path: Path) -> list[TokenEntry]:
    """Parse TAO_MCP_HTTP_TOKENS_FILE. Errors name the line number, never its content."""

    def bad(cause: str) -> TaoError:
        return TaoError(
            "E_BAD_SETTING",
            f"TAO_MCP_HTTP_TOKENS_FILE {cause}",
            "write one `principal:sha256hex(token)` a line, `:admin` appended for an admin (README: HTTP for a team)",
        )

    try:
        text = path.expanduser().read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise bad(f"cannot be read ({type(exc).__name__})") from None
    entries: list[TokenEntry] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != ADMIN_FLAG):
            raise bad(f"line {number} is not `principal:sha256hex` or `principal:sha256hex:admin`")
        name, hexdigest = parts[0], parts[1]
        if not PRINCIPAL_NAME.fullmatch(name):
            raise bad(f"line {number}: the principal name must match {PRINCIPAL_NAME.pattern}")
        if not SHA256_HEX.fullmatch(hexdigest):
            raise bad(f"line {number}: the hash must be 64 hex digits (sha256 of the token)")
        digest = bytes.fromhex(hexdigest)
        if any(e.digest == digest for e in entries):
            raise bad(f"line {number} repeats a token hash of an earlier line")
        entries.append(TokenEntry(principal=name, digest=digest, admin=len(parts) == 3))
    if not entries:
        raise bad("holds no token")
    return entries


class StaticTokenVerifier:
    def __init__(self, entries: Sequence[TokenEntry], scopes: Sequence[str] = ()) -> None:
        self.entries = list(entries)
        self.scopes = list(scopes)  # operator-issued tokens hold the scopes the server requires

    async def verify_token(self, token: str) -> AccessToken | None:
        presented = token_digest(token)
        found: TokenEntry | None = None
        for entry in self.entries:  # every entry, every time: the time taken says nothing about a match
            if hmac.compare_digest(presented, entry.digest):
                found = entry
        if found is None:
            return None
        return PrincipalToken(
            token=presented.hex(),  # what the SDK keeps for the request: the hash, not the token
            client_id=found.principal,
            subject=found.principal,
            scopes=[*self.scopes, DEFAULT_ADMIN_SCOPE] if found.admin else self.scopes,
            admin=found.admin,
        )


# ---- OAuth 2.1 (JWT access tokens) -----------------------------------------------------------------------------


@dataclass
class JwtSettings:
    issuer: str
    audience: str
    jwks_url: str | None  # None: discovered from the issuer's metadata
    admin_scope: str = DEFAULT_ADMIN_SCOPE
    leeway_s: int = 30


class JwtVerifier:
    """Validates a JWT access token: signature by a key of the issuer's JWKS, `iss`, `aud`, `exp`, `sub`."""

    def __init__(self, settings: JwtSettings) -> None:
        self.settings = settings
        self._jwks: Any = None  # jwt.PyJWKClient, created on first use (it caches the keys)

    async def verify_token(self, token: str) -> AccessToken | None:
        return await anyio.to_thread.run_sync(self._verify, token, abandon_on_cancel=True)

    def _verify(self, token: str) -> AccessToken | None:
        import jwt

        s = self.settings
        try:
            jwt.get_unverified_header(token)  # not a JWT at all (a mistyped static token): no trip to the issuer
            key = self._client().get_signing_key_from_jwt(token).key
            claims = jwt.decode(
                token,
                key,
                algorithms=list(JWT_ALGORITHMS),
                audience=s.audience,
                issuer=s.issuer,
                leeway=s.leeway_s,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            # The reason only (expired, wrong audience, bad signature, JWKS unreachable); never the token.
            log.info("http: bearer JWT refused: %s", type(exc).__name__)
            return None
        scopes = claims.get("scope", claims.get("scp", []))
        scopes = scopes.split() if isinstance(scopes, str) else [str(x) for x in scopes]
        subject = str(claims["sub"])
        return PrincipalToken(
            token=hashlib.sha256(token.encode()).hexdigest(),
            client_id=str(claims.get("client_id") or claims.get("azp") or subject),
            subject=subject,
            scopes=scopes,
            expires_at=int(claims["exp"]),
            resource=s.audience,
            claims={"iss": claims["iss"]},
            admin=s.admin_scope in scopes,
        )

    def _client(self) -> Any:
        import jwt

        if self._jwks is None:
            url = self.settings.jwks_url or discover_jwks_url(self.settings.issuer)
            self._jwks = jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=10)
        return self._jwks


def discover_jwks_url(issuer: str) -> str:
    """The issuer's `jwks_uri` from its RFC 8414 / OpenID metadata."""
    import jwt
    import requests

    base = issuer.rstrip("/")
    for well_known in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
        try:
            answer = requests.get(base + well_known, timeout=10)
            if answer.ok and isinstance(answer.json().get("jwks_uri"), str):
                return answer.json()["jwks_uri"]
        except (requests.RequestException, ValueError):
            continue
    raise jwt.PyJWKClientConnectionError("the issuer publishes no jwks_uri; set TAO_MCP_OAUTH_JWKS_URL")


class EitherVerifier:
    """Static tokens first (a cheap hash), then the JWT issuer."""

    def __init__(self, *verifiers: Any) -> None:
        self.verifiers = verifiers

    async def verify_token(self, token: str) -> AccessToken | None:
        for verifier in self.verifiers:
            accepted = await verifier.verify_token(token)
            if accepted is not None:
                return accepted
        return None


# ---- the HTTP plan ---------------------------------------------------------------------------------------------


@dataclass
class HttpPlan:
    """What `tao-mcp --http` runs with; `notices` go to stderr at start."""

    transport_security: TransportSecuritySettings
    auth: AuthSettings | None = None
    verifier: Any = None
    notices: list[str] = field(default_factory=list)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _words(value: str | None) -> list[str]:
    return [w for w in re.split(r"[,\s]+", value or "") if w]


def transport_security(
    host: str, allowed_hosts: Sequence[str], allowed_origins: Sequence[str]
) -> TransportSecuritySettings:
    """DNS-rebinding protection for every bind address: loopback names always, plus what the operator lists."""
    if not is_loopback(host) and not allowed_hosts:
        raise TaoError(
            "E_HTTP_UNSAFE_BIND",
            f"--host {host} is not a loopback address and no --allowed-hosts were given, so every Host header "
            "would be refused (or, unchecked, a DNS-rebinding page could reach the server)",
            "pass --allowed-hosts with the name(s) clients use, e.g. --allowed-hosts gpu-box.example.com:8765",
        )
    hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
    for name in allowed_hosts:
        hosts += [name] if ":" in name.rsplit("]", 1)[-1] else [name, f"{name}:*"]
    origins = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*", *allowed_origins]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)


def plan_http(
    settings: Mapping[str, str],
    *,
    host: str,
    port: int,
    allowed_hosts: Sequence[str] = (),
    allowed_origins: Sequence[str] = (),
    no_auth: bool = False,
) -> HttpPlan:
    """Check the HTTP settings before anything listens; a TaoError here stops the start."""
    get = lambda name: (settings.get(name) or "").strip()  # noqa: E731
    security = transport_security(host, allowed_hosts, allowed_origins)
    tokens_file, issuer = get("TAO_MCP_HTTP_TOKENS_FILE"), get("TAO_MCP_OAUTH_ISSUER")
    if no_auth:
        if not is_loopback(host):
            raise TaoError(
                "E_HTTP_UNSAFE_BIND",
                f"--no-auth is accepted on a loopback host only, not on {host}",
                "drop --no-auth and set TAO_MCP_HTTP_TOKENS_FILE or TAO_MCP_OAUTH_ISSUER (README: HTTP for a team)",
            )
        return HttpPlan(
            security,
            notices=[
                f"tao-mcp: WARNING: HTTP without authentication (--no-auth) on {host}:{port}: every local "
                "process can launch jobs with this server's credentials. For local tools only."
            ],
        )
    if not tokens_file and not issuer:
        raise TaoError(
            "E_HTTP_AUTH_REQUIRED",
            "--http needs authentication and none is configured",
            "set TAO_MCP_HTTP_TOKENS_FILE (static bearer tokens) or TAO_MCP_OAUTH_ISSUER (OAuth), see README: "
            "HTTP for a team; for a local tool on a loopback host only, pass --no-auth",
        )
    verifiers: list[Any] = []
    notices: list[str] = []
    required_scopes = _words(get("TAO_MCP_OAUTH_REQUIRED_SCOPES"))
    if tokens_file:
        entries = load_tokens_file(Path(tokens_file))
        verifiers.append(StaticTokenVerifier(entries, required_scopes))
        admins = sum(e.admin for e in entries)
        notices.append(f"tao-mcp: HTTP bearer tokens: {len(entries)} ({admins} admin) from TAO_MCP_HTTP_TOKENS_FILE")
    resource_url = None
    if issuer:
        resource_url = get("TAO_MCP_OAUTH_RESOURCE_URL")
        if not resource_url:
            if not is_loopback(host):
                raise TaoError(
                    "E_BAD_SETTING",
                    "TAO_MCP_OAUTH_RESOURCE_URL is not set and the server is not on a loopback host",
                    "set TAO_MCP_OAUTH_RESOURCE_URL to the URL clients use for /mcp, e.g. https://gpu-box:8765/mcp",
                )
            resource_url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/mcp"
        jwt_settings = JwtSettings(
            issuer=issuer,
            audience=get("TAO_MCP_OAUTH_AUDIENCE") or resource_url,
            jwks_url=get("TAO_MCP_OAUTH_JWKS_URL") or None,
            admin_scope=get("TAO_MCP_OAUTH_ADMIN_SCOPE") or DEFAULT_ADMIN_SCOPE,
        )
        verifiers.append(JwtVerifier(jwt_settings))
        notices.append(f"tao-mcp: HTTP OAuth: JWTs from {issuer} for audience {jwt_settings.audience}")
    try:
        auth = AuthSettings(
            # Without OAuth the issuer is never published (no resource URL, no auth routes); the SDK requires one.
            issuer_url=issuer or "http://127.0.0.1/",
            resource_server_url=resource_url,
            required_scopes=required_scopes or None,
            validate_token_resource=False,  # the JWT verifier checks `aud` itself
        )
    except ValueError as exc:
        raise TaoError(
            "E_BAD_SETTING",
            f"TAO_MCP_OAUTH_ISSUER / TAO_MCP_OAUTH_RESOURCE_URL is not an http(s) URL ({type(exc).__name__})",
            "set both to absolute URLs such as https://idp.example.com/realms/team",
        ) from None
    verifier = verifiers[0] if len(verifiers) == 1 else EitherVerifier(*verifiers)
    return HttpPlan(security, auth=auth, verifier=verifier, notices=notices)
