"""PPO on a VAE's codes beside PPO on CartPole's true state: the same seeds, the same budget.

    python tools/bench_ppo.py                    # 3 seeds, 200k steps a side, two runs at a time on 2 cores
    python tools/bench_ppo.py --seeds "(0,)"     # one seed: its two runs side by side

Runs examples/ppo_on_codes.py (rl-zoo's published PPO settings for CartPole-v1) once on the codes
of CHECKPOINT and once on the true state for each seed, and prints each side's mean test return,
over all seeds' test episodes, and their ratio: how much of what PPO learns from the state it
learns from the vision stage's codes. Writes OUT_DIR/ppo.json, which `tools/make_docs.py` quotes.
The runs go WORKERS at a time, each in a process of its own at one thread: what they learn does
not depend on the clock, and one run keeps one core busy.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: its scripts and the library
from examples import ppo_on_codes  # noqa: E402
from worldvae import cli, compute, constants, files  # noqa: E402

# -----------------------------------------------------------------------------
CHECKPOINT = "pretrained/cartpole_control.pt"  # the VAE whose codes PPO reads
SEEDS = (0, 1, 2)  # each seed trains and tests both sides
TOTAL_STEPS = 200_000  # env steps of training, each side and seed
WORKERS = 0  # runs at once, each in a process of its own; 0: one per CPU core, 1: one after another in this one
OUT_DIR = "outputs/bench_ppo"  # ppo.json goes here
# -----------------------------------------------------------------------------


def recipe_argv(cfg, seed: int, observe: str) -> list[str]:
    """examples/ppo_on_codes.py's flags for one side of one seed."""
    return ["--observe", observe, "--checkpoint", cfg.checkpoint, "--seed", str(seed), "--total_steps",
            str(cfg.total_steps)]


def run_all(cfg, jobs: list[tuple[int, str]]) -> list[dict]:
    """The recipe's result for each (seed, side), in order: WORKERS at a time in spawned processes (one thread
    each), or one after another in this process."""
    argvs = [recipe_argv(cfg, seed, observe) for seed, observe in jobs]
    workers = min(cfg.workers or compute.usable_cpus(), len(jobs))
    if workers == 1:
        return [ppo_on_codes.main(argv) for argv in argvs]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=torch.set_num_threads, initargs=(1,)) as pool:
        return list(pool.map(ppo_on_codes.main, argvs))


def main(argv: Sequence[str] | None = None) -> dict:
    cfg = constants.parse_config(__name__, argv)
    cli.require(isinstance(cfg.seeds, tuple) and 1 <= len(cfg.seeds) <= 100 and all(
        isinstance(seed, int) for seed in cfg.seeds), f"SEEDS must be a tuple of 1 to 100 whole numbers, got "
        f"{cfg.seeds!r}")
    for seed in cfg.seeds:
        cli.require_seed(seed, "SEEDS")
    runs = {"codes": [], "state": []}
    for seed in cfg.seeds:  # the recipe refuses what it cannot run (a seed, a step count, a checkpoint): all first
        for observe in runs:
            ppo_on_codes.main(recipe_argv(cfg, seed, observe), check_only=True)
    cli.require(0 <= cfg.workers <= 256, f"WORKERS must lie in 0 .. 256, got {cfg.workers}")
    out_dir = files.prepare_out_dir(cfg.out_dir)
    jobs = [(seed, observe) for observe in runs for seed in cfg.seeds]  # the longer runs, on the codes, first
    for (_, observe), result in zip(jobs, run_all(cfg, jobs), strict=True):
        runs[observe].append(result)
    mean = {observe: float(np.mean([r for run in side for r in run["returns"]])) for observe, side in runs.items()}
    worst = {observe: min(run["worst_return"] for run in side) for observe, side in runs.items()}
    first = runs["codes"][0]
    report = {"machine": compute.machine(), "checkpoint": cfg.checkpoint, "seeds": list(cfg.seeds),
              "total_steps": cfg.total_steps, "n_stack": first["n_stack"], "settings": first["ppo_settings"],
              "mean_return": mean, "worst_return": worst, "ratio": mean["codes"] / mean["state"], "runs": runs}
    for observe in runs:
        print(f"{observe}: mean return {mean[observe]:.1f}, worst episode {worst[observe]:.0f} "
              f"({len(cfg.seeds)} seeds x {first['test_episodes']} test episodes)")
    print(f"codes / state: {report['ratio']:.3f}")
    text = json.dumps(files.json_safe(report), indent=2)
    files.atomic_write(out_dir / "ppo.json", lambda f: f.write(text.encode()))
    print(f"wrote {out_dir / 'ppo.json'}")
    return report


if __name__ == "__main__":
    cli.run(main)
