"""A server killed with SIGKILL in the middle of an AutoML run: the next server resumes the run (same session,
resume=True) and finishes it with exactly the budget's number of backend jobs. The kill lands right after a
recommendation's job was launched and before the engine registered it: the stuck-resume case, repaired by
adopting that job (found by its idempotency key) instead of launching another."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from tao_mcp.service.crashpoints import ENV_POINT
from tests.automl.common import BANK, POLL, automl_args, expected_val_acc, standin_tree, wait_run
from tests.faults.harness import CRASH_LINE, ServerLog, stdio_server
from tests.helpers import call

pytestmark = [pytest.mark.anyio, pytest.mark.docker]
POINT = "automl.after_launch"


async def test_sigkill_mid_run_resumes_with_exactly_five_jobs(
    docker_env: dict[str, str], docker_cleanup: None, docker_client: object, tmp_path: Path
) -> None:
    standin_tree(tmp_path / "standin")
    env = {
        **docker_env,
        **POLL,
        "TAO_SKILL_BANK_PATH": str(BANK),
        "TAO_MCP_DOCKER_MOUNT_ROOTS": str(tmp_path),
        "TAO_MCP_PROBE_TIMEOUT_S": "30",
    }
    args = automl_args(
        "/standin",
        "docker",
        5,
        image=env["TAO_MCP_TEST_PY_IMAGE"],
        options={"mounts": [f"{tmp_path / 'standin'}:/standin:ro"]},
        env={"PATH": "/standin/bin:/usr/local/bin:/usr/bin:/bin"},
    )
    logs = ServerLog(tmp_path)
    first = logs.next()
    with open(first, "w") as errlog:
        try:
            async with stdio_server({**env, ENV_POINT: POINT}, errlog) as c:
                review = await call(c, "start_automl", **args, dry_run=True)
                run = await call(c, "start_automl", plan_id=review["plan_id"])
                with anyio.fail_after(120):
                    while CRASH_LINE.format(point=POINT) not in first.read_text(errors="replace"):
                        await anyio.sleep(0.2)
                    while True:
                        await c.send_ping()
                        await anyio.sleep(0.1)
        except Exception:  # the dropped stdio session
            pass
    assert CRASH_LINE.format(point=POINT) in first.read_text(errors="replace"), logs.tail()

    with open(logs.next(), "w") as errlog:
        async with stdio_server(env, errlog) as c:
            done = await wait_run(c, run["run_id"], budget_s=600)
            jobs = await call(c, "list_jobs", limit=50)
    assert done["state"] == "complete", (done, logs.tail())
    recs = done["recommendations"]
    assert [r["status"] for r in recs] == ["success"] * 5, recs
    for rec in recs:
        assert rec["metric"] == pytest.approx(expected_val_acc(rec["parameters"]["train.optim.lr"]))
    assert done["best"]["metric"] == max(r["metric"] for r in recs)
    # exactly five backend jobs: one per recommendation, the interrupted one adopted, not launched again
    assert len(jobs["jobs"]) == 5 and {j["job_id"] for j in jobs["jobs"]} == {r["job_id"] for r in recs}
    containers = docker_client.api.containers(all=True, filters={"label": "tao-mcp.managed=true"})  # type: ignore[attr-defined]
    names = {c["Names"][0].lstrip("/") for c in containers}
    assert {f"tao-{r['job_id']}" for r in recs} <= names
    assert sum(name in names for name in (f"tao-{j['job_id']}" for j in jobs["jobs"])) == 5
