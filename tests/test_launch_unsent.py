"""A backend that goes away between the readiness probe and the launch: when the driver knows the job-creating
request never left (the connection was refused), submit_job answers E_BACKEND_UNREACHABLE and records nothing;
"launch outcome unknown" stays for a request that was sent and whose answer was lost."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from fixtures.faultproxy import FaultProxy
from fixtures.lepton.fake_lepton import FakeLepton
from tests.helpers import call, call_error, mcp_client

pytestmark = pytest.mark.anyio

JOB = {"command": "echo hi", "gpu_count": 0, "idempotency_key": "unsent-1"}


def proxy_for(host: str, port: int) -> FaultProxy:
    return FaultProxy((host, port)).start()


@pytest.fixture
def lepton_proxy(fake_lepton: FakeLepton) -> Iterator[FaultProxy]:
    url = urlsplit(fake_lepton.url)
    proxy = proxy_for(url.hostname or "127.0.0.1", url.port or 80)
    yield proxy
    proxy.stop()


async def test_lepton_refused_at_launch_records_nothing(
    lepton_env: dict[str, str], fake_lepton: FakeLepton, lepton_proxy: FaultProxy
) -> None:
    url = urlsplit(fake_lepton.url)
    env = {**lepton_env, "LEPTON_WORKSPACE_URL": fake_lepton.url.replace(url.netloc, lepton_proxy.address)}
    args = {**JOB, "platform": "lepton", "image": "python:3.11-slim"}
    async with mcp_client(env) as c:
        ready = await call(c, "list_platforms", platform="lepton")
        assert ready["platform"]["state"] == "ready", ready  # the probe answered (and is cached)
        await call(c, "submit_job", **args, dry_run=True)  # resolves the node group while it is up
        lepton_proxy.set_mode("refuse")
        text = await call_error(c, "submit_job", **args)
        assert text.startswith("E_BACKEND_UNREACHABLE:") and "nothing was sent" in text, text
        assert "unknown" not in text and "do not resubmit" not in text, text
        assert (await call(c, "list_jobs"))["jobs"] == []
        assert not fake_lepton.posted_jobs()
        lepton_proxy.set_mode("pass")  # the same idempotency key launches once the backend is back
        sub = await call(c, "submit_job", **args)
        assert sub["status"] == "Pending" and sub["backend_id"], sub
        assert len(fake_lepton.posted_jobs()) == 1


async def test_slurm_refused_at_launch_records_nothing(slurm_env: dict[str, str]) -> None:
    proxy = proxy_for(slurm_env["SLURM_HOSTNAME"], int(slurm_env.get("SLURM_SSH_PORT") or 22))
    try:
        env = {**slurm_env, "SLURM_HOSTNAME": proxy.host, "SLURM_SSH_PORT": str(proxy.port)}
        async with mcp_client(env) as c:
            ready = await call(c, "list_platforms", platform="slurm")
            assert ready["platform"]["state"] == "ready", ready
            proxy.set_mode("refuse")  # the pooled connection is reset, a new one refused
            text = await call_error(c, "submit_job", **JOB, platform="slurm")
            assert text.startswith("E_BACKEND_UNREACHABLE:") and "nothing was sent" in text, text
            assert (await call(c, "list_jobs"))["jobs"] == []
    finally:
        proxy.stop()
