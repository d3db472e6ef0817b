"""The canary controller reading Prometheus, as in a cluster, beside the local path.

A real Prometheus (Debian's package, `scripts/ensure_prometheus.sh`) is started by hand with its
own storage in tmp and a config scraping, every second, what the local runtime runs: each
predictor's `seldon-core-microservice` metrics port (`/prometheus`: FraudModel's score histogram)
and the ingress (per-predictor requests, codes and latency, the executor's part in a cluster).
Live traffic goes through the ingress; on every tick the controller decides twice on the same
traffic, from the ingress's `/metrics` (the local path) and from PromQL, and the Prometheus
decisions drive the rollout. The executor's series, which only a cluster runs, are checked with
the same queries against a stand-in serving text in the executor's exposition format.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest
import yaml

from assets.deployment import seldon_deployment
from resources.canary_policy import CanaryPolicy
from resources.lake import Lake
from resources.mlflow_registry import CHALLENGER, CHAMPION, MlflowRegistry
from resources.seldon_target import SeldonTarget
from seldon import manifest as mf
from seldon.auth import ADMIN, mint_token
from seldon.runtime import free_port
from sensors.canary import build_canary_sensor, run_config, tick
from sensors.canary_metrics import (
    EXECUTOR,
    IngressReading,
    MetricsUnavailable,
    PrometheusReading,
    PrometheusSource,
    queries,
    reading,
)
from testkit.registry import register_version
from testkit.serving import SECRET, SERVING_PY, BackgroundTraffic

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS = "/usr/bin/prometheus"
POLICY = CanaryPolicy(steps=[10, 25, 50, 100], min_requests=12, max_failed_checks=2, p99_slack_s=0.1)
TICK_S = 3.0  # three scrapes a tick: increase() needs two samples in its window


# ------------------------------------------------------------------ a real Prometheus
class Prometheus:
    """`prometheus` started by hand: config and TSDB in tmp, a free port, file-based targets."""

    def __init__(self, workdir: Path):
        self.dir, self.port = workdir, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token_file = workdir / "ingress.token"
        self.token_file.write_text("none yet")
        for job in ("ingress", "predictors", "executor"):
            self.set_targets(job, [])
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(self.config(), sort_keys=False))
        self.log = open(workdir / "prometheus.log", "wb")  # noqa: SIM115  # closed in stop()
        self.proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready()

    def config(self) -> dict:
        def job(name: str, path: str, **extra) -> dict:
            sd = [{"files": [str(self.dir / f"{name}.json")], "refresh_interval": "1s"}]
            return {"job_name": name, "metrics_path": path, "file_sd_configs": sd, **extra}

        return {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                # seldon-core-microservice: PREDICTIVE_UNIT_METRICS_ENDPOINT=/prometheus, as Seldon sets it
                job("predictors", "/prometheus"),
                # the local ingress's /metrics wants an admin token
                job("ingress", "/metrics", authorization={"type": "Bearer", "credentials_file": str(self.token_file)}),
                job("executor", "/prometheus"),
            ],
        }

    def set_targets(self, job: str, targets: list[str], labels: dict | None = None):
        path, tmp = self.dir / f"{job}.json", self.dir / f".{job}.json.tmp"
        tmp.write_text(json.dumps([{"targets": targets, "labels": labels or {}}] if targets else []))
        os.replace(tmp, path)  # Prometheus watches the file: never show it half written

    def _wait_ready(self, timeout_s: float = 60.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {(self.dir / 'prometheus.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError("prometheus not ready")

    def up(self, job: str) -> list[str]:
        """Targets of `job` whose last scrape succeeded."""
        with urllib.request.urlopen(f"{self.url}/api/v1/targets?state=active", timeout=5) as r:
            active = json.loads(r.read())["data"]["activeTargets"]
        return [t["labels"]["instance"] for t in active if t["labels"]["job"] == job and t["health"] == "up"]

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "ensure_prometheus.sh")], check=False, capture_output=True, text=True
    )
    if done.stderr:
        print(done.stderr.strip())
    if done.returncode != 0 or not Path(PROMETHEUS).exists():
        pytest.skip(f"no Prometheus: {done.stderr.strip() or PROMETHEUS + ' missing'}")
    prom = Prometheus(tmp_path_factory.mktemp("prometheus"))
    yield prom
    prom.stop()


# ------------------------------------------------------------------ the local runtime, as in test_canary
def materialize(registry, target, config: dict | None = None) -> dict:
    result = dg.materialize(
        [seldon_deployment],
        resources={"mlflow_registry": registry, "seldon_target": target},
        run_config=config or {},
        raise_on_error=True,
    )
    return {k: v.value for k, v in result.asset_materializations_for_node("seldon_deployment")[0].metadata.items()}


def metrics_ports(target: SeldonTarget) -> list[str]:
    """host:port of each ready predictor's metrics server (the runtime picks a free port and
    passes it as --metrics-port; the predictor's command line says which)."""
    eps = json.loads((target.state_dir / "endpoints.json").read_text())["predictors"]
    out = []
    for ep in eps.values():
        try:
            args = Path(f"/proc/{ep['pid']}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        out.append(f"127.0.0.1:{args[args.index('--metrics-port') + 1]}")
    return sorted(out)


@pytest.fixture
def setup(tmp_path, prometheus, monkeypatch):
    monkeypatch.setenv("DRIFTLINE_INGRESS_JWT_SECRET", SECRET)
    monkeypatch.setenv("PREDICTIVE_UNIT_METRICS_ENDPOINT", "/prometheus")  # the predictors' env, as Seldon's
    registry = MlflowRegistry(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_root=str(tmp_path / "mlart"))
    target = SeldonTarget(
        serving_dir=str(tmp_path / "serving"),
        lake=Lake(root=str(tmp_path / "lake")),
        feast_repo=str(tmp_path / "no-feast"),
        ingress_url=f"http://127.0.0.1:{free_port()}",
        canary=POLICY,
        metrics_source="prometheus",
        prometheus_url=prometheus.url,
    )
    prometheus.token_file.write_text(mint_token(SECRET, scopes=ADMIN, subject="prometheus", ttl_s=3600))
    prometheus.set_targets("ingress", [target.ingress_url.removeprefix("http://")])
    yield registry, target, tmp_path
    target.stop_runtime()
    prometheus.set_targets("ingress", [])
    prometheus.set_targets("predictors", [])


def short(decision: dict) -> str:
    action, reason = decision["action"], decision["reason"]
    if action == "hold":
        return f"hold({reason.split(':')[0]})"
    return f"{action}->{decision['weight']}"


def collapsed(history: list[dict]) -> list[tuple[str, int]]:
    """The decisions that change the rollout, consecutive repeats once (a source that sees the
    interval's requests a tick later than the other repeats the same step)."""
    out: list[tuple[str, int]] = []
    for d in history:
        key = (d["action"], d["weight"])
        if d["action"] != "hold" and (not out or out[-1] != key):
            out.append(key)
    return out


def rollout_both(registry, target: SeldonTarget, prom: Prometheus, timeout_s: float = 150.0):
    """Tick both controllers on the same traffic; the Prometheus one drives the rollout."""
    local, remote, cur_l, cur_p = [], [], {}, {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        prom.set_targets("predictors", metrics_ports(target))
        time.sleep(TICK_S)
        manifest = target.current_manifest()
        d_local, cur_l = tick(cur_l, manifest, IngressReading(target.ingress_metrics()), POLICY)
        t0 = time.perf_counter()
        d_prom, cur_p = tick(cur_p, manifest, reading(target), POLICY)
        elapsed = time.perf_counter() - t0
        if d_prom is None:
            break
        assert elapsed < 5, f"a Prometheus tick took {elapsed:.1f}s"
        if d_local is not None:
            local.append(d_local)
        remote.append(d_prom)
        if d_prom["action"] in ("step", "promote", "rollback"):
            meta = materialize(registry, target, run_config(d_prom, POLICY.steps))
            assert meta["action"] == d_prom["action"]
            if d_prom["action"] != "step":
                break
    print(f"\n  local (ingress /metrics): {' '.join(map(short, local))}")
    print(f"  prometheus (PromQL):      {' '.join(map(short, remote))}")
    for a, b in zip(local, remote, strict=False):  # the figures each judged on
        if a["figures"] and b["figures"]:
            print(f"    {short(b):<22} local {figures(a)}\n    {'':<22} prom  {figures(b)}")
    return local, remote


def figures(d: dict) -> str:
    f = d["figures"]
    p99 = "-" if f["canary_p99_s"] is None else f"{f['canary_p99_s'] * 1000:.0f}ms"
    psi = "-" if f["score_psi"] is None else f"{f['score_psi']:.3f}"
    return (
        f"canary {f['canary_requests']:.1f} req, {f['canary_error_rate'] or 0:.0%} 5xx, p99 {p99} | "
        f"main {f['main_requests']:.1f} req | score PSI {psi}"
    )


# ------------------------------------------------------------------ the rollouts
@pytest.mark.slow
@pytest.mark.prometheus
@pytest.mark.skipif(not SERVING_PY.exists(), reason=".venv-serving is missing: run `make setup`")
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")
@pytest.mark.parametrize(
    "interface,expected",
    [
        (None, [("step", 25), ("step", 50), ("promote", 100)]),
        ("seldon.faults.FailingModel", [("rollback", 0)]),
        ("seldon.faults.SlowModel", [("rollback", 0)]),
    ],
    ids=["healthy", "failing", "slow"],
)
def test_prometheus_decides_as_the_local_path(setup, prometheus, interface, expected):
    registry, target, tmp = setup
    v1 = register_version(registry, tmp, seed=0)
    registry.set_alias(CHAMPION, v1)
    v2 = register_version(registry, tmp, seed=0, interface=interface)
    registry.set_alias(CHALLENGER, v2)
    meta = materialize(registry, target)
    assert meta["traffic"] == {"main": 90, "canary": 10}

    with BackgroundTraffic(target.ingress_url) as traffic:
        local, remote = rollout_both(registry, target, prometheus)
    assert collapsed(remote) == expected, remote
    assert collapsed(local) == expected, local
    judged = [d for d in remote if d["action"] != "hold" or d["reason"].startswith("failed check")]
    assert all(d["figures"]["source"] == "prometheus" for d in judged)
    if interface is None:
        assert registry.aliases() == {CHAMPION: v2}
        assert all(d["figures"]["canary_error_rate"] == 0 for d in judged)
        # the canary's score histogram may not have two scrapes yet at the first decision (PSI None,
        # not judged: too few canary scores); once scraped it must show the same distribution
        psis = [d["figures"]["score_psi"] for d in judged]
        assert psis[-1] is not None, remote
        assert all(p < 0.05 for p in psis if p is not None), remote
    else:
        assert [d["reason"].split(":")[0] for d in judged] == ["failed check 1", "2 failed checks"]
        assert ("error rate 100.00%" if "Failing" in interface else "p99") in judged[-1]["reason"]
        assert registry.aliases() == {CHAMPION: v1}
        assert mf.summary(target.current_manifest())["canary"]["traffic"] == 0
    assert set(traffic.codes("main")) == {200}


# ------------------------------------------------------------------ the executor's series
class ExecutorStandIn:
    """Serves text in the format of Seldon's executor (`seldon_api_executor_server_requests_seconds`,
    labels as the executor writes them) with counters that grow with time: the executor runs only
    in a cluster, so this checks the executor queries against a real Prometheus."""

    BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # the Go client's defaults
    # (deployment, predictor, service, code, requests a second, seconds each)
    SERIES = (
        ("fraud", "main", "/api/v1.0/predictions", "200", 20.0, 0.004),
        ("fraud", "canary", "/api/v1.0/predictions", "200", 3.0, 0.2),
        ("fraud", "canary", "/api/v1.0/predictions", "500", 1.0, 0.2),
        ("fraud", "canary", "/ready", "200", 50.0, 0.001),  # probes: not predictions
        ("other", "canary", "/api/v1.0/predictions", "500", 50.0, 0.001),  # another deployment
    )

    def __init__(self):
        self.t0 = time.monotonic()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = stand_in.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.address = f"127.0.0.1:{self.server.server_port}"

    def render(self) -> str:
        name, elapsed = "seldon_api_executor_server_requests_seconds", time.monotonic() - self.t0
        out = [f"# TYPE {name} histogram"]
        for dep, pred, service, code, rate, seconds in self.SERIES:
            n = int(rate * elapsed)
            labels = (
                f'code="{code}",deployment_name="{dep}",method="post",predictor_name="{pred}",'
                f'predictor_version="",service="{service}"'
            )
            for le in self.BUCKETS:
                out.append(f'{name}_bucket{{{labels},le="{le}"}} {n if seconds <= le else 0}')
            out += [f'{name}_bucket{{{labels},le="+Inf"}} {n}', f"{name}_sum{{{labels}}} {n * seconds}"]
            out.append(f"{name}_count{{{labels}}} {n}")
        return "\n".join(out) + "\n"


@pytest.mark.slow
@pytest.mark.prometheus
def test_executor_series_give_per_predictor_stats(prometheus):
    stand_in = ExecutorStandIn()
    # the namespace label is what deployment/k8s/prometheus-scrape.yaml adds from the pod's namespace
    prometheus.set_targets("executor", [stand_in.address], {"namespace": "driftline"})
    try:
        deadline = time.monotonic() + 30
        while stand_in.address not in prometheus.up("executor") and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(6)  # six scrapes
        source = PrometheusSource(prometheus.url, deployment="fraud", namespace="driftline", series=EXECUTOR)
        stats = source.interval(time.time() - 5, time.time())
        other = PrometheusSource(prometheus.url, deployment="fraud", namespace="elsewhere", series=EXECUTOR)
        with pytest.raises(MetricsUnavailable, match="no seldon_api_executor_server_requests_seconds_count series"):
            other.interval(time.time() - 5, time.time())
    finally:
        prometheus.set_targets("executor", [])
        stand_in.server.shutdown()
    main, canary = stats["main"], stats["canary"]
    print(f"\n  executor series over 5 s: main {main.requests:.1f} requests, canary {canary.requests:.1f}")
    assert 60 < main.requests < 140 and main.errors == 0  # 20/s over 5 s (increase() extrapolates)
    assert 12 < canary.requests < 28 and canary.errors / canary.requests == pytest.approx(0.25, abs=0.1)
    assert main.latency["0.005"] == main.latency["+Inf"] == main.requests
    assert canary.latency["0.1"] == 0 and canary.latency["0.25"] == canary.requests  # probes left out


# ------------------------------------------------------------------ no Prometheus: hold, fast
def test_unreachable_prometheus_is_a_held_decision(tmp_path):
    """Refused and silent Prometheus alike: a hold that says why, no run, within seconds."""
    silent = socket.socket()  # accepts connections (the kernel does) but never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    targets = {
        "refused": f"http://127.0.0.1:{free_port()}",
        "silent": f"http://127.0.0.1:{silent.getsockname()[1]}",
    }
    rollout = {"canary": "2", "canary_weight": 10, "steps": POLICY.steps}
    predictors = [
        mf.Predictor("main", "driftline-fraud", "1", str(tmp_path), traffic=90),
        mf.Predictor("canary", "driftline-fraud", "2", str(tmp_path), traffic=10),
    ]
    manifest = mf.render("fraud", "default", predictors, "driftline/serving:dev", rollout=rollout)
    try:
        for name, url in targets.items():
            target = SeldonTarget(
                serving_dir=str(tmp_path / name), metrics_source="prometheus", prometheus_url=url, canary=POLICY
            )
            mf.write(manifest, target.manifest_path)
            sensor = build_canary_sensor()
            with dg.build_sensor_context(resources={"seldon_target": target}) as ctx:
                first = sensor(ctx)
            assert isinstance(first, dg.SensorResult) and first.cursor
            assert first.asset_events[0].metadata["reason"].value == "interval started"
            with dg.build_sensor_context(resources={"seldon_target": target}, cursor=first.cursor) as ctx:
                t0 = time.perf_counter()
                second = sensor(ctx)
                elapsed = time.perf_counter() - t0
            assert isinstance(second, dg.SensorResult)
            meta = second.asset_events[0].metadata
            reason = str(meta["reason"].value)
            print(f"\n  {name}: {meta['canary_decision'].value} in {elapsed:.2f}s: {reason}")
            assert meta["canary_decision"].value == "hold" and not second.run_requests
            assert reason.startswith(f"metrics unavailable: Prometheus at {url} unreachable")
            assert json.loads(second.cursor or "{}") == json.loads(first.cursor)  # the interval goes on
            assert elapsed < 10
    finally:
        silent.close()


def test_queries_select_the_deployment_and_predictions():
    q = queries(EXECUTOR, "fraud", "driftline", 30.0)
    sel = '{deployment_name="fraud",namespace="driftline",service=~".*predictions"}'
    assert q["requests"] == (
        f"sum by (predictor_name, code) (increase(seldon_api_executor_server_requests_seconds_count{sel}[30000ms]))"
    )
    assert q["latency"] == (
        f"sum by (predictor_name, le) (increase(seldon_api_executor_server_requests_seconds_bucket{sel}[30000ms]))"
    )
    assert q["scores"] == (
        "sum by (predictor_name, le) (increase(driftline_score_bucket_total"
        '{deployment_name="fraud",method="predict",namespace="driftline"}[30000ms]))'
    )
    reading_ = PrometheusReading(PrometheusSource("http://p:9090", "fraud"), now=100.0)
    assert reading_.mark() == {"t": 100.0}


def test_k8s_profile_reads_prometheus():
    from resources import SyntheticEventSource
    from resources.profiles import k8s_resources

    env = {"DRIFTLINE_PROMETHEUS_URL": "http://prometheus.monitoring:9090", "DRIFTLINE_SELDON_NAMESPACE": "ml"}
    target = k8s_resources(env, event_source=SyntheticEventSource())["seldon_target"]
    assert (target.metrics_source, target.prometheus_url) == ("prometheus", "http://prometheus.monitoring:9090")
    source = reading(target)
    assert isinstance(source, PrometheusReading)
    assert (source.prom.series, source.prom.namespace, source.prom.deployment) == (EXECUTOR, "ml", "fraud")
