"""`driftline demo` (`make demo`): the closed loop, end to end, on the embedded defaults.

Weeks of normal traffic -> features, Feast -> the stream worker bootstraps the fresh velocity
state (fraud_model_v2) from the lake -> a champion trained on the daily snapshot (fraud_model_v1)
and deployed -> the local serving stack -> live traffic through the ingress with a JWT -> the
world drifts (today's transactions also go through the broker) -> the drift report fires
`drift_sensor` in the Dagster daemon -> retraining on fraud_model_v2 -> the challenger as a canary
-> `canary_sensor` promotes it or rolls it back -> a card-testing burst on one card, its fresh
count and v2 score beside the daily snapshot's (driftline/demo_burst.py). Prints the timeline and
where to look, then stops what it started. Each run starts from a clean demo state, so running it
twice is safe. Without a reachable broker the streaming part is skipped, saying so.

The terminal shows the timeline only, with a progress bar over the long steps (days ingested,
training epochs); Dagster's event stream and everything else the run prints go to a log file
named at the end (`--verbose`: shown live instead).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from driftline.console import Console

ROOT = Path(__file__).resolve().parents[1]
# The demo's world is WorldConfig's default (resources/synthetic/config.py) with more fraud, so
# five weeks train a usable champion. The profiles differ in traffic and waits only: `ci` is the
# one tests/test_demo_ui.py runs.
DEMO_FRAUD_RATE = 0.006
PROFILES = {
    "full": dict(days=35, normal_rows=1000, drift_rows=2000, wait_s=420),
    "ci": dict(days=35, normal_rows=700, drift_rows=1400, wait_s=360),
}
CLEAN = [
    "lake",
    "feast",
    "mlflow.db",
    "mlartifacts",
    "serving",
    "warehouse.duckdb",
    "reports",
    "dagster_home/storage",
    "dagster_home/history",
    "dagster_home/schedules",
    "dagster_home/logs",
    "stream",  # the stream worker's offsets and log (its streams are deleted when it starts)
    "demo_burst",
]
SCENARIOS = ["covariate", "concept"]
LOG_FILE = "demo.log"  # under the data dir: Dagster's event stream and the rest of the output
EPOCH_LINE = re.compile(r"^epoch (\d+):")  # fraud_model's per-epoch log line (ml/lightning_model.py)

Poll = Callable[[], tuple[int, int]]


class Timeline:
    """The demo's log: each line stamped with the seconds since the demo started. A line that
    starts a long step (a key of `progress`) gets a progress bar until the next line."""

    def __init__(self, console: Console | None = None, progress: dict[str, tuple[str, Poll]] | None = None) -> None:
        self.t0, self.lines = time.time(), []
        self.console, self.progress = console, progress or {}

    def __call__(self, text: str, at: float | None = None) -> None:
        """Print `text` stamped with seconds since the start (or since `at`, a wall-clock time)."""
        line = f"[{(at or time.time()) - self.t0:6.1f} s] {text}"
        self.lines.append(line)
        if self.console is None:
            print(line, flush=True)
            return
        self.console.line(line)
        for prefix, (label, poll) in self.progress.items():
            if text.startswith(prefix):
                self.console.track(label, poll)


def _instance(cache: list):
    """The Dagster instance of the polls: one per step, made on the first poll (in its thread)."""
    import dagster as dg

    if not cache:
        cache.append(dg.DagsterInstance.get())
    return cache[0]


def _materialized(instance, key: str) -> int:
    import dagster as dg

    return len(instance.get_materialized_partitions(dg.AssetKey(key)))


def days_ingested(days: int) -> Poll:
    """Raw days landed, then daily snapshots taken, out of both (a clean demo starts at 0)."""
    instances: list = []

    def poll() -> tuple[int, int]:
        instance = _instance(instances)
        return _materialized(instance, "raw_transactions") + _materialized(instance, "user_state"), 2 * days

    return poll


def training_epochs() -> Poll:
    """Epochs fraud_model has logged in the running training run (the demo's runs have no asset
    selection to find it by; only fraud_model logs `epoch N:` lines), out of its max_epochs (early
    stopping ends sooner: the next timeline line then closes the bar)."""
    instances: list = []

    def poll() -> tuple[int, int]:
        import dagster as dg

        from assets.training import TrainingConfig

        instance = _instance(instances)
        total = TrainingConfig().max_epochs
        runs = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]), limit=5)
        return max((_epochs_logged(instance, r.run_id) for r in runs), default=0), total

    return poll


def _epochs_logged(instance, run_id: str) -> int:
    """Distinct epochs a run has logged `epoch N:` lines for (only fraud_model logs them)."""
    return len({m.group(1) for e in instance.all_logs(run_id) if (m := EPOCH_LINE.match(e.user_message or ""))})


def progress_steps(profile: dict) -> dict[str, tuple[str, Poll]]:
    """The long steps of the timeline (loop.py): the line that starts each -> its bar."""
    return {
        "1. ": ("days ingested, then snapshotted", days_ingested(profile["days"])),
        "   raw events validated": ("training epochs", training_epochs()),
    }


def configure(profile: dict, data_dir: Path, scenario: str, today: dt.date) -> dict:
    """Environment for this process and the daemon: one config for both sides."""
    from driftline.jwt_secret import file_secret
    from resources.synthetic.config import DEFAULT_WORLD

    env = {
        "DRIFTLINE_DATA_DIR": str(data_dir),
        "DAGSTER_HOME": str(data_dir / "dagster_home"),
        "DRIFTLINE_INGRESS_JWT_SECRET": file_secret(data_dir),
        "DRIFTLINE_SENSOR_INTERVAL_S": "5",
        "DRIFTLINE_DRIFT_MIN_WINDOWS": "1",
        "DRIFTLINE_DRIFT_SCENARIO": scenario,
        "DRIFTLINE_DRIFT_START": today.isoformat(),
        "DRIFTLINE_DRIFT_RAMP_DAYS": "1",
        # The demo lands the days itself (weeks in minutes, today's snapshot kept offline until the
        # day is over); automation_sensor would load it early. `make dev` runs with it on.
        "DRIFTLINE_AUTOMATION": "off",
        # the world's size pinned to WorldConfig's defaults, whatever the caller's environment says
        "DRIFTLINE_SYNTH_EVENTS_PER_DAY": str(DEFAULT_WORLD.events_per_day),
        "DRIFTLINE_SYNTH_FRAUD_RATE": str(DEMO_FRAUD_RATE),
        "DRIFTLINE_SYNTH_USERS": str(DEFAULT_WORLD.n_users),
        "DRIFTLINE_SYNTH_MERCHANTS": str(DEFAULT_WORLD.n_merchants),
        "DRIFTLINE_START_DATE": (today - dt.timedelta(days=profile["days"])).isoformat(),
    }
    os.environ.update(env)
    return env


def clean(data_dir: Path) -> None:
    """Stop a serving stack left running and remove the previous demo's state (not the secret)."""
    from resources import SeldonTarget

    SeldonTarget(serving_dir=str(data_dir / "serving")).stop_runtime()
    for name in CLEAN:
        path = data_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    home = data_dir / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "deployment" / "local" / "dagster.yaml", home / "dagster.yaml")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from driftline import settings

    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default=settings.get("DRIFTLINE_DEMO_PROFILE"),
        help="size of the run: full (make demo) or ci (the UI test) (default: %(default)s, "
        "from DRIFTLINE_DEMO_PROFILE)",
    )
    parser.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="covariate",
        help="how the world drifts on the last day (default: %(default)s)",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help=f"show Dagster's event stream and all other output live (default: to <data dir>/{LOG_FILE})",
    )


def run(args: argparse.Namespace) -> int:
    """The demo with parsed arguments; its exit status."""
    from driftline import settings
    from driftline.loop import run_loop

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop what we started on `kill` too
    profile = PROFILES[args.profile]
    data_dir = Path(settings.get("DRIFTLINE_DATA_DIR") or ROOT / "data").resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    today = dt.date.today()
    env = configure(profile, data_dir, args.scenario, today)
    clean(data_dir)
    log_path = data_dir / LOG_FILE
    with Console(log_path, verbose=args.verbose) as console:
        timeline = Timeline(console, progress_steps(profile))
        status = 1
        try:
            status = run_loop(profile, data_dir, env, today, timeline)
        finally:
            if not args.verbose:
                daemon_log = data_dir / "dagster_home" / "daemon.log"
                timeline(f"Dagster's event stream and all other output: {log_path} (the daemon's: {daemon_log})")
                if status != 0:
                    console.line(f"--- the last lines of {log_path}:\n{console.tail()}")
    return status
