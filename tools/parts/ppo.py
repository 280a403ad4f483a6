"""tools/bench_ppo.py on the shipped control model's codes, beside PPO on the state."""

from __future__ import annotations

from pathlib import Path


def measure(out_dir: Path, flags: dict) -> dict:
    from tools import bench_ppo

    return bench_ppo.main(["--out_dir", str(out_dir / "bench_ppo")])
