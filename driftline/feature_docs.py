"""docs/features.md's column table, rendered from driftline.spec so the doc cannot drift.

`python -m driftline.feature_docs` rewrites the table in place (between the two markers);
tests/test_feature_spec.py fails while the doc differs from what this renders.
"""

from __future__ import annotations

import sys
from pathlib import Path

from driftline import spec

DOC = Path(__file__).resolve().parents[1] / "docs" / "features.md"
BEGIN = "<!-- feature table: generated from driftline/spec.py by `python -m driftline.feature_docs` -->"
END = "<!-- end of feature table -->"


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


def render(doc_text: str) -> str:
    """`doc_text` with the table between the markers replaced by the spec's."""
    head, sep, rest = doc_text.partition(BEGIN + "\n")
    _, sep_end, tail = rest.partition(END)
    if not sep or not sep_end:
        raise ValueError(f"{DOC.name} lacks the feature table markers {BEGIN!r} ... {END!r}")
    return f"{head}{BEGIN}\n{feature_table()}\n{END}{tail}"


def main() -> int:
    text = DOC.read_text()
    new = render(text)
    if new != text:
        DOC.write_text(new)
        print(f"updated {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
