"""The measuring half of `tools/make_docs.py`: one part of the docs build, in a process of its own.

    python -m tools.docs_parts PART OUT_DIR FLAGS    # make_docs runs this; FLAGS is a JSON object

Each part runs the project's own commands (train, evaluate, sample, the benches), copies the
pictures the pages show to docs/, ships the checkpoints the tables quote to pretrained/, and
writes its measurements, as JSON, for make_docs, which stamps them with the project files this
process and those it started imported (tools/import_log/) and renders the tables from them: a
table's wording changes without measuring again. The scripts are imported inside each part,
never at the top, so a part's stamp names the files it used and no others.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: its scripts and the library
from worldvae import REPO, cli, compute, files  # noqa: E402

DOCS, PRETRAINED = REPO / "docs", REPO / "pretrained"
KL_WEIGHTS = "(1e-6, 1e-5, 1e-4, 1e-3)"  # the comparison's VAEs
CONTROL_FLAGS = ("--policy", "balancer", "--reset_after", "None")  # the control run's collection


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


def bench(out_dir: Path, flags: dict) -> dict:
    """tools/bench.py: the performance, threads and scaling tables, and the quality curves."""
    from tools import bench as bench_tool

    bench_dir = out_dir / "bench"
    bench_tool.main(["--out_dir", str(bench_dir), "--car_quality", str(flags["car"])])
    for name in ("quality_vs_time.png", "car_quality_vs_time.png"):
        if (bench_dir / name).exists():
            shutil.copyfile(bench_dir / name, DOCS / name)
    return json.loads((bench_dir / "bench.json").read_text())


def results(out_dir: Path, flags: dict) -> dict:
    """The default CartPole run (the bench's own, if it ran), scored: the README's results table."""
    run, seconds = bench_run(out_dir, flags, "ours") or (out_dir / "default_run", None)
    return scored_run(run, seconds or timed_run(run), flags["fresh"], "python train_vae.py", "", "cartpole.pt")


def control(out_dir: Path, flags: dict) -> dict:
    """The control run (whole episodes of a noisy balancer), scored with the closed-loop check."""
    run = out_dir / "control_run"
    return scored_run(run, timed_run(run, CONTROL_FLAGS), flags["fresh"],
                      f"python train_vae.py {' '.join(CONTROL_FLAGS)} --out_dir outputs/control", None,
                      "cartpole_control.pt")


def car(out_dir: Path, flags: dict) -> dict:
    """CarRacing's default run (the bench's own, if it ran), scored on every driver's fresh frames."""
    run, seconds = bench_run(out_dir, flags, "car_quality") or (out_dir / "car_default_run", None)
    car_racing = ("--env_id", "CarRacing-v3")
    return scored_run(run, seconds or timed_run(run, car_racing), flags["fresh"],
                      "python train_vae.py --env_id CarRacing-v3", "car_", "carracing.pt")


def ppo(out_dir: Path, flags: dict) -> dict:
    """tools/bench_ppo.py on the shipped control model's codes, beside PPO on the state."""
    from tools import bench_ppo

    return bench_ppo.main(["--out_dir", str(out_dir / "bench_ppo")])


def activities(out_dir: Path, flags: dict) -> dict:
    """The homework's five activities as their commands run them, each scored on fresh frames; the two
    images each saved go to docs/homework/."""
    import evaluate_vae
    from tools import activities as homework

    root = out_dir / "activities"
    shutil.rmtree(root, ignore_errors=True)  # make_docs' own runs: each build starts them afresh
    (DOCS / "homework").mkdir(exist_ok=True)
    rows = []
    for activity in homework.listed():
        run = homework.run_activity(activity, root)
        evaluate_vae.main(["--checkpoint", str(run / "vae.pt"), "--fresh", str(flags["fresh"]), "--out_dir",
                           str(run / "eval")])
        for i in range(2):
            shutil.copyfile(run / "samples" / f"sample_{i:03d}.png",
                            DOCS / "homework" / f"activity{activity.number}_sample_{i}.png")
        rows.append({"number": activity.number, "title": activity.title,
                     "metrics": json.loads((run / "eval" / "metrics.json").read_text())})
    return {"fresh": flags["fresh"], "activities": rows}


def first_hour(out_dir: Path, flags: dict) -> dict:
    """tools/first_hour.py: the README's first commands timed idle and beside busy programs."""
    from tools import first_hour as timing

    return timing.main(["--out_dir", str(out_dir / "first_hour")])


def compare(out_dir: Path, flags: dict) -> dict:
    """compare_vae.py: the autoencoder and four VAEs on the same budget."""
    import compare_vae

    compare_vae.main(["--kl_weights", KL_WEIGHTS, "--out_dir", str(out_dir / "compare")])
    shutil.copyfile(out_dir / "compare" / "samples.png", DOCS / "ae_vs_vae_samples.png")
    shutil.copyfile(out_dir / "compare" / "beta_sweep.png", DOCS / "beta_sweep.png")
    return {"kl_weights": KL_WEIGHTS, "results": json.loads((out_dir / "compare" / "comparison.json").read_text()),
            "table": (out_dir / "compare" / "comparison.md").read_text().strip()}  # compare_vae.py's own rendering


MEASURE: dict[str, Callable[[Path, dict], dict]] = {  # a whole build, in order: the bench's runs feed the tables
    "bench": bench, "results": results, "control": control, "ppo": ppo, "car": car, "activities": activities,
    "first_hour": first_hour, "compare": compare}
USES = {"results": ("bench",), "car": ("bench",), "ppo": ("control",)}  # parts whose output a part reads


def measured_path(out_dir: Path, part: str) -> Path:
    """Where the part's process leaves its measurements for make_docs, which stamps them."""
    return out_dir / "parts" / f"{part}.measured.json"


def main(argv: list[str]) -> None:
    part, out_dir, flags = argv[0], Path(argv[1]), json.loads(argv[2])
    cli.require(part in MEASURE, f"PART must be one of {', '.join(MEASURE)}, got {part!r}")
    for directory in (DOCS, PRETRAINED, out_dir / "parts"):
        directory.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    measurements = MEASURE[part](out_dir, flags)
    measured = {"part": part, "flags": flags, "minutes": (time.perf_counter() - start) / 60,
                "machine": compute.machine(), "date": time.strftime("%Y-%m-%d"), "measurements": measurements}
    text = json.dumps(files.json_safe(measured), indent=2)
    files.atomic_write(measured_path(out_dir, part), lambda f: f.write(text.encode()))


if __name__ == "__main__":
    cli.run(main, sys.argv[1:])
