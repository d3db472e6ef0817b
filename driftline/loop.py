"""The phases of `make demo`, each reported on the timeline with its evidence."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from driftline import spec
from driftline.pipeline import pick as _pick

if TYPE_CHECKING:
    import dagster as dg

ROOT = Path(__file__).resolve().parents[1]
DEMO_TOKEN_TTL_S = 3600
# The demo's own streams (deleted at its start, so a run replays nothing of the last one).
DEMO_STREAM_PREFIX = "driftline-demo"
STREAM_READY_S = 180  # the worker's lake bootstrap runs meanwhile training; this bounds the wait after


def _meta(result, key: str) -> dict:
    for e in result.get_asset_materialization_events():
        if e.asset_key.to_user_string() == key:
            return {k: v.value for k, v in e.materialization.metadata.items()}
    return {}


def _latest(instance, key: str, after: float = 0.0) -> list[dict]:
    import dagster as dg

    records = instance.fetch_materializations(dg.AssetKey(key), limit=100).records
    out = []
    for r in sorted(records, key=lambda r: r.storage_id):
        if r.timestamp >= after:
            meta = {k: v.value for k, v in r.asset_materialization.metadata.items()}
            out.append({"ts": r.timestamp, "partition": r.partition_key, "run_id": r.run_id, **meta})
    return out


def _wait(predicate, timeout_s: float, every_s: float = 2.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    return None


def run_loop(profile: dict, data_dir: Path, env: dict, today: dt.date, log) -> int:
    """The demo's phases against a clean data dir; 0 when the loop closed (retraining ran)."""
    import dagster as dg

    import definitions
    from driftline.pipeline import run_data_plane, run_training
    from driftline.traffic import Traffic, transaction_payloads
    from seldon.auth import mint_token

    instance = dg.DagsterInstance.get()
    assets, resources = _asset_definitions(definitions.defs), definitions.RESOURCES
    target, registry, source = resources["seldon_target"], resources["mlflow_registry"], resources["event_source"]
    days = [(today - dt.timedelta(days=k)).isoformat() for k in range(profile["days"], 0, -1)]
    tags = {"driftline/trigger": "demo"}
    daemon = traffic = stream = None
    try:
        log(f"1. {len(days)} days of normal traffic ({days[0]}..{days[-1]}) from {source.describe()}")
        run_data_plane(assets, resources, days, instance=instance, tags=tags)
        stream = _start_stream_worker(env, log)  # before the next line: it starts the training bar
        log("   raw events validated, features, daily snapshots, Feast online store loaded")
        # The first champion serves daily snapshots (fraud_model_v1); the drift retrain trains on v2.
        first = {"ops": {"fraud_model": {"config": {"feature_service": spec.FEATURE_SERVICE}}}}
        result = run_training(assets, resources, instance=instance, tags=tags, run_config=first)
        model, evaluation = _meta(result, "fraud_model"), _meta(result, "model_evaluation")
        log(
            f"2. fraud_model v{model.get('model_version')}: test PR-AUC {model.get('test_pr_auc', 0):.3f} "
            f"(prevalence {model.get('test_prevalence', 0):.4f}); evaluation: {evaluation.get('decision')}: "
            f"{evaluation.get('reason')}"
        )
        if registry.version_for_alias("champion") is None:
            log("   no champion passed the evaluation gate: stopping here")
            return 1
        dg.materialize(
            assets, selection=_pick(assets, "seldon_deployment"), resources=resources, instance=instance, tags=tags
        )
        log(
            f"3. serving stack up at {target.ingress_url}: champion v{registry.version_for_alias('champion').version} "
            f"(predictors seldon-core-microservice, ingress with JWT, prediction log)"
        )

        # The daemon writes to its own copy of the log's descriptor: ours is closed once it started.
        with open(data_dir / "dagster_home" / "daemon.log", "w") as daemon_log:
            daemon = subprocess.Popen(
                [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
                cwd=ROOT,
                env={**os.environ, **env},
                stdout=daemon_log,
                stderr=subprocess.STDOUT,
            )
        log(
            f"4. dagster-daemon started (pid {daemon.pid}): drift_sensor and canary_sensor every "
            f"{env['DRIFTLINE_SENSOR_INTERVAL_S']} s"
        )

        token = mint_token(
            env["DRIFTLINE_INGRESS_JWT_SECRET"], scopes="predict", subject="demo-client", ttl_s=DEMO_TOKEN_TTL_S
        )
        traffic = Traffic(target.ingress_url, token)
        # Today's traffic as it would have been without drift. The online store holds the snapshot as of
        # the end of yesterday, as in production: requests come after it.
        normal = source.model_copy(update={"drift_scenario": "none"}).read("transactions", today)
        status = traffic.send(transaction_payloads(normal, profile["normal_rows"]))
        report = _drift_report(assets, resources, instance, today, tags)
        log(
            f"5. normal traffic ({sum(status.values())} requests, status {status}); drift_report {today}: "
            f"drifted={report.get('drifted')}, share {report.get('share_drifted')}"
        )

        started = time.time()
        # Today's raw events and features land (the retraining reads them); today's snapshot is not
        # loaded online until the day is over.
        dg.materialize(
            assets,
            selection=_pick(assets, "raw_transactions", "raw_labels", "transaction_features"),
            partition_key=today.isoformat(),
            resources=resources,
            instance=instance,
            tags=tags,
        )
        drifted = source.read("transactions", today)
        if stream:
            _publish_day(stream, drifted, env, log)
        payloads = transaction_payloads(drifted, profile["drift_rows"])
        status = traffic.send(payloads)
        report = _drift_report(assets, resources, instance, today, tags)
        log(
            f"6. the world drifts ({env['DRIFTLINE_DRIFT_SCENARIO']}): {sum(status.values())} requests of today's "
            f"transactions; drift_report {today}: drifted={report.get('drifted')}, "
            f"share {report.get('share_drifted')}, features {report.get('drifted_features')}"
        )
        traffic.start_loop(payloads)

        run = _wait(lambda: _retrain_run(instance, started), profile["wait_s"] / 2)
        if not run:
            log("   drift_sensor requested no retraining in time (see the daemon log)")
            return 1
        log(
            f"7. drift_sensor requested retrain_job (run {run.run_id[:8]}, key {run.tags.get('dagster/run_key')}, "
            f"reason: {run.tags.get('driftline/reason')})"
        )
        done = _wait(lambda: _finished(instance, run.run_id), profile["wait_s"])
        log(f"   retrain_job {done.status.value if done else 'still running'}")
        for e in _latest(instance, "model_evaluation", started):
            log(f"   model_evaluation: {e.get('decision')}: {e.get('reason')}")
        deployed = [e for e in _latest(instance, "seldon_deployment", started) if e.get("summary")]
        for e in deployed:
            log(f"   seldon_deployment: {e['summary']}", at=e["ts"])
        canary = [e for e in deployed if "canary" in e.get("summary", "")]
        if canary:
            log(
                f"   drift-to-canary time: {canary[0]['ts'] - started:.1f} s (drifted partition landed -> "
                f"challenger takes canary traffic)"
            )
            outcome = _wait(lambda: _rollout_outcome(instance, started), profile["wait_s"])
            for e in _latest(instance, "seldon_deployment", started)[len(deployed) :]:
                log(f"8. canary_sensor: {e.get('summary')} ({e.get('reason')}; figures {e.get('figures')})", at=e["ts"])
            log(f"   outcome: {outcome or 'undecided within the wait'}; registry aliases {registry.aliases()}")
        else:
            log(f"   no canary: the challenger did not pass evaluation; registry aliases {registry.aliases()}")
        if stream:
            _burst(registry, Path(target.feast_repo), drifted, data_dir, env, log)
        traffic.stop()
        log(f"   traffic answered by predictor {traffic.by_predictor}, status {traffic.status}")
        _where_to_look(log, data_dir, resources, today)
        return 0
    finally:
        if traffic:
            traffic.stop()
        if stream:
            log(f"stopped the stream worker (exit {stream.stop()}; its log: {stream.log_path})")
        if daemon:
            daemon.terminate()
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
        target.stop_runtime()
        log("stopped the daemon and the serving stack")


def _start_stream_worker(env: dict, log):
    """The stream worker on the demo's streams, bootstrapping from the lake meanwhile; None (said
    on the timeline) when the broker is unreachable: the demo goes on without the streaming part."""
    from driftline.stream_service import WorkerNotStarted, reset_streams, start_stream_worker

    try:
        if problem := reset_streams(DEMO_STREAM_PREFIX, env):
            raise WorkerNotStarted(problem)
        worker = start_stream_worker(env, prefix=DEMO_STREAM_PREFIX)
    except Exception as err:  # noqa: BLE001 - WorkerNotStarted, or the broker refused us: the demo goes on
        log(f"   stream worker not started: {err}; going on without the streaming part (v2 reads no fresh state)")
        return None
    log(
        f"   stream worker started (pid {worker.pid}): bootstraps fraud_model_v2's user_recent from the lake, "
        f"then consumes the {DEMO_STREAM_PREFIX}.transactions streams"
    )
    return worker


def _publish_day(stream, frame, env: dict, log) -> None:
    """Today's transactions to the broker, as the payment system publishes them (the lake holds
    the same day), once the worker is consuming."""
    from driftline import settings
    from streaming.bus import open_bus
    from streaming.schema import TOPICS, format_ts

    started = time.monotonic()
    if problem := stream.wait_consuming(STREAM_READY_S):
        log(f"   {problem}: today's transactions not published")
        return
    events = [
        {**e, "event_ts": format_ts(e["event_ts"].to_pydatetime())}
        for e in frame[list(TOPICS["transactions"])].to_dict("records")
    ]
    try:
        with open_bus(settings.get("DRIFTLINE_BROKER_URL", env), prefix=DEMO_STREAM_PREFIX) as bus:
            messages = bus.publish("transactions", events, "driftline-demo")
    except Exception as err:  # noqa: BLE001 - the broker went away or refused: the demo goes on without it
        log(f"   publishing today's transactions failed: {err}")
        return
    log(
        f"   published today's {len(events)} transactions to the broker ({messages} messages, "
        f"{time.monotonic() - started:.1f} s with the worker's bootstrap wait): the v2 online state is fresh"
    )


def _burst(registry, feast_repo: Path, frame, data_dir: Path, env: dict, log) -> None:
    """The card-testing burst (driftline/demo_burst.py); a failure is reported, never fatal."""
    from driftline import settings
    from driftline.demo_burst import demo_burst
    from streaming.bus import open_bus

    started = time.monotonic()
    try:
        with open_bus(settings.get("DRIFTLINE_BROKER_URL", env), prefix=DEMO_STREAM_PREFIX) as bus:
            demo_burst(bus, registry, feast_repo, frame, data_dir / "demo_burst", log)
    except Exception as err:  # noqa: BLE001 - the burst illustrates; the loop has closed already
        log(f"   card-testing burst failed: {type(err).__name__}: {err}")
        return
    log(f"   the burst step took {time.monotonic() - started:.1f} s")


def _asset_definitions(defs: dg.Definitions) -> list[dg.AssetsDefinition | dg.AssetSpec | dg.SourceAsset]:
    """The code location's assets as `dg.materialize` takes them (it cannot run a cacheable
    assets definition; the asset modules define none)."""
    import dagster as dg

    assets = list(defs.assets or [])
    runnable = [a for a in assets if isinstance(a, (dg.AssetsDefinition, dg.AssetSpec, dg.SourceAsset))]
    if len(runnable) != len(assets):
        raise TypeError("the demo cannot materialize cacheable assets definitions")
    return runnable


def _drift_report(assets, resources, instance, today, tags) -> dict:
    import dagster as dg

    time.sleep(2.5)  # the ingress writes the prediction log in batches every second
    result = dg.materialize(
        assets,
        selection=_pick(assets, "drift_report"),
        partition_key=today.isoformat(),
        resources=resources,
        instance=instance,
        tags=tags,
    )
    return _meta(result, "drift_report")


def _retrain_run(instance, after: float):
    import dagster as dg

    runs = instance.get_runs(dg.RunsFilter(job_name="retrain_job"), limit=5)
    return next((r for r in runs if (instance.get_run_stats(r.run_id).enqueued_time or after) >= after - 1), None)


def _finished(instance, run_id: str):
    run = instance.get_run_by_id(run_id)
    return run if run and run.is_finished else None


def _rollout_outcome(instance, after: float):
    for e in _latest(instance, "seldon_deployment", after):
        if e.get("action") in ("promote", "rollback"):
            return f"{e['action']}: {e.get('reason')}"
    return None


def _where_to_look(log, data_dir: Path, resources, today) -> None:
    log("Where to look:")
    log("   Dagster UI: make dev, then http://127.0.0.1:3000 (Lineage; Automation for the sensors' ticks)")
    log("   ingress:    driftline endpoint (its URL and a curl example with a token; make dev serves it)")
    log(
        f"   MLflow UI:  .venv/bin/mlflow ui --backend-store-uri sqlite:///{data_dir}/mlflow.db "
        f"(registered model driftline-fraud, aliases)"
    )
    reports = sorted((data_dir / "reports").rglob("*.html")) if (data_dir / "reports").exists() else []
    log(f"   drift report: {reports[-1] if reports else 'data/reports/'}")
    log(f"   warehouse:  .venv/bin/duckdb -readonly {resources['warehouse'].path}")
    for sql in (
        "select predictor, model_version, count(*) n, round(avg(score), 4) avg_score from prediction_log "
        "group by all order by all",
        "select date, count(*) n, round(avg(amount), 2) avg_amount from raw_transactions group by 1 "
        "order by 1 desc limit 3",
        "select * from drift_report order by 1 desc limit 5",
    ):
        log(f"     {sql}")
