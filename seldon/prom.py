"""Prometheus metrics of the ingress, plus a parser for the canary controller.

A few counters and histograms behind one lock: cheaper on the request path than
prometheus_client 0.8 (the version seldon-core pins), and the text format is the standard one.
"""

from __future__ import annotations

import bisect
import re
import threading
from collections import defaultdict

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
SCORE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
P = "seldon_ingress_"


class Histogram:
    def __init__(self, bounds):
        self.bounds, self.counts, self.sum = tuple(bounds), [0] * (len(bounds) + 1), 0.0

    def observe(self, value: float, n: int = 1):
        self.counts[bisect.bisect_left(self.bounds, value)] += n
        self.sum += value * n


class Metrics:
    def __init__(self, deployment: str):
        self.deployment = deployment
        self.lock = threading.Lock()
        self.requests: dict[tuple, int] = defaultdict(int)  # (predictor, status) -> n
        self.latency: dict[str, Histogram] = {}
        self.scores: dict[str, Histogram] = {}
        self.in_flight = 0
        self.gauges: dict[str, float] = {}

    def enter(self):
        with self.lock:
            self.in_flight += 1

    def exit(self):
        with self.lock:
            self.in_flight -= 1

    def request(self, predictor: str, status: int, seconds: float, scores=None):
        with self.lock:
            self.requests[(predictor, status)] += 1
            h = self.latency.get(predictor) or self.latency.setdefault(predictor, Histogram(LATENCY_BUCKETS))
            h.observe(seconds)
            if scores:
                s = self.scores.get(predictor) or self.scores.setdefault(predictor, Histogram(SCORE_BUCKETS))
                for v in scores:
                    s.observe(v)

    def render(self) -> str:
        d = f'deployment="{self.deployment}"'
        out = [f"# TYPE {P}requests_total counter"]
        with self.lock:
            for (pred, status), n in sorted(self.requests.items()):
                out.append(f'{P}requests_total{{{d},predictor="{pred}",status="{status}"}} {n}')
            out += _histograms(f"{P}request_duration_seconds", self.latency, d)
            out += _histograms(f"{P}score", self.scores, d)
            out += [f"# TYPE {P}in_flight_requests gauge", f"{P}in_flight_requests{{{d}}} {self.in_flight}"]
            for name, value in sorted(self.gauges.items()):
                base, _, labels = name.partition("|")
                out.append(f"{P}{base}{{{d}{',' + labels if labels else ''}}} {value}")
        return "\n".join(out) + "\n"


def _histograms(name: str, hists: dict[str, Histogram], d: str) -> list[str]:
    out = [f"# TYPE {name} histogram"]
    for pred, h in sorted(hists.items()):
        cum = 0
        for bound, c in zip((*h.bounds, "+Inf"), h.counts, strict=True):  # a count per bound and +Inf
            cum += c
            out.append(f'{name}_bucket{{{d},predictor="{pred}",le="{bound}"}} {cum}')
        out += [f'{name}_sum{{{d},predictor="{pred}"}} {h.sum}', f'{name}_count{{{d},predictor="{pred}"}} {cum}']
    return out


_LINE = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> list[tuple[str, dict, float]]:
    """Prometheus text -> [(name, labels, value)] (enough for the controller's reads)."""
    out = []
    for line in text.splitlines():
        m = _LINE.match(line.strip())
        if m and not line.startswith("#"):
            out.append((m.group(1), dict(_LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return out
