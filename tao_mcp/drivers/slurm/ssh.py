"""A small pool of persistent SSH connections to the SLURM login node(s).

One paramiko SSHClient per host, kept open with keepalives and re-opened after a drop. Blocking paramiko calls
run in worker threads (`anyio.to_thread.run_sync(..., abandon_on_cancel=True)`): a cancelled MCP call stops
waiting at once, and the abandoned thread ends at its own deadline.

Failover: when a host cannot be reached (nothing has run yet) the next host in SLURM_HOSTNAME is tried. Once a
command has been sent, a drop is retried elsewhere only for `failover=True` commands (reads, scancel). For the
others (sbatch) the outcome is unknown and BackendUnreachable says so: the caller reconciles by job name.

paramiko is imported inside functions only: importing the driver must stay fast.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio

from tao_mcp.drivers.base import clip_text
from tao_mcp.errors import BackendUnreachable, TaoError

log = logging.getLogger(__name__)

PLATFORM = "slurm"
KEEPALIVE_S = 30
MAX_OUTPUT = 16 * 1024 * 1024  # bytes kept per stream; callers bound their output far below this


@dataclass(frozen=True)
class SSHConfig:
    hosts: Sequence[str]
    user: str
    port: int = 22
    key_path: str | None = None
    agent_sock: str | None = None
    known_hosts: str | None = None  # the operator's file (SLURM_SSH_KNOWN_HOSTS, else ~/.ssh/known_hosts): read only
    learned_hosts: str | None = None  # tao-mcp's own known_hosts (in the state dir): accept-new appends to it
    strict_host_keys: bool = False  # False = accept-new: trust an unknown host once, then insist on its key
    connect_timeout: float = 15.0


class _NotSent(Exception):
    """The connection failed before the command reached the host: safe to try again (anywhere)."""


class _Dropped(Exception):
    """The connection failed after the command was sent: it may have run."""


class SSHPool:
    def __init__(self, config: SSHConfig) -> None:
        if not config.hosts:
            raise TaoError("E_MISSING_CREDENTIALS", "SLURM_HOSTNAME is empty", "set SLURM_HOSTNAME to the login node")
        self.config = config
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()  # guards _clients and _preferred
        self._host_locks = {host: threading.Lock() for host in config.hosts}
        self._preferred = 0
        self._trust = HostTrust(config)

    # --- public, async ----------------------------------------------------------------------------------------

    async def run(self, cmd: str, *, failover: bool, timeout: float = 60.0, stdin: bytes | None = None):
        """Run one shell command on a login node -> (exit status, stdout, stderr) as text."""
        return await anyio.to_thread.run_sync(
            partial(self._run_sync, cmd, failover=failover, timeout=timeout, stdin=stdin), abandon_on_cancel=True
        )

    async def write_file(self, path: str, data: str | bytes, mode: int, *, timeout: float = 60.0) -> None:
        """Create or truncate `path`, chmod it to `mode` before the first byte is written, then write."""
        payload = data.encode() if isinstance(data, str) else data

        def op(sftp: Any) -> None:
            with sftp.open(path, "w") as handle:
                handle.chmod(mode)
                handle.write(payload)

        await self._sftp(op, f"write {path}", timeout)

    async def mkdir(self, path: str, mode: int, *, parents: bool = True, timeout: float = 60.0) -> None:
        """mkdir -p; the last component gets `mode` (chmod after mkdir: the remote umask does not apply)."""

        def op(sftp: Any) -> None:
            parts = [p for p in path.split("/") if p]
            current = ""
            for i, part in enumerate(parts):
                current += "/" + part
                last = i == len(parts) - 1
                if not last and not parents:
                    continue
                try:
                    sftp.stat(current)
                except FileNotFoundError:
                    sftp.mkdir(current, 0o755 if not last else mode)
                if last:
                    sftp.chmod(current, mode)

        await self._sftp(op, f"mkdir {path}", timeout)

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self._close_all)

    # --- connections ------------------------------------------------------------------------------------------

    def _host_order(self) -> list[str]:
        hosts = list(self.config.hosts)
        with self._lock:
            start = self._preferred
        return hosts[start:] + hosts[:start]

    def _mark_good(self, host: str) -> None:
        with self._lock:
            self._preferred = list(self.config.hosts).index(host)

    def _client(self, host: str) -> Any:
        """The live client for `host`, connecting (or reconnecting after a drop) when needed."""
        with self._host_locks[host]:
            client = self._clients.get(host)
            transport = client.get_transport() if client is not None else None
            if transport is not None and transport.is_active():
                return client
            if client is not None:
                log.info("ssh: connection to %s dropped; reconnecting", host)
                client.close()
            client = self._connect(host)
            self._clients[host] = client
            return client

    def _drop(self, host: str, client: Any) -> None:
        with self._host_locks[host]:
            if self._clients.get(host) is client:
                del self._clients[host]
        client.close()

    def _connect(self, host: str) -> Any:
        import paramiko

        cfg = self.config
        client = paramiko.SSHClient()
        self._trust.load(client)
        client.set_missing_host_key_policy(paramiko.RejectPolicy() if cfg.strict_host_keys else self._trust)
        base = {
            "hostname": host,
            "port": cfg.port,
            "username": cfg.user,
            "timeout": cfg.connect_timeout,
            "banner_timeout": cfg.connect_timeout,
            "auth_timeout": cfg.connect_timeout,
            "look_for_keys": False,
            "allow_agent": False,
        }
        try:
            if cfg.key_path:
                client.connect(**base, pkey=_load_key(cfg.key_path))
            else:
                self._connect_with_agent(client, base)
        except TaoError:
            client.close()
            raise
        except paramiko.BadHostKeyException:
            client.close()
            raise self._trust.changed(host) from None
        except paramiko.AuthenticationException:
            client.close()
            raise TaoError(
                "E_SSH_AUTH",
                f"{host} refused the SSH key for SLURM_USER"
                + (" (from SSH_KEY_PATH)" if cfg.key_path else " (from the agent at SSH_AUTH_SOCK)"),
                "check SLURM_USER and that the key's public half is in ~/.ssh/authorized_keys on the login node",
            ) from None
        except paramiko.SSHException as exc:
            client.close()
            if "not found in known_hosts" in str(exc):
                raise TaoError(
                    "E_SSH_HOSTKEY",
                    f"{host} is not in the known_hosts file and SLURM_SSH_STRICT_HOST_KEY_CHECKING=yes",
                    "add the login node's key to the file named by SLURM_SSH_KNOWN_HOSTS (ssh-keyscan), "
                    "or set SLURM_SSH_STRICT_HOST_KEY_CHECKING=accept-new",
                ) from None
            raise _NotSent(f"{host}:{cfg.port}: {exc}") from None
        except (OSError, EOFError) as exc:
            client.close()
            raise _NotSent(f"{host}:{cfg.port}: {_describe(exc)}") from None
        transport = client.get_transport()
        transport.set_keepalive(KEEPALIVE_S)
        log.debug("ssh: connected to %s@%s:%s", cfg.user, host, cfg.port)
        return client

    def _connect_with_agent(self, client: Any, base: dict[str, Any]) -> None:
        import paramiko

        sock_path = self.config.agent_sock
        if not sock_path:
            raise TaoError(
                "E_SSH_AUTH",
                "neither SSH_KEY_PATH nor SSH_AUTH_SOCK is set",
                "set SSH_KEY_PATH to a private key file, or SSH_AUTH_SOCK to a running ssh-agent",
            )
        keys = _agent_keys(sock_path)
        if not keys:
            raise TaoError(
                "E_SSH_AUTH",
                "the ssh-agent at SSH_AUTH_SOCK holds no keys",
                "add the cluster key to the agent (ssh-add) or set SSH_KEY_PATH",
            )
        last: Exception | None = None
        for key in keys:
            try:
                client.connect(**base, pkey=key)
                return
            except paramiko.AuthenticationException as exc:
                last = exc
        assert last is not None
        raise last

    def _close_all(self) -> None:
        with self._lock:
            clients, self._clients = dict(self._clients), {}
        for client in clients.values():
            client.close()

    # --- commands ---------------------------------------------------------------------------------------------

    def _run_sync(self, cmd: str, *, failover: bool, timeout: float, stdin: bytes | None) -> tuple[int, str, str]:
        log.debug("ssh: run %s", clip_text(cmd, 2000))
        errors: list[str] = []
        dropped = False  # a command that was sent and whose answer was lost (failover reads only get here)
        for host in self._host_order():
            for attempt in (1, 2):  # a stale pooled connection gets one fresh retry on the same host
                try:
                    client = self._client(host)
                except _NotSent as exc:
                    errors.append(str(exc))
                    break
                try:
                    result = _exec(client, cmd, timeout, stdin)
                except _NotSent as exc:
                    self._drop(host, client)
                    errors.append(f"{host}: {exc}")
                    if attempt == 1:
                        continue
                    break
                except _Dropped as exc:
                    self._drop(host, client)
                    if not failover:
                        raise BackendUnreachable(
                            PLATFORM,
                            f"the connection to {host} dropped after the command was sent ({exc}); "
                            "whether it ran is unknown",
                            "do not resubmit: the job is reconciled by its name on the next status check "
                            "(job_status / wait_for_job)",
                        ) from None
                    errors.append(f"{host}: {exc}")
                    dropped = True
                    break
                self._mark_good(host)
                return result
        # Only _NotSent failures (no connection, or the channel would not open): the command never left.
        raise BackendUnreachable(
            PLATFORM, "; ".join(errors) or "no login node reachable", sent=None if dropped else False
        )

    async def _sftp(self, op: Any, what: str, timeout: float) -> None:
        await anyio.to_thread.run_sync(partial(self._sftp_sync, op, what, timeout), abandon_on_cancel=True)

    def _sftp_sync(self, op: Any, what: str, timeout: float) -> None:
        """SFTP operations are idempotent (mkdir -p, write with truncate): retried on another host after a drop."""
        import paramiko

        errors: list[str] = []
        for host in self._host_order():
            try:
                client = self._client(host)
            except _NotSent as exc:
                errors.append(str(exc))
                continue
            try:
                sftp = client.open_sftp()
            except (paramiko.SSHException, OSError, EOFError) as exc:
                self._drop(host, client)
                errors.append(f"{host}: sftp: {_describe(exc)}")
                continue
            try:
                sftp.get_channel().settimeout(timeout)
                op(sftp)
                self._mark_good(host)
                return
            except PermissionError:
                raise TaoError(
                    "E_SLURM_STAGING",
                    f"permission denied on the cluster while trying to {what}",
                    "set SLURM_BASE_RESULTS_DIR to a directory SLURM_USER can write",
                ) from None
            except (TimeoutError, EOFError, paramiko.SSHException) as exc:
                self._drop(host, client)
                errors.append(f"{host}: {what}: {_describe(exc)}")
                continue
            except OSError as exc:
                raise TaoError(
                    "E_SLURM_STAGING",
                    f"the cluster refused to {what}: {_describe(exc)}",
                    "check that SLURM_BASE_RESULTS_DIR exists (or can be created) and has free space",
                ) from None
            finally:
                sftp.close()
        raise BackendUnreachable(PLATFORM, "; ".join(errors) or "no login node reachable")


def _exec(client: Any, cmd: str, timeout: float, stdin: bytes | None) -> tuple[int, str, str]:
    import paramiko

    transport = client.get_transport()
    if transport is None or not transport.is_active():
        raise _NotSent("connection closed")
    try:
        chan = transport.open_session(timeout=min(timeout, 30))
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise _NotSent(f"cannot open a channel: {_describe(exc)}") from None
    deadline = time.monotonic() + timeout
    out, err = bytearray(), bytearray()
    try:
        chan.settimeout(timeout)
        try:
            chan.exec_command(cmd)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            # exec_command only returns once the server accepted the request: a failure here may still have run.
            raise _Dropped(_describe(exc)) from None
        try:
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
            while True:
                while chan.recv_ready():
                    _append(out, chan.recv(65536))
                while chan.recv_stderr_ready():
                    _append(err, chan.recv_stderr(65536))
                if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                    break
                if chan.closed or not transport.is_active():
                    raise _Dropped("connection lost while the command ran")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _Dropped(f"no answer within {timeout:.0f} s")
                select.select([chan], [], [], min(remaining, 1.0))
            status = chan.recv_exit_status()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise _Dropped(_describe(exc)) from None
    finally:
        chan.close()
    return status, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def _append(buffer: bytearray, data: bytes) -> None:
    room = MAX_OUTPUT - len(buffer)
    if room > 0:
        buffer += data[:room]


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _load_key(path: str) -> Any:
    """Load the private key at SSH_KEY_PATH (never echoing the path's content or a passphrase)."""
    import paramiko

    expanded = os.path.expanduser(path)
    if not os.path.isfile(expanded) or not os.access(expanded, os.R_OK):
        raise TaoError(
            "E_SSH_AUTH",
            "the file named by SSH_KEY_PATH does not exist or is not readable by the server",
            "set SSH_KEY_PATH to a readable private key file (or use SSH_AUTH_SOCK with an ssh-agent)",
        )
    errors = []
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key_file(expanded)
        except paramiko.PasswordRequiredException:
            raise TaoError(
                "E_SSH_AUTH",
                "the key named by SSH_KEY_PATH is protected by a passphrase",
                "load it into an ssh-agent (ssh-add) and set SSH_AUTH_SOCK instead of SSH_KEY_PATH",
            ) from None
        except (paramiko.SSHException, ValueError) as exc:
            errors.append(type(exc).__name__)
    raise TaoError(
        "E_SSH_AUTH",
        "the file named by SSH_KEY_PATH is not a private key paramiko can read (ed25519, ecdsa or rsa)",
        "point SSH_KEY_PATH at an OpenSSH private key",
    )


def _agent_keys(sock_path: str) -> list[Any]:
    """Keys of the ssh-agent at `sock_path` (SSH_AUTH_SOCK from the settings, not necessarily os.environ)."""
    import paramiko

    class _Agent(paramiko.agent.AgentSSH):
        def __init__(self, path: str) -> None:
            super().__init__()
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.settimeout(10)
            conn.connect(path)
            self._connect(conn)

    try:
        return list(_Agent(sock_path).get_keys())
    except (OSError, paramiko.SSHException) as exc:
        raise TaoError(
            "E_SSH_AUTH",
            f"cannot talk to the ssh-agent at SSH_AUTH_SOCK ({type(exc).__name__})",
            "start ssh-agent and export SSH_AUTH_SOCK, or set SSH_KEY_PATH",
        ) from None


class HostTrust:
    """Which host keys are trusted: the operator's known_hosts (read only) plus tao-mcp's own file in the state
    dir. With accept-new (the missing-host-key policy) a host seen for the first time is trusted and its key
    appended to the own file, so after a restart a different key is refused (E_HOST_KEY_CHANGED), not trusted
    again. paramiko asks this policy only about hosts with no key at all: a host known under another key type
    is a changed key (BadHostKeyException), so a man in the middle cannot pass by offering a new key type."""

    def __init__(self, config: SSHConfig) -> None:
        self.operator_file = config.known_hosts or os.path.expanduser("~/.ssh/known_hosts")
        self.explicit = config.known_hosts is not None
        self.learned_file = config.learned_hosts
        self.port = config.port
        self._learned: dict[str, Any] = {}  # keys accepted by this process (when there is no file to keep them)
        self._lock = threading.Lock()

    def key_name(self, host: str) -> str:
        """The known_hosts name of `host` (OpenSSH and paramiko write `[host]:port` for a port other than 22)."""
        return host if self.port == 22 else f"[{host}]:{self.port}"

    def load(self, client: Any) -> None:
        import paramiko

        for path, what in ((self.operator_file, self._operator_setting()), (self.learned_file, "the own")):
            if path and os.path.exists(path):
                try:
                    client.load_system_host_keys(path)  # read only: paramiko never writes these back
                except (OSError, paramiko.SSHException) as exc:
                    raise TaoError(
                        "E_SSH_HOSTKEY",
                        f"{what} known_hosts file {path} cannot be read ({type(exc).__name__})",
                        f"make {path} a readable known_hosts file (or delete tao-mcp's own file to trust anew)",
                    ) from None
        hostkeys = client.get_host_keys()
        with self._lock:
            for name, key in self._learned.items():
                hostkeys.add(name, key.get_name(), key)

    def _operator_setting(self) -> str:
        return "the SLURM_SSH_KNOWN_HOSTS" if self.explicit else "the user's"

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        """paramiko's policy hook: `hostname` is already in known_hosts form (`[host]:port`)."""
        import paramiko

        log.warning(
            "ssh: trusting the new %s host key of %s (%s) and keeping it in %s — set SLURM_SSH_KNOWN_HOSTS and "
            "SLURM_SSH_STRICT_HOST_KEY_CHECKING=yes to pin keys yourself",
            key.get_name(),
            hostname,
            getattr(key, "fingerprint", "fingerprint unavailable"),
            self.learned_file or "memory",
        )
        with self._lock:
            self._learned[hostname] = key
            if self.learned_file:
                self._append(paramiko.hostkeys.HostKeyEntry([hostname], key).to_line())
        client.get_host_keys().add(hostname, key.get_name(), key)

    def _append(self, line: str) -> None:
        assert self.learned_file is not None
        folder = os.path.dirname(self.learned_file)
        os.makedirs(folder, mode=0o700, exist_ok=True)
        fd = os.open(self.learned_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as handle:
            handle.write(line)

    def changed(self, host: str) -> TaoError:
        """E_HOST_KEY_CHANGED naming the file that holds the key trusted so far."""
        import paramiko

        name = self.key_name(host)
        path = self.operator_file
        if self.learned_file and os.path.exists(self.learned_file):
            own = paramiko.HostKeys()
            own.load(self.learned_file)
            operator = paramiko.HostKeys()
            if os.path.exists(self.operator_file):
                operator.load(self.operator_file)
            if own.lookup(name) and not operator.lookup(name):
                path = self.learned_file
        return TaoError(
            "E_HOST_KEY_CHANGED",
            f"the SSH host key of {name} is not the one trusted before (kept in {path}): the login node was "
            "reinstalled or someone is in the middle; nothing was sent to it",
            f"check the new key's fingerprint with the cluster admins, then remove the old entry with "
            f"`ssh-keygen -R '{name}' -f {path}` (with accept-new the next connection then trusts the new key)",
        )
