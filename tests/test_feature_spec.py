"""driftline.spec is the one home of the feature contract: the docs and the Feast UDF, which
cannot import it, are checked against it here; the engines are checked by
tests/test_feature_reference.py, whose reference reads its windows from the spec."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from driftline import feature_docs, spec
from tests.stream_helpers import udf_names

ROOT = Path(__file__).resolve().parents[1]


def _doc_table_columns(text: str) -> list[tuple[str, str]]:
    """(name, type) of every column the docs/features.md table lists, in order."""
    table = text.partition(feature_docs.BEGIN)[2].partition(feature_docs.END)[0]
    out = []
    for line in table.strip().splitlines()[2:]:
        names, type_name = (cell.strip() for cell in line.strip("|").split("|")[:2])
        out += [(name, type_name) for name in re.findall(r"`([^`]+)`", names)]
    return out


def test_features_doc_table_is_the_spec():
    """Fix with `python -m driftline.feature_docs` after changing driftline/spec.py."""
    text = feature_docs.DOC.read_text()
    assert _doc_table_columns(text) == list(spec.FEATURE_COLUMNS.items()), (
        "docs/features.md lists other columns or types than driftline/spec.py: run `python -m driftline.feature_docs`"
    )
    assert feature_docs.render(text) == text, (
        "docs/features.md's table is stale: run `python -m driftline.feature_docs`"
    )


def test_feast_doc_served_table_is_generated_from_the_spec():
    """docs/feast.md's "What is served" table is the spec's, and names exactly the service's features."""
    text = (ROOT / "docs" / "feast.md").read_text()
    assert feature_docs.render_feast(text) == text, (
        "docs/feast.md's served-features table is stale: run `python -m driftline.feature_docs`"
    )
    table = feature_docs.served_table()
    named = {n for line in table.splitlines()[2:] for n in re.findall(r"`([^`]+)`", line.split("|")[1].split(" = ")[0])}
    assert named == set(spec.SERVED_FEATURES)


def test_feast_udf_uses_the_spec_names():
    reads, writes = udf_names(ROOT / "resources" / "feast_repo" / "definitions.py", spec.ON_DEMAND_VIEW)
    assert list(writes) and writes == set(spec.ON_DEMAND_FEATURES)
    assert reads <= set(spec.REQUEST_FIELDS) | set(spec.USER_STATE_FEATURES), reads


def test_names_follow_the_windows():
    assert spec.COLUMNS[10:16] == [
        *map(spec.user_txn_count, spec.USER_WINDOWS),
        *map(spec.user_amount_sum, spec.USER_WINDOWS),
    ]
    for window in spec.STATE_USER_WINDOWS:
        assert spec.user_txn_count(window) in spec.USER_STATE_FEATURES
    assert spec.AMOUNT_TO_USER_MEAN.endswith("_" + spec.USER_MEAN.suffix)
    assert spec.MERCHANT_TXN_COUNT.endswith("_" + spec.MERCHANT.suffix)
    assert [
        "event_id",
        "event_ts",
        *spec.ENTITY_KEYS,
        "amount",
        "category",
        "country",
        "channel",
    ] == spec.REQUEST_COLUMNS


def test_window_units():
    assert (spec.days(7).seconds, spec.days(7).suffix, spec.days(7).sql) == (604_800, "7d", "INTERVAL 7 DAY")
    assert (spec.hours(24).micros, spec.hours(24).sql) == (86_400_000_000, "INTERVAL 24 HOUR")
    with pytest.raises(ValueError):
        spec.Window(7, "w")


def test_spec_imports_only_the_standard_library():
    """seldon/ imports driftline.spec in the serving environment (no pandas, no numpy)."""
    code = (
        "import sys; import driftline.spec; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'pandas', 'pyarrow', 'dagster'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
