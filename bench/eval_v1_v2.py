"""fraud_model_v1 against fraud_model_v2: the same training days, the same later-in-time test rows.

Builds a small synthetic world through the real pipeline (raw events, `transaction_features`,
daily snapshots, the Feast point-in-time join) into a scratch folder, materializes
`training_set` once (both services' frames: the same rows, labels and splits), trains one model
per service with the same seed and settings, and scores each on its own service's frame of the
test split. Prints PR-AUC and recall at 1 % FPR per model, overall and per fraud pattern from
the generator's ground truth (card testing separately): a pattern's row keeps every legitimate
test transaction and only that pattern's fraud, so its recall is at the same 1 % FPR threshold.

Scored against ground truth (every fraudulent test transaction), not the labels known at the
training cutoff: the test split is the newest part of the window, where late chargebacks would
otherwise count as legitimate.

Usage: .venv/bin/python -m bench.eval_v1_v2 [--days 35] [--events-per-day 5000] [--max-epochs 15]
       make eval-v2
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FPR = 0.01
START = dt.date(2026, 10, 1)


def build_lake(root: Path, days: list[str], world: dict, window_days: int, maturity_days: int) -> dict:
    """The data plane for `days` and `training_set` (both services) under `root`; the resources."""
    import dagster as dg

    import definitions
    from driftline.loop import _asset_definitions
    from driftline.pipeline import pick, run_data_plane
    from resources import SyntheticEventSource
    from testkit.resources import make_resources

    resources = make_resources(root, event_source=SyntheticEventSource(**world), start_runtime=False)
    assets = _asset_definitions(definitions.defs)
    run_data_plane(assets, resources, days)
    config = {"window_days": window_days, "maturity_days": maturity_days}
    result = dg.materialize(
        assets,
        selection=pick(assets, "training_set"),
        resources=resources,
        run_config={"ops": {"training_set": {"config": config}}},
    )
    if not result.success:
        raise RuntimeError("training_set failed")
    return resources


def train_and_score(lake, service: str, max_epochs: int, seed: int) -> tuple[np.ndarray, list[str], float]:
    """(test scores, test event_ids, fit seconds) of a model trained on `service`'s frames."""
    from assets.training import read_splits
    from ml.dataset import encode_split
    from ml.features import inputs_for
    from ml.lightning_model import TrainConfig, score, train
    from ml.schema_fit import fit_schema

    inputs = inputs_for(service)
    frames = read_splits(lake, service)
    schema = fit_schema(
        frames["train"], inputs.categorical, inputs.numeric, inputs.fill, "bench", feature_service=service
    )
    splits = {k: encode_split(schema, v) for k, v in frames.items()}
    t = time.perf_counter()
    cfg = TrainConfig(seed=seed, max_epochs=max_epochs, patience=max_epochs, accelerator="cpu")
    result = train(schema, splits, cfg, log=lambda _: None, progress_bar=False)
    fit_s = time.perf_counter() - t
    cat, num, _ = splits["test"]
    return score(result.module, cat, num, device="cpu"), list(frames["test"]["event_id"]), fit_s


def ground_truth(world, event_ids: list[str], days: list[str]) -> np.ndarray:
    """The generator's fraud pattern of each event ("" for legitimate ones)."""
    import pandas as pd

    truth = pd.concat([world.fraud_truth(dt.date.fromisoformat(d)) for d in days], ignore_index=True)
    pattern = dict(zip(truth["event_id"], truth["pattern"], strict=True))
    return np.array([pattern.get(e, "") for e in event_ids], dtype=object)


def table(patterns: np.ndarray, scores: dict[str, np.ndarray], rounds: int = 300) -> list[str]:
    """Markdown rows: per subset, PR-AUC and recall at 1 % FPR of each service, and the PR-AUC
    difference (v2 - v1) with its paired bootstrap standard error."""
    from assets.evaluation import paired_bootstrap_se
    from ml.metrics import pr_auc, recall_at_fpr

    names = list(scores)
    legit = patterns == ""
    subsets = {"all fraud": np.ones(len(patterns), dtype=bool)}
    for p in sorted({str(p) for p in patterns[~legit]}, key=lambda p: (p != "card_testing", p)):
        subsets[p] = legit | (patterns == p)
    head = ["subset", "fraud rows", "test rows"]
    for n in names:
        head += [f"{n} PR-AUC", f"{n} recall@1%FPR"]
    head += [f"PR-AUC {names[-1]} - {names[0]} (± SE)"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, mask in subsets.items():
        y = ~legit[mask]
        cells = [label, f"{int(y.sum()):,}", f"{int(mask.sum()):,}"]
        for n in names:
            s = scores[n][mask]
            cells += [f"{pr_auc(y, s):.4f}", f"{recall_at_fpr(y, s, FPR):.4f}"]
        a, b = scores[names[-1]][mask], scores[names[0]][mask]
        se = paired_bootstrap_se(y, a, b, rounds)
        cells.append(f"{pr_auc(y, a) - pr_auc(y, b):+.4f} ± {se:.4f}")
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def main(argv: list[str] | None = None) -> int:
    from driftline import spec

    parser = argparse.ArgumentParser(description="fraud_model_v1 against fraud_model_v2 on the same test split")
    parser.add_argument("--days", type=int, default=35, help="days of traffic from 2026-10-01")
    parser.add_argument("--window-days", type=int, default=21)
    parser.add_argument("--maturity-days", type=int, default=10)
    parser.add_argument("--events-per-day", type=int, default=5000)
    parser.add_argument("--users", type=int, default=2500)
    parser.add_argument("--merchants", type=int, default=400)
    parser.add_argument("--fraud-rate", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=5, help="the world's seed")
    parser.add_argument("--train-seed", type=int, default=7)
    parser.add_argument("--max-epochs", type=int, default=15)
    parser.add_argument("--root", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args(argv)

    world = dict(
        seed=args.seed,
        n_users=args.users,
        n_merchants=args.merchants,
        events_per_day=args.events_per_day,
        fraud_rate=args.fraud_rate,
    )
    days = [(START + dt.timedelta(days=k)).isoformat() for k in range(args.days)]
    root = args.root or Path(tempfile.mkdtemp(prefix="driftline-eval-v2-"))
    root.mkdir(parents=True, exist_ok=True)
    log = root / "eval_v1_v2.log"  # Dagster's and Lightning's chatter; its tail is shown on failure
    kept = "" if args.root is None else f" (log: {log})"
    print(f"building {args.days} days and training both models{kept} ...", flush=True)
    t0 = time.perf_counter()
    try:
        with open(log, "w") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            resources = build_lake(root, days, world, args.window_days, args.maturity_days)
            built = time.perf_counter() - t0
            lake = resources["lake"]
            scores, ids, fit = {}, {}, {}
            for service in (spec.FEATURE_SERVICE, spec.FEATURE_SERVICE_V2):
                scores[service], ids[service], fit[service] = train_and_score(
                    lake, service, args.max_epochs, args.train_seed
                )
            if ids[spec.FEATURE_SERVICE] != ids[spec.FEATURE_SERVICE_V2]:
                raise RuntimeError("the services' test splits hold different rows")
            test_days = _days_of(lake)
            patterns = ground_truth(resources["event_source"].world(), ids[spec.FEATURE_SERVICE], test_days)
    except Exception:
        print(log.read_text()[-4000:], file=sys.stderr)
        raise
    finally:
        if args.root is None:
            shutil.rmtree(root, ignore_errors=True)
    print(
        f"world {world}; {args.days} days from {days[0]}; training_set window {args.window_days} d, "
        f"maturity {args.maturity_days} d; test split {test_days[0]}..{test_days[-1]}; "
        f"{args.max_epochs} epochs max, seed {args.train_seed}, CPU"
    )
    print(
        f"data plane + training_set {built:.0f} s; fit {', '.join(f'{k} {v:.0f} s' for k, v in fit.items())}; "
        f"scored against the generator's ground truth (resources/synthetic/generator.py fraud_truth)"
    )
    print()
    print("\n".join(table(patterns, scores)))
    return 0


def _days_of(lake) -> list[str]:
    """The test split's days (the fraud truth is read per day)."""
    from assets.training import split_path

    test = lake.read_pandas(split_path(lake, "test"), columns=["event_ts"])
    return sorted(test["event_ts"].dt.strftime("%Y-%m-%d").unique())


if __name__ == "__main__":
    raise SystemExit(main())
