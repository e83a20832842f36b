"""Rendering of the SLURM job files (pure): header, env loading, launchers, quoting, secrets never rendered."""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import replace
from typing import Any

import pytest

from tao_mcp.drivers.base import LaunchRequest
from tao_mcp.drivers.slurm import SlurmDriver, script
from tao_mcp.errors import TaoError

SECRET = "s3cr3t-'value' $(rm -rf /) `x`"
BASE = "/lustre/proj/tao"
JDIR = f"{BASE}/tao-mcp/job123"


def settings(**extra: str) -> dict[str, str]:
    return {"SLURM_HOSTNAME": "login1,login2", "SLURM_USER": "alice", "SSH_KEY_PATH": "/nonexistent", **extra}


def request(**changes: Any) -> LaunchRequest:
    req = LaunchRequest(
        job_id="job123",
        backend_name="tao-job123",
        command="echo \"hello $TAO_JOB_ID\" && python -c 'print(1)'",
        image="nvcr.io/nvidia/tao/tao-toolkit:5.5.0-pyt",
        gpu_count=2,
        num_nodes=1,
        env={"TAO_JOB_ID": "job123", "MESSAGE": "it's $HOME; rm -rf /"},
        secret_env={"NGC_KEY": SECRET, "HF_TOKEN": "hf-secret-token"},
        time_limit_minutes=90,
        options={},
    )
    return replace(req, **changes)


def render(req: LaunchRequest | None = None, **options: Any) -> script.RenderedJob:
    driver = SlurmDriver(settings(SLURM_CONTAINER_LAUNCHER="none"))
    req = req or request()
    opts = driver.parse_options({"launcher": "pyxis", **options})
    return script.render(req, BASE, opts)


def header(job: script.RenderedJob) -> list[str]:
    return [line.removeprefix("#SBATCH ") for line in job.sbatch.splitlines() if line.startswith("#SBATCH ")]


def launcher_line(job: script.RenderedJob) -> str:
    """The job step: the one line started in the background (the batch shell waits for it, forwarding USR1)."""
    (line,) = [line for line in job.sbatch.splitlines() if line.endswith(" &")]
    return line.removesuffix(" &")


def prepare_lines(job: script.RenderedJob) -> list[str]:
    """The lines between the environment exports and the job step (image imports)."""
    lines = job.sbatch.splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("export "))
    step = next(i for i, line in enumerate(lines) if line.endswith(" &"))
    return [line for line in lines[start + 1 : step] if line and not line.startswith("export ")]


def test_header_has_every_requested_resource() -> None:
    job = render(partition="gpu", account="proj-a", cpus=8, memory="16g")
    assert header(job) == [
        "--job-name=tao-job123",
        "--nodes=1",
        "--ntasks-per-node=1",
        "--gres=gpu:2",
        "--time=90",
        "--signal=B:USR1@300",
        "--partition=gpu",
        "--account=proj-a",
        "--cpus-per-task=8",
        "--mem=16G",
        f"--chdir={JDIR}",
        f"--output={JDIR}/job.log",
        f"--error={JDIR}/job.log",
        "--open-mode=append",
    ]
    assert 'export SRUN_CPUS_PER_TASK="$SLURM_CPUS_PER_TASK"' in job.sbatch


def test_header_omits_what_was_not_asked() -> None:
    job = script.render(request(gpu_count=0, time_limit_minutes=None), BASE, {}, script.Limits(None))
    joined = "\n".join(header(job))
    for absent in ("--gres", "--time", "--signal", "--partition", "--account", "--cpus-per-task", "--mem"):
        assert absent not in joined


def test_defaults_from_settings_are_applied() -> None:
    driver = SlurmDriver(
        settings(SLURM_PARTITION="batch", SLURM_ACCOUNT="acct1", SLURM_CONTAINER_MOUNTS="/lustre:/lustre,/ds:/ds:ro")
    )
    opts = driver.parse_options({"mounts": ["/scratch:/scratch"]})
    assert opts == {
        "partition": "batch",
        "account": "acct1",
        "mounts": ["/lustre:/lustre", "/ds:/ds:ro", "/scratch:/scratch"],
        "cpus": None,
        "memory": None,
        "launcher": "pyxis",
        "hold": False,
        "exclusive": False,
        "requeue": None,
        "input_cache": None,
    }
    assert driver.parse_options({"partition": "debug"})["partition"] == "debug"


@pytest.mark.parametrize(
    "options",
    [
        {"partitoin": "gpu"},
        {"partition": "gpu; rm -rf /"},
        {"account": "a b"},
        {"mounts": ["relative:/x"]},
        {"mounts": ["/a:/b:rw"]},
        {"mounts": ["/a/../etc:/b"]},
        {"mounts": ["/a b:/b"]},
        {"cpus": 0},
        {"cpus": True},
        {"cpus": "many"},
        {"memory": "lots"},
        {"memory": "16Q"},
        {"launcher": "docker"},
        {"hold": "maybe"},
    ],
)
def test_bad_options_are_rejected(options: dict[str, Any]) -> None:
    driver = SlurmDriver(settings())
    with pytest.raises(TaoError) as err:
        driver.parse_options(options)
    assert err.value.code == "E_BAD_INPUT"


def test_unknown_option_lists_the_accepted_ones() -> None:
    with pytest.raises(TaoError) as err:
        SlurmDriver(settings()).parse_options({"qos": "high"})
    assert "qos" in err.value.cause
    for name in ("partition", "account", "mounts", "cpus", "memory", "launcher", "hold"):
        assert name in err.value.fix


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SLURM_CONTAINER_LAUNCHER", "docker"),
        ("SLURM_BASE_RESULTS_DIR", "relative/dir"),
        ("SLURM_BASE_RESULTS_DIR", "/a/../b"),
        ("SLURM_CONTAINER_MOUNTS", "/a"),
        ("SLURM_SSH_PORT", "ssh"),
        ("SLURM_SSH_STRICT_HOST_KEY_CHECKING", "maybe"),
        ("SLURM_PARTITION", "a;b"),
    ],
)
def test_bad_settings_are_rejected(name: str, value: str) -> None:
    with pytest.raises(TaoError):
        SlurmDriver(settings(**{name: value}))


def test_secret_values_never_rendered() -> None:
    job = render()
    for text in (job.sbatch, job.command, job.env, *script.preview_files(job, request().secret_env).values()):
        assert SECRET not in text and "hf-secret-token" not in text
    assert "export NGC_KEY" not in job.sbatch
    assert f". {JDIR}/secrets.env" in job.sbatch
    preview = script.preview_files(job, request().secret_env)[f"{JDIR}/secrets.env"]
    assert f"NGC_KEY={script.SECRET_PLACEHOLDER}" in preview
    # the real file is only produced by render_secrets, shell-quoted
    real = script.render_secrets(request().secret_env)
    assert f"NGC_KEY={shlex.quote(SECRET)}" in real


def test_env_files_round_trip_through_bash(tmp_path) -> None:
    """job.env / secrets.env sourced with `set -a` give back the exact values, nothing executed."""
    req = request()
    (tmp_path / "job.env").write_text(script.render_env(req))
    (tmp_path / "secrets.env").write_text(script.render_secrets(req.secret_env))
    out = subprocess.run(
        ["bash", "-c", 'set -a; . ./job.env; . ./secrets.env; set +a; printf "%s\\n%s\\n" "$MESSAGE" "$NGC_KEY"'],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == f"{req.env['MESSAGE']}\n{SECRET}\n"


def test_no_secret_file_line_when_no_secrets() -> None:
    job = render(request(secret_env={}))
    assert job.secret_names == ()
    assert script.preview_files(job, {}).keys() == {f"{JDIR}/job.sbatch", f"{JDIR}/command.sh", f"{JDIR}/job.env"}


def test_bad_env_names_rejected() -> None:
    with pytest.raises(TaoError):
        render(request(env={"BAD-NAME": "x"}))
    with pytest.raises(TaoError):
        render(request(secret_env={"1X": "x"}))


def test_command_sh_keeps_the_command_verbatim() -> None:
    job = render()
    assert job.command.startswith("#!/bin/bash\n")
    assert 'export NODE_RANK="${SLURM_NODEID:-0}"' in job.command
    assert job.command.rstrip().endswith(request().command)


def test_multinode_env() -> None:
    job = render(request(num_nodes=4))
    assert "--nodes=4" in header(job)
    assert 'export MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)"' in job.sbatch
    assert f"export MASTER_PORT={script.master_port('job123')}" in job.sbatch
    assert 29500 <= script.master_port("job123") < 30500
    assert 'export WORLD_SIZE="$SLURM_NNODES"' in job.sbatch
    assert 'export NUM_NODES="$SLURM_NNODES"' in job.sbatch


def test_pyxis_line() -> None:
    job = render(mounts=["/data:/data:ro"])
    argv = shlex.split(launcher_line(job))
    assert argv[:2] == ["srun", "--container-image=nvcr.io#nvidia/tao/tao-toolkit:5.5.0-pyt"]
    assert f"--container-mounts={JDIR}:{JDIR},/data:/data:ro" in argv
    env_arg = next(a for a in argv if a.startswith("--container-env="))
    names = env_arg.split("=", 1)[1].split(",")
    assert {"TAO_JOB_ID", "MESSAGE", "NGC_KEY", "HF_TOKEN", "MASTER_ADDR"} <= set(names)
    assert argv[-2:] == ["bash", f"{JDIR}/command.sh"]


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("nvcr.io/nvidia/tao/tao-toolkit:5.5.0-pyt", "nvcr.io#nvidia/tao/tao-toolkit:5.5.0-pyt"),
        ("docker://nvcr.io/nvidia/pytorch:24.01-py3", "nvcr.io#nvidia/pytorch:24.01-py3"),
        ("localhost:5000/x/y:1", "localhost:5000#x/y:1"),
        ("nvcr.io#nvidia/pytorch:24.01-py3", "nvcr.io#nvidia/pytorch:24.01-py3"),
        ("ubuntu:22.04", "ubuntu:22.04"),
        ("library/ubuntu:22.04", "library/ubuntu:22.04"),
        ("/lustre/images/tao.sqsh", "/lustre/images/tao.sqsh"),
    ],
)
def test_pyxis_image_form(image: str, expected: str) -> None:
    assert script.pyxis_image(image) == expected


@pytest.mark.parametrize("launcher", ["apptainer", "singularity"])
def test_apptainer_line(launcher: str) -> None:
    job = render(launcher=launcher, mounts=["/data:/in:ro"])
    assert shlex.split(launcher_line(job)) == [
        "srun",
        launcher,
        "exec",
        "--nv",
        "--bind",
        f"{JDIR},/data:/in:ro",
        "docker://nvcr.io/nvidia/tao/tao-toolkit:5.5.0-pyt",
        "bash",
        f"{JDIR}/command.sh",
    ]
    job = render(request(image="/images/tao.sif"), launcher=launcher)
    assert "/images/tao.sif" in shlex.split(launcher_line(job))


def test_enroot_lines() -> None:
    job = render(launcher="enroot", mounts=["/data:/in:ro", "/w:/w"])
    (line,) = prepare_lines(job)
    assert shlex.split(line) == [
        "enroot",
        "import",
        "--output",
        f"{JDIR}/image.sqsh",
        "docker://nvcr.io#nvidia/tao/tao-toolkit:5.5.0-pyt",
    ]
    argv = shlex.split(launcher_line(job))
    assert argv[:5] == ["srun", "enroot", "start", "--mount", f"{JDIR}:{JDIR}"]
    assert "/data /in none x-create=auto,rbind,ro" in argv and "/w:/w" in argv
    assert argv[argv.index("NGC_KEY") - 1 : argv.index("NGC_KEY") + 1] == ["--env", "NGC_KEY"]
    assert argv[-3:] == [f"{JDIR}/image.sqsh", "bash", f"{JDIR}/command.sh"]
    job = render(request(image="/images/tao.sqsh"), launcher="enroot")
    assert "enroot import" not in job.sbatch
    assert shlex.split(launcher_line(job))[-3] == "/images/tao.sqsh"


def test_charliecloud_line() -> None:
    job = render(request(image="/var/tmp/rootfs"), launcher="charliecloud", mounts=["/data:/mnt/0"])
    line = launcher_line(job)
    assert line == f'srun ch-run -b /data:/mnt/0 /var/tmp/rootfs -- bash -c "$(cat {JDIR}/command.sh)"'


def test_no_container() -> None:
    assert launcher_line(render(launcher="none")) == f"srun bash {JDIR}/command.sh"
    assert launcher_line(render(request(image=None))) == f"srun bash {JDIR}/command.sh"
    assert launcher_line(render(request(num_nodes=2), launcher="none")) == f"srun bash {JDIR}/command.sh"


def test_submit_line_and_hold() -> None:
    assert render().submit == f"sbatch --parsable {JDIR}/job.sbatch"
    assert render(hold=True).submit == f"sbatch --parsable --hold {JDIR}/job.sbatch"


def test_sbatch_is_valid_bash() -> None:
    for launcher in script.LAUNCHERS:
        job = render(launcher=launcher, mounts=["/data:/data"])
        subprocess.run(["bash", "-n"], input=job.sbatch, text=True, check=True)
        subprocess.run(["bash", "-n"], input=job.command, text=True, check=True)


def test_unsafe_names_and_ids() -> None:
    with pytest.raises(TaoError):
        render(request(backend_name="tao job"))
    with pytest.raises(TaoError):
        render(request(job_id="../etc"))
    with pytest.raises(TaoError):
        script.render(request(), "/home/a b", {})


# --- cluster defaults: time limit + USR1, CPUs per GPU, exclusive, requeue, GPU split, image cache ----------------


def limits_render(req: LaunchRequest | None = None, limits: script.Limits | None = None, **options: Any) -> Any:
    opts = SlurmDriver(settings()).parse_options({"launcher": "pyxis", **options})
    return script.render(req or request(), BASE, opts, limits or script.Limits())


def test_default_time_limit_and_usr1_margin_from_settings() -> None:
    limits = SlurmDriver(settings(SLURM_DEFAULT_TIME_LIMIT="1-02:00:00", SLURM_SIGNAL_MARGIN="120")).settings.limits()
    job = limits_render(request(time_limit_minutes=None), limits)
    assert "--time=1560" in header(job) and "--signal=B:USR1@120" in header(job)
    assert "--time=240" in header(limits_render(request(time_limit_minutes=None)))  # 4:00:00 unless set
    short = limits_render(request(time_limit_minutes=1))
    assert "--time=1" in header(short) and "--signal=B:USR1@30" in header(short)  # at most half the limit


def test_batch_shell_forwards_usr1_to_the_step_and_waits_for_it() -> None:
    job = limits_render()
    lines = job.sbatch.splitlines()
    trap = next(i for i, line in enumerate(lines) if line.startswith("trap "))
    assert trap < lines.index("set -a")  # before anything that takes time: an untrapped USR1 ends the batch shell
    assert 'kill -USR1 "$TAO_STEP"' in lines[trap]
    step = next(i for i, line in enumerate(lines) if line.endswith(" &"))
    assert lines[step + 1 :] == script.STEP_WAIT.splitlines()
    assert "trap '' USR1" in job.command  # the shells between srun and the runner leave USR1 to the runner


def test_cpus_scale_with_gpus_unless_given() -> None:
    assert "--cpus-per-task=16" in header(limits_render())  # 2 GPUs x 8
    assert "--cpus-per-task=12" in header(limits_render(limits=script.Limits(cpus_per_gpu=6)))
    assert "--cpus-per-task=4" in header(limits_render(cpus=4))
    assert not any(h.startswith("--cpus-per-task") for h in header(limits_render(request(gpu_count=0))))


def test_exclusive_and_requeue() -> None:
    assert "--exclusive" in header(limits_render(exclusive=True))
    assert "--exclusive" not in header(limits_render())
    assert "--requeue" in header(limits_render(requeue=True))
    assert "--no-requeue" in header(limits_render(requeue=False))
    assert not any("requeue" in h for h in header(limits_render()))  # the cluster's JobRequeue decides


def test_more_gpus_than_a_node_has_are_split_or_refused() -> None:
    eight = script.Limits(gpus_per_node=8)
    job = limits_render(request(gpu_count=16), eight)
    assert {"--nodes=2", "--gres=gpu:8"} <= set(header(job))
    assert "export NUM_GPU_PER_NODE=8" in job.sbatch
    for asked in (request(gpu_count=12), request(gpu_count=16, num_nodes=2)):
        with pytest.raises(TaoError) as err:
            limits_render(asked, eight)
        assert err.value.code == "E_GPU_LAYOUT" and "SLURM_GPUS_PER_NODE" in err.value.cause
    assert "--gres=gpu:8" in header(limits_render(request(gpu_count=8), eight))


@pytest.mark.parametrize(
    ("launcher", "suffix", "importer"),
    [
        ("pyxis", "sqsh", "enroot import --output"),
        ("enroot", "sqsh", "enroot import --output"),
        ("apptainer", "sif", "apptainer pull"),
    ],
)
def test_image_cache_imports_once_per_cluster(launcher: str, suffix: str, importer: str) -> None:
    cache = "/lustre/cache/images"
    job = limits_render(limits=script.Limits(image_cache=cache), launcher=launcher)
    target = f"{cache}/nvcr.io+nvidia+tao+tao-toolkit+5.5.0-pyt.{suffix}"
    prepare = prepare_lines(job)
    assert prepare[0] == f"mkdir -p {cache}"
    assert prepare[1].startswith(f"[ -f {target} ] || flock {target}.lock bash -c ")
    assert importer in prepare[1] and f"mv -f {target}.part-job123 {target}" in prepare[1]
    assert target in launcher_line(job)
    assert "image.sqsh" not in job.sbatch
    subprocess.run(["bash", "-n"], input=job.sbatch, text=True, check=True)
    local = limits_render(request(image="/images/tao.sqsh"), script.Limits(image_cache=cache), launcher=launcher)
    assert prepare_lines(local) == []  # a file on the cluster is used where it is


def test_image_cache_import_runs_once(tmp_path: Any) -> None:
    """The rendered import line, run twice with a stand-in importer: the second run finds the cached file."""
    cache = tmp_path / "cache"
    job = limits_render(limits=script.Limits(image_cache=str(cache)), launcher="apptainer")
    calls = tmp_path / "calls"
    fake = tmp_path / "bin" / "apptainer"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/bash\necho "$@" >> {calls}\necho image > "$2"\n')
    fake.chmod(0o755)
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin"}
    for _ in range(2):
        subprocess.run(["bash", "-c", "\n".join(prepare_lines(job))], env=env, check=True)
    assert calls.read_text().count("pull") == 1
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == [
        "nvcr.io+nvidia+tao+tao-toolkit+5.5.0-pyt.sif"
    ]


def test_input_cache_is_mounted_and_named_to_the_runner() -> None:
    job = render(input_cache="/lustre/cache/tao", mounts=["/data:/data:ro"])
    argv = shlex.split(launcher_line(job))
    assert f"--container-mounts={JDIR}:{JDIR},/data:/data:ro,/lustre/cache/tao:/lustre/cache/tao" in argv
    assert "TAO_INPUT_CACHE=/lustre/cache/tao\n" in job.env
    default = SlurmDriver(settings(SLURM_INPUT_CACHE="/lustre/shared")).parse_options({})
    assert default["input_cache"] == "/lustre/shared"
    with pytest.raises(TaoError, match="input_cache"):
        SlurmDriver(settings()).parse_options({"input_cache": "relative/../x"})
    assert "TAO_INPUT_CACHE" not in render().env
