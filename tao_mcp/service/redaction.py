"""One redactor for everything that leaves the server: results, errors, log lines, stderr logging.

It replaces the value of every configured secret variable and well-known token shapes. Values are
compared verbatim; very short values are ignored (redacting "1" everywhere would destroy output).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "[REDACTED]"
MIN_SECRET_LEN = 6

# Names whose values are secrets even when no platform record lists them.
SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|ACCESS_KEY|PRIVATE_KEY|_KEY$|^NGC_KEY$|CREDENTIAL)")
NOT_SECRET_NAME = re.compile(r"(_PATH|_FILE|_URL|_DIR|_SOCK|_HOST|_ID)$")

TOKEN_SHAPES = re.compile(
    r"(nvapi-[A-Za-z0-9_-]{20,}"  # NGC / NVIDIA API keys
    r"|hf_[A-Za-z0-9]{20,}"  # Hugging Face tokens
    r"|AKIA[0-9A-Z]{16}"  # AWS access key ids
    r"|gh[pousr]_[A-Za-z0-9]{30,}"  # GitHub tokens
    r"|(?<=Bearer )[A-Za-z0-9._~+/=-]{16,}"  # bearer headers
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----)"
)


def is_secret_name(name: str) -> bool:
    return bool(SECRET_NAME.search(name)) and not NOT_SECRET_NAME.search(name)


class Redactor:
    def __init__(self, secret_values: Iterable[str] = ()) -> None:
        values = sorted({v for v in secret_values if v and len(v) >= MIN_SECRET_LEN}, key=len, reverse=True)
        self._values = re.compile("|".join(re.escape(v) for v in values)) if values else None

    @classmethod
    def from_settings(cls, settings: Mapping[str, str], extra_names: Iterable[str] = ()) -> Redactor:
        names = {n for n in settings if is_secret_name(n)} | set(extra_names)
        return cls(settings[n] for n in names if settings.get(n))

    def text(self, value: str) -> str:
        if self._values is not None:
            value = self._values.sub(MASK, value)
        return TOKEN_SHAPES.sub(MASK, value)

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
