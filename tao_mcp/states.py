"""The job state vocabulary, shared by every layer: drivers report it, the store keeps it, tools return it.

Eight states, one meaning each on every platform. `TERMINAL` states are final (the store never moves a job out
of one); `OPEN` states are watched by the pollers. The store keeps the values as text, so SQL filters are built
from these sets, never spelled inline.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import WithJsonSchema


class JobState(StrEnum):
    PENDING = "Pending"  # accepted, not running yet (queued, pulling, scheduling)
    RUNNING = "Running"
    PAUSED = "Paused"  # suspended by the scheduler or the user; resumes on its own
    COMPLETE = "Complete"  # ended with success
    ERROR = "Error"  # ended with a failure (or the launch was refused)
    CANCELED = "Canceled"  # ended by cancel_job (or by someone on the backend)
    CANCELING = "Canceling"  # cancel requested, the backend has not confirmed the end yet
    UNKNOWN = "Unknown"  # the backend gives no usable answer (yet); never a failure by itself


TERMINAL: frozenset[JobState] = frozenset({JobState.COMPLETE, JobState.ERROR, JobState.CANCELED})
OPEN: frozenset[JobState] = frozenset(JobState) - TERMINAL

# The tools' JSON schemas show the states inline as a string enum (no $ref to a definition), as they always have.
JobStateField = Annotated[JobState, WithJsonSchema({"enum": [s.value for s in JobState], "type": "string"})]


def sql_list(states: frozenset[JobState]) -> str:
    """`('Complete', 'Error', ...)` for an SQL IN clause; the values are this module's constants, not input."""
    return "(" + ", ".join(f"'{s.value}'" for s in sorted(states)) + ")"
