"""Docker fixtures: the repo's dev dockerd (scripts/dev/docker up) and, for outage tests, a second private dockerd
this test starts, stops and restarts itself (never the shared one: the Kubernetes dev kubelet runs on it)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backends import DOCKER_START, docker_sdk

START = DOCKER_START
DEV_DIR = Path(os.environ.get("TAO_DEV_DOCKER_DIR", "/var/tmp/tao-mcp-dev/docker"))
IMAGE_CACHE = Path(os.environ.get("TAO_MCP_DEV_CACHE", "/var/cache/tao-mcp-dev")) / "docker-images"
sdk = docker_sdk


@pytest.fixture(autouse=True)
def remove_test_containers(docker_cleanup: None) -> Iterator[None]:
    """Every Docker test removes the containers it made (docker_cleanup)."""
    yield


class PrivateDockerd:
    """A dockerd of our own (live-restore: its containers keep running while it is down)."""

    def __init__(self) -> None:
        # short path: containerd's socket lives under the exec root and unix socket paths are limited to 108 bytes
        self.dir = Path(tempfile.mkdtemp(prefix="tdo", dir="/tmp"))
        self.host = f"unix://{self.dir}/d.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        wrapper = DEV_DIR / "runc-nooom"
        if not wrapper.exists():
            pytest.fail(f"{wrapper} is missing: run `{START}`")
        log = open(self.dir / "dockerd.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [
                # its own network namespace: `dockerd --bridge=none` deletes the host's docker0 when it starts,
                # under the shared dev dockerd (and the Kubernetes kubelet's pods); unshare execs, so pid = dockerd
                "unshare",
                "--net",
                "--",
                "dockerd",
                "--host",
                self.host,
                "--data-root",
                str(self.dir / "data"),
                "--exec-root",
                str(self.dir / "x"),
                "--pidfile",
                str(self.dir / "d.pid"),
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--live-restore",
                "--add-runtime",
                f"nooom={wrapper}",
                "--default-runtime=nooom",
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                sdk(self.host).ping()
                return
            except Exception:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    tail = (self.dir / "dockerd.log").read_text(errors="replace").splitlines()[-15:]
                    pytest.fail("private dockerd did not start:\n" + "\n".join(tail))
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def load(self, image_tar: Path) -> None:
        with open(image_tar, "rb") as fh:
            sdk(self.host).images.load(fh.read())


@pytest.fixture
def private_dockerd(docker_settings: dict[str, str]) -> Iterator[PrivateDockerd]:
    daemon = PrivateDockerd()
    daemon.start()
    try:
        tar = IMAGE_CACHE / "ci-busybox.tar"
        if not tar.is_file():
            pytest.fail(f"{tar} is missing: run `{START}`")
        daemon.load(tar)
        yield daemon
    finally:
        if daemon.proc is None:  # left stopped by the test: start it to remove its containers cleanly
            daemon.start()
        try:
            client = sdk(daemon.host)
            for container in client.containers.list(all=True):
                container.remove(force=True)
        finally:
            daemon.stop()
            # dockerd bind-mounts its data root onto itself; it can stay mounted after the daemon exits
            subprocess.run(["umount", "-R", str(daemon.dir / "data")], capture_output=True)
            shutil.rmtree(daemon.dir, ignore_errors=True)
