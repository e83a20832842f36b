"""Which setting names hold secrets: one rule for the redactor and for the drivers that keep secrets out of a
child process's environment. A name is secret when it is a known credential or looks like one (…_TOKEN, …_KEY,
PASSWORD, …), unless it names a location, an identity or a setting (SSH_KEY_PATH, AUTH_MODE)."""

from __future__ import annotations

import re

# Credentials the server may hold whatever their names look like (the redactor masks them down to 4 chars).
CREDENTIAL_NAMES = frozenset(
    {
        "NGC_KEY",
        "NGC_API_KEY",
        "NGC_CLI_API_KEY",
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "WANDB_API_KEY",
        "ACCESS_KEY",
        "SECRET_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "LEPTON_AUTH_TOKEN",
        "BREV_API_TOKEN",
        "DOCKER_AUTH_CONFIG",
        "GITHUB_TOKEN",
    }
)

# A secret name: a segment ending in one of the strong words, or one of the short words as a whole segment.
SECRET_NAME = re.compile(
    r"(?:^|_)[A-Z0-9]*(?:TOKENS?|SECRETS?|PASSWORDS?|PASSWD|PASSPHRASE|APIKEY|CREDENTIALS?)(?:_|$)"
    r"|(?:^|_)(?:PASS|AUTH|KEY|KEYS|PAT|PSK|PRIVATE)(?:_|$)"
)
# ... unless the name says its value is a location, an identity or a setting (SSH_KEY_PATH, AUTH_MODE).
NOT_SECRET_NAME = re.compile(
    r"_(?:PATH|FILE|FILES|DIR|URL|URI|ENDPOINT|HOST|HOSTNAME|PORT|ID|SOCK|USER|USERNAME|NAME|TYPE|MODE|METHOD"
    r"|REGION|TIMEOUT|TIMEOUT_S|TTL|ENABLED|EXPIRY|LENGTH|HEADER|VERSION)$"
)


def is_secret_name(name: str) -> bool:
    upper = name.upper()
    if upper in CREDENTIAL_NAMES:
        return True
    return bool(SECRET_NAME.search(upper)) and not NOT_SECRET_NAME.search(upper)
