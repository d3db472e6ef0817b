"""`make demo`: the data plane end to end on the embedded defaults.

Ingests some weeks of synthetic events day by day (as the daily schedule or the landing
sensor would), computes the point-in-time features for the whole range in one backfill run,
loads the Feast online store, and prints where to look. Runs are recorded in DAGSTER_HOME,
so `make dev` shows them in the UI. Safe to run twice: every partition is replaced.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import time

import dagster as dg

import definitions
from assets.partitions import START_DATE
from scripts.pipeline import run_data_plane, run_training

ANALYST_QUERIES = {
    "Daily volume, fraud chargebacks known so far, quarantined rows": """
        select t.date, count(*) as transactions, round(sum(t.amount), 2) as amount_eur,
               (select count(*) from raw_labels l where l.event_ts::date = t.date) as chargebacks
        from raw_transactions t group by t.date order by t.date desc limit 5""",
    "Merchants with the highest known chargeback rate today": """
        select merchant_id, any_value(category) as category, max(merchant_txn_count_30d) as txns_30d,
               max(merchant_cb_rate_30d) as cb_rate_30d
        from transaction_features where date = (select max(date) from transaction_features)
        group by merchant_id order by cb_rate_30d desc limit 5""",
    "Card-testing look-alikes: bursts of small payments within an hour": """
        select user_id, event_ts, amount, user_txn_count_1h, user_distinct_merchants_24h
        from transaction_features where user_txn_count_1h >= 4 and amount < 5
        order by user_txn_count_1h desc, event_ts limit 5""",
}


def _days(n: int) -> list[str]:
    start = dt.date.fromisoformat(START_DATE)
    return [(start + dt.timedelta(days=k)).isoformat() for k in range(n)]


def _print_training(result, resources) -> None:
    meta = {e.asset_key.to_user_string(): e.materialization.metadata
            for e in result.get_asset_materialization_events()}
    if "fraud_model" in meta:
        m = meta["fraud_model"]
        print(f"fraud_model v{m['model_version'].value}: test PR-AUC {m['test_pr_auc'].value:.3f} "
              f"(prevalence {m['test_prevalence'].value:.4f}), ROC-AUC {m['test_roc_auc'].value:.3f}, "
              f"{m['epochs'].value} epochs on {m['accelerator'].value}")
    if "model_evaluation" in meta:
        e = meta["model_evaluation"]
        print(f"model_evaluation: {e['decision'].value}: {e['reason'].value}; {e['action'].value}")
    print(f"registry aliases: {resources['mlflow_registry'].aliases()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=int(os.environ.get("DRIFTLINE_DEMO_DAYS", 21)))
    args = parser.parse_args()
    instance = dg.DagsterInstance.get()
    defs = definitions.defs
    assets = list(defs.assets)
    resources = definitions.RESOURCES
    days = _days(args.days)
    t0 = time.perf_counter()
    print(f"driftline demo: {len(days)} days from {days[0]} ({resources['event_source'].describe()})")

    def report(day, result):
        meta = {e.asset_key.to_user_string(): e.materialization.metadata
                for e in result.get_asset_materialization_events()}
        tx = meta["raw_transactions"]
        print(f"  {day}  transactions {tx['valid_rows'].value:>6} valid, {tx['quarantined_rows'].value} quarantined"
              f"   chargebacks {meta['raw_labels']['valid_rows'].value:>3}")

    tags = {"driftline/trigger": "demo"}
    result = run_data_plane(assets, resources, days, instance=instance, tags=tags, on_day=report)
    print(f"features for {days[0]}..{days[-1]} (one backfill run), daily snapshots, Feast registry, online store "
          f"as of the end of {days[-1]}: {'ok' if result.success else 'FAILED'}")
    _print_training(run_training(assets, resources, instance=instance, tags=tags), resources)

    warehouse = resources["warehouse"]
    for title, sql in ANALYST_QUERIES.items():
        print(f"\n-- {title}\n{warehouse.query(sql).to_string(index=False)}")
    print(f"\ndone in {time.perf_counter() - t0:.0f} s. Where to look:")
    print("  Dagster UI:     make dev   (then http://127.0.0.1:3000, Assets > Lineage)")
    print(f"  Warehouse:      duckdb -readonly {warehouse.path}   (or python: duckdb.connect(path, read_only=True))")
    print(f"  Lake:           {resources['lake'].path}")


if __name__ == "__main__":
    main()
