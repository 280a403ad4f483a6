"""The default runs the results, control and CarRacing parts score: a run of train_vae.py, timed from a cold
start (or the bench's own, when this build ran the bench), scored by evaluate_vae.py and drawn by
sample_vae.py, its pictures copied to docs/ and a compact copy shipped to pretrained/."""

from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path

from tools.parts import DOCS, PRETRAINED


def timed_run(run: Path, env_argv: tuple[str, ...] = ()) -> float:
    """A run of train_vae.py (`env_argv`, its other constants the defaults) from a cold start: its wall seconds."""
    import train_vae

    shutil.rmtree(run, ignore_errors=True)  # collection is part of the run
    start = time.perf_counter()
    train_vae.main([*env_argv, "--out_dir", str(run)])
    return time.perf_counter() - start


def scored_run(run: Path, seconds: float, fresh: int, command: str, prefix: str | None, shipped: str) -> dict:
    """A finished run scored on `fresh` new frames and drawn, its pictures copied to docs/ (names starting
    with `prefix`; None: none), a compact copy shipped as pretrained/`shipped`: what its table shows."""
    import evaluate_vae
    import sample_vae
    from worldvae.checkpoints import load_checkpoint, save_compact

    evaluate_vae.main(["--checkpoint", str(run / "vae.pt"), "--fresh", str(fresh), "--out_dir", str(run / "eval")])
    sample_vae.main(["--checkpoint", str(run / "vae.pt"), "--rollout", "--out_dir", str(run / "eval")])
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    with open(run / "metrics.csv") as f:
        last_epoch = list(csv.DictReader(f))[-1]
    if prefix is not None:
        for name in ("samples.png", "reconstructions.png", "traversal.png", "interpolation.png",
                     "latent_scatter.png", "rollout.gif", "loss_curves.png"):
            shutil.copyfile(run / ("" if name == "loss_curves.png" else "eval") / name, DOCS / f"{prefix}{name}")
    dataset = [*next(run.glob("frames_*")).iterdir()]
    scores = {key: metrics[key] for key in ("mse", "road_iou", "control", "by_policy") if key in metrics}
    save_compact(PRETRAINED / shipped, load_checkpoint(run / "vae.pt"), scores)
    return {"command": command, "seconds": seconds, "images_per_s": float(last_epoch["images_per_s"]),
            "metrics": metrics, "shipped": f"pretrained/{shipped}", "shipped_bytes": _bytes(PRETRAINED / shipped),
            "disk_bytes": {"out_dir": _bytes(*run.iterdir(), *dataset), "dataset": _bytes(*dataset),
                           "vae.pt": _bytes(run / "vae.pt"), "last.pt": _bytes(run / "last.pt")}}


def _bytes(*paths: Path) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file())


def bench_run(out_dir: Path, flags: dict, key: str) -> tuple[Path, float] | None:
    """The bench's own default run of `key` ("ours": CartPole, "car_quality": CarRacing), if this build runs
    the bench: one measurement feeds every table that names the default run. A bench of an earlier build
    is not this build's."""
    path = out_dir / "bench" / "bench.json"
    if not flags["bench"] or not path.exists():
        return None
    runs = json.loads(path.read_text())
    last = (runs.get("quality", {}).get("ours") if key == "ours" else runs.get(key)) or [{}]
    return (Path(last[-1]["run"]), float(last[-1]["seconds"])) if "run" in last[-1] else None
