"""Monitoring assets: model_performance against a hand computation, drift_report's Evidently HTML,
lake rows and reference handling, and the retraining job's selection against the real graph."""

import datetime as dt
import json
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from assets import monitoring
from driftline import report_links
from resources import SyntheticEventSource
from testkit.simulate import register_stand_in_champion, write_prediction_log, write_reference

ASSETS = [monitoring.prediction_log, monitoring.drift_report, monitoring.model_performance]


@pytest.fixture(scope="module")
def env(tmp_path_factory, make_resources):
    root = tmp_path_factory.mktemp("monitoring")
    source = SyntheticEventSource(
        seed=3,
        n_users=400,
        n_merchants=90,
        events_per_day=1_200,
        fraud_rate=0.02,
        drift_scenario="covariate",
        drift_start="2026-10-15",
    )
    resources = make_resources(root, event_source=source)
    version = register_stand_in_champion(resources["mlflow_registry"])
    return {"root": root, "resources": resources, "version": version, "instance": dg.DagsterInstance.ephemeral()}


def _meta(result, key):
    for e in result.get_asset_materialization_events():
        if e.asset_key.to_user_string() == key:
            return {k: v.value for k, v in e.materialization.metadata.items()}
    raise KeyError(key)


def _declared(table: str) -> list[tuple[str, str]]:
    """The column schema the Dagster UI shows for `table` (assets/conventions.py)."""
    from assets.conventions import column_schemas

    return [(c.name, c.type) for c in column_schemas()[table].columns]


def _file_columns(table: pa.Table) -> list[tuple[str, str]]:
    from assets.conventions import arrow_type_name

    return [(f.name, arrow_type_name(f.type)) for f in table.schema if f.name != "date"]  # date: the partition


def _tx(ids, day):
    n = len(ids)
    return pd.DataFrame(
        {
            "event_id": ids,
            "user_id": range(n),
            "merchant_id": range(n),
            "amount": [10.0] * n,
            "category": ["grocery"] * n,
            "country": ["FR"] * n,
            "channel": ["pos"] * n,
            "event_ts": pd.to_datetime([f"{day} 12:00:00"] * n),
        }
    )


def _labels(lake, day, ids):
    lake.write_partition(
        "raw_labels",
        day,
        pa.table(
            {
                "event_id": pa.array(ids, pa.string()),
                "is_fraud": pa.array([True] * len(ids)),
                "label_ts": pa.array([pd.Timestamp(f"{day} 08:00")] * len(ids), pa.timestamp("us")),
            }
        ),
    )


def test_model_performance_matches_a_hand_computation(env):
    res, lake = env["resources"], env["resources"]["lake"]
    pred = dt.date(2026, 10, 5)
    evaluation = pred + dt.timedelta(days=monitoring.LABEL_MATURITY_DAYS)
    day = pred.isoformat()
    write_prediction_log(lake.root, day, _tx(list("abcdef"), day), np.array([0.9, 0.8, 0.7, 0.6, 0.2, 0.1]), "1")
    write_prediction_log(lake.root, day, _tx(list("ghij"), day), np.array([0.95, 0.3, 0.6, 0.1]), "2", "canary")
    _labels(lake, (pred + dt.timedelta(days=2)).isoformat(), ["a", "c", "e"])
    _labels(lake, (pred + dt.timedelta(days=3)).isoformat(), ["g"])
    _labels(lake, (evaluation + dt.timedelta(days=1)).isoformat(), ["i"])  # known only after the evaluation day
    result = dg.materialize(
        ASSETS,
        selection=[monitoring.model_performance],
        partition_key=evaluation.isoformat(),
        resources=res,
        instance=env["instance"],
    )
    meta = _meta(result, "model_performance")
    # v1, by score: a+ b- c+ d- e+ f-  -> AP = (1/1 + 2/3 + 3/5) / 3; flagged (>= 0.5) a b c d
    assert meta["v1/pr_auc"] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    assert meta["v1/recall"] == pytest.approx(2 / 3) and meta["v1/precision"] == pytest.approx(2 / 4)
    # v2: g+ (0.95) first -> AP 1; flagged g and i (i's chargeback comes too late to count)
    assert meta["v2/pr_auc"] == pytest.approx(1.0)
    assert meta["v2/recall"] == pytest.approx(1.0) and meta["v2/precision"] == pytest.approx(0.5)
    assert meta["champion_version"] == env["version"] == "1"
    assert meta["champion_pr_auc"] == meta["v1/pr_auc"] and meta["champion_positives"] == 3
    table = lake.read_partition("model_performance", evaluation.isoformat())
    rows = table.to_pandas()
    assert set(zip(rows["prediction_date"], rows["model_version"], strict=True)) == {(day, "1"), (day, "2")}
    # the UI's column schema is what the file holds, and every column is filled
    assert _declared("model_performance") == _file_columns(table)
    assert not [c for c in table.column_names if table.column(c).null_count == len(table)]


def test_drift_report_saves_evidently_html_and_a_lake_row_per_feature(env):
    res, lake = env["resources"], env["resources"]["lake"]
    world = res["event_source"].world()
    write_reference(lake, world, [dt.date(2026, 10, 1) + dt.timedelta(days=k) for k in range(7)], env["version"])
    day = dt.date(2026, 10, 20)
    tx = world.transactions(day)
    write_prediction_log(lake.root, day.isoformat(), tx, np.full(len(tx), 0.1), env["version"])
    metas = {}
    for engine in ("numpy", "evidently"):
        result = dg.materialize(
            ASSETS,
            selection=[monitoring.drift_report],
            partition_key=day.isoformat(),
            resources=res,
            instance=env["instance"],
            run_config={"ops": {"drift_report": {"config": {"engine": engine}}}},
        )
        metas[engine] = _meta(result, "drift_report")
    meta = metas["evidently"]
    html = env["root"] / "reports" / "drift" / f"{day}.html"
    # an http link, served from the data dir's reports/ by `make dev` (file:// does not open from the UI)
    base = report_links.reports_base_url()
    assert meta["report"] == str(html) and meta["report_url"] == f"{base}/drift/{day}.html"
    assert base.startswith("http://")
    text = html.read_text()
    assert "Wasserstein distance (normed)" in text and "Jensen-Shannon distance" in text
    assert meta["drifted"] and {"amount", "country"} <= set(meta["drifted_features"])
    assert meta["reference_model_version"] == env["version"] and meta["current_rows"] == len(tx)
    for name, score in metas["numpy"]["scores"].items():  # same statistics, whichever engine
        assert meta["scores"][name] == pytest.approx(score, abs=1e-4)
    table = lake.read_partition("drift_report", day.isoformat())
    rows = table.to_pandas()
    assert set(rows["feature"]) == set(meta["scores"]) and rows["window_drifted"].all()
    assert _declared("drift_report") == _file_columns(table)
    assert not [c for c in table.column_names if table.column(c).null_count == len(table)]
    seen = res["warehouse"].query("select feature, score from drift_report where date = '2026-10-20'")
    assert len(seen) == len(rows)  # analysts see it through the warehouse view


def test_reference_comes_from_the_training_set_once_then_stays(env, tmp_path, make_resources):
    from monitoring.data import reference_frame

    res = make_resources(tmp_path)
    lake = res["lake"]
    world = env["resources"]["event_source"].world()
    train = world.transactions(dt.date(2026, 10, 2))
    lake.write_partition_file(
        lake.table_dir("training_set") / "split=train" / "data.parquet",
        pa.Table.from_pandas(train, preserve_index=False),
    )
    frame, source = reference_frame(lake, None, "7", cap=500)
    assert source.startswith("training_set train split") and len(frame) == 500
    lake.write_partition_file(
        lake.table_dir("training_set") / "split=train" / "data.parquet",
        pa.Table.from_pandas(train.head(10), preserve_index=False),
    )  # a later retraining
    again, source = reference_frame(lake, None, "7", cap=500)
    assert source == "drift_reference/model_version=7" and again["event_id"].tolist() == frame["event_id"].tolist()


def test_retrain_job_and_sensor_resolve_against_the_whole_graph():
    import definitions
    from sensors.drift import RETRAIN_ASSETS, build_drift_sensor, retrain_job

    mine = {"prediction_log", "drift_report", "model_performance"}
    assert definitions.defs.assets is not None
    assets = [a for a in definitions.defs.assets if not {k.to_user_string() for k in _keys(a)} & mine] + ASSETS
    defs = dg.Definitions(
        assets=assets, jobs=[retrain_job], sensors=[build_drift_sensor()], resources=definitions.RESOURCES
    )
    job = defs.resolve_job_def("retrain_job")
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} == set(RETRAIN_ASSETS)
    from sensors.drift import RetrainPolicy

    dg.validate_run_config(job, {"ops": {"training_set": {"config": RetrainPolicy().training_set}}})
    graph = defs.resolve_asset_graph()
    assert dg.AssetKey("prediction_log") in graph.get(dg.AssetKey("drift_report")).parent_keys


def _keys(asset):
    return asset.keys if hasattr(asset, "keys") else {asset.key}


def test_drift_report_config_takes_its_defaults_from_drift_config():
    """One source of drift defaults (monitoring/drift.py): the run config builds the dataclass."""
    from monitoring.drift import DriftConfig

    assert monitoring.DriftReportConfig().drift_config() == DriftConfig()
    changed = monitoring.DriftReportConfig(min_rows=5, drift_share=0.5).drift_config()
    assert (changed.min_rows, changed.drift_share, changed.num_threshold) == (5, 0.5, DriftConfig().num_threshold)


# ------------------------------------------------------------ what the model saw, monitored
@pytest.fixture(scope="module")
def served_env(tmp_path_factory, make_resources):
    """A champion with a real serving artifact (testkit's small v1 model) and its reference:
    rows over every model input, as the training split holds them."""
    from monitoring.data import reference_url
    from resources.mlflow_registry import CHAMPION
    from testkit.artifacts import sample_rows
    from testkit.registry import register_version

    root = tmp_path_factory.mktemp("served")
    resources = make_resources(root)
    registry = resources["mlflow_registry"]
    version = register_version(registry, root, seed=4)
    registry.set_alias(CHAMPION, version)
    names, rows = sample_rows(3000, seed=1)
    reference = pd.DataFrame(rows, columns=names)
    lake = resources["lake"]
    lake.write_partition_file(reference_url(lake, version), pa.Table.from_pandas(reference, preserve_index=False))
    return {"root": root, "resources": resources, "version": version, "names": names}


def _log_served_day(env, day: str, seed: int, shift: float = 1.0) -> int:
    """A day of raw-transaction requests as the ingress logs them: each body the client's
    transaction, beside it the row the model scored (the served features), and its real score."""
    import tempfile

    from monitoring.data import champion_model
    from seldon.predlog_file import write_file
    from testkit.artifacts import sample_rows

    names, rows = sample_rows(1200, seed=seed)
    rows = [[v * shift if isinstance(v, float) else v for v in row] for row in rows]
    with tempfile.TemporaryDirectory() as tmp:
        model = champion_model(env["resources"]["mlflow_registry"], env["version"], tmp)
    assert model is not None
    scores = model.score_columns({n: [r[j] for r in rows] for j, n in enumerate(names)}).tolist()
    items = []
    for i in range(0, len(rows), 4):  # 4 transactions a request
        chunk = rows[i : i + 4]
        body = {
            "jsonData": [{"event_id": f"{day}-{i + k}", "user_id": i + k, "amount": r[3]} for k, r in enumerate(chunk)]
        }
        ts = dt.datetime.fromisoformat(f"{day}T12:00:00+00:00").timestamp()
        items.append(
            (
                f"{day}-{i}",
                ts,
                "sub",
                "fraud",
                "main",
                env["version"],
                json.dumps(body).encode(),
                scores[i : i + 4],
                0.001,
            )
            + ({"names": names, "ndarray": chunk},)
        )
    write_file(str(env["resources"]["lake"].root), day, items)
    return len(rows)


def _materialize_drift(env, day: str) -> tuple[Any, Any]:
    result = dg.materialize(
        [*ASSETS, monitoring.drift_check],
        selection=dg.AssetSelection.assets(monitoring.drift_report),
        partition_key=day,
        resources=env["resources"],
        run_config={"ops": {"drift_report": {"config": {"engine": "numpy"}}}},
    )
    checks = result.get_asset_check_evaluations()
    return _meta(result, "drift_report"), checks


def test_drift_report_monitors_every_model_feature_and_the_score(served_env):
    """The log's `model_features` (the served features the model scored) cover every input:
    nothing is unmonitored, the score distribution is judged against the champion's scores of
    its reference; the WARN check follows the window's decision."""
    env = served_env
    n = _log_served_day(env, "2026-10-05", seed=2)
    meta, checks = _materialize_drift(env, "2026-10-05")
    expected = [f for f in env["names"] if f != "day_of_week"] + ["score"]
    assert meta["current_rows"] == n and meta["unmonitored_features"] == []
    assert sorted(meta["monitored_features"]) == sorted(expected) and sorted(meta["scores"]) == sorted(expected)
    assert meta["score_monitored"] and not meta["drifted"], meta["reason"]
    (check,) = checks
    assert check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.asset_check_key.name == "served_inputs_within_drift_limits"

    _log_served_day(env, "2026-10-06", seed=3, shift=3.0)  # every served number tripled
    meta, checks = _materialize_drift(env, "2026-10-06")
    assert meta["drifted"] and "score" in meta["scores"]
    assert {"amount", "user_amount_sum_7d"} <= set(meta["drifted_features"])
    (check,) = checks
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    drifted: Any = check.metadata["drifted_features"].value
    assert set(drifted) == set(meta["drifted_features"])


def test_drift_report_reads_logs_written_before_the_model_rows_were_kept(served_env, tmp_path):
    """Backward compatibility: files without `model_features` (raw transactions logged as sent)
    are still read; only the request's fields are judged then, the rest named unmonitored."""
    env = served_env
    world = SyntheticEventSource(seed=3, n_users=400, n_merchants=90, events_per_day=900).world()
    day = dt.date(2026, 10, 7)
    tx = world.transactions(day)
    write_prediction_log(env["resources"]["lake"], day.isoformat(), tx, np.full(len(tx), 0.1), env["version"])
    meta, _ = _materialize_drift(env, day.isoformat())
    assert meta["current_rows"] == len(tx)
    assert {"amount", "category", "hour_of_day", "score"} <= set(meta["monitored_features"])
    assert "user_txn_count_24h" in meta["unmonitored_features"]
