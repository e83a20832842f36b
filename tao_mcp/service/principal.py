"""Who is calling: the authenticated principal of the current request.

Over authenticated HTTP every request carries a principal (a tokens-file name or a JWT subject); it owns the
jobs it submits and sees only those, unless it is an admin. On stdio and on loopback `--no-auth` there is no
principal (None): one local user, who sees every job. The server binds the principal for the duration of
each request (a context variable), so the job service needs no extra argument on every call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol, TypeVar

from tao_mcp.errors import TaoError


@dataclass(frozen=True)
class Principal:
    name: str
    admin: bool = False


_current: ContextVar[Principal | None] = ContextVar("tao_mcp_principal", default=None)


def current() -> Principal | None:
    return _current.get()


@contextmanager
def acting_as(principal: Principal | None) -> Iterator[None]:
    token = _current.set(principal)
    try:
        yield
    finally:
        _current.reset(token)


def owner() -> str | None:
    """The name new jobs are recorded under (None: single-user mode)."""
    principal = current()
    return principal.name if principal else None


def visible_owner() -> tuple[bool, str | None]:
    """(restricted, name): whether the caller sees only the jobs of `name`."""
    principal = current()
    if principal is None or principal.admin:
        return False, None
    return True, principal.name


def may_see(job_owner: str | None) -> bool:
    restricted, name = visible_owner()
    return not restricted or job_owner == name


class Owned(Protocol):
    """A stored thing a principal owns: a job, a workflow, an AutoML run, a plan."""

    @property
    def principal(self) -> str | None: ...


T = TypeVar("T", bound=Owned)


def visible(found: T | None, code: str, cause: str, fix: str) -> T:
    """`found` when the caller may see it, else the coded "unknown" error (E_UNKNOWN_JOB, ...). Another principal's
    thing answers exactly like a missing one: no existence oracle."""
    if found is None or not may_see(found.principal):
        raise TaoError(code, cause, fix)
    return found


def scoped_key(idempotency_key: str) -> str:
    """Idempotency keys are per principal: another principal's key never returns (or reveals) its job."""
    name = owner()
    return idempotency_key if name is None else f"{name}\x1f{idempotency_key}"
