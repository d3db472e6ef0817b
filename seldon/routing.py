"""Where a request goes: the manifest's traffic weights over the predictors that are up.

The manifest says who should get what share; the runtime's endpoints file says where each
predictor listens and whether it is ready. A predictor that is not ready gets no traffic
(the others' weights are renormalised). Both files are re-read when they change.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
from dataclasses import dataclass
from pathlib import Path

from seldon import manifest as mf
from seldon.errors import HttpError


class RouteError(HttpError):
    """An HTTP error raised by routing."""


@dataclass(frozen=True)
class Route:
    name: str
    host: str
    port: int
    version: str
    weight: int
    shadow: bool


def bucket(request_id: str) -> float:
    """A stable position in [0, 100) for a request id: the same id always takes the same path."""
    return int.from_bytes(hashlib.blake2b(request_id.encode(), digest_size=8).digest(), "big") % 10_000 / 100.0


class Routes:
    def __init__(self, manifest_path: str | Path, endpoints_path: str | Path):
        self.manifest_path, self.endpoints_path = Path(manifest_path), Path(endpoints_path)
        self._stamp = None
        self._lock = threading.Lock()
        self.override: dict[str, int] | None = None  # admin-set weights until the manifest changes
        self.name = self.namespace = self.image = ""
        self.routes: dict[str, Route] = {}
        self.refresh()

    def _stamps(self):
        return tuple(os.stat(p).st_mtime_ns if p.exists() else 0 for p in (self.manifest_path, self.endpoints_path))

    def refresh(self, force: bool = False) -> bool:
        """Re-read the files if they changed; returns whether anything was reloaded."""
        stamp = self._stamps()
        if stamp == self._stamp and not force:
            return False
        with self._lock:
            manifest = mf.load(self.manifest_path)
            endpoints = json.loads(self.endpoints_path.read_text()) if self.endpoints_path.exists() else {}
            eps = endpoints.get("predictors", {})
            routes = {}
            for name, p in mf.summary(manifest).items():
                ep = eps.get(name)
                if ep and ep.get("ready"):
                    routes[name] = Route(
                        name,
                        ep.get("host", "127.0.0.1"),
                        int(ep["port"]),
                        ep.get("version", p["version"]),
                        p["traffic"],
                        p["shadow"],
                    )
            if self._stamp is None or stamp[0] != self._stamp[0]:
                self.override = None
            self.name, self.namespace = manifest["metadata"]["name"], manifest["metadata"].get("namespace", "default")
            spec0 = manifest["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0]
            self.image = spec0.get("image", "")
            self.routes, self._stamp = routes, stamp
        return True

    def weights(self) -> dict[str, int]:
        base = {n: r.weight for n, r in self.routes.items() if not r.shadow}
        if self.override is not None:
            base = {n: self.override.get(n, 0) for n in base}
        return base

    def set_weights(self, weights: dict) -> dict[str, int]:
        unknown = [n[:64] for n in weights if n not in self.routes][:5]
        if unknown or not all(type(v) is int and 0 <= v <= 100 for v in weights.values()):  # not bools
            raise RouteError(400, f"weights must be integers 0..100 for known predictors (unknown: {unknown})")
        if sum(weights.values()) != 100:
            raise RouteError(400, "weights must add up to 100")
        self.override = dict(weights)
        return self.weights()

    def choose(self, request_id: str | None, pinned: str | None) -> Route:
        if pinned:
            route = self.routes.get(pinned)
            if route is None:
                status = 400 if pinned not in self.known() else 503
                raise RouteError(status, f"predictor {pinned[:64]!r} is not available")
            return route
        weights = self.weights()
        total = sum(weights.values())
        if total <= 0:
            raise RouteError(503, "no predictor is ready")
        point = (bucket(request_id) if request_id else random.random() * 100.0) * total / 100.0
        acc = 0.0
        for name, w in weights.items():
            acc += w
            if point < acc:
                return self.routes[name]
        return self.routes[next(n for n, w in weights.items() if w > 0)]

    def shadow(self) -> Route | None:
        return next((r for r in self.routes.values() if r.shadow), None)

    def known(self) -> set[str]:
        return set(mf.summary(mf.load(self.manifest_path)))

    def state(self) -> dict:
        return {
            "deployment": self.name,
            "namespace": self.namespace,
            "weights": self.weights(),
            "override": self.override,
            "predictors": {
                n: {"port": r.port, "version": r.version, "weight": r.weight, "shadow": r.shadow}
                for n, r in self.routes.items()
            },
        }
