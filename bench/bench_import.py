"""`make bench-import`: how long `import definitions` takes, the price every Dagster process
(webserver, daemon, each run's step processes, `dagster definitions validate`) pays before it
does anything. Five fresh interpreters each import it once; the median must stay under 3 s.

The figure is the import alone, timed inside each process (interpreter start-up is shown beside
it). Other processes' CPU share during the runs is printed, as the machine may be shared.
`--detail` adds the heaviest top-level imports of one more run (`python -X importtime`).

Usage: .venv/bin/python -m bench.bench_import [--runs 5] [--ceiling-s 3] [--detail]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.noise import OtherWork

ROOT = Path(__file__).resolve().parents[1]
TIMED_IMPORT = "import time; t = time.perf_counter(); import definitions; print(time.perf_counter() - t)"


def timed_import() -> tuple[float, float]:
    """(seconds of `import definitions`, seconds of the whole process) in a fresh interpreter."""
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", TIMED_IMPORT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=300,
        check=False,  # the return code is checked below, with stderr in the message
    )
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"import definitions failed:\n{out.stderr[-3000:]}")
    return float(out.stdout.strip().splitlines()[-1]), wall


def heaviest_imports(top: int = 10) -> list[tuple[float, str]]:
    """The `top` top-level packages by cumulative import time (seconds) in one fresh process."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import definitions"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    totals: dict[str, float] = {}
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
        if cumulative.isdigit() and not name.startswith(" ") and "." not in name:
            totals[name] = max(totals.get(name, 0.0), int(cumulative) / 1e6)
    return sorted(((s, n) for n, s in totals.items()), reverse=True)[:top]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="fresh processes (default: %(default)s)")
    parser.add_argument("--ceiling-s", type=float, default=3.0, help="the median's limit (default: %(default)s)")
    parser.add_argument("--detail", action="store_true", help="also list the heaviest top-level imports")
    args = parser.parse_args(argv)

    other = OtherWork()
    imports, walls = [], []
    print(f"import definitions, {args.runs} fresh processes ({sys.executable})")
    print(f"{'run':>5} {'import s':>9} {'process s':>10}")
    for k in range(1, args.runs + 1):
        with other.measured():
            seconds, wall = timed_import()
        imports.append(seconds)
        walls.append(wall)
        print(f"{k:>5} {seconds:9.3f} {wall:10.3f}")
    median = statistics.median(imports)
    verdict = "PASS" if median < args.ceiling_s else "FAIL"
    print()
    print(f"{'':>5} {'median':>9} {'min':>7} {'max':>7} {'ceiling':>9}")
    print(f"{'':>5} {median:9.3f} {min(imports):7.3f} {max(imports):7.3f} {args.ceiling_s:9.3f}  {verdict}")
    share = other.share()
    if share is not None:
        print(f"other processes took {share:.0%} of the machine's CPU during the runs")
    if args.detail:
        print("\nheaviest top-level imports (cumulative s, one run):")
        for seconds, name in heaviest_imports():
            print(f"  {seconds:7.3f}  {name}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
