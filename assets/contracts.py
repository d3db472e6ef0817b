"""Data contracts for the raw event streams (pandera), and the split into valid rows and a
quarantine that keeps every rejected row with the reason it was rejected.

Nothing is dropped silently: valid + quarantined == input, always.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import pandas as pd

from resources.synthetic.catalog import CHANNELS, KNOWN_CURRENCIES

MAX_AMOUNT_EUR = 50_000.0


@dataclass(frozen=True)
class Contract:
    name: str
    columns: dict[str, str]  # column -> kind: string | int | float | timestamp | bool
    partition_column: str  # the timestamp that must fall inside the partition's day
    optional: frozenset[str] = field(default_factory=frozenset)


TRANSACTIONS = Contract(
    name="raw_transactions",
    columns={
        "event_id": "string",
        "event_ts": "timestamp",
        "user_id": "int",
        "merchant_id": "int",
        "amount": "float",
        "currency": "string",
        "category": "string",
        "country": "string",
        "channel": "string",
    },
    partition_column="event_ts",
)
LABELS = Contract(
    name="raw_labels",
    columns={
        "event_id": "string",
        "event_ts": "timestamp",
        "user_id": "int",
        "merchant_id": "int",
        "label_ts": "timestamp",
        "is_fraud": "bool",
        "reason_code": "string",
    },
    partition_column="label_ts",
    optional=frozenset({"reason_code"}),
)


def _pandera_schema(contract: Contract, day: dt.date):
    import pandera.pandas as pa

    start = pd.Timestamp(day)
    end = start + pd.Timedelta(days=1)
    kinds = {"string": "string", "int": "Int64", "float": "Float64", "timestamp": "datetime64[ns]", "bool": "boolean"}
    cols = {}
    for name, kind in contract.columns.items():
        checks = []
        if name == contract.partition_column:
            checks.append(
                pa.Check(
                    lambda s, a=start, b=end: (s >= a) & (s < b),
                    element_wise=False,
                    error=f"{name} outside the partition {day.isoformat()}",
                    name="in_partition",
                )
            )
        if name == "amount":
            checks.append(pa.Check.gt(0, error="amount not positive"))
            checks.append(pa.Check.le(MAX_AMOUNT_EUR, error=f"amount above {MAX_AMOUNT_EUR:.0f} EUR"))
        if name == "currency":
            checks.append(pa.Check.isin(sorted(KNOWN_CURRENCIES), error="unknown currency"))
        if name == "channel":
            checks.append(pa.Check.isin(list(CHANNELS), error="unknown channel"))
        if name in ("user_id", "merchant_id"):
            checks.append(pa.Check.ge(0, error=f"{name} negative"))
        if name in ("country",):
            checks.append(pa.Check.str_matches(r"^[A-Z]{2}$", error="country not ISO 3166 alpha-2"))
        cols[name] = pa.Column(
            kinds[kind],
            checks=checks,
            nullable=name in contract.optional,
            unique=name == "event_id",
            report_duplicates="exclude_first",
        )
    frame_checks = []
    if contract is LABELS:
        frame_checks.append(
            pa.Check(
                lambda df: df["label_ts"] > df["event_ts"],
                error="label_ts not after event_ts",
                name="label_after_event",
            )
        )
    return pa.DataFrameSchema(cols, checks=frame_checks, coerce=False, strict=False)


def _coerce(series: pd.Series, kind: str) -> pd.Series:
    if kind == "string":
        return series.astype("string").str.strip().replace("", pd.NA)
    if kind == "int":
        num = pd.to_numeric(series, errors="coerce")
        whole = num.notna() & (num == np.floor(num.where(num.notna(), 0)))
        return num.where(whole).astype("Float64").astype("Int64")
    if kind == "float":
        num = pd.to_numeric(series, errors="coerce").astype("Float64")
        return num.where(np.isfinite(num.astype(float).fillna(np.nan)))
    if kind == "timestamp":
        if pd.api.types.is_datetime64_any_dtype(series):
            out = series
        else:
            out = pd.to_datetime(series, errors="coerce", utc=True, format="ISO8601")
        if getattr(out.dt, "tz", None) is not None:
            out = out.dt.tz_convert("UTC").dt.tz_localize(None)
        return out.astype("datetime64[ns]")
    if kind == "bool":
        text = series.astype("string").str.strip().str.lower()
        mapped = text.map({"true": True, "1": True, "false": False, "0": False, "t": True, "f": False})
        return mapped.astype("boolean")
    raise ValueError(f"unknown column kind {kind!r}")


@dataclass
class Split:
    valid: pd.DataFrame
    quarantine: pd.DataFrame  # row_number, reason, record (the original row as JSON)

    @property
    def counts(self) -> dict[str, int]:
        return {
            "input_rows": len(self.valid) + len(self.quarantine),
            "valid_rows": len(self.valid),
            "quarantined_rows": len(self.quarantine),
        }

    def reason_counts(self) -> dict[str, int]:
        if self.quarantine.empty:
            return {}
        reasons = self.quarantine["reason"].str.split("; ").explode()
        return cast("dict[str, int]", reasons.value_counts().sort_index().to_dict())


def split_valid(raw: pd.DataFrame, contract: Contract, day: dt.date) -> Split:
    """Validate `raw` against `contract` for partition `day`; never raises on bad rows."""
    raw = raw.reset_index(drop=True)
    reasons: dict[int, list[str]] = {}
    flagged: set[tuple[int, str]] = set()

    def flag(rows, text, column=None):
        for r in rows:
            reasons.setdefault(int(r), []).append(text)
            if column:
                flagged.add((int(r), column))

    for extra in [c for c in raw.columns if c not in contract.columns]:
        flag(np.flatnonzero(raw[extra].notna().to_numpy()), f"unexpected column {extra}")
    coerced = {}
    for name, kind in contract.columns.items():
        if name not in raw.columns:
            if name in contract.optional:
                coerced[name] = _coerce(pd.Series([None] * len(raw), dtype=object), kind)
                continue
            flag(range(len(raw)), f"missing column {name}", name)
            coerced[name] = _coerce(pd.Series([None] * len(raw), dtype=object), kind)
            continue
        value = _coerce(raw[name], kind)
        given = raw[name].notna() & (raw[name].astype("string").str.strip() != "")
        bad = np.flatnonzero((given & value.isna()).to_numpy())
        flag(bad, f"unparseable {name} (not {'an' if kind[0] in 'aeiou' else 'a'} {kind})", name)
        coerced[name] = value
    frame = pd.DataFrame(coerced)

    import pandera.errors

    try:
        _pandera_schema(contract, day).validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as err:
        fc = err.failure_cases
        fc = fc[fc["index"].notna()]
        for row, column, check in zip(fc["index"].astype(int), fc["column"], fc["check"], strict=True):
            if (row, str(column)) in flagged:
                continue
            flag([row], _describe(str(column), str(check)), str(column))

    bad_rows = np.array(sorted(reasons), dtype=np.int64)
    good = np.setdiff1d(np.arange(len(raw)), bad_rows)
    valid = _to_storage(frame.iloc[good].reset_index(drop=True), contract)
    quarantine = pd.DataFrame(
        {
            "row_number": bad_rows,
            "reason": ["; ".join(dict.fromkeys(reasons[r])) for r in bad_rows],
            "record": [json.dumps(_jsonable(raw.iloc[r].to_dict()), sort_keys=True) for r in bad_rows],
        }
    )
    return Split(valid=valid, quarantine=quarantine)


def _describe(column: str, check: str) -> str:
    if check == "not_nullable":
        return f"null {column}"
    if check.startswith("field_uniqueness") or check == "unique":
        return f"duplicate {column}"
    if check.startswith("dtype"):
        return f"unparseable {column} (wrong type)"
    return check


def _jsonable(record: dict) -> dict:
    out = {}
    for k, v in record.items():
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA or v is pd.NaT:
            out[str(k)] = None
        elif isinstance(v, (pd.Timestamp, dt.datetime, dt.date)):
            out[str(k)] = v.isoformat()
        elif isinstance(v, np.generic):
            out[str(k)] = v.item()
        else:
            out[str(k)] = v if isinstance(v, (int, float, bool, str)) else str(v)
    return out


def _to_storage(frame: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    """Plain numpy/object dtypes for Parquet: int64, float64, bool, datetime64[us], str."""
    out = {}
    for name, kind in contract.columns.items():
        col = frame[name]
        if kind == "int":
            out[name] = col.astype("int64")
        elif kind == "float":
            out[name] = col.astype("float64")
        elif kind == "bool":
            out[name] = col.astype("bool")
        elif kind == "timestamp":
            out[name] = col.astype("datetime64[us]")
        else:
            out[name] = col.astype(object).where(col.notna(), None)  # pyright: ignore[reportArgumentType]  # pandas documents None as `other` (nulls in an object column); pandas-stubs omit it
    return pd.DataFrame(out, columns=list(contract.columns))
