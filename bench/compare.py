"""Row-for-row comparison of two feature tables, keyed on event_id.

Integers and strings must match exactly, floats within 1e-9 relative or 1e-6 absolute,
timestamps to the microsecond, and nulls must sit in the same places. Returns readable
difference lines (empty when the tables agree) so the benchmark and tests can print them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from bench.spec import COLUMNS

REL_TOL, ABS_TOL = 1e-9, 1e-6


def to_pandas(table) -> pd.DataFrame:
    """Accept a pandas/Polars frame or an Arrow table; timestamps become naive UTC."""
    if isinstance(table, pa.Table):
        df = table.to_pandas()
    elif isinstance(table, pd.DataFrame):
        df = table
    else:  # polars
        df = table.to_pandas()
    df = df.copy()
    for col in df.columns:
        if isinstance(df[col].dtype, pd.DatetimeTZDtype):
            df[col] = df[col].dt.tz_convert("UTC").dt.tz_localize(None)
    return df


def _kind(series: pd.Series) -> str:
    if pd.api.types.is_datetime64_any_dtype(series):
        return "ts"
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_integer_dtype(series):
        return "int"
    if pd.api.types.is_float_dtype(series):
        return "float"
    return "other"


def compare_features(expected, actual, names=("expected", "actual"), max_rows: int = 5,
                     columns: list[str] | None = None, check_order: bool = True) -> list[str]:
    """Difference lines between two feature tables (empty list: they agree). Only
    `columns` (default: all of the spec) are compared; `check_order` also requires the
    spec's column order."""
    a_name, b_name = names
    a, b = to_pandas(expected), to_pandas(actual)
    check_order = check_order and columns is None
    columns = columns or COLUMNS
    problems = []
    for name, df in ((a_name, a), (b_name, b)):
        missing = [c for c in columns if c not in df.columns]
        if missing:
            problems.append(f"{name}: missing columns {missing}")
        elif check_order and list(df.columns) != columns:
            problems.append(f"{name}: column order {list(df.columns)} != spec {columns}")
        dups = df["event_id"].duplicated().sum()
        if dups:
            problems.append(f"{name}: {dups} duplicate event_id rows, e.g. {df.loc[df['event_id'].duplicated(), 'event_id'].iloc[0]}")
    a = a.drop_duplicates("event_id").set_index("event_id")
    b = b.drop_duplicates("event_id").set_index("event_id")
    only_a, only_b = a.index.difference(b.index), b.index.difference(a.index)
    if len(only_a):
        problems.append(f"{len(only_a)} rows only in {a_name}, e.g. {list(only_a[:max_rows])}")
    if len(only_b):
        problems.append(f"{len(only_b)} rows only in {b_name}, e.g. {list(only_b[:max_rows])}")
    common = a.index.intersection(b.index)
    a, b = a.loc[common], b.loc[common]
    for col in columns[1:]:
        if col not in a.columns or col not in b.columns:
            continue
        x, y = a[col], b[col]
        x_null, y_null = x.isna().to_numpy(), y.isna().to_numpy()
        both = ~x_null & ~y_null
        kind = _kind(x) if x.notna().any() else _kind(y)
        if kind == "ts":
            xv = pd.to_datetime(x).astype("datetime64[us]").to_numpy()
            yv = pd.to_datetime(y).astype("datetime64[us]").to_numpy()
            bad = both & (xv != yv)
        elif kind == "float" or _kind(y) == "float":
            xv, yv = x.to_numpy(dtype="float64", na_value=np.nan), y.to_numpy(dtype="float64", na_value=np.nan)
            diff = np.abs(xv - yv)
            with np.errstate(invalid="ignore", divide="ignore"):
                rel = diff / np.maximum(np.abs(xv), np.abs(yv))
            bad = both & ~((diff <= ABS_TOL) | (rel <= REL_TOL))
        elif kind == "int":
            bad = both & (x.astype("Int64") != y.astype("Int64")).fillna(False).to_numpy(dtype=bool)
        else:
            bad = both & (x.astype(str).to_numpy() != y.astype(str).to_numpy())
        bad |= x_null != y_null
        n_bad = int(bad.sum())
        if n_bad:
            ids = common[bad][:max_rows]
            examples = "; ".join(f"{i}: {a_name}={a.at[i, col]!r} {b_name}={b.at[i, col]!r}" for i in ids)
            problems.append(f"{col}: {n_bad} of {len(common)} rows differ, e.g. {examples}")
    return problems
