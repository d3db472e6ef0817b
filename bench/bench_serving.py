"""`make bench-serving`: the serving path under load, measured with wrk.

Rows: single-row requests at concurrency 1 and 16, through the ingress and straight to the
predictor, beside a bare seldon-core-microservice serving a trivial model (the wrapper's own
floor); 1,000-row batches (rows/s) as `ndarray` and as flat `tensor`; one raw transaction
(jsonData + online features) when a Feast repo with an online store exists (data/feast, e.g.
after `make demo`). BENCH_SERVING_ONLINE=store (default: predictors read the online store
in-process) or server (predictors call `feast serve`); BENCH_SERVING_DURATION (default 8s).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVING_PY = ROOT / ".venv-serving" / "bin" / "python"
SECRET = "bench-secret-bench-secret-bench-secret!"
DURATION = os.environ.get("BENCH_SERVING_DURATION", "8s")
ONLINE = os.environ.get("BENCH_SERVING_ONLINE", "store")


def ensure_wrk() -> str:
    if not shutil.which("wrk"):
        print("installing wrk (apt-get install -y wrk)")
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=False, capture_output=True)
        if not shutil.which("wrk"):
            subprocess.run(["apt-get", "update"], check=False, capture_output=True)
            subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, capture_output=True)
    return shutil.which("wrk")


def wrk(url: str, body: dict, conns: int, headers: dict | None = None) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(json.dumps(body))}\n'
                'wrk.headers["Content-Type"] = "application/json"\n'
                + "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in (headers or {}).items()))
    out = subprocess.run(["wrk", "-t", str(min(conns, 2)), "-c", str(conns), "-d", DURATION, "--latency", "-s", f.name,
                          url], capture_output=True, text=True, check=True).stdout
    os.unlink(f.name)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "p50": _ms(out, "50%"),
            "p99": _ms(out, "99%"), "errors": int(non2xx.group(1)) if non2xx else 0}


def _ms(out: str, pct: str) -> float:
    value, unit = re.search(rf"{pct}\s+([\d.]+)(us|ms|s)", out).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wait_http(url: str, timeout_s: float = 90.0):
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError as err:
            if getattr(err, "code", None):  # any HTTP answer means it is up
                return
            time.sleep(0.3)
    raise TimeoutError(url)


def main():
    sys.path.insert(0, str(ROOT))
    import jwt

    from resources.seldon_target import SeldonTarget
    from seldon import manifest as mf
    from seldon.runtime import free_port
    from seldon.testing import build_artifact, sample_rows, small_schema

    ensure_wrk()
    work = ROOT / "data" / "bench" / "serving"
    shutil.rmtree(work, ignore_errors=True)
    os.environ["DRIFTLINE_INGRESS_JWT_SECRET"] = SECRET
    art = build_artifact(work / "model", "1", seed=0, schema=small_schema("1"))
    feast_repo = ROOT / "data" / "feast"
    port = free_port()
    target = SeldonTarget(serving_dir=str(work / "serving"), lake_root=str(work / "lake"), feast_repo=str(feast_repo),
                          ingress_url=f"http://127.0.0.1:{port}", online_features=ONLINE)
    target.apply(mf.render("fraud", "default", [mf.Predictor("main", "driftline-fraud", "1", str(art), 100,
                                                             feast_url=target.feast_url)], "driftline/serving:bench"))
    bare_port = free_port()
    bare = subprocess.Popen([str(ROOT / ".venv-serving" / "bin" / "seldon-core-microservice"), "seldon.testing.TrivialModel",
                             "--service-type", "MODEL", "--http-port", str(bare_port), "--grpc-port", str(free_port()),
                             "--metrics-port", str(free_port()), "--workers", "2"], cwd=ROOT, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        direct_port = json.loads((target.state_dir / "endpoints.json").read_text())["predictors"]["main"]["port"]
        ingress = f"http://127.0.0.1:{port}/seldon/default/fraud/api/v1.0/predictions"
        wait_http(f"http://127.0.0.1:{port}/live")
        wait_http(f"http://127.0.0.1:{bare_port}/health/ping")
        auth = {"Authorization": "Bearer " + jwt.encode({"sub": "bench", "scope": "predict",
                                                          "exp": int(time.time()) + 3600}, SECRET, algorithm="HS256")}
        names, rows = sample_rows(1000)
        one = {"data": {"names": names, "ndarray": rows[:1]}}
        batch = {"data": {"names": names, "ndarray": rows}}
        tensor = {"data": {"names": names, "tensor": {"shape": [len(rows), len(names)],
                                                      "values": [v for row in rows for v in row]}}}
        table = []
        for c in (1, 16):
            table.append((f"bare wrapper, trivial model, c={c}", wrk(f"http://127.0.0.1:{bare_port}/api/v1.0/predictions",
                                                                     {"data": {"ndarray": [[1.0, 2.0]]}}, c)))
            table.append((f"predictor direct, 1 row, c={c}", wrk(f"http://127.0.0.1:{direct_port}/api/v1.0/predictions",
                                                                 one, c)))
            table.append((f"ingress, 1 row, c={c}", wrk(ingress, one, c, auth)))
        for kind, body in (("ndarray", batch), ("tensor", tensor)):
            table.append((f"ingress, 1,000-row batch ({kind}), c=4", wrk(ingress, body, 4, auth)))
            table.append((f"predictor direct, 1,000-row batch ({kind}), c=4",
                          wrk(f"http://127.0.0.1:{direct_port}/api/v1.0/predictions", body, 4)))
        raw = _raw_transaction(feast_repo)
        if raw:
            name = f"ingress, raw jsonData + online features ({target.feast_url.split(':')[0]}), c=1"
            _post(ingress, raw, auth)  # the first request of each worker is not what the target is about
            table.append((name, wrk(ingress, raw, 1, auth)))
        report(table)
    finally:
        target.stop_runtime()
        os.killpg(bare.pid, 15)
        bare.wait(30)


def _post(url: str, body: dict, headers: dict):
    import urllib.request

    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json", **headers})
    for _ in range(4):
        urllib.request.urlopen(req, timeout=30).read()


def _raw_transaction(feast_repo: Path) -> dict | None:
    if not (feast_repo / "online_store.db").exists():
        return None
    return {"jsonData": {"user_id": 1, "merchant_id": 1, "amount": 42.0, "country": "FR", "category": "grocery",
                         "channel": "pos", "event_ts": "2026-10-05T08:00:00"}}


def report(table):
    print("\n| path | req/s | rows/s | p50 ms | p99 ms | non-2xx |\n|---|---:|---:|---:|---:|---:|")
    for name, r in table:
        rows = r["rps"] * (1000 if "1,000" in name else 1)
        print(f"| {name} | {r['rps']:.0f} | {rows:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['errors']} |")
    res = dict(table)
    raw = next((k for k in res if k.startswith("ingress, raw jsonData")), None)
    checks = {
        "ingress adds <= 2 ms at p50 (c=1)": res["ingress, 1 row, c=1"]["p50"] - res["predictor direct, 1 row, c=1"]["p50"] <= 2.0,
    }
    for c in (1, 16):
        checks[f"component >= 80% of the bare wrapper's req/s (c={c})"] = \
            res[f"predictor direct, 1 row, c={c}"]["rps"] >= 0.8 * res[f"bare wrapper, trivial model, c={c}"]["rps"]
    for kind in ("ndarray", "tensor"):
        checks[f"batches >= 100,000 rows/s (ingress, {kind})"] = res[f"ingress, 1,000-row batch ({kind}), c=4"]["rps"] * 1000 >= 100_000
    if raw:
        checks["raw transaction p99 <= 15 ms (c=1)"] = res[raw]["p99"] <= 15
    else:
        print("\n(raw jsonData row skipped: no Feast online store in data/feast; run `make demo` first)")
    print()
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'MISS'}  {name}")


if __name__ == "__main__":
    main()
