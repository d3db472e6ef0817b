"""No training/serving skew. With the online store materialized as of T (the end of the last
day of a small real pipeline), real transactions of the next morning score the same through
the raw path (ingress -> predictor -> online features, `jsonData`) as through batch scoring
of their training-frame rows (`FeastStore.training_frame` + the serving artifact).

Real processes on loopback (the local runtime, the ingress, a seldon-core-microservice
predictor in .venv-serving), for both ways a predictor reaches the online store: reading
Feast's sqlite store in-process (`online_features="store"`, the default) and calling
`feast serve` (`online_features="server"`)."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests

import definitions
from assets.feature_store import snapshot_instant
from driftline.pipeline import run_data_plane
from resources import SyntheticEventSource
from resources.lake import Lake
from resources.seldon_target import SeldonTarget
from seldon import manifest as mf
from seldon.runtime import free_port
from testkit.tokens import token

ROOT = Path(__file__).resolve().parents[1]
SERVING_PY = ROOT / ".venv-serving" / "bin" / "python"
SECRET = "skew-test-secret-long-enough-for-hs256!"
WORLD: dict[str, Any] = dict(seed=21, n_users=250, n_merchants=60, events_per_day=500, fraud_rate=0.02)
DAYS = [(dt.date(2026, 10, 1) + dt.timedelta(days=k)).isoformat() for k in range(5)]
N_TXNS = 8
pytestmark = pytest.mark.skipif(not SERVING_PY.exists(), reason=".venv-serving is missing: run `make setup`")


@pytest.fixture(scope="module")
def plane(tmp_path_factory, make_resources):
    """Lake, snapshots and the online store as of T; a serving artifact on the real feature schema;
    a handful of real transactions just after T with their batch scores."""
    import torch

    from ml.export import export_artifact
    from ml.features import CATEGORICAL, FILL, NUMERIC
    from ml.network import FraudNet
    from ml.schema_fit import fit_schema
    from seldon.artifact import ServingModel

    root = tmp_path_factory.mktemp("skew")
    source = SyntheticEventSource(**WORLD)
    resources = make_resources(root, event_source=source)
    assert definitions.defs.assets is not None
    assert run_data_plane(list(definitions.defs.assets), resources, DAYS).success
    feast = resources["feast"]
    as_of = snapshot_instant(DAYS[-1])
    online_as_of = feast.online_snapshot_as_of()
    assert online_as_of is not None and online_as_of.replace(tzinfo=None) == as_of

    world = source.world()
    last_day = dt.date.fromisoformat(DAYS[-1])
    # the schema (vocabularies, normalisation) is fitted on the last day's training frame
    history = feast.training_frame(world.transactions(last_day))
    schema = fit_schema(history, CATEGORICAL, NUMERIC, FILL, "driftline-fraud", "1")
    torch.manual_seed(3)
    net = FraudNet([c.cardinality for c in schema.categorical], len(schema.numeric), hidden=(32, 16))
    artifact = export_artifact(net, schema, root / "artifact")

    following = world.transactions(last_day + dt.timedelta(days=1))
    following = following[following["event_ts"] > as_of]
    txns = pd.concat([following.head(N_TXNS // 2), following.sample(N_TXNS - N_TXNS // 2, random_state=1)])
    txns = txns.drop_duplicates("event_id").reset_index(drop=True)
    assert (txns["event_ts"] - as_of).max() < pd.Timedelta(days=1)  # T is the snapshot they see

    frame = feast.training_frame(txns)
    model = ServingModel(artifact)
    batch = model.score_columns({n: frame[n].to_numpy() for n in schema.feature_names if n in frame.columns})
    # the comparison has power: real online state for most rows, and scores that differ
    assert frame["user_txn_count_7d"].notna().mean() >= 0.5
    assert frame["merchant_txn_count_30d"].notna().mean() >= 0.5
    assert np.ptp(batch) > 1e-3
    yield {"root": root, "feast": feast, "artifact": artifact, "txns": txns, "batch": batch}
    _forget_repo_modules(root)


def _forget_repo_modules(root: Path):
    """Feast imported this repo's generated module (`<repo>/driftline_repo.py`); a later Feast repo
    of the same module name in this process must not resolve to it (inspect's file->module cache
    would point dill's getsource of the ODFV at the wrong file)."""
    import inspect
    import sys

    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", "") or "").startswith(str(root)):
            del sys.modules[name]
    inspect._filesbymodname.clear()  # pyright: ignore[reportAttributeAccessIssue]  # CPython's private cache, not in typeshed
    inspect.modulesbyfile.clear()


def _raw(row) -> dict:
    return {
        "user_id": int(row.user_id),
        "merchant_id": int(row.merchant_id),
        "amount": float(row.amount),
        "country": None if pd.isna(row.country) else str(row.country),
        "category": str(row.category),
        "channel": str(row.channel),
        "event_ts": pd.Timestamp(row.event_ts).isoformat(),
    }


@pytest.mark.parametrize("online", ["store", "server"])
def test_raw_transaction_scores_like_its_training_frame_row(plane, online):
    root = plane["root"] / f"serving-{online}"
    os.environ["DRIFTLINE_INGRESS_JWT_SECRET"] = SECRET
    port = free_port()
    target = SeldonTarget(
        serving_dir=str(root),
        lake=Lake(root=str(root / "lake")),
        feast_repo=str(plane["feast"].repo_dir),
        ingress_url=f"http://127.0.0.1:{port}",
        online_features=online,
        feast_server_url=f"http://127.0.0.1:{free_port()}",
        ready_timeout_s=180,
    )
    assert target.feast_url.startswith("file://" if online == "store" else "http://")
    predictor = mf.Predictor(
        "main", "driftline-fraud", "1", str(plane["artifact"]), 100, feast_url=target.feast_url, workers=1
    )
    try:
        target.apply(mf.render("fraud", "default", [predictor], "driftline/serving:test"))
        url = f"http://127.0.0.1:{port}/seldon/default/fraud/api/v1.0/predictions"
        auth = {"Authorization": f"Bearer {token(SECRET, 'predict')}"}
        rows = [_raw(r) for r in plane["txns"].itertuples()]

        deadline = time.monotonic() + 120  # feast serve may still be starting (server)
        while True:
            r = requests.post(url, json={"jsonData": rows[0]}, headers=auth, timeout=30)
            if r.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert r.status_code == 200, r.text

        one_by_one = []
        for row in rows:
            r = requests.post(url, json={"jsonData": row}, headers=auth, timeout=30)
            assert r.status_code == 200, r.text
            one_by_one += r.json()["data"]["ndarray"]
        together = requests.post(url, json={"jsonData": {"transactions": rows}}, headers=auth, timeout=30)
        assert together.status_code == 200, together.text
    finally:
        target.stop_runtime()

    batch = plane["batch"]
    np.testing.assert_allclose(np.array(one_by_one), batch, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.array(together.json()["data"]["ndarray"]), batch, rtol=0, atol=1e-6)
