"""Where a predictor's model comes from: its model URI, fetched by `FraudModel.load()`.

A model URI names the directory of a serving artifact (`feature_schema.json` + `model.pt`), or a
directory above it (an MLflow model's root: the artifact is found below it):

* `s3://bucket/prefix`: any S3-compatible store. The objects under `prefix/` are downloaded into
  a cache folder named by the URI and the listing (keys, sizes, ETags), so the gunicorn workers
  and the gRPC server of one container download it once, and changed objects are downloaded
  again. The client is the few lines below (ListObjectsV2 + GetObject, AWS Signature V4, stdlib
  only): seldon-core 1.17.1's `seldon_core.storage.Storage` handles `file://` only, and botocore
  would add ~35 MB to the image for two calls.
* `file:///dir` or a plain path: read in place (the local runtime, a mounted volume).

Endpoint: the `s3_endpoint_url` graph parameter, else `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`
(botocore's names), `S3_ENDPOINT` (+ `S3_USE_HTTPS` / `USE_SSL`, the names Seldon's and KServe's
storage initializers read), else AWS (`https://s3.<region>.amazonaws.com`). Region: the
`s3_region` parameter, `AWS_REGION`, `AWS_DEFAULT_REGION`, else us-east-1. Credentials:
`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` (a Secret in the pod's env);
none set means anonymous requests (a public bucket). IRSA web-identity tokens and instance
profiles are not read. TLS trusts `AWS_CA_BUNDLE` when set, else certifi's bundle.

Every failure is a `ModelLoadError` naming the URI and what was wrong; unreachable endpoints
and 5xx answers are retried a few times first.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import shutil
import ssl
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import quote, urlparse

from seldon.artifact import MODEL_FILE, SCHEMA_FILE, FeatureSchema, ServingModel, load_schema

S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
RETRIES = (0.5, 1.0, 2.0, 4.0)  # back-off before each retry of an unreachable endpoint / a 5xx
TIMEOUT_S = 30.0


class ModelLoadError(Exception):
    """The model at `uri` could not be loaded; `problem` says why (for logs and readiness)."""

    def __init__(self, uri: str, problem: str):
        super().__init__(f"model {uri or '(no URI)'}: {problem}")
        self.uri, self.problem = uri, problem


def default_cache_dir() -> Path:
    return Path(tempfile.gettempdir()) / "driftline-models"


def fetch(
    uri: str,
    cache_dir: str | Path | None = None,
    s3_endpoint_url: str = "",
    s3_region: str = "",
    env: Mapping[str, str] | None = None,
) -> Path:
    """A local directory holding the artifact's `feature_schema.json` (and, if sound, `model.pt`)."""
    if not uri:
        raise ModelLoadError(uri, "no model URI: set the graph parameter model_uri (s3://…, file://… or a path)")
    scheme = urlparse(uri).scheme
    if scheme in ("", "file") or len(scheme) == 1:  # one letter: a Windows drive
        root = Path(uri.removeprefix("file://"))
        if not root.exists():
            raise ModelLoadError(uri, f"{root} does not exist")
        if not root.is_dir():
            raise ModelLoadError(uri, f"{root} is not a directory (expected {SCHEMA_FILE} + {MODEL_FILE} in one)")
    elif scheme == "s3":
        store = S3Client.from_env(s3_endpoint_url, s3_region, os.environ if env is None else env)
        root = store.download(uri, Path(cache_dir) if cache_dir else default_cache_dir())
    else:
        raise ModelLoadError(uri, f"unsupported scheme {scheme}:// (use s3://, file:// or a local path)")
    return artifact_root(uri, root)


def artifact_root(uri: str, root: Path) -> Path:
    """`root` if it holds the schema, else the shallowest folder below it that does."""
    if (root / SCHEMA_FILE).is_file():
        return root
    found = sorted(root.rglob(SCHEMA_FILE), key=lambda p: (len(p.parts), str(p)))
    if not found:
        raise ModelLoadError(uri, f"no {SCHEMA_FILE} in it: not a serving artifact ({SCHEMA_FILE} + {MODEL_FILE})")
    return found[0].parent


def read_schema(uri: str, **store) -> FeatureSchema:
    """The artifact's feature schema (fetching the artifact if need be)."""
    return _schema(uri, fetch(uri, **store))


def _schema(uri: str, directory: Path) -> FeatureSchema:
    try:
        return load_schema(directory)
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise ModelLoadError(uri, f"{SCHEMA_FILE} is not a valid feature schema: {_first_line(err)}") from err
    except OSError as err:
        raise ModelLoadError(uri, f"cannot read {SCHEMA_FILE}: {err}") from err


def open_model(uri: str, **store) -> ServingModel:
    """Fetch, load and check the artifact: the network must score the schema's inputs."""
    directory = fetch(uri, **store)
    _schema(uri, directory)
    if not (directory / MODEL_FILE).is_file():
        raise ModelLoadError(uri, f"no {MODEL_FILE} beside {SCHEMA_FILE} in {directory}")
    try:
        model = ServingModel(directory)
    except RuntimeError as err:  # torch.jit.load on a file that is not a TorchScript archive
        raise ModelLoadError(uri, f"{MODEL_FILE} is not a loadable TorchScript model: {_first_line(err)}") from err
    try:
        scores = model.score_columns({n: [None] for n in model.schema.feature_names})
        if scores.shape != (1,):
            raise ValueError(f"one row gave scores of shape {tuple(scores.shape)}, not (1,)")
    except Exception as err:  # whatever the network raises, the artifact is unusable
        raise ModelLoadError(uri, f"{MODEL_FILE} does not score the schema's inputs: {_first_line(err)}") from err
    return model


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:300]


# ---------------------------------------------------------------------------- S3
@dataclass(frozen=True)
class S3Object:
    key: str
    size: int
    etag: str


@dataclass
class S3Client:
    """ListObjectsV2 and GetObject against one endpoint, signed with AWS Signature V4."""

    endpoint_url: str  # "" = AWS
    region: str
    access_key: str = ""
    secret_key: str = ""
    session_token: str = ""
    ca_bundle: str = ""

    @classmethod
    def from_env(cls, endpoint_url: str = "", region: str = "", env: Mapping[str, str] = os.environ) -> S3Client:
        endpoint = endpoint_url or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or ""
        if not endpoint and env.get("S3_ENDPOINT"):
            secure = (env.get("S3_USE_HTTPS") or env.get("USE_SSL") or "1").lower() not in ("0", "false", "no")
            endpoint = env["S3_ENDPOINT"]
            if "://" not in endpoint:
                endpoint = f"{'https' if secure else 'http'}://{endpoint}"
        return cls(
            endpoint_url=endpoint.rstrip("/"),
            region=region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            access_key=env.get("AWS_ACCESS_KEY_ID", ""),
            secret_key=env.get("AWS_SECRET_ACCESS_KEY", ""),
            session_token=env.get("AWS_SESSION_TOKEN", ""),
            ca_bundle=env.get("AWS_CA_BUNDLE", ""),
        )

    @property
    def where(self) -> str:
        return self.endpoint_url or f"AWS S3 ({self.region})"

    # ------------------------------------------------------------ the artifact
    def download(self, uri: str, cache_dir: Path) -> Path:
        """Every object under the URI's prefix, in a folder of `cache_dir` (reused while unchanged)."""
        parsed = urlparse(uri)
        bucket, prefix = parsed.netloc, parsed.path.strip("/")
        if not bucket:
            raise ModelLoadError(uri, "no bucket in the URI (s3://bucket/prefix)")
        prefix = f"{prefix}/" if prefix else ""
        objects = [o for o in self.list(uri, bucket, prefix) if not o.key.endswith("/")]
        if not objects:
            raise ModelLoadError(uri, f"no objects under s3://{bucket}/{prefix} at {self.where}")
        listing = json.dumps([uri, *sorted((o.key, o.size, o.etag) for o in objects)]).encode()
        final = cache_dir / hashlib.sha256(listing).hexdigest()[:24]
        if final.is_dir():
            return final
        cache_dir.mkdir(parents=True, exist_ok=True)
        staging = cache_dir / f".partial-{uuid.uuid4().hex}"
        try:
            for obj in objects:
                rel = PurePosixPath(obj.key[len(prefix) :])
                if rel.is_absolute() or ".." in rel.parts:
                    raise ModelLoadError(uri, f"object key {obj.key!r} escapes the model folder")
                self._get(uri, bucket, obj, staging.joinpath(*rel.parts))
            try:
                staging.rename(final)  # atomic: another worker may have won the race
            except OSError:
                if not final.is_dir():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return final

    def list(self, uri: str, bucket: str, prefix: str) -> list[S3Object]:
        out, token = [], None
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            with self._request(uri, bucket, "", query) as resp:
                root = ET.fromstring(resp.read())
            for item in root.iter(f"{S3_NS}Contents"):
                out.append(
                    S3Object(
                        key=item.findtext(f"{S3_NS}Key", ""),
                        size=int(item.findtext(f"{S3_NS}Size", "0")),
                        etag=item.findtext(f"{S3_NS}ETag", "").strip('"'),
                    )
                )
            token = root.findtext(f"{S3_NS}NextContinuationToken")
            if root.findtext(f"{S3_NS}IsTruncated") != "true" or not token:
                return out

    def _get(self, uri: str, bucket: str, obj: S3Object, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with self._request(uri, bucket, obj.key, {}) as resp, dest.open("wb") as out:
            shutil.copyfileobj(resp, out, 1 << 20)
        if dest.stat().st_size != obj.size:
            raise ModelLoadError(uri, f"s3://{bucket}/{obj.key}: got {dest.stat().st_size} of {obj.size} bytes")

    # ------------------------------------------------------------ HTTP
    def _url(self, bucket: str, key: str) -> str:
        path = quote(key, safe="/")
        if self.endpoint_url:  # S3-compatible stores: path-style addressing
            return f"{self.endpoint_url}/{quote(bucket)}/{path}"
        if "." in bucket:  # a dotted name does not match the wildcard certificate
            return f"https://s3.{self.region}.amazonaws.com/{bucket}/{path}"
        return f"https://{bucket}.s3.{self.region}.amazonaws.com/{path}"

    def _request(self, uri: str, bucket: str, key: str, query: dict[str, str]):
        url = self._url(bucket, key)
        qs = "&".join(f"{_enc(k)}={_enc(v)}" for k, v in sorted(query.items()))
        context = ssl.create_default_context(cafile=self.ca_bundle or _certifi())
        for attempt, pause in enumerate((*RETRIES, None)):
            req = urllib.request.Request(f"{url}?{qs}" if qs else url, headers=self._headers(url, qs))
            try:
                return urllib.request.urlopen(req, timeout=TIMEOUT_S, context=context)
            except urllib.error.HTTPError as err:
                code, message = _s3_error(err)
                if err.code >= 500 and pause is not None:
                    time.sleep(pause)
                    continue
                raise ModelLoadError(uri, _explain(err.code, code, message, bucket, key, self)) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                if pause is not None:
                    time.sleep(pause)
                    continue
                reason = getattr(err, "reason", err)
                raise ModelLoadError(
                    uri, f"cannot reach the S3 endpoint {self.where} after {attempt + 1} tries: {reason}"
                ) from None
        raise AssertionError("unreachable")

    def _headers(self, url: str, qs: str, at: dt.datetime | None = None) -> dict[str, str]:
        parsed = urlparse(url)
        host = parsed.hostname or ""
        if parsed.port and parsed.port != {"http": 80, "https": 443}.get(parsed.scheme):
            host = f"{host}:{parsed.port}"
        headers = {"host": host}
        if not (self.access_key and self.secret_key):
            return headers  # anonymous: a public bucket
        now = (at or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
        headers.update({"x-amz-content-sha256": EMPTY_SHA256, "x-amz-date": now})
        if self.session_token:
            headers["x-amz-security-token"] = self.session_token
        names = sorted(headers)
        canonical = "\n".join(
            [
                "GET",
                parsed.path or "/",
                qs,
                "".join(f"{n}:{headers[n]}\n" for n in names),
                ";".join(names),
                EMPTY_SHA256,
            ]
        )
        scope = f"{now[:8]}/{self.region}/s3/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{now}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        key = f"AWS4{self.secret_key}".encode()
        for part in (now[:8], self.region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={signature}"
        )
        return headers


def _enc(value: str) -> str:
    return quote(value, safe="-_.~")


def _certifi() -> str | None:
    try:
        import certifi
    except ImportError:
        return None
    return certifi.where()


def _s3_error(err: urllib.error.HTTPError) -> tuple[str, str]:
    try:
        root = ET.fromstring(err.read() or b"<Error/>")
        return root.findtext("Code") or "", root.findtext("Message") or ""
    except (ET.ParseError, OSError):
        return "", ""


def _explain(status: int, code: str, message: str, bucket: str, key: str, client: S3Client) -> str:
    what = f"s3://{bucket}/{key}" if key else f"the listing of bucket {bucket}"
    said = f"{status} {code}".strip() + (f" ({message})" if message else "")
    if code == "NoSuchBucket" or (status == 404 and not key):
        return f"bucket {bucket} does not exist at {client.where}: {said}"
    if status in (401, 403):
        who = "no credentials (anonymous)" if not client.access_key else f"access key {client.access_key}"
        return f"access to {what} denied with {who}: {said}"
    return f"{what}: S3 answered {said}"
