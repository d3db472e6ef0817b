"""`make bench-serving`: the serving path under load, measured with wrk.

Rows: single-row requests at concurrency 1 and 16, through the ingress and straight to the
predictor, beside a bare seldon-core-microservice serving a trivial model (the wrapper's own
floor, started with the predictor's worker and thread settings); 1,000-row batches (rows/s) as
`ndarray` and as flat `tensor` through the ingress (prediction log on) and straight to the
predictor; one raw transaction (jsonData + online features). The raw transaction reads the
Feast online store of data/feast when there is one (`make demo`); otherwise the benchmark
builds a tiny one first (two days of a small synthetic world, ~10 s, under data/bench/serving).

The machine is shared, so every row is measured in BENCH_SERVING_ROUNDS rounds (default 3),
the rows compared with each other back to back within a round (their order alternating
between rounds), after a warm-up of every endpoint. The table shows each row's median over
the rounds; the checks use the median of the per-round differences and ratios, printed with
every round's value. BENCH_SERVING_DURATION: each wrk run (default 4s).
BENCH_SERVING_ONLINE=store (default: predictors read the online store in-process) or server
(predictors call `feast serve`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
from pathlib import Path

from bench.load import DURATION, LogWatch, ensure_wrk, wait_http, wrk

ROOT = Path(__file__).resolve().parents[1]
SERVING_PY = ROOT / ".venv-serving" / "bin" / "python"
SECRET = "bench-secret-bench-secret-bench-secret!"
ROUNDS = int(os.environ.get("BENCH_SERVING_ROUNDS", "3"))
ONLINE = os.environ.get("BENCH_SERVING_ONLINE", "store")


def main():
    sys.path.insert(0, str(ROOT))
    from resources.lake import Lake
    from resources.seldon_target import SeldonTarget
    from seldon import manifest as mf
    from seldon.runtime import free_port
    from testkit.artifacts import build_artifact, sample_rows, small_schema
    from testkit.tokens import token

    ensure_wrk()
    work = ROOT / "data" / "bench" / "serving"
    shutil.rmtree(work, ignore_errors=True)
    os.environ["DRIFTLINE_INGRESS_JWT_SECRET"] = SECRET
    feast_repo = online_store(work)
    art = build_artifact(work / "model", "1", seed=0, schema=small_schema("1"))
    port = free_port()
    target = SeldonTarget(
        serving_dir=str(work / "serving"),
        lake=Lake(root=str(work / "lake")),
        feast_repo=str(feast_repo),
        ingress_url=f"http://127.0.0.1:{port}",
        online_features=ONLINE,
    )
    manifest = mf.render(
        "fraud",
        "default",
        [mf.Predictor("main", "driftline-fraud", "1", str(art), 100, feast_url=target.feast_url)],
        "driftline/serving:bench",
    )
    target.apply(manifest)
    # the bare wrapper runs with the predictor's own process settings (workers, threads, OMP)
    settings = mf.container_env(manifest["spec"]["predictors"][0])
    bare_port = free_port()
    bare_cmd = [
        str(ROOT / ".venv-serving" / "bin" / "seldon-core-microservice"),
        "seldon.faults.TrivialModel",
        "--service-type",
        "MODEL",
        "--http-port",
        str(bare_port),
        "--grpc-port",
        str(free_port()),
        "--metrics-port",
        str(free_port()),
        "--workers",
        settings["GUNICORN_WORKERS"],
    ]
    bare_env = {**os.environ, **{k: settings[k] for k in ("GUNICORN_WORKERS", "GUNICORN_THREADS", "OMP_NUM_THREADS")}}
    bare = subprocess.Popen(
        bare_cmd, cwd=ROOT, start_new_session=True, env=bare_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        direct_port = json.loads((target.state_dir / "endpoints.json").read_text())["predictors"]["main"]["port"]
        ingress = f"http://127.0.0.1:{port}/seldon/default/fraud/api/v1.0/predictions"
        direct = f"http://127.0.0.1:{direct_port}/api/v1.0/predictions"
        wait_http(f"http://127.0.0.1:{port}/live")
        wait_http(f"http://127.0.0.1:{bare_port}/health/ping")

        def bearer(scope: str) -> dict:
            return {"Authorization": "Bearer " + token(SECRET, scope, subject="bench", ttl_s=3600)}

        auth = bearer("predict")
        watch = LogWatch(f"http://127.0.0.1:{port}", bearer("admin"))
        names, rows = sample_rows(1000)
        one = {"data": {"names": names, "ndarray": rows[:1]}}
        batch = {"data": {"names": names, "ndarray": rows}}
        tensor = {
            "data": {
                "names": names,
                "tensor": {"shape": [len(rows), len(names)], "values": [v for row in rows for v in row]},
            }
        }
        trivial = {"data": {"ndarray": [[1.0, 2.0]]}}
        # groups of rows compared with each other: measured back to back in every round
        groups = [
            [
                (
                    f"bare wrapper, trivial model, c={c}",
                    f"http://127.0.0.1:{bare_port}/api/v1.0/predictions",
                    trivial,
                    c,
                    None,
                ),
                (f"predictor direct, 1 row, c={c}", direct, one, c, None),
                (f"ingress, 1 row, c={c}", ingress, one, c, auth),
            ]
            for c in (1, 16)
        ]
        groups += [
            [
                (f"ingress, 1,000-row batch ({kind}), c=4", ingress, body, 4, auth),
                (f"predictor direct, 1,000-row batch ({kind}), c=4", direct, body, 4, None),
            ]
            for kind, body in (("ndarray", batch), ("tensor", tensor))
        ]
        raw = _raw_transaction()
        raw_name = f"ingress, raw jsonData + online features ({target.feast_url.split(':')[0]}), c=1"
        _post(ingress, raw, auth)  # the first request of each worker is not what the target is about
        watch.caught_up(4)
        groups.append([(raw_name, ingress, raw, 1, auth)])

        def run(name, url, body, conns, headers, duration=DURATION) -> dict:
            r = wrk(url, body, conns, headers, duration)
            r["log_s"] = None
            if url == ingress:  # its log catches up before anything else is measured
                rows = 1000 if "1,000" in name else 1
                r["log_s"] = watch.caught_up((r["requests"] - r["errors"]) * rows)
                r["logged_rows_per_s"] = (r["requests"] - r["errors"]) * rows / (r["seconds"] + r["log_s"])
            return r

        for group in groups:  # warm-up: every worker, graph and connection has served before we measure
            for spec in group:
                run(*spec, duration="1s")
        runs: dict[str, list] = {}
        for r in range(ROUNDS):
            for group in groups:
                for spec in group if r % 2 == 0 else group[::-1]:
                    runs.setdefault(spec[0], []).append(run(*spec))
        report(runs, raw_name, watch.written(), watch.answered)
    finally:
        target.stop_runtime()
        os.killpg(bare.pid, signal.SIGTERM)
        try:
            bare.wait(15)
        except subprocess.TimeoutExpired:  # seldon-core's gRPC server process sometimes ignores SIGTERM
            os.killpg(bare.pid, signal.SIGKILL)
            bare.wait()


def online_store(work: Path) -> Path:
    """data/feast (`make demo`) if it has an online store, else a tiny one built here."""
    feast_repo = ROOT / "data" / "feast"
    if (feast_repo / "online_store.db").exists():
        return feast_repo
    import datetime as dt
    import logging

    import definitions
    from driftline.pipeline import run_data_plane
    from resources import SyntheticEventSource
    from testkit.resources import make_resources

    print("no online store in data/feast: building a tiny one (two days of a small synthetic world)")
    logging.getLogger("dagster").setLevel(logging.WARNING)
    plane = work / "plane"
    world = SyntheticEventSource(seed=21, n_users=250, n_merchants=60, events_per_day=500)
    resources = make_resources(plane, event_source=world, start_runtime=False)
    days = [(dt.date(2026, 10, 4) + dt.timedelta(days=k)).isoformat() for k in range(2)]
    assert definitions.defs.assets is not None
    if not run_data_plane(list(definitions.defs.assets), resources, days).success:
        raise RuntimeError("could not build the benchmark's online store")
    return plane / "feast"


def _post(url: str, body: dict, headers: dict):
    import urllib.request

    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json", **headers})
    for _ in range(4):
        urllib.request.urlopen(req, timeout=30).read()


def _raw_transaction() -> dict:
    return {
        "jsonData": {
            "user_id": 1,
            "merchant_id": 1,
            "amount": 42.0,
            "country": "FR",
            "category": "grocery",
            "channel": "pos",
            "event_ts": "2026-10-05T08:00:00",
        }
    }


def _median(values):
    return statistics.median(values)


def report(runs: dict, raw_name: str, written: int, answered: int):
    print(
        f"\n{ROUNDS} rounds of {DURATION} per row; medians over the rounds. 'log +s': how long the prediction "
        "log took after the run to write all its rows; 'logged rows/s': answered rows / (run + that)"
        "\n\n| path | req/s | rows/s | p50 ms | p99 ms | non-2xx | log +s | logged rows/s |"
        "\n|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    for name, rs in runs.items():
        m = {k: _median([r[k] for r in rs]) for k in ("rps", "p50", "p99")}
        rows = m["rps"] * (1000 if "1,000" in name else 1)
        logged = (
            ""
            if rs[0]["log_s"] is None
            else f"{_median([r['log_s'] for r in rs]):.1f} | {_median([r['logged_rows_per_s'] for r in rs]):,.0f}"
        )
        print(
            f"| {name} | {m['rps']:.0f} | {rows:,.0f} | {m['p50']:.2f} | {m['p99']:.2f} | "
            f"{sum(r['errors'] for r in rs)} | {logged or ' | '} |"
        )

    def per_round(f):
        return [f(i) for i in range(ROUNDS)]

    def fmt(values, spec):
        return ", ".join(format(v, spec) for v in values)

    checks = []
    # >=: a request still in flight when wrk stops is answered and logged, but not counted by wrk
    logged_ok = written >= answered
    added = per_round(lambda i: runs["ingress, 1 row, c=1"][i]["p50"] - runs["predictor direct, 1 row, c=1"][i]["p50"])
    checks.append(
        (
            _median(added) <= 2.0,
            "ingress adds <= 2 ms at p50 (c=1)",
            f"+{_median(added):.2f} ms (rounds: {fmt(added, '+.2f')})",
        )
    )
    for c in (1, 16):
        ratio = per_round(
            lambda i, c=c: (
                runs[f"predictor direct, 1 row, c={c}"][i]["rps"]
                / runs[f"bare wrapper, trivial model, c={c}"][i]["rps"]
            )
        )
        checks.append(
            (
                _median(ratio) >= 0.8,
                f"component >= 80% of the bare wrapper's req/s (c={c})",
                f"{_median(ratio):.0%} (rounds: {fmt(ratio, '.0%')})",
            )
        )
    for kind in ("ndarray", "tensor"):  # sustained: the log has written the rows too
        rows = [r["logged_rows_per_s"] for r in runs[f"ingress, 1,000-row batch ({kind}), c=4"]]
        checks.append(
            (
                _median(rows) >= 100_000,
                f"batches >= 100,000 rows/s (ingress, {kind}, logged)",
                f"{_median(rows):,.0f} rows/s (rounds: {fmt(rows, ',.0f')})",
            )
        )
    p99 = [r["p99"] for r in runs[raw_name]]
    checks.append(
        (_median(p99) <= 15, "raw transaction p99 <= 15 ms (c=1)", f"{_median(p99):.2f} ms (rounds: {fmt(p99, '.2f')})")
    )
    errors = sum(r["errors"] for rs in runs.values() for r in rs)
    checks.append((errors == 0, "no non-2xx answers", str(errors)))
    checks.append(
        (
            logged_ok,
            "prediction log: every answered row written",
            f"{written:,} written, {answered:,} answered (wrk's count)",
        )
    )
    print()
    for ok, name, figures in checks:
        print(f"{'PASS' if ok else 'MISS'}  {name}: {figures}")


if __name__ == "__main__":
    main()
