"""`make demo` (`driftline demo`) in a reduced size (the closed loop with the real daemon), then
the Dagster UI on its state, seen through headless Chromium as a person would."""

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from seldon.runtime import free_port

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "ui"
GROUPS = {
    "ingestion": ["raw_transactions", "raw_labels"],
    "features": ["transaction_features"],
    "feature_store": ["user_state", "merchant_state", "feast_registry", "online_features"],
    "training": ["training_set", "fraud_model", "model_evaluation"],
    "deployment": ["seldon_deployment"],
    "monitoring": ["prediction_log", "drift_report", "model_performance"],
}


# `driftline demo` end to end (the Dagster daemon takes over), then the UI in Chromium: minutes.
pytestmark = [pytest.mark.browser, pytest.mark.daemon, pytest.mark.slow]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    data = tmp_path_factory.mktemp("demo")
    env = dict(
        os.environ,
        DRIFTLINE_DATA_DIR=str(data),
        DAGSTER_HOME=str(data / "dagster_home"),
        DRIFTLINE_INGRESS_URL=f"http://127.0.0.1:{free_port()}",
    )
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "driftline.cli", "demo", "--profile", "ci"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,  # the return code is asserted by test_demo_runs_the_closed_loop, with the timeline
    )
    timeline = [line for line in proc.stdout.splitlines() if line.startswith("[")]
    (data / "timeline.txt").write_text("\n".join(timeline))
    return {
        "data": data,
        "env": env,
        "rc": proc.returncode,
        "timeline": timeline,
        "stderr": proc.stderr[-3000:],
        "seconds": time.monotonic() - started,
    }


def test_demo_runs_the_closed_loop(demo):
    text = "\n".join(demo["timeline"])
    assert demo["rc"] == 0, text + demo["stderr"]
    assert "fraud_model v1" in text and "serving stack up" in text
    assert "drifted=True" in text
    assert "drift_sensor requested retrain_job" in text
    assert "retrain_job SUCCESS" in text or "model_evaluation: reject" in text
    if "canary v2 at 10%" in text:  # the challenger passed the gate: the canary must reach a decision
        assert "outcome: promote" in text or "outcome: rollback" in text, text
    assert "stopped the daemon and the serving stack" in text
    assert demo["seconds"] < 600


@pytest.fixture(scope="module")
def browser(demo):
    if not (Path("/usr/bin/chromium").exists() and Path("/usr/bin/chromedriver").exists()):
        pytest.skip("headless Chromium is not installed (scripts/ensure_browser.sh needs root and apt)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    port = free_port()
    # What `make dev` (`driftline dev`) runs: the webserver and the daemon (`dagster dev`) and the serving stack.
    # The child writes to its own copy of the log's descriptor: ours is closed once it started.
    with open(demo["data"] / "dev.log", "w") as dev_log:
        dev = subprocess.Popen(
            [sys.executable, "-m", "driftline.cli", "dev", "--port", str(port)],
            cwd=ROOT,
            env=demo["env"],
            stdout=dev_log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/server_info", timeout=2)
            break
        except OSError:
            time.sleep(1)
    opts = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1800,1100"):
        opts.add_argument(arg)
    opts.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    yield driver, url
    driver.quit()
    dev.terminate()
    dev.wait(timeout=90)


def _open(driver, url: str, must_contain: str, timeout_s: float = 60) -> str:
    from selenium.webdriver.common.by import By

    driver.get(url)
    deadline, text = time.monotonic() + timeout_s, ""
    while time.monotonic() < deadline:
        for button in driver.find_elements(By.XPATH, "//button[normalize-space()='Skip']"):
            button.click()  # the first-visit newsletter dialog
        text = driver.find_element(By.TAG_NAME, "body").text
        if must_contain in text:
            return text
        time.sleep(1)
    return text


def test_every_asset_of_the_lineage_is_shown(browser):
    driver, url = browser
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    _open(driver, url + "/asset-groups", "Global asset lineage")
    driver.save_screenshot(str(ARTIFACTS / "global_lineage.png"))
    for group, assets in GROUPS.items():
        text = _open(driver, f"{url}/locations/driftline/asset-groups/{group}/lineage", assets[-1])
        missing = [a for a in assets if a not in text]
        assert not missing, (group, missing)
        driver.save_screenshot(str(ARTIFACTS / f"lineage_{group}.png"))


def test_drift_report_has_a_materialization(browser):
    driver, url = browser
    text = _open(driver, url + "/assets/drift_report", "Latest materialization")
    driver.save_screenshot(str(ARTIFACTS / "drift_report.png"))
    assert "Latest materialization" in text
    assert "share_drifted" in text and "reference_model_version" in text


def _graphql(url: str, query: str) -> dict:
    import json

    req = urllib.request.Request(
        url + "/graphql", data=json.dumps({"query": query}).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())["data"]


def test_make_dev_runs_sensors_and_serving(browser, demo):
    """`make dev`'s daemon evaluates the sensors (they start switched on) and the demo's last
    deployment answers through the ingress."""
    _, url = browser
    sensors = _graphql(
        url,
        "{ repositoriesOrError { ... on RepositoryConnection { nodes { sensors { name sensorState { status } } } } } }",
    )["repositoriesOrError"]["nodes"][0]["sensors"]
    status = {s["name"]: s["sensorState"]["status"] for s in sensors}
    assert all(status.get(s) == "RUNNING" for s in ("drift_sensor", "canary_sensor", "automation_sensor")), status
    deadline, healthy = time.monotonic() + 120, {}
    while time.monotonic() < deadline:
        daemons = _graphql(url, "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }")
        healthy = {d["daemonType"]: d["healthy"] for d in daemons["instance"]["daemonHealth"]["allDaemonStatuses"]}
        if healthy.get("SENSOR"):
            break
        time.sleep(2)
    assert healthy.get("SENSOR"), f"the sensor daemon is not healthy: {healthy}"
    ingress = demo["env"]["DRIFTLINE_INGRESS_URL"]
    with urllib.request.urlopen(ingress + "/ready", timeout=10) as resp:
        assert resp.status == 200
