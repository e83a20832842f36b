"""Dry runs are plans: a plan_id (no job id), files as resources, submit_job(plan_id) launches exactly that plan
once, and a plan that expired, is unknown, or no longer renders the same is refused, coded."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from fixtures.lepton.fake_lepton import FakeLepton
from tao_mcp.errors import TaoError
from tao_mcp.service import plans as plans_module
from tao_mcp.service.plans import PlanService, resource_names
from tao_mcp.service.principal import Principal, acting_as
from tao_mcp.service.store import JobStore
from tests.helpers import call, call_error, mcp_client, plan_files

pytestmark = pytest.mark.anyio

JOB = {"platform": "lepton", "command": "echo planned", "image": "python:3.11-slim", "gpu_count": 0}


def service(tmp_path: Path, **settings: str) -> PlanService:
    return PlanService(settings, JobStore(tmp_path / "jobs.sqlite3"))


def code_of(exc: pytest.ExceptionInfo[TaoError]) -> str:
    return str(exc.value).split(":", 1)[0]


def test_a_plan_is_refused_after_its_ttl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plans = service(tmp_path, TAO_MCP_PLAN_TTL_S="60")
    plan = plans.create("job", {"x": 1}, {"launch": "run it"}, {"platform": "docker"})
    assert plans.take(plan.plan_id, "job").arguments == {"x": 1}
    now = time.time()
    monkeypatch.setattr(plans_module.time, "time", lambda: now + 61)
    with pytest.raises(TaoError) as exc:
        plans.take(plan.plan_id, "job")
    assert code_of(exc) == "E_PLAN_EXPIRED" and "Fix:" in str(exc.value)
    assert plans.get(plan.plan_id, "job", allow_expired=True).plan_id == plan.plan_id
    assert plans.complete("plan-") == []  # an expired plan is not offered


def test_unknown_other_kind_and_other_principal_are_refused(tmp_path: Path) -> None:
    plans = service(tmp_path)
    with acting_as(Principal("alice")):
        plan = plans.create("workflow", {}, {"launch": "x"}, {})
        assert plans.complete("plan-") == [plan.plan_id]
    for plan_id, kind in (("plan-nothere", "job"), (plan.plan_id, "job")):
        with acting_as(Principal("alice")), pytest.raises(TaoError) as exc:
            plans.take(plan_id, kind)
        assert code_of(exc) == "E_UNKNOWN_PLAN"
    with acting_as(Principal("bob")), pytest.raises(TaoError) as exc:
        plans.take(plan.plan_id, "workflow")
    assert code_of(exc) == "E_UNKNOWN_PLAN"  # another principal's plan answers like a missing one
    with acting_as(Principal("bob")):
        assert plans.complete("") == []


def test_bad_ttl_setting_is_coded(tmp_path: Path) -> None:
    with pytest.raises(TaoError) as exc:
        service(tmp_path, TAO_MCP_PLAN_TTL_S="soon").create("job", {}, {}, {})
    assert code_of(exc) == "E_BAD_SETTING"


def test_resource_names_are_unique_uri_segments() -> None:
    names = resource_names(["launch", "$HOME/tao-mcp/jobs/a/job.env", "/other/job.env", "x/"])
    assert names == {
        "launch": "launch",
        "$HOME/tao-mcp/jobs/a/job.env": "job.env",
        "/other/job.env": "2-job.env",
        "x/": "x",
    }


async def test_dry_run_is_a_plan_that_submit_launches_once(lepton_env: dict[str, str], fake_lepton: FakeLepton) -> None:
    async with mcp_client(lepton_env) as c:
        dry = await call(c, "submit_job", **JOB, dry_run=True)
        assert dry["job_id"] is None and dry["plan_id"].startswith("plan-") and dry["plan_expires_at"]
        assert f"submit_job(plan_id='{dry['plan_id']}')" in dry["next"]
        assert dry["preview"]["command"] == "echo planned" and "launch" in dry["preview"]
        files = await plan_files(c, dry)  # every listed file is readable in full, its size as listed
        assert "job.json" in files and "echo planned" in files["job.json"]
        assert not fake_lepton.posted_jobs()
        # only the plan's own platform and an idempotency key may come with it
        text = await call_error(c, "submit_job", plan_id=dry["plan_id"], command="echo other", gpu_count=2)
        assert text.startswith("E_BAD_INPUT: command, gpu_count given with plan_id"), text
        text = await call_error(c, "submit_job", plan_id=dry["plan_id"], platform="docker")
        assert text.startswith("E_BAD_INPUT: platform given with plan_id"), text
        sub = await call(c, "submit_job", plan_id=dry["plan_id"], platform="lepton")
        assert sub["plan_id"] == dry["plan_id"] and sub["job_id"] and not sub["reused"]
        assert sub["backend_name"] == dry["backend_name"]  # the job the plan showed, not a new rendering
        again = await call(c, "submit_job", plan_id=dry["plan_id"])
        assert again["reused"] and again["job_id"] == sub["job_id"], again
        assert len(fake_lepton.posted_jobs()) == 1
        status = await call(c, "job_status", job_id=sub["job_id"])
        assert status["job_id"] == sub["job_id"]
        text = await call_error(c, "submit_job", plan_id="plan-000000000000")
        assert text.startswith("E_UNKNOWN_PLAN:"), text
        missing = await c.call_tool("submit_job", {"command": "echo"})
        assert missing.is_error and missing.content[0].text.startswith("E_BAD_INPUT: platform"), missing


async def test_a_dry_run_whose_arguments_hold_a_credential_value_is_no_plan(
    lepton_env: dict[str, str], fake_lepton: FakeLepton, canaries: dict[str, str]
) -> None:
    """A plan is stored and launched from the store, where no secret goes: it would launch the masked command."""
    command = f"curl -H 'x-key: {canaries['NGC_KEY']}' https://example.invalid"
    async with mcp_client(lepton_env) as c:
        text = await call_error(c, "submit_job", **{**JOB, "command": command}, dry_run=True)
        armor = await call(
            c, "submit_job", **{**JOB, "command": "grep -c -- '-----END RSA PRIVATE KEY-----' k"}, dry_run=True
        )
    assert text.startswith("E_BAD_INPUT: the dry run's arguments hold a credential value"), text
    assert "secret_env" in text and canaries["NGC_KEY"] not in text
    db = sqlite3.connect(Path(lepton_env["TAO_MCP_STATE_DIR"]) / "jobs.sqlite3")
    stored = db.execute("SELECT plan_id FROM plans").fetchall()
    db.close()
    assert stored == [(armor["plan_id"],)]  # armor text alone is no credential: that one is a plan
    assert not fake_lepton.posted_jobs()


async def test_a_plan_that_no_longer_renders_the_same_is_refused(
    lepton_env: dict[str, str], fake_lepton: FakeLepton
) -> None:
    s3 = {"ACCESS_KEY": "plan-test-access", "SECRET_KEY": "plan-test-secret-value", "S3_BUCKET_NAME": "first"}
    async with mcp_client({**lepton_env, **s3}) as c:
        dry = await call(c, "submit_job", **JOB, specs={"train": {"epochs": 1}}, dry_run=True)
    # The same store, a server whose settings render the job differently (results go to another bucket).
    async with mcp_client({**lepton_env, **s3, "S3_BUCKET_NAME": "second"}) as c:
        text = await call_error(c, "submit_job", plan_id=dry["plan_id"])
    assert text.startswith("E_PLAN_CHANGED:") and "job.json" in text, text
    assert not fake_lepton.posted_jobs()


async def test_an_expired_plan_is_refused_and_its_files_are_gone(
    lepton_env: dict[str, str], fake_lepton: FakeLepton, state_dir: Path
) -> None:
    async with mcp_client(lepton_env) as c:
        dry = await call(c, "submit_job", **JOB, dry_run=True)
        with sqlite3.connect(state_dir / "jobs.sqlite3") as db:  # the hour has passed
            db.execute("UPDATE plans SET expires_at = ? WHERE plan_id = ?", (time.time() - 1, dry["plan_id"]))
        text = await call_error(c, "submit_job", plan_id=dry["plan_id"])
        assert text.startswith("E_PLAN_EXPIRED:") and "dry run again" in text, text
        with pytest.raises(Exception, match="E_PLAN_EXPIRED"):
            await c.read_resource(dry["files"][0]["uri"])
    assert not fake_lepton.posted_jobs()
