"""tools/bench.py: the performance, threads and scaling tables, and the quality curves."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tools.parts import DOCS


def measure(out_dir: Path, flags: dict) -> dict:
    from tools import bench

    bench_dir = out_dir / "bench"
    bench.main(["--out_dir", str(bench_dir), "--car_quality", str(flags["car"])])
    for name in ("quality_vs_time.png", "car_quality_vs_time.png"):
        if (bench_dir / name).exists():
            shutil.copyfile(bench_dir / name, DOCS / name)
    return json.loads((bench_dir / "bench.json").read_text())
