"""An agent drives real SLURM jobs end to end through MCP (dev cluster: scripts/dev/slurm-cluster up)."""

from __future__ import annotations

import anyio
import pytest

from tao_mcp import cursor
from tao_mcp.service import logs
from tests.helpers import (
    call,
    call_error,
    structured,
    wait_done,
)
from tests.helpers import mcp_client as client

pytestmark = [pytest.mark.anyio, pytest.mark.slurm]

CUDA_OOM = r"""cat <<'TRACE'
Traceback (most recent call last):
  File "/workspace/train.py", line 88, in <module>
    loss = model(batch)
  File "/usr/local/lib/python3.10/dist-packages/torch/nn/modules/module.py", line 1511, in _call_impl
    return forward_call(*args, **kwargs)
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.77 GiB total capacity; 13.90 GiB already allocated; 1.02 GiB free; 14.10 GiB reserved in total by PyTorch)
TRACE
exit 1
"""


async def test_log_paging_with_cursor(slurm_env: dict[str, str]) -> None:
    async with client(slurm_env) as c:
        sub = await call(c, "submit_job", platform="slurm", command="seq 1 500", gpu_count=0)
        await wait_done(c, sub["job_id"])
        tail = await call(c, "job_logs", job_id=sub["job_id"], tail=50)
        assert tail["lines"] == [str(i) for i in range(451, 501)]
        assert tail["truncated"] is True
        # a cursor is a byte offset: "1\n" .. "100\n" take 292 bytes, so offset 292 is where "101" begins
        window = await call(
            c, "job_logs", job_id=sub["job_id"], cursor=cursor.encode("log", sub["job_id"], "after", 292, 0), tail=10
        )
        assert window["lines"] == [str(i) for i in range(101, 111)]
        after = len("".join(f"{i}\n" for i in range(1, 111)))
        assert window["next_cursor"] == cursor.encode("log", sub["job_id"], "after", after, 0)
        back = await call(c, "job_logs", job_id=sub["job_id"], cursor=window["prev_cursor"], tail=3)
        assert back["lines"] == ["98", "99", "100"]


async def test_line_numbers_on_request(slurm_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`seq` prints each line's own number: a number off by one, or guessed past the count bound, fails."""
    async with client(slurm_env) as c:
        sub = await call(c, "submit_job", platform="slurm", command="seq 1 3000", gpu_count=0)
        job_id = sub["job_id"]
        await wait_done(c, job_id)

        async def page(**args: object) -> dict[str, object]:
            result = await c.call_tool("job_logs", {"job_id": job_id, "line_numbers": True, **args})
            shown = structured(result)
            text = result.content[0].text.split("\n")[1:-1]
            assert text == [
                f"{'?' if n is None else n}: {x}" for n, x in zip(shown["line_numbers"], shown["lines"], strict=True)
            ]
            return shown

        tail = await page(tail=50)
        assert tail["line_numbers"] == list(range(2951, 3001)) and "from the log's start" in tail["numbering"]
        found = await page(grep="99", tail=5)
        assert (
            found["line_numbers"]
            == [int(x) for x in found["lines"]]
            == [i for i in range(1, 3001) if "99" in str(i)][-5:]
        )
        offset = len("".join(f"{i}\n" for i in range(1, 1500)))  # where "1500" begins
        middle = cursor.encode("log", job_id, "after", offset, 0)
        assert (await page(cursor=middle, tail=3))["line_numbers"] == [1500, 1501, 1502]

        monkeypatch.setattr(logs, "NUMBER_BOUND", 1000)  # the 1 GiB case, small: counting from the start is out
        tail = await page(tail=50)
        assert tail["line_numbers"] == list(range(-50, 0)) and "back from the log's end" in tail["numbering"]
        deep = await page(cursor=middle, tail=3)
        assert deep["lines"] == ["1500", "1501", "1502"] and deep["line_numbers"] == [None] * 3, deep
        assert "unknown" in deep["numbering"]
        start = await page(cursor=cursor.encode("log", job_id, "after", 0, 0), tail=3)
        assert start["line_numbers"] == [1, 2, 3]
        plain = await call(c, "job_logs", job_id=job_id, tail=3)
        assert plain["line_numbers"] is None and plain["lines"] == ["2998", "2999", "3000"]


async def test_cuda_oom_is_gpu_oom(slurm_env: dict[str, str]) -> None:
    async with client(slurm_env) as c:
        sub = await call(c, "submit_job", platform="slurm", gpu_count=0, command=CUDA_OOM)
        done = await wait_done(c, sub["job_id"])
        assert done["status"] == "Error" and done["exit_code"] == 1
        fa = await call(c, "failure_analysis", job_id=sub["job_id"])
        assert fa["category"] == "gpu_oom" and fa["retriable"] is False
        assert fa["err_class"] == "ERR_RESOURCE"
        assert any("CUDA out of memory" in e["text"] and e["source"] == "log" for e in fa["evidence"])


async def test_oom_kill_line_is_host_oom(slurm_env: dict[str, str]) -> None:
    command = (
        "echo 'slurmstepd: error: Detected 1 oom-kill event(s) in StepId=1.batch. "
        "Some of your processes may have been killed by the cgroup out-of-memory handler.'; exit 137"
    )
    async with client(slurm_env) as c:
        sub = await call(c, "submit_job", platform="slurm", gpu_count=0, command=command)
        done = await wait_done(c, sub["job_id"])
        assert done["status"] == "Error" and done["exit_code"] == 137
        fa = await call(c, "failure_analysis", job_id=sub["job_id"])
        assert fa["category"] == "host_oom" and fa["err_class"] == "ERR_RESOURCE"


@pytest.mark.slow
async def test_real_time_limit_is_timeout(slurm_env: dict[str, str]) -> None:
    async with client(slurm_env) as c:
        sub = await call(c, "submit_job", platform="slurm", gpu_count=0, command="echo start; sleep 600", time_limit=1)
        done = await wait_done(c, sub["job_id"], budget_s=240)
        assert done["status"] == "Error" and done["raw_state"] == "TIMEOUT"
        fa = await call(c, "failure_analysis", job_id=sub["job_id"])
        assert fa["category"] == "timeout" and fa["confidence"] == "high"
        assert "time_limit" in fa["suggestion"]


async def test_held_job_pending_with_reason_and_cancel(slurm_env: dict[str, str]) -> None:
    async with client(slurm_env) as c:
        # hold as a top-level argument: deprecated, still honoured for one release, and the result says so
        sub = await call(c, "submit_job", platform="slurm", gpu_count=0, command="echo never", hold=True)
        assert "the top-level argument hold is deprecated" in sub["message"]
        with anyio.fail_after(60):
            while True:
                st = await call(c, "job_status", job_id=sub["job_id"])
                if st["pending_reason"]:
                    break
                await anyio.sleep(0.5)
        assert st["status"] == "Pending" and st["pending_reason"] == "JobHeldUser"
        wait = await call(c, "wait_for_job", job_id=sub["job_id"], timeout_s=3)
        assert wait["done"] is False and wait["next"].startswith("wait_for_job")
        fa = await call(c, "failure_analysis", job_id=sub["job_id"])
        assert fa["category"] == "held" and "JobHeldUser" in fa["summary"] + str(fa["evidence"])
        canceled = await call(c, "cancel_job", job_id=sub["job_id"])
        assert canceled["status"] == "Canceled"


async def test_more_cpus_than_the_node_stays_pending(slurm_env: dict[str, str]) -> None:
    async with client(slurm_env) as c:
        r = await c.call_tool("submit_job", {"platform": "slurm", "gpu_count": 0, "command": "echo x", "cpus": 512})
        if r.is_error:  # SLURM may refuse at submit time: then it must be a coded, actionable refusal
            assert "E_BACKEND_REJECTED" in r.content[0].text and "Fix:" in r.content[0].text
            return
        sub = structured(r)
        with anyio.fail_after(60):
            while True:
                st = await call(c, "job_status", job_id=sub["job_id"])
                if st["pending_reason"] and st["pending_reason"] != "None":
                    break
                await anyio.sleep(0.5)
        assert st["status"] == "Pending"
        fa = await call(c, "failure_analysis", job_id=sub["job_id"])
        assert fa["category"] in ("unschedulable", "no_capacity")
        await call(c, "cancel_job", job_id=sub["job_id"])


async def test_charliecloud_container_job(slurm_env: dict[str, str]) -> None:
    rootfs = slurm_env["TAO_MCP_DEV_CH_ROOTFS"]
    async with client(slurm_env) as c:
        sub = await call(
            c,
            "submit_job",
            platform="slurm",
            gpu_count=0,
            image=rootfs,
            options={"launcher": "charliecloud"},
            command="cat /etc/debian_version; python3 -c 'print(\"in-container\", 6*7)'",
        )
        done = await wait_done(c, sub["job_id"])
        logs = await call(c, "job_logs", job_id=sub["job_id"])
        assert done["status"] == "Complete", logs["lines"]
        assert "in-container 42" in logs["lines"]


async def test_lustre_browsing_is_limited_to_the_browse_roots(slurm_env: dict[str, str]) -> None:
    """Default roots: the results base directory (and the container mount sources); /etc is refused."""
    base = slurm_env["SLURM_BASE_RESULTS_DIR"]
    async with client(slurm_env) as c:
        listing = await call(c, "list_path", uri=f"lustre://{base}")
        refused = await call_error(c, "list_path", uri="lustre:///etc")
        refused_check = await call_error(c, "check_path", uri="lustre:///etc/passwd")
    assert listing["uri"] == f"lustre://{base}"
    for text in (refused, refused_check):
        assert text.startswith("E_POLICY: ") and "SLURM_BROWSE_ROOTS" in text and base in text, text
    async with client({**slurm_env, "SLURM_BROWSE_ROOTS": "/etc"}) as c:
        assert (await call(c, "check_path", uri="lustre:///etc/passwd"))["exists"]
        assert (await call_error(c, "list_path", uri=f"lustre://{base}")).startswith("E_POLICY: ")
