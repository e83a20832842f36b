"""host_oom from SLURM's OUT_OF_MEMORY state: the dev cluster cannot enforce memory, so recorded
sacct output drives the real parser and the real failure analysis."""

from __future__ import annotations

from pathlib import Path

from tao_mcp.drivers.base import Evidence
from tao_mcp.drivers.slurm import parse
from tao_mcp.service.failures import analyze

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "slurm"


def test_out_of_memory_state_is_host_oom() -> None:
    rows = parse.parse_sacct((FIXTURES / "sacct_states.txt").read_text())
    obs = parse.observation(rows["203"])
    steps = parse.parse_evidence((FIXTURES / "sacct_steps_oom.txt").read_text())
    evidence = [Evidence("state", f"step {r['JobID']}: {r['State']} (max RSS {r['MaxRSS']})") for r in steps]
    result = analyze(
        platform="slurm",
        status=obs.status,
        raw_state=obs.raw_state,
        exit_code=obs.exit_code,
        pending_reason=obs.pending_reason,
        message=obs.message,
        log_lines=["epoch 1/10", "epoch 2/10"],
        platform_evidence=evidence,
    )
    assert (obs.status, obs.raw_state) == ("Error", "OUT_OF_MEMORY")
    assert result.category == "host_oom" and result.err_class == "ERR_RESOURCE"
    assert result.retriable is False
    assert "memory" in result.suggestion
    assert any(e.source == "state" and "OUT_OF_MEMORY" in e.text for e in result.evidence)


def test_timeout_state_beats_a_log_guess() -> None:
    rows = parse.parse_sacct((FIXTURES / "sacct_states.txt").read_text())
    obs = parse.observation(rows["204"])
    result = analyze(
        platform="slurm",
        status=obs.status,
        raw_state=obs.raw_state,
        exit_code=obs.exit_code,
        pending_reason=None,
        message=obs.message,
        log_lines=["slurmstepd: error: *** JOB 204 ON node1 CANCELLED AT 2026-11-28T10:00:00 DUE TO TIME LIMIT ***"],
    )
    assert result.category == "timeout" and result.confidence == "high"
