"""The scenarios every platform must pass, driven through MCP the way an agent does: submit / wait / logs, a failing
command, cancel, a server restart, idempotent submit, and canary secrets. One suite, parametrised over the
`platform` fixture (SLURM, Docker and Kubernetes dev backends; the Lepton and Brev fakes); what only one platform
can check lives in its class in platforms.py, and what only one platform does stays in tests/<platform>/."""

from __future__ import annotations

import string
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest

from fixtures import leaks
from tao_mcp import cursor as cursor_codec
from tests.helpers import (
    Transcript,
    assert_program_error,
    assert_progress_increasing,
    call,
    call_error,
    mcp_client,
    plan_files,
    stdio_client,
    wait_done,
    wait_with_progress,
)
from tests.scenarios.platforms import PLATFORMS, Platform, confirmed_cancel

pytestmark = [pytest.mark.anyio]

MARKS = {"slurm": pytest.mark.slurm, "docker": pytest.mark.docker, "kubernetes": pytest.mark.k8s}


@pytest.fixture(params=[pytest.param(name, marks=MARKS.get(name, ())) for name in PLATFORMS])
def platform(request: pytest.FixtureRequest) -> Platform:
    cls, env_fixture = PLATFORMS[request.param]
    return cls(request.getfixturevalue(env_fixture), request)


def process_env(platform: Platform) -> dict[str, str]:
    """The environment of a server started as its own process: its first readiness probe also imports the platform's
    client library, which alone can outlast the 3 s default probe bound on a loaded 2-core test machine."""
    return {**platform.env, "TAO_MCP_PROBE_TIMEOUT_S": "30"}


# A forwarded name no name rule knows: only secret_env says it is a secret.
PLAIN_NAME = "BUILD_NOTE"


def leak_env(platform: Platform, canaries: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """A server process's environment holding the canaries, one more under a plain-looking name (forwardable by
    policy); and the canaries with that one."""
    canaries = {**canaries, PLAIN_NAME: f"plain-canary-{uuid.uuid4().hex[:12]}"}
    forwardable = ",".join(["NGC_KEY", "HF_TOKEN", "WANDB_API_KEY", "ACCESS_KEY", "SECRET_KEY", PLAIN_NAME])
    return {**process_env(platform), **canaries, "TAO_MCP_FORWARDABLE_SECRETS": forwardable}, canaries


async def wait_logged(c: Any, job_id: str, line: str, budget_s: float = 60) -> None:
    """Poll job_logs until the job has printed `line` (a running job's output arrives when it arrives)."""
    with anyio.fail_after(budget_s):
        while line not in (await call(c, "job_logs", job_id=job_id))["lines"]:
            await anyio.sleep(0.5)


@pytest.mark.parametrize("mode", ["legacy", "modern"])
async def test_submit_wait_complete_logs(platform: Platform, mode: str) -> None:
    async with mcp_client(platform.env, mode) as c:
        args = platform.printing(f"hello-from-{platform.name}", "done-$TAO_JOB_ID", seconds=3)
        sub = await call(c, "submit_job", **{**args, **platform.hello_extra()})
        assert sub["status"] == "Pending" and sub["backend_name"] == f"tao-{sub['job_id']}", sub
        assert sub["next"].startswith("wait_for_job")
        platform.check_backend_id(sub)

        done, calls = await wait_with_progress(c, sub["job_id"], budget_s=120, step_s=30)
        assert done["status"] == "Complete" and done["exit_code"] == 0, done
        assert done["raw_state"] == platform.complete_raw_state, done
        assert_progress_increasing(calls)
        messages = [m for seen in calls for _, m in seen]
        assert any(m and m.startswith(("PENDING", "RUNNING")) for m in messages), messages

        expected = platform.expected_lines(sub, [f"hello-from-{platform.name}", f"done-{sub['job_id']}"])
        logs = await call(c, "job_logs", job_id=sub["job_id"])
        assert logs["lines"] == expected and logs["truncated"] is False, logs
        grep = await call(c, "job_logs", job_id=sub["job_id"], grep="hello")
        hello = f"hello-from-{platform.name}"
        assert grep["lines"] == [hello] and "searched" in grep["searched"], grep
        tail = await call(c, "job_logs", job_id=sub["job_id"], tail=1)
        assert tail["lines"] == expected[-1:] and tail["truncated"] is True, tail

        listed = await call(c, "list_jobs", platform=platform.name)
        assert sub["job_id"] in [j["job_id"] for j in listed["jobs"]]
        status = await call(c, "job_status", job_id=sub["job_id"])
        assert status["status"] == "Complete" and status["backend_reachable"] is True, status
        await platform.after_hello(c, sub, done)


async def test_log_pages_back_and_forward_by_position(platform: Platform) -> None:
    """Cursors are positions (byte offsets or timestamps): paging back from the tail and forward from the oldest
    page both give every line once, multibyte UTF-8 included; line_numbers=true numbers each line by its place in
    the log (a small log: counted from its start, 1 = the first line)."""
    printed = [f"p{i:02d}-{'é' * (i % 4)}日本" for i in range(40)]
    async with mcp_client(platform.env) as c:
        sub = await call(c, "submit_job", **platform.printing(*printed))
        job_id = sub["job_id"]
        await wait_done(c, job_id)
        expected = platform.expected_lines(sub, printed)

        async def numbered(**args: Any) -> dict[str, Any]:
            page = await call(c, "job_logs", job_id=job_id, tail=7, line_numbers=True, **args)
            assert page["line_numbers"] == [expected.index(line) + 1 for line in page["lines"]], page
            assert "from the log's start" in page["numbering"] or not page["lines"], page
            return page

        page = await numbered()
        assert page["lines"] == expected[-7:] and page["truncated"] and page["prev_cursor"], page
        back = page["lines"]
        while page["prev_cursor"]:
            page = await numbered(cursor=page["prev_cursor"])
            back = page["lines"] + back
        assert back == expected
        forward, cursor = list(page["lines"]), page["next_cursor"]
        for _ in range(len(expected)):
            page = await numbered(cursor=cursor)
            if not page["lines"]:
                break
            forward += page["lines"]
            cursor = page["next_cursor"]
        assert forward == expected
        grep = await call(c, "job_logs", job_id=job_id, grep="p3", line_numbers=True)
        assert grep["line_numbers"] == [expected.index(line) + 1 for line in grep["lines"]] and len(grep["lines"]) == 10
        plain = await call(c, "job_logs", job_id=job_id, tail=7)
        assert plain["line_numbers"] is None and plain["numbering"] is None


async def test_a_log_that_grows_between_pages(platform: Platform) -> None:
    async with mcp_client(platform.env) as c:
        sub = await call(c, "submit_job", **platform.growing("grow-first", "grow-then", pause_s=4))
        job_id = sub["job_id"]
        with anyio.fail_after(90):
            while "grow-first" not in (page := await call(c, "job_logs", job_id=job_id))["lines"]:
                await anyio.sleep(0.3)
        await wait_done(c, job_id)
        expected = platform.expected_lines(sub, ["grow-first", "grow-then"])
        assert page["lines"] == expected[: len(page["lines"])], page
        rest = await call(c, "job_logs", job_id=job_id, cursor=page["next_cursor"])
        assert page["lines"] + rest["lines"] == expected, (page, rest)  # nothing twice, nothing missed


async def test_failing_command_is_a_program_error(platform: Platform) -> None:
    async with mcp_client(platform.env) as c:
        sub = await call(c, "submit_job", **platform.failing())
        analysis = await assert_program_error(
            c, sub["job_id"], exit_code=platform.failing_exit_code, exception=platform.failing_exception
        )
        evidence = platform.failure_evidence()
        if evidence:
            assert any(evidence in e["text"] for e in analysis["evidence"]), analysis
        logs = await call(c, "job_logs", job_id=sub["job_id"])
        assert "about-to-fail" in logs["lines"], logs


async def test_cancel_running_job_is_confirmed_and_repeatable(platform: Platform) -> None:
    async with mcp_client(platform.env) as c:
        sub = await call(c, "submit_job", **platform.long_running())
        running = await wait_done(c, sub["job_id"], until="running")
        assert running["status"] == "Running", running
        await wait_logged(c, sub["job_id"], "started")
        if platform.cancel_confirms_at_once:
            first = await call(c, "cancel_job", job_id=sub["job_id"])
        else:
            first = await confirmed_cancel(c, sub["job_id"])
        assert first["status"] == "Canceled", (first["raw_state"], first["message"])
        assert first["raw_state"].startswith(platform.canceled_raw_state), first
        again = await call(c, "cancel_job", job_id=sub["job_id"])
        assert again["status"] == "Canceled" and again["raw_state"] == first["raw_state"], again
        status = await call(c, "job_status", job_id=sub["job_id"])
        assert status["status"] == "Canceled", status
        if platform.logs_survive_cancel:
            logs = await call(c, "job_logs", job_id=sub["job_id"])
            assert "started" in logs["lines"], logs
    await platform.after_cancel(sub, first)


async def test_restarted_server_finds_the_job_again(platform: Platform, tmp_path: Path) -> None:
    """A real server process over stdio, stopped while the job runs; a new one with the same state directory."""
    args = platform.printing("survived-restart", seconds=4)
    with open(tmp_path / "stderr1.log", "w") as err:
        async with stdio_client(process_env(platform), err) as c:
            sub = await call(c, "submit_job", **args)
    with open(tmp_path / "stderr2.log", "w") as err:
        async with stdio_client(process_env(platform), err) as c:
            listed = await call(c, "list_jobs")
            assert sub["job_id"] in [j["job_id"] for j in listed["jobs"]]
            done = await wait_done(c, sub["job_id"])
            assert done["status"] == "Complete" and done["backend_id"] == sub["backend_id"], done
            logs = await call(c, "job_logs", job_id=sub["job_id"])
            assert "survived-restart" in logs["lines"], logs
    platform.after_restart()


async def test_idempotent_submit_launches_once(platform: Platform) -> None:
    async with mcp_client(platform.env) as c:
        args = {**platform.printing("once"), "idempotency_key": f"{platform.name}-{uuid.uuid4().hex}"}
        first = await call(c, "submit_job", **args)
        second = await call(c, "submit_job", **args)
        assert second["job_id"] == first["job_id"] and second["reused"] is True, second
        conflict = await call_error(
            c, "submit_job", **platform.printing("other"), idempotency_key=args["idempotency_key"]
        )
        assert conflict.startswith("E_IDEMPOTENCY_CONFLICT"), conflict
        await wait_done(c, first["job_id"])
    platform.launched_once(first)


async def test_canary_secrets_never_leave_the_server(
    platform: Platform, canaries: dict[str, str], tmp_path: Path
) -> None:
    """A careless job prints the secrets it got through the platform's secret mechanism in every form
    (fixtures/leaks.py); every tool is called on it as an agent would, over stdio. No answer, error, progress message,
    notification, server stderr line, store row, plan file, or anything the platform's backend holds for the job
    (platforms.py: written) holds any form of a canary or the PEM key's body, and grep cannot rebuild a value."""
    env, canaries = leak_env(platform, canaries)
    secrets = {**canaries, **platform.backend_secrets()}
    seed = uuid.uuid4().hex
    args = platform.leaky([*platform.secret_names, PLAIN_NAME], seed)
    seen = Transcript()
    err_path = tmp_path / "stderr.log"
    with open(err_path, "w") as err:
        async with stdio_client(env, err, seen) as c:
            preview = seen.keep(await c.call_tool("submit_job", {**args, "dry_run": True}))
            files = await plan_files(c, preview)
            seen.texts.extend(files.values())
            platform.check_preview(files)
            sub = seen.keep(await c.call_tool("submit_job", {"plan_id": preview["plan_id"]}))
            platform.after_secret_submit(sub)
            job = {"job_id": sub["job_id"]}
            await platform.backend_misbehaves()
            with anyio.fail_after(180):
                done = None
                while done is None or not done["done"]:
                    wait = {**job, "timeout_s": 20}
                    done = seen.record(await c.call_tool("wait_for_job", wait, progress_callback=seen.progress))
            assert done["status"] == "Complete", done
            logs = seen.keep(await c.call_tool("job_logs", {**job, "tail": 2000}))
            # the job really printed them; the server masked them on the way out
            assert platform.leak_done_line in logs["lines"], logs["lines"][-5:]
            assert any(line.startswith("plain [REDACTED]") for line in logs["lines"]), logs["lines"][:5]
            assert "NGC_KEY=[REDACTED]" in logs["lines"] and any(x.startswith("HF_TOKEN=") for x in logs["lines"])
            first_page = cursor_codec.encode("log", sub["job_id"], "after", 0, 0)  # the first page: from position 0
            seen.keep(await c.call_tool("job_logs", {**job, "cursor": first_page, "tail": 2000}))
            for needle in (
                "[REDACTED]",
                "b64",
                "BEGIN",
                "p" * 50,
                canaries["HF_TOKEN"],
                *(v[:6] for v in canaries.values()),
            ):
                seen.keep(await c.call_tool("job_logs", {**job, "grep": needle, "tail": 2000}))
            await assert_grep_cannot_rebuild(c, sub["job_id"], canaries["NGC_KEY"])
            # what the backend holds for the job, read while it still exists (cancel_job may delete it)
            written = platform.written(sub)
            platform.secrets_at_rest(sub, canaries)
            for tool in ("job_status", "failure_analysis", "cancel_job"):
                seen.record(await c.call_tool(tool, job))
            seen.keep(await c.call_tool("list_jobs", {}))
            seen.keep(await c.call_tool("list_platforms", {"platform": platform.name}))
            # a workflow step forwarding the secrets and printing one by name
            step = {"id": "leak", **platform.printing("NGC=$NGC_KEY"), "secret_env": args["secret_env"]}
            seen.keep(await c.call_tool("submit_workflow", {"name": "leak", "steps": [step], "dry_run": True}))
            seen.keep(await c.call_tool("list_workflows", {}))
            # errors that echo input: a credential value in env (a job's, a workflow step's), a cursor made of one
            in_env = {"env": {**step.get("env", {}), "MY_VAR": canaries["NGC_KEY"]}}
            refusals = [
                ("E_SECRET_IN_ENV", await c.call_tool("submit_job", {**args, **in_env})),
                ("E_", await c.call_tool("submit_workflow", {"name": "leak", "steps": [{**step, **in_env}]})),
                ("E_", await c.call_tool("job_logs", {**job, "cursor": canaries["HF_TOKEN"]})),
            ]
            for code, refused in refusals:
                seen.record(refused)
                assert refused.is_error and refused.content[0].text.startswith(code), refused.content[0].text
    transcript = seen.text()
    platform.misbehaved(transcript)
    leaks.assert_absent(transcript, secrets, "results and notifications", seed)
    leaks.assert_absent(err_path.read_text(), secrets, "server stderr", seed)
    leaks.assert_absent(platform.store_dump(), secrets, "the job store", seed)
    for where, text in written.items():
        leaks.assert_absent(text, canaries, where, seed)
    assert "[REDACTED]" in transcript


async def assert_grep_cannot_rebuild(c: Any, job_id: str, secret: str) -> None:
    """The attack: the job printed NGC_KEY=<value>; the agent greps `NGC_KEY=<guess>` growing one character at a
    time. Every guess gets the same answer, so the value cannot be rebuilt."""

    async def answer(needle: str) -> tuple[Any, ...]:
        page = await call(c, "job_logs", job_id=job_id, grep=needle)
        return page["lines"], page["truncated"]

    alphabet = string.ascii_lowercase + string.digits
    known = ""
    for position in range(3):  # position by position, the true character answers like every other character
        answers = {ch: await answer(f"NGC_KEY={known}{ch}") for ch in alphabet}
        assert len({repr(a) for a in answers.values()}) == 1, answers
        known += secret[position]
    for n in range(4, len(secret) + 1):  # and any prefix of the value, with or without the name
        assert await answer(secret[:n]) == await answer(secret[:n][::-1]), n
    assert (await answer("NGC_KEY=[REDACTED]"))[0] and (await answer("plain [REDACTED]"))[0]
