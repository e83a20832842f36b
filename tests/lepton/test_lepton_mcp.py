"""An agent drives Lepton jobs end to end through MCP, against the protocol-faithful fake workspace API."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp.client import Client

from fixtures.lepton.fake_lepton import FakeLepton
from tests.helpers import (
    assert_no_canary,
    call,
    call_error,
    mcp_client,
    wait_done,
    wait_status,
)

pytestmark = [pytest.mark.anyio]

IMAGE = "nvcr.io/nvidia/tao/tao-toolkit:5.5.0-pyt"


def client(env: dict[str, str], mode: str = "modern") -> Client:
    return mcp_client(env, mode)


async def submit(c: Client, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"platform": "lepton", "image": IMAGE, "command": "python train.py", **kw}
    return await call(c, "submit_job", **args)


async def test_failing_job_is_error_with_gpu_oom(lepton_env: dict[str, str]) -> None:
    async with client(lepton_env) as c:
        sub = await submit(c, env={"FAKE_OUTCOME": "oom"})
        done = await wait_done(c, sub["job_id"])
        assert done["status"] == "Error" and done["raw_state"] == "Failed"
        assert done["next"].startswith("failure_analysis")
        analysis = await call(c, "failure_analysis", job_id=sub["job_id"])
        assert analysis["category"] == "gpu_oom", analysis
        assert analysis["retriable"] is False
        assert any("CUDA out of memory" in e["text"] for e in analysis["evidence"])


async def test_no_capacity_stays_pending_with_reason_then_cancel(
    lepton_env: dict[str, str], fake_lepton: FakeLepton
) -> None:
    async with client(lepton_env) as c:
        sub = await submit(c, env={"FAKE_OUTCOME": "nocapacity"}, gpu_count=3)
        status = await wait_status(c, sub["job_id"], lambda s: s["pending_reason"] == "NoCapacity")
        assert status["status"] == "Pending" and status["raw_state"] == "Queueing"
        assert "no capacity for shape gpu.4xa100" in status["message"]  # 3 GPUs -> the smallest larger shape
        waited = await call(c, "wait_for_job", job_id=sub["job_id"], timeout_s=2)
        assert waited["done"] is False and waited["status"] == "Pending"
        analysis = await call(c, "failure_analysis", job_id=sub["job_id"])
        assert analysis["category"] == "no_capacity", analysis

        canceled = await call(c, "cancel_job", job_id=sub["job_id"])
        assert canceled["status"] == "Canceled", canceled
        assert canceled["raw_state"] in ("Deleted", "Deleting") or canceled["raw_state"] == "Deleted"
        assert "cancel_job" in canceled["message"]
        again = await call(c, "cancel_job", job_id=sub["job_id"])
        assert again["status"] == "Canceled"
    deletes = [r for r in fake_lepton.requests if r["method"] == "DELETE" and r["path"].startswith("/jobs/")]
    assert [r["path"] for r in deletes] == [f"/jobs/{sub['backend_id']}"]


async def test_image_pull_backoff_pending_and_analysis(lepton_env: dict[str, str]) -> None:
    async with client(lepton_env) as c:
        sub = await submit(c, env={"FAKE_OUTCOME": "imagepull"}, image="nvcr.io/private/missing:1")
        status = await wait_status(c, sub["job_id"], lambda s: s["pending_reason"] == "ImagePullBackOff")
        assert status["status"] == "Pending" and "Back-off pulling image" in status["message"]
        analysis = await call(c, "failure_analysis", job_id=sub["job_id"])
        assert analysis["category"] == "image_pull", analysis
        assert analysis["err_class"] == "ERR_CONFIG"
        replicas = await call(c, "job_replicas", job_id=sub["job_id"])
        issues = [r["readiness_issue"] for r in replicas["replicas"] if r["readiness_issue"]]
        assert issues and issues[0]["reason"] == "ImagePullBackOff", replicas
        assert replicas["next"] == f"failure_analysis(job_id='{sub['job_id']}')"
        await call(c, "cancel_job", job_id=sub["job_id"])


async def test_mount_point_not_found_is_node_failure(lepton_env: dict[str, str]) -> None:
    async with client(lepton_env) as c:
        sub = await submit(c, env={"FAKE_OUTCOME": "mountfail"})
        await wait_status(c, sub["job_id"], lambda s: s["pending_reason"] == "ConfigError")
        analysis = await call(c, "failure_analysis", job_id=sub["job_id"])
        assert analysis["category"] == "node_failure", analysis
        assert "resubmit" in analysis["suggestion"] or "submit_job again" in analysis["suggestion"]
        await call(c, "cancel_job", job_id=sub["job_id"])


async def test_log_tail_paging_and_grep(lepton_env: dict[str, str], fake_lepton: FakeLepton) -> None:
    async with client(lepton_env) as c:
        sub = await submit(c, env={"FAKE_LOG_LINES": "5000", "FAKE_DURATION_S": "1"})
        await wait_done(c, sub["job_id"])
        fake_lepton.requests.clear()
        tail = await call(c, "job_logs", job_id=sub["job_id"], tail=50)
        assert tail["lines"] == [f"line {i}" for i in range(4952, 5001)] + ["fake-lepton: done"]
        assert tail["truncated"] is True and tail["prev_cursor"]
        reads = [r["query"] for r in fake_lepton.requests if r["path"] == "/logs"]
        # one backward query with a limit: the tail and its context, never the log from its start
        assert len(reads) == 1 and reads[0]["direction"] == "backward" and int(reads[0]["limit"]) <= 200, reads
        back = await call(c, "job_logs", job_id=sub["job_id"], cursor=tail["prev_cursor"], tail=10)
        assert back["lines"] == [f"line {i}" for i in range(4942, 4952)]
        ahead = await call(c, "job_logs", job_id=sub["job_id"], cursor=back["next_cursor"], tail=3)
        assert ahead["lines"] == ["line 4952", "line 4953", "line 4954"] and ahead["truncated"] is True
        grep = await call(c, "job_logs", job_id=sub["job_id"], grep="line 42", tail=100)
        assert grep["lines"][-3:] == ["line 4297", "line 4298", "line 4299"] and len(grep["lines"]) == 100
        assert grep["truncated"] is True and grep["prev_cursor"], grep
        older = await call(c, "job_logs", job_id=sub["job_id"], grep="line 42", cursor=grep["prev_cursor"], tail=100)
        assert older["lines"] == ["line 42", *(f"line {i}" for i in range(420, 430))] and not older["truncated"]


async def test_a_job_without_an_image_is_refused_before_it_is_recorded(
    lepton_env: dict[str, str], fake_lepton: FakeLepton
) -> None:
    async with client(lepton_env) as c:
        for dry_run in (True, False):
            text = await call_error(c, "submit_job", platform="lepton", command="x", dry_run=dry_run)
            assert text.startswith("E_BAD_INPUT: Lepton jobs need a container image"), text
        assert (await call(c, "list_jobs"))["jobs"] == []
    assert fake_lepton.posted_jobs() == []


async def test_wrong_token_is_coded_error_naming_the_variable(
    lepton_env: dict[str, str], canaries: dict[str, str]
) -> None:
    env = {**lepton_env, "LEPTON_AUTH_TOKEN": "wrong-token-abcdefgh"}
    async with client(env) as c:
        text = await call_error(c, "submit_job", platform="lepton", image=IMAGE, command="x", secret_env=["NGC_KEY"])
        assert text.startswith("E_LEPTON_AUTH") and "LEPTON_AUTH_TOKEN" in text and "401" in text
        assert "Fix:" in text
        assert_no_canary(text, canaries)
        assert "wrong-token-abcdefgh" not in text
        listed = await call(c, "list_jobs", platform="lepton")
        # The readiness probe met the refusal before anything was sent: no job is recorded, nothing runs.
        assert listed["jobs"] == []


async def test_5xx_bursts_and_log_429_never_fake_a_terminal_state(
    lepton_env: dict[str, str], fake_lepton: FakeLepton
) -> None:
    async with client(lepton_env) as c:
        sub = await submit(c, env={"FAKE_DURATION_S": "4", "FAKE_LOG_LINES": "20"})
        await wait_done(c, sub["job_id"], until="running")
        fake_lepton.list_5xx = 1000  # every listing fails: status must stay Running, marked unreachable
        status = await wait_status(c, sub["job_id"], lambda s: not s["backend_reachable"])
        assert status["status"] == "Running" and "unreachable" in status["message"]
        fake_lepton.list_5xx = 0
        # A short burst is absorbed by read retries (4 attempts): whichever request meets the 5xx first, the /logs
        # read below meets at most 1 + 2 refusals before it succeeds.
        fake_lepton.fail_next_5xx = 1
        fake_lepton.logs_429 = 2  # /logs answers 429 + Retry-After twice; the read retries and succeeds
        logs = await call(c, "job_logs", job_id=sub["job_id"])
        assert logs["lines"]
        done = await wait_done(c, sub["job_id"])
        assert done["status"] == "Complete" and done["backend_reachable"] is True


async def test_timeouts_never_fake_a_terminal_state(lepton_env: dict[str, str], fake_lepton: FakeLepton) -> None:
    env = {**lepton_env, "LEPTON_HTTP_TIMEOUT_S": "0.5"}
    async with client(env) as c:
        sub = await submit(c, env={"FAKE_DURATION_S": "2"})
        fake_lepton.delay_s = 1.0  # every answer comes after the client's timeout
        status = await wait_status(c, sub["job_id"], lambda s: not s["backend_reachable"], budget_s=40)
        assert status["status"] == "Pending" and "timed out" in status["message"]
        fake_lepton.delay_s = 0.0
        done = await wait_done(c, sub["job_id"])
        assert done["status"] == "Complete"


async def test_unk_state_is_tolerated(lepton_env: dict[str, str]) -> None:
    async with client(lepton_env) as c:
        sub = await submit(c, env={"FAKE_OUTCOME": "unk", "FAKE_UNK_S": "2"})
        statuses = set()
        with anyio.fail_after(40):
            while True:
                s = await call(c, "job_status", job_id=sub["job_id"])
                statuses.add(s["status"])
                if s["status"] in ("Complete", "Error", "Canceled"):
                    break
                await anyio.sleep(0.2)
        assert s["status"] == "Complete" and statuses <= {"Pending", "Running", "Complete"}, statuses


async def test_persistent_results_mount_node_group_volume(lepton_env: dict[str, str], fake_lepton: FakeLepton) -> None:
    async with client(lepton_env) as c:
        sub = await submit(c, options={"persistent_results": True, "shared_memory_size": 4096}, num_nodes=2)
        assert sub["results_location"] == f"file:///mnt/shared-nfs/tao-mcp/{sub['job_id']}"
        done = await wait_done(c, sub["job_id"])
        assert done["status"] == "Complete"
        bad = await call_error(
            c, "submit_job", platform="lepton", image=IMAGE, command="x", options={"node_group": "nope"}
        )
        assert bad.startswith("E_BAD_INPUT") and "a100-pool" in bad
        unknown = await call_error(
            c, "submit_job", platform="lepton", image=IMAGE, command="x", options={"partitionz": 1}
        )
        assert unknown.startswith("E_BAD_INPUT") and "node_group" in unknown
    (body,) = fake_lepton.posted_jobs()
    spec = body["spec"]
    prefix = fake_lepton.path_prefix  # the workspace's share of the volume
    assert spec["mounts"] == [{"path": prefix, "mount_path": "/mnt/shared-nfs", "from": "node-nfs:shared-nfs"}]
    envs = {e["name"]: e.get("value") for e in spec["envs"]}
    assert envs["TAO_RESULTS_ROOT"] == "/mnt/shared-nfs/tao-mcp"
    assert spec["completions"] == spec["parallelism"] == 2 and spec["intra_job_communication"] is True
    assert spec["shared_memory_size"] == 4096
