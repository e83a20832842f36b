"""One redactor for everything that leaves the server or is stored: results, notifications, errors, log
windows, store rows, stderr logging.

It knows every secret the server holds and masks three kinds of text:
- known values: every configured credential variable, every name forwarded with `secret_env` (registered
  while the server runs), the password of any URL in the settings, each line of a multi-line value and the
  string leaves of a JSON value (DOCKER_AUTH_CONFIG), plus the encoded forms of each value: base64 (standard
  and URL-safe, the substrings that are the same at all three byte alignments, with the neighbouring partial
  characters), URL-encoding, JSON escaping, hex. Configured credentials are masked down to 4 characters.
- secret shapes: PEM private keys with a body (also the part of one a window cut; armor text alone, as in
  `grep -- '-----BEGIN RSA PRIVATE KEY-----'`, is no key), URL userinfo, Authorization headers,
  `NAME=value` where NAME is a secret name, well-known token formats (nvapi-, hf_, AKIA, ghp_ ...); a shell
  variable in a secret's place (`Bearer $NGC_KEY`) is a reference, not a secret.
- nothing else: ordinary words must survive (tests run it over a real training log).

Masking preserves line breaks (a masked PEM key of 28 lines becomes 28 mask lines), so line numbers of a
redacted log window stay true.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import string
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import yaml

from tao_mcp.secret_names import CREDENTIAL_NAMES, is_secret_name

MASK = "[REDACTED]"
MIN_SECRET_LEN = 4  # a configured credential is masked down to this length
MIN_GUESSED_LEN = 8  # a value known only by its variable's name
MIN_ENCODED_LEN = 6  # shorter encoded fragments would hit ordinary text

# Values a guessed name may hold that are settings, not secrets.
PLAIN_VALUE = re.compile(r"(?i)^(?:true|false|yes|no|on|off|none|null|\d{1,7}|[~.]?/\S*)$")


@dataclass(frozen=True)
class Rule:
    """A secret shape. `group` names the part masked (None: the whole match); the regex runs only when one of
    `markers` is in the text (lowercased when `fold`): most log windows skip most rules at the cost of a find.
    A match that does not also contain `needs` is left alone."""

    markers: tuple[str, ...]
    pattern: re.Pattern[str]
    group: str | None = None
    fold: bool = True
    needs: re.Pattern[str] | None = None


def _rule(markers: str, pattern: str, group: str | None = None, fold: bool = True, needs: str | None = None) -> Rule:
    return Rule(tuple(markers.split("|")), re.compile(pattern), group, fold, re.compile(needs) if needs else None)


# A reference standing for a whole value: a shell variable (`Bearer $NGC_KEY`, `--password ${PASS}`), the way a
# command uses a secret it was given by name, or a template placeholder (`f"Bearer {token}"`). Not a secret: the
# shapes below never mask one.
VAR_REF = r"(?:\$[A-Za-z_]\w*|\$?\{[A-Za-z_]\w*\})(?=[\s\"',;@]|$)"

# A PEM body line (64 base64 characters) always holds such a run; armor lines and quoted mentions of them do not.
PEM_BODY = r"[A-Za-z0-9+/]{16}"

RULES = (
    # PEM private keys, also the part of one a log window cut at its start or end. The armor line must touch its
    # body (a line break, an escaped one, a space or the body itself) and the match must hold body text: a command
    # that only names the armor (`echo "-----BEGIN RSA PRIVATE KEY-----"`, a grep for it) holds no key.
    _rule(
        "private key-----",
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?=[\s\\A-Za-z0-9+/]|\Z)"
        r"[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
        needs=PEM_BODY,
    ),
    _rule(
        "private key-----",
        r"\A(?:(?!-----BEGIN )[\s\S])*?(?<=[\sA-Za-z0-9+/=])-----END [A-Z0-9 ]*PRIVATE KEY-----",
        needs=PEM_BODY,
    ),
    # Well-known token formats: NGC, Hugging Face, AWS key ids, GitHub, Slack, JWTs.
    _rule("nvapi-", r"nvapi-[A-Za-z0-9_-]{20,}"),
    _rule("hf_", r"\bhf_[A-Za-z0-9]{20,}"),
    _rule("akia", r"\bAKIA[0-9A-Z]{16}\b"),
    _rule("p_|o_|u_|s_|r_", r"\bgh[pousr]_[A-Za-z0-9]{30,}"),
    _rule("github_pat_", r"\bgithub_pat_[A-Za-z0-9_]{30,}"),
    _rule("xox", r"\bxox[abpr]-[A-Za-z0-9-]{10,}"),
    _rule("eyj", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
    # URL userinfo: https://user:pass@host, https://<token>@host (not ssh://git@host).
    _rule("@", rf"\b[A-Za-z][A-Za-z0-9+.-]*://(?P<s>[^\s/@:]*:(?!{VAR_REF})[^\s/@]*|[A-Za-z0-9_.~+-]{{16,}})@", "s"),
    # Authorization headers and API-key headers, as curl or a client library prints them.
    _rule(
        "authorization",
        r"(?i:\b(?:proxy-)?authorization\b[\"']?\s*[:=]\s*[\"']?(?>(?:(?:bearer|basic|token|bot)\s+)?))"
        rf"(?P<s>(?!{VAR_REF})[^\s\"',;]{{4,}})",
        "s",
    ),
    _rule(
        "api-key|private-token|auth-token",
        r"(?i:\b(?:x-api-key|api-key|private-token|x-auth-token)\b[\"']?\s*[:=]\s*[\"']?)"
        rf"(?P<s>(?!{VAR_REF})[^\s\"',;]{{4,}})",
        "s",
    ),
    _rule(
        "--", rf"(?i:--(?:password|passwd|token|api-key|apikey|secret|passphrase)[= ])(?P<s>(?!{VAR_REF})\S{{4,}})", "s"
    ),
    # "password": "...", 'api_key': '...' in JSON, YAML flow maps and Python reprs.
    _rule(
        "pass|secret|key|token",
        r"(?i:[\"'](?:[a-z0-9_]*_)?(?:password|passwd|passphrase|secret|api_?key|access_?token|auth_?token|"
        rf"secret_?key|private_?key|client_?secret|hf_token|ngc_key)[\"']\s*:\s*[\"'])(?P<s>(?!{VAR_REF})[^\"']{{4,}})",
        "s",
    ),
    # NAME=value where NAME is a secret name (an `env` dump, a shell trace); not NAME=$NAME or NAME=<placeholder>.
    _rule(
        "TOKEN|SECRET|PASS|KEY|AUTH|CREDENTIAL|PAT|PSK|PRIVATE",
        r"\b(?P<n>[A-Z][A-Z0-9_]*)=(?P<s>(?![<$])[^\s\"']{4,}|\"(?![<$])[^\"\n]{4,}\"|'(?![<$])[^'\n]{4,}')",
        "s",
        fold=False,
    ),
)
URL_USERINFO = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:]*:([^\s/@]+)@")
B64_ALPHABETS = {
    "std": frozenset(string.ascii_letters + string.digits + "+/"),
    "url": frozenset(string.ascii_letters + string.digits + "-_"),
}


def _masked(text: str) -> str:
    """One mask per line of `text`: line numbers survive."""
    return "\n".join([MASK] * (text.count("\n") + 1))


def _apply(rule: Rule, text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        if rule.needs is not None and not rule.needs.search(match.group()):
            return match.group()
        if rule.group is None:
            return _masked(match.group())
        if "n" in rule.pattern.groupindex and not is_secret_name(match.group("n")):
            return match.group()
        start, end = (i - match.start() for i in match.span(rule.group))
        whole = match.group()
        return whole[:start] + _masked(whole[start:end]) + whole[end:]

    return rule.pattern.sub(replace, text)


def _sub_known(pattern: re.Pattern[str], text: str) -> str:
    """Mask known values; a base64 fragment takes its partial neighbour characters and padding with it."""
    out: list[str] = []
    done = 0
    for match in pattern.finditer(text):
        start, end = match.span()
        alphabet = B64_ALPHABETS.get(match.lastgroup or "")
        if alphabet is not None:
            for _ in range(2):
                if start > done and text[start - 1] in alphabet:
                    start -= 1
            for _ in range(3):
                if end < len(text) and text[end] in alphabet:
                    end += 1
            while end < len(text) and text[end] == "=":
                end += 1
        start = max(start, done)
        if end <= start:
            continue
        out += [text[done:start], _masked(text[start:end])]
        done = end
    return "".join(out) + text[done:] if out else text


def base64_cores(raw: bytes) -> set[str]:
    """The base64 characters that encode only `raw`, at each of the three alignments it may sit at inside a
    longer encoded stream (standard and URL-safe alphabets)."""
    cores = set()
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode().rstrip("=")
        first = -(-8 * shift // 6)  # the first character whose six bits all come from `raw`
        last = (8 * (shift + len(raw))) // 6  # one past the last such character
        core = encoded[first:last]
        if len(core) >= MIN_ENCODED_LEN:
            cores.add(core)
            cores.add(core.replace("+", "-").replace("/", "_"))
    return cores


def encoded_forms(value: str) -> set[str]:
    """JSON-escaped, URL-encoded and hex forms of a value (the base64 ones are `base64_cores`)."""
    raw = value.encode()
    forms = {
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        quote(value, safe=""),
        quote_plus(value, safe=""),
        quote(value, safe="/:@"),
        raw.hex(),
        raw.hex().upper(),
    }
    return {f for f in forms if f != value and len(f) >= MIN_ENCODED_LEN}


def _literal(word: str) -> str:
    """`word` as a regex; its %XX escapes match in either case (%2f and %2F)."""
    return re.sub(r"%([0-9A-F])([0-9A-F])", lambda m: f"%[{m[1]}{m[1].lower()}][{m[2]}{m[2].lower()}]", re.escape(word))


def _alternation(words: Iterable[str]) -> str:
    """A regex matching any of `words`, longest first (alternation takes the first branch that matches)."""
    return "|".join(_literal(w) for w in sorted(set(words), key=lambda w: (-len(w), w)))


class Redactor:
    """Masks the secrets it was told about and secret shapes. Thread-safe; values can be added while serving."""

    def __init__(self, secret_values: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(secret_values)

    @classmethod
    def from_settings(cls, settings: Mapping[str, str], extra_names: Iterable[str] = ()) -> Redactor:
        redactor = cls()
        redactor.add_settings(settings, extra_names)
        return redactor

    def add_settings(self, settings: Mapping[str, str], names: Iterable[str] = ()) -> None:
        """Register the values of secret-named settings, of `names` (forwarded with secret_env), and the
        password of every URL in the settings."""
        values: list[str] = []
        forced = set(names)
        for name, value in settings.items():
            if not value:
                continue
            values += URL_USERINFO.findall(value)
            known = name in forced or name.upper() in CREDENTIAL_NAMES
            guessed = is_secret_name(name) and len(value) >= MIN_GUESSED_LEN and not PLAIN_VALUE.match(value.strip())
            if known or guessed:
                values.append(value)
        self.add(values)

    def add(self, values: Iterable[str]) -> None:
        """Register secret values (and, through them, their lines, JSON leaves and encoded forms)."""
        fresh = set()
        for value in values:
            for item in _parts(value):
                if len(item) >= MIN_SECRET_LEN and MASK not in item and item not in self._values:
                    fresh.add(item)
        if not fresh:
            return
        with self._lock:
            self._values |= fresh
            plain: set[str] = set()
            std: set[str] = set()
            url: set[str] = set()
            for value in self._values:
                plain.add(value)
                plain |= encoded_forms(value)
                for core in base64_cores(value.encode()):
                    (url if ("-" in core or "_" in core) else std).add(core)
            branches = [f"(?P<plain>{_alternation(plain)})"]
            branches += [f"(?P<{name}>{_alternation(cores)})" for name, cores in (("std", std), ("url", url)) if cores]
            self._pattern = re.compile("|".join(branches))

    @property
    def longest(self) -> int:
        """Length of the longest known value (a cut raw line drops this much of its end before redaction)."""
        with self._lock:
            return max((len(v) for v in self._values), default=0)

    def text(self, value: str) -> str:
        pattern = self._pattern
        if pattern is not None:
            value = _sub_known(pattern, value)
        folded = value.lower()
        for rule in RULES:
            haystack = folded if rule.fold else value
            if any(marker in haystack for marker in rule.markers):
                value = _apply(rule, value)
                folded = value.lower()
        return value

    def data(self, value: Any) -> Any:
        """Redact every string inside JSON-like data (dict keys included)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.data(k): self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return value

    def contains_secret(self, value: str) -> bool:
        return self.text(value) != value


KUBE_USER_SECRETS = ("token", "password", "client-key-data", "id-token", "refresh-token", "access-token")
MAX_SECRET_FILE_BYTES = 1 << 20


def file_secrets(settings: Mapping[str, str]) -> list[str]:
    """Secrets the server holds in files its settings name: the kubeconfig's user credentials (tokens,
    passwords, client keys, auth-provider tokens, exec plugin env values) and the SSH private key. Unreadable
    or malformed files give nothing here (the driver reports them)."""
    values: list[str] = []
    kubeconfigs = settings.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())
    for name in filter(None, kubeconfigs.split(os.pathsep)):
        text = _read_small(name)
        try:
            config = yaml.safe_load(text) if text else None
        except yaml.YAMLError:
            continue
        users = config.get("users") if isinstance(config, dict) else None
        for entry in users if isinstance(users, list) else []:
            user = entry.get("user") if isinstance(entry, dict) else None
            if isinstance(user, dict):
                values += _kube_user_secrets(user)
    key = _read_small(settings.get("SSH_KEY_PATH") or "")
    if key:
        values.append(key)  # its lines are registered too: a partial print of the key is masked
    return [v for v in values if v and v != "None"]


def _kube_user_secrets(user: dict[str, Any]) -> list[str]:
    values = [str(user[k]) for k in KUBE_USER_SECRETS if user.get(k)]
    provider = user.get("auth-provider")
    config = provider.get("config") if isinstance(provider, dict) else None
    if isinstance(config, dict):
        values += [v for k, v in config.items() if isinstance(v, str) and is_secret_name(str(k).replace("-", "_"))]
    plugin = user.get("exec")
    env = plugin.get("env") if isinstance(plugin, dict) else None
    values += [
        str(e["value"])
        for e in env or []
        if isinstance(e, dict) and e.get("value") and is_secret_name(str(e.get("name")))
    ]
    return values


def _read_small(path: str) -> str:
    try:
        file = Path(path).expanduser()
        return (
            file.read_text(errors="replace") if file.is_file() and file.stat().st_size <= MAX_SECRET_FILE_BYTES else ""
        )
    except OSError:
        return ""


def _parts(value: str) -> list[str]:
    """A value, each line of a multi-line value, and the string leaves of a JSON value."""
    parts = [value, value.strip()]
    lines = [line.strip() for line in value.splitlines()]
    if len(lines) > 1:
        # PEM armor lines are not secret, and masking them would hide the key's shape from the PEM rule.
        parts += [line for line in lines if len(line) >= MIN_GUESSED_LEN and not line.startswith("-----")]
    if value.lstrip()[:1] in ("{", "["):
        try:
            leaves = [leaf for leaf in _leaves(json.loads(value)) if len(leaf) >= MIN_GUESSED_LEN]
        except ValueError:
            leaves = []
        parts += leaves
        for leaf in leaves:  # registry auths are base64("user:password")
            decoded = _b64text(leaf)
            if decoded:
                parts += [decoded, decoded.partition(":")[2]]
    return parts


def _b64text(value: str) -> str | None:
    try:
        text = base64.b64decode(value, validate=True).decode()
    except ValueError:
        return None
    return text if text.isprintable() else None


def _leaves(data: Any) -> list[str]:
    if isinstance(data, str):
        return [data]
    if isinstance(data, dict):
        return [leaf for v in data.values() for leaf in _leaves(v)]
    if isinstance(data, list):
        return [leaf for v in data for leaf in _leaves(v)]
    return []


class RedactingFilter(logging.Filter):
    """Redacts log records before any handler formats them (stderr is visible to MCP hosts)."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = self.redactor.text(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor.text(record.exc_text)
        return True
