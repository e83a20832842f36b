"""The launch intake the reference workflow walks before any job is launched: the launch_workflow prompt, and the
same steps summarised in the server instructions."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from tao_mcp.models import IntakeDefaults
from tao_mcp.service.metadata.platforms import intake_defaults
from tao_mcp.tools._common import app

# The launch intake, written once: each step as one line of the server instructions (sent at initialize) and in
# full as a step of the launch_workflow prompt.
INTAKE = (
    (
        "confirm the goal",
        "Confirm the goal: what to train/evaluate/export, on which data, and where results should go. Restate it "
        "and wait for the user's yes.",
    ),
    (
        "choose the platform from list_platforms",
        "Choose the platform: call list_platforms and offer only the platforms it lists; let the user pick one.",
    ),
    (
        "ask whether long-running monitoring stays on (default on) and the status interval (default 5 minutes)",
        "Monitoring: ask whether long-running monitoring should stay on (default: on — you stay attached and post "
        "status until the job ends, including long PENDING waits) and the status interval in minutes (default: 5).",
    ),
    (
        "for a TAO model action, resolve_image(model, action) and have the user confirm the image (never invent one)",
        "Resolve the image: for a TAO model action call list_models (scope='automl' for training, to see whether "
        "the model is AutoML-capable) and resolve_image(model, action); show the image and where it came from and "
        "ask the user to confirm it or give image=<override>. Never invent an image.",
    ),
    (
        "list_platforms(platform=...) and ask only for that platform's missing variables, by name (the user sets "
        "them in the server environment; never ask for values in chat; forward secrets with secret_env)",
        "Credentials: call list_platforms(platform=<chosen>) and ask only for that platform's MISSING variables "
        "(and S3 keys only when s3:// data is involved). Tell the user which variable to set in the server "
        "environment or ~/.config/tao/.env; never ask for or repeat a value in chat. Forward secrets the container "
        "needs by name with secret_env.",
    ),
    (
        "submit_job(..., dry_run=True, monitor={enabled, interval_minutes}) and show the plan",
        "Dry run: call submit_job(..., dry_run=True, monitor={'enabled': <choice>, 'interval_minutes': <interval>}) "
        "(model=/action= for a TAO action) and show the rendered plan "
        "(its files are the tao://plans/... resources it lists); check inputs with check_path first when they are "
        "s3:// or lustre:// paths.",
    ),
    (
        "once the user confirms, submit_job(plan_id=<the dry run's plan_id>) (a chain of actions or a sweep: one "
        "submit_workflow)",
        "Submit: once the user confirms the plan, call submit_job(plan_id=<the dry run's plan_id>) alone (it "
        "launches exactly that plan, once) and report the job_id; a changed request needs a new dry run. For a "
        "chain of actions (train → evaluate → export, each reading the previous step's results) or a parameter "
        "sweep, submit one workflow instead (submit_workflow, dry run first): the server starts each step itself; "
        "follow it with wait_for_workflow(workflow_id), and workflow_status(metric=...) names the best job of a sweep.",
    ),
    (
        "monitor with wait_for_job(job_id, until='update'): post each update, never finalise while the job is "
        "not terminal (final: false); if you cannot stay attached, say so and give the job_id to re-attach; then "
        "job_logs / failure_analysis / list_path",
        "Monitor: loop on wait_for_job(job_id, until='update') (each call waits at most 50 s; call again while done "
        "is false). Each answer with outcome 'update' carries a one-line `update` (epoch, metrics, eta): post it "
        "to the user as a progress message and call again. Never finalise your turn while final is false: the job "
        "is still running, including long PENDING waits. If this host cannot stay attached (a runtime limit, the "
        "user detaches), say so plainly and give the job_id, so anyone can re-attach later with "
        "wait_for_job(job_id, until='update') or job_status. When final is true post the last update; on Error "
        "call failure_analysis and job_logs; on Complete show job_metrics and report the results location (list_path "
        "shows it).",
    ),
)
STEPS = tuple(step for _, step in INTAKE)


def intake_summary() -> str:
    """The intake in one numbered paragraph (the server instructions)."""
    return "; ".join(f"{i}. {line}" for i, (line, _) in enumerate(INTAKE, 1)) + "."


def with_defaults(step: str, defaults: IntakeDefaults) -> str:
    """A step with the skill bank's intake defaults in place of the built-in ones (monitoring on, every 5 min)."""
    interval = f"{defaults.status_interval_minutes:g}"
    monitoring = "on" if defaults.long_running_enabled else "off"
    return step.replace("(default: on", f"(default: {monitoring}").replace("(default: 5)", f"(default: {interval})")


PLATFORM_HINTS = (
    "list_platforms(platform=<chosen>) also gives the platform's dataset URI examples, its preflight checks and, "
    "for each missing variable, how the user gets it: use them when you ask."
)


def render(goal: str | None, defaults: IntakeDefaults | None = None, **chosen_values: str | None) -> str:
    head = f"Help me launch this TAO workflow: {goal}" if goal else "Help me launch a TAO workflow."
    known = [f"{name}: {value}" for name, value in chosen_values.items() if value]
    if known:  # what the user already chose (completion/complete offers the values): confirm, do not ask again
        head += f"\nAlready chosen ({'; '.join(known)}): confirm these instead of asking for them."
    chosen = defaults or IntakeDefaults()
    steps = "\n".join(f"{i}. {with_defaults(step, chosen)}" for i, step in enumerate(STEPS, 1))
    return (
        f"{head}\n\nFollow these steps in order, asking one question at a time and waiting for my answer:\n"
        f"{steps}\n\n{PLATFORM_HINTS}\n\nDo not launch anything before the dry run is confirmed."
    )


def register(server: MCPServer) -> None:
    @server.prompt(
        title="Launch a TAO workflow",
        description="Walk the launch intake: goal, platform, monitoring, image, credentials, dry run, submit, wait.",
    )
    def launch_workflow(
        ctx: Context,
        goal: Annotated[
            str | None,
            Field(
                description="what the user wants, in their words, e.g. 'train dino on my COCO subset on SLURM'; "
                "omit to let the intake ask"
            ),
        ] = None,
        platform: Annotated[
            str | None,
            Field(description="the platform to launch on (completion offers the platforms that are ready now)"),
        ] = None,
        model: Annotated[
            str | None, Field(description="the TAO model, as list_models names it (completion offers the skill bank's)")
        ] = None,
        action: Annotated[
            str | None, Field(description="the model's action, e.g. train (completion offers the chosen model's)")
        ] = None,
    ) -> str:
        """Launch a TAO workflow step by step."""
        defaults = IntakeDefaults(**intake_defaults(app(ctx).settings))
        return render(goal, defaults, platform=platform, model=model, action=action)
