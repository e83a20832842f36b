"""The in-container runner, run for real: `bash -c <plan.command>` as a subprocess against the dev RGW.

Every S3 behaviour runs twice: with a Python that has boto3 and PyYAML, and with one where neither is importable
(`-I -S`: no site-packages), which exercises the runner's own SigV4 client and its YAML fallback.
Every run also asserts that no secret value (S3 keys, planted NGC/HF canaries) appears in the output.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import tomllib
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from fixtures.archives import BENIGN_MODES, VICTIM, benign, file_member, link_member, malicious, tar_bytes
from tao_mcp.entrypoint.builder import EntrypointPlan, build_entrypoint
from tests.s3.conftest import delete_prefix, keys_under

MODES = ["boto3", "stdlib"]


@dataclass
class Result:
    rc: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return [line for line in self.out.splitlines() if line.startswith("[tao-runner]")]

    def has(self, text: str) -> bool:
        return any(text in line for line in self.lines)


class Harness:
    """Builds plans with the server's builder and runs them the way every platform does: bash -c <command>."""

    def __init__(self, root: Path, s3_env: dict[str, str], mode: str) -> None:
        self.root, self.s3_env, self.mode = root, s3_env, mode
        self.bin = root / "bin"
        self.bin.mkdir()
        self.home = root / "home"
        self.home.mkdir()
        self.local = root / "local"
        self.write_python("python3")
        tag = uuid.uuid4().hex[:10]
        self.canaries = {"NGC_KEY": f"canary-ngc-{tag}-value", "HF_TOKEN": f"canary-hf-{tag}-value"}
        self.settings = {**s3_env, **self.canaries}
        self.bucket = s3_env["S3_BUCKET_NAME"]
        self.jobs: list[str] = []
        self.secrets = [s3_env["SECRET_KEY"], s3_env["ACCESS_KEY"], *self.canaries.values()]

    def write_python(self, name: str, directory: Path | None = None) -> None:
        flags = " -I -S" if self.mode == "stdlib" else ""
        path = (directory or self.bin) / name
        path.write_text(f'#!/bin/sh\nexec {sys.executable}{flags} "$@"\n')
        path.chmod(0o755)

    def plan(self, **kwargs: Any) -> EntrypointPlan:
        job_id = kwargs.pop("job_id", None) or uuid.uuid4().hex[:12]
        self.jobs.append(job_id)
        return build_entrypoint(job_id=job_id, settings=kwargs.pop("settings", self.settings), **kwargs)

    def env(self, plan: EntrypointPlan, extra: dict[str, str] | None = None, path: str | None = None) -> dict[str, str]:
        env = {
            "PATH": path if path is not None else f"{self.bin}:/usr/bin:/bin",
            "HOME": str(self.home),
            "TAO_RUNNER_LOCAL_ROOT": str(self.local),
            **plan.env,
            **{name: self.settings[server] for name, server in plan.secret_env.items() if server in self.settings},
            **self.canaries,  # containers carry secrets the runner must never print
        }
        env.update(extra or {})
        return env

    def run(
        self,
        plan: EntrypointPlan,
        extra: dict[str, str] | None = None,
        path: str | None = None,
        shell: str = "/bin/bash",
        timeout: float = 120,
    ) -> Result:
        proc = subprocess.run(
            [shell, "-c", plan.command],
            env=self.env(plan, extra, path),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        self.check_secrets(proc.stdout + proc.stderr, extra)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def check_secrets(self, text: str, extra: dict[str, str] | None = None) -> None:
        planted = [v for k, v in (extra or {}).items() if v and ("SECRET" in k or "KEY" in k or "TOKEN" in k)]
        for value in [*self.secrets, *planted]:
            assert value not in text, "a secret value appeared in the runner's output"

    def staging(self, job_id: str) -> Path:
        return self.local / job_id


def put(s3: Any, bucket: str, key: str, body: bytes) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=body)


# ---------------------------------------------------------------- the two Pythons are what they claim


@pytest.mark.parametrize("mode", MODES)
def test_python_modes_really_have_or_lack_boto3(mode: str, tmp_path: Path, s3_env: dict[str, str]) -> None:
    harness = Harness(tmp_path, s3_env, mode)
    env = {"PATH": f"{harness.bin}:/usr/bin:/bin"}
    for module in ("boto3", "yaml"):
        rc = subprocess.run(["python3", "-c", f"import {module}"], env=env, capture_output=True).returncode
        assert (rc == 0) == (mode == "boto3"), f"{module} importable={rc == 0} in mode {mode}"


# ---------------------------------------------------------------- config mode


def test_config_mode_nested_spec(h: Harness, s3: Any, prefix: str) -> None:
    b, base = h.bucket, f"s3://{h.bucket}/{prefix}/data"
    put(s3, b, f"{prefix}/data/images/a.jpg", b"AAA")
    put(s3, b, f"{prefix}/data/images/sub/b.jpg", b"BBBB")
    put(s3, b, f"{prefix}/data/labels.json", b'{"labels": 1}')
    put(s3, b, f"{prefix}/data/ann.tar.gz", tar_bytes([file_member("ann/x.txt", b"inside")]))
    specs = {
        "dataset": {
            "train_data_sources": [{"image_dir": f"{base}/images", "json_file": f"{base}/labels.json"}],
            "annotations": f"{base}/ann.tar.gz",
        },
        "train": {"num_epochs": 2, "lr": 1e-05, "name": "a b", "pretrained_model_path": None},
        "export": {"checkpoint_dir": None},
        "results_dir": None,
    }
    command = (
        'echo "home=${HOME} braces={} job={job_id}"; '
        'echo metrics > {results_dir}/metrics.txt && echo weights > "{results_dir}/export.checkpoint_dir/model.pth"'
    )
    plan = h.plan(
        command=command,
        specs=specs,
        inputs={
            "dataset.train_data_sources[0].image_dir": {"type": "folder"},
            "dataset.train_data_sources[0].json_file": {"type": "file"},
            "dataset.annotations": {"type": "file"},
            "train.pretrained_model_path": {"type": "file", "optional": True},
        },
        outputs={"results_dir": {"type": "folder"}, "export.checkpoint_dir": {"type": "folder"}},
    )
    job_id = h.jobs[-1]
    assert plan.mode == "config" and plan.results_location == f"s3://{b}/results/{job_id}"
    r = h.run(plan)
    assert r.rc == 0, r.out + r.err
    assert f"home={h.home} braces={{}} job={job_id}" in r.out
    expected_client = "boto3" if h.mode == "boto3" else "builtin"
    assert r.has(f"s3 client: {expected_client}")
    assert r.has("download 4/4 files") and r.lines[-1] == "[tao-runner] exit 0"

    stage = h.staging(job_id)
    written = yaml.safe_load((stage / "spec.yaml").read_text())
    inputs = stage / "inputs"
    source = written["dataset"]["train_data_sources"][0]
    assert source["image_dir"] == str(inputs / "dataset.train_data_sources_0_.image_dir" / "images")
    assert (Path(source["image_dir"]) / "sub" / "b.jpg").read_bytes() == b"BBBB"
    assert Path(source["json_file"]).read_bytes() == b'{"labels": 1}'
    assert (Path(written["dataset"]["annotations"]) / "ann" / "x.txt").read_bytes() == b"inside"
    assert written["train"] == {"num_epochs": 2, "lr": 1e-05, "name": "a b", "pretrained_model_path": None}
    assert written["results_dir"] == str(stage)
    assert written["export"]["checkpoint_dir"] == str(stage / "export.checkpoint_dir")

    uploaded = keys_under(s3, b, f"results/{job_id}/")
    assert {"spec.yaml", "metrics.txt", "export.checkpoint_dir/model.pth"} <= set(uploaded)
    assert not [k for k in uploaded if k.startswith("inputs/")], "downloaded inputs must not be uploaded again"


def test_config_mode_explicit_s3_output_goes_where_the_spec_says(h: Harness, s3: Any, prefix: str) -> None:
    target = f"s3://{h.bucket}/{prefix}/exported/"
    plan = h.plan(
        command="echo onnx > {results_dir}/outputs/export.onnx_dir/model.onnx",
        specs={"export": {"onnx_dir": target}},
        outputs={"export.onnx_dir": {"type": "folder"}},
    )
    r = h.run(plan)
    assert r.rc == 0, r.out + r.err
    assert keys_under(s3, h.bucket, f"{prefix}/exported/") == {"model.onnx": 5}
    assert "outputs/export.onnx_dir/model.onnx" not in keys_under(s3, h.bucket, f"results/{h.jobs[-1]}/")


# ---------------------------------------------------------------- args mode


def test_args_mode_quotes_every_value(h: Harness, s3: Any, prefix: str) -> None:
    put(s3, h.bucket, f"{prefix}/in/file.txt", b"payload")
    program = (
        "import json,os,sys; a=sys.argv[1:]; print('ARGV='+json.dumps(a)); "
        "open(os.path.join(a[a.index('--out_dir')+1],'r.txt'),'w').write(open(a[a.index('--data')+1]).read())"
    )
    args = {
        "name": "a b",
        "quote": 'it\'s "quoted"',
        "dollar": "$HOME and `id` and $(id) and ${HOME}",
        "verbose": True,
        "quiet": False,
        "skip": None,
        "lr": 0.001,
        "sizes": [1, 2],
        "--already": "x",
        "-e": "short",
        "data": f"s3://{h.bucket}/{prefix}/in/file.txt",
        "out_dir": None,
    }
    plan = h.plan(command=f"python3 -c {json.dumps(program)}", args=args, inputs=["data"], outputs=["out_dir"])
    job_id = h.jobs[-1]
    r = h.run(plan)
    assert r.rc == 0, r.out + r.err
    argv = json.loads(next(line for line in r.out.splitlines() if line.startswith("ARGV="))[5:])
    stage = h.staging(job_id)
    data = str(stage / "inputs" / "data" / "file.txt")
    assert argv == [
        "--name", "a b",
        "--quote", "it's \"quoted\"",
        "--dollar", "$HOME and `id` and $(id) and ${HOME}",
        "--verbose",
        "--lr", "0.001",
        "--sizes", "1", "2",
        "--already", "x",
        "-e", "short",
        "--data", data,
        "--out_dir", str(stage / "out_dir"),
    ]  # fmt: skip
    assert keys_under(s3, h.bucket, f"results/{job_id}/out_dir/") == {"r.txt": 7}


# ---------------------------------------------------------------- passthrough mode


def test_passthrough_mode(h: Harness, s3: Any, prefix: str, tmp_path: Path) -> None:
    put(s3, h.bucket, f"{prefix}/in/file.txt", b"hello")
    put(s3, h.bucket, f"{prefix}/tree/a.txt", b"a")
    put(s3, h.bucket, f"{prefix}/tree/deep/b c+ü=&.txt", b"bb")  # SigV4 encoding of awkward keys
    work = tmp_path / "work"
    command = (
        f"mkdir -p {work}/out {work}/out2 && "
        f"cat {work}/in/file.txt '{work}/in/tree/deep/b c+ü=&.txt' > {work}/out/copy.txt"
        f" && echo log > {work}/single.log && echo two > {work}/out2/two.txt"
    )
    plan = h.plan(
        command=command,
        inputs={
            f"{work}/in/file.txt": f"s3://{h.bucket}/{prefix}/in/file.txt",
            f"{work}/in/tree": f"s3://{h.bucket}/{prefix}/tree/",
        },
        outputs={
            f"{work}/out": None,
            f"{work}/single.log": None,
            f"{work}/out2": f"s3://{h.bucket}/{prefix}/explicit/",
        },
    )
    r = h.run(plan)
    assert r.rc == 0, r.out + r.err
    assert plan.mode == "passthrough"
    assert (work / "out" / "copy.txt").read_bytes() == b"hellobb"
    uploaded = keys_under(s3, h.bucket, f"results/{h.jobs[-1]}/")
    assert uploaded == {"out/copy.txt": 7, "single.log": 4}
    assert keys_under(s3, h.bucket, f"{prefix}/explicit/") == {"two.txt": 4}


# ---------------------------------------------------------------- archives


@pytest.mark.parametrize(("name", "mode"), [("good.tar", "w"), ("good.tgz", "w:gz"), ("good.tar.gz", "w:gz")])
def test_archives_are_extracted_next_to_the_download(
    hs: Harness, s3: Any, prefix: str, tmp_path: Path, name: str, mode: str
) -> None:
    members = [file_member("top/a.txt", b"a"), link_member("top/alias.txt", "a.txt"), file_member("b.txt", b"b")]
    put(s3, hs.bucket, f"{prefix}/{name}", tar_bytes(members, mode))
    dest = tmp_path / "data" / "unpacked"
    plan = hs.plan(
        command=f"cat {dest}/top/alias.txt {dest}/b.txt", inputs={str(dest): f"s3://{hs.bucket}/{prefix}/{name}"}
    )
    r = hs.run(plan)
    assert r.rc == 0, r.out + r.err
    assert "ab" in r.out
    assert (tmp_path / "data" / name).is_file(), "the archive itself is kept next to the extraction folder"


NO_FILTERS = """import tarfile
for name in ("data_filter", "tar_filter", "fully_trusted_filter"):
    if hasattr(tarfile, name):
        delattr(tarfile, name)
"""


def without_tar_filters(h: Harness, tmp_path: Path) -> dict[str, str]:
    """Env for a runner whose Python has no tarfile extraction filters (like 3.8.0-3.8.16 ... 3.11.0-3.11.3)."""
    site = tmp_path / "no-tar-filters"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(NO_FILTERS)
    env = {"PYTHONPATH": str(site)}
    probe = "import tarfile; print(hasattr(tarfile, 'data_filter'))"
    check = subprocess.run(["python3", "-c", probe], env={**h.env(h.plan(command="true")), **env}, capture_output=True)
    assert check.stdout.strip() == b"False", check
    return env


@pytest.fixture
def hb(tmp_path: Path, s3_env: dict[str, str], s3: Any) -> Iterator[Harness]:
    """The Python without -I -S, so that a sitecustomize on PYTHONPATH loads."""
    harness = Harness(tmp_path, s3_env, "boto3")
    yield harness
    for job_id in harness.jobs:
        delete_prefix(s3, harness.bucket, f"results/{job_id}/")


def tree(root: Path) -> dict[str, bytes | str | None]:
    out: dict[str, bytes | str | None] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = os.readlink(path) if path.is_symlink() else None if path.is_dir() else path.read_bytes()
    return out


@pytest.mark.parametrize("existing", [False, True], ids=["new-folder", "existing-folder"])
@pytest.mark.parametrize("case", sorted(malicious("/x")))
def test_malicious_archive_is_refused_without_tar_filters(
    hb: Harness, s3: Any, prefix: str, tmp_path: Path, case: str, existing: bool
) -> None:
    absolute = Path(f"/tmp/tao-evil-{uuid.uuid4().hex[:8]}.txt")
    put(s3, hb.bucket, f"{prefix}/bad.tar.gz", tar_bytes(malicious(str(absolute))[case]))
    parent = tmp_path / "deep" / "er"
    dest = parent / "data"
    (dest if existing else parent).mkdir(parents=True)
    (parent / VICTIM).write_bytes(b"victim")
    if existing:
        (dest / "keep.txt").write_bytes(b"keep")
    before = tree(tmp_path / "deep")
    marker = tmp_path / "command-ran"
    plan = hb.plan(command=f"touch {marker}", inputs={str(dest): f"s3://{hb.bucket}/{prefix}/bad.tar.gz"})
    r = hb.run(plan, without_tar_filters(hb, tmp_path))
    assert r.rc == 66, r.out + r.err
    assert r.has("error E_UNSAFE_ARCHIVE"), r.out
    assert not marker.exists(), "the command must not run after a refused input"
    after = tree(tmp_path / "deep")
    assert after.pop("er/bad.tar.gz") is not None  # the download itself, kept next to the folder
    assert after == before, "the refused archive changed files around or inside the destination"
    assert not absolute.exists()


def test_archive_into_an_existing_folder_keeps_it_and_drops_special_bits(
    hb: Harness, s3: Any, prefix: str, tmp_path: Path
) -> None:
    put(s3, hb.bucket, f"{prefix}/good.tar.gz", tar_bytes(benign()))
    dest = tmp_path / "data"
    (dest / "top").mkdir(parents=True)
    (dest / "keep.txt").write_bytes(b"keep")
    (dest / "top" / "keep2.txt").write_bytes(b"keep2")
    plan = hb.plan(command=f"cat {dest}/top/alias.txt", inputs={str(dest): f"s3://{hb.bucket}/{prefix}/good.tar.gz"})
    r = hb.run(plan, without_tar_filters(hb, tmp_path))
    assert r.rc == 0, r.out + r.err
    found = tree(dest)
    assert found["keep.txt"] == b"keep" and found["top/keep2.txt"] == b"keep2" and found["top/a.txt"] == b"a"
    assert found["replaced"] == b"new" and found["top/alias.txt"] == "a.txt"
    for rel, mode in BENIGN_MODES.items():
        assert stat.S_IMODE((dest / rel).stat().st_mode) == mode, rel


def test_system_destinations_are_refused_by_the_runner(hs: Harness, s3: Any, prefix: str, tmp_path: Path) -> None:
    """The builder refuses them at submit; a path that reaches one through a link is only known in the container."""
    put(s3, hs.bucket, f"{prefix}/f.txt", b"x")
    (tmp_path / "to-etc").symlink_to("/etc")
    marker = tmp_path / "ran"
    dest = tmp_path / "to-etc" / "tao-test-input.txt"
    r = hs.run(hs.plan(command=f"touch {marker}", inputs={str(dest): f"s3://{hs.bucket}/{prefix}/f.txt"}))
    assert r.rc == 66 and r.has("error E_BAD_INPUT") and r.has("system folder"), r.out
    assert not marker.exists() and not Path("/etc/tao-test-input.txt").exists()


# ---------------------------------------------------------------- failure, excludes, resume, multipart


def test_outputs_uploaded_when_the_command_fails(h: Harness, s3: Any, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    command = f"mkdir -p {logs} && echo trace > {logs}/err.log && echo half > {{results_dir}}/partial.ckpt; exit 7"
    plan = h.plan(command=command, outputs=[str(logs)])
    r = h.run(plan)
    assert r.rc == 7
    assert r.has("command exited with 7") and r.has("the command failed") and r.lines[-1] == "[tao-runner] exit 7"
    assert keys_under(s3, h.bucket, f"results/{h.jobs[-1]}/") == {"partial.ckpt": 5, "logs/err.log": 6}


def test_upload_excludes(hs: Harness, s3: Any) -> None:
    files = [
        "model.pth", "a.tmp", "sub/b.tmp", "logs/a.txt", "logs/deep/b.txt", "keep/logs/c.txt",
        "cache/x", "sub/cache/y", "inputs/copy.bin",
    ]  # fmt: skip
    command = " && ".join(f"mkdir -p $(dirname {{results_dir}}/{f}) && echo 1 > {{results_dir}}/{f}" for f in files)
    plan = hs.plan(command=command, outputs=[], upload_excludes=["logs/", "*.tmp", "/cache/", "inputs/"])
    r = hs.run(plan)
    assert r.rc == 0, r.out + r.err
    assert set(keys_under(s3, hs.bucket, f"results/{hs.jobs[-1]}/")) == {"model.pth", "sub/cache/y"}


def test_downloads_resume_and_skip_present_files(h: Harness, s3: Any, prefix: str, tmp_path: Path) -> None:
    big = os.urandom(2 * 1024 * 1024 + 17)
    put(s3, h.bucket, f"{prefix}/data/big.bin", big)
    put(s3, h.bucket, f"{prefix}/data/small.txt", b"0123456789")
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "small.txt").write_bytes(b"ABCDEFGHIJ")  # same size: must be skipped, so it keeps this content
    (dest / "big.bin.tao-part").write_bytes(b"X" * 1000)  # a partial download: must be continued with a Range GET
    plan = h.plan(command="true", inputs={str(dest): f"s3://{h.bucket}/{prefix}/data/"})
    r = h.run(plan)
    assert r.rc == 0, r.out + r.err
    assert (dest / "small.txt").read_bytes() == b"ABCDEFGHIJ"
    assert (dest / "big.bin").read_bytes() == b"X" * 1000 + big[1000:], "the partial file was not resumed"
    assert not (dest / "big.bin.tao-part").exists()
    assert r.has("1 already present")
    again = h.run(h.plan(command="true", inputs={str(dest): f"s3://{h.bucket}/{prefix}/data/"}))
    assert again.rc == 0 and again.has("2/2 files") and again.has("2 already present")


def test_multi_megabyte_output_goes_through_multipart(h: Harness, s3: Any) -> None:
    plan = h.plan(command="head -c 12582912 /dev/urandom > {results_dir}/big.bin", outputs=[])
    r = h.run(plan, extra={"TAO_RUNNER_PART_MB": "5"})
    assert r.rc == 0, r.out + r.err
    key = f"results/{h.jobs[-1]}/big.bin"
    head = s3.head_object(Bucket=h.bucket, Key=key)
    assert head["ContentLength"] == 12582912
    assert head["ETag"].strip('"').endswith("-3"), f"not a 3-part multipart upload: {head['ETag']}"
    local = (h.staging(h.jobs[-1]) / "big.bin").read_bytes()
    remote = s3.get_object(Bucket=h.bucket, Key=key)["Body"].read()
    assert hashlib.sha256(remote).digest() == hashlib.sha256(local).digest()


# ---------------------------------------------------------------- results location, interpreters, errors


def test_results_location_rules(hs: Harness, s3: Any, prefix: str, tmp_path: Path) -> None:
    root = tmp_path / "mount"
    explicit = f"s3://{hs.bucket}/{prefix}/explicit-results"
    # explicit results_uri wins over TAO_RESULTS_ROOT
    r = hs.run(
        hs.plan(command="echo x > {results_dir}/r.txt", outputs=[], results_uri=explicit),
        {"TAO_RESULTS_ROOT": str(root)},
    )
    assert r.rc == 0 and keys_under(s3, hs.bucket, f"{prefix}/explicit-results/") == {"r.txt": 2}
    # TAO_RESULTS_ROOT (a persistent mount) wins over the bucket: nothing is uploaded
    plan = hs.plan(command="echo x > {results_dir}/r.txt", outputs=[])
    r = hs.run(plan, {"TAO_RESULTS_ROOT": str(root)})
    assert r.rc == 0 and (root / hs.jobs[-1] / "r.txt").is_file() and r.has(f"results {root / hs.jobs[-1]}")
    assert not keys_under(s3, hs.bucket, f"results/{hs.jobs[-1]}/") and not r.has("upload")
    # ... and an output outside the results folder is copied onto the mount
    logs = tmp_path / "logs"
    plan = hs.plan(command=f"mkdir -p {logs} && echo l > {logs}/a.log", outputs=[str(logs)])
    r = hs.run(plan, {"TAO_RESULTS_ROOT": str(root)})
    assert r.rc == 0 and (root / hs.jobs[-1] / "logs" / "a.log").read_text() == "l\n"
    assert not keys_under(s3, hs.bucket, f"results/{hs.jobs[-1]}/")
    # the bucket
    r = hs.run(hs.plan(command="echo x > {results_dir}/r.txt", outputs=[]))
    assert r.rc == 0 and keys_under(s3, hs.bucket, f"results/{hs.jobs[-1]}/") == {"r.txt": 2}
    # nothing configured: container-local, with a loud warning
    no_s3 = {k: v for k, v in hs.settings.items() if not k.startswith("S3_")}
    r = hs.run(hs.plan(command="echo x > {results_dir}/r.txt", outputs=[], settings=no_s3))
    assert r.rc == 0 and r.has("WARNING: no TAO_RESULTS_ROOT and no S3 results location")
    assert (hs.staging(hs.jobs[-1]) / "r.txt").is_file()


def test_python_fallback_and_no_python(hs: Harness, tmp_path: Path) -> None:
    only_python = tmp_path / "only-python"
    only_python.mkdir()
    hs.write_python("python", only_python)
    no_s3 = {k: v for k, v in hs.settings.items() if not k.startswith("S3_")}
    plan = hs.plan(command="echo hi-from-{job_id}", outputs=[], settings=no_s3)
    r = hs.run(plan, path=str(only_python))
    assert r.rc == 0, r.out + r.err
    assert f"hi-from-{hs.jobs[-1]}" in r.out
    r = hs.run(plan, shell="/bin/sh")  # dash: the wrapper is plain POSIX shell
    assert r.rc == 0 and f"hi-from-{hs.jobs[-1]}" in r.out, r.out + r.err
    empty = tmp_path / "empty"
    empty.mkdir()
    r = hs.run(plan, path=str(empty))
    assert r.rc == 127
    assert r.has("error E_NO_PYTHON: neither python3 nor python") and r.lines[-1] == "[tao-runner] exit 127"


def test_storage_errors_are_coded_and_the_command_never_runs(h: Harness, s3: Any, prefix: str, tmp_path: Path) -> None:
    put(s3, h.bucket, f"{prefix}/in/file.txt", b"x")
    marker = tmp_path / "ran"
    good = f"s3://{h.bucket}/{prefix}/in/file.txt"
    wrong = f"canary-wrong-secret-{uuid.uuid4().hex[:8]}"
    r = h.run(h.plan(command=f"touch {marker}", inputs={str(tmp_path / "f"): good}), {"AWS_SECRET_ACCESS_KEY": wrong})
    assert r.rc == 66 and r.has("error E_ACCESS_DENIED"), r.out
    missing = f"s3://{h.bucket}/{prefix}/in/nope.txt"
    r = h.run(h.plan(command=f"touch {marker}", inputs={str(tmp_path / "f"): missing}))
    assert r.rc == 66 and r.has("error E_INPUT_NOT_FOUND"), r.out
    r = h.run(h.plan(command=f"touch {marker}", inputs={str(tmp_path / "f"): "s3://no-such-bucket-tao/x"}))
    assert r.rc == 66 and r.has("error E_NO_SUCH_BUCKET"), r.out
    plan = h.plan(command=f"touch {marker}", inputs={str(tmp_path / "f"): good})
    r = h.run(plan, {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})
    if h.mode == "stdlib":  # boto3 falls back to its credential chain and then gets refused
        assert r.rc == 78 and r.has("error E_MISSING_CREDENTIALS") and r.has("AWS_SECRET_ACCESS_KEY"), r.out
    else:
        assert r.rc in (66, 78) and (r.has("E_MISSING_CREDENTIALS") or r.has("E_ACCESS_DENIED")), r.out
    assert not marker.exists()


# ngc://, hf:// (over HTTP, against fakes of the two APIs), selective inputs and the input cache:
# tests/s3/test_runner_staging.py


# ---------------------------------------------------------------- spec formats without PyYAML


TRICKY = {
    "floats": [1e-05, 1e20, 0.1, -2.5e-300, 3.0],
    "ints": [0, -7, 2**62],
    "strings": [
        "yes",
        "no",
        "on",
        "null",
        "~",
        "1e5",
        "a: b",
        "#x",
        "tab\tand\nnewline",
        "ünï €",
        "😀",
        "\x85\x9f\x7f",
        "\u2028\u2029",
    ],
    "nested": {"deep": {"list": [{"a": None}, [], {}]}, "bool": [True, False]},
    "empty": "",
}


@pytest.mark.parametrize("fmt", ["yaml", "json", "toml"])
def test_spec_formats_round_trip_without_pyyaml(hs: Harness, fmt: str) -> None:
    spec = json.loads(json.dumps(TRICKY))
    if fmt == "toml":  # TOML has no null
        spec["nested"]["deep"]["list"] = [{"a": 1}, [], {}]
    no_s3 = {k: v for k, v in hs.settings.items() if not k.startswith("S3_")}
    r = hs.run(hs.plan(command="test -s {config_path}", specs=spec, config_format=fmt, settings=no_s3))
    assert r.rc == 0, r.out + r.err
    text = (hs.staging(hs.jobs[-1]) / f"spec.{fmt}").read_text(encoding="utf-8")
    parsed = {"yaml": yaml.safe_load, "json": json.loads, "toml": tomllib.loads}[fmt](text)
    assert parsed == spec


# ---------------------------------------------------------------- a platform's stop signal


def test_sigterm_reaches_the_command_and_outputs_still_upload(hs: Harness, s3: Any) -> None:
    command = (
        "trap 'echo stopped > {results_dir}/term.txt; exit 143' TERM; echo started; while true; do sleep 0.1; done"
    )
    plan = hs.plan(command=command, outputs=[])
    proc = subprocess.Popen(
        ["/bin/bash", "-c", plan.command], env=hs.env(plan), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    seen: list[str] = []
    deadline = time.monotonic() + 30
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen.append(line)
        if line.strip() == "started" or not line:
            break
    assert "started\n" in seen, "".join(seen)
    proc.send_signal(signal.SIGTERM)  # bash exec'd the runner: this is the runner's pid, as PID 1 in a container
    out, _ = proc.communicate(timeout=60)
    hs.check_secrets("".join(seen) + out)
    assert proc.returncode == 143, out
    assert keys_under(s3, hs.bucket, f"results/{hs.jobs[-1]}/") == {"term.txt": 8}


class StallProxy:
    """A TCP relay in front of the RGW that holds back one answer, so a test knows which phase the runner is in.

    The first request whose bytes contain `trigger` gets `after` bytes of its answer; then `triggered` is set and
    the rest waits for `release`. Every other request passes unchanged (SigV4 signs the proxy's Host, which the RGW
    checks as received)."""

    def __init__(self, endpoint: str, trigger: str, after: int = 0) -> None:
        parsed = urllib.parse.urlsplit(endpoint)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.trigger, self.after = trigger.encode(), after
        self.triggered, self.release = threading.Event(), threading.Event()
        self.fired = False
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
                upstream = socket.create_connection(self.upstream)
            except OSError:
                return
            self.sockets += [client, upstream]
            held = threading.Event()  # this connection carried the trigger: hold its answer
            threading.Thread(target=self._to_server, args=(client, upstream, held), daemon=True).start()
            threading.Thread(target=self._to_client, args=(upstream, client, held), daemon=True).start()

    def _to_server(self, src: socket.socket, dst: socket.socket, held: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while chunk := src.recv(65536):
                with self.lock:
                    if not self.fired and self.trigger in chunk:
                        self.fired = True
                        held.set()
                dst.sendall(chunk)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def _to_client(self, src: socket.socket, dst: socket.socket, held: threading.Event) -> None:
        sent = 0
        with contextlib.suppress(OSError):
            while chunk := src.recv(65536):
                if held.is_set() and not self.release.is_set():
                    room = max(0, self.after - sent)
                    if len(chunk) >= room:  # the answer reaches the hold point
                        dst.sendall(chunk[:room])
                        self.triggered.set()
                        self.release.wait()
                        chunk = chunk[room:]
                    sent += len(chunk)
                dst.sendall(chunk)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.release.set()
        for sock in [self.server, *self.sockets]:
            with contextlib.suppress(OSError):
                sock.close()


@pytest.fixture
def stall() -> Iterator[Callable[..., StallProxy]]:
    proxies: list[StallProxy] = []

    def make(endpoint: str, trigger: str, after: int = 0) -> StallProxy:
        proxies.append(StallProxy(endpoint, trigger, after))
        return proxies[-1]

    yield make
    for proxy in proxies:
        proxy.close()


def start_runner(h: Harness, plan: EntrypointPlan, extra: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["/bin/bash", "-c", plan.command],
        env=h.env(plan, extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def read_until(proc: subprocess.Popen[str], prefix: str, seconds: float = 30) -> tuple[str, list[str]]:
    """The first stdout line starting with prefix (and every line read), within a deadline."""
    assert proc.stdout is not None
    seen: list[str] = []
    box: list[str] = []

    def reader() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            seen.append(line)
            if line.startswith(prefix):
                box.append(line)
                return

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    thread.join(seconds)
    assert box, f"no line starting with {prefix!r} within {seconds}s: " + "".join(seen)
    return box[0], seen


def finish(h: Harness, proc: subprocess.Popen[str], seen: list[str]) -> Result:
    out, _ = proc.communicate(timeout=60)
    out = "".join(seen) + out
    h.check_secrets(out)
    return Result(proc.returncode, out, "")


def group_gone(pgid: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_sigterm_during_download_skips_the_command_and_uploads_what_exists(
    h: Harness, s3: Any, prefix: str, tmp_path: Path, stall: Callable[..., StallProxy]
) -> None:
    put(s3, h.bucket, f"{prefix}/in/slow.bin", os.urandom(1024 * 1024))
    proxy = stall(h.settings["S3_ENDPOINT_URL"], f"GET /{h.bucket}/{prefix}/in/slow.bin", after=64 * 1024)
    marker = tmp_path / "command-ran"
    plan = h.plan(
        command=f"touch {marker}; echo x > {{results_dir}}/late.txt",
        outputs=[],
        inputs={str(tmp_path / "in" / "slow.bin"): f"s3://{h.bucket}/{prefix}/in/slow.bin"},
    )
    job_id = h.jobs[-1]
    h.staging(job_id).mkdir(parents=True)
    (h.staging(job_id) / "before.txt").write_text("left by an earlier attempt\n")
    proc = start_runner(h, plan, {"AWS_ENDPOINT_URL": proxy.url})
    assert proxy.triggered.wait(60), "the runner never started downloading the input"
    proc.send_signal(signal.SIGTERM)  # the runner is blocked in the middle of the input's body
    r = finish(h, proc, [])
    assert r.rc == 143, r.out
    assert r.has("stopped by SIGTERM during download: the command did not run"), r.out
    assert r.has("phase uploading outputs") and r.lines[-1] == "[tao-runner] exit 143", r.out
    assert not marker.exists(), "the command must not start after a stop signal"
    assert keys_under(s3, h.bucket, f"results/{job_id}/") == {"before.txt": 27}


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGUSR1"])
def test_stop_signal_during_the_command_ends_its_process_group_and_uploads(
    hs: Harness, s3: Any, signame: str, tmp_path: Path
) -> None:
    ready = tmp_path / "background-ignores-term"
    command = (
        "trap 'echo stopped > {results_dir}/term.txt; exit 143' TERM; echo partial > {results_dir}/partial.txt; "
        f"(trap '' TERM; touch {ready}; exec sleep 300) & "  # a background job that ignores TERM: the runner KILLs it
        f"until [ -e {ready} ]; do sleep 0.01; done; echo started $$ $!; wait"
    )
    plan = hs.plan(command=command, outputs=[])
    proc = start_runner(hs, plan, {"TAO_RUNNER_STOP_GRACE": "1"})
    line, seen = read_until(proc, "started ")
    pgid, background = (int(x) for x in line.split()[1:])
    proc.send_signal(getattr(signal, signame))
    r = finish(hs, proc, seen)
    assert r.rc == 143, r.out  # USR1 stops the command like TERM does
    assert r.has(f"stopped by {signame} during the command"), r.out
    assert r.has("stopping the processes the command left running"), r.out
    assert group_gone(pgid), f"the command's process group {pgid} outlived the runner"
    with pytest.raises(ProcessLookupError):
        os.kill(background, 0)
    assert keys_under(s3, hs.bucket, f"results/{hs.jobs[-1]}/") == {"term.txt": 8, "partial.txt": 8}


def test_sigterm_during_upload_finishes_the_uploads(h: Harness, s3: Any, stall: Callable[..., StallProxy]) -> None:
    job_id = uuid.uuid4().hex[:12]
    proxy = stall(h.settings["S3_ENDPOINT_URL"], f"PUT /{h.bucket}/results/{job_id}/a.txt")
    command = "echo a > {results_dir}/a.txt; echo b > {results_dir}/b.txt; (exec sleep 300) & echo started $$"
    plan = h.plan(command=command, outputs=[], job_id=job_id)
    proc = start_runner(h, plan, {"AWS_ENDPOINT_URL": proxy.url, "TAO_RUNNER_STOP_GRACE": "1"})
    line, seen = read_until(proc, "started ")
    assert proxy.triggered.wait(60), "the runner never uploaded a.txt"
    proc.send_signal(signal.SIGTERM)
    proxy.release.set()
    r = finish(h, proc, seen)
    assert r.rc == 0, r.out  # the command had succeeded; the uploads went on
    assert r.has("SIGTERM came during the uploads: they were finished first"), r.out
    assert group_gone(int(line.split()[1])), "the command's background job outlived the runner"
    assert keys_under(s3, h.bucket, f"results/{job_id}/") == {"a.txt": 2, "b.txt": 2}
