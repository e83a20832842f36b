"""Failure analysis: realistic platform facts and log tails -> one category, with evidence at the right lines."""

from __future__ import annotations

from typing import Any

import pytest

from tao_mcp.drivers.base import Evidence
from tao_mcp.models import FailureAnalysis
from tao_mcp.service.failures import CATEGORIES, MAX_EVIDENCE, MAX_TEXT, SIGNATURES, _required_literals, analyze

# ---------------------------------------------------------------------------------------------------------------------
# Realistic log samples

CUDA_OOM_LOG = """\
Epoch 0:  12%|█▏        | 120/1000 [01:02<07:38,  1.92it/s, loss=1.23]
Traceback (most recent call last):
  File "/workspace/train.py", line 42, in <module>
    main()
  File "/workspace/train.py", line 30, in main
    loss = model(images, targets)
  File "/usr/local/lib/python3.10/dist-packages/torch/nn/modules/module.py", line 1511, in _wrapped_call_impl
    return self._call_impl(*args, **kwargs)
  File "/usr/local/lib/python3.10/dist-packages/torch/nn/functional.py", line 2573, in layer_norm
    return torch.layer_norm(input, normalized_shape, weight, bias, eps, torch.backends.cudnn.enabled)
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.77 GiB total capacity; 13.20 GiB already allocated; 1.02 GiB free; 13.50 GiB reserved in total by PyTorch) If reserved memory is >> allocated memory try setting max_split_size_mb to avoid fragmentation.
srun: error: node1: task 0: Exited with exit code 1
""".splitlines()
CUDA_OOM_LINE = 10  # index of the exception line above

NCCL_WATCHDOG_LOG = """\
[rank1]:[E1128 10:00:00.123456789 ProcessGroupNCCL.cpp:616] [Rank 1] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=1234, OpType=ALLREDUCE, NumelIn=1, NumelOut=1, Timeout(ms)=600000) ran for 600042 milliseconds before timing out.
[rank1]:[E1128 10:00:00.123500000 ProcessGroupNCCL.cpp:1834] [PG 0 Rank 1] Timeout at NCCL work: 1234, last enqueued NCCL work: 1234, last completed NCCL work: 1233.
[rank1]:[E1128 10:00:00.123600000 ProcessGroupNCCL.cpp:630] [Rank 1] Some NCCL operations have failed or timed out. Due to the asynchronous nature of CUDA kernels, subsequent GPU operations might run on corrupted/incomplete data.
[rank1]:[E1128 10:00:00.123700000 ProcessGroupNCCL.cpp:636] [Rank 1] To avoid data inconsistency, we are taking the entire process down.
terminate called after throwing an instance of 'c10::DistBackendError'
  what():  [PG 0 Rank 1] Process group watchdog thread terminated with exception: [Rank 1] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=1234, OpType=ALLREDUCE) ran for 600042 milliseconds before timing out.
Exception raised from ncclCommWatchdog at ../torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp:1521 (most recent call first):
E1128 10:10:00.000000 140 torch/distributed/elastic/multiprocessing/api.py:833] failed (exitcode: -6) local_rank: 1 (pid: 4321) of binary: /usr/bin/python
Traceback (most recent call last):
  File "/usr/local/bin/torchrun", line 8, in <module>
    sys.exit(main())
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
""".splitlines()

XID_LINE = "NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python, GPU has fallen off the bus."

SLURM_TIME_LIMIT = "slurmstepd: error: *** JOB 12 ON node1 CANCELLED AT 2026-11-28T10:00:00 DUE TO TIME LIMIT ***"

HYDRA_LOG = """\
[2026-11-28 10:00:00,000 - TAO Toolkit - root - INFO] Starting DINO training
Error executing job with overrides: ['train.num_epochs=10']
Traceback (most recent call last):
  File "/usr/local/lib/python3.10/dist-packages/nvidia_tao_pytorch/cv/dino/scripts/train.py", line 120, in main
    run_experiment(experiment_config=cfg)
  File "/usr/local/lib/python3.10/dist-packages/omegaconf/dictconfig.py", line 355, in _format_and_raise
    format_and_raise(node=self, key=key, value=value, cause=cause, msg=str(cause))
omegaconf.errors.ConfigAttributeError: Key 'batchsize' is not in struct
    full_key: dataset.batchsize
    object_type=dict

Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.
""".splitlines()

S3_ACCESS_DENIED_LOG = """\
[tao-runner] download 0/3 files from s3://tao-data/coco/
Traceback (most recent call last):
  File "/tmp/tao_runner.py", line 88, in download
    client.download_file(bucket, key, dest)
  File "/usr/local/lib/python3.10/dist-packages/boto3/s3/inject.py", line 192, in download_file
    return transfer.download_file(
  File "/usr/local/lib/python3.10/dist-packages/botocore/client.py", line 1021, in _make_api_call
    raise error_class(parsed_response, operation_name)
botocore.exceptions.ClientError: An error occurred (AccessDenied) when calling the GetObject operation: Access Denied
[tao-runner] error: download of s3://tao-data/coco/annotations/train.json failed
""".splitlines()

VALUE_ERROR_LOG = """\
[tao-runner] download 3/3 files
Loading dataset from /inputs/train
Traceback (most recent call last):
  File "/workspace/train.py", line 58, in <module>
    main(args)
  File "/workspace/train.py", line 41, in main
    ds = build_dataset(cfg)
  File "/workspace/data.py", line 17, in build_dataset
    raise ValueError(f"unknown augmentation {name!r}")
ValueError: unknown augmentation 'mosaic9'
[tao-runner] upload 12 files to s3://tao-results/results/job-1
""".splitlines()

DATALOADER_KILLED_LOG = """\
Epoch 3: 45%|████▌     | 450/1000 [05:10<06:20]
Traceback (most recent call last):
  File "/usr/local/lib/python3.10/dist-packages/torch/utils/data/dataloader.py", line 1133, in _try_get_data
    data = self._data_queue.get(timeout=timeout)
  File "/usr/local/lib/python3.10/dist-packages/torch/utils/data/_utils/signal_handling.py", line 66, in handler
    _error_if_any_worker_fails()
RuntimeError: DataLoader worker (pid 4312) is killed by signal: Killed.
""".splitlines()

SHM_LOG = """\
ERROR: Unexpected bus error encountered in worker. This might be caused by insufficient shared memory (shm).
Traceback (most recent call last):
  File "/usr/local/lib/python3.10/dist-packages/torch/utils/data/dataloader.py", line 1133, in _try_get_data
    data = self._data_queue.get(timeout=timeout)
RuntimeError: DataLoader worker (pid 4312) is killed by signal: Bus error. It is possible that dataloader's workers are out of shared memory. Please try to raise your shared memory limit.
""".splitlines()


def run(**kw: Any) -> FailureAnalysis:
    args: dict[str, Any] = {
        "platform": "slurm",
        "status": "Error",
        "raw_state": "FAILED",
        "exit_code": 1,
        "pending_reason": None,
        "message": "",
        "log_lines": [],
        "log_first_line": 0,
    }
    args.update(kw)
    return analyze(**args)


def log_lines_of(result: FailureAnalysis) -> dict[int, str]:
    return {e.line: e.text for e in result.evidence if e.source == "log" and e.line is not None}


# ---------------------------------------------------------------------------------------------------------------------
# The table itself


def test_every_signature_names_a_known_category_and_renders() -> None:
    for sig in SIGNATURES:
        assert sig.category in CATEGORIES, sig
        info = sig.info
        for template in (info.summary, info.suggestion):
            rendered = template.format(reason="R", raw_state="S", exit_code="1", platform="P")
            assert "{" not in rendered
        assert sig.where, sig


def test_suggestions_name_a_tool_or_setting() -> None:
    for name, cat in CATEGORIES.items():
        if cat.err_class != "NONE":
            assert any(word in cat.suggestion for word in ("submit_job", "job_logs", "cancel_job", "list_")), name


SAMPLE_LINES = [
    *CUDA_OOM_LOG,
    *NCCL_WATCHDOG_LOG,
    *HYDRA_LOG,
    *S3_ACCESS_DENIED_LOG,
    *VALUE_ERROR_LOG,
    *DATALOADER_KILLED_LOG,
    *SHM_LOG,
    XID_LINE,
    SLURM_TIME_LIMIT,
    "Killed",
    "/var/spool/slurmd/job00012/slurm_script: line 9:  4242 Killed                  python train.py",
    "slurmstepd: error: Detected 1 oom-kill event(s) in StepId=12.batch.",
    "Memory cgroup out of memory: Killed process 4242 (python)",
    "OSError: [Errno 28] No space left on device",
    "requests.exceptions.HTTPError: 401 Client Error: Unauthorized for url: https://huggingface.co/api/models/x",
    "docker: Error response from daemon: manifest for nvcr.io/nvidia/tao/tao-toolkit:9.9 not found: manifest unknown",
    "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
    "NCCL WARN NET/IB : Got completion from peer 10.0.0.2<41234> with error 12, opcode 0, len 0, vendor err 129",
    "numpy.core._exceptions._ArrayMemoryError: Unable to allocate 3.50 GiB for an array with shape (1000, 1000)",
    "2026-11-28T10:00:01.123456789Z ValueError: bad value for lr",
    "[2026-11-28 10:00:00,000 - TAO Toolkit - nvidia_tao_pytorch.core - ERROR] Experiment failed",
    "omegaconf.errors.MissingMandatoryValue: Missing mandatory value: model.pretrained_backbone_path",
    "pydantic_core._pydantic_core.ValidationError: 1 validation error for ExperimentConfig",
    "RuntimeError: CUDA error: an illegal memory access was encountered",
    "RuntimeError: No CUDA GPUs are available; cuInit failed: CUDA_ERROR_NO_DEVICE",
    "Failed to initialize NVML: Driver/library version mismatch",
    "botocore.exceptions.ClientError: An error occurred (403) when calling the HeadObject operation: Forbidden",
    "forbidden: exceeded quota: gpu-quota, requested: nvidia.com/gpu=8",
    "State.OOMKilled=true",
    "[rank0]: KeyError: 'images'",
    "srun: error: node1: task 0: Exited with exit code 1",
    "loss is nan at step 200",
]


@pytest.mark.parametrize(
    ("regex", "literals"),
    [
        (r"CUDA out of memory|OOM when", ("cuda out of memory", "oom when")),
        (r"\b403\b.{0,40}Forbidden", ("forbidden",)),
        (r"CANCELL?ED AT", ("cancel",)),
        (r"exceeds? (?:your |the )?quota", ("exceed",)),
        (r"Unable to allocate [\d.]+ [KMGT]?i?B for an array", ("unable to allocate ",)),
        (r"Traceback \(most recent call last\)", ("traceback (most recent call last)",)),
        (r"(?:[A-Za-z_]\w{0,80}\.){0,8}Error", ("error",)),  # groups and {m,n} quantifiers are skipped
        (r"ab{2,3}cdef|x(?:y|z)", None),  # an alternative without a 3-character literal: always tried
    ],
)
def test_required_literals(regex: str, literals: tuple[str, ...] | None) -> None:
    assert _required_literals(regex) == literals


def test_literal_precheck_never_hides_a_match() -> None:
    """Each signature's required literals are derived from its regex; a regex match implies a literal match."""
    for line in SAMPLE_LINES:
        for sig in SIGNATURES:
            if sig.pattern.search(line):
                assert sig.may_match(line.lower()), (sig.regex, line)


# ---------------------------------------------------------------------------------------------------------------------
# GPU memory: never infrastructure


def test_cuda_oom_traceback_is_gpu_oom_with_the_exception_line() -> None:
    r = run(log_lines=CUDA_OOM_LOG, log_first_line=5000)
    assert (r.category, r.err_class, r.retriable, r.confidence) == ("gpu_oom", "ERR_RESOURCE", False, "high")
    lines = log_lines_of(r)
    assert lines[5000 + CUDA_OOM_LINE].startswith("torch.OutOfMemoryError: CUDA out of memory")
    assert 5000 + 1 in lines  # the traceback header
    assert lines[5000 + 4] == 'File "/workspace/train.py", line 30, in main'  # the frame nearest user code
    assert f"log line {5000 + CUDA_OOM_LINE}" in r.summary
    assert "batch size" in r.suggestion and "gpu_count" in r.suggestion and "submit_job" in r.suggestion


@pytest.mark.parametrize(
    "line",
    [
        "RuntimeError: CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 7.79 GiB total capacity; 6.61 GiB "
        "already allocated; 11.50 MiB free; 6.78 GiB reserved in total by PyTorch)",
        "torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 512.00 MiB. GPU 0 has a total capacity "
        "of 79.15 GiB of which 301.25 MiB is free.",
        "RuntimeError: CUDA error: out of memory",
        "RuntimeError: CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
        "tensorflow.python.framework.errors_impl.ResourceExhaustedError: OOM when allocating tensor with "
        "shape[32,256,128,128]",
    ],
)
def test_cuda_oom_variants_are_never_gpu_hardware(line: str) -> None:
    r = run(log_lines=["step 10", line])
    assert r.category == "gpu_oom"
    assert r.err_class == "ERR_RESOURCE"
    assert r.retriable is False


def test_illegal_memory_access_is_a_program_error() -> None:
    log = [
        "Traceback (most recent call last):",
        '  File "/workspace/model.py", line 9, in forward',
        "    out = custom_op(x)",
        "RuntimeError: CUDA error: an illegal memory access was encountered",
    ]
    r = run(log_lines=log)
    assert (r.category, r.err_class, r.retriable) == ("program_error", "ERR_PROGRAM", False)
    assert "CUDA_LAUNCH_BLOCKING" in r.suggestion


def test_xid_in_the_log_is_gpu_hardware() -> None:
    log = ["Epoch 1: step 400", XID_LINE, "RuntimeError: CUDA error: unknown error"]
    r = run(log_lines=log, log_first_line=70)
    assert (r.category, r.err_class, r.retriable, r.confidence) == ("gpu_hardware", "ERR_INFRA", True, "high")
    assert log_lines_of(r)[71] == XID_LINE


@pytest.mark.parametrize(
    "line",
    [
        "RuntimeError: Found no NVIDIA driver on your system. Please check that you have an NVIDIA GPU and installed "
        "a driver",
        "RuntimeError: No CUDA GPUs are available; cuInit failed: CUDA_ERROR_NO_DEVICE",
        "CUDA driver version is insufficient for CUDA runtime version",
        "Failed to initialize NVML: Driver/library version mismatch",
        "RuntimeError: CUDA error: uncorrectable ECC error encountered",
    ],
)
def test_driver_and_ecc_errors_are_gpu_hardware(line: str) -> None:
    r = run(log_lines=[line])
    assert (r.category, r.err_class, r.retriable) == ("gpu_hardware", "ERR_INFRA", True)


def test_xid_platform_event_is_a_node_event() -> None:
    events = [Evidence(source="event", text=f"node gpu-node-3: {XID_LINE}")]
    r = run(platform="kubernetes", raw_state="Failed", exit_code=1, platform_evidence=events, log_lines=["ok"])
    assert r.category == "gpu_hardware"
    assert r.node_events == [f"node gpu-node-3: {XID_LINE}"]


# ---------------------------------------------------------------------------------------------------------------------
# NCCL, host memory, time limits, nodes


def test_nccl_watchdog_timeout_is_nccl_network_and_retriable() -> None:
    r = run(raw_state="FAILED", exit_code=1, log_lines=NCCL_WATCHDOG_LOG, log_first_line=300)
    assert (r.category, r.err_class, r.retriable) == ("nccl_network", "ERR_INFRA", True)
    assert r.confidence == "medium"  # a watchdog timeout is usually a consequence: the cause may be elsewhere
    assert "Watchdog caught collective operation timeout" in log_lines_of(r)[300]
    assert 311 in log_lines_of(r)  # torchrun's final ChildFailedError is reported too


def test_earlier_program_error_beats_a_later_nccl_timeout() -> None:
    log = [
        "Traceback (most recent call last):",
        '  File "/workspace/train.py", line 12, in <module>',
        "    check(cfg)",
        "AssertionError: num_classes must match the dataset",
        *NCCL_WATCHDOG_LOG,
    ]
    r = run(log_lines=log)
    assert r.category == "program_error"
    assert r.retriable is False
    lines = log_lines_of(r)
    assert lines[3] == "AssertionError: num_classes must match the dataset"
    assert any("Watchdog caught" in text for text in lines.values())  # the other category is still shown


def test_dataloader_worker_killed_is_host_oom_and_agrees_with_exit_137() -> None:
    r = run(platform="kubernetes", raw_state="Error", exit_code=137, log_lines=DATALOADER_KILLED_LOG)
    assert (r.category, r.err_class, r.retriable, r.confidence) == ("host_oom", "ERR_RESOURCE", False, "high")
    assert log_lines_of(r)[6].startswith("RuntimeError: DataLoader worker (pid 4312) is killed by signal: Killed")
    assert "memory" in r.suggestion and "workers" in r.suggestion
    assert "the platform agrees (exit code 137 = SIGKILL)" in r.summary


def test_dataloader_bus_error_is_shared_memory() -> None:
    r = run(platform="docker", raw_state="exited", exit_code=1, log_lines=SHM_LOG, log_first_line=30)
    assert (r.category, r.err_class, r.retriable) == ("host_oom", "ERR_RESOURCE", False)
    assert "shared memory" in r.summary and "shm_size" in r.suggestion
    assert 30 in log_lines_of(r)


def test_slurm_out_of_memory_state_and_oom_kill_line_agree() -> None:
    log = [
        "Epoch 2 step 100",
        "slurmstepd: error: Detected 1 oom-kill event(s) in StepId=12.batch. Some of your processes may have been "
        "killed by the cgroup out-of-memory handler.",
    ]
    r = run(raw_state="OUT_OF_MEMORY", exit_code=0, log_lines=log, log_first_line=40)
    assert (r.category, r.err_class, r.retriable, r.confidence) == ("host_oom", "ERR_RESOURCE", False, "high")
    assert "agrees" in r.summary
    assert 41 in log_lines_of(r)
    assert "SLURM `memory`" in r.suggestion


def test_killed_alone_on_a_line_is_host_oom() -> None:
    r = run(platform="docker", raw_state="exited", exit_code=137, log_lines=["loading 2M images", "Killed"])
    assert (r.category, r.confidence) == ("host_oom", "high")


def test_exit_137_alone_is_likely_host_oom() -> None:
    r = run(platform="docker", raw_state="exited", exit_code=137, log_lines=["step 1", "step 2"])
    assert (r.category, r.confidence) == ("host_oom", "medium")


def test_exit_137_but_log_shows_cuda_oom_follows_the_log_and_says_so() -> None:
    r = run(platform="docker", raw_state="exited", exit_code=137, log_lines=CUDA_OOM_LOG)
    assert r.category == "gpu_oom"
    assert r.confidence == "medium"
    assert "host_oom" in r.summary


def test_kubernetes_oomkilled_is_decisive() -> None:
    events = [Evidence(source="event", text="container trainer terminated: OOMKilled (exit code 137)")]
    r = run(platform="kubernetes", raw_state="OOMKilled", exit_code=137, log_lines=[], platform_evidence=events)
    assert (r.category, r.confidence, r.retriable) == ("host_oom", "high", False)
    assert r.node_events == ["container trainer terminated: OOMKilled (exit code 137)"]


def test_slurm_time_limit_state_and_log_agree() -> None:
    log = ["Epoch 7: step 3000", SLURM_TIME_LIMIT]
    r = run(raw_state="TIMEOUT", exit_code=0, log_lines=log, log_first_line=1200)
    assert (r.category, r.err_class, r.retriable, r.confidence) == ("timeout", "ERR_RESOURCE", False, "high")
    assert log_lines_of(r)[1201] == SLURM_TIME_LIMIT
    assert "time_limit" in r.suggestion and "checkpoint" in r.suggestion


def test_time_limit_line_without_a_state_is_timeout() -> None:
    r = run(raw_state="FAILED", exit_code=None, log_lines=["step", SLURM_TIME_LIMIT])
    assert (r.category, r.confidence) == ("timeout", "high")


def test_timeout_state_beats_a_cuda_oom_in_the_log_and_mentions_it() -> None:
    r = run(raw_state="TIMEOUT", exit_code=0, log_lines=CUDA_OOM_LOG)
    assert r.category == "timeout"
    assert r.confidence == "medium"
    assert "gpu_oom" in r.summary
    assert CUDA_OOM_LINE in log_lines_of(r)  # the conflicting log line is evidence too


@pytest.mark.parametrize("state", ["NODE_FAIL", "BOOT_FAIL", "PREEMPTED"])
def test_node_failures_are_retriable_infra(state: str) -> None:
    r = run(raw_state=state, exit_code=0, log_lines=["step 1"])
    assert (r.category, r.err_class, r.retriable, r.confidence) == ("node_failure", "ERR_INFRA", True, "high")
    if state == "PREEMPTED":
        assert "preempted" in r.summary


def test_node_failure_with_nccl_errors_is_not_a_conflict() -> None:
    r = run(raw_state="NODE_FAIL", exit_code=0, log_lines=NCCL_WATCHDOG_LOG)
    assert (r.category, r.confidence) == ("node_failure", "high")


def test_kubernetes_eviction_is_node_failure_and_a_node_event() -> None:
    events = [Evidence(source="event", text="Evicted: The node had condition: [DiskPressure].")]
    r = run(platform="kubernetes", raw_state="Failed", exit_code=None, platform_evidence=events)
    assert (r.category, r.retriable) == ("node_failure", True)
    assert r.node_events == ["Evicted: The node had condition: [DiskPressure]."]


# ---------------------------------------------------------------------------------------------------------------------
# Config, storage, credentials, programs


def test_hydra_config_error_is_spec_error() -> None:
    r = run(log_lines=HYDRA_LOG, log_first_line=10)
    assert (r.category, r.err_class, r.retriable, r.confidence) == ("spec_error", "ERR_PROGRAM", False, "high")
    assert log_lines_of(r)[17] == "omegaconf.errors.ConfigAttributeError: Key 'batchsize' is not in struct"
    assert "specs" in r.suggestion


def test_missing_mandatory_value_is_spec_error() -> None:
    log = [
        "Traceback (most recent call last):",
        '  File "/usr/local/lib/python3.10/dist-packages/omegaconf/base.py", line 231, in _format_and_raise',
        "    raise ex",
        "omegaconf.errors.MissingMandatoryValue: Missing mandatory value: model.pretrained_backbone_path",
    ]
    r = run(log_lines=log)
    assert (r.category, r.confidence) == ("spec_error", "high")
    assert 3 in log_lines_of(r)


def test_pydantic_validation_error_is_spec_error() -> None:
    log = [
        "pydantic_core._pydantic_core.ValidationError: 1 validation error for ExperimentConfig",
        "train.num_gpus",
        "  Input should be a valid integer [type=int_type, input_value='two', input_type=str]",
    ]
    assert run(log_lines=log).category == "spec_error"


def test_missing_dataset_path_is_spec_error() -> None:
    log = ["FileNotFoundError: [Errno 2] No such file or directory: '/inputs/coco/annotations/train.json'"]
    r = run(log_lines=log)
    assert (r.category, r.err_class, r.confidence) == ("spec_error", "ERR_PROGRAM", "medium")
    assert "check_path" in r.suggestion


def test_s3_access_denied_is_storage_config() -> None:
    r = run(platform="kubernetes", raw_state="Failed", exit_code=1, log_lines=S3_ACCESS_DENIED_LOG, log_first_line=3)
    assert (r.category, r.err_class, r.retriable, r.confidence) == ("storage", "ERR_CONFIG", False, "high")
    assert log_lines_of(r)[3 + 8].startswith("botocore.exceptions.ClientError: An error occurred (AccessDenied)")
    assert "ACCESS_KEY" in r.suggestion


@pytest.mark.parametrize(
    ("line", "err_class"),
    [
        ("OSError: [Errno 28] No space left on device: '/results/job-1/model_epoch_010.pth'", "ERR_INFRA"),
        ("OSError: [Errno 122] Disk quota exceeded", "ERR_CONFIG"),
        ("OSError: [Errno 30] Read-only file system: '/inputs/cache'", "ERR_CONFIG"),
        (
            "botocore.errorfactory.NoSuchKey: An error occurred (NoSuchKey) when calling the GetObject operation",
            "ERR_CONFIG",
        ),
        (
            "botocore.exceptions.ClientError: An error occurred (403) when calling the HeadObject operation: Forbidden",
            "ERR_CONFIG",
        ),
    ],
)
def test_storage_signatures(line: str, err_class: str) -> None:
    r = run(log_lines=["step", line], log_first_line=8)
    assert (r.category, r.err_class, r.retriable) == ("storage", err_class, False)
    assert log_lines_of(r)[9] == line


def test_runner_missing_credential_is_credentials() -> None:
    log = ["[tao-runner] error: missing credential NGC_KEY (needed for ngc://nvidia/tao/pretrained_dino:v1)"]
    r = run(log_lines=log, exit_code=2)
    assert (r.category, r.err_class, r.retriable, r.confidence) == ("credentials", "ERR_CONFIG", False, "high")
    assert "list_platforms" in r.suggestion


def test_invalid_s3_key_is_credentials() -> None:
    log = [
        "botocore.exceptions.ClientError: An error occurred (InvalidAccessKeyId) when calling the ListObjectsV2 "
        "operation: The AWS Access Key Id you provided does not exist in our records."
    ]
    assert run(log_lines=log).category == "credentials"


def test_plain_value_error_traceback_is_program_error() -> None:
    r = run(log_lines=VALUE_ERROR_LOG, log_first_line=20)
    assert (r.category, r.err_class, r.retriable, r.confidence) == ("program_error", "ERR_PROGRAM", False, "medium")
    lines = log_lines_of(r)
    assert lines[20 + 9] == "ValueError: unknown augmentation 'mosaic9'"
    assert lines[20 + 7] == 'File "/workspace/data.py", line 17, in build_dataset'  # nearest user frame
    assert "ValueError: unknown augmentation" in r.summary


def test_rank_prefixed_traceback_is_parsed() -> None:
    log = [
        "[rank0]: Traceback (most recent call last):",
        '[rank0]:   File "/workspace/train.py", line 5, in <module>',
        "[rank0]:     run()",
        "[rank0]: KeyError: 'images'",
    ]
    r = run(log_lines=log, log_first_line=100)
    assert r.category == "program_error"
    assert log_lines_of(r)[103] == "[rank0]: KeyError: 'images'"
    assert 101 in log_lines_of(r)


def test_first_error_window_and_final_exception_are_both_reported() -> None:
    log = [
        "[default0]: Loading annotations",
        "Traceback (most recent call last):",
        '  File "/workspace/data.py", line 30, in load',
        "    with open(path) as f:",
        "FileNotFoundError: [Errno 2] No such file or directory: '/inputs/val/annotations.json'",
        *[f"worker output {i}" for i in range(40)],
        "E1128 10:10:00.000000 140 api.py:833] failed (exitcode: 1) local_rank: 0 (pid: 77) of binary: python",
        "Traceback (most recent call last):",
        '  File "/usr/local/bin/torchrun", line 8, in <module>',
        "    sys.exit(main())",
        "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:",
    ]
    r = run(log_lines=log, log_first_line=1000)
    assert r.category == "spec_error"  # the first error, not torchrun's summary exception
    lines = log_lines_of(r)
    assert 1004 in lines  # the first error window
    last = 1000 + len(log) - 1
    assert lines[last] == "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:"  # the final exception
    assert f"final exception at log line {last}" in r.summary


def test_an_earlier_error_of_another_kind_lowers_the_confidence() -> None:
    log = [
        "Traceback (most recent call last):",
        '  File "/workspace/plugins.py", line 3, in <module>',
        "    import apex",
        "ModuleNotFoundError: No module named 'apex'",
        *[f"step {i}" for i in range(50)],
        *CUDA_OOM_LOG,
    ]
    r = run(log_lines=log)
    assert r.category == "gpu_oom"
    assert r.confidence == "medium"
    assert "earlier error" in r.summary
    assert 3 in log_lines_of(r)


def test_nonzero_exit_without_signature_is_a_low_confidence_program_error() -> None:
    log = [f"iteration {i}" for i in range(30)] + ["bye"]
    r = run(platform="docker", raw_state="exited", exit_code=3, log_lines=log, log_first_line=500)
    assert (r.category, r.err_class, r.confidence) == ("program_error", "ERR_PROGRAM", "low")
    assert any(e.source == "exit_code" and e.text == "exit code 3" for e in r.evidence)
    assert log_lines_of(r)[530] == "bye"  # the last lines are the evidence
    assert len([e for e in r.evidence if e.source == "log"]) == 5


def test_nothing_matched_is_unknown_and_says_what_was_looked_at() -> None:
    r = run(platform="lepton", raw_state="Failed", exit_code=None, log_lines=["a", "b"], log_first_line=7)
    assert (r.category, r.err_class, r.retriable, r.confidence) == ("unknown", "ERR_UNKNOWN", None, "low")
    assert "Failed" in r.summary and "log lines 7-8" in r.summary


def test_lepton_stopped_outside_tao_mcp_is_canceled() -> None:
    r = run(platform="lepton", raw_state="Stopped", exit_code=None, message="stopped outside tao-mcp")
    assert r.category == "canceled"


# ---------------------------------------------------------------------------------------------------------------------
# Status shortcuts


def test_complete_job_is_none() -> None:
    r = run(status="Complete", raw_state="COMPLETED", exit_code=0, log_lines=CUDA_OOM_LOG)
    assert (r.category, r.err_class, r.confidence) == ("none", "NONE", "high")
    assert r.summary == "the job completed successfully"


def test_canceled_job() -> None:
    r = run(status="Canceled", raw_state="CANCELLED by 1000", exit_code=0, log_lines=["step 1"])
    assert (r.category, r.err_class, r.confidence) == ("canceled", "NONE", "high")


def test_running_job_without_errors() -> None:
    r = run(status="Running", raw_state="RUNNING", exit_code=None, log_lines=["Epoch 1", "Epoch 2"])
    assert (r.category, r.err_class) == ("none", "NONE")
    assert "running" in r.summary


def test_running_job_with_an_error_in_its_log_reports_it_with_lower_confidence() -> None:
    r = run(status="Running", raw_state="RUNNING", exit_code=None, log_lines=CUDA_OOM_LOG, log_first_line=50)
    assert r.category == "gpu_oom"
    assert r.confidence in ("low", "medium")
    assert "still running" in r.summary
    assert 50 + CUDA_OOM_LINE in log_lines_of(r)


def test_result_defaults_are_left_for_the_caller() -> None:
    r = run(log_lines=CUDA_OOM_LOG)
    assert (r.job_id, r.status, r.next) == ("", "Unknown", "")
    assert r.model_copy(update={"job_id": "j1", "status": "Error"}).job_id == "j1"


# ---------------------------------------------------------------------------------------------------------------------
# Pending jobs


@pytest.mark.parametrize(
    ("platform", "raw_state", "reason", "category", "err_class"),
    [
        ("slurm", "PENDING", "Resources", "no_capacity", "ERR_INFRA"),
        ("slurm", "PENDING", "(Resources)", "no_capacity", "ERR_INFRA"),
        ("slurm", "PENDING", "Priority", "queued", "NONE"),
        ("slurm", "PENDING", "JobHeldUser", "held", "NONE"),
        ("slurm", "PENDING", "JobHeldAdmin", "held", "NONE"),
        ("slurm", "PENDING", "ReqNodeNotAvail, UnavailableNodes:node[1-2]", "unschedulable", "ERR_INFRA"),
        ("slurm", "PENDING", "QOSMaxGRESPerUser", "quota", "ERR_CONFIG"),
        ("slurm", "PENDING", "AssocGrpGRES", "quota", "ERR_CONFIG"),
        ("slurm", "PENDING", "PartitionNodeLimit", "unschedulable", "ERR_CONFIG"),
        ("slurm", "PENDING", "BeginTime", "begin_time", "NONE"),
        ("slurm", "PENDING", "Dependency", "dependency", "NONE"),
        ("slurm", "PENDING", "DependencyNeverSatisfied", "dependency", "ERR_CONFIG"),
        (
            "kubernetes",
            "Pending",
            "Unschedulable: 0/1 nodes are available: 1 Insufficient nvidia.com/gpu.",
            "unschedulable",
            "ERR_INFRA",
        ),
        ("kubernetes", "Pending", "ImagePullBackOff", "image_pull", "ERR_CONFIG"),
        ("kubernetes", "Pending", "ContainerCreating", "starting", "NONE"),
        ("lepton", "Queueing", "NoCapacity", "no_capacity", "ERR_INFRA"),
        ("lepton", "Starting", "ConfigError: Mount point not found", "node_failure", "ERR_INFRA"),
        ("lepton", "Queueing", None, "queued", "NONE"),
        (
            "kubernetes",
            "Pending",
            "forbidden: exceeded quota: gpu-quota, requested: nvidia.com/gpu=8",
            "quota",
            "ERR_CONFIG",
        ),
    ],
)
def test_pending_reasons(platform: str, raw_state: str, reason: str | None, category: str, err_class: str) -> None:
    r = run(platform=platform, status="Pending", raw_state=raw_state, exit_code=None, pending_reason=reason)
    assert (r.category, r.err_class) == (category, err_class)
    if reason:
        assert any(e.source == "reason" for e in r.evidence)


def test_held_job_says_how_to_release_it() -> None:
    r = run(status="Pending", raw_state="PENDING", exit_code=None, pending_reason="JobHeldUser")
    assert (r.category, r.confidence) == ("held", "high")
    assert "scontrol release" in r.suggestion and "cancel_job" in r.suggestion
    assert "JobHeldUser" in r.summary


def test_pending_image_pull_from_a_kubernetes_event() -> None:
    events = [
        Evidence(
            source="event",
            text='Failed: Failed to pull image "nvcr.io/nvidia/tao/tao-toolkit:9.9.9-pyt": manifest unknown',
        )
    ]
    r = run(platform="kubernetes", status="Pending", raw_state="Pending", exit_code=None, platform_evidence=events)
    assert (r.category, r.retriable, r.confidence) == ("image_pull", False, "high")
    assert "image" in r.suggestion


def test_pending_without_reason_is_queued_with_low_confidence() -> None:
    r = run(status="Pending", raw_state="PENDING", exit_code=None, pending_reason=None)
    assert (r.category, r.confidence) == ("queued", "low")


def test_mount_point_not_found_is_retriable() -> None:
    r = run(
        platform="lepton",
        status="Pending",
        raw_state="Starting",
        exit_code=None,
        platform_evidence=[Evidence(source="replica", text="ConfigError: Mount point not found: /mnt/lustre")],
    )
    assert (r.category, r.retriable) == ("node_failure", True)


# ---------------------------------------------------------------------------------------------------------------------
# Bounds


def test_evidence_is_bounded_on_a_huge_log() -> None:
    noisy = [
        "RuntimeError: CUDA out of memory. " + "x" * 5000 if i % 997 == 0 else f"ERROR: flaky thing {i} " + "y" * 400
        for i in range(10_000)
    ]
    noisy[4321] = XID_LINE
    noisy[8000] = "OSError: [Errno 28] No space left on device"
    events = [Evidence(source="event", text="Evicted " + "z" * 1000) for _ in range(50)]
    r = run(log_lines=noisy, log_first_line=90_000, platform_evidence=events)
    assert len(r.evidence) <= MAX_EVIDENCE
    assert all(len(e.text) <= MAX_TEXT for e in r.evidence)
    assert all(len(t) <= MAX_TEXT for t in r.node_events)
    assert len(r.node_events) <= 20
    assert all(e.line is None or 90_000 <= e.line < 100_000 for e in r.evidence)
    assert len(r.summary) < 1500


def test_matching_reads_a_bounded_prefix_of_each_line() -> None:
    """The work per line is bounded structurally: a signature past the first _MATCH_CHARS is never seen."""
    from tao_mcp.service.failures import _MATCH_CHARS

    hidden = "x" * _MATCH_CHARS + "RuntimeError: CUDA out of memory."
    assert run(exit_code=1, log_lines=[hidden]).category != run(exit_code=1, log_lines=[hidden[_MATCH_CHARS:]]).category


def test_evidence_on_a_huge_clean_log_is_bounded_too() -> None:
    r = run(exit_code=1, log_lines=[f"line {i} " + "q" * 1000 for i in range(10_000)])
    assert r.category == "program_error"
    assert len(r.evidence) <= MAX_EVIDENCE
    assert all(len(e.text) <= MAX_TEXT for e in r.evidence)


# ---------------------------------------------------------------------------------------------------------------------
# Platform shapes


def test_docker_oomkilled_flag() -> None:
    oom = [Evidence(source="state", text="State.OOMKilled=true")]
    r = run(platform="docker", raw_state="exited", exit_code=137, platform_evidence=oom)
    assert (r.category, r.confidence) == ("host_oom", "high")
    no_oom = [Evidence(source="state", text="State.OOMKilled=false")]
    r = run(platform="docker", raw_state="exited", exit_code=137, platform_evidence=no_oom, log_lines=CUDA_OOM_LOG)
    assert r.category == "gpu_oom"


def test_scheduling_event_mentioning_preemption_is_not_a_node_event() -> None:
    text = (
        "FailedScheduling: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are "
        "available: 3 No preemption victims found for incoming pod."
    )
    r = run(
        platform="kubernetes",
        status="Pending",
        raw_state="Pending",
        exit_code=None,
        platform_evidence=[Evidence(source="event", text=text)],
    )
    assert r.category == "unschedulable"
    assert r.node_events == []


def test_tao_logger_error_line_and_timestamped_exception() -> None:
    log = [
        "[2026-11-28 10:00:00,000 - TAO Toolkit - nvidia_tao_pytorch.core - ERROR] Experiment failed",
        "2026-11-28T10:00:01.123456789Z ValueError: bad value for lr",
    ]
    r = run(platform="kubernetes", raw_state="Failed", log_lines=log, log_first_line=4)
    assert r.category == "program_error"
    assert set(log_lines_of(r)) == {4, 5}


def test_preempted_pending_job_waits_to_restart() -> None:
    r = run(status="Pending", raw_state="PREEMPTED", exit_code=None, pending_reason="BeginTime")
    assert (r.category, r.retriable) == ("node_failure", True)
    assert "started again" in r.summary


def test_unknown_status_is_analysed_like_an_error() -> None:
    r = run(status="Unknown", raw_state="", exit_code=None, log_lines=CUDA_OOM_LOG)
    assert r.category == "gpu_oom"
    assert "Unknown" in r.summary
