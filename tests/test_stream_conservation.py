"""Conservation through the broker: every published transaction's event_id ends up exactly once
in `raw_transactions` or its quarantine, while the lake sink is killed with SIGKILL mid-stream
and the broker's application is stopped and started under the running producer and sink.

The broker is shared by the machine: only `rabbitmqctl stop_app` / `start_app` (never the node,
tests/stream_helpers.py)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest

from assets import ingestion
from driftline import settings
from resources import Lake, LandingFolderEventSource
from resources.synthetic import SyntheticWorld, WorldConfig
from sensors.landing import landing_requests
from streaming.producer import day_events
from streaming.rabbitmq import RabbitMQBus
from streaming.sink import landed_ids
from testkit.worlds import SMALL_WORLD
from tests.stream_helpers import broker_restart, publish_in_background, wait_for

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

DAY = dt.date(2026, 10, 20)
PARTITIONS = 2
RATE = 100.0  # events/s: the day (~640 events) takes ~7 s, long enough to crash things under it


def _bad_values(template: dict) -> list[dict]:
    """Well-formed on the wire, wrong for the lake's contract: quarantined there, not dropped."""
    return [
        template | {"event_id": "bad-amount", "amount": -5.0},
        template | {"event_id": "bad-currency", "currency": "XXX"},
        template | {"event_id": "bad-country", "country": "France"},
    ]


def test_published_events_land_once_across_a_sink_kill_and_a_broker_restart(tmp_path: Path, make_resources):
    url = settings.get("DRIFTLINE_BROKER_URL") or ""
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    landing = tmp_path / "landing"
    bus = RabbitMQBus(url, PARTITIONS, prefix)
    bus.ensure_topology()

    items = day_events(SyntheticWorld(WorldConfig(**SMALL_WORLD)), DAY)
    template = next(e for t, e in items if t == "transactions")
    bad = _bad_values(template)
    items = items[:100] + [("transactions", b) for b in bad] + items[100:]
    published_tx = {e["event_id"] for t, e in items if t == "transactions"}
    published_labels = {e["event_id"] for t, e in items if t == "labels"}
    assert len(published_tx) == sum(t == "transactions" for t, _ in items)  # distinct ids to conserve

    sink_log = tmp_path / "sink.log"
    sink_cmd = [
        sys.executable, "-m", "driftline.cli", "stream", "--broker-url", url, "--partitions", str(PARTITIONS),
        "--prefix", prefix, "sink", "--landing", str(landing), "--flush-s", "0.3", "--max-batch-messages", "4",
    ]  # fmt: skip

    def start_sink() -> subprocess.Popen:
        with open(sink_log, "a") as log:
            return subprocess.Popen(sink_cmd, stdout=log, stderr=subprocess.STDOUT)

    sink = start_sink()
    try:
        publisher, publish_errors = publish_in_background(url, prefix, PARTITIONS, items, RATE)
        wait_for(lambda: len(landed_ids(landing, "transactions")) > 0, 60, "the sink's first files")
        os.kill(sink.pid, signal.SIGKILL)  # mid-stream: the producer keeps publishing
        sink.wait(timeout=30)
        landed_at_kill = len(landed_ids(landing, "transactions"))
        time.sleep(0.5)
        sink = start_sink()
        wait_for(lambda: sink_log.read_text().count(" consuming ") == 2, 120, "the restarted sink consuming")
        broker_restart()
        publisher.join(timeout=180)
        assert not publisher.is_alive() and not publish_errors, publish_errors
        bus.publish_messages("transactions", [(0, b"\xff not a message")])  # -> dead letter, with its reason

        def settled() -> bool:
            tx, labels = landed_ids(landing, "transactions"), landed_ids(landing, "labels")
            return set(tx) == published_tx and set(labels) == published_labels

        wait_for(settled, 120, "every published event in the landing zone")
        wait_for(lambda: bus.read_dead_letters(timeout_s=0.5) != [], 30, "the dead letter")
        sink.send_signal(signal.SIGTERM)
        assert sink.wait(timeout=60) == 0
        dead = bus.read_dead_letters()
    finally:
        if sink.poll() is None:
            sink.kill()
        bus.delete_topology()
        bus.close()
        log_text = sink_log.read_text() if sink_log.exists() else ""
        print("\n".join(line for line in log_text.splitlines() if "driftline.sink" in line or "lake sink" in line))

    tx_ids, label_ids = landed_ids(landing, "transactions"), landed_ids(landing, "labels")
    assert len(tx_ids) == len(set(tx_ids)), "an event was written twice"
    assert len(label_ids) == len(set(label_ids)), "a label was written twice"
    assert 0 < landed_at_kill < len(published_tx)
    assert "resuming from the offsets" in log_text  # the sink went through the broker outage
    assert dead and all(r["reason"].startswith("not UTF-8 JSON") and "message_base64" in r for r in dead)
    assert len({(r["stream"], r["offset"]) for r in dead}) == 1  # one bad message (a retry may repeat it)

    # the landing sensor's requests, materialized as its runs would be
    source = LandingFolderEventSource(path=str(landing))
    requests, _, skipped = landing_requests(source, {}, dt.date.today())
    assert not skipped
    assets = {"raw_transactions": ingestion.raw_transactions, "raw_labels": ingestion.raw_labels}
    resources = make_resources(tmp_path / "run", event_source=source)
    for request in requests:
        key = request.asset_selection[0].to_user_string()
        run = dg.materialize([assets[key]], partition_key=request.partition_key, resources=resources)
        assert run.success

    lake = Lake(root=str(tmp_path / "run" / "lake"))
    valid = set(lake.read_partition("raw_transactions", DAY.isoformat()).column("event_id").to_pylist())
    quarantine = lake.read_partition("quarantine_raw_transactions", DAY.isoformat())
    quarantined = {json.loads(r)["event_id"] for r in quarantine.column("record").to_pylist()}
    print(
        f"published {len(published_tx)} transactions; landed {len(tx_ids)} (at the kill: {landed_at_kill}); "
        f"raw_transactions {len(valid)} + quarantine {len(quarantined)}; dead letters {len(dead)}"
    )
    assert valid | quarantined == published_tx and not valid & quarantined
    assert quarantined == {b["event_id"] for b in bad}
    labels = set(lake.read_partition("raw_labels", DAY.isoformat()).column("event_id").to_pylist())
    assert labels == published_labels
