"""CarRacing's default run (the bench's own, if it ran), scored on every driver's fresh frames."""

from __future__ import annotations

from pathlib import Path

from tools.parts.runs import bench_run, scored_run, timed_run


def measure(out_dir: Path, flags: dict) -> dict:
    run, seconds = bench_run(out_dir, flags, "car_quality") or (out_dir / "car_default_run", None)
    car_racing = ("--env_id", "CarRacing-v3")
    return scored_run(run, seconds or timed_run(run, car_racing), flags["fresh"],
                      "python train_vae.py --env_id CarRacing-v3", "car_", "carracing.pt")
