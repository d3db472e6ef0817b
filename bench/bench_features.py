"""Benchmark: our DuckDB `compute_transaction_features` against Polars, pandas and an I/O floor.

    .venv/bin/python -m bench.bench_features [--events-per-day N --days D]

Generates the synthetic lake once (cached in data/bench/lake), then runs each
implementation in a fresh subprocess (bench.run_impl) so that timings and peak RSS are
its own. Every implementation reads the same Parquet partitions, computes all 30 days in
one call and writes its result to Parquet; the floor only reads and writes. DuckDB and
Polars get the same thread count. Afterwards the outputs are compared row for row; any
disagreement exits 1 (a crashed implementation exits 2).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.data import DEFAULT_ROOT, LABEL_TABLE, TX_TABLE, BenchParams, ensure_lake, partition_files
from bench.noise import OtherWork

OURS = "duckdb"
LABELS = {
    "duckdb": "DuckDB (ours)",
    "polars": "Polars",
    "spark": "Spark local[N] (scale-out engine, JVM start included)",
    "pandas": "pandas",
    "floor": "floor: DuckDB read+COPY",
}
TARGET_PANDAS_SPEEDUP = 15.0


@dataclass
class Result:
    impl: str
    runs: list[dict] = field(default_factory=list)
    error: str | None = None

    @property
    def best(self) -> dict | None:
        return min(self.runs, key=lambda r: r["seconds"]) if self.runs else None


def run_once(impl: str, lake: str, params: BenchParams, out: Path, threads: int) -> dict:
    env = dict(os.environ, POLARS_MAX_THREADS=str(threads))
    cmd = [
        sys.executable,
        "-m",
        "bench.run_impl",
        impl,
        "--lake",
        lake,
        "--start",
        params.start.isoformat(),
        "--end",
        params.end.isoformat(),
        "--out",
        str(out),
        "--threads",
        str(threads),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{impl} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def warm_page_cache(lake: str) -> None:
    """Read every input file once so no implementation pays for the first cold read."""
    for f in partition_files(lake, TX_TABLE) + partition_files(lake, LABEL_TABLE):
        Path(f).read_bytes()


def compare_outputs(out_dir: Path, results: dict[str, Result]) -> tuple[list[str], list[str]]:
    """(mismatch lines, notes). Ours is compared with each peer; without ours, peers with each other."""
    import pyarrow.parquet as pq

    from bench.compare import compare_features
    from driftline.spec import COLUMNS

    done = [i for i in ("duckdb", "polars", "spark", "pandas") if results.get(i) and results[i].runs]
    if len(done) < 2:
        return [], ["fewer than two implementations produced output: nothing to compare"]
    base = OURS if OURS in done else done[0]
    # Ours is a lake folder (one file per day), the peers one file; no partition columns added.
    tables = {
        i: pq.read_table(
            out_dir / f"{i}.parquet",
            partitioning=None,  # pyright: ignore[reportArgumentType]  # pyarrow takes None (no partitioning); pyright infers str from the default
        )
        for i in done
    }
    problems, notes = [], []
    if OURS in done and tables[OURS].column_names != COLUMNS:
        notes.append(
            f"SPEC: {LABELS[OURS]} column order differs from docs/features.md: "
            + ", ".join(
                f"#{k} is {got}, spec {want}"
                for k, (got, want) in enumerate(zip(tables[OURS].column_names, COLUMNS, strict=False))
                if got != want
            )
        )
    for other in done:
        if other == base:
            continue
        t0 = time.perf_counter()
        diff = compare_features(tables[base], tables[other], (base, other), check_order=False)
        notes.append(
            f"{base} vs {other}: {'AGREE' if not diff else 'MISMATCH'} on {tables[other].num_rows:,} rows "
            f"(checked in {time.perf_counter() - t0:.0f} s)"
        )
        problems += [f"{base} vs {other}: {d}" for d in diff]
    return problems, notes


def fmt_rate(x: float) -> str:
    return f"{x / 1e6:.2f} M" if x >= 1e6 else f"{x / 1e3:.0f} k"


def report(
    results: dict[str, Result], params: BenchParams, threads: int, repeats: int, pandas_repeats: int
) -> list[str]:
    """Markdown table plus targets; returns the lines that failed a target."""
    ours = results.get(OURS)
    ours_s = ours.best["seconds"] if ours and ours.best else None
    print(
        f"\n### Feature engines: {params.events_per_day:,} events/day x {params.days} days, "
        f"threads={threads} for DuckDB and Polars (pandas is single-threaded)\n"
    )
    print(
        "Seconds are end to end (read the Parquet lake, compute, write the result to Parquet, zstd); "
        f"best of {repeats} runs (pandas: {pandas_repeats}), each in a fresh process. "
        "Peak memory is the process's peak RSS.\n"
    )
    print("| implementation | seconds | read+compute s | events/s | ratio vs ours | peak memory |")
    print("|---|---:|---:|---:|---:|---:|")
    for impl in ("duckdb", "polars", "spark", "pandas", "floor"):
        r = results.get(impl)
        if r is None:
            continue
        if not r.best:
            print(f"| {LABELS[impl]} | failed | | | | |")
            continue
        b = r.best
        compute = f"{b['compute_seconds']:.2f}" if b.get("compute_seconds") is not None else "-"
        ratio = f"{b['seconds'] / ours_s:.2f}x" if ours_s else "-"
        print(
            f"| {LABELS[impl]} | {b['seconds']:.2f} | {compute} | {fmt_rate(b['rows'] / b['seconds'])} | "
            f"{ratio} | {b['peak_rss_mb'] / 1024:.2f} GiB |"
        )
    print()
    failed = []
    if not ours_s:
        print("No result for ours: targets not evaluated.")
        return []
    floor = results.get("floor")
    if floor and floor.best:
        print(
            f"- ours vs floor: {ours_s / floor.best['seconds']:.1f}x the floor's time "
            f"({floor.best['seconds']:.2f} s to read and rewrite the {floor.best['rows']:,} input rows)"
        )
    checks = []
    if results.get("polars") and results["polars"].best:
        p = results["polars"].best["seconds"]
        checks.append((f"ours >= Polars: Polars takes {p / ours_s:.2f}x our time (target >= 1.00x)", p >= ours_s))
    if results.get("pandas") and results["pandas"].best:
        p = results["pandas"].best["seconds"]
        checks.append(
            (
                f"ours >= {TARGET_PANDAS_SPEEDUP:.0f}x pandas: pandas takes {p / ours_s:.1f}x our time "
                f"(target >= {TARGET_PANDAS_SPEEDUP:.0f}x)",
                p / ours_s >= TARGET_PANDAS_SPEEDUP,
            )
        )
    for text, ok in checks:
        print(f"- {'PASS' if ok else 'FAIL'}: {text}")
        if not ok:
            failed.append(text)
    return failed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events-per-day", type=int, default=BenchParams.events_per_day)
    p.add_argument("--days", type=int, default=BenchParams.days)
    p.add_argument("--threads", type=int, default=2, help="threads for DuckDB and Polars (default 2)")
    p.add_argument("--repeats", type=int, default=3, help="runs of DuckDB, Polars and the floor (best is kept)")
    p.add_argument("--pandas-repeats", type=int, default=1)
    p.add_argument("--only", nargs="+", choices=list(LABELS), default=list(LABELS))
    p.add_argument("--lake", default=DEFAULT_ROOT)
    p.add_argument("--out-dir", default="data/bench/out")
    a = p.parse_args(argv)

    t_start = time.perf_counter()
    other_work = OtherWork()
    params = BenchParams(events_per_day=a.events_per_day, days=a.days)
    t0 = time.perf_counter()
    generated = ensure_lake(a.lake, params)
    print(
        f"lake {a.lake}: {'generated' if generated else 'cached'} in {time.perf_counter() - t0:.1f} s "
        f"({params.days} days from {params.first_day}, {params.events_per_day:,} events/day nominal)",
        flush=True,
    )
    warm_page_cache(a.lake)
    out_dir = Path(a.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    import duckdb
    import polars

    print(
        f"duckdb {duckdb.__version__}, polars {polars.__version__}, python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs, threads={a.threads}, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )

    results = {impl: Result(impl) for impl in a.only}
    # Round-robin the repeated implementations so background noise spreads over all of them.
    schedule = [impl for _ in range(a.repeats) for impl in a.only if impl not in ("pandas", "spark")]
    if "spark" in a.only:
        schedule += ["spark"]  # one run: the slowest peer after pandas on one machine
    if "pandas" in a.only:
        schedule += ["pandas"] * a.pandas_repeats
    for impl in schedule:
        r = results[impl]
        if r.error:
            continue
        try:
            if impl == "spark":  # its JVM is not a waited child: its CPU time would read as other work
                run = run_once(impl, a.lake, params, out_dir / f"{impl}.parquet", a.threads)
            else:
                with other_work.measured():
                    run = run_once(impl, a.lake, params, out_dir / f"{impl}.parquet", a.threads)
        except RuntimeError as exc:
            r.error = str(exc)
            print(f"  {impl}: FAILED\n{exc}", flush=True)
            continue
        r.runs.append(run)
        print(f"  {impl}: {run['seconds']:.2f} s, {run['rows']:,} rows, peak {run['peak_rss_mb']:.0f} MiB", flush=True)

    failed_targets = report(results, params, a.threads, a.repeats, a.pandas_repeats)
    problems, notes = compare_outputs(out_dir, results)
    print("\n### Agreement (join on event_id; ints exact, floats 1e-9 rel or 1e-6 abs, nulls in place)\n")
    for n in notes:
        print(f"- {n}")
    for line in problems[:40]:
        print(f"- {line}")
    print(f"\ntotal benchmark time {time.perf_counter() - t_start:.0f} s")
    other = other_work.share()
    if other is not None:
        print(f"other processes used {other:.0%} of the machine's CPU time during the timed runs (Spark's left out)")
        if other > 0.10:
            print(
                "WARNING: other work competed for the CPUs: timings (and single-run pandas most) are noisy; "
                "rerun on an idle machine"
            )
    if problems:
        print("\nMISMATCH: implementations disagree (see above)")
        return 1
    if any(r.error for r in results.values()):
        return 2
    if failed_targets:
        print("\nall implementations agree; some targets FAIL (see above)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
