"""Realistic traffic for the demo: the day's transactions as raw `jsonData` requests through the
ingress, with a JWT, from a few concurrent clients (as card terminals would call)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

PATH = "/seldon/{namespace}/{deployment}/api/v1.0/predictions"


def predictions_url(ingress_url: str, namespace: str = "default", deployment: str = "fraud") -> str:
    """Seldon's external prediction endpoint of a deployment behind the ingress."""
    return ingress_url.rstrip("/") + PATH.format(namespace=namespace, deployment=deployment)


def transaction_payloads(frame, limit: int, seed: int = 0) -> list[dict]:
    """`limit` of the frame's transactions (sampled, in time order) as raw `jsonData` request bodies."""
    rows = frame.sample(n=min(limit, len(frame)), random_state=seed).sort_values("event_ts")
    return [
        {
            "jsonData": {
                "user_id": int(r.user_id),
                "merchant_id": int(r.merchant_id),
                "amount": float(r.amount),
                "country": r.country,
                "category": r.category,
                "channel": r.channel,
                "event_ts": r.event_ts.isoformat(),
            }
        }
        for r in rows.itertuples()
    ]


class Traffic:
    """Sends payloads round-robin until stopped; counts answers by status."""

    def __init__(
        self, ingress_url: str, token: str, namespace: str = "default", deployment: str = "fraud", clients: int = 4
    ):
        import requests

        self.url = predictions_url(ingress_url, namespace, deployment)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.clients = clients
        self.sessions = [requests.Session() for _ in range(clients)]
        self.status: dict[int, int] = {}
        self.by_predictor: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    def _send(self, client: int, payload: dict) -> None:
        try:
            r = self.sessions[client].post(self.url, json=payload, headers=self.headers, timeout=10)
            code, predictor = r.status_code, r.headers.get("Seldon-Predictor", "?")
        except Exception:  # noqa: BLE001 - counted as a failed call, the demo goes on
            code, predictor = 0, "?"
        with self._lock:
            self.status[code] = self.status.get(code, 0) + 1
            self.by_predictor[predictor] = self.by_predictor.get(predictor, 0) + 1

    def send(self, payloads: list[dict]) -> dict[int, int]:
        """Send each payload once (blocking)."""
        with ThreadPoolExecutor(self.clients) as pool:
            for i, p in enumerate(payloads):
                pool.submit(self._send, i % self.clients, p)
        return dict(self.status)

    def start_loop(self, payloads: list[dict], rate_per_s: float = 40.0) -> None:
        """Keep sending in the background (for canary analysis) until stop()."""

        def loop():
            i = 0
            while not self._stop.is_set():
                self._send(i % self.clients, payloads[i % len(payloads)])
                i += 1
                time.sleep(1.0 / rate_per_s)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=15)
