"""tao-runner: the program that runs inside the job container, around the user's command.

Standard library only (boto3 and PyYAML when the image has them; NGC and Hugging Face over plain HTTP). It reads the
job description written by tao_mcp.entrypoint.builder (zlib + base64 JSON, argv[1]), downloads the declared
inputs, writes the spec, runs the command, uploads the declared outputs even when the command failed, and exits
with the command's exit code. Every line it prints starts with "[tao-runner]"; secret values are never printed.
Runs on Python >= 3.8, so no 3.9+ syntax or library calls here.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zlib
from fnmatch import fnmatch
from typing import TYPE_CHECKING, Any
from urllib import error as urlerror
from urllib import parse as urlparse
from urllib import request as urlrequest
from xml.etree import ElementTree

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


TAG = "[tao-runner]"
PLACEHOLDERS = ("config_path", "results_dir", "job_id")
REMOTE = ("s3://", "ngc://", "hf://", "hf_model://", "hf_dataset://")
LOCAL = ("lustre://", "file://")
ARCHIVES = (".tar.gz", ".tgz", ".tar")
SECRET_NAMES = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SESSION_TOKEN",
    "NGC_KEY",
    "NGC_CLI_API_KEY",
    "NGC_API_KEY",
    "HF_TOKEN",
)
MIB = 1 << 20
PART_SUFFIX = ".tao-part"
EXIT_INPUT, EXIT_SOFTWARE, EXIT_IO, EXIT_CONFIG = 66, 70, 74, 78
SHELL_SAFE = re.compile(r"[\w@%+=:,./-]+")


class RunnerError(Exception):
    """An anticipated failure, printed as `error E_CODE: cause. Fix: ...` and turned into the exit code."""

    def __init__(self, code: str, cause: str, fix: str = "", exit_code: int = EXIT_INPUT) -> None:
        super().__init__(cause)
        self.code, self.cause, self.fix, self.exit_code = code, cause, fix, exit_code

    def __str__(self) -> str:
        return f"{self.code}: {self.cause}" + (f". Fix: {self.fix}" if self.fix else "")


class S3Error(Exception):
    def __init__(self, status: int, code: str, message: str = "") -> None:
        super().__init__(f"{code} (HTTP {status}) {message}".strip())
        self.status, self.code = status, code


def redact(text: str) -> str:
    for value in [os.environ.get(name) for name in SECRET_NAMES] + RUNTIME_SECRETS:
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def say(message: str) -> None:
    line = f"{TAG} {redact(message)}"
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    write_phase(line)


def write_phase(line: str) -> None:
    """The latest message also goes to TAO_RUNNER_PHASE_FILE when the platform set one (SLURM: beside the
    log), replaced atomically, so the server reads one short file instead of scanning the log for it."""
    path = os.environ.get("TAO_RUNNER_PHASE_FILE")
    if not path:
        return
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(line[:1000] + "\n")
        os.replace(tmp, path)
    except OSError:
        pass  # no phase file (the job folder is not mounted here): the server falls back to the log


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


# ---------------------------------------------------------------- spec paths and templates


def parse_path(path: str) -> list:
    """'dataset.sources[0].image_dir' -> ['dataset', 'sources', 0, 'image_dir']."""
    tokens: list = []
    for part in path.split("."):
        m = re.fullmatch(r"([^\[\]]+)((?:\[\d+\])*)", part)
        if not m:
            raise RunnerError("E_BAD_INPUT", f"{path!r} is not a dotted spec path", "write it like a.b[0].c")
        tokens.append(m.group(1))
        tokens.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
    return tokens


MISSING = object()


def get_path(tree: object, tokens: list) -> object:
    for t in tokens:
        if isinstance(t, int):
            if not isinstance(tree, list) or t >= len(tree):
                return MISSING
        elif not isinstance(tree, dict) or t not in tree:
            return MISSING
        tree = tree[t]  # type: ignore[index]
    return tree


def set_path(tree: dict, tokens: list, value: object, where: str) -> None:
    node: object = tree
    for i, t in enumerate(tokens):
        if isinstance(t, int) and not (isinstance(node, list) and t < len(node)):
            raise RunnerError("E_BAD_INPUT", f"cannot set {where}: index [{t}] does not exist in the spec")
        if isinstance(t, str) and not isinstance(node, dict):
            raise RunnerError("E_BAD_INPUT", f"cannot set {where}: the value above {t!r} is not a mapping")
        if i == len(tokens) - 1:
            node[t] = value  # type: ignore[index]
        else:
            if isinstance(t, str) and node.get(t) is None:  # type: ignore[union-attr,attr-defined]
                node[t] = {}  # type: ignore[index]
            node = node[t]  # type: ignore[index]


def substitute(text: str, values: dict, quote: bool = False) -> str:
    """Replace only {config_path}, {results_dir}, {job_id}; every other brace ({} or ${VAR}) is left alone."""
    for name in PLACEHOLDERS:
        if name in values:
            value = values[name]
            if quote and not SHELL_SAFE.fullmatch(value):
                value = shlex.quote(value)
            text = text.replace("{" + name + "}", value)
    return text


def substitute_tree(tree: object, values: dict) -> object:
    if isinstance(tree, str):
        return substitute(tree, values)
    if isinstance(tree, dict):
        return {k: substitute_tree(v, values) for k, v in tree.items()}
    if isinstance(tree, list):
        return [substitute_tree(v, values) for v in tree]
    return tree


def render_args(args: dict) -> list:
    """{'epochs': 3, 'verbose': True, '-e': 'a b'} -> ['--epochs', '3', '--verbose', '-e', "'a b'"]."""
    out = []
    for key, value in args.items():
        if value is None or value is False:
            continue
        flag = key if key.startswith("-") else "--" + key
        out.append(shlex.quote(flag))
        if value is True:
            continue
        for item in value if isinstance(value, list) else [value]:
            text = item if isinstance(item, str) else json.dumps(item)
            out.append(shlex.quote(text))
    return out


def slot(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "input"


def strip_archive(name: str) -> str:
    for ext in ARCHIVES:
        if name.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)]
    return name


def target_name(uri: str) -> str:
    """The local name of a downloaded URI: deterministic from the URI, so the server can show it in a dry run."""
    rest = uri.split("://", 1)[1].rstrip("/")
    if uri.startswith("ngc://"):
        model, _, version = rest.rsplit("/", 1)[-1].partition(":")
        name = f"{model}_v{version}" if version else model
    elif uri.startswith("hf"):
        _kind, repo, _rev, path = parse_hf(uri)
        name = (path or repo).rstrip("/").rsplit("/", 1)[-1]
    else:
        name = strip_archive(rest.rsplit("/", 1)[-1])
    return slot(name)


def local_path(uri: str) -> str:
    """lustre:///abs and file:///abs are already local on the platform: drop the scheme."""
    for scheme in LOCAL:
        if uri.startswith(scheme):
            return "/" + uri[len(scheme) :].lstrip("/")
    return uri


def split_s3(uri: str) -> tuple[str, str]:
    rest = uri[len("s3://") :]
    bucket, _, key = rest.partition("/")
    key = re.sub(r"/{2,}", "/", key)
    if not bucket:
        raise RunnerError("E_BAD_URI", f"{uri!r} has no bucket", "write s3://<bucket>/<key>")
    return bucket, key.lstrip("/")


# ---------------------------------------------------------------- job preparation (pure: the builder uses it too)


def prepare(job: dict, results_dir: str, inputs_dir: str) -> dict:
    """Resolve every declared input and output to local paths and rewrite the spec/args. No I/O.

    Returns {spec, args, values, fetches: [(uri, dest, at)], outputs: [(local, s3 uri or None, kind)],
    keep_out: [local dirs the results upload skips], config_path}.
    """
    mode, job_id = job["mode"], job["job_id"]
    ext = {"yaml": "yaml", "yml": "yaml", "json": "json", "toml": "toml"}[job.get("config_format") or "yaml"]
    config_path = os.path.join(results_dir, f"spec.{ext}") if mode == "config" else ""
    values = {"results_dir": results_dir, "job_id": job_id, "config_path": config_path}
    spec = substitute_tree(job.get("spec") or {}, values)
    args = substitute_tree(job.get("args") or {}, values)
    fetches: list = []
    outputs: list = []
    folders: list = []  # selective inputs: created even when the spec names no file in them
    keep_out = [inputs_dir]
    declared = {item.get("at") for item in job.get("inputs") or []}

    def assign(at: str, local: str) -> None:
        if mode == "config":
            set_path(spec, parse_path(at), local, at)  # type: ignore[arg-type]
        elif mode == "args":
            args[at] = local  # type: ignore[index]

    for item in job.get("inputs") or []:
        uri, at = item["uri"], item.get("at")
        dest = local_path(uri)
        if uri.startswith(REMOTE):
            base = os.path.join(inputs_dir, slot(at or "input"))
            dest = substitute(item["to"], values) if item.get("to") else os.path.join(base, target_name(uri))
            if item.get("selective") and mode == "config":
                folders.append(dest)
                fetches += selective_fetches(spec, uri, dest, declared)  # type: ignore[arg-type]
            else:
                fetches.append((uri, dest, at))
        if at:
            assign(at, dest)
    out_dir = os.path.join(results_dir, "outputs")
    for item in job.get("outputs") or []:
        at, uri, kind = item.get("at"), item.get("uri"), item.get("type") or "folder"
        if mode == "passthrough":
            local = substitute(item["from"], values)
        elif uri and uri.startswith("s3://"):
            local = os.path.join(out_dir, slot(at))
            if kind != "folder":
                local = os.path.join(local, uri.rstrip("/").rsplit("/", 1)[-1])
            keep_out.append(out_dir)
        elif uri:
            local, uri = local_path(uri), None
        else:
            local = results_dir if at == "results_dir" else os.path.join(results_dir, slot(at))
        outputs.append((local, uri, kind if mode != "passthrough" else "given"))
        if at:
            assign(at, local)
    return {
        "spec": spec if mode == "config" else None,
        "args": args,
        "values": values,
        "fetches": fetches,
        "outputs": outputs,
        "keep_out": keep_out,
        "config_path": config_path,
        "folders": folders,
    }


def selective_fetches(spec: dict, uri: str, dest: str, declared: set) -> list:
    """A `selective` input: of the folder at uri, only the files the spec names (values under uri/, anywhere in
    the spec) are fetched, each to its place under dest, and those spec values are rewritten to the local files."""
    prefix = uri.rstrip("/") + "/"
    found: list = []

    def walk(node: object, where: str) -> None:
        if isinstance(node, str):
            if node.startswith(prefix) and len(node) > len(prefix) and where not in declared:
                found.append((where, node))
        elif isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{where}.{key}" if where else str(key))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    walk(spec, "")
    fetches = []
    for where, value in found:
        local = safe_join(dest, value[len(prefix) :].rstrip("/"), uri)
        set_path(spec, parse_path(where), local, where)
        fetches.append((value, local, where))
    return fetches


def final_command(job: dict, plan: dict, quote: bool = True) -> str:
    command = substitute(job["command"], plan["values"], quote=quote)
    if job["mode"] == "args":
        command = " ".join([command, *render_args(plan["args"])])
    return command


# ---------------------------------------------------------------- spec writers (yaml without PyYAML, toml)


def yaml_flow(value: object) -> str:
    """JSON text that YAML 1.1 parsers read back identically (floats always carry a '.', no raw C1 chars)."""
    if isinstance(value, dict):
        return "{" + ", ".join(yaml_flow(str(k)) + ": " + yaml_flow(v) for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(yaml_flow(v) for v in value) + "]"
    if isinstance(value, float):
        text = repr(value)
        return text.replace("e", ".0e") if "e" in text and "." not in text else text
    text = json.dumps(value, ensure_ascii=False)
    return re.sub("[\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]", lambda m: f"\\u{ord(m.group()):04x}", text)


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_value(key)


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        items = (f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items() if v is not None)
        return "{" + ", ".join(items) + "}"
    text = json.dumps(str(value), ensure_ascii=False)
    return re.sub("[\x7f\ud800-\udfff]", lambda m: f"\\u{ord(m.group()):04x}", text)


def toml_doc(table: dict, prefix: tuple = ()) -> str:
    lines = [f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items() if v is not None and not isinstance(v, dict)]
    for k, v in table.items():
        if isinstance(v, dict):
            name = (*prefix, toml_key(k))
            lines.append(f"\n[{'.'.join(name)}]")
            lines.append(toml_doc(v, name))
    return "\n".join(line for line in lines if line)


def render_spec(spec: dict, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(spec, indent=2, ensure_ascii=False) + "\n"
    if fmt == "toml":
        return toml_doc(spec).lstrip("\n") + "\n"
    try:
        import yaml  # type: ignore[import-untyped]

        return yaml.safe_dump(spec, sort_keys=False, default_flow_style=False, allow_unicode=True)
    except ImportError:
        return "# written as JSON, which YAML parsers accept (PyYAML is not in this image)\n" + yaml_flow(spec) + "\n"


# ---------------------------------------------------------------- S3: boto3 when present, else SigV4 over urllib


def s3_settings() -> tuple[str | None, str]:
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return endpoint, region


class MiniS3:
    """Just enough S3: HEAD, GET (ranged), PUT, ListObjectsV2 with pagination, multipart upload."""

    name = "builtin (boto3 not importable)"

    def __init__(self, part_size: int) -> None:
        self.endpoint, self.region = s3_settings()
        self.access = os.environ.get("AWS_ACCESS_KEY_ID", "")
        self.secret = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
        self.token = os.environ.get("AWS_SESSION_TOKEN", "")
        self.part_size = part_size
        if not (self.access and self.secret):
            raise RunnerError(
                "E_MISSING_CREDENTIALS",
                "s3:// data needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the container",
                "set ACCESS_KEY and SECRET_KEY in the tao-mcp server environment; they are forwarded as secrets",
                EXIT_CONFIG,
            )
        self.context = None
        if os.environ.get("AWS_CA_BUNDLE"):
            import ssl

            self.context = ssl.create_default_context(cafile=os.environ["AWS_CA_BUNDLE"])

    def _url(self, bucket: str, key: str) -> tuple[str, str]:
        path = "/" + urlparse.quote(key, safe="/~")
        if self.endpoint:
            base = urlparse.urlsplit(self.endpoint)
            return f"{base.scheme}://{base.netloc}", base.path.rstrip("/") + "/" + bucket + path
        if re.fullmatch(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", bucket):
            return f"https://{bucket}.s3.{self.region}.amazonaws.com", path
        return f"https://s3.{self.region}.amazonaws.com", "/" + bucket + path

    def request(
        self,
        method: str,
        bucket: str,
        key: str = "",
        query: dict | None = None,
        body: bytes = b"",
        headers: dict | None = None,
    ) -> Any:
        origin, path = self._url(bucket, key)
        query_text = "&".join(
            f"{urlparse.quote(k, safe='~')}={urlparse.quote(str(v), safe='~')}"
            for k, v in sorted((query or {}).items())
        )
        for attempt in range(5):
            now = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            signed = {
                "host": urlparse.urlsplit(origin).netloc,
                "x-amz-content-sha256": hashlib.sha256(body).hexdigest(),
                "x-amz-date": now,
            }
            if self.token:
                signed["x-amz-security-token"] = self.token
            names = ";".join(sorted(signed))
            canonical = "\n".join(
                [
                    method,
                    path,
                    query_text,
                    "".join(f"{k}:{signed[k]}\n" for k in sorted(signed)),
                    names,
                    signed["x-amz-content-sha256"],
                ]
            )
            scope = f"{now[:8]}/{self.region}/s3/aws4_request"
            to_sign = "\n".join(["AWS4-HMAC-SHA256", now, scope, hashlib.sha256(canonical.encode()).hexdigest()])
            key_bytes = ("AWS4" + self.secret).encode()
            for part in (now[:8], self.region, "s3", "aws4_request"):
                key_bytes = hmac.new(key_bytes, part.encode(), hashlib.sha256).digest()
            signature = hmac.new(key_bytes, to_sign.encode(), hashlib.sha256).hexdigest()
            all_headers = dict(signed, **(headers or {}))
            all_headers["Authorization"] = (
                f"AWS4-HMAC-SHA256 Credential={self.access}/{scope}, SignedHeaders={names}, Signature={signature}"
            )
            if method in ("PUT", "POST"):
                all_headers.setdefault("Content-Type", "application/octet-stream")
            url = origin + urlparse.quote(path, safe="/~%") + ("?" + query_text if query_text else "")
            req = urlrequest.Request(url, data=body if method in ("PUT", "POST") else None, method=method)
            for k, v in all_headers.items():
                req.add_header(k.title() if k != "host" else "Host", v)
            try:
                return urlrequest.urlopen(req, timeout=60, context=self.context)
            except urlerror.HTTPError as exc:
                data = exc.read() if method != "HEAD" else b""
                code = re.search(rb"<Code>([^<]+)</Code>", data)
                err = S3Error(exc.code, code.group(1).decode() if code else exc.reason or "Error")
                if exc.code < 500 and exc.code != 429:
                    raise err from None
            except (urlerror.URLError, OSError) as exc:
                err = S3Error(0, "Unreachable", f"{self.endpoint or 'AWS S3'}: {getattr(exc, 'reason', exc)}")
            if attempt == 4:
                raise err
            time.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")

    def head(self, bucket: str, key: str) -> int | None:
        meta = self.head_meta(bucket, key)
        return meta[0] if meta else None

    def head_meta(self, bucket: str, key: str) -> tuple[int, str] | None:
        """(size, ETag) of an object, None when it does not exist."""
        try:
            with self.request("HEAD", bucket, key) as resp:
                return int(resp.headers.get("Content-Length", 0)), resp.headers.get("ETag", "")
        except S3Error as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, bucket: str, prefix: str) -> Iterator[tuple[str, int]]:
        for key, size, _etag in self.list_meta(bucket, prefix):
            yield key, size

    def list_meta(self, bucket: str, prefix: str) -> Iterator[tuple[str, int, str]]:
        """(key, size, ETag) of every object under prefix."""
        token = None
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            with self.request("GET", bucket, "", query) as resp:
                root = ElementTree.fromstring(resp.read())
            fields = {}
            for el in root:
                tag = el.tag.rsplit("}", 1)[-1]
                if tag == "Contents":
                    item = {c.tag.rsplit("}", 1)[-1]: c.text or "" for c in el}
                    yield item["Key"], int(item.get("Size", 0)), item.get("ETag", "")
                else:
                    fields[tag] = el.text or ""
            token = fields.get("NextContinuationToken")
            if fields.get("IsTruncated") != "true" or not token:
                return

    def get(self, bucket: str, key: str, start: int) -> tuple[Any, bool]:
        resp = self.request("GET", bucket, key, headers={"Range": f"bytes={start}-"} if start else None)
        return resp, resp.status == 206

    def put_file(self, bucket: str, key: str, path: str) -> None:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            if size <= self.part_size:
                self.request("PUT", bucket, key, body=fh.read()).close()
                return
            with self.request("POST", bucket, key, {"uploads": ""}) as resp:
                upload_id = re.search(rb"<UploadId>([^<]+)</UploadId>", resp.read()).group(1).decode()  # type: ignore[union-attr,attr-defined]
            try:
                parts = []
                for number in range(1, 10001):
                    chunk = fh.read(self.part_size)
                    if not chunk:
                        break
                    query = {"partNumber": str(number), "uploadId": upload_id}
                    with self.request("PUT", bucket, key, query, body=chunk) as resp:
                        parts.append(
                            f"<Part><PartNumber>{number}</PartNumber><ETag>{resp.headers['ETag']}</ETag></Part>"
                        )
                body = ("<CompleteMultipartUpload>" + "".join(parts) + "</CompleteMultipartUpload>").encode()
                with self.request("POST", bucket, key, {"uploadId": upload_id}, body=body) as resp:
                    answer = resp.read()
                if b"<Error>" in answer:  # S3 may answer 200 and put the error in the body
                    code = re.search(rb"<Code>([^<]+)</Code>", answer)
                    raise S3Error(200, code.group(1).decode() if code else "CompleteMultipartUploadFailed")
            except BaseException:
                with contextlib.suppress(S3Error):
                    self.request("DELETE", bucket, key, {"uploadId": upload_id}).close()
                raise


class BotoS3:
    """The same four operations through boto3 (its own retries, multipart and credential chain)."""

    def __init__(self, boto3: Any, part_size: int) -> None:
        # boto3 >= 1.36 adds CRC checksums many S3-compatible servers refuse; older versions ignore these names.
        os.environ.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
        os.environ.setdefault("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        endpoint, region = s3_settings()
        config = Config(s3={"addressing_style": "path"} if endpoint else {}, retries={"max_attempts": 5})
        self.client = boto3.session.Session().client("s3", endpoint_url=endpoint, region_name=region, config=config)
        self.transfer = TransferConfig(multipart_threshold=part_size, multipart_chunksize=part_size)
        self.name = f"boto3 {boto3.__version__}"

    def call(self, fn: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except Exception as exc:
            response = getattr(exc, "response", None)
            if isinstance(response, dict):
                status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                raise S3Error(status, response.get("Error", {}).get("Code") or str(status)) from None
            if type(exc).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
                raise RunnerError(
                    "E_MISSING_CREDENTIALS",
                    "s3:// data needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the container",
                    "set ACCESS_KEY and SECRET_KEY in the tao-mcp server environment",
                    EXIT_CONFIG,
                ) from None
            raise S3Error(0, "Unreachable", str(exc)) from None

    def head(self, bucket: str, key: str) -> int | None:
        meta = self.head_meta(bucket, key)
        return meta[0] if meta else None

    def head_meta(self, bucket: str, key: str) -> tuple[int, str] | None:
        try:
            answer = self.call(self.client.head_object, Bucket=bucket, Key=key)
        except S3Error as exc:
            if exc.status == 404:
                return None
            raise
        return answer["ContentLength"], answer.get("ETag", "")

    def list(self, bucket: str, prefix: str) -> Iterator[tuple[str, int]]:
        for key, size, _etag in self.list_meta(bucket, prefix):
            yield key, size

    def list_meta(self, bucket: str, prefix: str) -> Iterator[tuple[str, int, str]]:
        kwargs = {"Bucket": bucket, "Prefix": prefix}
        while True:
            page = self.call(self.client.list_objects_v2, **kwargs)
            for obj in page.get("Contents", []):
                yield obj["Key"], obj["Size"], obj.get("ETag", "")
            if not page.get("IsTruncated") or not page.get("NextContinuationToken"):
                return
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def get(self, bucket: str, key: str, start: int) -> tuple[Any, bool]:
        kwargs = {"Bucket": bucket, "Key": key}
        if start:
            kwargs["Range"] = f"bytes={start}-"
        resp = self.call(self.client.get_object, **kwargs)
        return resp["Body"], "ContentRange" in resp

    def put_file(self, bucket: str, key: str, path: str) -> None:
        self.call(self.client.upload_file, Filename=path, Bucket=bucket, Key=key, Config=self.transfer)


if TYPE_CHECKING:
    S3 = MiniS3 | BotoS3
    S3Factory = Callable[[], S3]


def make_s3(part_size: int) -> S3:
    try:
        import boto3  # type: ignore[import-untyped]
    except ImportError:
        return MiniS3(part_size)
    return BotoS3(boto3, part_size)


def s3_failure(uri: str, exc: S3Error, verb: str) -> RunnerError:
    if exc.code == "NoSuchBucket":
        return RunnerError("E_NO_SUCH_BUCKET", f"{verb} {uri}: the bucket does not exist", "check the bucket name")
    if exc.status == 403 or exc.code in ("AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId"):
        return RunnerError(
            "E_ACCESS_DENIED",
            f"{verb} {uri}: access denied ({exc.code})",
            "check ACCESS_KEY/SECRET_KEY and bucket policy",
        )
    if exc.status == 0 or exc.status >= 500:
        return RunnerError(
            "E_BACKEND_UNREACHABLE", f"{verb} {uri}: S3 unreachable ({exc})", "check S3_ENDPOINT_URL", EXIT_IO
        )
    return RunnerError("E_S3_ERROR", f"{verb} {uri}: {exc}", "check the URI")


# ---------------------------------------------------------------- downloads


class Progress:
    def __init__(self, verb: str, files: int, size: int) -> None:
        self.verb, self.files, self.size = verb, files, size
        self.done, self.bytes, self.skipped, self.last = 0, 0, 0, 0.0

    def step(self, size: int, what: str, skipped: bool = False) -> None:
        self.done += 1
        self.bytes += size
        self.skipped += skipped
        now = time.time()
        if self.done == self.files or self.done == 1 or now - self.last >= 2:
            self.last = now
            extra = f", {self.skipped} already present" if self.skipped else ""
            say(
                f"{self.verb} {self.done}/{self.files} files ({human(self.bytes)} of {human(self.size)}{extra}): {what}"
            )


def safe_join(base: str, rel: str, what: str) -> str:
    parts = rel.split("/")
    if rel.startswith("/") or ".." in parts or not rel:
        raise RunnerError("E_UNSAFE_PATH", f"{what}: {rel!r} would escape {base}", "rename the object")
    return os.path.join(base, *[p for p in parts if p not in ("", ".")])


def download(s3: S3, bucket: str, key: str, dest: str, size: int) -> bool:
    """Fetch one object to dest; resume a partial download; skip when dest already has that size."""
    if os.path.isfile(dest) and os.path.getsize(dest) == size:
        return False
    os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
    part = dest + PART_SUFFIX
    last: Exception = S3Error(0, "Unreachable", f"s3://{bucket}/{key} changed size while downloading")
    for attempt in range(5):
        have = os.path.getsize(part) if os.path.isfile(part) else 0
        if have > size:
            have = 0
        try:
            if have < size or size == 0:
                body, partial = s3.get(bucket, key, have)
                with open(part, "ab" if have and partial else "wb") as fh:
                    shutil.copyfileobj(body, fh, MIB)
                body.close()
            if os.path.getsize(part) == size:
                os.replace(part, dest)
                return True
        except S3Error as exc:
            if exc.status and exc.status < 500:
                raise
            last = exc
        except OSError as exc:  # a dropped connection mid-body, or the disk
            last = exc
        time.sleep(0.5 * 2**attempt)
    if isinstance(last, S3Error):
        raise last
    raise RunnerError(
        "E_DOWNLOAD_FAILED", f"s3://{bucket}/{key} -> {dest}: {last}", "check the free space in the container", EXIT_IO
    )


# Where downloaded data may never be written: the root and the system folders of the image (or the host, when a
# SLURM job runs without a container), including /lib32, /lib64 and /libx32.
SYSTEM_DIRS = ("/bin", "/boot", "/dev", "/etc", "/proc", "/run", "/sbin", "/sys", "/usr", "/var/lock", "/var/run")


def system_path(path: str) -> bool:
    """True for / and for anything at or under a system folder (lexically; callers add realpath when they can)."""
    norm = os.path.normpath("/" + path.lstrip("/"))
    if norm == "/" or re.match(r"^/lib(32|64|x32)?(/|$)", norm):
        return True
    return any(norm == d or norm.startswith(d + "/") for d in SYSTEM_DIRS)


def check_destination(path: str) -> None:
    if system_path(path) or system_path(os.path.realpath(path)):
        raise RunnerError(
            "E_BAD_INPUT",
            f"{path} is / or a system folder, which inputs may not be written to",
            "download into a folder of your own, such as /workspace/data",
        )


class Unpacker:
    """Extracts a tar archive member by member into a fresh, empty folder, without trusting tarfile's filters
    (Pythons before 3.8.17/3.9.17/3.10.12/3.11.4 have none): every path is checked against the links already
    extracted (realpath), so no member, link or chain of links reaches outside; device and fifo members are refused;
    setuid/setgid/sticky and group/other write bits are dropped; ownership is never restored."""

    def __init__(self, root: str, label: str) -> None:
        self.root = os.path.realpath(root)
        self.label = label
        self.links: list = []

    def refuse(self, member: tarfile.TarInfo, why: str) -> RunnerError:
        return RunnerError(
            "E_UNSAFE_ARCHIVE",
            f"{self.label} has member {member.name!r} {why}",
            "repack the archive with plain relative paths, no links leaving it and no special files",
        )

    def inside(self, path: str) -> bool:
        real = os.path.realpath(path)
        return real == self.root or real.startswith(self.root + os.sep)

    def parts(self, member: tarfile.TarInfo, name: str) -> list:
        text = name.replace("\\", "/")
        parts = text.split("/")
        if text.startswith("/") or re.match(r"^[A-Za-z]:", text) or ".." in parts:
            raise self.refuse(member, f"with the absolute or '..' path {name!r}")
        return [p for p in parts if p not in ("", ".")]

    def clear(self, member: tarfile.TarInfo, target: str) -> None:
        """A member replaces an earlier file or link of the same name: unlink it, never write through it."""
        if os.path.islink(target) or (os.path.lexists(target) and not os.path.isdir(target)):
            os.unlink(target)
        elif os.path.lexists(target):
            raise self.refuse(member, "replacing a folder with a file or link")

    def add(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        parts = self.parts(m, m.name)
        if not parts:
            return  # the archive's "." entry
        if not (m.isreg() or m.isdir() or m.issym() or m.islnk()):
            raise self.refuse(m, "that is a device, fifo or other special file")
        target = os.path.join(self.root, *parts)
        if not self.inside(os.path.dirname(target)):
            raise self.refuse(m, "under a link that leads outside the extraction folder")
        if m.isdir():
            if os.path.islink(target) and not self.inside(target):
                raise self.refuse(m, "under a link that leads outside the extraction folder")
            if os.path.lexists(target) and not os.path.isdir(target):
                os.unlink(target)
            os.makedirs(target, exist_ok=True)
            os.chmod(target, (m.mode & 0o755) | 0o700)
            return
        os.makedirs(os.path.dirname(target), exist_ok=True)
        self.clear(m, target)
        if m.issym():
            if m.linkname.startswith("/") or not self.inside(os.path.join(os.path.dirname(target), m.linkname)):
                raise self.refuse(m, f"linking to {m.linkname!r} outside the extraction folder")
            os.symlink(m.linkname, target)
            self.links.append((m, target))
        elif m.islnk():
            source = os.path.join(self.root, *self.parts(m, m.linkname))
            if not (self.inside(source) and os.path.isfile(source)):
                raise self.refuse(m, f"hard-linking {m.linkname!r}, which is not a file extracted inside the folder")
            os.link(os.path.realpath(source), target)
        else:
            body = tf.extractfile(m)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
            with os.fdopen(os.open(target, flags, 0o600), "wb") as out:
                if body is not None:
                    shutil.copyfileobj(body, out, MIB)
            os.chmod(target, (m.mode & 0o755) | 0o600)
            with contextlib.suppress(OSError, OverflowError, ValueError):
                os.utime(target, (m.mtime, m.mtime))

    def finish(self) -> None:
        """A later member can change where an earlier link leads: check every link again on the final tree."""
        for m, target in self.links:
            if not self.inside(target):
                raise self.refuse(m, f"linking to {m.linkname!r}, which leads outside the extraction folder")


def place(src: str, dest: str, move: bool = True) -> None:
    """Move the tree src into dest, keeping what dest already holds (files of the same name are replaced).
    move=False only checks for a file/folder conflict, so a refused merge changes nothing."""
    if not os.path.lexists(dest):
        if move:
            os.replace(src, dest)
        return
    if not os.path.isdir(dest):
        raise RunnerError("E_EXTRACT_CONFLICT", f"{dest} exists and is not a folder", "extract into a folder")
    for name in sorted(os.listdir(src)):
        new, old = os.path.join(src, name), os.path.join(dest, name)
        new_dir = os.path.isdir(new) and not os.path.islink(new)
        old_dir = os.path.isdir(old) and not os.path.islink(old)
        if new_dir and old_dir:
            place(new, old, move)
        elif new_dir == old_dir or not os.path.lexists(old):
            if move:
                os.replace(new, old)  # a link in dest is replaced, never followed
        else:
            raise RunnerError(
                "E_EXTRACT_CONFLICT",
                f"{old} is a {'folder' if old_dir else 'file'} and the archive has a {'folder' if new_dir else 'file'}"
                " there",
                "extract into a new folder, or remove the conflicting path",
            )


def extract(archive: str, dest: str) -> None:
    """Unpack into a fresh folder next to dest, then move it into place (dest's other contents stay)."""
    check_destination(dest)
    parent = os.path.dirname(dest) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tao-extract-", dir=parent)
    label = os.path.basename(archive)
    try:
        try:
            unpacker = Unpacker(tmp, label)
            with tarfile.open(archive) as tf:
                for member in tf:
                    unpacker.add(tf, member)
            unpacker.finish()
        except (tarfile.TarError, EOFError, zlib.error) as exc:
            raise RunnerError("E_BAD_ARCHIVE", f"{label}: {exc}", "check the archive") from None
        place(tmp, dest, move=False)
        place(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say(f"extracted {label} into {dest}")


def plan_s3(s3: S3, uri: str, dest: str) -> list:
    """(bucket, key, local file, size, ETag) for a file, a prefix, or an archive (archive saved next to dest)."""
    bucket, key = split_s3(uri)
    try:
        if key and not key.endswith("/"):
            meta = s3.head_meta(bucket, key)
            if meta is not None:
                name = key.rsplit("/", 1)[-1]
                is_archive = name.endswith(ARCHIVES) and not dest.endswith(ARCHIVES)
                local = os.path.join(os.path.dirname(dest), name) if is_archive else dest
                return [(bucket, key, local, meta[0], meta[1])]
        prefix = key if key.endswith("/") or not key else key + "/"
        found = [
            (bucket, k, safe_join(dest, k[len(prefix) :], uri), n, etag)
            for k, n, etag in s3.list_meta(bucket, prefix)
            if not k.endswith("/")
        ]
    except S3Error as exc:
        raise s3_failure(uri, exc, "reading") from None
    if not found:
        raise RunnerError(
            "E_INPUT_NOT_FOUND", f"{uri} is neither an object nor a non-empty prefix", "check the URI with list_path"
        )
    return found


# ---------------------------------------------------------------- input cache (SLURM input_cache: a shared folder)
# Downloaded S3 objects are kept in TAO_INPUT_CACHE under a name derived from their URI and ETag, so the next job
# that reads the same object version links it instead of downloading it again; a changed object (new ETag) is a
# new entry. Entries are published with an atomic rename (readers never see a partial file, and concurrent jobs
# publishing the same entry both succeed) and are read-only: jobs get hard links to them when the folder is on the
# same file system, else copies.


def cache_entry(cache: str, uri: str, etag: str) -> str:
    digest = hashlib.sha256(f"{uri}\n{etag.strip(chr(34))}".encode()).hexdigest()
    return os.path.join(cache, "s3", digest[:2], digest)


def link_or_copy(src: str, dest: str) -> None:
    """dest becomes src's content, atomically (a temporary name beside dest, then rename)."""
    os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
    tmp = f"{dest}.{os.getpid()}{PART_SUFFIX}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


def from_cache(cache: str, uri: str, etag: str, size: int, local: str) -> bool:
    """True when the cache had the object (it is now at local)."""
    entry = cache_entry(cache, uri, etag)
    try:
        if os.path.getsize(entry) != size:
            return False
        if not (os.path.isfile(local) and os.path.samefile(entry, local)):
            link_or_copy(entry, local)
        return True
    except OSError:
        return False


def publish(cache: str, uri: str, etag: str, local: str) -> None:
    """Add a downloaded object to the cache (best effort: a full or read-only cache never fails the job)."""
    entry = cache_entry(cache, uri, etag)
    try:
        os.makedirs(os.path.dirname(entry), exist_ok=True)
        tmp = f"{entry}.{os.getpid()}.{int(time.time() * 1e6)}{PART_SUFFIX}"
        shutil.copyfile(local, tmp)
        os.chmod(tmp, 0o444)
        os.replace(tmp, entry)
    except OSError as exc:
        say(f"WARNING: input cache {cache}: {uri} not cached ({exc.strerror or exc})")
        with contextlib.suppress(OSError, UnboundLocalError):
            os.unlink(tmp)


# ---------------------------------------------------------------- model hubs over HTTP (ngc://, hf://), stdlib only
# NGC: the API key is exchanged for a bearer token (authn), then the model version's files are fetched as one zip
# (the registry redirects to a pre-signed URL). Hugging Face: /resolve/<rev>/<path> per file (LFS files redirect to
# a CDN), folders listed with /api/<models|datasets>/<repo>/tree/<rev>/<path>. Redirects are followed here, and
# the service's token is never sent to another host (a pre-signed URL carries its own signature). Base URLs come
# from TAO_NGC_AUTH_URL, TAO_NGC_API_URL and HF_ENDPOINT (defaults: the real services).

RUNTIME_SECRETS: list = []  # secrets the runner obtains (an NGC bearer token): redacted like the env's
REDIRECTS = (301, 302, 303, 307, 308)


class HubError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code} {message}".strip())
        self.status, self.code, self.message = status, code, message


class _NoRedirect(urlrequest.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # redirects are followed by hub_open, which decides what the next hop may carry


HUB_OPENER = urlrequest.build_opener(_NoRedirect)


def hub_open(url: str, headers: dict, method: str = "GET", follow: bool = True) -> Any:
    """Open url following redirects (follow=False: a redirect is the answer); Authorization is dropped when a
    redirect leaves the original host. Retries connection failures and 5xx; raises HubError for an error answer."""
    origin = urlparse.urlsplit(url)[:2]
    last: Exception = HubError(0, "Unreachable", url)
    for attempt in range(4):
        hop_url, hop_headers, hop_method = url, dict(headers), method
        try:
            for _hop in range(10):
                req = urlrequest.Request(hop_url, method=hop_method, headers=hop_headers)
                try:
                    return HUB_OPENER.open(req, timeout=60)
                except urlerror.HTTPError as exc:
                    location = exc.headers.get("Location") if exc.code in REDIRECTS else None
                    if location and not follow:
                        return exc
                    if not location:
                        raise
                    exc.close()
                    hop_url = urlparse.urljoin(hop_url, location)
                    if urlparse.urlsplit(hop_url)[:2] != origin:
                        hop_headers.pop("Authorization", None)
                    hop_method = "GET" if exc.code == 303 else hop_method
            raise HubError(0, "TooManyRedirects", url)
        except urlerror.HTTPError as exc:
            body = exc.read(2000).decode("utf-8", "replace") if hop_method != "HEAD" else ""
            code = exc.headers.get("X-Error-Code") or ""
            message = exc.headers.get("X-Error-Message") or hub_message(body) or exc.reason or ""
            last = HubError(exc.code, code, str(message))
            if exc.code < 500 and exc.code != 429:
                raise last from None
        except (urlerror.URLError, OSError) as exc:
            last = HubError(0, "Unreachable", f"{getattr(exc, 'reason', exc)}")
        time.sleep(0.5 * 2**attempt)
    raise last


def hub_message(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        found = re.search(r"<Message>([^<]*)</Message>", body)
        return found.group(1) if found else body[:200]
    if isinstance(data, dict):
        status = data.get("requestStatus") or {}
        return str(data.get("error") or status.get("statusDescription") or status.get("statusCode") or "")
    return ""


def hub_download(url: str, headers: dict, dest: str, size: int | None = None) -> bool:
    """Stream url to dest (via a partial file); False when dest already has the expected size."""
    if size is not None and os.path.isfile(dest) and os.path.getsize(dest) == size:
        return False
    os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
    part = dest + PART_SUFFIX
    with hub_open(url, headers) as resp, open(part, "wb") as fh:
        shutil.copyfileobj(resp, fh, MIB)
    if size is not None and os.path.getsize(part) != size:
        raise RunnerError("E_DOWNLOAD_FAILED", f"{url.split('?')[0]}: short download", "retry the job", EXIT_IO)
    os.replace(part, dest)
    return True


def hub_failure(uri: str, exc: HubError, service: str, fix_auth: str) -> RunnerError:
    what = f"{uri}: {service} answered {exc}"
    if exc.status in (401, 403):
        return RunnerError("E_ACCESS_DENIED", what, fix_auth)
    if exc.status == 404:
        return RunnerError("E_INPUT_NOT_FOUND", what, "check the name, the version or revision, and the path")
    return RunnerError("E_BACKEND_UNREACHABLE", what, f"retry the job; check that {service} is reachable", EXIT_IO)


def ngc_token(key: str, org: str, team: str | None) -> str:
    base = (os.environ.get("TAO_NGC_AUTH_URL") or "https://authn.nvidia.com").rstrip("/")
    scopes = [f"group/ngc:{org}"] + ([f"group/ngc:{org}/{team}"] if team else [])
    query = urlparse.urlencode([("service", "ngc"), *(("scope", s) for s in scopes)])
    basic = base64.b64encode(f"$oauthtoken:{key}".encode()).decode()
    headers = {"Authorization": f"Basic {basic}", "Accept": "application/json"}
    with hub_open(f"{base}/token?{query}", headers) as resp:
        token = json.loads(resp.read().decode()).get("token")
    if not token:
        raise HubError(200, "NoToken", "the token exchange answered without a token")
    RUNTIME_SECRETS.append(token)
    return str(token)


def ngc_fetch(uri: str, dest: str) -> None:
    """ngc://org[/team]/model:version -> the version's files in dest (one zip, extracted like an archive)."""
    key = os.environ.get("NGC_CLI_API_KEY") or os.environ.get("NGC_KEY")
    if not key:
        raise RunnerError(
            "E_MISSING_CREDENTIALS",
            f"{uri} needs NGC_KEY in the container",
            "set NGC_KEY in the tao-mcp server environment",
            EXIT_CONFIG,
        )
    path, _, version = uri[len("ngc://") :].rpartition(":")
    parts = path.split("/")
    org, team, model = (parts[0], None, parts[1]) if len(parts) == 2 else (parts[0], parts[1], parts[2])
    api = (os.environ.get("TAO_NGC_API_URL") or "https://api.ngc.nvidia.com").rstrip("/")
    url = f"{api}/v2/org/{org}" + (f"/team/{team}" if team else "") + f"/models/{model}/versions/{version}/zip"
    fix_auth = "check NGC_KEY: it must be a valid NGC API key with access to " + (f"{org}/{team}" if team else org)
    zip_path = os.path.join(os.path.dirname(dest), f".{os.path.basename(dest)}.ngc.zip")
    say(f"download {uri} from NGC")
    try:
        for attempt in (1, 2):  # a token can expire between the exchange and the download: exchange once more
            headers = {"Authorization": f"Bearer {ngc_token(key, org, team)}", "Accept": "application/octet-stream"}
            try:
                hub_download(url, headers, zip_path)
                break
            except HubError as exc:
                if exc.status != 401 or attempt == 2:
                    raise
        unzip(zip_path, dest, uri)
    except HubError as exc:
        raise hub_failure(uri, exc, "NGC", fix_auth) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(zip_path)


def unzip(archive: str, dest: str, label: str) -> None:
    """Extract a zip into a fresh folder with the tar rules (no absolute or '..' names, no links), then merge."""
    import zipfile

    check_destination(dest)
    tmp = tempfile.mkdtemp(prefix=".tao-extract-", dir=os.path.dirname(dest) or ".")
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    name = info.filename.replace("\\", "/")
                    parts = [p for p in name.split("/") if p not in ("", ".")]
                    mode = info.external_attr >> 16
                    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in parts:
                        raise RunnerError("E_UNSAFE_ARCHIVE", f"{label} has member {name!r}", "repack the model")
                    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # links, devices, fifos
                        raise RunnerError("E_UNSAFE_ARCHIVE", f"{label} has the link or special file {name!r}", "")
                    target = os.path.join(tmp, *parts) if parts else tmp
                    if info.is_dir():
                        os.makedirs(target, exist_ok=True)
                        continue
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    with zf.open(info) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out, MIB)
        except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
            raise RunnerError("E_BAD_ARCHIVE", f"{label}: {exc}", "retry the job") from None
        place(tmp, dest, move=False)
        place(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def parse_hf(uri: str) -> tuple[str, str, str, str]:
    """(models|datasets, org/name, revision, path in the repo) of hf://[datasets/]org/name[@rev][/path],
    hf_model://org/name[@rev] or hf_dataset://org/name[@rev]."""
    scheme, rest = uri.split("://", 1)
    kind = "datasets" if scheme == "hf_dataset" else "models"
    if scheme == "hf" and rest.startswith(("datasets/", "models/")):
        kind, rest = rest.split("/", 1)[0], rest.split("/", 1)[1]
    parts = rest.strip("/").split("/")
    name, _, revision = parts[1].partition("@")
    return kind, f"{parts[0]}/{name}", revision or "main", "/".join(parts[2:])


def hf_fetch(uri: str, dest: str) -> None:
    kind, repo, revision, path = parse_hf(uri)
    base = (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    token = os.environ.get("HF_TOKEN")
    headers = {"User-Agent": "tao-runner"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    prefix = "/datasets" if kind == "datasets" else ""
    rev = urlparse.quote(revision, safe="")

    def resolve(p: str) -> str:
        return f"{base}{prefix}/{repo}/resolve/{rev}/{urlparse.quote(p)}"

    fix_auth = "set HF_TOKEN in the tao-mcp server environment to a token with access to " + repo
    try:
        files: list = []
        if path:
            try:
                with hub_open(resolve(path), headers, "HEAD", follow=False) as resp:  # a signed URL is GET-only
                    length = resp.headers.get("X-Linked-Size") or resp.headers.get("Content-Length")
                files = [(path, dest, int(length) if length and length.isdigit() else None)]
            except HubError as exc:
                if exc.code != "EntryNotFound":
                    raise
        if not files:  # a folder (or the whole repo): list it
            url = f"{base}/api/{kind}/{repo}/tree/{rev}" + (f"/{urlparse.quote(path)}" if path else "")
            url += "?recursive=true"
            while url:
                with hub_open(url, headers) as resp:
                    entries = json.loads(resp.read().decode())
                    found = re.search(r'<([^>]+)>;\s*rel="next"', resp.headers.get("Link") or "")
                for entry in entries:
                    if entry.get("type") == "file":
                        rel = entry["path"][len(path) :].lstrip("/") if path else entry["path"]
                        files.append((entry["path"], safe_join(dest, rel, uri), entry.get("size")))
                url = found.group(1) if found else ""
        if not files:
            raise HubError(404, "EntryNotFound", f"{path or repo} holds no files")
        progress = Progress("download", len(files), sum(size or 0 for *_, size in files))
        for repo_path, local, size in files:
            got = hub_download(resolve(repo_path), headers, local, size)
            progress.step(size or os.path.getsize(local), f"{uri.split('://')[0]}://{repo}/{repo_path}", not got)
    except HubError as exc:
        raise hub_failure(uri, exc, "Hugging Face", fix_auth) from None


def fetch_hub(uri: str, dest: str) -> str:
    """ngc:// and hf:// (hf_model://, hf_dataset://) inputs. Returns the local path the spec should name."""
    if uri.startswith("ngc://"):
        if os.path.isdir(dest) and os.listdir(dest):
            say(f"{uri}: already present in {dest}")
        else:
            ngc_fetch(uri, dest)
    else:  # files already present with their size are skipped, so a stopped download resumes
        say(f"download {uri} from Hugging Face")
        hf_fetch(uri, dest)
    files = [f for f in sorted(os.listdir(dest)) if not f.startswith(".")] if uri.startswith("ngc://") else []
    if len(files) == 1 and os.path.isfile(os.path.join(dest, files[0])):
        return os.path.join(dest, files[0])  # one model file: point the spec at the file
    return dest


def fetch_all(fetches: list, s3_factory: S3Factory) -> dict:
    """Download every input; returns {declared destination: final local path} for paths that changed."""
    changed: dict = {}
    plans = []
    cache = os.environ.get("TAO_INPUT_CACHE") or ""
    for _uri, dest, _at in fetches:
        check_destination(dest)
    for uri, dest, _at in fetches:
        if uri.startswith("s3://"):
            plans.append((uri, dest, plan_s3(s3_factory(), uri, dest)))
    total = sum(len(p[2]) for p in plans)
    progress = Progress("download", total, sum(f[3] for p in plans for f in p[2]))
    if cache:
        say(f"input cache {cache}")
    for _uri, dest, files in plans:
        for bucket, key, local, size, etag in files:
            uri = f"s3://{bucket}/{key}"
            if cache and etag and from_cache(cache, uri, etag, size, local):
                progress.step(size, f"{uri} (from the input cache)", skipped=True)
                continue
            try:
                got = download(s3_factory(), bucket, key, local, size)
            except S3Error as exc:
                raise s3_failure(uri, exc, "downloading") from None
            if cache and etag:
                publish(cache, uri, etag, local)
            progress.step(size, uri, skipped=not got)
        if len(files) == 1 and files[0][2] != dest:
            extract(files[0][2], dest)  # every time: a stopped earlier attempt may have left it half done
    for uri, dest, _at in fetches:
        if not uri.startswith("s3://"):
            final = fetch_hub(uri, dest)
            if final != dest:
                changed[dest] = final
    return changed


# ---------------------------------------------------------------- uploads


def excluded(rel: str, is_dir: bool, patterns: list) -> bool:
    """gitignore-like: 'inputs/' excludes a directory subtree, '*.pth' any file, 'logs/*.txt' is anchored."""
    name = rel.rsplit("/", 1)[-1]
    for pattern in patterns:
        dir_only = pattern.endswith("/")
        anchored = pattern.startswith("/")
        pattern = pattern.strip("/")
        if dir_only and not is_dir:
            continue
        if fnmatch(rel, pattern) or (not anchored and "/" not in pattern and fnmatch(name, pattern)):
            return True
    return False


def collect(src: str, dest: str, patterns: list, skip: list) -> list:
    """(local file, destination) pairs for a file or a directory tree, minus excluded paths."""
    if os.path.isfile(src):
        return [(src, dest.rstrip("/") + "/" + os.path.basename(src) if dest.endswith("/") else dest)]
    pairs = []
    skip = [os.path.abspath(s) for s in skip]
    for root, dirs, files in os.walk(src):
        rel_root = os.path.relpath(root, src).replace(os.sep, "/")
        rel_root = "" if rel_root == "." else rel_root + "/"
        dirs[:] = sorted(
            d
            for d in dirs
            if os.path.abspath(os.path.join(root, d)) not in skip and not excluded(rel_root + d, True, patterns)
        )
        for f in sorted(files):
            path = os.path.join(root, f)
            if f.endswith(PART_SUFFIX) or excluded(rel_root + f, False, patterns) or not os.path.isfile(path):
                continue
            pairs.append((path, dest.rstrip("/") + "/" + rel_root + f))
    return pairs


def deliver(pairs: list, s3_factory: S3Factory) -> list:
    """Upload to s3:// or copy to a local path. Returns the error lines (one per failed file, at most 5 kept)."""
    errors: list = []
    progress = Progress("upload", len(pairs), sum(os.path.getsize(p) for p, _ in pairs))
    for path, dest in pairs:
        size = os.path.getsize(path)
        try:
            if dest.startswith("s3://"):
                bucket, key = split_s3(dest)
                s3_factory().put_file(bucket, key, path)
            elif os.path.abspath(dest) != os.path.abspath(path):
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                shutil.copy2(path, dest)
        except S3Error as exc:
            errors.append(str(s3_failure(dest, exc, "uploading to")))
        except (OSError, RunnerError) as exc:
            errors.append(f"E_UPLOAD_FAILED: {dest}: {exc}")
        progress.step(size, dest)
    return errors


def align_gpu_count(job: dict, plan: dict) -> None:
    # the platform may give other GPUs per node than gpu_count (SLURM split, Docker gpus=all)
    key, gpus = job.get("gpus_key"), os.environ.get("NUM_GPU_PER_NODE", "")
    if not key or not gpus.isdigit():
        return
    if job["mode"] == "config":
        if get_path(plan["spec"], parse_path(key)) != int(gpus):
            set_path(plan["spec"], parse_path(key), int(gpus), key)
            say(f"{key} = {gpus} (NUM_GPU_PER_NODE)")
    elif plan["args"].get(key) != int(gpus):
        plan["args"][key] = int(gpus)
        say(f"{key} = {gpus} (NUM_GPU_PER_NODE)")


# ---------------------------------------------------------------- auto-resume (docs/entrypoint.md)

CHECKPOINT_SUFFIXES = (".pth", ".ckpt", ".tlt")
EPOCH_NUMBER = re.compile(r"epoch[=_-]?(\d+)", re.IGNORECASE)  # model_epoch_004.pth, epoch=4-step=80.ckpt


def checkpoint_epoch(name: str) -> int:
    found = EPOCH_NUMBER.findall(name.rsplit("/", 1)[-1])
    return int(found[-1]) if found else -1


def local_checkpoints(root: str, skip: list) -> list:
    """(epoch, mtime, path, size) of the checkpoints under root; downloaded inputs (skip) are not checkpoints."""
    found: list = []
    skipped = {os.path.abspath(path) for path in skip}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if os.path.abspath(os.path.join(dirpath, d)) not in skipped]
        for name in filenames:
            if name.endswith(CHECKPOINT_SUFFIXES) and not name.endswith(PART_SUFFIX):
                path = os.path.join(dirpath, name)
                with contextlib.suppress(OSError):
                    found.append((checkpoint_epoch(name), os.path.getmtime(path), path, os.path.getsize(path)))
    return found


def remote_checkpoints(s3: S3, uri: str) -> list:
    bucket, prefix = split_s3(uri.rstrip("/") + "/")
    return [
        (checkpoint_epoch(key), 0.0, f"s3://{bucket}/{key}", size)
        for key, size in s3.list(bucket, prefix)
        if key.endswith(CHECKPOINT_SUFFIXES) and "/inputs/" not in key[len(prefix) - 1 :]
    ]


def latest_checkpoint(sources: list, skip: list, s3_factory: S3Factory) -> tuple | None:
    found: list = []
    for source in sources:
        try:
            found += (
                remote_checkpoints(s3_factory(), source)
                if source.startswith("s3://")
                else local_checkpoints(local_path(source), skip)
            )
        except (S3Error, RunnerError) as exc:
            say(f"WARNING: cannot list checkpoints in {source}: {exc}")
    return max(found, key=lambda c: (c[0], c[1])) if found else None


def resume_from_checkpoint(job: dict, plan: dict, results_dir: str, remote: str | None, s3_factory: S3Factory) -> None:
    """The highest-epoch checkpoint of an earlier run of this job (or TAO_RESUME_FROM) goes to the resume key."""
    earlier = os.environ.get("TAO_RESUME_FROM", "")
    key = job.get("resume_key")
    if not key and not earlier:
        return
    sources = [results_dir, *([remote] if remote else []), *([earlier] if earlier else [])]
    best = latest_checkpoint(sources, plan["keep_out"], s3_factory)
    if best is None:
        if earlier:
            kinds = ", ".join("*" + suffix for suffix in CHECKPOINT_SUFFIXES)
            say(f"WARNING: no checkpoint ({kinds}) in {earlier}: starting anew")
        return
    epoch, _mtime, where, size = best
    local = where
    if where.startswith("s3://"):
        bucket, object_key = split_s3(where)
        local = os.path.join(plan["keep_out"][0], "resume", object_key.rsplit("/", 1)[-1])
        download(s3_factory(), bucket, object_key, local, size)
    say(f"resuming from {where}" + (f" (epoch {epoch})" if epoch >= 0 else "") + (f" as {key}" if key else ""))
    os.environ["TAO_RESUME_CHECKPOINT"] = local
    if key and job["mode"] == "config":
        set_path(plan["spec"], parse_path(key), local, key)
    elif key and job["mode"] == "args":
        plan["args"][key] = local


# ---------------------------------------------------------------- progress: status.json records as log lines
# (untrusted job output: docs/entrypoint.md says what passes and why a record cannot pass for a runner line)

PROGRESS_TAG = "[tao-progress]"
PROGRESS_LINE_CHARS = 3800  # < PIPE_BUF: one write(2)
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def progress_text(value: object, limit: int = 200) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    text = CONTROL.sub(" ", str(value)).replace(TAG, "(tao-runner)").replace(PROGRESS_TAG, "(tao-progress)")
    return text.strip()[:limit] or None


def progress_number(value: object) -> float | None:
    with contextlib.suppress(TypeError, ValueError):
        number = float(value) if not isinstance(value, bool) else None  # type: ignore[arg-type]
        if number is not None and abs(number) < 1e300:
            return number
    return None


def progress_record(raw: dict, source: str) -> dict:
    record: dict = {"src": source}
    for key in ("status", "message", "eta", "time_per_epoch"):
        text = progress_text(raw.get(key))
        if text:
            record[key] = text
    for key in ("epoch", "max_epoch"):
        number = progress_number(raw.get(key))
        if number is not None and number >= 0:
            record[key] = int(number)
    for key in ("kpi", "graphical"):
        values = raw.get(key)
        values = values if isinstance(values, dict) else {}
        pairs = [(progress_text(k, 64), progress_number(v)) for k, v in values.items()]
        metrics = dict([(k, v) for k, v in pairs if k and v is not None][:32])
        if metrics:
            record[key] = metrics
    return record


def progress_line(record: dict) -> str:
    for drop in ((), ("graphical",), ("graphical", "kpi", "message")):
        line = json.dumps({k: v for k, v in record.items() if k not in drop}, sort_keys=True, separators=(",", ":"))
        if len(line) <= PROGRESS_LINE_CHARS:
            break
    return f"{PROGRESS_TAG} {redact(line)}\n"


class StatusFollower:
    def __init__(self, root: str, interval: float) -> None:
        self.root, self.interval, self.offsets = root, interval, {}  # type: ignore[var-annotated]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            with contextlib.suppress(Exception):
                self.scan()

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        if not self.thread.is_alive():
            self.scan()

    def scan(self) -> None:
        found = 0
        for folder, dirs, names in os.walk(self.root):
            dirs.sort()
            if folder[len(self.root) :].count(os.sep) >= 3:
                dirs[:] = []
            if "status.json" in names and found < 32:
                found += 1
                source = os.path.relpath(folder, self.root)
                for raw in self.new_records(os.path.join(folder, "status.json")):
                    emit_progress(progress_record(raw, "" if source == "." else source))

    def new_records(self, path: str) -> list:
        offset = self.offsets.get(path, 0)
        try:
            with open(path, "rb") as fh:
                if os.fstat(fh.fileno()).st_size < offset:
                    offset = 0  # rewritten from the start
                fh.seek(offset)
                chunk = fh.read(MIB)
        except OSError:
            return []
        end = chunk.rfind(b"\n") + 1
        if not end and len(chunk) >= MIB:
            end = len(chunk)  # one endless line: skip it
        self.offsets[path] = offset + end
        records = []
        for line in chunk[:end].split(b"\n"):
            with contextlib.suppress(ValueError):
                raw = json.loads(line.decode("utf-8", "replace")) if 0 < len(line) <= 65536 else None
                if isinstance(raw, dict):
                    records.append(raw)
        return records


def emit_progress(record: dict) -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
        os.write(sys.stdout.fileno(), progress_line(record).encode())


def follow_status(results_dir: str) -> StatusFollower | None:
    """TAO_RUNNER_STATUS_POLL_S: seconds between scans (default 5; 0 = off)."""
    interval = progress_number(os.environ.get("TAO_RUNNER_STATUS_POLL_S") or 5)
    if not interval or interval <= 0:
        return None
    follower = StatusFollower(results_dir, max(interval, 0.2))
    follower.thread.start()
    return follower


# ---------------------------------------------------------------- results location and the main program


def results_location(job_id: str) -> tuple[str, str | None]:
    """(local results dir, remote URI or None): explicit URI, else TAO_RESULTS_ROOT, else the S3 bucket, else local."""
    explicit = os.environ.get("TAO_RESULTS_URI", "")
    root = os.environ.get("TAO_RESULTS_ROOT", "")
    bucket_uri = os.environ.get("TAO_RESULTS_S3_URI", "")
    staging = os.path.join(os.environ.get("TAO_RUNNER_LOCAL_ROOT") or "/results", job_id)
    if explicit and not explicit.startswith("s3://"):
        return local_path(explicit), None
    if explicit:
        return staging, explicit.rstrip("/")
    if root:
        return os.path.join(root, job_id), None
    if bucket_uri:
        return staging, bucket_uri.rstrip("/")
    return staging, None


class Stopped(BaseException):
    """Raised by the signal handler during the downloads: skip the command, go to the uploads. A BaseException,
    so no `except Exception` on the way swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


# TERM/INT/HUP: the platform or a user stops the job. USR1: "finish uploads now", sent ahead of a time limit
# (SLURM --signal=B:USR1@margin): the command is stopped like on TERM and the outputs are uploaded.
STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1")


class State:
    phase = "start"
    pgid = 0  # the command's process group (its leader's pid) while it may have members
    starting = False  # between "may start the command" and State.pgid being set: signals are queued, not lost
    pending: tuple = ()  # signals queued while starting, forwarded once the command's group exists
    stop_signal = 0  # the first stop signal received; 0 = none
    stop_phase = ""  # the phase it came in
    stop_time = 0.0
    interrupts = 0


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pgid, signum)


def forwarded(signum: int) -> int:
    return signal.SIGTERM if signum == getattr(signal, "SIGUSR1", -1) else signum


def on_signal(signum: int, _frame: object) -> None:
    """Never prints (a handler may interrupt a print); the main flow reports what happened."""
    if not State.stop_signal:
        State.stop_signal, State.stop_time, State.stop_phase = signum, time.monotonic(), State.phase
    State.interrupts += signum == signal.SIGINT
    if State.phase == "download":
        raise Stopped(signum)
    if State.phase == "run":
        if State.starting:
            State.pending += (signum,)
        elif State.pgid:
            signal_group(State.pgid, forwarded(signum))
        return
    if State.phase == "upload" and State.interrupts >= 2:
        raise Stopped(signum)  # Ctrl-C twice: the user does not want to wait for the uploads
    # "start": checked before the downloads begin. "upload": keep uploading while the platform's grace lasts.


def stop_grace() -> float:
    try:
        return max(0.0, float(os.environ.get("TAO_RUNNER_STOP_GRACE") or 10))
    except ValueError:
        return 10.0


def adopt_orphans() -> None:
    """Become the subreaper of the command's processes, so that its orphaned background jobs are ours to reap
    (a zombie keeps its process group alive). Linux only; without it the platform's init reaps them."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def group_alive(pgid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-pgid, os.WNOHANG)[0]:
            pass  # reap the group's zombies we adopted
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def wait_group_gone(pgid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while group_alive(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def end_group(pgid: int) -> None:
    """After the command exited: stop what it left running in its process group (TERM, then KILL)."""
    if not group_alive(pgid):
        return
    say("stopping the processes the command left running")
    signal_group(pgid, signal.SIGTERM)
    if not wait_group_gone(pgid, stop_grace()):
        signal_group(pgid, signal.SIGKILL)
        if not wait_group_gone(pgid, 5):
            say(f"WARNING: process group {pgid} is still alive after SIGKILL")


def ignore_stop_request() -> None:
    """Before exec: USR1 (a SLURM step signal reaches every process) is for the runner; the command gets TERM."""
    if hasattr(signal, "SIGUSR1"):
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)


def run_command(command: str, env: dict) -> int | None:
    """Run the command in its own session; None when a stop signal came before it could start.

    Not pthread_sigmask: the command would inherit the blocked mask. Python runs handlers in the main thread
    between bytecodes, so a signal during the start sees State.starting and is queued, then forwarded below."""
    shell = shutil.which("bash") or ("/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh")
    State.starting = True
    try:
        if State.stop_signal:
            return None
        child = subprocess.Popen(
            [shell, "-c", command], env=env, start_new_session=True, preexec_fn=ignore_stop_request
        )
        State.pgid = child.pid
    finally:
        State.starting = False
    for signum in State.pending:
        signal_group(child.pid, forwarded(signum))
    State.pending = ()
    killed = False
    while True:
        try:
            rc = child.wait(timeout=1)
            break
        except subprocess.TimeoutExpired:
            overdue = State.stop_signal and time.monotonic() - State.stop_time > stop_grace()
            if overdue and not killed:
                say(f"the command did not stop within {stop_grace():.0f}s of {signal_name(State.stop_signal)}: SIGKILL")
                signal_group(child.pid, signal.SIGKILL)
                killed = True
    end_group(child.pid)
    State.pgid = 0
    return 128 - rc if rc < 0 else rc


def decode_job(text: str) -> dict:
    return json.loads(zlib.decompress(base64.b64decode(text)).decode())


def main(argv: list) -> int:
    blob = argv[1] if len(argv) > 1 else os.environ.get("TAO_RUNNER_JOB", "")
    try:
        job = decode_job(blob)
    except Exception:
        say("error E_BAD_JOB: the job description is missing or unreadable. Fix: rebuild the command with tao-mcp")
        say(f"exit {EXIT_SOFTWARE}")
        return EXIT_SOFTWARE
    for name in STOP_SIGNALS:
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), on_signal)
    adopt_orphans()
    rc = EXIT_SOFTWARE
    try:
        rc = run_job(job)
    except RunnerError as exc:
        say(f"error {exc}")
        rc = exc.exit_code
    except Stopped as exc:
        rc = 128 + exc.signum
        say(f"stopped by {signal_name(exc.signum)} during {State.phase}")
    except Exception as exc:  # a bug: say so in one line, keep the traceback on stderr
        import traceback

        say(f"error E_RUNNER_FAILED: {type(exc).__name__}: {exc}")
        sys.stderr.write(redact(traceback.format_exc()))
    finally:
        say(f"exit {rc}")
    return rc


def run_job(job: dict) -> int:
    job_id, mode = job["job_id"], job["mode"]
    part_size = max(5, int(os.environ.get("TAO_RUNNER_PART_MB") or 8)) * MIB
    clients: list = []

    def s3_factory() -> S3:
        if not clients:
            clients.append(make_s3(part_size))
            say(f"s3 client: {clients[0].name}")
        return clients[0]

    say(f"start job {job_id} mode {mode} python {sys.version.split()[0]}")
    results_dir, remote = results_location(job_id)
    if not (os.environ.get("TAO_RESULTS_URI") or os.environ.get("TAO_RESULTS_ROOT") or remote):
        say(
            f"WARNING: no TAO_RESULTS_ROOT and no S3 results location: results stay in the container at {results_dir} "
            "and are lost when it is removed"
        )
    try:
        os.makedirs(results_dir, exist_ok=True)
    except OSError:
        if not remote:
            raise RunnerError(
                "E_RESULTS_DIR", f"cannot create {results_dir}", "check the results mount", EXIT_IO
            ) from None
        results_dir = os.path.join(tempfile.gettempdir(), "tao-results", job_id)
        os.makedirs(results_dir, exist_ok=True)
    say(f"results {remote or results_dir}" + (f" (staged in {results_dir})" if remote else ""))
    inputs_dir = os.environ.get("TAO_INPUTS_DIR") or os.path.join(results_dir, "inputs")
    plan = prepare(job, results_dir, inputs_dir)

    rc = None
    try:
        State.phase = "download"
        if State.stop_signal:  # came while starting up
            raise Stopped(State.stop_signal)
        align_gpu_count(job, plan)
        resume_from_checkpoint(job, plan, results_dir, remote, s3_factory)
        prepare_inputs(job, plan, s3_factory)
        State.phase = "run"
        say("phase running command")
        env = dict(os.environ, TAO_JOB_ID=job_id, TAO_RESULTS_DIR=results_dir)
        if plan["config_path"]:
            env["TAO_CONFIG_PATH"] = plan["config_path"]
        started = time.time()
        follower = follow_status(results_dir)
        try:
            rc = run_command(final_command(job, plan), env)
        finally:
            if follower:
                follower.finish()
        if rc is not None:
            say(f"command exited with {rc} after {time.time() - started:.1f}s")
    except Stopped:
        pass
    if State.stop_signal:
        what = "the command" if rc is not None else f"{State.phase}: the command did not run"
        say(f"stopped by {signal_name(State.stop_signal)} during {what}")
    if rc is None:
        rc = 128 + State.stop_signal

    State.phase = "upload"
    try:
        rc = upload(job, plan, results_dir, remote, rc, s3_factory)
    except Exception as exc:  # never let a surprise here hide the command's exit code
        say(f"error E_UPLOAD_FAILED: {type(exc).__name__}: {exc}")
        rc = rc or EXIT_IO
    if State.stop_phase == "upload":
        say(f"{signal_name(State.stop_signal)} came during the uploads: they were finished first")
    State.phase = "done"
    return rc


def prepare_inputs(job: dict, plan: dict, s3_factory: S3Factory) -> None:
    """Download the inputs, point the spec/args at them, create the output folders, write the spec file."""
    mode = job["mode"]
    for folder in plan.get("folders") or ():
        os.makedirs(folder, exist_ok=True)
    if plan["fetches"]:
        say("phase downloading inputs")
        changed = fetch_all(plan["fetches"], s3_factory)
        for _uri, dest, at in plan["fetches"]:
            if dest in changed and at:
                if mode == "config":
                    set_path(plan["spec"], parse_path(at), changed[dest], at)
                else:
                    plan["args"][at] = changed[dest]
    for local, _uri, kind in plan["outputs"]:
        if kind == "folder":
            os.makedirs(local, exist_ok=True)  # tools expect their output folders to exist
        elif kind != "given":
            os.makedirs(os.path.dirname(local), exist_ok=True)
    if mode == "config":
        with open(plan["config_path"], "w", encoding="utf-8") as fh:
            fh.write(render_spec(plan["spec"], plan["config_path"].rsplit(".", 1)[-1]))
        say(f"spec written to {plan['config_path']}")


def upload(job: dict, plan: dict, results_dir: str, remote: str | None, rc: int, s3_factory: S3Factory) -> int:
    excludes = list(job.get("excludes") or [])
    pairs: list = []
    if remote:
        pairs += collect(results_dir, remote, excludes, plan["keep_out"])
    for local, uri, _kind in plan["outputs"]:
        if not os.path.exists(local):
            say(f"WARNING: output {local} does not exist: nothing to upload from it")
            continue
        inside = (os.path.abspath(local) + os.sep).startswith(os.path.abspath(results_dir) + os.sep)
        if uri:
            pairs += collect(local, uri, excludes, [])
        elif not inside:
            dest = (remote or results_dir).rstrip("/") + "/" + os.path.basename(local.rstrip("/"))
            pairs += collect(local, dest, excludes, [])
    if pairs:
        say("phase uploading outputs" + (" (the command failed: uploading what it left)" if rc else ""))
        errors = deliver(pairs, s3_factory)
        for line in errors[:5]:
            say(f"error {line}")
        if errors:
            say(f"upload failed for {len(errors)} of {len(pairs)} files")
            rc = rc or EXIT_IO
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv))
