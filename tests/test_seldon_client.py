"""Seldon's own client against the local stack: the unmodified `SeldonClient` of `.venv-serving`'s
seldon-core, through the ingress's `/seldon/<ns>/<deployment>/api/v1.0/predictions` path with the
JWT in `headers=`, as Seldon's docs use it: `ndarray` and `tensor` without names (positional, in
the order the component's metadata publishes) and with names, and `json_data` transactions,
which go through a protobuf Struct (every integer becomes a float: `41` -> `41.0`).

The stack is real: the local runtime (`seldon-core-microservice seldon.model.FraudModel` + the
ingress) and a Feast sqlite online store built by the data plane from two days of a small
synthetic world. The client runs in `.venv-serving` (a subprocess: seldon-core's pins differ from
the orchestration environment's); this test compares its answers with the model scored in-process.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from resources.lake import Lake
from resources.seldon_target import SeldonTarget
from seldon import manifest as mf
from seldon.examples import example_transaction
from seldon.runtime import free_port
from testkit.artifacts import build_artifact, sample_rows
from testkit.serving import SECRET, SERVING_PY
from testkit.tokens import token

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not SERVING_PY.exists(), reason=".venv-serving is missing: run `make setup`")
DAYS = [(dt.date(2026, 10, 4) + dt.timedelta(days=k)).isoformat() for k in range(2)]

# Runs in .venv-serving: SeldonClient as shipped; prints one JSON object per case.
CLIENT = r"""
import json, sys
import numpy as np
import requests
from google.protobuf import json_format
from seldon_core.seldon_client import SeldonClient

args = json.loads(sys.argv[1])
headers = {"Authorization": "Bearer " + args["token"]}
meta = requests.get(args["metadata_url"], headers=headers, timeout=10).json()
tensor_schema = next(i for i in meta["inputs"] if i["messagetype"] == "tensor")["schema"]
names, categories = tensor_schema["names"], json.loads(meta["custom"]["categories"])
client = SeldonClient(
    deployment_name=args["deployment"], namespace=args["namespace"], gateway_endpoint=args["endpoint"],
    gateway="istio", transport="rest",
)
rows = args["rows"]
codes = [[categories[n].index(v) if n in categories else v for n, v in zip(names, row)] for row in rows]


def run(label, **kw):
    r = client.predict(headers=headers, **kw)
    body = r.response if isinstance(r.response, dict) or r.response is None else json_format.MessageToDict(r.response)
    scores = body["data"]["ndarray"] if r.success else None
    print(json.dumps({"case": label, "success": r.success, "msg": r.msg, "scores": scores, "body": body}))


run("ndarray, no names", data=np.array(rows, dtype=object), payload_type="ndarray")
run("ndarray, names", data=np.array(rows, dtype=object), payload_type="ndarray", names=names)
run("tensor, no names", data=np.array(codes, dtype=float), payload_type="tensor")
run("tensor, names", data=np.array(codes, dtype=float), payload_type="tensor", names=names)
run("json_data", json_data=args["transaction"])
run("json_data, proto answer", json_data=args["transaction"], client_return_type="proto")
run("json_data, list", json_data=[args["transaction"], dict(args["transaction"], user_id=7)])
run("json_data, fractional id", json_data=dict(args["transaction"], user_id=41.5))
run("ndarray of strings", data=np.array(rows), payload_type="ndarray")
run("tensor, NaN", data=np.array([codes[0][:3] + [float("nan")] + codes[0][4:]], dtype=float), payload_type="tensor")
print(json.dumps({"case": "metadata", "names": names, "categories": categories}))
"""


def _online_store(root: Path) -> Path:
    """A Feast repo whose sqlite online store holds two days of a small world (the data plane)."""
    import logging

    import definitions
    from driftline.pipeline import run_data_plane
    from resources import SyntheticEventSource
    from testkit.resources import make_resources

    logging.getLogger("dagster").setLevel(logging.WARNING)
    world = SyntheticEventSource(seed=21, n_users=250, n_merchants=60, events_per_day=500)
    resources = make_resources(root / "plane", event_source=world, start_runtime=False)
    assert definitions.defs.assets is not None
    assert run_data_plane(list(definitions.defs.assets), resources, DAYS).success
    return root / "plane" / "feast"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("seldon-client")
    repo = _online_store(root)
    os.environ["DRIFTLINE_INGRESS_JWT_SECRET"] = SECRET
    port = free_port()
    target = SeldonTarget(
        serving_dir=str(root / "serving"),
        lake=Lake(root=str(root / "lake")),
        feast_repo=str(repo),
        ingress_url=f"http://127.0.0.1:{port}",
        online_features="store",
    )
    artifact = build_artifact(root / "m1", "1", seed=0)
    predictor = mf.Predictor("main", "driftline-fraud", "1", str(artifact), 100, feast_url=target.feast_url, workers=1)
    target.apply(mf.render("fraud", "default", [predictor], "driftline/serving:test"))
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{base}/ready", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, "ingress did not come up"
        time.sleep(0.2)
    yield {"port": port, "artifact": artifact, "base": base, "target": target}
    target.stop_runtime()


def _client_run(stack, rows: list, transaction: dict) -> dict:
    args = {
        "token": token(SECRET, "predict"),
        "endpoint": f"127.0.0.1:{stack['port']}",
        "deployment": "fraud",
        "namespace": "default",
        "metadata_url": f"{stack['base']}/seldon/default/fraud/api/v1.0/metadata",
        "rows": rows,
        "transaction": transaction,
    }
    out = subprocess.run(
        [str(SERVING_PY), "-c", CLIENT, json.dumps(args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return {r["case"]: r for r in map(json.loads, out.stdout.splitlines())}


def test_stock_seldon_client_through_the_ingress(stack, capsys):
    from seldon.artifact import ServingModel

    names, rows = sample_rows(5, seed=4)
    transaction = example_transaction(f"{DAYS[-1]}T08:00:00", event_id="sc-1")
    runs = _client_run(stack, rows, transaction)
    with capsys.disabled():
        for case, run in runs.items():
            if case != "metadata":
                info = (run["body"] or {}).get("status", {}).get("info", "")
                print(f"\nSeldonClient {case}: {run['msg'] or '200'} {run['scores'] or info}")
    assert runs["metadata"]["names"] == names  # the positional order is the metadata's
    model = ServingModel(stack["artifact"])
    expected = model.score_columns({n: [r[j] for r in rows] for j, n in enumerate(names)})
    for case in ("ndarray, no names", "ndarray, names", "tensor, no names", "tensor, names"):
        run = runs[case]
        assert run["success"], (case, run)
        assert np.allclose(np.array(run["scores"], dtype=np.float32), expected, atol=1e-6), case
        assert run["body"]["meta"]["tags"]["model_version"] == "1"
    for case in ("json_data", "json_data, proto answer", "json_data, list"):  # 41 arrives as 41.0: still an id
        run = runs[case]
        assert run["success"], (case, run)
        scores = run["scores"]
        assert len(scores) == (2 if case.endswith("list") else 1) and all(0.0 <= s <= 1.0 for s in scores)
    assert runs["json_data"]["scores"] == runs["json_data, proto answer"]["scores"]
    refused = {
        "json_data, fractional id": "user_id",
        "ndarray of strings": "dtype=object",
        "tensor, NaN": "amount: NaN",  # the client writes a NaN as the string "NaN"
    }
    for case, needle in refused.items():
        run = runs[case]
        assert not run["success"] and run["msg"].startswith("400"), (case, run)
        info = run["body"]["status"]["info"]
        assert needle in info and run["body"]["status"]["reason"] == "MICROSERVICE_BAD_DATA", (case, info)


def test_raw_transactions_hand_the_log_the_rows_the_model_scored(stack, tmp_path):
    """A `jsonData` answer straight from the predictor carries, in `meta.tags.model_features`, the
    rows the model scored (the served features after the online lookup, in the metadata's order);
    the prediction log keeps them beside the request, and the drift reader sees every input."""
    from monitoring.data import read_prediction_window
    from seldon.predlog import MODEL_FEATURES_TAG, PredictionLog
    from testkit.artifacts import SERVED

    endpoints = json.loads((stack["target"].state_dir / "endpoints.json").read_text())
    port = endpoints["predictors"]["main"]["port"]
    txs = [
        {"event_id": f"raw-{u}", "user_id": u, "merchant_id": 6, "amount": 12.5 * u, "country": "FR",
         "category": "grocery", "channel": "web", "event_ts": f"{DAYS[-1]}T0{u}:30:00"}
        for u in range(1, 6)
    ]  # fmt: skip
    body = json.dumps({"jsonData": txs}).encode()
    url = f"http://127.0.0.1:{port}/api/v1.0/predictions"
    r = requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 200, r.text
    answer = r.json()
    seen = answer["meta"]["tags"][MODEL_FEATURES_TAG]
    names, rows = seen["names"], seen["ndarray"]
    assert names == ["category", "country", "channel", "amount", *SERVED] and len(rows) == 5
    by_name = [dict(zip(names, row, strict=True)) for row in rows]
    assert [b["amount"] for b in by_name] == [t["amount"] for t in txs]
    assert [b["hour_of_day"] for b in by_name] == [1, 2, 3, 4, 5] and {b["channel"] for b in by_name} == {"web"}
    assert any(b["user_txn_count_7d"] for b in by_name)  # users of the world: the store had state for them

    plog = PredictionLog(tmp_path / "lake", write_process=False)
    plog.record("raw", "sub", "fraud", "main", "1", body, answer["data"]["ndarray"], 0.001, model_features=seen)
    plog.close()
    day = dt.datetime.now(dt.UTC).date().isoformat()
    cats, nums = names[:3], names[3:]
    frame, total = read_prediction_window(Lake(root=str(tmp_path / "lake")), [day], cats, nums)
    assert total == 5 and set(frame.columns) == {*names, "score"}
    logged = [None if math.isnan(v) else v for v in frame["user_txn_count_7d"].tolist()]  # NaN: null in the log
    assert logged == [b["user_txn_count_7d"] for b in by_name]
