"""The demo's card-testing burst: why fresh features matter, on one card.

Twenty small online payments within two minutes of event time are replayed in real time over a
few seconds. Each payment is scored the way the serving path scores it (the model's feature
service read from the online store, `seldon.online`) by the newest model trained on
`fraud_model_v2` (velocity finished at request time from what the stream worker pushed) and by
the newest trained on `fraud_model_v1` (the daily snapshot), then published to the broker as the
payment system would. The timeline shows the card's served `user_txn_count_1h` rising within
seconds and the v2 score with it, beside the snapshot's 24 h count, which stays as of last night.
"""

from __future__ import annotations

import datetime as dt
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from driftline import spec

BURST_SIZE = 20
BURST_SPAN_S = 120.0  # event time the payments are spread over
PACE_S = 0.25  # wall-clock time between two published payments (20 -> 5 s)
SETTLE_S = 5.0  # how long the served count may take to include the last payment
PRODUCER = "driftline-demo-burst"
COUNT_1H = spec.user_txn_count(spec.USER_SHORT)
COUNT_24H = spec.user_txn_count(spec.USER_MEDIUM)


class OnlineScorer:
    """A serving artifact and the online path of its feature service (sqlite online store read
    in-process, as the local predictors do): one transaction -> (served features, score)."""

    def __init__(self, artifact_dir: str | Path, feast_repo: str | Path, label: str = ""):
        from seldon.artifact import ServingModel
        from seldon.online import feature_source

        self.model = ServingModel(artifact_dir)
        self.service = self.model.feature_service
        self.label = label or f"{self.model.schema.model_name} v{self.model.schema.model_version}"
        self.source = feature_source(f"file://{Path(feast_repo).resolve()}", service=self.service)

    def score(self, tx: Mapping) -> tuple[dict, float]:
        from seldon.online import raw_columns, request_entities

        rows = [dict(tx)]
        served = self.source.features(request_entities(rows))
        columns = raw_columns(rows, served, self.model.schema.feature_names)
        return {k: v[0] for k, v in served.items()}, float(self.model.score_columns(columns)[0])


def burst_events(
    user_id: int,
    merchant_id: int,
    start: dt.datetime,
    n: int = BURST_SIZE,
    span_s: float = BURST_SPAN_S,
    country: str = "FR",
    category: str = "electronics",
    currency: str = "EUR",
    seed: int = 0,
) -> list[dict]:
    """`n` card-testing payments (0.50-5.00, online, one merchant) within `span_s` of event time
    from `start` (UTC), as schema v1 `transactions` events."""
    from streaming.schema import format_ts

    rng = random.Random(seed)
    offsets = sorted(rng.uniform(0, span_s) for _ in range(n - 1))
    run = uuid.uuid4().hex[:8]
    return [
        {
            "event_id": f"burst-{run}-{i:02d}",
            "event_ts": format_ts(start + dt.timedelta(seconds=offset)),
            "user_id": int(user_id),
            "merchant_id": int(merchant_id),
            "amount": round(rng.uniform(0.5, 5.0), 2),
            "currency": currency,
            "category": category,
            "country": country,
            "channel": "ecom",
        }
        for i, offset in enumerate([0.0, *offsets])
    ]


def _request(event: Mapping) -> dict:
    """The scoring request of an event (the `jsonData` fields the predictors take)."""
    keys = ("user_id", "merchant_id", "amount", "country", "category", "channel", "event_ts")
    return {k: event[k] for k in keys}


@dataclass
class BurstRow:
    index: int
    wall_s: float  # since the first payment was scored
    event_ts: str
    amount: float
    v2_count_1h: int | None  # served (fresh) at the payment's event time, itself excluded
    v2_score: float
    v1_count_24h: int | None  # the daily snapshot's
    v1_score: float | None


@dataclass
class BurstResult:
    rows: list[BurstRow]
    settled_count_1h: int | None  # served just after the last payment, once it is in
    settled_after_s: float  # wall time from publishing the last payment until then
    settled_score: float


def run_burst(
    bus,
    events: list[dict],
    v2: OnlineScorer,
    v1: OnlineScorer | None = None,
    pace_s: float = PACE_S,
    settle_s: float = SETTLE_S,
    on_row: Callable[[BurstRow], None] | None = None,
) -> BurstResult:
    """Each payment in turn: scored by v2 (and v1), then published to `bus` (an EventBus);
    `pace_s` apart (`on_row` sees each row as it is made). Then the card as served just after
    the last one, until it includes it."""
    rows, t0 = [], time.monotonic()
    for i, event in enumerate(events):
        due = t0 + i * pace_s
        if (ahead := due - time.monotonic()) > 0:
            time.sleep(ahead)
        wall = time.monotonic() - t0
        request = _request(event)
        served2, score2 = v2.score(request)
        served1, score1 = v1.score(request) if v1 else ({}, None)
        bus.publish("transactions", [event], PRODUCER)
        count1 = served1.get(COUNT_24H)
        rows.append(
            BurstRow(i + 1, wall, event["event_ts"], event["amount"], served2.get(COUNT_1H), score2, count1, score1)
        )
        if on_row:
            on_row(rows[-1])
    published = time.monotonic()
    after = dict(_request(events[-1]), event_ts=_after(events[-1]["event_ts"]))
    while True:
        served, score = v2.score(after)
        settled = served.get(COUNT_1H)
        if (settled or 0) >= len(events) or time.monotonic() - published >= settle_s:
            return BurstResult(rows, settled, time.monotonic() - published, score)
        time.sleep(0.05)


def _after(event_ts: str) -> str:
    from streaming.schema import format_ts

    return format_ts(dt.datetime.fromisoformat(event_ts) + dt.timedelta(milliseconds=1))


def _num(value) -> str:
    return "-" if value is None else str(value)


HEADER = (
    f"   {'wall':>6}  {'event time':>12} {'amount':>6} | v2 fresh: {COUNT_1H} {'score':>6} | "
    f"v1 snapshot: {COUNT_24H} {'score':>6}"
)


def row_line(r: BurstRow) -> str:
    """One payment: wall time since the burst began, fresh count and v2 score, snapshot count and v1 score."""
    v1_score = "-" if r.v1_score is None else f"{r.v1_score:.3f}"
    return (
        f"   {r.wall_s:5.2f}s  {r.event_ts[11:23]:>12} {r.amount:6.2f} | {_num(r.v2_count_1h):>27} "
        f"{r.v2_score:6.3f} | {_num(r.v1_count_24h):>31} {v1_score:>6}"
    )


def summary_line(result: BurstResult, v2: OnlineScorer, v1: OnlineScorer | None) -> str:
    first, last = result.rows[0], result.rows[-1]
    out = (
        f"   {v2.label}: {COUNT_1H} {_num(first.v2_count_1h)} -> {_num(result.settled_count_1h)} served "
        f"{result.settled_after_s:.2f} s after the last payment was published; score {first.v2_score:.3f} -> "
        f"{result.settled_score:.3f}"
    )
    if v1 and first.v1_score is not None and last.v1_score is not None:
        out += (
            f"; the snapshot's {COUNT_24H} stayed {_num(last.v1_count_24h)}, "
            f"{v1.label} score {first.v1_score:.3f} -> {last.v1_score:.3f}"
        )
    return out


def timeline_lines(result: BurstResult, v2: OnlineScorer, v1: OnlineScorer | None) -> list[str]:
    """The whole burst as timeline lines (the demo prints them as they happen)."""
    return [HEADER, *map(row_line, result.rows), summary_line(result, v2, v1)]


# ------------------------------------------------------------------ the demo's burst
def newest_versions(registry) -> dict[str, str]:
    """feature service -> the newest registered version trained on it (MlflowRegistry)."""
    client = registry.client()
    out: dict[str, tuple[int, str]] = {}
    for v in client.search_model_versions(f"name='{registry.model_name}'"):
        service = (v.tags or {}).get("feature_service", spec.FEATURE_SERVICE)
        if int(v.version) > out.get(service, (0, ""))[0]:
            out[service] = (int(v.version), str(v.version))
    return {service: version for service, (_, version) in out.items()}


def pick_card(frame, start: dt.datetime) -> tuple[int, dict]:
    """A card with no payment in the hour before `start` and an online merchant of the day's
    traffic: (user_id, merchant fields)."""
    quiet = frame.groupby("user_id")["event_ts"].max()
    quiet = quiet[quiet < start - dt.timedelta(hours=1)]
    user = int(quiet.index[len(quiet) // 2]) if len(quiet) else int(frame["user_id"].iloc[0])
    online = frame[frame["channel"] == "ecom"]
    row = (online if len(online) else frame).iloc[0]
    merchant = {
        "merchant_id": int(row.merchant_id),
        "country": str(row.country),
        "category": str(row.category),
        "currency": str(row.currency),
    }
    return user, merchant


def demo_burst(
    bus, registry, feast_repo: Path, frame, work_dir: Path, log: Callable[[str], None]
) -> BurstResult | None:
    """The demo's step: a burst on one card of today's traffic (`frame`), just after its last
    payment; the timeline lines through `log`. None (said on the timeline) without a v2 model."""
    versions = newest_versions(registry)
    if spec.FEATURE_SERVICE_V2 not in versions:
        log(f"   no model trained on {spec.FEATURE_SERVICE_V2} in the registry: no burst")
        return None
    scorers: dict[str, OnlineScorer] = {}
    for service, version in sorted(versions.items()):
        artifact = registry.serving_artifact(version, work_dir / f"v{version}")
        scorers[service] = OnlineScorer(artifact, feast_repo, label=f"version {version} ({service})")
    v2, v1 = scorers[spec.FEATURE_SERVICE_V2], scorers.get(spec.FEATURE_SERVICE)
    start = frame["event_ts"].max().to_pydatetime() + dt.timedelta(minutes=1)
    user, merchant = pick_card(frame, start)
    events = burst_events(user, start=start, **merchant)
    log(
        f"9. card-testing burst on card {user}: {len(events)} payments of 0.50-5.00 at online merchant "
        f"{merchant['merchant_id']} within {BURST_SPAN_S:.0f} s of event time, published over "
        f"{PACE_S * (len(events) - 1):.0f} s; each scored by {v2.label} and {v1.label if v1 else 'no v1 model'}"
    )
    log(HEADER)
    result = run_burst(bus, events, v2, v1, on_row=lambda r: log(row_line(r)))
    log(summary_line(result, v2, v1))
    return result
