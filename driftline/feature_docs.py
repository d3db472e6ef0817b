"""The docs' feature tables, rendered from driftline.spec so the docs cannot drift: the feature
table of docs/features.md and the served-features table of docs/feast.md.

`python -m driftline.feature_docs` rewrites both in place (between their markers);
tests/test_feature_spec.py fails while a doc differs from what this renders.
"""

from __future__ import annotations

import sys
from pathlib import Path

from driftline import spec

DOCS = Path(__file__).resolve().parents[1] / "docs"
DOC = DOCS / "features.md"
FEAST_DOC = DOCS / "feast.md"
BEGIN = "<!-- feature table: generated from driftline/spec.py by `python -m driftline.feature_docs` -->"
END = "<!-- end of feature table -->"
SERVED_BEGIN = "<!-- served features: generated from driftline/spec.py by `python -m driftline.feature_docs` -->"
SERVED_END = "<!-- end of served features -->"


def _rows(columns: tuple[spec.Column, ...]) -> list[list[spec.Column]]:
    """Neighbouring columns with the same type and meaning share a row (`user_id`, `merchant_id`)."""
    rows: list[list[spec.Column]] = []
    for column in columns:
        if rows and (rows[-1][0].type, rows[-1][0].meaning) == (column.type, column.meaning):
            rows[-1].append(column)
        else:
            rows.append([column])
    return rows


def feature_table(columns: tuple[spec.Column, ...] = spec.FEATURE_TABLE) -> str:
    """The markdown table of the feature columns, in the spec's order."""
    lines = ["| column | type | meaning |", "|---|---|---|"]
    for row in _rows(columns):
        names = ", ".join(f"`{c.name}`" for c in row)
        lines.append(f"| {names} | {row[0].type} | {row[0].meaning} |")
    return "\n".join(lines)


def _names(names: list[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def served_table() -> str:
    """The markdown table of the feature service's features: where each comes from, how fresh."""
    mean, last_ts, last_country = spec.USER_MEAN_AMOUNT, spec.USER_LAST_TXN_EPOCH_S, spec.USER_LAST_COUNTRY
    on_demand = {
        spec.AMOUNT_TO_USER_MEAN: (f"`amount / {mean}`", "fresh: computed per request"),
        spec.SECONDS_SINCE_LAST_TXN: (
            f"`event_epoch_s - {last_ts}`",
            "fresh (uses the last *materialized* transaction)",
        ),
        spec.COUNTRY_CHANGED: (f"1 if `country != {last_country}` (both known), else 0", "fresh"),
        spec.HOUR_OF_DAY: ("0..23 (UTC) of `event_epoch_s`", "fresh"),
        spec.DAY_OF_WEEK: ("ISO 1..7 of `event_epoch_s`", "fresh"),
    }
    snapshot = "as of the last materialization (end of the previous day)"
    lines = [
        "| feature | source | freshness |",
        "|---|---|---|",
        f"| {_names(list(spec.USER_STATE_FEATURES))} | `{spec.USER_STATE_VIEW}` view | {snapshot} |",
        f"| {_names(list(spec.MERCHANT_STATE_FEATURES))} | `{spec.MERCHANT_STATE_VIEW}` view | {snapshot} |",
    ]
    for name in spec.ON_DEMAND_FEATURES:
        formula, freshness = on_demand[name]
        lines.append(f"| `{name}` = {formula} | on-demand view `{spec.ON_DEMAND_VIEW}` | {freshness} |")
    return "\n".join(lines)


def _replace_between(text: str, begin: str, end: str, table: str, doc: Path) -> str:
    head, sep, rest = text.partition(begin + "\n")
    _, sep_end, tail = rest.partition(end)
    if not sep or not sep_end:
        raise ValueError(f"{doc.name} lacks the table markers {begin!r} ... {end!r}")
    return f"{head}{begin}\n{table}\n{end}{tail}"


def render(doc_text: str) -> str:
    """docs/features.md's text with the table between the markers replaced by the spec's."""
    return _replace_between(doc_text, BEGIN, END, feature_table(), DOC)


def render_feast(doc_text: str) -> str:
    """docs/feast.md's text with the served-features table replaced by the spec's."""
    return _replace_between(doc_text, SERVED_BEGIN, SERVED_END, served_table(), FEAST_DOC)


def main() -> int:
    for doc, rendered in ((DOC, render), (FEAST_DOC, render_feast)):
        text = doc.read_text()
        new = rendered(text)
        if new != text:
            doc.write_text(new)
            print(f"updated {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
