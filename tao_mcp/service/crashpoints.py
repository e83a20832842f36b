"""Crash points: a test hook that SIGKILLs this server process at a named point of submit_job / cancel_job
(or of the workflow driver).

Off by default. Only when the environment variable TAO_MCP_CRASH_AT names the point does `crashpoint(name)`
do anything; then it kills the process with SIGKILL (no cleanup, no flush: a power cut as far as the store and
the backend can tell). With TAO_MCP_CRASH_DELAY_S set, the kill is armed instead and lands that many seconds
later from a timer thread, so it can fall anywhere inside the backend call that follows the point
("during the launch"). The fault suite (tests/faults/) uses it to prove that a retry with the same
idempotency key after a restart launches exactly one backend job and that a retried cancel still cancels.

The settings are read once at import: a disabled crash point costs one string comparison.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

ENV_POINT = "TAO_MCP_CRASH_AT"
ENV_DELAY = "TAO_MCP_CRASH_DELAY_S"

# Every point the product declares, in call order (the fault suite parametrises over these).
SUBMIT_POINTS = (
    "submit.before_record",  # validated and prepared; nothing stored, nothing launched
    "submit.after_record",  # the record exists; the backend was not touched
    "submit.during_launch",  # armed with a delay: the kill lands inside the driver's launch call
    "submit.after_launch",  # the backend has the job; its id is not stored yet
    "submit.after_store",  # the id is stored; the answer never reaches the client
)
CANCEL_POINTS = (
    "cancel.before_request",  # nothing recorded, the backend not asked
    "cancel.after_request",  # Canceling recorded; the backend not asked yet
    "cancel.during_backend",  # armed with a delay: the kill lands inside the driver's cancel call
    "cancel.after_backend",  # the backend was asked; the confirmation never observed
)
POINTS = SUBMIT_POINTS + CANCEL_POINTS
# The workflow driver (service/workflows.py): a step's job was launched, its job id not yet stored with the step.
WORKFLOW_POINTS = ("workflow.after_launch",)
# The AutoML adapter (service/automl/adapter.py): the job of a recommendation after the first was launched and the
# engine has not registered it in its workspace yet (the resume that follows must adopt it, not launch it again).
AUTOML_POINTS = ("automl.after_launch",)

_ARMED = os.environ.get(ENV_POINT) or None
_DELAY = float(os.environ.get(ENV_DELAY) or 0)


def crashpoint(name: str) -> None:
    """SIGKILL this process here (or `TAO_MCP_CRASH_DELAY_S` from here) when TAO_MCP_CRASH_AT == name."""
    if name != _ARMED:
        return
    if _DELAY > 0:
        timer = threading.Timer(_DELAY, _kill, args=(name,))
        timer.daemon = True
        timer.start()
        return
    _kill(name)


def _kill(name: str) -> None:
    sys.stderr.write(f"tao-mcp: crash point {name} reached: SIGKILL (test hook {ENV_POINT})\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)
