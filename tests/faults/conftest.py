"""The fault suite's bookkeeping: a seeded random source per test and one tally for the whole session.

Every test adds what it injected and what it found wrong to TALLY; the terminal summary prints
`faults: N injected, L lost, D duplicated, F false terminal` and the session fails on any non-zero count
(each test also fails on its own). Knobs (environment):
- TAO_FAULTS_SEED     replay a run (the seed is printed in the summary); default: new each run
- TAO_FAULTS_N        repetitions of the randomised parts (default 1)
- TAO_FAULTS_STALL_S  how long a wire stall lasts (default 12 s: longer than the clients' timeouts)
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass

import pytest

SEED = int(os.environ.get("TAO_FAULTS_SEED") or time.time_ns() % 1_000_000)
N = max(1, int(os.environ.get("TAO_FAULTS_N") or 1))
STALL_S = float(os.environ.get("TAO_FAULTS_STALL_S") or 12)


@dataclass
class Tally:
    injected: int = 0
    lost: int = 0
    duplicated: int = 0
    false_terminal: int = 0
    tests: int = 0

    @property
    def bad(self) -> int:
        return self.lost + self.duplicated + self.false_terminal

    def line(self) -> str:
        return (
            f"faults: {self.injected} injected, {self.lost} lost, {self.duplicated} duplicated, "
            f"{self.false_terminal} false terminal (seed {SEED}, N={N})"
        )


TALLY = Tally()


@pytest.fixture
def tally() -> Tally:
    TALLY.tests += 1
    return TALLY


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """Seeded per test (the session seed and the test id): a failing test replays with TAO_FAULTS_SEED."""
    return random.Random(f"{SEED}:{request.node.nodeid}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TALLY.tests:
        terminalreporter.write_sep("=", TALLY.line(), red=bool(TALLY.bad), green=not TALLY.bad)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if TALLY.bad and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
