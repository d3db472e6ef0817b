"""`make bench-images`: what running inside the user-code image costs. The same data-plane
partition (raw events, features, daily snapshots) is materialized by Dagster's command line in
`.venv` and in the built image (`docker run`, host network, the bench folder mounted), three
times each, alternating; the table gives each step's median duration (STEP_START to
STEP_SUCCESS, from Dagster's event log) and the ratio image / .venv. The target: the image
costs under 10 % more. Both use the embedded profile on the same files, so only the runtime
differs (interpreter, libraries, file system layers).

Usage: .venv/bin/python -m bench.bench_container [--runs 3] [--days 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from testkit.images import docker, require_image

ROOT = Path(__file__).resolve().parents[1]
STEPS = ["raw_transactions", "raw_labels", "transaction_features", "user_state", "merchant_state"]
TARGET = 1.10


def materialize_cmd(select: list[str], day: str) -> list[str]:
    return ["dagster", "asset", "materialize", "-m", "definitions", "--select", ",".join(select), "--partition", day]


def step_seconds(home: Path) -> dict[str, float]:
    """Per-step durations of the newest run in the instance at `home`."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        run = instance.get_runs(limit=1)[0]
        assert run.status == dg.DagsterRunStatus.SUCCESS, f"run {run.run_id} ended {run.status}"
        stats = instance.get_run_step_stats(run.run_id)
    return {s.step_key: (s.end_time or 0) - (s.start_time or 0) for s in stats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--days", type=int, default=5, help="days of raw history before the measured partition")
    parser.add_argument("--events-per-day", type=int, default=50_000, help="the synthetic world's daily transactions")
    args = parser.parse_args()

    import pytest

    try:
        image = require_image("user-code")
    except pytest.skip.Exception as skipped:
        sys.exit(f"bench-images: {skipped}")
    work = ROOT / "data" / "bench" / "container"
    shutil.rmtree(work, ignore_errors=True)
    (work / "dagster_home").mkdir(parents=True)
    start = dt.date(2026, 10, 1)
    days = [(start + dt.timedelta(days=k)).isoformat() for k in range(args.days + 1)]
    env = {
        **os.environ,
        "DRIFTLINE_ENV": "local",
        "DRIFTLINE_DATA_DIR": str(work),
        "DAGSTER_HOME": str(work / "dagster_home"),
        "DRIFTLINE_START_DATE": days[0],
        "DRIFTLINE_SYNTH_EVENTS_PER_DAY": str(args.events_per_day),
    }
    venv_dagster = str(Path(sys.executable).with_name("dagster"))
    for day in days[:-1]:  # the history the features' windows look back on
        subprocess.run(
            [venv_dagster, *materialize_cmd(["raw_transactions", "raw_labels"], day)[1:]],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
    day = days[-1]
    container = ["run", "--rm", "--network", "host", "--user", "0", "-v", f"{work}:/bench"]
    for key, value in {
        "DRIFTLINE_ENV": "local",
        "DRIFTLINE_DATA_DIR": "/bench",
        "DAGSTER_HOME": "/bench/dagster_home",
        "DRIFTLINE_START_DATE": days[0],
        "DRIFTLINE_SYNTH_EVENTS_PER_DAY": str(args.events_per_day),
        "DRIFTLINE_EXECUTOR": "in_process",
    }.items():
        container += ["-e", f"{key}={value}"]
    env["DRIFTLINE_EXECUTOR"] = "in_process"

    samples: dict[str, dict[str, list[float]]] = {"venv": {}, "image": {}}
    walls: dict[str, list[float]] = {"venv": [], "image": []}
    load_before = os.getloadavg()[0]
    for _ in range(args.runs):
        for where in ("venv", "image"):
            t0 = time.perf_counter()
            if where == "venv":
                subprocess.run(
                    [venv_dagster, *materialize_cmd(STEPS, day)[1:]],
                    cwd=ROOT,
                    env=env,
                    check=True,
                    capture_output=True,
                )
            else:
                docker(*container, image, *materialize_cmd(STEPS, day), timeout=900)
            walls[where].append(time.perf_counter() - t0)
            for step, seconds in step_seconds(work / "dagster_home").items():
                samples[where].setdefault(step, []).append(seconds)

    print(
        f"\nbench-images: one data-plane partition ({day}, {args.events_per_day:,} transactions a day),"
        f" median of {args.runs} runs each, {image}"
    )
    print(f"{'step':<24}{'.venv s':>10}{'image s':>10}{'image/.venv':>13}")
    totals = {"venv": 0.0, "image": 0.0}
    for step in STEPS:
        venv, img = (statistics.median(samples[w][step]) for w in ("venv", "image"))
        totals["venv"] += venv
        totals["image"] += img
        print(f"{step:<24}{venv:>10.2f}{img:>10.2f}{img / venv:>13.2f}")
    ratio = totals["image"] / totals["venv"]
    print(f"{'all steps':<24}{totals['venv']:>10.2f}{totals['image']:>10.2f}{ratio:>13.2f}   target < {TARGET:.2f}")
    wv, wi = statistics.median(walls["venv"]), statistics.median(walls["image"])
    print(f"{'whole command (wall)':<24}{wv:>10.2f}{wi:>10.2f}{wi / wv:>13.2f}   (start-up and imports included)")
    print(
        f"load average (1 min) before / after: {load_before:.1f} / {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print("PASS" if ratio < TARGET else "ABOVE TARGET")


if __name__ == "__main__":
    main()
