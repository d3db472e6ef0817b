"""Where the canary controller reads its figures: the local ingress's `/metrics` or Prometheus.

Both give the same per-predictor `Stats` over the interval since a step started (requests, 5xx,
the latency histogram, the score histogram), so one policy (`sensors.canary.analyze`) decides:

- `ingress` (the local runtime): cumulative counters read once a tick; the interval is the
  difference to the snapshot taken when it started (`IngressReading`).
- `prometheus` (a cluster): PromQL `increase(...[window])` over the interval, evaluated at the
  tick's time (`PrometheusReading`): counter resets (a restarted pod, a new gunicorn worker) are
  Prometheus' business, and the cursor keeps only the interval's start time.

Which series Prometheus holds in a cluster: Seldon's executor (the service orchestrator in every
predictor pod) counts and times each request per predictor and HTTP code
(`seldon_api_executor_server_requests_seconds_{count,bucket}`); the model container's
`seldon-core-microservice` exports only the component's custom metrics, here FraudModel's score
histogram (`driftline_score_bucket_total`). The microservice has no request, error or latency
series of its own, and could not count the 5xx it never answers (a crash, a timeout). Locally the
ingress plays the executor's part, so a Prometheus scraping the local runtime reads the
ingress's series for requests and the predictors' own for scores. docs/monitoring.md has the
queries and the scrape config.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import Protocol

SOURCES = ("ingress", "prometheus")
SCORE_METRIC = "driftline_score_bucket_total"  # seldon.model.FraudModel's custom metric: one counter per bucket


class MetricsUnavailable(Exception):
    """The figures could not be read this tick (the controller holds and says why)."""


@dataclass
class Stats:
    requests: float = 0.0
    errors: float = 0.0
    latency: dict = field(default_factory=dict)  # le -> cumulative count
    scores: dict = field(default_factory=dict)  # le -> cumulative count


# ------------------------------------------------------------------ the local ingress
def read_stats(text: str) -> dict[str, Stats]:
    """The ingress's cumulative counters per predictor."""
    from seldon.prom import P, parse

    out: dict[str, Stats] = {}
    for name, labels, value in parse(text):
        pred = labels.get("predictor")
        if pred is None:
            continue
        s = out.setdefault(pred, Stats())
        if name == f"{P}requests_total":
            s.requests += value
            s.errors += value if labels.get("status", "").startswith("5") else 0.0
        elif name == f"{P}request_duration_seconds_bucket":
            s.latency[labels["le"]] = value
        elif name == f"{P}score_bucket":
            s.scores[labels["le"]] = value
    return out


def delta(now: Stats, before: dict | None) -> Stats:
    b = Stats(**before) if before else Stats()
    return Stats(
        now.requests - b.requests,
        now.errors - b.errors,
        {k: v - b.latency.get(k, 0.0) for k, v in now.latency.items()},
        {k: v - b.scores.get(k, 0.0) for k, v in now.scores.items()},
    )


class Reading(Protocol):
    """One tick's look at the figures: `mark()` is where an interval starting now begins (JSON,
    kept in the sensor's cursor), `since(mark)` the per-predictor figures of the interval."""

    source: str

    def mark(self) -> dict: ...

    def since(self, mark: dict) -> dict[str, Stats]: ...


class IngressReading:
    source = "ingress"

    def __init__(self, text: str):
        self.stats = read_stats(text)

    def mark(self) -> dict:
        return {n: asdict(s) for n, s in self.stats.items()}

    def since(self, mark: dict) -> dict[str, Stats]:
        return {n: delta(s, mark.get(n)) for n, s in self.stats.items()}


# ------------------------------------------------------------------ Prometheus
@dataclass(frozen=True)
class RequestSeries:
    """Where the per-request figures are: metric names and label names."""

    count: str  # counter of requests, labelled with the predictor and the HTTP code
    bucket: str  # latency histogram buckets (seconds)
    predictor: str
    deployment: str
    code: str
    extra: str = ""  # further matchers

    def selector(self, deployment: str, namespace: str | None) -> str:
        matchers = [f'{self.deployment}="{_quote(deployment)}"']
        if namespace:
            matchers.append(f'namespace="{_quote(namespace)}"')
        if self.extra:
            matchers.append(self.extra)
        return "{" + ",".join(matchers) + "}"


# Seldon Core v1's executor: `service` is the API path; only predictions count (not feedback,
# metadata or probes).
EXECUTOR = RequestSeries(
    count="seldon_api_executor_server_requests_seconds_count",
    bucket="seldon_api_executor_server_requests_seconds_bucket",
    predictor="predictor_name",
    deployment="deployment_name",
    code="code",
    extra='service=~".*predictions"',
)
# The local ingress (seldon/prom.py): it counts predictions only.
INGRESS = RequestSeries(
    count="seldon_ingress_requests_total",
    bucket="seldon_ingress_request_duration_seconds_bucket",
    predictor="predictor",
    deployment="deployment",
    code="status",
)


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _window(seconds: float) -> str:
    return f"{max(int(seconds * 1000), 1)}ms"


def queries(series: RequestSeries, deployment: str, namespace: str | None, window_s: float) -> dict[str, str]:
    """The three PromQL queries of one interval ending at the evaluation time."""
    w, sel = _window(window_s), series.selector(deployment, namespace)
    score_sel = [f'deployment_name="{_quote(deployment)}"', 'method="predict"']
    if namespace:
        score_sel.append(f'namespace="{_quote(namespace)}"')
    return {
        "requests": f"sum by ({series.predictor}, {series.code}) (increase({series.count}{sel}[{w}]))",
        "latency": f"sum by ({series.predictor}, le) (increase({series.bucket}{sel}[{w}]))",
        "scores": f"sum by (predictor_name, le) (increase({SCORE_METRIC}{{{','.join(score_sel)}}}[{w}]))",
    }


def _le_key(le: str) -> float:
    return math.inf if le == "+Inf" else float(le)


@dataclass
class PrometheusSource:
    """Reads one SeldonDeployment's figures from Prometheus' HTTP API (`/api/v1/query`)."""

    url: str
    deployment: str
    namespace: str | None = None  # matched when the scrape config adds a `namespace` label (k8s)
    series: RequestSeries = EXECUTOR
    timeout_s: float = 5.0

    def query(self, promql: str, at: float) -> list[dict]:
        params = urllib.parse.urlencode({"query": promql, "time": f"{at:.3f}"})
        endpoint = f"{self.url.rstrip('/')}/api/v1/query?{params}"
        try:
            with urllib.request.urlopen(endpoint, timeout=self.timeout_s) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as err:  # Prometheus explains a bad query in the body
            detail = err.read().decode(errors="replace")[:300]
            raise MetricsUnavailable(f"Prometheus at {self.url} answered {err.code}: {detail}") from None
        except (OSError, ValueError) as err:  # refused, unresolvable, timed out, not JSON
            raise MetricsUnavailable(f"Prometheus at {self.url} unreachable: {err}") from None
        if body.get("status") != "success":
            raise MetricsUnavailable(f"Prometheus at {self.url}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]["result"]

    def interval(self, start: float, end: float) -> dict[str, Stats]:
        """Per-predictor figures of [start, end] (increase() extrapolates to the window's edges)."""
        q = queries(self.series, self.deployment, self.namespace, end - start)
        out: dict[str, Stats] = {}
        requests = self.query(q["requests"], end)
        if not requests:
            raise MetricsUnavailable(
                f"no {self.series.count} series for deployment {self.deployment!r} in Prometheus at {self.url} "
                f"over the last {end - start:.0f}s (scrape config applied? scrape interval under half the tick's?)"
            )
        for r in requests:
            s = out.setdefault(r["metric"].get(self.series.predictor, "?"), Stats())
            n = float(r["value"][1])
            s.requests += n
            s.errors += n if r["metric"].get(self.series.code, "").startswith("5") else 0.0
        for r in self.query(q["latency"], end):
            s = out.setdefault(r["metric"].get(self.series.predictor, "?"), Stats())
            s.latency[r["metric"]["le"]] = float(r["value"][1])
        per_bucket: dict[str, dict[str, float]] = {}
        for r in self.query(q["scores"], end):
            per_bucket.setdefault(r["metric"].get("predictor_name", "?"), {})[r["metric"]["le"]] = float(r["value"][1])
        for pred, counts in per_bucket.items():  # FraudModel counts per bucket: cumulate like a histogram
            cum, s = 0.0, out.setdefault(pred, Stats())
            for le in sorted(counts, key=_le_key):
                cum += counts[le]
                s.scores[le] = cum
            s.scores["+Inf"] = cum
        return out


class PrometheusReading:
    source = "prometheus"

    def __init__(self, prom: PrometheusSource, now: float | None = None):
        self.prom, self.now = prom, time.time() if now is None else now

    def mark(self) -> dict:
        return {"t": self.now}

    def since(self, mark: dict) -> dict[str, Stats]:
        return self.prom.interval(float(mark["t"]), self.now)


def reading(target) -> Reading:
    """This tick's reading for a `SeldonTarget` (its `metrics_source`): requests from the
    executor's series on a kubernetes target, from the ingress's on the local one."""
    source = getattr(target, "metrics_source", "ingress")
    if source == "ingress":
        return IngressReading(target.ingress_metrics())
    if source != "prometheus":
        raise ValueError(f"SeldonTarget.metrics_source must be one of {SOURCES}, got {source!r}")
    if not target.prometheus_url:
        raise ValueError("SeldonTarget.metrics_source is 'prometheus' but prometheus_url is unset")
    k8s = target.kind == "kubernetes"
    prom = PrometheusSource(
        url=target.prometheus_url,
        deployment=target.deployment_name,
        namespace=target.namespace if k8s else None,
        series=EXECUTOR if k8s else INGRESS,
    )
    return PrometheusReading(prom)
