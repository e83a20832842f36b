"""Data staging in the real runner process: ngc:// and hf:// inputs over HTTP against protocol-faithful fakes of
the NGC and Hugging Face APIs (fixtures/model_hubs), `selective` S3 inputs, and the input cache (dev S3 server).
Every run checks that no secret (S3 keys, the NGC key, the HF token, the NGC bearer token) is printed."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from fixtures.model_hubs.fake_hf import FakeHF
from fixtures.model_hubs.fake_ngc import FakeNGC
from tests.s3.test_runner import Harness, Result, put

MODEL = "ngc://nvidia/tao/pretrained_dino:resnet50"


@pytest.fixture
def ngc(hs: Harness) -> Iterator[FakeNGC]:
    fake = FakeNGC(api_key=hs.canaries["NGC_KEY"])
    fake.start()
    fake.add_model("nvidia/tao/pretrained_dino:resnet50", {"resnet50.pth": b"dino weights"})
    fake.add_model("nvidia/tao/bundle:v2", {"model.onnx": b"onnx", "labels/classes.txt": b"a\nb\n"})
    yield fake
    fake.stop()


@pytest.fixture
def hf(hs: Harness) -> Iterator[FakeHF]:
    fake = FakeHF(tokens=(hs.canaries["HF_TOKEN"],))
    fake.start()
    files = {
        "config.json": b'{"arch": "detr"}',
        "weights/model.safetensors": b"S" * 300,
        "weights/extra.bin": b"B" * 50,
        "weights/notes/readme.md": b"notes",
    }
    fake.add_repo("org/detr", files, gated=True)
    fake.add_repo("org/detr", {**files, "weights/model.safetensors": b"V2" * 10}, gated=True, revision="v2")
    fake.add_repo("org/coco-mini", {"data/train.json": b"[1]", "data/val.json": b"[2]"}, kind="datasets")
    yield fake
    fake.stop()


def hub_settings(h: Harness, ngc: FakeNGC | None = None, hf: FakeHF | None = None) -> dict[str, str]:
    settings = {k: v for k, v in h.settings.items() if not k.startswith("S3_")}
    if ngc:
        settings |= {"TAO_NGC_AUTH_URL": ngc.url, "TAO_NGC_API_URL": ngc.url}
    if hf:
        settings["HF_ENDPOINT"] = hf.url
    return settings


def no_leak(result: Result, *fakes: FakeNGC) -> None:
    for fake in fakes:
        for token in fake.tokens:
            assert token not in result.out + result.err, "the NGC bearer token was printed"


# ---------------------------------------------------------------- ngc://


def test_ngc_pretrained_model_in_a_spec_is_downloaded_over_http(hs: Harness, ngc: FakeNGC) -> None:
    specs = {"train": {"pretrained_model_path": MODEL}, "model": {"bundle": "ngc://nvidia/tao/bundle:v2"}}
    plan = hs.plan(command="cat {config_path}", specs=specs, config_format="json", settings=hub_settings(hs, ngc))
    assert plan.secret_env == {"NGC_KEY": "NGC_KEY"} and plan.env["TAO_NGC_API_URL"] == ngc.url
    assert not [w for w in plan.warnings if "not declared" in w]  # pretrained values need no declaration
    r = hs.run(plan)
    assert r.rc == 0, r.out + r.err
    no_leak(r, ngc)
    stage = hs.staging(hs.jobs[-1])
    written = json.loads((stage / "spec.json").read_text())
    model = Path(written["train"]["pretrained_model_path"])  # one file: the spec names the file
    assert model == stage / "inputs" / "train.pretrained_model_path" / "pretrained_dino_vresnet50" / "resnet50.pth"
    assert model.read_bytes() == b"dino weights"
    bundle = Path(written["model"]["bundle"])  # several files: the folder
    assert (bundle / "model.onnx").read_bytes() == b"onnx" and (bundle / "labels" / "classes.txt").is_file()
    token_calls = [q for q in ngc.requests if q["path"] == "/token"]
    assert token_calls and all(q["authorization"] for q in token_calls)
    assert {q["query"]["scope"] for q in token_calls} == {"group/ngc:nvidia/tao"}
    zips = [q for q in ngc.requests if q["path"].endswith("/zip")]
    assert len(zips) == 2 and all(q["authorization"] and q["host"].startswith("127.0.0.1") for q in zips)
    blobs = [q for q in ngc.requests if q["path"].startswith("/_blobs/")]
    assert len(blobs) == 2 and all(q["host"].startswith("localhost") and not q["authorization"] for q in blobs)


def test_ngc_token_that_lapses_is_exchanged_again(hs: Harness, ngc: FakeNGC, tmp_path: Path) -> None:
    ngc.expire_next = 1
    plan = hs.plan(command="true", inputs={str(tmp_path / "m"): MODEL}, settings=hub_settings(hs, ngc))
    r = hs.run(plan)
    assert r.rc == 0, r.out + r.err
    assert len([q for q in ngc.requests if q["path"] == "/token"]) == 2
    assert (tmp_path / "m" / "resnet50.pth").read_bytes() == b"dino weights"


def test_ngc_failures_are_coded(hs: Harness, ngc: FakeNGC, tmp_path: Path) -> None:
    settings = hub_settings(hs, ngc)
    plan = hs.plan(command="true", inputs={str(tmp_path / "a"): MODEL}, settings=settings)
    r = hs.run(plan, {"NGC_KEY": "wrong-key-000000"})
    assert r.rc == 66 and r.has("error E_ACCESS_DENIED") and r.has("NGC_KEY"), r.out
    plan = hs.plan(command="true", inputs={str(tmp_path / "b"): "ngc://nvidia/tao/nope:v1"}, settings=settings)
    r = hs.run(plan)
    assert r.rc == 66 and r.has("error E_INPUT_NOT_FOUND") and r.has("Model 'nope' could not be found"), r.out
    plan = hs.plan(command="true", inputs={str(tmp_path / "c"): MODEL}, settings=settings)
    r = hs.run(plan, {"NGC_KEY": ""})
    assert r.rc == 78 and r.has("error E_MISSING_CREDENTIALS"), r.out
    unreachable = {**settings, "TAO_NGC_AUTH_URL": "http://127.0.0.1:9", "TAO_NGC_API_URL": "http://127.0.0.1:9"}
    r = hs.run(hs.plan(command="true", inputs={str(tmp_path / "d"): MODEL}, settings=unreachable))
    assert r.rc == 74 and r.has("error E_BACKEND_UNREACHABLE"), r.out


# ---------------------------------------------------------------- hf://


def test_hf_file_folder_and_dataset_inputs(hs: Harness, hf: FakeHF, tmp_path: Path) -> None:
    specs = {
        "model": {"weights": "hf://org/detr@v2/weights/model.safetensors", "config": "hf://org/detr/config.json"},
        "data": "hf://datasets/org/coco-mini/data",
    }
    plan = hs.plan(
        command="cat {config_path}",
        specs=specs,
        inputs={"data": {"type": "folder"}},
        outputs=[],
        settings=hub_settings(hs, hf=hf),
    )
    assert plan.secret_env == {"HF_TOKEN": "HF_TOKEN"} and plan.env["HF_ENDPOINT"] == hf.url
    r = hs.run(plan)
    assert r.rc == 0, r.out + r.err
    written = yaml.safe_load((hs.staging(hs.jobs[-1]) / "spec.yaml").read_text())
    assert Path(written["model"]["weights"]).read_bytes() == b"V2" * 10  # the revision asked for
    assert Path(written["model"]["weights"]).name == "model.safetensors"
    assert Path(written["model"]["config"]).read_bytes() == b'{"arch": "detr"}'
    data = Path(written["data"])
    assert sorted(p.name for p in data.iterdir()) == ["train.json", "val.json"]
    resolves = [q for q in hf.requests if "/resolve/" in q["path"]]
    assert resolves and all(q["authorization"] for q in resolves)  # the Hub gets the token ...
    blobs = [q for q in hf.requests if q["path"].startswith("/_blobs/")]
    assert blobs and not any(q["authorization"] for q in blobs)  # ... its CDN never does
    # a folder, listed page by page (the fake pages every 2 entries), into a passthrough path
    r = hs.run(
        hs.plan(command="true", inputs={str(tmp_path / "w"): "hf://org/detr/weights"}, settings=hub_settings(hs, hf=hf))
    )
    assert r.rc == 0, r.out + r.err
    got = sorted(str(p.relative_to(tmp_path / "w")) for p in (tmp_path / "w").rglob("*") if p.is_file())
    assert got == ["extra.bin", "model.safetensors", "notes/readme.md"]
    assert any("cursor" in q["query"] for q in hf.requests if "/tree/" in q["path"])
    # the whole repo with the older scheme
    r = hs.run(
        hs.plan(command="true", inputs={str(tmp_path / "all"): "hf_model://org/detr"}, settings=hub_settings(hs, hf=hf))
    )
    assert r.rc == 0 and (tmp_path / "all" / "weights" / "notes" / "readme.md").is_file(), r.out


def test_hf_gated_missing_and_unreachable(hs: Harness, hf: FakeHF, tmp_path: Path) -> None:
    settings = hub_settings(hs, hf=hf)
    plan = hs.plan(command="true", inputs={str(tmp_path / "g"): "hf://org/detr/config.json"}, settings=settings)
    r = hs.run(plan, {"HF_TOKEN": ""})
    assert r.rc == 66 and r.has("error E_ACCESS_DENIED") and r.has("HF_TOKEN") and r.has("GatedRepo"), r.out
    for uri, code in (
        ("hf://org/nope/x.json", "RepoNotFound"),
        ("hf://org/detr@v9/config.json", "RevisionNotFound"),
        ("hf://org/detr/missing/path", "EntryNotFound"),
    ):
        r = hs.run(hs.plan(command="true", inputs={str(tmp_path / code): uri}, settings=settings))
        assert r.rc == 66 and r.has("error E_INPUT_NOT_FOUND") and r.has(code), r.out
    down = {**settings, "HF_ENDPOINT": "http://127.0.0.1:9"}
    r = hs.run(hs.plan(command="true", inputs={str(tmp_path / "u"): "hf://org/detr/config.json"}, settings=down))
    assert r.rc == 74 and r.has("error E_BACKEND_UNREACHABLE"), r.out


# ---------------------------------------------------------------- selective inputs


def test_selective_input_downloads_only_the_files_the_spec_names(h: Harness, s3: Any, prefix: str) -> None:
    root = f"s3://{h.bucket}/{prefix}/coco"
    for key, body in {
        "ann/train.json": b"[train]",
        "ann/val.json": b"[val]",
        "images/1.jpg": b"1" * 1000,
        "images/2.jpg": b"2" * 1000,
        "unused.bin": b"x",
    }.items():
        put(s3, h.bucket, f"{prefix}/coco/{key}", body)
    specs = {
        "dataset": {"root": f"{root}/", "train_ann": f"{root}/ann/train.json", "val": [f"{root}/ann/val.json"]},
        "results_dir": None,
    }
    plan = h.plan(
        command="cat {config_path}",
        specs=specs,
        inputs={"dataset.root": {"type": "folder", "selective": True}},
        outputs={"results_dir": {"type": "folder"}},
    )
    assert not plan.warnings, plan.warnings
    assert set(plan.details["downloads"]) == {f"{root}/ann/train.json", f"{root}/ann/val.json"}
    r = h.run(plan)
    assert r.rc == 0, r.out + r.err
    assert r.has("download 2/2 files")
    written = yaml.safe_load((h.staging(h.jobs[-1]) / "spec.yaml").read_text())
    local_root = Path(written["dataset"]["root"])
    got = sorted(str(p.relative_to(local_root)) for p in local_root.rglob("*") if p.is_file())
    assert got == ["ann/train.json", "ann/val.json"]  # no images, no unused.bin
    assert Path(written["dataset"]["train_ann"]) == local_root / "ann" / "train.json"
    assert Path(written["dataset"]["val"][0]).read_bytes() == b"[val]"


def test_selective_needs_config_mode_and_s3(hs: Harness, tmp_path: Path) -> None:
    from tao_mcp.errors import TaoError

    with pytest.raises(TaoError, match="selective"):
        hs.plan(command="x", args={"data": "hf://org/detr/weights"}, inputs={"data": {"selective": True}})


# ---------------------------------------------------------------- the input cache


def cache_entries(cache: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in cache.rglob("*") if p.is_file()}


def test_input_cache_reuses_by_uri_and_etag(h: Harness, s3: Any, prefix: str, tmp_path: Path) -> None:
    put(s3, h.bucket, f"{prefix}/ds/a.txt", b"A1")
    put(s3, h.bucket, f"{prefix}/ds/b.txt", b"B1")
    cache = tmp_path / "lustre-cache"
    uri = f"s3://{h.bucket}/{prefix}/ds/"

    def job(name: str) -> tuple[Result, Path]:
        dest = tmp_path / name
        result = h.run(h.plan(command="true", inputs={str(dest): uri}), {"TAO_INPUT_CACHE": str(cache)})
        assert result.rc == 0, result.out + result.err
        return result, dest

    first, _ = job("one")
    assert not first.has("from the input cache") and len(cache_entries(cache)) == 2
    second, dest = job("two")
    assert second.has("download 2/2 files") and sum("from the input cache" in x for x in second.lines) == 2
    assert (dest / "a.txt").read_bytes() == b"A1" and (dest / "b.txt").read_bytes() == b"B1"
    etag = s3.head_object(Bucket=h.bucket, Key=f"{prefix}/ds/a.txt")["ETag"]
    entry = hashlib.sha256(f"{uri}a.txt\n{etag.strip(chr(34))}".encode()).hexdigest()
    assert cache_entries(cache)[entry] == b"A1"
    put(s3, h.bucket, f"{prefix}/ds/a.txt", b"A2-changed")  # a new ETag: downloaded again, cached anew
    third, dest = job("three")
    assert (dest / "a.txt").read_bytes() == b"A2-changed" and (dest / "b.txt").read_bytes() == b"B1"
    assert sum("from the input cache" in x for x in third.lines) == 1
    assert len(cache_entries(cache)) == 3 and not list(cache.rglob("*.tao-part"))


def test_input_cache_concurrent_jobs(hs: Harness, s3: Any, prefix: str, tmp_path: Path) -> None:
    for i in range(6):
        put(s3, hs.bucket, f"{prefix}/many/f{i}.bin", bytes([i]) * 200_000)
    cache = tmp_path / "cache"
    uri = f"s3://{hs.bucket}/{prefix}/many/"
    procs = []
    for n in range(3):
        plan = hs.plan(command="true", inputs={str(tmp_path / f"d{n}"): uri})
        env = hs.env(plan, {"TAO_INPUT_CACHE": str(cache)})
        procs.append(subprocess.Popen(["/bin/bash", "-c", plan.command], env=env, stdout=subprocess.PIPE, text=True))
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out
        hs.check_secrets(out)
    entries = cache_entries(cache)
    assert sorted(entries.values()) == sorted(bytes([i]) * 200_000 for i in range(6))
    for n in range(3):
        assert sorted(p.read_bytes()[:1] for p in (tmp_path / f"d{n}").iterdir()) == [bytes([i]) for i in range(6)]


def test_tokens_echoed_by_a_hub_are_never_printed(hs: Harness, ngc: FakeNGC, hf: FakeHF, tmp_path: Path) -> None:
    ngc.echo_auth = hf.echo_auth = True
    ngc.expire_next = 2  # the download is refused (401) with the bearer token echoed, twice
    r = hs.run(hs.plan(command="true", inputs={str(tmp_path / "n"): MODEL}, settings=hub_settings(hs, ngc)))
    assert r.rc == 66 and r.has("error E_ACCESS_DENIED") and r.has("Authorization: Bearer ***"), r.out
    no_leak(r, ngc)
    plan = hs.plan(
        command="true", inputs={str(tmp_path / "h"): "hf://org/detr/config.json"}, settings=hub_settings(hs, hf=hf)
    )
    r = hs.run(plan, {"HF_TOKEN": hs.canaries["HF_TOKEN"] + "-revoked"})  # refused, and echoed
    assert r.rc == 66 and r.has("error E_ACCESS_DENIED") and r.has("Authorization: Bearer ***"), r.out
    assert hs.canaries["HF_TOKEN"] not in r.out + r.err
