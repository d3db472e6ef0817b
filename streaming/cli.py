"""`driftline stream …`: the streaming path by hand.

    driftline stream setup                                    create the streams (idempotent)
    driftline stream publish --day 2026-10-01 --rate 2000     a synthetic day through the broker (make stream)
    driftline stream sink [--member 0 --members 2]            the lake sink, until SIGTERM / Ctrl-C
    driftline stream worker [--share 0/2 | --partitions 0,2]  the stream feature worker (make stream-worker)
    driftline stream dead-letters                             print the dead-lettered records

Broker and partition count: DRIFTLINE_BROKER_URL, DRIFTLINE_STREAM_PARTITIONS (or the options).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import signal
import threading


def _bus(args: argparse.Namespace):
    from streaming.bus import open_bus

    return open_bus(args.broker_url, args.partitions, args.prefix)


def cmd_setup(args: argparse.Namespace) -> int:
    with _bus(args) as bus:
        bus.ensure_topology()
        print(f"{bus.partitions} partitions per topic under {bus.prefix!r}, dead letters in {bus.prefix}.dead-letter")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from driftline import settings
    from resources.event_source import SyntheticEventSource
    from streaming.producer import day_events, publish_stream

    world = SyntheticEventSource(**settings.load().synthetic_world).world()
    first = dt.date.fromisoformat(args.day) if args.day else dt.date.fromisoformat(settings.load().start_date)
    with _bus(args) as bus:
        bus.ensure_topology()
        for k in range(args.days):
            day = first + dt.timedelta(days=k)
            items = day_events(world, day)
            if args.limit:
                items = items[: args.limit]
            rate = f"{args.rate:,.0f} events/s" if args.rate else "as fast as confirmed"
            print(f"{day}: publishing {len(items):,} events ({rate}) to {bus.partitions} partitions", flush=True)
            stats = publish_stream(bus, items, rate=args.rate, batch_events=args.batch_events)
            print(
                f"{day}: {stats.events:,} events in {stats.messages:,} messages, {stats.seconds:.1f} s "
                f"({stats.events_per_s:,.0f} events/s)",
                flush=True,
            )
    return 0


def cmd_sink(args: argparse.Namespace) -> int:
    from driftline import settings
    from streaming.partitioning import owned_partitions
    from streaming.sink import LakeSink

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with _bus(args) as bus:
        bus.ensure_topology()
        owned = owned_partitions(bus.partitions, args.member, args.members)
        landing = args.landing or settings.load().landing_dir
        sink = LakeSink(
            bus,
            landing,
            owned,
            name=args.name,
            max_batch_messages=args.max_batch_messages,
            flush_s=args.flush_s,
        )
        print(f"lake sink {args.member}/{args.members}: partitions {owned} -> {landing}", flush=True)
        stats = sink.run(stop, idle_exit_s=args.idle_exit_s)
        print(f"lake sink stopped: {stats}", flush=True)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from streaming.worker import run_worker

    return run_worker(
        args.broker_url,
        args.partitions,
        args.prefix,
        share=args.share,
        owned=args.owned,
        feast_repo=args.feast_repo,
        offsets_dir=args.offsets_dir,
        lake=args.lake,
        name=args.name,
        flush_ms=args.flush_ms,
        max_batch_messages=args.max_batch_messages,
        idle_exit_s=args.idle_exit_s,
        bootstrap=not args.no_bootstrap,
    )


def cmd_dead_letters(args: argparse.Namespace) -> int:
    with _bus(args) as bus:
        records = bus.read_dead_letters()
    for r in records:
        print(json.dumps(r, sort_keys=True))
    print(f"{len(records)} dead-letter records", flush=True)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker-url", default=None, help="default: DRIFTLINE_BROKER_URL")
    parser.add_argument("--partitions", type=int, default=None, help="default: DRIFTLINE_STREAM_PARTITIONS")
    parser.add_argument("--prefix", default="driftline", help="stream names' prefix (default: %(default)s)")
    sub = parser.add_subparsers(dest="stream_command", required=True, metavar="ACTION")

    sub.add_parser("setup", help="create the streams and the dead-letter stream").set_defaults(stream_func=cmd_setup)

    pub = sub.add_parser("publish", help="publish synthetic days through the broker (make stream)")
    pub.add_argument("--day", default=None, help="first day, YYYY-MM-DD (default: DRIFTLINE_START_DATE)")
    pub.add_argument("--days", type=int, default=1)
    pub.add_argument("--rate", type=float, default=2000.0, help="events/s; 0 = as fast as confirmed")
    pub.add_argument("--batch-events", type=int, default=100, help="events per message (default: %(default)s)")
    pub.add_argument("--limit", type=int, default=0, help="only the first N events of each day")
    pub.set_defaults(stream_func=cmd_publish)

    sink = sub.add_parser("sink", help="run the lake sink into the landing zone")
    sink.add_argument("--landing", default=None, help="default: DRIFTLINE_LANDING_DIR")
    sink.add_argument("--member", type=int, default=0, help="this instance's number (owns p %% members == member)")
    sink.add_argument("--members", type=int, default=1, help="sink instances sharing the partitions")
    sink.add_argument("--name", default="lake-sink", help="consumer name in dead-letter records")
    sink.add_argument("--flush-s", type=float, default=10.0, help="longest a batch waits (default: %(default)s)")
    sink.add_argument("--max-batch-messages", type=int, default=500, help="messages a batch holds at most")
    sink.add_argument("--idle-exit-s", type=float, default=None, help="exit after this long without messages")
    sink.set_defaults(stream_func=cmd_sink)

    worker = sub.add_parser("worker", help="run the stream feature worker (fresh velocity features, online)")
    owned = worker.add_mutually_exclusive_group()
    owned.add_argument("--share", default=None, help="i/n: own the partitions p with p %% n == i (default: all)")
    owned.add_argument("--partitions", dest="owned", default=None, help="own these partitions, e.g. 0,2")
    worker.add_argument("--feast-repo", default=None, help="the Feast repo (default: <DRIFTLINE_DATA_DIR>/feast)")
    worker.add_argument("--offsets-dir", default=None, help="default: DRIFTLINE_STREAM_OFFSETS_DIR")
    worker.add_argument("--lake", default=None, help="bootstrap lake (default: the profile's lake)")
    worker.add_argument("--no-bootstrap", action="store_true", help="never read the lake: the stream alone")
    worker.add_argument("--name", default=None, help="consumer name in dead-letter records and logs")
    worker.add_argument("--flush-ms", type=float, default=None, help="default: DRIFTLINE_STREAM_FLUSH_MS")
    worker.add_argument("--max-batch-messages", type=int, default=200, help="messages a micro-batch holds at most")
    worker.add_argument("--idle-exit-s", type=float, default=None, help="exit after this long without messages")
    worker.set_defaults(stream_func=cmd_worker)

    sub.add_parser("dead-letters", help="print the dead-letter records").set_defaults(stream_func=cmd_dead_letters)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("pika").setLevel(logging.CRITICAL)  # its own retries are reported by ours
    return args.stream_func(args)
