"""The ingress in front of two real predictors (seldon-core-microservice in .venv-serving),
started by the local runtime from a rendered manifest: split, pinning, shadow, auth, hostile
payloads, metrics, TLS and prediction-log conservation. Everything on loopback."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import requests

from resources.lake import Lake
from resources.seldon_target import SeldonTarget
from seldon import manifest as mf
from seldon.runtime import free_port
from testkit.artifacts import build_artifact, sample_rows
from testkit.serving import SECRET, SERVING_PY
from testkit.tokens import token

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not SERVING_PY.exists(), reason=".venv-serving is missing: run `make setup`")


def predictors(root: Path, canary_weight: int, shadow: bool = False):
    main = mf.Predictor(
        "main", "driftline-fraud", "1", str(build_artifact(root / "m1", "1", seed=0)), 100 - canary_weight, workers=1
    )
    out = [
        main,
        mf.Predictor(
            "canary", "driftline-fraud", "2", str(build_artifact(root / "m2", "2", seed=1)), canary_weight, workers=1
        ),
    ]
    if shadow:
        out.append(mf.Predictor("shadow", "driftline-fraud", "2", str(root / "m2"), 0, shadow=True, workers=1))
    return out


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("ingress")
    os.environ["DRIFTLINE_INGRESS_JWT_SECRET"] = SECRET
    port = free_port()
    target = SeldonTarget(
        serving_dir=str(root / "serving"),
        lake=Lake(root=str(root / "lake")),
        feast_repo=str(root / "no-feast"),
        ingress_url=f"http://127.0.0.1:{port}",
    )
    manifest = mf.render("fraud", "default", predictors(root, 30, shadow=True), "driftline/serving:test")
    target.apply(manifest)
    url = f"http://127.0.0.1:{port}/seldon/default/fraud/api/v1.0/predictions"
    _wait_ingress(url)
    yield target, url, root
    target.stop_runtime()


def _wait_ingress(url: str, timeout_s: float = 30.0):
    base = url.split("/seldon/", maxsplit=1)[0]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/ready", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise TimeoutError("ingress did not come up")


def headers(scopes="predict", **extra):
    return {"Authorization": f"Bearer {token(SECRET, scopes)}", **extra}


def body(n=1, seed=0):
    names, rows = sample_rows(n, seed)
    return {"data": {"names": names, "ndarray": rows}}


def test_prediction_has_seldon_shape(stack):
    _, url, _ = stack
    r = requests.post(url, json=body(3), headers=headers())
    assert r.status_code == 200, r.text
    out = r.json()
    assert len(out["data"]["ndarray"]) == 3
    assert out["meta"]["requestPath"] == {"fraud-model": "driftline/serving:test"}
    assert out["meta"]["tags"]["model_version"] in ("1", "2") and out["meta"]["puid"]


def test_traffic_split_and_sticky_request_ids(stack):
    _, url, _ = stack
    session_headers = headers()

    def call(i):
        with requests.Session() as s:
            r = s.post(url, json=body(1, i % 50), headers={**session_headers, "Seldon-Puid": f"req-{i}"})
            return r.status_code, r.headers["Seldon-Predictor"]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(2000)))
    assert {s for s, _ in results} == {200}
    share = collections.Counter(p for _, p in results)["canary"] / 2000
    assert abs(share - 0.30) < 0.035, share  # 30% +- ~3.5 sigma
    again = [call(i)[1] for i in range(20)]
    assert again == [p for _, p in results[:20]]  # the same request id takes the same predictor


def test_pin_header_and_unknown_predictor(stack):
    _, url, _ = stack
    for _ in range(5):
        r = requests.post(url, json=body(), headers=headers(**{"Seldon-Predictor": "canary"}))
        assert r.headers["Seldon-Predictor"] == "canary" and r.json()["meta"]["tags"]["model_version"] == "2"
    r = requests.post(url, json=body(), headers=headers(**{"Seldon-Predictor": "nope"}))
    assert r.status_code == 400


def test_shadow_gets_copies_and_answers_are_discarded(stack):
    target, url, _ = stack
    for i in range(10):
        r = requests.post(url, json=body(1, i), headers=headers(**{"Seldon-Predictor": "main"}))
        assert r.headers["Seldon-Predictor"] == "main"
    time.sleep(0.5)
    metrics = target.ingress_metrics()
    assert 'predictor="shadow",status="200"' in metrics


def test_auth(stack):
    _, url, _ = stack
    assert requests.post(url, json=body()).status_code == 401
    bad = token("another-secret-that-is-long-enough-for-hs256", "predict")
    assert requests.post(url, json=body(), headers={"Authorization": f"Bearer {bad}"}).status_code == 401
    expired = token(SECRET, "predict", ttl_s=-10)
    r = requests.post(url, json=body(), headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401 and "expired" in r.text
    assert requests.post(url, json=body(), headers=headers("admin")).status_code == 403
    base = url.split("/seldon/")[0]
    assert requests.get(f"{base}/metrics", headers=headers("predict")).status_code == 403
    r = requests.post(f"{base}/admin/traffic", json={"weights": {"main": 50, "canary": 50}}, headers=headers("predict"))
    assert r.status_code == 403


def test_admin_changes_traffic_until_manifest_changes(stack):
    target, url, _ = stack
    base = url.split("/seldon/")[0]
    r = requests.post(f"{base}/admin/traffic", json={"weights": {"main": 100, "canary": 0}}, headers=headers("admin"))
    assert r.status_code == 200, r.text
    seen = {requests.post(url, json=body(), headers=headers()).headers["Seldon-Predictor"] for _ in range(30)}
    assert seen == {"main"}
    assert (
        requests.post(f"{base}/admin/traffic", json={"weights": {"main": 1}}, headers=headers("admin")).status_code
        == 400
    )
    target.apply(mf.load(target.manifest_path))  # re-applying the manifest clears the override
    time.sleep(0.6)
    state = requests.get(f"{base}/admin/state", headers=headers("admin")).json()
    assert state["override"] is None and state["weights"] == {"main": 70, "canary": 30}


def hostile_payloads() -> list:
    names, rows = sample_rows(2)
    good = {"names": names, "ndarray": rows}
    cases = [
        b"",
        b"{",
        b"[]",
        b"null",
        b"42",
        b'"text"',
        b'{"data": 1}',
        b"\xff\xfe",
        b"{" * 5000 + b"}" * 5000,
        json.dumps({"data": {"names": names}}).encode(),
        # rows without names are Seldon's own clients' positional form (the metadata's order): not here
        json.dumps({"data": {"names": names, "ndarray": []}}).encode(),
        json.dumps({"data": {"names": names, "ndarray": [rows[0][:-1]]}}).encode(),
        json.dumps({"data": {"names": names + ["extra"], "ndarray": [r + [1] for r in rows]}}).encode(),
        json.dumps({"data": {"names": names[1:], "ndarray": [r[1:] for r in rows]}}).encode(),
        json.dumps({"data": {"names": names, "ndarray": [rows[0]] * 20_001}}).encode(),
        json.dumps({"data": {"names": names, "tensor": {"shape": [1, 3], "values": [1, 2, 3]}}}).encode(),
        json.dumps({"data": {"names": names, "tensor": {"shape": "x", "values": []}}}).encode(),
        json.dumps({"jsonData": "not a transaction"}).encode(),
        json.dumps({"jsonData": [1, 2]}).encode(),
        json.dumps({"data": {**good, "names": names[:1] * len(names)}}).encode(),
    ]
    for col in range(3, len(names)):  # every numeric column: string, NaN, inf, -inf, bool, list, dict
        for bad in ('"12"', "NaN", "Infinity", "-Infinity", "true", "[1]", '{"a": 1}'):
            row = [json.dumps(v) for v in rows[0]]
            row[col] = bad
            cases.append(f'{{"data": {{"names": {json.dumps(names)}, "ndarray": [[{",".join(row)}]]}}}}'.encode())
    for col in range(3):  # categoricals must be strings
        for bad in (1, 2.5, [1], {"a": 1}):
            row = list(rows[0])
            row[col] = bad
            cases.append(json.dumps({"data": {"names": names, "ndarray": [row]}}).encode())
    return cases


def test_hostile_payloads_get_4xx_and_service_keeps_serving(stack):
    _, url, _ = stack
    cases = hostile_payloads()
    assert len(cases) >= 100
    h = {**headers(), "Content-Type": "application/json"}
    with requests.Session() as s:
        for i, payload in enumerate(cases):
            r = s.post(url, data=payload, headers=h)
            assert 400 <= r.status_code < 500, (i, payload[:120], r.status_code, r.text[:200])
            assert "info" in r.text
    big = requests.post(url, data=b"x" * (9 << 20), headers=h)
    assert big.status_code == 413
    assert requests.post(url, json=body(4), headers=headers()).status_code == 200


def test_metrics_exposition(stack):
    target, _, _ = stack
    text = target.ingress_metrics()
    for family in (
        "seldon_ingress_requests_total",
        "seldon_ingress_request_duration_seconds_bucket",
        "seldon_ingress_in_flight_requests",
        "seldon_ingress_score_bucket",
        "seldon_ingress_traffic_weight",
    ):
        assert family in text


def _logged(lake: Path):
    files = list((lake / "prediction_log").glob("date=*/*.parquet"))
    return pq.ParquetDataset(files).read().to_pandas() if files else None


def test_prediction_log_conservation_across_restart(stack):
    target, url, root = stack
    lake = root / "lake"
    before = _logged(lake)
    n_before = 0 if before is None else before.request_id.nunique()
    answered = collections.Counter()

    def call(i):
        r = requests.post(url, json=body(1 + i % 3, i), headers=headers(**{"Seldon-Puid": f"log-{i}"}))
        return r.status_code, 1 + i % 3

    with ThreadPoolExecutor(16) as pool:
        for status, rows in pool.map(call, range(600)):
            answered[status] += 1
            answered["rows"] += rows if status == 200 else 0
    # a clean restart of the ingress (SIGTERM) drains its queue; the runtime starts it again
    pid = int(subprocess.check_output(["pgrep", "-f", f"seldon.ingress --manifest {target.manifest_path}"]).split()[0])
    os.kill(pid, 15)
    time.sleep(1.0)
    _wait_ingress(url)
    for i in range(600, 700):
        status, rows = call(i)
        answered[status] += 1
        answered["rows"] += rows if status == 200 else 0
    target.stop_runtime()  # clean shutdown of everything
    log = _logged(lake)
    assert log is not None
    mine = log[log.request_id.str.startswith("log-")]
    assert mine.request_id.nunique() == answered[200] == 700
    assert len(mine) == answered["rows"]
    assert set(mine.columns) >= {
        "request_id",
        "ts",
        "subject",
        "deployment",
        "predictor",
        "model_version",
        "features",
        "score",
        "latency_ms",
    }
    assert json.loads(mine.features.iloc[0])["category"]
    assert log.request_id.nunique() >= n_before
    target.apply(mf.load(target.manifest_path))  # bring the stack back for any later test
    _wait_ingress(url)


def test_tls_when_certificate_configured(tmp_path, stack):
    target, _, _ = stack
    cert, key = _self_signed(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        [
            str(SERVING_PY),
            "-X",
            "faulthandler",
            "-m",
            "seldon.ingress",
            "--manifest",
            str(target.manifest_path),
            "--endpoints",
            str(target.state_dir / "endpoints.json"),
            "--port",
            str(port),
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"https://127.0.0.1:{port}/seldon/default/fraud/api/v1.0/predictions"
        deadline = time.monotonic() + 20
        while True:
            try:
                r = requests.post(url, json=body(), headers=headers(), verify=str(cert))
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert r.status_code == 200
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert SECRET not in err.decode() and "Bearer" not in err.decode()


# ------------------------------------------------------------ the prediction log's writer, in-process
def _reference_features(body: bytes) -> list:
    """What the per-row writer logged: one json.dumps per row."""
    from seldon.predlog_encoding import feature_rows

    return [json.dumps(row) for row in feature_rows(body)]


def _odd_bodies() -> list:
    import random

    names, rows = sample_rows(50, seed=3)
    out = [
        {"data": {"names": names, "ndarray": rows}},
        {"data": {"names": names, "tensor": {"shape": [50, len(names)], "values": [v for r in rows for v in r]}}},
        {"jsonData": {"user_id": 1, "amount": 2.5, "country": "FR"}},
        {"jsonData": {"transactions": [{"user_id": 1}, {"user_id": 2, "x": None}]}},
        {"data": {"names": [], "ndarray": [[1, 2]]}},
        {"data": {"ndarray": [[1, 2]]}},
        [1, 2],
        {"foo": 1},
        {"data": {"names": ["a", "a"], "ndarray": [[1, 2]]}},
        {"data": {"names": ["a", "b"], "ndarray": [[1], [2, 3]]}},
    ]
    strings = ["grocery", "é", 'q"uote', "back\\slash", "new\nline", "\u2028", "del\x7f", "x, y", "%s", "}, {", ""]
    for s_ in strings:  # strings that json.dumps escapes and ones it does not
        out.append({"data": {"names": ["s", "n"], "ndarray": [[s_, 1.5], [None, None], ["plain", 2]]}})
    magnitudes = [
        0.0,
        -0.0,
        1e-300,
        5e-324,
        1e-5,
        9.99e-5,
        1e-4,
        0.1,
        1 / 3,
        1.0,
        12.5,
        1e9,
        9999999999.5,
        1e10,
        1e15,
        1.5e16,
        1e300,
        float("nan"),
        float("inf"),
    ]
    for m in magnitudes:  # floats either side of the range Arrow formats like repr
        out.append({"data": {"names": ["x", "y"], "ndarray": [[m, -m], [2.25, None], [3.0, 4.0]]}})
    out.append(
        {
            "data": {
                "names": ["i", "f", "b", "mix"],
                "ndarray": [[2**70, 1.0, True, 1], [-3, 2.5, False, 1.5], [None, None, None, "s"]],
            }
        }
    )
    rng = random.Random(5)
    pool = [None, True, 0, -7, 1.5, 1e17, "a", "é", [1, {"k": "v"}], {"a": 1}]
    for _ in range(200):
        width, n = rng.randint(1, 5), rng.randint(1, 4)
        names_ = rng.sample(["a", "b", "c%d", 'q"', "é", "k"], width)
        rows_ = [[rng.choice(pool) for _ in range(width)] for _ in range(n)]
        flat = [v for r in rows_ for v in r]
        out.append(
            {"data": {"names": names_, "ndarray": rows_}}
            if rng.random() < 0.5
            else {"data": {"names": names_, "tensor": {"shape": [n, width], "values": flat}}}
        )
    return out


def test_log_features_are_byte_identical_to_per_row_json():
    from seldon.predlog_encoding import FeatureEncoder, feature_json

    bodies = [json.dumps(b).encode() for b in _odd_bodies()] + [b"not json", b"", b"[" * 50_000]
    for b in bodies:
        assert feature_json(b).to_pylist() == _reference_features(b), b[:200]
    # a flush's requests together, with the answered row counts (null-padded, or cut, like before)
    encoder, expected = FeatureEncoder(chunk_rows=64), []
    for i, b in enumerate(bodies[:60] * 3):
        n = len(_reference_features(b)) + (i % 3 == 2) - (i % 5 == 4)
        encoder.add(b, max(n, 0))
        ref = _reference_features(b)[: max(n, 0)]
        expected += ref + [None] * (max(n, 0) - len(ref))
    assert encoder.finish().to_pylist() == expected


def test_arrow_float_text_is_repr_within_its_range():
    """The range `seldon.predlog_encoding` trusts Arrow's float formatting in: same text as repr (+ '.0')."""
    import numpy as np
    import pyarrow as pa

    from seldon.predlog_encoding import _ARROW_FLOAT_RANGE

    rng = np.random.default_rng(0)
    lo, hi = (int(np.log10(b)) for b in _ARROW_FLOAT_RANGE)
    for e in range(lo, hi):
        low, high = 10.0**e, 10.0 ** (e + 1)
        x = np.concatenate(
            [
                rng.uniform(low, high, 20_000),
                np.round(rng.uniform(1, 10, 2_000), 2) * low,
                np.floor(rng.uniform(low, high, 2_000)),
                [low, np.nextafter(high, 0)],
            ]
        )
        x = x[(x >= low) & (x < high)]
        values = np.concatenate([x, -x]).tolist()
        text = [t if "." in t else t + ".0" for t in pa.array(values, pa.float64()).cast(pa.string()).to_pylist()]
        assert text == [repr(v) for v in values], e


def _log_items(n_requests: int, rows: int = 3):
    names, sample = sample_rows(rows * n_requests, seed=9)
    for i in range(n_requests):
        body_ = json.dumps({"data": {"names": names, "ndarray": sample[i * rows : (i + 1) * rows]}}).encode()
        yield f"r{i}", "sub", "fraud", "main", "1", body_, [0.25] * rows, 0.002


def test_log_back_pressure_refuses_after_timeout_and_loses_nothing(tmp_path):
    import threading

    from seldon.predlog import LogFull, PredictionLog

    gate, stuck = threading.Event(), threading.Event()
    plog = PredictionLog(tmp_path, max_queue=2, flush_interval_s=0.05, put_timeout_s=0.2, writers=1)
    write = plog._write
    plog._write = lambda day, items: (stuck.set(), gate.wait(), write(day, items))[-1]
    items = list(_log_items(12))
    plog.record(*items[0])
    assert stuck.wait(5)  # the writer is stuck: the next batch waits for it, then the queue fills
    accepted, refused = 1, 0
    for item in items[1:]:
        time.sleep(0.1)
        t0 = time.monotonic()
        try:
            plog.record(*item)
            accepted += 1
        except LogFull:
            refused += 1
            assert time.monotonic() - t0 >= 0.2  # blocked for the put timeout before refusing
    assert refused > 0 and plog.rejected == refused and accepted >= 3, (accepted, refused)
    gate.set()
    plog.close()
    table = pq.ParquetDataset(list((tmp_path / "prediction_log").glob("date=*/*.parquet"))).read()
    assert table.num_rows == plog.rows_written == 3 * accepted
    assert len(set(table.column("request_id").to_pylist())) == accepted


def test_log_back_pressure_on_bytes(tmp_path):
    """Big bodies: the bytes held unwritten are bounded too (a slow writer means 503s, not memory)."""
    import threading

    from seldon.predlog import LogFull, PredictionLog

    items = list(_log_items(6, rows=40))
    size = max(len(item[5]) for item in items)
    gate = threading.Event()
    plog = PredictionLog(tmp_path, flush_interval_s=0.05, put_timeout_s=0.2, max_queue_bytes=int(2.5 * size))
    write = plog._write
    plog._write = lambda day, items: (gate.wait(), write(day, items))[-1]
    outcome = []
    for item in items:
        try:
            plog.record(*item)
            outcome.append("ok")
        except LogFull:
            outcome.append("full")
    assert outcome == ["ok", "ok", "full", "full", "full", "full"]
    assert plog.queued_bytes == len(items[0][5]) + len(items[1][5])
    gate.set()
    plog.close()
    assert plog.rows_written == 80 and plog.queued_bytes == 0


def test_log_failed_write_is_retried_and_schema_unchanged(tmp_path):
    import pyarrow as pa

    from seldon.predlog import PredictionLog

    plog = PredictionLog(tmp_path, flush_interval_s=0.05)
    write, failures = plog._write, []

    def flaky(day, items):
        if not failures:
            failures.append(1)
            raise OSError("disk full")
        return write(day, items)

    plog._write = flaky
    items = list(_log_items(20))
    for item in items:
        plog.record(*item)
    plog.close()
    assert plog.write_errors == 1 and plog.rows_written == 60
    table = pq.ParquetDataset(list((tmp_path / "prediction_log").glob("date=*/*.parquet"))).read()
    assert table.schema.remove_metadata() == pa.schema(
        [
            ("request_id", pa.string()),
            ("row", pa.int32()),
            ("ts", pa.timestamp("us", tz="UTC")),
            ("subject", pa.string()),
            ("deployment", pa.string()),
            ("predictor", pa.string()),
            ("model_version", pa.string()),
            ("features", pa.string()),
            ("score", pa.float32()),
            ("latency_ms", pa.float64()),
            ("model_features", pa.string()),  # the rows the model scored (raw transactions); appended
            ("date", table.schema.field("date").type),
        ]
    )
    rows = sorted(table.to_pylist(), key=lambda r: (int(r["request_id"][1:]), r["row"]))
    assert [r["features"] for r in rows] == [f for item in items for f in _reference_features(item[5])]
    assert {r["latency_ms"] for r in rows} == {2.0} and {r["score"] for r in rows} == {0.25}


def test_log_survives_its_writer_process_dying(tmp_path):
    import signal

    from seldon.predlog import PredictionLog

    plog = PredictionLog(tmp_path, flush_interval_s=0.05)
    items = list(_log_items(30))
    for item in items[:10]:
        plog.record(*item)
    deadline = time.monotonic() + 30
    while plog.rows_written < 30 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert plog.rows_written == 30  # written by the writer process
    for pool in plog._pools:
        for pid in list((pool._processes or {}) if pool else {}):
            os.kill(pid, signal.SIGKILL)
    for item in items[10:]:
        plog.record(*item)
    plog.close()
    table = pq.ParquetDataset(list((tmp_path / "prediction_log").glob("date=*/*.parquet"))).read()
    assert table.num_rows == plog.rows_written == 90
    assert sorted(set(table.column("request_id").to_pylist())) == sorted(item[0] for item in items)


def test_monitoring_reads_the_log_the_ingress_writes(tmp_path):
    """monitoring/data.py's reader (DuckDB json_transform over `features`) on the writer's files."""
    import datetime as dt

    from monitoring.data import read_prediction_window
    from resources import Lake
    from seldon.predlog import PredictionLog

    plog = PredictionLog(tmp_path / "lake")
    items = list(_log_items(5, rows=4))
    for item in items:
        plog.record(*item)
    plog.close()
    day = dt.datetime.now(dt.UTC).date().isoformat()
    frame, total = read_prediction_window(
        Lake(root=str(tmp_path / "lake")), [day], ["category", "country"], ["amount", "user_txn_count_24h"]
    )
    sent = [
        dict(zip(json.loads(item[5])["data"]["names"], row, strict=True))
        for item in items
        for row in json.loads(item[5])["data"]["ndarray"]
    ]
    assert total == 20
    assert sorted(frame["amount"]) == sorted(r["amount"] for r in sent)
    assert sorted(frame["category"]) == sorted(r["category"] for r in sent)


def _self_signed(tmp_path):
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
