"""LeptonDriver against the fake workspace API, and its pure helpers (settings, names, shapes, state table)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import anyio
import pytest

from fixtures.lepton.fake_lepton import FakeLepton
from tao_mcp.drivers import load_driver
from tao_mcp.drivers.base import JobRef, LaunchRequest
from tao_mcp.drivers.lepton import GATEWAY, LeptonDriver, backend_job_name, choose_shape, map_state
from tao_mcp.drivers.lepton.logs import loki_entries
from tao_mcp.errors import BackendRejected, BackendUnreachable, TaoError
from tests.backends import LEPTON_TOKEN as TOKEN
from tests.helpers import REPO

pytestmark = [pytest.mark.anyio]

SHAPES = [
    {"metadata": {"id": "cpu.small"}, "spec": {"accelerator_num": 0, "cpu": 4}},
    {"metadata": {"id": "gpu.1x"}, "spec": {"accelerator_num": 1, "cpu": 8}},
    {"metadata": {"id": "gpu.2x-big"}, "spec": {"accelerator_num": 2, "cpu": 64}},
    {"metadata": {"id": "gpu.2x"}, "spec": {"accelerator_num": 2, "cpu": 16}},
    {"metadata": {"id": "gpu.8x"}, "spec": {"accelerator_num": 8, "cpu": 96}},
    {"metadata": {"id": "gpu.4x-deploy"}, "spec": {"accelerator_num": 4, "listable_in": ["deployment"]}},
]


def driver(fake: FakeLepton, **extra: str) -> LeptonDriver:
    return LeptonDriver({"LEPTON_WORKSPACE_URL": fake.url, "LEPTON_AUTH_TOKEN": TOKEN, **extra})


def request(d: LeptonDriver, job_id: str, env: dict[str, str] | None = None, **kw: Any) -> LaunchRequest:
    options = d.parse_options(kw.pop("options", {}))
    fields: dict[str, Any] = {
        "job_id": job_id,
        "backend_name": f"tao-{job_id}",
        "command": "python train.py",
        "image": "nvcr.io/nvidia/tao/tao-toolkit:5.5.0-pyt",
        "gpu_count": 1,
        "num_nodes": 1,
        "env": {"TAO_JOB_ID": job_id, **(env or {})},
        "secret_env": {},
        "time_limit_minutes": None,
        "options": options,
        **kw,
    }
    return LaunchRequest(**fields)


def ref(req: LaunchRequest, backend_id: str | None, created_at: float | None = None) -> JobRef:
    return JobRef(req.job_id, req.backend_name, backend_id, req.options, created_at or time.time())


async def observe_until(d: LeptonDriver, r: JobRef, predicate: Any, budget_s: float = 20) -> Any:
    with anyio.fail_after(budget_s):
        while True:
            obs = (await d.observe([r])).get(r.job_id)
            if obs is not None and predicate(obs):
                return obs
            await anyio.sleep(0.2)


# --- pure helpers ---------------------------------------------------------------------------------------------


def test_workspace_id_alone_builds_the_dgxc_gateway_url() -> None:
    d = LeptonDriver({"LEPTON_WORKSPACE_ID": "abc123", "LEPTON_AUTH_TOKEN": "t"})
    assert d.client.base == f"{GATEWAY}/api/v2/workspaces/abc123"
    session = d.client.session()
    assert session.headers["origin"] == GATEWAY and session.headers["Authorization"] == "Bearer t"
    explicit = LeptonDriver(
        {"LEPTON_WORKSPACE_URL": "https://x.example/api/v2/workspaces/w/", "LEPTON_AUTH_TOKEN": "t"}
    )
    assert (
        explicit.client.base == "https://x.example/api/v2/workspaces/w"
        and "origin" not in explicit.client.session().headers
    )
    assert isinstance(load_driver("lepton", {"LEPTON_WORKSPACE_ID": "w", "LEPTON_AUTH_TOKEN": "t"}), LeptonDriver)


def test_settings_errors_are_coded() -> None:
    with pytest.raises(TaoError, match="LEPTON_AUTH_TOKEN") as missing:
        LeptonDriver({"LEPTON_WORKSPACE_ID": "w"})
    assert missing.value.code == "E_MISSING_CREDENTIALS"
    with pytest.raises(TaoError) as neither:
        LeptonDriver({"LEPTON_AUTH_TOKEN": "t"})
    assert neither.value.code == "E_MISSING_CREDENTIALS" and "LEPTON_WORKSPACE_ID" in neither.value.cause
    with pytest.raises(TaoError, match="LEPTON_WORKSPACE_ID"):
        LeptonDriver({"LEPTON_WORKSPACE_ID": "a/b?c", "LEPTON_AUTH_TOKEN": "t"})
    with pytest.raises(TaoError, match="LEPTON_HTTP_TIMEOUT_S"):
        LeptonDriver({"LEPTON_WORKSPACE_ID": "w", "LEPTON_AUTH_TOKEN": "t", "LEPTON_HTTP_TIMEOUT_S": "soon"})


def test_job_names_follow_lepton_rules() -> None:
    assert backend_job_name("tao-0123456789ab") == "tao-0123456789ab"
    assert backend_job_name("TAO_Job.X") == "tao-job-x"
    assert backend_job_name("9abc") == "tao-9abc"
    long = backend_job_name("tao-" + "a" * 31 + "-b-c")
    assert len(long) <= 36 and not long.endswith("-") and long[0].isalpha()


def test_shape_choice_exact_else_smallest_larger() -> None:
    assert choose_shape(SHAPES, 1) == "gpu.1x"
    assert choose_shape(SHAPES, 2) == "gpu.2x"  # the smaller of two exact matches
    assert choose_shape(SHAPES, 3) == "gpu.8x"  # 4x is not listable for jobs
    assert choose_shape(SHAPES, 0) == "cpu.small"
    assert choose_shape(SHAPES, 16) is None


def test_state_table() -> None:
    def obs(state: str, **status: Any) -> Any:
        return map_state({"spec": {"completions": 2}, "status": {"state": state, **status}})

    for pending in ("Queueing", "Awaiting", "Starting", "Restarting", "PendingRetry"):
        assert obs(pending).status == "Pending" and obs(pending).pending_reason == pending
    starting = obs("Running", ready=1, active=2)
    assert starting.status == "Pending" and starting.message == "starting workers 1/2"
    assert obs("Running", ready=2, active=2).status == "Running"
    done = obs("Completed", succeeded=2)
    assert done.status == "Complete" and done.exit_code == 0
    assert obs("Failed", failed=1).status == "Error"
    for state in ("Stopping", "Terminating", "Deleting"):
        assert obs(state).status == "Canceling"
    outside = obs("Stopped")
    assert outside.status == "Canceled" and "stopped outside tao-mcp" in outside.message
    ours = map_state({"status": {"state": "Deleted"}}, canceled_by_us=True)
    assert ours.status == "Canceled" and "cancel_job" in ours.message
    # Archived alone says nothing: counts, then history, decide
    assert obs("Archived", succeeded=2).status == "Complete"
    assert obs("Archived", failed=1).status == "Error"
    history = [{"state": "Running"}, {"state": "Failed"}, {"state": "Archived"}]
    assert obs("Archived", job_history=history).status == "Error"
    history = [{"state": "Running"}, {"state": "Stopped"}, {"state": "Archived"}]
    assert obs("Archived", job_history=history).status == "Canceled"
    assert obs("Archived").status == "Unknown"
    assert obs("UNK") is None
    assert obs("Hibernating").status == "Unknown"


def test_loki_streams_are_merged_and_sorted() -> None:
    answer = {
        "data": {
            "result": [
                {"stream": {"replica": "b"}, "values": [["30", "b2"], ["10", "b1"]]},  # backward order
                {"stream": {"replica": "a"}, "values": [["20", "a1\na2"], ["40", "a3"]]},
            ]
        }
    }
    assert loki_entries(answer) == [(10, "b1"), (20, "a1"), (20, "a2"), (30, "b2"), (40, "a3")]
    assert loki_entries({"data": {"result": []}}) == [] and loki_entries(None) == []


def test_options_are_validated() -> None:
    d = LeptonDriver({"LEPTON_WORKSPACE_ID": "w", "LEPTON_AUTH_TOKEN": "t", "LEPTON_NODE_GROUP": "pool"})
    parsed = d.parse_options({"mounts": ["shared:/data:/mnt/data"], "image_pull_secrets": "ngc-pull"})
    assert parsed["node_group"] == "pool"
    assert parsed["mounts"] == [{"from": "node-nfs:shared", "path": "/data", "mount_path": "/mnt/data"}]
    assert parsed["image_pull_secrets"] == ["ngc-pull"] and parsed["ttl_seconds_after_finished"] == 3 * 24 * 3600
    for bad in (
        {"mounts": [{"path": "/x", "mount_path": "../etc"}]},
        {"ttl_seconds_after_finished": -1},
        {"persistent_results": "maybe"},
        {"image_pull_secrets": ["a b"]},
        {"partition": "x"},
    ):
        with pytest.raises(TaoError) as err:
            d.parse_options(bad)
        assert err.value.code == "E_BAD_INPUT"


# --- against the fake -----------------------------------------------------------------------------------------


async def test_one_list_call_per_sweep_for_many_jobs(fake_lepton: FakeLepton) -> None:
    d = driver(fake_lepton)
    refs = []
    for i in range(5):
        req = request(d, f"{i:012x}", env={"FAKE_DURATION_S": "30"})
        refs.append(ref(req, await d.launch(req)))
    fake_lepton.requests.clear()
    observed = await d.observe(refs)
    assert set(observed) == {r.job_id for r in refs}
    gets = [(r["method"], r["path"]) for r in fake_lepton.requests]
    assert gets.count(("GET", "/jobs")) == 1, gets
    assert not [g for g in gets if g[1].startswith("/jobs/") and not g[1].endswith("/replicas")]
    for r in refs:
        await d.cancel(r)
    await d.aclose()


async def test_archived_after_ttl_is_resolved_from_counts(fake_lepton: FakeLepton) -> None:
    d = driver(fake_lepton)
    req = request(d, "a0a0a0a0a0a0", env={"FAKE_DURATION_S": "0.5"}, options={"ttl_seconds_after_finished": 0})
    r = ref(req, await d.launch(req))
    with anyio.fail_after(20):
        while (await d.client.get(f"/jobs/{r.backend_id}", job_query_mode="alive_and_archive"))["status"][
            "state"
        ] != "Archived":
            await anyio.sleep(0.2)
    obs = (await d.observe([r]))[r.job_id]
    assert obs.status == "Complete" and obs.raw_state == "Archived/Completed" and obs.exit_code == 0
    failing = request(d, "b0b0b0b0b0b0", env={"FAKE_OUTCOME": "fail", "FAKE_DURATION_S": "0.3"})
    failing = LaunchRequest(**{**failing.__dict__, "options": {**failing.options, "ttl_seconds_after_finished": 0}})
    rf = ref(failing, await d.launch(failing))
    obs = await observe_until(d, rf, lambda o: o.raw_state.startswith("Archived"))
    assert obs.status == "Error"
    evidence = [e.text for e in await d.failure_evidence(rf)]
    assert any("Lepton state Archived" in t for t in evidence)
    assert any("Failed" in t and "history" in t for t in evidence)
    assert any("BackoffLimitExceeded" in t for t in evidence)


async def test_multi_node_starting_workers_then_running(fake_lepton: FakeLepton) -> None:
    d = driver(fake_lepton)
    req = request(d, "c0c0c0c0c0c0", env={"FAKE_DURATION_S": "5"}, num_nodes=3, gpu_count=8)
    r = ref(req, await d.launch(req))
    partial = await observe_until(d, r, lambda o: o.raw_state == "Running" and o.status == "Pending")
    assert partial.message.startswith("starting workers") and partial.pending_reason.startswith("starting workers")
    running = await observe_until(d, r, lambda o: o.status == "Running")
    assert running.started_at is not None
    body = fake_lepton.posted_jobs()[0]["spec"]
    assert body["resource_shape"] == "gpu.8xa100" and body["completions"] == body["parallelism"] == 3
    assert body["intra_job_communication"] is True
    script = body["container"]["command"][2]
    assert script.startswith('export MASTER_ADDR="${MASTER_ADDR:-') and "LEPTON_JOB_WORKER_INDEX" in script
    assert script.endswith("\npython train.py")
    await d.cancel(r)
    await observe_until(d, r, lambda o: o.status == "Canceled")


async def test_unk_beyond_grace_is_unknown_never_terminal(fake_lepton: FakeLepton) -> None:
    d = driver(fake_lepton, LEPTON_UNK_GRACE_S="0.5")
    req = request(d, "d0d0d0d0d0d0", env={"FAKE_OUTCOME": "unk", "FAKE_UNK_S": "30"})
    r = ref(req, await d.launch(req))
    with anyio.fail_after(20):
        while True:
            got = await d.observe([r])
            if fake_lepton.jobs[r.backend_id].status(time.time())["state"] == "UNK":
                break
            await anyio.sleep(0.1)
    assert r.job_id not in got  # within the grace period the last known status stands
    obs = await observe_until(d, r, lambda o: True)
    while obs.raw_state != "UNK":
        obs = await observe_until(d, r, lambda o: True)
    assert obs.status == "Unknown" and "UNK since" in obs.message
    await d.cancel(r)


async def test_launch_twice_reuses_the_live_job_and_find_reconciles(fake_lepton: FakeLepton) -> None:
    d = driver(fake_lepton)
    req = request(d, "e0e0e0e0e0e0", env={"FAKE_DURATION_S": "30"})
    first = await d.launch(req)
    again = await d.launch(req)  # POST answers 409 (live name): the existing job is ours
    assert again == first and len(fake_lepton.jobs) == 1
    assert await d.find([ref(req, None)]) == {req.job_id: first}
    assert await d.find([JobRef("ffffffffffff", "tao-ffffffffffff", None, {}, time.time())]) == {}
    await d.cancel(ref(req, None))  # cancel by name when the id was never stored
    obs = await observe_until(d, ref(req, first), lambda o: o.status == "Canceled")
    assert "cancel_job" in obs.message


async def test_stopped_outside_and_deleted_jobs(fake_lepton: FakeLepton) -> None:
    d = driver(fake_lepton)
    req = request(d, "f0f0f0f0f0f0", env={"FAKE_DURATION_S": "30"})
    r = ref(req, await d.launch(req))
    fake_lepton.jobs[r.backend_id].stopped_at = time.time()  # someone stopped it in the Lepton console
    stopping = await observe_until(d, r, lambda o: True)
    assert stopping.status in ("Canceling", "Canceled")
    obs = await observe_until(d, r, lambda o: o.status == "Canceled")
    assert obs.raw_state == "Stopped" and "stopped outside tao-mcp" in obs.message
    # a job the workspace no longer knows: nothing within the grace period, then Canceled (never Complete)
    young = JobRef("0a0a0a0a0a0a", "tao-0a0a0a0a0a0a", "tao-0a0a0a0a0a0a-zzzz", {}, time.time())
    old = JobRef("0b0b0b0b0b0b", "tao-0b0b0b0b0b0b", "tao-0b0b0b0b0b0b-zzzz", {}, time.time() - 3600)
    got = await d.observe([young, old])
    assert young.job_id not in got
    assert got[old.job_id].status == "Canceled" and "deleted outside tao-mcp" in got[old.job_id].message


async def test_replicas_and_evidence_for_image_pull(fake_lepton: FakeLepton) -> None:
    d = driver(fake_lepton)
    req = request(d, "1a1a1a1a1a1a", env={"FAKE_OUTCOME": "imagepull"})
    r = ref(req, await d.launch(req))
    await observe_until(d, r, lambda o: o.pending_reason == "ImagePullBackOff")
    (replica,) = await d.replicas(r)
    assert replica["id"].startswith(r.backend_id) and replica["node"] == "a100-node-0"
    assert replica["readiness_issue"]["reason"] == "ImagePullBackOff"
    evidence = await d.failure_evidence(r)
    sources = {e.source for e in evidence}
    assert {"state", "event", "replica"} <= sources
    assert any("ErrImagePull" in e.text for e in evidence if e.source == "event")
    assert await d.replicas(JobRef("x", "tao-x", None, {}, time.time())) == []
    await d.cancel(r)


async def test_transport_faults_raise_unreachable(fake_lepton: FakeLepton) -> None:
    d = driver(fake_lepton, LEPTON_HTTP_TIMEOUT_S="0.3")
    req = request(d, "2a2a2a2a2a2a", env={"FAKE_LOG_LINES": "3", "FAKE_DURATION_S": "0.5"})
    r = ref(req, await d.launch(req))
    fake_lepton.fail_next_5xx = 100
    with pytest.raises(BackendUnreachable, match="503"):
        await d.observe([r])
    fake_lepton.fail_next_5xx = 0
    fake_lepton.logs_429 = 100
    with pytest.raises(BackendUnreachable, match="429"):
        await d.read_log(r, mode="tail", at=None, limit=10, context=0, max_bytes=1 << 20)
    fake_lepton.logs_429 = 0
    fake_lepton.delay_s = 0.6
    with pytest.raises(BackendUnreachable, match="timed out"):
        await d.observe([r])
    fake_lepton.delay_s = 0.0
    # a write is never retried: one POST per launch attempt, and its 5xx says the outcome is unknown
    fake_lepton.post_5xx = 1
    other = request(d, "3a3a3a3a3a3a")
    fake_lepton.requests.clear()
    with pytest.raises(BackendUnreachable, match="do not resubmit"):
        await d.launch(other)
    assert [r["method"] for r in fake_lepton.requests if r["path"] == "/jobs"] == ["POST"]
    wrong = LeptonDriver({"LEPTON_WORKSPACE_URL": fake_lepton.url + "x", "LEPTON_AUTH_TOKEN": TOKEN})
    with pytest.raises(TaoError) as nowhere:
        await wrong.observe([r])
    assert nowhere.value.code == "E_BAD_SETTING" and "LEPTON_WORKSPACE_URL" in nowhere.value.cause
    bad = LeptonDriver({"LEPTON_WORKSPACE_URL": fake_lepton.url, "LEPTON_AUTH_TOKEN": "nope-nope"})
    with pytest.raises(TaoError) as auth:
        await bad.observe([r])
    assert auth.value.code == "E_LEPTON_AUTH" and "LEPTON_AUTH_TOKEN" in auth.value.cause


async def test_rejections_are_coded(fake_lepton: FakeLepton) -> None:
    d = driver(fake_lepton)
    with pytest.raises(TaoError, match="image"):
        await d.launch(request(d, "4a4a4a4a4a4a", image=None))
    with pytest.raises(BackendRejected, match="unknown resource_shape"):
        await d.launch(request(d, "4b4b4b4b4b4b", options={"resource_shape": "gpu.99x"}))
    with pytest.raises(TaoError, match="no Lepton shape has 16"):
        await d.launch(request(d, "4c4c4c4c4c4c", gpu_count=16))
    with pytest.raises(BackendRejected, match="not a volume"):
        await d.launch(request(d, "4d4d4d4d4d4d", options={"mounts": ["other:/x:/mnt/x"]}))
    assert fake_lepton.posted_jobs() and not fake_lepton.jobs


async def test_secrets_travel_as_workspace_secret_refs_with_time_limit(fake_lepton: FakeLepton) -> None:
    d = driver(fake_lepton)
    req = request(d, "5a5a5a5a5a5a", secret_env={"NGC_KEY": "value-ngc-123456"}, time_limit_minutes=2)
    preview = await d.preview(req)
    assert "value-ngc-123456" not in json.dumps(preview.files) + preview.submit
    assert "TAO_MCP_5a5a5a5a5a5a_NGC_KEY" in preview.submit
    r = ref(req, await d.launch(req))
    (body,) = fake_lepton.posted_jobs()
    (entry,) = [e for e in body["spec"]["envs"] if e["name"] == "NGC_KEY"]
    assert entry == {"name": "NGC_KEY", "value_from": {"secret_name_ref": "TAO_MCP_5a5a5a5a5a5a_NGC_KEY"}}
    assert fake_lepton.secrets["TAO_MCP_5a5a5a5a5a5a_NGC_KEY"] == "value-ngc-123456"
    assert body["spec"]["container"]["command"][2].startswith("exec timeout -k 60 120 bash -c ")
    await d.cancel(r)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_fake_runs_as_a_module() -> None:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "fixtures.lepton.fake_lepton", "--port", str(port), "--token", "tok"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/api/v2/workspaces/ws-fake/workspace"
        deadline = time.monotonic() + 20
        while True:
            try:
                req = urllib.request.Request(url, headers={"Authorization": "Bearer tok"})
                with urllib.request.urlopen(req, timeout=2) as resp:
                    assert json.load(resp)["workspace_name"] == "fake"
                    break
            except (ConnectionError, urllib.error.URLError):
                assert time.monotonic() < deadline, "the fake did not start"
                time.sleep(0.1)
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(url, timeout=2)
        assert denied.value.code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --- nvcr.io pull secret, TTL default, storage path prefix ----------------------------------------------------


async def test_ngc_pull_secret_is_created_once_and_reused(fake_lepton: FakeLepton) -> None:
    key = "ngc-key-value-5f1e0c"
    d = driver(fake_lepton, NGC_KEY=key)
    first = request(d, "6a6a6a6a6a6a")
    preview = await d.preview(first)
    assert "tao-mcp-nvcr" in preview.submit and key not in json.dumps(preview.files) + preview.submit
    assert not fake_lepton.pull_secrets  # a dry run creates nothing
    await d.launch(first)
    assert fake_lepton.pull_secrets == {
        "tao-mcp-nvcr": {"registry_server": "nvcr.io", "username": "$oauthtoken", "password": key}
    }
    await d.launch(request(d, "6b6b6b6b6b6b"))
    other = driver(fake_lepton, NGC_KEY=key)  # a restarted server finds the secret by name and reuses it
    await other.launch(request(other, "6c6c6c6c6c6c"))
    posts = [r for r in fake_lepton.requests if r["method"] == "POST" and r["path"] == "/imagepullsecrets"]
    assert len(posts) == 1
    bodies = fake_lepton.posted_jobs()
    assert [b["spec"]["image_pull_secrets"] for b in bodies] == [["tao-mcp-nvcr"]] * 3
    assert all(key not in json.dumps(b) for b in bodies)
    # given pull secrets win; images elsewhere and servers without NGC_KEY get none
    given = request(d, "6d6d6d6d6d6d", options={"image_pull_secrets": ["mine"]})
    await d.launch(given)
    await d.launch(request(d, "6e6e6e6e6e6e", image="docker.io/library/python:3.12"))
    bare = driver(fake_lepton)
    await bare.launch(request(bare, "6f6f6f6f6f6f"))
    specs = [b["spec"] for b in fake_lepton.posted_jobs()[3:]]
    assert specs[0]["image_pull_secrets"] == ["mine"]
    assert "image_pull_secrets" not in specs[1] and "image_pull_secrets" not in specs[2]


async def test_pull_secret_created_meanwhile_is_reused(fake_lepton: FakeLepton) -> None:
    d = driver(fake_lepton, NGC_KEY="ngc-key-value-77aa")
    real_get = d.client.get

    async def racing_get(path: str, **params: Any) -> Any:
        answer = await real_get(path, **params)
        if path == "/imagepullsecrets":  # another server creates it between our list and our create
            fake_lepton.pull_secrets["tao-mcp-nvcr"] = {"registry_server": "nvcr.io"}
        return answer

    d.client.get = racing_get  # type: ignore[method-assign]
    await d.launch(request(d, "7a7a7a7a7a7a"))
    (body,) = fake_lepton.posted_jobs()
    assert body["spec"]["image_pull_secrets"] == ["tao-mcp-nvcr"]
    assert fake_lepton.pull_secrets["tao-mcp-nvcr"] == {"registry_server": "nvcr.io"}  # theirs, not overwritten


async def test_ttl_defaults_to_three_days_and_the_option_is_kept(fake_lepton: FakeLepton) -> None:
    d = driver(fake_lepton)
    await d.launch(request(d, "8a8a8a8a8a8a"))
    await d.launch(request(d, "8b8b8b8b8b8b", options={"ttl_seconds_after_finished": 120}))
    ttls = [b["spec"]["ttl_seconds_after_finished"] for b in fake_lepton.posted_jobs()]
    assert ttls == [3 * 24 * 3600, 120]


async def test_mounts_go_under_the_workspace_path_prefix(fake_lepton: FakeLepton) -> None:
    d = driver(fake_lepton)
    prefix = fake_lepton.path_prefix
    mounts = ["shared-nfs:/data:/mnt/data", f"shared-nfs:{prefix}/models:/mnt/models", "shared-nfs:/:/mnt/all"]
    await d.launch(request(d, "9a9a9a9a9a9a", options={"mounts": mounts}))
    (body,) = fake_lepton.posted_jobs()
    assert [m["path"] for m in body["spec"]["mounts"]] == [f"{prefix}/data", f"{prefix}/models", prefix]
    reads = [r for r in fake_lepton.requests if r["path"] == "/storage-permission/shared-nfs"]
    assert len(reads) == 1 and reads[0]["query"] == {"nodegroup_id": "ng-a100-0001"}  # read once, then cached
    # the platform refuses a mount outside the prefix: what the driver now never sends
    outside = {**body, "metadata": {"id": "tao-outside"}}
    outside["spec"] = {
        **body["spec"],
        "mounts": [{"path": "/data", "mount_path": "/mnt/d", "from": "node-nfs:shared-nfs"}],
    }
    code, answer = fake_lepton.handle("POST", "/jobs", {}, outside, f"Bearer {TOKEN}")
    assert code == 400 and "path prefix" in answer["message"]
