"""Predictors load their model from a model URI (`seldon/model_store.py`), as in a cluster.

The model lives only in a bucket of a local S3-compatible server (moto's, over real HTTP, as in
`tests/test_lake_object_store.py`); the component downloads it in `load()`, in-process and in real
`seldon-core-microservice` processes of `.venv-serving` given their parameters the way Seldon's
operator gives them (`PREDICTIVE_UNIT_PARAMETERS`). `file://` URIs and plain paths read in place.
A missing or corrupt model never makes a predictor ready: `/health/status` answers 503 naming
the URI and the problem, the log says the same, and the process stays up.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from seldon import manifest as mf
from seldon import model_store
from seldon.model import FraudModel
from seldon.model_store import ModelLoadError, S3Client, fetch
from testkit.artifacts import build_artifact, sample_rows, small_schema
from testkit.s3 import CREDENTIALS, moto_s3
from testkit.serving import REPO_ROOT, SERVING_PY

pytestmark = pytest.mark.timeout(300)

BUCKET = "driftline-models"
SERVING_BIN = SERVING_PY.parent


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server with the credentials in the env, as a pod's Secret would put them."""
    with moto_s3(BUCKET) as server, pytest.MonkeyPatch.context() as mp:
        for name, value in CREDENTIALS.items():
            mp.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "S3_ENDPOINT"):
            mp.delenv(name, raising=False)
        yield server


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    return build_artifact(tmp_path_factory.mktemp("model_uri") / "v1", "1", seed=4)


def upload(s3, directory: Path, prefix: str) -> str:
    client = s3.client()
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), s3.bucket, f"{prefix}/{path.relative_to(directory).as_posix()}")
    return f"s3://{s3.bucket}/{prefix}"


def loaded(uri: str, **params) -> FraudModel:
    model = FraudModel(model_uri=uri, **params)
    model.load()
    return model


# ---------------------------------------------------------------------------- in-process
def test_s3_model_is_downloaded_once_and_scores_like_the_local_copy(s3, artifact, tmp_path):
    uri = upload(s3, artifact, "models/driftline-fraud/1")
    cache = tmp_path / "cache"
    remote = loaded(uri, s3_endpoint_url=s3.endpoint, model_cache_dir=str(cache))
    names, rows = sample_rows(20, seed=5)
    request = {"data": {"names": names, "ndarray": rows}}
    scores = remote.predict_raw(request)["data"]["ndarray"]
    for local in (artifact.as_uri(), str(artifact)):  # file:// and a plain path read in place
        assert loaded(local).predict_raw(request)["data"]["ndarray"] == scores
    assert remote.health_status_raw()["status"] == "ok" and remote.load_error is None
    assert remote.init_metadata()["inputs"][0]["schema"]["names"] == names

    first = fetch(uri, cache_dir=cache, s3_endpoint_url=s3.endpoint)
    assert fetch(uri, cache_dir=cache, s3_endpoint_url=s3.endpoint) == first  # the other workers: from the cache
    assert sorted(p.name for p in first.iterdir()) == ["feature_schema.json", "model.pt"]
    changed = build_artifact(tmp_path / "v1b", "1", seed=9)
    upload(s3, changed, "models/driftline-fraud/1")
    assert fetch(uri, cache_dir=cache, s3_endpoint_url=s3.endpoint) != first  # new objects, new download
    assert loaded(uri, s3_endpoint_url=s3.endpoint, model_cache_dir=str(cache)).predict_raw(request) != scores


def test_an_mlflow_model_root_leads_to_its_serving_folder(s3, artifact, tmp_path):
    layout = tmp_path / "mlflow_model"
    (layout / "artifacts").mkdir(parents=True)
    (layout / "MLmodel").write_text("flavors: {}\n")
    (layout / "code" / "seldon").mkdir(parents=True)
    (layout / "code" / "seldon" / "model.py").write_text("# copied code\n")
    shutil.copytree(artifact, layout / "artifacts" / "serving")
    uri = upload(s3, layout.resolve(), "mlartifacts/1/models/m-abc/artifacts")
    found = fetch(uri, cache_dir=tmp_path / "cache", s3_endpoint_url=s3.endpoint)
    assert found.parts[-2:] == ("artifacts", "serving") and (found / "model.pt").is_file()


def test_endpoint_region_and_credentials_come_from_parameters_or_the_env():
    env = {"AWS_ENDPOINT_URL": "http://minio:9000/", "AWS_REGION": "eu-west-3", "AWS_ACCESS_KEY_ID": "k"}
    assert S3Client.from_env("", "", env).endpoint_url == "http://minio:9000"
    assert S3Client.from_env("http://store:1", "", env).endpoint_url == "http://store:1"  # the parameter wins
    assert (
        S3Client.from_env("", "", {**env, "AWS_ENDPOINT_URL_S3": "http://s3only:2"}).endpoint_url == "http://s3only:2"
    )
    seldon_style = S3Client.from_env("", "", {"S3_ENDPOINT": "minio.ns:9000", "USE_SSL": "false"})
    assert seldon_style.endpoint_url == "http://minio.ns:9000" and seldon_style.region == "us-east-1"
    assert S3Client.from_env("", "", {"S3_ENDPOINT": "minio.ns:9000"}).endpoint_url == "https://minio.ns:9000"
    aws = S3Client.from_env("", "", {"AWS_DEFAULT_REGION": "eu-central-1"})
    assert aws._url("b", "m/model.pt") == "https://b.s3.eu-central-1.amazonaws.com/m/model.pt"
    assert aws._url("b.dotted", "k") == "https://s3.eu-central-1.amazonaws.com/b.dotted/k"
    assert aws._headers(aws._url("b", "k"), "") == {"host": "b.s3.eu-central-1.amazonaws.com"}  # anonymous


def test_signature_is_botocores(monkeypatch):
    """Signature V4 as botocore computes it, for an odd key and a listing query (moto does not check)."""
    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    at = dt.datetime(2026, 10, 5, 8, 30, 1, tzinfo=dt.UTC)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: at.replace(tzinfo=None))
    client = S3Client("http://127.0.0.1:9000", "eu-west-3", "AKIDEXAMPLE", "secret/key+x", "token=")
    for key, query in (
        ("models/v 1/é+x.pt", {}),
        ("", {"list-type": "2", "prefix": "a b/ü", "continuation-token": "x/y="}),
    ):
        url = client._url("bucket", key)
        qs = "&".join(f"{model_store._enc(k)}={model_store._enc(v)}" for k, v in sorted(query.items()))
        mine = client._headers(url, qs, at=at)
        request = AWSRequest(method="GET", url=f"{url}?{qs}" if qs else url, headers={})
        botocore.auth.S3SigV4Auth(Credentials("AKIDEXAMPLE", "secret/key+x", "token="), "s3", "eu-west-3").add_auth(
            request
        )
        assert mine["authorization"] == request.headers["Authorization"], key
        assert mine["x-amz-security-token"] == "token="


def _case(s3, artifact: Path, tmp_path: Path, case: str) -> tuple[str, str, str]:
    """A model URI that cannot be loaded, what the message must say, and the S3 endpoint."""
    missing = f"s3://{s3.bucket}/models/driftline-fraud/404"
    simple = {
        "missing prefix": (missing, f"no objects under {missing}/ at {s3.endpoint}"),
        "missing bucket": ("s3://no-such-bucket/models/1", "bucket no-such-bucket does not exist"),
        "unsupported scheme": ("gs://bucket/models/1", "unsupported scheme gs://"),
        "missing path": ((tmp_path / "nowhere").as_uri(), "does not exist"),
    }
    if case in simple:
        return (*simple[case], s3.endpoint)
    if case == "unreachable endpoint":
        return f"s3://{s3.bucket}/models/1", "cannot reach the S3 endpoint http://127.0.0.1:9", "http://127.0.0.1:9"
    broken = tmp_path / case.replace(" ", "_")
    broken.mkdir()
    for name in ("feature_schema.json", "model.pt"):
        (broken / name).write_bytes((artifact / name).read_bytes())
    if case == "no schema":
        (broken / "feature_schema.json").unlink()
        needle = "no feature_schema.json in it"
    elif case == "corrupt schema":
        (broken / "feature_schema.json").write_text('{"schema_version": 1, "categorical": [')
        needle = "feature_schema.json is not a valid feature schema"
    elif case == "no model":
        (broken / "model.pt").unlink()
        needle = "no model.pt beside feature_schema.json"
    elif case == "truncated model":
        (broken / "model.pt").write_bytes((artifact / "model.pt").read_bytes()[:2000])
        needle = "model.pt is not a loadable TorchScript model"
    else:  # "model does not fit the schema": one more numeric feature than the network takes
        schema = small_schema("1")
        schema.numeric.append(schema.numeric[-1].__class__("extra", "identity", 0.0, 1.0, 0.0))
        (broken / "feature_schema.json").write_text(schema.to_json())
        needle = "model.pt does not score the schema's inputs"
    return upload(s3, broken, f"broken/{broken.name}"), needle, s3.endpoint


FAILURES = [
    "missing prefix",
    "missing bucket",
    "unreachable endpoint",
    "unsupported scheme",
    "missing path",
    "no schema",
    "corrupt schema",
    "no model",
    "truncated model",
    "model does not fit the schema",
]


@pytest.mark.parametrize("case", FAILURES)
def test_a_model_that_cannot_be_loaded_keeps_the_component_unready_and_says_why(
    s3, artifact, tmp_path, monkeypatch, case
):
    monkeypatch.setattr(model_store, "RETRIES", (0.01,))
    uri, needle, endpoint = _case(s3, artifact, tmp_path, case)
    model = loaded(uri, s3_endpoint_url=endpoint, model_cache_dir=str(tmp_path / "cache"))  # load() does not raise
    assert model.model is None
    for call in (model.health_status_raw, lambda: model.predict_raw({"data": {"names": ["a"], "ndarray": [[1]]}})):
        with pytest.raises(Exception) as err:
            call()
        message = getattr(err.value, "message", "")
        assert getattr(err.value, "status_code", None) == 503, repr(err.value)
        assert uri in message and needle in message, message
    metadata = model.init_metadata()  # never raises: seldon-core calls it before the workers start
    if case not in ("no model", "truncated model", "model does not fit the schema"):  # no readable schema
        assert uri in metadata["custom"]["load_error"]


# ---------------------------------------------------------------------------- orchestration side
class _FakeCustomObjects:
    """The kubernetes client's three calls on a SeldonDeployment, kept in memory (no cluster here)."""

    def __init__(self):
        self.objects: dict = {}

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        if name not in self.objects:
            raise type("ApiException", (Exception,), {"status": 404})()
        return self.objects[name]

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        self.objects[body["metadata"]["name"]] = body

    def patch_namespaced_custom_object(self, group, version, namespace, plural, name, body):
        self.objects[name] = body


def _deploy(registry, target) -> dict:
    import dagster as dg

    from assets.deployment import seldon_deployment

    result = dg.materialize([seldon_deployment], resources={"mlflow_registry": registry, "seldon_target": target})
    manifest = result.asset_materializations_for_node("seldon_deployment")[0].metadata["manifest"].value
    assert isinstance(manifest, dict)
    return manifest


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")
def test_kubernetes_target_deploys_the_registry_version_by_its_bucket_uri(s3, artifact, tmp_path, monkeypatch):
    """Training's layout (an MLflow pyfunc with the artifact under artifacts/serving) on an s3://
    artifact root: the asset resolves the version to that folder's URI, and a component given the
    rendered parameters downloads and scores it. A local artifact root is refused for a cluster."""
    import mlflow

    from resources.lake import Lake
    from resources.mlflow_registry import CHAMPION, MlflowRegistry
    from resources.seldon_target import SeldonTarget

    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", s3.endpoint)
    monkeypatch.setenv("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    api = _FakeCustomObjects()
    monkeypatch.setattr(SeldonTarget, "_custom_objects_api", lambda self: api)
    target = SeldonTarget(kind="kubernetes", namespace="ml", lake=Lake(root=f"s3://{s3.bucket}/lake"))
    for root in (f"s3://{s3.bucket}/mlartifacts", str(tmp_path / "mlartifacts")):
        registry = MlflowRegistry(
            tracking_uri=f"sqlite:///{tmp_path}/mlflow-{len(root)}.db", artifact_root=root, experiment="e"
        )
        _, experiment = registry.setup()
        with mlflow.start_run(experiment_id=experiment):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(REPO_ROOT / "ml" / "pyfunc_model.py"),
                artifacts={"serving": str(artifact)},
                code_paths=[str(REPO_ROOT / "seldon")],
                pip_requirements=["numpy"],
            )
        registry.set_alias(CHAMPION, str(mlflow.register_model(info.model_uri, registry.model_name).version))
        if not root.startswith("s3://"):
            with pytest.raises(Exception, match=r"cannot read: MLflow's artifact root .* must be an s3:// location"):
                _deploy(registry, target)
            continue
        manifest = _deploy(registry, target)
        assert api.objects["fraud"] == manifest
        graph = manifest["spec"]["predictors"][0]["graph"]
        params = mf.parameters(manifest["spec"]["predictors"][0])
        uri = params["model_uri"]
        assert uri.startswith(f"{root}/") and uri.endswith(f"/artifacts/{artifact.name}"), uri  # the pyfunc's folder
        assert graph["modelUri"] == uri
        assert params["s3_endpoint_url"] == s3.endpoint
        component = FraudModel(**params, model_cache_dir=str(tmp_path / "cache"))
        component.load()
        names, rows = sample_rows(4, seed=8)
        request = {"data": {"names": names, "ndarray": rows}}
        assert component.predict_raw(request)["data"] == loaded(str(artifact)).predict_raw(request)["data"]


# ---------------------------------------------------------------------------- real processes
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Microservice:
    """`seldon-core-microservice seldon.model.FraudModel --service-type MODEL` (the image's CMD),
    parameters and ports from the env as Seldon's operator sets them."""

    def __init__(self, parameters: list[dict], log: Path, **env: str):
        self.port, self.log = _free_port(), log
        child_env = {
            **os.environ,
            "PREDICTIVE_UNIT_PARAMETERS": json.dumps(parameters),
            "PREDICTIVE_UNIT_HTTP_SERVICE_PORT": str(self.port),
            "PREDICTIVE_UNIT_GRPC_SERVICE_PORT": str(_free_port()),
            "PREDICTIVE_UNIT_METRICS_SERVICE_PORT": str(_free_port()),
            "GUNICORN_WORKERS": "2",
            "OMP_NUM_THREADS": "1",
            **env,
        }
        cmd = [str(SERVING_BIN / "seldon-core-microservice"), "seldon.model.FraudModel", "--service-type", "MODEL"]
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                cmd, env=child_env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def status(self) -> requests.Response | None:
        try:
            return requests.get(f"http://127.0.0.1:{self.port}/health/status", timeout=2)
        except requests.RequestException:  # not listening yet, or the workers still loading
            return None

    def wait_answer(self, timeout_s: float = 120) -> requests.Response:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
            answer = self.status()
            if answer is not None:
                return answer
            time.sleep(0.5)
        raise AssertionError(f"no answer on /health/status:\n{self.log.read_text()[-3000:]}")

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


needs_serving = pytest.mark.skipif(not SERVING_PY.exists(), reason=".venv-serving is missing: run `make setup`")


def _parameters(uri: str, endpoint: str) -> list[dict]:
    predictor = mf.Predictor("main", "driftline-fraud", "1", uri, s3_endpoint_url=endpoint)
    return mf.render("fraud", "default", [predictor], "driftline/serving:test")["spec"]["predictors"][0]["graph"][
        "parameters"
    ]


@needs_serving
def test_microservice_downloads_from_the_bucket_and_scores(s3, artifact, tmp_path):
    uri = upload(s3, artifact, "models/driftline-fraud/7")
    service = Microservice(_parameters(uri, s3.endpoint), tmp_path / "good.log", TMPDIR=str(tmp_path))
    try:
        status = service.wait_answer()
        assert status.status_code == 200 and status.json()["status"] == "ok", status.text
        names, rows = sample_rows(8, seed=6)
        answer = requests.post(
            f"http://127.0.0.1:{service.port}/api/v1.0/predictions",
            json={"data": {"names": names, "ndarray": rows}},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        expected = loaded(str(artifact)).predict_raw({"data": {"names": names, "ndarray": rows}})["data"]["ndarray"]
        assert np.allclose(answer.json()["data"]["ndarray"], expected)
        assert answer.json()["meta"]["tags"]["model_version"] == "1"
        # one download for the main process and both workers (the listing names the cache folder)
        assert len(list((tmp_path / "driftline-models").iterdir())) == 1
    finally:
        service.stop()


@needs_serving
@pytest.mark.parametrize("case", ["missing prefix", "truncated model"])
def test_microservice_with_a_bad_model_stays_up_unready_and_says_why(s3, artifact, tmp_path, case):
    uri, needle, endpoint = _case(s3, artifact, tmp_path, case)
    service = Microservice(_parameters(uri, endpoint), tmp_path / "bad.log", TMPDIR=str(tmp_path))
    try:
        status = service.wait_answer()
        assert status.status_code == 503, status.text
        info = status.json()["status"]["info"]
        assert uri in info and needle in info, info
        assert requests.get(f"http://127.0.0.1:{service.port}/health/ping", timeout=2).status_code == 200  # alive
        time.sleep(2)
        later = service.status()
        assert service.proc.poll() is None and later is not None and later.status_code == 503  # no crash, unready
        log = service.log.read_text()
        assert f"{uri}: " in log and needle in log and "stays unready" in log, log[-3000:]
    finally:
        service.stop()


@needs_serving
def test_local_runtime_serves_the_bucket_model_and_reports_the_missing_one(s3, artifact, tmp_path):
    """The manifest's parameters through `python -m seldon.runtime`: main's model is in the bucket;
    canary's is not, so canary never becomes ready and the runtime says why (endpoints.json)."""
    good = upload(s3, artifact, "models/driftline-fraud/11")
    predictors = [
        mf.Predictor("main", "driftline-fraud", "11", good, 90, workers=1, s3_endpoint_url=s3.endpoint),
        mf.Predictor("canary", "driftline-fraud", "12", f"s3://{s3.bucket}/models/none/12", 10, workers=1),
    ]
    state = tmp_path / "run"
    manifest = mf.write(mf.render("fraud", "default", predictors, "driftline/serving:test"), tmp_path / "sdep.yaml")
    env = {**os.environ, "AWS_ENDPOINT_URL_S3": s3.endpoint, "TMPDIR": str(tmp_path)}  # canary: endpoint from the env
    cmd = [str(SERVING_PY), "-m", "seldon.runtime", "--manifest", str(manifest), "--state-dir", str(state)]
    with (tmp_path / "runtime.log").open("wb") as out:
        proc = subprocess.Popen(
            [*cmd, "--no-ingress"], env=env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline, endpoints = time.monotonic() + 150, {}
        while time.monotonic() < deadline:
            path = state / "endpoints.json"
            endpoints = json.loads(path.read_text()) if path.exists() else {}
            if endpoints.get("predictors", {}).get("main", {}).get("ready") and endpoints.get("waiting"):
                break
            time.sleep(0.5)
        assert set(endpoints.get("predictors", {})) == {"main"}, endpoints
        problem = endpoints["waiting"]["canary"]
        assert f"s3://{s3.bucket}/models/none/12" in problem and "no objects under" in problem, problem
        assert "predictor canary is not ready" in (tmp_path / "runtime.log").read_text()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)


def test_modelless_uri_errors_name_the_uri():
    with pytest.raises(ModelLoadError, match="no model URI"):
        fetch("")
    assert str(ModelLoadError("s3://b/p", "x")) == "model s3://b/p: x"
