"""Benchmark (not a test): parsing and validating a 100,000-row template xlsx against the read floor.

    .venv/bin/python bench/parse.py                 # 100,000 rows, median of 3 runs
    .venv/bin/python bench/parse.py --rows 20000 --runs 5 --json

The floor is python-calamine reading the same workbook into Python values (the least any reader of
the file does); ``parse_file`` (inspection, reading, validation, idempotency keys) is measured in
the same run, each figure the median of ``--runs``, each run in a fresh process whose peak RSS is
reported too. Targets: parse ≤ 2 × floor (issue 9); peak RSS well under 500 MB. The workbook is written
once with bench/run.py's reserve and cached under /tmp (writing 100,000 rows takes a while).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TODAY = date(2025, 1, 31)


def workbook(rows: int) -> Path:
    """The cached template workbook: each project's December report of the bench reserve
    (bench/reserve.py), as the import template; written once (100,000 rows take a while)."""
    path = Path(tempfile.gettempdir()) / f"pipeline-bench-december-{rows}.xlsx"
    if not path.exists():
        sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
        import reserve  # type: ignore[import-not-found]

        from pipeline.ingest.export import write_template
        from pipeline.ingest.frame import frame_to_rows

        partial = path.with_suffix(".partial.xlsx")
        write_template(frame_to_rows(reserve.reports(rows, (12,)).drop("month")), partial)
        partial.rename(path)
    return path


# One measurement, in a process of its own: prints {"seconds": …, "rss_mb": …, …}.
_FLOOR = """
import io, json, sys, time
import python_calamine
data = open(sys.argv[1], "rb").read()
start = time.perf_counter()
rows = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data)).get_sheet_by_index(0).to_python()
took = time.perf_counter() - start
print(json.dumps({"seconds": took, "rows": len(rows) - 1,
                  "rss_mb": int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM:')).split()[1]) / 1024}))
"""
_PARSE = """
import json, sys, time
from datetime import date
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from pipeline.ingest.parse import parse_file
from pipeline.reference import load_reference
reference = load_reference(Path(sys.argv[2]) / "config")
start = time.perf_counter()
parsed = parse_file(Path(sys.argv[1]), reference=reference, today=date.fromisoformat(sys.argv[3]), max_bytes=10**9)
took = time.perf_counter() - start
print(json.dumps({"seconds": took, "rows": parsed.updates.height, "errors": len(parsed.errors),
                  "rss_mb": int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM:')).split()[1]) / 1024}))
"""


def measure(script: str, *args: str) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="one JSON object instead of text")
    args = parser.parse_args()
    path = workbook(args.rows)
    floors, parses = [], []
    for _ in range(args.runs):  # interleaved, so both see the same load on a shared machine
        floors.append(measure(_FLOOR, str(path)))
        parses.append(measure(_PARSE, str(path), str(ROOT), TODAY.isoformat()))
    floor = statistics.median(m["seconds"] for m in floors)
    parse = statistics.median(m["seconds"] for m in parses)
    result = {
        "rows": parses[0]["rows"], "errors": parses[0]["errors"], "runs": args.runs,
        "floor_seconds": round(floor, 3), "parse_seconds": round(parse, 3), "ratio": round(parse / floor, 2),
        "floor_rss_mb": round(max(m["rss_mb"] for m in floors)), "parse_rss_mb": round(max(m["rss_mb"] for m in parses)),
        "floor_runs": [round(m["seconds"], 3) for m in floors], "parse_runs": [round(m["seconds"], 3) for m in parses],
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.rows:,}-row workbook {path} ({path.stat().st_size / 1048576:.1f} MB), median of {args.runs} runs")
    print(f"read floor (python-calamine to Python values): {floor:6.3f} s   peak RSS {result['floor_rss_mb']} MB")
    print(f"parse_file (inspect, read, validate, keys):    {parse:6.3f} s   peak RSS {result['parse_rss_mb']} MB")
    print(f"ratio {result['ratio']:.2f} × floor (target ≤ 2), {result['rows']:,} rows accepted, {result['errors']} errors")


if __name__ == "__main__":
    main()
