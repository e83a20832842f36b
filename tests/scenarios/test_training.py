"""Training progress on every platform: the stand-in TAO CLI writes status.json records under the runner, whose
follower forwards them through the log; wait_for_job reports epoch of max_epoch, job_status the latest record,
and job_logs hides the marked lines unless raw=true."""

from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.helpers import mcp_client, stdio_client, structured
from tests.scenarios.platforms import Platform, Slurm
from tests.scenarios.test_scenarios import platform, process_env  # noqa: F401  (platform: the parametrised fixture)

pytestmark = [pytest.mark.anyio]
MARK = "[tao-progress]"


async def wait_collecting(c: Any, job_id: str, budget_s: float) -> tuple[dict[str, Any], list[tuple[float, Any, str]]]:
    seen: list[tuple[float, Any, str]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message or ""))

    with anyio.fail_after(budget_s):
        while True:
            result = structured(
                await c.call_tool("wait_for_job", {"job_id": job_id, "timeout_s": 30}, progress_callback=on_progress)
            )
            if result["done"]:
                return result, seen


async def test_training_progress_carries_epoch_and_total(platform: Platform) -> None:  # noqa: F811
    async with mcp_client(process_env(platform)) as c:  # a loaded machine can outlast the 3 s default probe
        sub = structured(await c.call_tool("submit_job", platform.training(epochs=6, seconds=4)))
        done, seen = await wait_collecting(c, sub["job_id"], budget_s=300)
        assert done["status"] == "Complete", done
        with_total = [(p, t, m) for p, t, m in seen if t == 6]
        assert with_total, seen  # progress=epoch, total=max_epoch while it trained
        assert all(m.startswith("epoch ") and "/6" in m and "loss" in m and p <= 6 for p, _, m in with_total), seen

        status = structured(await c.call_tool("job_status", {"job_id": sub["job_id"]}))
        progress = status["progress"]
        assert (progress["epoch"], progress["max_epoch"], progress["percent"]) == (6, 6, 100.0), status
        assert progress["metrics"]["loss"] == round(1 / 6, 4) and progress["status"] == "SUCCESS", progress

        logs = structured(await c.call_tool("job_logs", {"job_id": sub["job_id"]}))
        assert logs["lines"] and not any(MARK in line for line in logs["lines"]), logs
        raw = structured(await c.call_tool("job_logs", {"job_id": sub["job_id"], "raw": True}))
        assert sum(line.startswith(MARK) for line in raw["lines"]) >= 7, raw  # six epochs and the final record
        await check_line_numbers(c, sub["job_id"])
        await check_metrics(c, sub["job_id"], epochs=6)
        await check_resources(c, sub["job_id"], epochs=6)


async def check_line_numbers(c: Any, job_id: str) -> None:
    """Numbers are places in the real log: the hidden progress lines count, so hiding them shifts no number."""
    whole = structured(
        await c.call_tool("job_logs", {"job_id": job_id, "raw": True, "tail": 2000, "line_numbers": True})
    )
    assert whole["line_numbers"] == list(range(1, len(whole["lines"]) + 1)) and not whole["truncated"], whole
    shown = structured(await c.call_tool("job_logs", {"job_id": job_id, "tail": 2000, "line_numbers": True}))
    assert shown["lines"] and len(shown["lines"]) < len(whole["lines"]), shown
    assert [whole["lines"][n - 1] for n in shown["line_numbers"]] == shown["lines"], (shown, whole)
    assert shown["line_numbers"] != list(range(1, len(shown["lines"]) + 1))  # a gap where progress lines hide


async def check_resources(c: Any, job_id: str, epochs: int) -> None:
    """tao://jobs/{job_id}[/logs,/metrics]: the status with progress, the log tail, the series."""
    status = json.loads((await c.read_resource(f"tao://jobs/{job_id}")).contents[0].text)
    assert status["job_id"] == job_id and status["progress"]["epoch"] == epochs, status
    log = (await c.read_resource(f"tao://jobs/{job_id}/logs")).contents[0].text
    assert log and MARK not in log, log
    metrics = json.loads((await c.read_resource(f"tao://jobs/{job_id}/metrics")).contents[0].text)
    assert [s["name"] for s in metrics["series"]][:1] == ["loss"], metrics


async def check_metrics(c: Any, job_id: str, epochs: int) -> None:
    """job_metrics: the loss series of every epoch, its best epoch, and a decodable PNG under 100 KB."""
    result = await c.call_tool("job_metrics", {"job_id": job_id})
    metrics = structured(result)
    loss = next(s for s in metrics["series"] if s["name"] == "loss")
    assert loss["epochs"] == list(range(1, epochs + 1)) and loss["values"][0] == 1.0, loss
    assert (loss["best_epoch"], loss["goal"], loss["last"]) == (epochs, "min", round(1 / epochs, 4)), loss
    assert metrics["chart"] is True and metrics["complete"] is True, metrics
    (image,) = [item for item in result.content if item.type == "image"]
    png = base64.b64decode(image.data)
    assert image.mime_type == "image/png" and len(png) <= 100_000
    from matplotlib.image import imread

    pixels = imread(io.BytesIO(png), format="png")
    assert pixels.shape[0] > 100 and pixels.shape[1] > 300, pixels.shape
    assert "loss" in result.content[0].text


@pytest.mark.slurm
async def test_metrics_after_a_server_restart(
    slurm_env: dict[str, str], request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The series is rebuilt from the log by a new server process: nothing of it was kept in memory."""
    slurm = Slurm(slurm_env, request)
    with open(tmp_path / "stderr1.log", "w") as err:
        async with stdio_client(process_env(slurm), err) as c:
            sub = structured(await c.call_tool("submit_job", slurm.training(epochs=4, seconds=1)))
            done, _ = await wait_collecting(c, sub["job_id"], budget_s=240)
            assert done["status"] == "Complete", done
    with open(tmp_path / "stderr2.log", "w") as err:
        async with stdio_client(process_env(slurm), err) as c:
            await check_metrics(c, sub["job_id"], epochs=4)
            status = structured(await c.call_tool("job_status", {"job_id": sub["job_id"]}))
            assert status["progress"]["epoch"] == 4 and status["progress"]["percent"] == 100.0, status


@pytest.mark.slow
async def test_update_returns_on_the_interval_boundary(
    lepton_env: dict[str, str], request: pytest.FixtureRequest
) -> None:
    """monitor interval 1 minute: wait_for_job(until='update') calls (each ≤ 50 s) return still_waiting before the
    job's first boundary, then an update to post at the boundary (60 s after submission), not final."""
    request.getfixturevalue("fake_lepton")
    env = {"FAKE_LOG_TEXT": "started", "FAKE_DURATION_S": "150"}
    args = {"platform": "lepton", "image": "nvcr.io/nvidia/tao/tao-toolkit:5.5.0-pyt", "command": "python t.py"}
    async with mcp_client(lepton_env) as c:
        submitted = time.monotonic()
        sub = structured(
            await c.call_tool("submit_job", {**args, "env": env, "monitor": {"enabled": True, "interval_minutes": 1}})
        )
        await c.call_tool("wait_for_job", {"job_id": sub["job_id"], "until": "running", "timeout_s": 30})
        with anyio.fail_after(150):
            while True:
                r = structured(
                    await c.call_tool("wait_for_job", {"job_id": sub["job_id"], "until": "update", "timeout_s": 50})
                )
                if r["outcome"] != "still_waiting":
                    break
                assert r["final"] is False and r["update"] is None, r
        elapsed = time.monotonic() - submitted
        assert r["outcome"] == "update" and r["done"] is True and r["final"] is False, r
        assert r["update"].startswith(f"job {sub['job_id']} Running"), r
        assert 59 <= elapsed <= 70, elapsed  # on the boundary, not at a call's timeout
        await c.call_tool("cancel_job", {"job_id": sub["job_id"]})
