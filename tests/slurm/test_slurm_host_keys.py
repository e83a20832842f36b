"""SSH trust survives a restart: accept-new keeps the login node's key in the state dir, a changed key is refused.

Against the dev cluster's real sshd (scripts/dev/slurm-cluster up). The operator's known_hosts is an empty
file here, so the key is learned the accept-new way.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tao_mcp.drivers.slurm import SlurmDriver
from tao_mcp.errors import TaoError
from tests.helpers import dev_settings

pytestmark = [pytest.mark.anyio, pytest.mark.slurm]

GENERATORS = {
    "ssh-ed25519": lambda: ed25519.Ed25519PrivateKey.generate(),
    "ecdsa-sha2-nistp256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "ssh-rsa": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def settings(tmp_path: Path) -> dict[str, str]:
    dev = dev_settings("slurm", "scripts/dev/slurm-cluster up")
    operator_file = tmp_path / "operator_known_hosts"
    operator_file.write_text("")
    return {**dev, "SLURM_SSH_KNOWN_HOSTS": str(operator_file), "TAO_MCP_STATE_DIR": str(tmp_path / "state")}


def real_key(settings: dict[str, str]) -> tuple[str, str, str]:
    """(known_hosts name, key type, base64) of the dev sshd, from the file the dev script wrote."""
    dev = dev_settings("slurm", "scripts/dev/slurm-cluster up")
    name = f"[{settings['SLURM_HOSTNAME'].split(',')[0]}]:{settings['SLURM_SSH_PORT']}"
    keys = paramiko.HostKeys(dev["SLURM_SSH_KNOWN_HOSTS"]).lookup(name)
    assert keys, f"{name} is not in the dev cluster's known_hosts"
    key_type, key = next(iter(keys.items()))
    return name, key_type, key.get_base64()


def other_key(key_type: str) -> str:
    """A freshly made public key of `key_type` in known_hosts form: `type base64`."""
    public = GENERATORS[key_type]().public_key()
    return public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


async def echo(settings: dict[str, str]) -> str:
    """A fresh driver (as after a restart) runs one command on the login node."""
    driver = SlurmDriver(settings)
    try:
        status, out, _ = await driver.ssh.run("echo trusted", failover=True, timeout=30)
        assert status == 0
        return out.strip()
    finally:
        await driver.aclose()


async def refused(settings: dict[str, str]) -> TaoError:
    with pytest.raises(TaoError) as err:
        await echo(settings)
    return err.value


async def test_accept_new_persists_the_key_and_a_changed_key_is_refused_after_restart(
    settings: dict[str, str],
) -> None:
    name, key_type, real = real_key(settings)
    learned = Path(settings["TAO_MCP_STATE_DIR"]) / "known_hosts"
    assert await echo(settings) == "trusted"
    assert learned.stat().st_mode & 0o077 == 0
    assert learned.read_text() == f"{name} {key_type} {real}\n"  # the key the server really has, kept
    assert await echo(settings) == "trusted"  # after a restart: the kept key matches
    assert learned.read_text().count("\n") == 1

    learned.write_text(f"{name} {other_key(key_type)}\n")  # as if the login node's key changed
    err = await refused(settings)
    assert err.code == "E_HOST_KEY_CHANGED"
    assert str(learned) in str(err) and f"ssh-keygen -R '{name}' -f {learned}" in str(err)

    # The fix the error gives works: remove the entry, and the next connection trusts the (real) key again.
    subprocess.run(["ssh-keygen", "-R", name, "-f", str(learned)], check=True, capture_output=True)
    assert await echo(settings) == "trusted"
    assert paramiko.HostKeys(str(learned)).lookup(name)[key_type].get_base64() == real


async def test_a_key_of_another_type_counts_as_changed(settings: dict[str, str]) -> None:
    name, key_type, _ = real_key(settings)
    learned = Path(settings["TAO_MCP_STATE_DIR"]) / "known_hosts"
    learned.parent.mkdir(mode=0o700)
    other_type = next(t for t in GENERATORS if t != key_type)
    learned.write_text(f"{name} {other_key(other_type)}\n")
    err = await refused(settings)
    assert err.code == "E_HOST_KEY_CHANGED" and str(learned) in str(err)
    assert learned.read_text().count("\n") == 1  # nothing was added


async def test_explicit_known_hosts_keeps_working_and_names_itself(settings: dict[str, str]) -> None:
    name, key_type, real = real_key(settings)
    operator_file = Path(settings["SLURM_SSH_KNOWN_HOSTS"])
    learned = Path(settings["TAO_MCP_STATE_DIR"]) / "known_hosts"
    operator_file.write_text(f"{name} {key_type} {real}\n")
    strict = {**settings, "SLURM_SSH_STRICT_HOST_KEY_CHECKING": "yes"}
    assert await echo(strict) == "trusted"
    assert await echo(settings) == "trusted"
    assert not learned.exists()  # a key the operator pinned is not copied

    operator_file.write_text(f"{name} {other_key(key_type)}\n")
    for mode in (settings, strict):
        err = await refused(mode)
        assert err.code == "E_HOST_KEY_CHANGED" and str(operator_file) in str(err)
    assert not learned.exists()
