"""The times a newcomer sees: the README's first commands, on an idle machine and on a busy one.

    python tools/first_hour.py                 # all of it: about 15 minutes on 2 cores
    python tools/first_hour.py --suite False   # without the test suite: about 7 minutes

Runs each command as the README prints it, in a process of its own, first alone and then
beside NEIGHBOURS CPU-bound programs (as a laptop runs a browser and an editor), and writes
their wall seconds to OUT_DIR/times.json; `tools/make_docs.py` puts the table in the README.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: its scripts and the library
from worldvae import REPO, cli, compute, constants, files  # noqa: E402

# -----------------------------------------------------------------------------
NEIGHBOURS = 2  # CPU-bound programs running beside the busy measurements
DEFAULT_RUN = True  # also time `python train_vae.py` (about 2 minutes idle on 2 cores)
SUITE = True  # also time the test suite, `python -m pytest -q -n auto` (about 2 minutes idle on 2 cores)
OUT_DIR = "outputs/first_hour"  # times.json and the runs it times
# -----------------------------------------------------------------------------


def commands(out_dir: Path, default_run: bool, suite: bool) -> list[tuple[str, list[str]]]:
    """(the command as the README prints it, what runs) for each timed step, in the README's order."""
    smoke, default = out_dir / "smoke", out_dir / "default"
    steps = [
        ("python train_vae.py --n_frames 2000 --epochs 1 --out_dir outputs/smoke",
         ["train_vae.py", "--n_frames", "2000", "--epochs", "1", "--out_dir", str(smoke)]),
        ("python sample_vae.py --checkpoint outputs/smoke/vae.pt",
         ["sample_vae.py", "--checkpoint", str(smoke / "vae.pt")]),
    ]
    if default_run:
        steps.append(("python train_vae.py", ["train_vae.py", "--out_dir", str(default)]))
    if suite:
        steps.append(("python -m pytest -q -n auto", ["-m", "pytest", "-q", "-n", "auto", "-p", "no:cacheprovider"]))
    return steps


def timed(argv: Sequence[str], what: str) -> float:
    """Wall seconds of `python ARGV` run from the repo root, from a cold start (a training run's folder removed)."""
    if argv[0] == "train_vae.py":
        shutil.rmtree(argv[argv.index("--out_dir") + 1], ignore_errors=True)  # collection is part of the run
    start = time.perf_counter()
    result = subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    cli.require(result.returncode == 0, f"`{what}` failed: {result.stderr.strip().splitlines()[-1:]}"
                f"{result.stdout.strip().splitlines()[-1:]}")
    return seconds


def beside(neighbours: int, run) -> float:
    """`run()` while `neighbours` CPU-bound programs spin beside it."""
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(neighbours)]
    try:
        return run()
    finally:
        for process in busy:
            process.kill()
            process.wait()


def main(argv: Sequence[str] | None = None) -> dict:
    cfg = constants.parse_config(__name__, argv)
    cli.require(isinstance(cfg.neighbours, int) and 1 <= cfg.neighbours <= 64, f"NEIGHBOURS must be 1 to 64, got "
                f"{cfg.neighbours!r}")
    out_dir = files.prepare_out_dir(cfg.out_dir)
    rows = []
    for shown, run in commands(out_dir, cfg.default_run, cfg.suite):
        idle = timed(run, shown)
        busy = beside(cfg.neighbours, lambda run=run, shown=shown: timed(run, shown))
        rows.append({"command": shown, "idle_seconds": idle, "busy_seconds": busy})
        print(f"{shown}: {idle:.0f} s idle, {busy:.0f} s beside {cfg.neighbours} busy programs")
    report = {"machine": compute.machine(), "neighbours": cfg.neighbours, "times": rows}
    text = json.dumps(report, indent=2)
    files.atomic_write(out_dir / "times.json", lambda f: f.write(text.encode()))
    print(f"wrote {out_dir / 'times.json'}")
    return report


if __name__ == "__main__":
    cli.run(main)
