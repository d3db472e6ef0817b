"""The Kubernetes prediction-log sink keeps what the model scored, as the local ingress does: the
component's `meta.tags.model_features` goes to the log's `model_features` column (raw
transactions) or names the request's positional rows; and the file it writes has the columns
the Dagster UI declares for `prediction_log`."""

from __future__ import annotations

import http.client
import json
import threading
import uuid

import pyarrow.parquet as pq
import pytest

HEADERS = {  # what Seldon's executor sends with each CloudEvent (executor/logger/worker.go)
    "Ce-Modelid": "fraud-model",
    "Ce-Inferenceservicename": "fraud",
    "Ce-Endpoint": "main",
    "Ce-Namespace": "driftline",
    "Ce-Specversion": "1.0",
    "Content-Type": "application/json",
}


def _post(port: int, kind: str, body, request_id: str) -> tuple[int, dict]:
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {
        **HEADERS,
        "Ce-Id": str(uuid.uuid4()),
        "Ce-Requestid": request_id,
        "Ce-Type": f"io.seldon.serving.inference.{kind}",
    }
    con.request("POST", "/", json.dumps(body), headers)
    response = con.getresponse()
    return response.status, json.loads(response.read() or b"{}")


@pytest.fixture(name="sink")
def sink_fixture(tmp_path):
    """The sink on a free port, writing under tmp_path; closed (log drained) after the test."""
    from deployment.prediction_log_sink import serve

    server = serve(str(tmp_path), 0, host="127.0.0.1")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()
    server.pairing.log.close()


def _rows(lake) -> list[dict]:
    """Every logged row (the log writes a file per flush)."""
    return [r for f in sorted((lake / "prediction_log").rglob("*.parquet")) for r in pq.read_table(f).to_pylist()]


def test_the_sink_keeps_the_rows_the_model_scored(tmp_path, sink):
    from seldon.model import FraudModel
    from testkit.artifacts import build_artifact, sample_rows

    artifact = tmp_path / "artifact"
    build_artifact(artifact, version="4")
    model = FraudModel(str(artifact), model_version="4")
    names, rows = sample_rows(2, seed=3)
    # positional rows: the component's real answer names them (meta.tags.model_features)
    positional = {"data": {"ndarray": rows}}
    answer = model.predict_raw(positional)
    assert answer["meta"]["tags"]["model_features"] == {"names": names}
    # a raw transaction: the component answers with the row its online lookup completed
    raw = {"jsonData": {"event_id": "e1", "user_id": 41, "merchant_id": 6, "amount": rows[0][names.index("amount")]}}
    completed = {"names": names, "ndarray": [rows[0]]}
    raw_answer = {
        "data": {"names": ["score"], "ndarray": [0.75]},
        "meta": {"tags": {"model_name": "driftline-fraud", "model_version": "4", "model_features": completed}},
    }
    port = sink.server_port
    assert _post(port, "response", answer, "p-positional")[0] == 202
    assert _post(port, "request", positional, "p-positional")[0] == 202
    assert _post(port, "request", raw, "p-raw")[0] == 202
    assert _post(port, "response", raw_answer, "p-raw")[0] == 202
    sink.pairing.log.close()  # drain: the file is written
    by_id = {(r["request_id"], r["row"]): r for r in _rows(tmp_path)}
    assert json.loads(by_id["p-positional", 1]["features"]) == dict(zip(names, rows[1], strict=True))
    assert by_id["p-positional", 1]["model_features"] is None  # the request's row is the model's
    assert json.loads(by_id["p-raw", 0]["features"]) == raw["jsonData"]  # the request, as sent
    assert json.loads(by_id["p-raw", 0]["model_features"]) == dict(zip(names, rows[0], strict=True))
    assert by_id["p-raw", 0]["score"] == pytest.approx(0.75)


def test_a_malformed_model_features_tag_is_refused_naming_it(sink):
    bad = {"data": {"ndarray": [0.5]}, "meta": {"tags": {"model_version": "4", "model_features": ["amount"]}}}
    status, body = _post(sink.server_port, "response", bad, "p-bad")
    assert status == 400 and "meta.tags.model_features" in body["error"]


def test_the_log_file_has_the_columns_the_ui_declares(tmp_path, sink):
    """The `prediction_log` column schema (assets/conventions.py) is what the writer writes."""
    from assets.conventions import arrow_type_name, column_schemas

    answer = {"data": {"ndarray": [0.5]}, "meta": {"tags": {"model_version": "4", "predictor": "main"}}}
    assert _post(sink.server_port, "request", {"data": {"names": ["amount"], "ndarray": [[3.0]]}}, "p-1")[0] == 202
    assert _post(sink.server_port, "response", answer, "p-1")[0] == 202
    sink.pairing.log.close()
    schema = pq.read_schema(next((tmp_path / "prediction_log").rglob("*.parquet")))
    declared = [(c.name, c.type) for c in column_schemas()["prediction_log"].columns]
    assert declared == [(f.name, arrow_type_name(f.type)) for f in schema]
