"""What tests of the serving side share: where the serving environment is, the ingress secret and
clients calling a deployment in the background."""

from __future__ import annotations

import random
import threading
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVING_PY = REPO_ROOT / ".venv-serving" / "bin" / "python"
SECRET = "test-secret-that-is-long-enough-for-hs256!"


class BackgroundTraffic:
    """Two client threads posting sample rows to a deployment's ingress until the block ends;
    `results` holds (predictor answering, status), 0 for a failed connection."""

    def __init__(self, ingress_url: str, deployment: str = "/seldon/default/fraud", threads: int = 2):
        from testkit.artifacts import sample_rows

        self.url = f"{ingress_url}{deployment}/api/v1.0/predictions"
        self.results: list[tuple[str, int]] = []
        self.stop = threading.Event()
        names, rows = sample_rows(20)
        self.bodies = [{"data": {"names": names, "ndarray": [r]}} for r in rows]
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def codes(self, predictor: str) -> list[int]:
        """The statuses `predictor` ("main", "canary") answered with."""
        return [status for who, status in self.results if who == predictor]

    def _run(self) -> None:
        import requests

        from testkit.tokens import token

        headers = {"Authorization": f"Bearer {token(SECRET, 'predict')}"}
        with requests.Session() as s:
            while not self.stop.is_set():
                try:
                    r = s.post(self.url, json=random.choice(self.bodies), headers=headers, timeout=10)
                    self.results.append((r.headers.get("Seldon-Predictor", "?"), r.status_code))
                except requests.RequestException:
                    self.results.append(("?", 0))

    def __enter__(self) -> BackgroundTraffic:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(15)
