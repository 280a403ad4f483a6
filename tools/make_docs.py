"""Regenerate every picture in docs/ and every table the README quotes, from the code as it is.

    python tools/make_docs.py                                  # all of it: about 50 minutes on 2 cores
    python tools/make_docs.py --car False --compare False --bench False   # the default run and its pictures: ~3 minutes
    python tools/make_docs.py --tables_only                    # only the README's constants tables: seconds

Runs the default `python train_vae.py`, scores it with `evaluate_vae.py --fresh 2000`,
then (optionally) the same on CarRacing-v3, `compare_vae.py` and `bench.py`, each through
its own main(). The
README's blocks between `<!-- NAME: ... -->` and `<!-- NAME end -->` are rewritten with
what they measured, the machine and the command beside them; everything else in the
README is prose, which quotes no number that a block holds.
"""

from __future__ import annotations

import csv
import datetime
import json
import re
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: its scripts and the library
import compare_vae  # noqa: E402
import encode_vae  # noqa: E402
import evaluate_vae  # noqa: E402
import sample_vae  # noqa: E402
import train_vae  # noqa: E402
from tools import bench  # noqa: E402
from vision import cli, compute  # noqa: E402

# -----------------------------------------------------------------------------
CAR = True  # also train on CarRacing-v3 with its own defaults (needs requirements-envs.txt; ~5 minutes)
COMPARE = True  # also train the autoencoder and four VAEs for the AE-vs-VAE table and pictures (~12 minutes)
BENCH = True  # also run bench.py: the Performance and Scaling out tables, the quality-vs-time plot (~35 minutes)
TABLES_ONLY = False  # only rewrite the README's constants tables, nothing is trained
FRESH = 2000  # new frames (another seed) the default run is scored on
OUT_DIR = "outputs/docs"  # the runs behind the pictures; the pictures themselves go to docs/
# -----------------------------------------------------------------------------

_REPO = Path(__file__).resolve().parents[1]
_SCRIPTS = (train_vae, sample_vae, evaluate_vae, encode_vae, compare_vae, bench, sys.modules[__name__])
_KL_WEIGHTS = "(1e-6, 1e-5, 1e-4, 1e-3)"


def constants_tables() -> str:
    """One markdown table per script: each constant, its default, its comment."""
    blocks = []
    for module in _SCRIPTS:
        rows = [f"| `{name}` | `{_literal(knob.value)}` | {knob.help} |" for name, knob in cli.knobs(module).items()]
        blocks.append(f"`{cli.script_path(module)}`:\n\n| constant | default | meaning |\n| --- | --- | --- |\n"
                      + "\n".join(rows))
    return "\n\n".join(blocks)


def _literal(value: object) -> str:
    """A Python literal as the README shows it: strings in double quotes."""
    return json.dumps(value) if isinstance(value, str) else repr(value)


def replace_block(text: str, name: str, body: str, provenance: str) -> str:
    """Put `body` between the README's `<!-- name: ... -->` and `<!-- name end -->` markers."""
    pattern = re.compile(rf"<!-- {name}: .*?-->\n.*?<!-- {name} end -->", re.S)
    if not pattern.search(text):
        raise cli.UserError(f"README.md has no `<!-- {name}: ... -->` ... `<!-- {name} end -->` block")
    return pattern.sub(lambda _: f"<!-- {name}: {provenance}; do not edit by hand -->\n{body}\n<!-- {name} end -->",
                       text)


def default_run(cfg, out_dir: Path, docs: Path, env_argv: Sequence[str] = (), prefix: str = "") -> str:
    """A default run (of `env_argv`'s env), timed from a cold start; its pictures to docs/ (names
    starting with `prefix`); its results table."""
    run = out_dir / f"{prefix}default_run"
    shutil.rmtree(run, ignore_errors=True)  # collection is part of the run
    start = time.perf_counter()
    train_vae.main([*env_argv, "--out_dir", str(run)])
    seconds = time.perf_counter() - start
    evaluate_vae.main(["--checkpoint", str(run / "vae.pt"), "--fresh", str(cfg.fresh), "--out_dir", str(run / "eval")])
    sample_vae.main(["--checkpoint", str(run / "vae.pt"), "--rollout", "--out_dir", str(run / "eval")])
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    with open(run / "metrics.csv") as f:
        epochs = list(csv.DictReader(f))
    for name in ("samples.png", "reconstructions.png", "traversal.png", "interpolation.png", "latent_scatter.png",
                 "rollout.gif"):
        shutil.copyfile(run / "eval" / name, docs / f"{prefix}{name}")
    shutil.copyfile(run / "loss_curves.png", docs / f"{prefix}loss_curves.png")
    dataset = [*next(run.glob("frames_*")).iterdir()]
    probe = ", ".join(f"{name} {r2:.3f}" for name, r2 in metrics["probe_r2"].items()) or "(no state vector)"
    rows = [
        ("wall time of the run, collection included", f"{seconds:.0f} s"),
        ("training speed (last epoch)", f"{float(epochs[-1]['images_per_s']):.0f} images/s"),
        (f"held-out reconstruction MSE per pixel ({metrics['data']})", f"**{metrics['mse']:.6f}**"),
        ("PSNR", f"{metrics['psnr_db']:.1f} dB"),
        ("samples: MSE to the nearest training frame, median / 90th percentile",
         f"{metrics['sample_nearest_mse_median']:.6f} / **{metrics['sample_nearest_mse_p90']:.6f}**"),
        ("KL, and active latent dimensions (KL > 0.01 nats)",
         f"{metrics['kl_total']:.2f} nats, {metrics['active_dims']} of {len(metrics['kl_per_dim'])}"),
        ("linear probe R^2 from the latent mean (held-out)", probe),
        ("disk used by OUT_DIR (dataset, vae.pt, last.pt)", f"{_mb(*run.iterdir(), *dataset)} ({_mb(*dataset)}, "
         f"{_mb(run / 'vae.pt')}, {_mb(run / 'last.pt')})"),
    ]
    return "| measurement | value |\n| --- | --- |\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)


def _mb(*paths: Path) -> str:
    return f"{sum(p.stat().st_size for p in paths if p.is_file()) / 1e6:.1f} MB"


def comparison(out_dir: Path, docs: Path) -> str:
    compare_vae.main(["--kl_weights", _KL_WEIGHTS, "--out_dir", str(out_dir / "compare")])
    shutil.copyfile(out_dir / "compare" / "samples.png", docs / "ae_vs_vae_samples.png")
    shutil.copyfile(out_dir / "compare" / "beta_sweep.png", docs / "beta_sweep.png")
    return (out_dir / "compare" / "comparison.md").read_text().strip()


def performance(out_dir: Path, docs: Path) -> tuple[str, str]:
    """bench.py's table, and its one-process-against-two table for Scaling out."""
    bench.main(["--out_dir", str(out_dir / "bench")])
    results = json.loads((out_dir / "bench" / "bench.json").read_text())
    shutil.copyfile(out_dir / "bench" / "quality_vs_time.png", docs / "quality_vs_time.png")
    rows = "\n".join(f"| {name.strip()} | {value} | {note} |" for name, value, note in results["table"])
    scaling = "\n".join(f"| {processes} | {images} | {mse} |" for processes, images, mse in results["scaling_table"])
    return ("| measurement | value | note |\n| --- | --- | --- |\n" + rows,
            "| processes | images/s, all together | held-out MSE |\n| --- | --- | --- |\n" + scaling)


def main(argv: Sequence[str] | None = None) -> None:
    cfg = cli.parse_config(__name__, argv)
    readme_path, docs = _REPO / "README.md", _REPO / "docs"
    readme = replace_block(readme_path.read_text(), "constants", constants_tables(),
                           "written by `python tools/make_docs.py`")
    if not cfg.tables_only:
        out_dir = cli.prepare_out_dir(cfg.out_dir)
        docs.mkdir(exist_ok=True)
        machine = compute.machine()
        where = (f"{machine['cpu']}, {machine['cores']} cores, AMX {'yes' if machine['amx'] else 'no'}, "
                 f"device {machine['device']}, torch {machine['torch']}, {datetime.date.today()}")
        readme = replace_block(readme, "results", default_run(cfg, out_dir, docs),
                               f"`python tools/make_docs.py` on {where}")
        if cfg.car:
            car = default_run(cfg, out_dir, docs, ["--env_id", "CarRacing-v3"], "car_")
            how = "`python tools/make_docs.py` (`python train_vae.py --env_id CarRacing-v3`)"
            readme = replace_block(readme, "car", car, f"{how} on {where}")
        if cfg.compare:
            readme = replace_block(readme, "compare", comparison(out_dir, docs),
                                   f"`python compare_vae.py --kl_weights \"{_KL_WEIGHTS}\"` on {where}")
        if cfg.bench:
            table, scaling = performance(out_dir, docs)
            readme = replace_block(readme, "bench", table, f"`python tools/bench.py` on {where}")
            readme = replace_block(readme, "scaling", scaling, f"`python tools/bench.py` (SCALING_FRAMES) on {where}")
    cli.atomic_write(readme_path, lambda f: f.write(readme.encode()))
    print(f"rewrote {readme_path}" + ("" if cfg.tables_only else f" and the pictures in {docs}/"))


if __name__ == "__main__":
    cli.run(main)
