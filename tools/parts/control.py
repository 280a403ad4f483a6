"""The control run (whole episodes of a noisy balancer), scored with the closed-loop check."""

from __future__ import annotations

from pathlib import Path

from tools.parts.runs import scored_run, timed_run

CONTROL_FLAGS = ("--policy", "balancer", "--reset_after", "None")  # the control run's collection


def measure(out_dir: Path, flags: dict) -> dict:
    run = out_dir / "control_run"
    return scored_run(run, timed_run(run, CONTROL_FLAGS), flags["fresh"],
                      f"python train_vae.py {' '.join(CONTROL_FLAGS)} --out_dir outputs/control", None,
                      "cartpole_control.pt")
