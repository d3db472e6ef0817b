"""The built serving image as Seldon's operator runs it: the image's own CMD
(`python -m seldon.http_predictor seldon.model.FraudModel --service-type MODEL`:
seldon-core-microservice with its HTTP side hardened, deployment/Dockerfile.serving), the graph parameters
in `PREDICTIVE_UNIT_PARAMETERS` and the ports in `PREDICTIVE_UNIT_*_SERVICE_PORT`, the
credentials in the env (a Secret's keys), a read-only root file system with `/tmp` a tmpfs.

The model is stored only in a bucket of a local S3 server (moto's, reached over `--network
host`): the predictor downloads it at start and scores through it. A second container whose
model is missing must stay up but never become ready, and its log must name the URI and the
problem.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
import requests

from seldon import manifest as mf
from seldon.model import FraudModel
from seldon.runtime import free_port
from testkit.artifacts import build_artifact, sample_rows
from testkit.images import docker, require_image
from testkit.s3 import CREDENTIALS, moto_s3

pytestmark = [pytest.mark.container, pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    image = require_image("serving")
    artifact = build_artifact(tmp_path_factory.mktemp("serving_image") / "v5", "5", seed=12)
    with moto_s3("driftline-serving-image") as s3:
        client = s3.client()
        prefix = "mlartifacts/1/models/m-5/artifacts/artifacts/serving"
        for path in sorted(artifact.iterdir()):
            client.upload_file(str(path), s3.bucket, f"{prefix}/{path.name}")
        yield {"image": image, "s3": s3, "artifact": artifact, "uri": f"s3://{s3.bucket}/{prefix}"}


class Predictor:
    """One predictor container; `name` for `docker logs` / `rm`."""

    def __init__(self, stack, uri: str):
        self.name, self.port = f"driftline-serving-{uuid.uuid4().hex[:8]}", free_port()
        spec = mf.render(
            "fraud",
            "default",
            [mf.Predictor("main", "driftline-fraud", "5", uri, s3_endpoint_url=stack["s3"].endpoint)],
            stack["image"],
        )["spec"]["predictors"][0]
        env = {
            **mf.container_env(spec),  # MODEL_NAME, SERVICE_TYPE, GUNICORN_WORKERS, ...
            "PREDICTIVE_UNIT_PARAMETERS": json.dumps(spec["graph"]["parameters"]),
            "PREDICTIVE_UNIT_HTTP_SERVICE_PORT": str(self.port),
            "PREDICTIVE_UNIT_GRPC_SERVICE_PORT": str(free_port()),
            "PREDICTIVE_UNIT_METRICS_SERVICE_PORT": str(free_port()),
            **CREDENTIALS,  # a Secret's keys (driftline-model-store) in a cluster
        }
        args = ["run", "-d", "--network", "host", "--read-only", "--tmpfs", "/tmp", "--name", self.name]
        for key, value in env.items():
            args += ["-e", f"{key}={value}"]
        docker(*args, stack["image"])  # the image's CMD: what the operator runs

    def status(self) -> requests.Response | None:
        try:
            return requests.get(f"http://127.0.0.1:{self.port}/health/status", timeout=2)
        except requests.RequestException:  # not listening yet, or the workers still loading
            return None

    def running(self) -> bool:
        out = docker("inspect", "-f", "{{.State.Running}}", self.name, check=False)
        return out.stdout.strip() == "true"

    def logs(self) -> str:
        out = docker("logs", self.name, check=False)
        return out.stdout + out.stderr

    def wait_answer(self, timeout_s: float = 240) -> requests.Response:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.running(), f"the container exited:\n{self.logs()[-4000:]}"
            answer = self.status()
            if answer is not None:
                return answer
            time.sleep(1)
        raise AssertionError(f"no answer on /health/status within {timeout_s}s:\n{self.logs()[-4000:]}")

    def remove(self):
        docker("rm", "-f", self.name, check=False)


def test_the_image_downloads_its_model_from_the_bucket_and_scores(stack):
    predictor = Predictor(stack, stack["uri"])
    try:
        status = predictor.wait_answer()
        assert status.status_code == 200 and status.json()["status"] == "ok", status.text
        names, rows = sample_rows(5, seed=13)
        request = {"data": {"names": names, "ndarray": rows}}
        answer = requests.post(f"http://127.0.0.1:{predictor.port}/api/v1.0/predictions", json=request, timeout=10)
        assert answer.status_code == 200, answer.text
        local = FraudModel(model_uri=str(Path(stack["artifact"])))
        local.load()
        expected = local.predict_raw(request)["data"]["ndarray"]
        assert answer.json()["data"]["ndarray"] == pytest.approx(expected, rel=1e-5)
        assert answer.json()["meta"]["tags"] == {"model_name": "driftline-fraud", "model_version": "5"}
    finally:
        predictor.remove()


def test_a_container_whose_model_is_missing_stays_unready_and_says_why(stack):
    missing = f"s3://{stack['s3'].bucket}/mlartifacts/1/models/m-404/artifacts/artifacts/serving"
    predictor = Predictor(stack, missing)
    try:
        status = predictor.wait_answer()
        assert status.status_code == 503, status.text
        info = status.json()["status"]["info"]
        assert missing in info and "no objects under" in info, info
        time.sleep(3)
        later = predictor.status()
        assert predictor.running() and later is not None and later.status_code == 503  # up, never ready
        logs = predictor.logs()
        assert f"model {missing}: no objects under {missing}/" in logs and "stays unready" in logs, logs[-4000:]
    finally:
        predictor.remove()
