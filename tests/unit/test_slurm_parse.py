"""squeue / sacct / sbatch parsing and the SLURM state table, on recorded outputs (fixtures/slurm)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from tao_mcp.drivers.slurm import parse

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "slurm"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("PENDING", "Pending"),
        ("CONFIGURING", "Pending"),
        ("RESIZING", "Pending"),
        ("REQUEUED", "Pending"),
        ("RUNNING", "Running"),
        ("COMPLETING", "Running"),
        ("COMPLETED", "Complete"),
        ("CANCELLED", "Canceled"),
        ("CANCELLED by 1000", "Canceled"),
        ("CANCELLED+", "Canceled"),
        ("REVOKED", "Canceled"),
        ("PREEMPTED", "Error"),
        ("SUSPENDED", "Paused"),
        ("STOPPED", "Paused"),
        ("FAILED", "Error"),
        ("BOOT_FAIL", "Error"),
        ("NODE_FAIL", "Error"),
        ("OUT_OF_MEMORY", "Error"),
        ("DEADLINE", "Error"),
        ("TIMEOUT", "Error"),
        ("SOMETHING_NEW", "Unknown"),
    ],
)
def test_state_table(raw: str, status: str) -> None:
    assert parse.map_state(raw) == status


@pytest.mark.parametrize(
    ("text", "code"), [("0:0", 0), ("1:0", 1), ("0:9", 137), ("0:15", 143), ("0:125", 253), ("", None), (None, None)]
)
def test_exit_code_signal_wins(text: str | None, code: int | None) -> None:
    assert parse.exit_code(text) == code


def test_parse_time_forms() -> None:
    assert parse.parse_time("1715000000") == 1715000000.0
    for empty in ("Unknown", "N/A", "None", "", None, "0"):
        assert parse.parse_time(empty) is None
    assert parse.parse_time("2024-05-06T12:00:00") == datetime(2024, 5, 6, 12).timestamp()


def test_squeue_rows_and_pending_reasons() -> None:
    rows = parse.parse_squeue(fixture("squeue_states.txt"))
    assert rows["101"].state == "PENDING" and rows["101"].reason == "Resources"
    assert rows["105"].reason == "ReqNodeNotAvail, UnavailableNodes:node[01-02]"
    assert rows["106"].start == 1715000000.0 and rows["106"].partition == "gpu"
    assert rows["121"].name == "name|with|pipes"
    assert "120_[3-5]" in rows and "120_1" in rows  # array lines keep their ids

    obs = parse.observation(rows["101"])
    assert (obs.status, obs.pending_reason, obs.message) == ("Pending", "Resources", "PENDING (Resources)")
    assert parse.observation(rows["103"]).message == "PENDING (JobHeldUser)"
    assert parse.observation(rows["104"]).pending_reason == "QOSMaxGRESPerUser"
    assert parse.observation(rows["111"]).message == "REQUEUED (BeginTime)"
    assert parse.observation(rows["110"]).status == "Paused"
    running = parse.observation(rows["106"])
    assert (running.status, running.started_at, running.ended_at) == ("Running", 1715000000.0, None)


def test_squeue_exit_code_is_a_wait_status() -> None:
    rows = parse.parse_squeue(fixture("squeue_states.txt"))
    assert parse.wait_status("1024") == "4:0" and parse.wait_status("9") == "0:9"
    failed = parse.observation(rows["109"])
    assert (failed.status, failed.exit_code, failed.ended_at) == ("Error", 4, 1715000070.0)
    assert parse.observation(rows["115"]).exit_code == 137  # SIGKILL
    assert parse.observation(rows["108"]).exit_code == 0
    assert parse.observation(rows["113"]).status == "Canceled"
    for job_id, raw in (("114", "TIMEOUT"), ("116", "PREEMPTED"), ("117", "NODE_FAIL"), ("118", "OUT_OF_MEMORY")):
        obs = parse.observation(rows[job_id])
        assert (obs.status, obs.raw_state) == ("Error", raw)
    assert "preempted" in parse.observation(rows["116"]).message


def test_squeue_invalid_id_is_an_answer() -> None:
    assert parse.parse_squeue(fixture("squeue_invalid_id.txt")) == {}
    assert parse.squeue_ok(parse.Section(fixture("squeue_invalid_id.txt"), 1))
    assert not parse.squeue_ok(parse.Section("squeue: error: Unable to contact slurm controller", 1))
    assert not parse.squeue_ok(None)


def test_sacct_terminal_states_keep_raw_state_and_codes() -> None:
    rows = parse.parse_sacct(fixture("sacct_states.txt"))
    assert "202.batch" not in rows and "202.0" not in rows  # steps are dropped
    obs = {job_id: parse.observation(row) for job_id, row in rows.items()}

    assert (obs["201"].status, obs["201"].exit_code, obs["201"].ended_at) == ("Complete", 0, 1715000060.0)
    assert (obs["202"].status, obs["202"].exit_code) == ("Error", 1)
    assert (obs["203"].status, obs["203"].raw_state) == ("Error", "OUT_OF_MEMORY")
    assert "ran out of host memory" in obs["203"].message
    assert (obs["204"].raw_state, obs["204"].status) == ("TIMEOUT", "Error")
    assert "time limit" in obs["204"].message
    assert (obs["205"].raw_state, obs["205"].status) == ("NODE_FAIL", "Error")
    assert (obs["206"].status, obs["206"].raw_state) == ("Canceled", "CANCELLED by 1000")
    assert obs["206"].exit_code == 143
    assert obs["207"].status == "Error" and "preempted" in obs["207"].message
    assert obs["208"].status == "Error" and obs["208"].started_at is None
    assert obs["209"].status == "Error"
    assert (obs["210"].status, obs["210"].pending_reason) == ("Pending", "Resources")
    assert obs["211"].status == "Running"
    assert obs["212"].status == "Pending"  # requeued: the last line wins
    assert obs["214"].exit_code == 137  # killed by SIGKILL
    assert obs["215"].status == "Paused"
    assert obs["216"].status == "Canceled"
    assert obs["220_2"].exit_code == 2


def test_sacct_iso_times() -> None:
    rows = parse.parse_sacct(fixture("sacct_iso_times.txt"))
    assert rows["301"].start == datetime(2024, 5, 6, 12).timestamp()
    assert rows["302"].start is None


def test_merge_prefers_squeue_and_fills_from_sacct() -> None:
    live = parse.JobRow("1", "RUNNING", None, "0:0", 100.0, None)
    lagging = parse.JobRow("1", "PENDING", "None", "0:0", None, None)
    assert parse.merge(live, lagging).status == "Running"

    # slurmctld already finished it, accounting still says RUNNING: squeue's state and exit code win
    done_live = parse.JobRow("1", "FAILED", "NonZeroExitCode", "3:0", 100.0, 160.0)
    merged = parse.merge(done_live, parse.JobRow("1", "RUNNING", None, "0:0", 100.0, None))
    assert (merged.status, merged.exit_code, merged.ended_at) == ("Error", 3, 160.0)

    # both agree: sacct's richer state text is kept
    cancelled = parse.merge(parse.JobRow("1", "CANCELLED", None, "0:15"), parse.JobRow("1", "CANCELLED by 1000", None))
    assert (cancelled.status, cancelled.raw_state) == ("Canceled", "CANCELLED by 1000")

    # purged from squeue: sacct alone; no accounting: squeue alone
    assert parse.merge(None, parse.JobRow("1", "FAILED", None, "3:0")).exit_code == 3
    assert parse.merge(parse.JobRow("1", "COMPLETED"), None).status == "Complete"
    assert parse.merge(None, None) is None


def test_merge_reads_a_requeued_job_in_its_old_runs_teardown_as_pending() -> None:
    teardown = parse.JobRow("1", "COMPLETING", None, "0:0", 100.0)
    requeued = parse.merge(teardown, parse.JobRow("1", "REQUEUED", None, "0:0", 100.0, 160.0))
    assert (requeued.status, requeued.raw_state, requeued.pending_reason) == ("Pending", "REQUEUED", "Requeued")
    assert requeued.started_at is None and requeued.exit_code is None
    assert parse.merge(teardown, parse.JobRow("1", "COMPLETED", None, "0:0")).status == "Running"  # sacct agrees late
    assert parse.merge(teardown, parse.JobRow("1", "RUNNING", None, "0:0")).status == "Running"


def test_sbatch_output_forms() -> None:
    assert parse.parse_sbatch("123\n") == "123"
    assert parse.parse_sbatch("123;cluster\n") == "123"
    assert parse.parse_sbatch("Submitted batch job 456\n") == "456"
    assert parse.parse_sbatch("sbatch: warning: something\n789\n") == "789"
    assert parse.parse_sbatch("") is None


def test_names_for_find() -> None:
    text = "101|tao-aaaa1111\n101.batch|batch\n102|tao-aaaa2222\ngarbage\n"
    assert parse.parse_names(text) == [("101", "tao-aaaa1111"), ("102", "tao-aaaa2222")]


def test_evidence_rows_include_steps() -> None:
    rows = parse.parse_evidence(fixture("sacct_steps_oom.txt"))
    assert [r["JobID"] for r in rows] == ["2001", "2001.batch", "2001.extern", "2001.0"]
    assert rows[3]["State"] == "OUT_OF_MEMORY" and rows[3]["MaxRSS"] == "15990M"


def test_sections_split_one_round() -> None:
    out = "@@tao:squeue\n1|RUNNING|None\n@@tao:rc=0\n@@tao:sacct\nsacct: error: boom\n@@tao:rc=1\n@@tao:cut\npartial"
    found = parse.sections(out)
    assert found["squeue"] == parse.Section("1|RUNNING|None", 0)
    assert found["sacct"].rc == 1 and parse.error_text(found["sacct"]) == "sacct: error: boom"
    assert found["cut"].rc is None


# --- rounds recorded on the dev cluster (SLURM 22.05) ---------------------------------------------------------


def recorded_round(name: str) -> tuple[dict[str, parse.JobRow], dict[str, parse.JobRow]]:
    found = parse.sections(fixture(name))
    assert parse.squeue_ok(found["squeue"]) and found["sacct"].rc == 0
    return parse.parse_squeue(found["squeue"].text), parse.parse_sacct(found["sacct"].text)


def test_recorded_observe_round() -> None:
    """71 echo ok, 72 exit 3, 73 kill -9 of the command's shell, 74 held, 75 sleeping, 76 cancelled while
    pending, 77 more CPUs than the node has."""
    live, accounted = recorded_round("round_observe.txt")
    obs = {job_id: parse.merge(live.get(job_id), accounted.get(job_id)) for job_id in live}
    assert (obs["71"].status, obs["71"].exit_code) == ("Complete", 0)
    assert (obs["72"].status, obs["72"].exit_code, obs["72"].raw_state) == ("Error", 3, "FAILED")
    # squeue's wait status says 137; sacct folds it into "9:0": squeue wins
    assert accounted["73"].exit_code == "9:0" and obs["73"].exit_code == 137
    assert (obs["74"].status, obs["74"].pending_reason) == ("Pending", "JobHeldUser")
    assert (obs["75"].status, obs["75"].ended_at) == ("Running", None)
    assert obs["75"].started_at == 1795890367.0
    assert (obs["76"].status, obs["76"].raw_state, obs["76"].started_at) == ("Canceled", "CANCELLED by 1001", None)
    assert obs["76"].ended_at == 1795890368.0 and "Resources" not in obs["76"].message
    assert (obs["77"].status, obs["77"].message) == ("Pending", "PENDING (PartitionConfig)")  # sacct says None


def test_recorded_find_round() -> None:
    found = parse.sections(fixture("round_find.txt"))
    pairs = parse.parse_names(found["squeue"].text) + parse.parse_names(found["sacct"].text)
    assert ("75", "tao-rec77434ddf3") in pairs
    assert {name for _, name in pairs} == {name for _, name in parse.parse_names(found["squeue"].text)}


def test_recorded_purged_round() -> None:
    found = parse.sections(fixture("round_purged.txt"))
    assert found["squeue"].rc == 1 and parse.squeue_ok(found["squeue"])
    assert parse.parse_squeue(found["squeue"].text) == {} and parse.parse_sacct(found["sacct"].text) == {}


def test_recorded_step_evidence() -> None:
    rows = parse.parse_evidence(fixture("sacct_steps_failed.txt"))
    assert [(r["JobID"], r["State"], r["ExitCode"]) for r in rows[:2]] == [("72", "FAILED", "3:0")] * 1 + [
        ("72.batch", "FAILED", "3:0")
    ]
    assert rows[-1]["State"] == "CANCELLED by 1001" and rows[-1]["NodeList"] == "None assigned"


def test_recorded_sbatch_outputs() -> None:
    text = fixture("sbatch_outputs.txt")
    stdout = text.split("## stderr")[0]
    assert parse.parse_sbatch(stdout) == "78"
    assert "invalid partition specified: nosuch" in text.split("## stderr")[1]
