"""Pure rendering of the files a SLURM job is staged with: job.sbatch, command.sh, job.env, secrets.env.

Layout on the cluster (the job dir is mode 0700):

    <base>/tao-mcp/<job id>/job.sbatch    the batch script: #SBATCH header, env loading, the launcher line
    <base>/tao-mcp/<job id>/command.sh    the job's command with a small prelude; run once per node
    <base>/tao-mcp/<job id>/job.env       non-secret environment, `NAME='value'` lines
    <base>/tao-mcp/<job id>/secrets.env   secret environment (mode 0600); only when there are secrets
    <base>/tao-mcp/<job id>/job.log       stdout + stderr of the whole job
    <base>/tao-mcp/<job id>/runner.phase  the runner's latest message (TAO_RUNNER_PHASE_FILE): what status reads
    <base>/results/<job id>/              results (TAO_RESULTS_ROOT=<base>/results)

Secret values appear in exactly one place: secrets.env, rendered by `render_secrets` at staging time. The
batch script only sources it; container launchers get the secret *names* (`--container-env`, `--env`).
Every value interpolated into shell is shlex-quoted; values that go into #SBATCH lines (sbatch does not
parse shell quoting there) are validated against a strict character set instead.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tao_mcp.drivers.base import LaunchRequest, master_port
from tao_mcp.errors import TaoError

LAUNCHERS = ("pyxis", "apptainer", "singularity", "enroot", "charliecloud", "none")
SECRET_PLACEHOLDER = "<forwarded from the server environment>"
MULTINODE_ENV = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "NUM_NODES", "NUM_GPU_PER_NODE")
# What makes PyTorch Lightning take the one srun task per node for ranks SLURM already spawned (TAO spawns one
# process per GPU itself). Lightning's SLURMEnvironment.detect() is `"SLURM_NTASKS" in os.environ` unless
# SLURM_JOB_NAME is bash/interactive; it then reads SLURM_NTASKS (world size), SLURM_PROCID, SLURM_LOCALID,
# SLURM_NODEID and checks SLURM_NTASKS_PER_NODE. LightningEnvironment treats a set LOCAL_RANK as "processes were
# launched externally"; TorchElasticEnvironment.detect() needs RANK, GROUP_RANK, LOCAL_RANK and LOCAL_WORLD_SIZE.
# SLURM_NPROCS and SLURM_STEP_NUM_TASKS are SLURM's aliases of the task count. See docs/platforms.md.
LIGHTNING_TASK_ENV = (
    "SLURM_NTASKS",
    "SLURM_NPROCS",
    "SLURM_NTASKS_PER_NODE",
    "SLURM_STEP_NUM_TASKS",
    "SLURM_PROCID",
    "SLURM_LOCALID",
    "SLURM_NODEID",
    "LOCAL_RANK",
    "RANK",
    "GROUP_RANK",
    "LOCAL_WORLD_SIZE",
)

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SAFE_WORD = re.compile(r"^[A-Za-z0-9_.-]+$")  # partition, account, job name, job id
SAFE_PATH = re.compile(r"^/[A-Za-z0-9_./-]*$")
MEMORY = re.compile(r"^[0-9]+[KMGT]?$")
RUNNER_PHASE_FILE = "runner.phase"
RUNNER_PHASE_BYTES = 1024  # the runner writes one short line


@dataclass(frozen=True)
class Mount:
    src: str
    dst: str
    read_only: bool = False

    def __str__(self) -> str:
        return f"{self.src}:{self.dst}" + (":ro" if self.read_only else "")


def check_path(path: str, what: str) -> str:
    """An absolute path made of [A-Za-z0-9_./-] with no `..` component (safe in #SBATCH lines and shell)."""
    if not SAFE_PATH.match(path) or ".." in path.split("/"):
        raise TaoError(
            "E_BAD_INPUT",
            f"{what} {path!r} is not an absolute path made of letters, digits and _ . / - without '..'",
            f"give {what} as a plain absolute path such as /lustre/project/data",
        )
    return path.rstrip("/") or "/"


def parse_mount(text: str, what: str = "mount") -> Mount:
    """`src:dst[:ro]` with absolute, plain paths."""
    parts = str(text).strip().split(":")
    read_only = len(parts) == 3 and parts[2] == "ro"
    if len(parts) not in (2, 3) or (len(parts) == 3 and not read_only):
        raise TaoError(
            "E_BAD_INPUT",
            f"{what} {text!r} is not of the form src:dst or src:dst:ro",
            "write each mount as /host/path:/container/path, with :ro appended for a read-only mount",
        )
    return Mount(check_path(parts[0], f"{what} source"), check_path(parts[1], f"{what} destination"), read_only)


def job_dir(base: str, job_id: str) -> str:
    if not SAFE_WORD.match(job_id):
        raise TaoError("E_BAD_INPUT", f"job id {job_id!r} is not usable in a path", "use the job id tao-mcp minted")
    return f"{base.rstrip('/')}/tao-mcp/{job_id}"


def results_root(base: str) -> str:
    return f"{base.rstrip('/')}/results"


def check_env_names(env: Mapping[str, str], what: str) -> list[str]:
    bad = [name for name in env if not ENV_NAME.match(name)]
    if bad:
        raise TaoError(
            "E_BAD_INPUT",
            f"{what} name(s) {', '.join(repr(b) for b in bad)} are not valid shell variable names",
            "use names matching ^[A-Za-z_][A-Za-z0-9_]*$",
        )
    return list(env)


def env_lines(env: Mapping[str, str]) -> str:
    """`NAME='value'` lines for `set -a; . file` (values shell-quoted, so newlines and $ survive)."""
    return "".join(f"{name}={shlex.quote(str(value))}\n" for name, value in env.items())


def render_secrets(secret_env: Mapping[str, str]) -> str:
    """The real content of secrets.env. Only the staging code calls this; nothing else sees the values."""
    check_env_names(secret_env, "secret environment variable")
    return "# tao-mcp secrets: mode 0600, sourced by job.sbatch. Never copy this file.\n" + env_lines(secret_env)


def preview_secrets(secret_env: Mapping[str, str]) -> str:
    return "# tao-mcp secrets: mode 0600, sourced by job.sbatch (values are never shown)\n" + "".join(
        f"{name}={SECRET_PLACEHOLDER}\n" for name in secret_env
    )


# --- images ---------------------------------------------------------------------------------------------------


def _is_path(image: str) -> bool:
    return image.startswith(("/", "./", "../")) or image.endswith((".sqsh", ".sif", ".sqfs", ".img", ".squashfs"))


def _has_registry(image: str) -> bool:
    first, sep, _ = image.partition("/")
    return bool(sep) and ("." in first or ":" in first or first == "localhost")


def pyxis_image(image: str) -> str:
    """`nvcr.io/nvidia/tao/tao-toolkit:tag` -> `nvcr.io#nvidia/tao/tao-toolkit:tag` (enroot's URI form)."""
    if "://" in image:
        image = image.split("://", 1)[1]
    if _is_path(image) or "#" in image or not _has_registry(image):
        return image
    return image.replace("/", "#", 1)


def apptainer_image(image: str) -> str:
    if "://" in image or _is_path(image):
        return image
    return f"docker://{image}"


def cached_image_name(image: str) -> str:
    """The file name an image is cached under in SLURM_IMAGE_CACHE: one plain word per image and tag."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "+", pyxis_image(image).replace("#", "/")).strip("+.")


# --- cluster limits and the job's layout ----------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """What the cluster's settings decide for every job (SlurmSettings; the driver hands them to render)."""

    default_time_minutes: int | None = 240
    signal_margin_s: int = 300  # USR1 this long before the time limit (at most half of it)
    cpus_per_gpu: int = 8
    gpus_per_node: int | None = None  # None = unknown: gpu_count is asked per node as given
    image_cache: str | None = None  # shared folder where imported images (squashfs, sif) are kept


@dataclass(frozen=True)
class Layout:
    nodes: int
    gpus_per_node: int
    time_minutes: int | None
    cpus_per_task: int | None
    signal_margin_s: int | None


def layout(req: LaunchRequest, options: Mapping[str, Any], limits: Limits) -> Layout:
    """Nodes, GPUs per node, time limit, CPUs per task and the USR1 margin of one job.

    gpu_count is per node. A single-node job asking for more GPUs than a node has (SLURM_GPUS_PER_NODE) is split
    over gpu_count / SLURM_GPUS_PER_NODE nodes when that divides evenly; anything else is refused."""
    nodes, gpus = max(int(req.num_nodes), 1), max(int(req.gpu_count), 0)
    per_node = limits.gpus_per_node
    if per_node and gpus > per_node:
        if nodes == 1 and gpus % per_node == 0:
            nodes, gpus = gpus // per_node, per_node
        else:
            asked = f"{gpus} GPUs per node" + (f" on {nodes} nodes" if nodes > 1 else "")
            fit = f"gpu_count={per_node} with num_nodes={-(-gpus * nodes // per_node)}"
            raise TaoError(
                "E_GPU_LAYOUT",
                f"{asked} do not fit nodes of {per_node} GPUs (SLURM_GPUS_PER_NODE)"
                + (" and cannot be split evenly" if nodes == 1 else ""),
                f"ask for a multiple of {per_node} GPUs on one node (split across nodes), or give {fit}",
            )
    minutes = req.time_limit_minutes or limits.default_time_minutes
    margin = min(limits.signal_margin_s, minutes * 30) if minutes else None
    cpus = options.get("cpus") or (limits.cpus_per_gpu * gpus if gpus and limits.cpus_per_gpu else None)
    return Layout(nodes, gpus, minutes, int(cpus) if cpus else None, margin)


# --- the files ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderedJob:
    """Everything staged for one job except the secret values (see render_secrets)."""

    job_dir: str
    sbatch: str
    command: str
    env: str
    secret_names: tuple[str, ...]
    hold: bool

    @property
    def sbatch_path(self) -> str:
        return f"{self.job_dir}/job.sbatch"

    @property
    def command_path(self) -> str:
        return f"{self.job_dir}/command.sh"

    @property
    def env_path(self) -> str:
        return f"{self.job_dir}/job.env"

    @property
    def secrets_path(self) -> str:
        return f"{self.job_dir}/secrets.env"

    @property
    def log_path(self) -> str:
        return f"{self.job_dir}/job.log"

    @property
    def submit(self) -> str:
        return shlex.join(["sbatch", "--parsable", *(["--hold"] if self.hold else []), self.sbatch_path])


def render_command(req: LaunchRequest) -> str:
    return (
        "#!/bin/bash\n"
        f"# tao-mcp job {req.job_id}: the job's command, run once per node (srun bash command.sh).\n"
        'export NODE_RANK="${SLURM_NODEID:-0}"\n'
        'export NNODES="${SLURM_NNODES:-1}"\n'
        "# TAO spawns one process per GPU itself: Lightning must not take this task for SLURM-spawned ranks.\n"
        f"unset {' '.join(LIGHTNING_TASK_ENV)}\n"
        "# USR1 (ahead of the time limit) is for the runner: the shells in between ignore it, it handles it.\n"
        "trap '' USR1\n"
        f"{req.command.rstrip()}\n"
    )


def render_env(req: LaunchRequest) -> str:
    check_env_names(req.env, "environment variable")
    return f"# tao-mcp job {req.job_id}: non-secret environment, sourced by job.sbatch\n" + env_lines(req.env)


def _cache_import(cache: str, target: str, part: str, import_argv: list[str]) -> list[str]:
    """Import an image into the shared cache once per cluster: under a lock, into a temporary name, then renamed,
    so concurrent jobs wait for one import and never start a half-written file."""
    q = shlex.quote
    once = f"[ -f {q(target)} ] || {{ rm -f {q(part)}; {shlex.join(import_argv)} && mv -f {q(part)} {q(target)}; }}"
    return [
        f"mkdir -p {q(cache)}",
        f"[ -f {q(target)} ] || flock {q(target + '.lock')} bash -c {q(once)}",
    ]


def _launcher_lines(req: LaunchRequest, jdir: str, options: Mapping[str, Any], limits: Limits) -> list[str]:
    """The lines that prepare the image (if any) and, last, the job step: srun running command.sh once per node,
    directly or inside the configured container runtime."""
    q = shlex.quote
    command_sh = f"{jdir}/command.sh"
    mounts = [parse_mount(m) for m in options.get("mounts") or ()]
    launcher = options.get("launcher") or "pyxis"
    image = req.image
    env_names = list(dict.fromkeys([*req.env, *req.secret_env, *MULTINODE_ENV]))
    cache = check_path(limits.image_cache, "SLURM_IMAGE_CACHE") if limits.image_cache else None
    remote_image = bool(image) and not _is_path(image or "")

    if not image or launcher == "none":
        # always a job step (also on one node): srun forwards USR1 from the batch shell to the task
        return [shlex.join(["srun", "bash", command_sh])]

    if launcher == "pyxis":
        lines: list[str] = []
        if cache and remote_image:
            target = f"{cache}/{cached_image_name(image)}.sqsh"
            part = f"{target}.part-{req.job_id}"
            lines += _cache_import(
                cache, target, part, ["enroot", "import", "--output", part, f"docker://{pyxis_image(image)}"]
            )
            image = target
        container_mounts = ",".join([f"{jdir}:{jdir}", *(str(m) for m in mounts)])
        argv = [
            "srun",
            f"--container-image={pyxis_image(image)}",
            f"--container-mounts={container_mounts}",
            f"--container-env={','.join(env_names)}",
            f"--container-workdir={jdir}",
            "bash",
            command_sh,
        ]
        return [*lines, shlex.join(argv)]

    if launcher in ("apptainer", "singularity"):
        lines = []
        if cache and remote_image:
            target = f"{cache}/{cached_image_name(image)}.sif"
            part = f"{target}.part-{req.job_id}"
            lines += _cache_import(cache, target, part, [launcher, "pull", part, apptainer_image(image)])
            image = target
        binds = ",".join([jdir, *(str(m) for m in mounts)])
        argv = ["srun", launcher, "exec", "--nv", "--bind", binds, apptainer_image(image), "bash", command_sh]
        return [*lines, shlex.join(argv)]

    if launcher == "enroot":
        lines = []
        if remote_image:
            # enroot starts squashfs images: import the registry image once, into the shared cache when there is
            # one (SLURM_IMAGE_CACHE), else into the job dir.
            if cache:
                sqsh = f"{cache}/{cached_image_name(image)}.sqsh"
                part = f"{sqsh}.part-{req.job_id}"
                lines += _cache_import(
                    cache, sqsh, part, ["enroot", "import", "--output", part, f"docker://{pyxis_image(image)}"]
                )
            else:
                sqsh = f"{jdir}/image.sqsh"
                lines.append(shlex.join(["enroot", "import", "--output", sqsh, f"docker://{pyxis_image(image)}"]))
            image = sqsh
        argv = ["srun", "enroot", "start", "--mount", f"{jdir}:{jdir}"]
        for m in mounts:
            # enroot takes fstab lines; the short src:dst form has no read-only flag.
            argv += ["--mount", f"{m.src} {m.dst} none x-create=auto,rbind,ro" if m.read_only else f"{m.src}:{m.dst}"]
        for name in env_names:
            argv += ["--env", name]  # a bare name: enroot copies the value from the job's environment
        argv += [image or "", "bash", command_sh]
        return [*lines, shlex.join(argv)]

    if launcher == "charliecloud":
        # ch-run can only bind onto directories that already exist in the (read-only) image, so the job dir is
        # not mounted: the batch shell reads command.sh and hands its text to bash inside the container.
        # ch-run passes the whole environment through; user mounts must name existing image directories.
        # Its images are unpacked directories, not files: SLURM_IMAGE_CACHE does not apply.
        argv = ["srun", "ch-run"]
        for m in mounts:
            argv += ["-b", f"{m.src}:{m.dst}"]
        argv += [image, "--", "bash", "-c"]
        return [f'{shlex.join(argv)} "$(cat {q(command_sh)})"']

    raise TaoError(
        "E_BAD_INPUT",
        f"unknown container launcher {launcher!r}",
        f"set launcher (or SLURM_CONTAINER_LAUNCHER) to one of {', '.join(LAUNCHERS)}",
    )


# The job step runs in the background so the batch shell can take USR1 (sent to it alone, --signal=B:USR1@N,
# ahead of the time limit) and hand it to srun, which forwards it to every task: the runner stops the command and
# uploads the results before SLURM's kill. `wait` returns early when a trapped signal comes: wait again until
# the step is gone, and exit with its status.
STEP_START = 'TAO_STEP=""\ntrap \'[ -n "$TAO_STEP" ] && kill -USR1 "$TAO_STEP" 2>/dev/null\' USR1'
STEP_WAIT = (
    'TAO_STEP=$!\nwait "$TAO_STEP"; TAO_RC=$?\n'
    'while kill -0 "$TAO_STEP" 2>/dev/null; do wait "$TAO_STEP"; TAO_RC=$?; done\nexit "$TAO_RC"'
)


def render_sbatch(req: LaunchRequest, jdir: str, options: Mapping[str, Any], limits: Limits | None = None) -> str:
    q = shlex.quote
    limits = limits or Limits()
    if not SAFE_WORD.match(req.backend_name):
        raise TaoError(
            "E_BAD_INPUT", f"job name {req.backend_name!r} is not usable by SLURM", "use the name tao-mcp derived"
        )
    shape = layout(req, options, limits)
    header = [
        f"--job-name={req.backend_name}",
        f"--nodes={shape.nodes}",
        "--ntasks-per-node=1",  # one task per node: TAO spawns one process per GPU itself
    ]
    if shape.gpus_per_node > 0:
        header.append(f"--gres=gpu:{shape.gpus_per_node}")
    if shape.time_minutes:
        header.append(f"--time={int(shape.time_minutes)}")
        header.append(f"--signal=B:USR1@{shape.signal_margin_s}")
    for key in ("partition", "account"):
        value = options.get(key)
        if value:
            if not SAFE_WORD.match(str(value)):
                raise TaoError("E_BAD_INPUT", f"{key} {value!r} has unsafe characters", f"use a plain {key} name")
            header.append(f"--{key}={value}")
    if shape.cpus_per_task:
        header.append(f"--cpus-per-task={shape.cpus_per_task}")
    if options.get("memory"):
        if not MEMORY.match(str(options["memory"])):
            raise TaoError("E_BAD_INPUT", f"memory {options['memory']!r} is not like 16G", "give memory as 16G")
        header.append(f"--mem={options['memory']}")
    if options.get("exclusive"):
        header.append("--exclusive")
    if options.get("requeue") is not None:
        header.append("--requeue" if options["requeue"] else "--no-requeue")
    header += [
        f"--chdir={jdir}",
        f"--output={jdir}/job.log",
        f"--error={jdir}/job.log",
        "--open-mode=append",
    ]
    body = [
        "#!/bin/bash",
        *(f"#SBATCH {h}" for h in header),
        f"# Rendered by tao-mcp for job {req.job_id}. Secret values live only in secrets.env (mode 0600).",
        "",
        STEP_START,  # first: USR1 would end a batch shell that has no trap for it
        "",
        "set -a",
        f". {q(jdir + '/job.env')}",
        f"[ -f {q(jdir + '/secrets.env')} ] && . {q(jdir + '/secrets.env')}",
        "set +a",
        "",
        'export MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)"',
        f"export MASTER_PORT={master_port(req.job_id)}",
        'export WORLD_SIZE="$SLURM_NNODES"',
        'export NUM_NODES="$SLURM_NNODES"',
        f"export TAO_RUNNER_PHASE_FILE={q(jdir + '/' + RUNNER_PHASE_FILE)}",
        f"export NUM_GPU_PER_NODE={shape.gpus_per_node}",
    ]
    if shape.cpus_per_task:
        # Slurm >= 22.05 no longer hands --cpus-per-task from sbatch to srun steps by itself.
        body.append('export SRUN_CPUS_PER_TASK="$SLURM_CPUS_PER_TASK"')
    *prepare, step = _launcher_lines(req, jdir, options, limits)
    body += ["", *prepare, f"{step} &", STEP_WAIT, ""]
    return "\n".join(body)


def render(req: LaunchRequest, base: str, options: Mapping[str, Any], limits: Limits | None = None) -> RenderedJob:
    """All non-secret files of one job. Pure: the same request renders the same bytes."""
    check_env_names(req.secret_env, "secret environment variable")
    jdir = job_dir(check_path(base, "SLURM_BASE_RESULTS_DIR"), req.job_id)
    if options.get("input_cache"):  # the runner keeps downloaded inputs there; a container sees it at the same path
        cache = options["input_cache"]
        mounts = [*(options.get("mounts") or []), f"{cache}:{cache}"]
        options = {**options, "mounts": list(dict.fromkeys(mounts))}
        req = dataclasses.replace(req, env={**req.env, "TAO_INPUT_CACHE": cache})
    return RenderedJob(
        job_dir=jdir,
        sbatch=render_sbatch(req, jdir, options, limits),
        command=render_command(req),
        env=render_env(req),
        secret_names=tuple(req.secret_env),
        hold=bool(options.get("hold")),
    )


def preview_files(job: RenderedJob, secret_env: Mapping[str, str]) -> dict[str, str]:
    files = {job.sbatch_path: job.sbatch, job.command_path: job.command, job.env_path: job.env}
    if secret_env:
        files[job.secrets_path] = preview_secrets(secret_env)
    return files


def mounts_from_setting(value: str | None) -> list[str]:
    """SLURM_CONTAINER_MOUNTS: a comma list of src:dst[:ro]."""
    return [str(parse_mount(m.strip(), "SLURM_CONTAINER_MOUNTS entry")) for m in (value or "").split(",") if m.strip()]


def normalize_mounts(values: Sequence[str]) -> list[str]:
    return [str(parse_mount(v)) for v in values]
