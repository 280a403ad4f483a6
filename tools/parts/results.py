"""The default CartPole run (the bench's own, if it ran), scored: the README's results table."""

from __future__ import annotations

from pathlib import Path

from tools.parts.runs import bench_run, scored_run, timed_run


def measure(out_dir: Path, flags: dict) -> dict:
    run, seconds = bench_run(out_dir, flags, "ours") or (out_dir / "default_run", None)
    return scored_run(run, seconds or timed_run(run), flags["fresh"], "python train_vae.py", "", "cartpole.pt")
