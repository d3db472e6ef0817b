"""Helpers of the stream and fresh-feature tests: the shared broker's restart, waiting for a
condition and a producer publishing in the background while a test crashes things under it
(test_stream_conservation, test_stream_worker); a Feast repo with the definitions applied and
the names a Feast UDF reads and writes (test_velocity, test_stream_parity, test_feature_spec).

The broker is shared by the machine: only `rabbitmqctl stop_app` / `start_app` (never the node),
and `start_app` runs whatever happens in between (`broker_restart`)."""

from __future__ import annotations

import ast
import subprocess
import threading
import time
import warnings
from pathlib import Path

from streaming.producer import publish_stream
from streaming.rabbitmq import RabbitMQBus


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


def broker_restart(down_s: float = 2.0) -> None:
    """Stop the broker's application for `down_s`, then start it again whatever happened."""
    try:
        rabbitmqctl("stop_app")
        time.sleep(down_s)
    finally:
        rabbitmqctl("start_app")


def wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def publish_in_background(url: str, prefix: str, partitions: int, items, rate: float):
    """(thread, errors): `items` published at `rate` events/s in 20-event messages; an error is
    handed to the test thread in `errors`, which fails on it."""
    errors: list[BaseException] = []

    def publish() -> None:
        bus = RabbitMQBus(url, partitions, prefix)
        try:
            publish_stream(bus, items, rate=rate, batch_events=20, linger_s=0.1)
        except BaseException as err:  # noqa: BLE001  # handed to the test thread, which fails on it
            errors.append(err)
        finally:
            bus.close()

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    return thread, errors


def applied_feast_repo(root: Path) -> Path:
    """A Feast repo under `root` (its lake beside it) with the definitions applied: v1 and v2
    services, the `user_recent` view the stream worker writes; its sqlite online store empty."""
    from resources.feast_store import FeastStore
    from resources.lake import Lake

    feast = FeastStore(lake=Lake(root=str(root / "lake")), repo_dir=str(root / "feast"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        feast.apply()
    return feast.repo_path


def udf_names(source: Path, function: str) -> tuple[set[str], set[str]]:
    """(columns a Feast on-demand UDF reads, columns it writes), from its source text: Feast
    rehydrates a UDF without module globals, so its names are literals (`inputs["x"]`,
    `out["y"]`) that the tests match against driftline.spec."""
    tree = ast.parse(source.read_text())
    udf = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function)
    reads, writes = set(), set()
    for node in ast.walk(udf):
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Name)
            and isinstance(node.slice, ast.Constant)
        ):
            {"inputs": reads, "out": writes}.get(node.value.id, set()).add(node.slice.value)
    return reads, writes
