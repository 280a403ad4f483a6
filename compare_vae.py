"""Autoencoder versus VAE, and the VAE across KL weights: same frames, same training budget.

    python compare_vae.py                                          # AE vs VAE: about 3 minutes on 2 cores
    python compare_vae.py --kl_weights "(2e-6, 2e-5, 2e-4, 2e-3)"  # also sweep beta: about 6 minutes

Each model is trained by train_vae.py's own code into OUT_DIR/<name>/ and scored by
evaluate_vae.py's; the table goes to OUT_DIR/comparison.md (and .json), samples from
each model side by side to OUT_DIR/samples.png, and with several KL weights, MSE and
probe R^2 against beta to OUT_DIR/beta_sweep.png.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import torch

import evaluate_vae
import train_vae
from worldvae import cli, constants, files
from worldvae.checkpoints import load_vae
from worldvae.pictures import plot_beta_sweep, save_grid

# -----------------------------------------------------------------------------
KL_WEIGHTS = None  # one VAE per value, e.g. "(2e-6, 2e-5)"; None: one VAE at train_vae.py's KL_WEIGHT
AUTOENCODER = True  # also train a plain autoencoder on the same frames with the same budget
N_FRAMES = None  # frames every model trains on (the same seed gives the same frames); None: train_vae.py's
EPOCHS = None  # epochs every model trains for; None: train_vae.py's
SEED = None  # seeds data, weights and shuffling, identically for every model; None: train_vae.py's
OUT_DIR = "outputs/compare"  # one folder per model, and the comparison files
# -----------------------------------------------------------------------------

_SAMPLES_PER_MODEL = 8


def variants(cfg: SimpleNamespace) -> list[tuple[str, list[str]]]:
    """(name, train_vae.py flags) of each model to train."""
    ae = [("autoencoder", ["--variational", "False"])] if cfg.autoencoder else []
    if cfg.kl_weights is None:
        return [*ae, ("vae", [])]
    return ae + [(f"vae_beta{b:g}", ["--kl_weight", repr(float(b))]) for b in cfg.kl_weights]


def train_argv(flags: list[str], cfg: SimpleNamespace, run_dir: Path) -> list[str]:
    """train_vae.py's flags for one model: the shared budget, the model's own flags, its folder."""
    shared = {"n_frames": cfg.n_frames, "epochs": cfg.epochs, "seed": cfg.seed}
    budget = [f"--{knob}={value}" for knob, value in shared.items() if value is not None]
    return [*budget, *flags, "--out_dir", str(run_dir)]


def train_and_score(name: str, flags: list[str], cfg: SimpleNamespace, out_dir: Path) -> dict:
    """Train one model with train_vae.py, score it with evaluate_vae.py; its metrics."""
    run_dir = out_dir / name
    print(f"\n=== {name} ===")
    try:
        train_vae.main(train_argv(flags, cfg, run_dir))
    except cli.Stopped as stop:
        signum = stop.exit_code - 128
        raise cli.Stopped(f"stopped by {signal.Signals(signum).name} while training {name}; run the same "
                          "compare_vae.py command again to start the comparison over", signum) from None
    evaluate_vae.main(["--checkpoint", str(run_dir / "vae.pt"), "--out_dir", str(run_dir / "eval"),
                       "--control_episodes", "0"])  # its table compares pictures and probes, not control
    return {"name": name} | json.loads((run_dir / "eval" / "metrics.json").read_text())


def markdown_table(results: list[dict]) -> str:
    names = list(results[0]["probe_r2"])
    header = ["model", "beta", "val MSE", "PSNR (dB)", "KL (nats)", "active dims", *[f"R^2 {n}" for n in names]]
    rows = []
    for r in results:
        active = r["active_dims"] if r["variational"] else f"({r['active_dims_by_variance']} by variance)"
        rows.append([
            r["name"],
            f"{r['kl_weight']:g}" if r["variational"] else "-",
            f"{r['mse']:.5f}",
            f"{r['psnr_db']:.1f}",
            f"{r['kl_total']:.2f}" if r["variational"] else "-",
            str(active),
            *[f"{r['probe_r2'][n]:.3f}" for n in names],
        ])
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def main(argv: Sequence[str] | None = None) -> None:
    cfg = constants.parse_config(__name__, argv)
    weights = cfg.kl_weights
    cli.require(weights is None or (isinstance(weights, tuple) and all(w >= 0 for w in weights)),
                f"KL_WEIGHTS must be a tuple of numbers >= 0, or None; got {weights!r}")
    cli.require(bool(weights) or weights is None or cfg.autoencoder,
                "nothing to compare: give KL_WEIGHTS, or keep AUTOENCODER")
    # every model's refusals (its budget, a KL weight, a folder holding a run), by train_vae.py itself, come first
    for name, flags in variants(cfg):
        train_vae.main(train_argv(flags, cfg, Path(cfg.out_dir) / name), check_only=True)
    out_dir = files.prepare_out_dir(cfg.out_dir)
    results = [train_and_score(name, flags, cfg, out_dir) for name, flags in variants(cfg)]

    table = markdown_table(results)
    for name, text in (("comparison.md", table + "\n"), ("comparison.json", json.dumps(results, indent=2))):
        files.atomic_write(out_dir / name, lambda f, text=text: f.write(text.encode()))
    # one row of samples per model, all decoded from the same draws z ~ N(0, I)
    models = [load_vae(out_dir / r["name"] / "vae.pt") for r in results]
    z = torch.randn(_SAMPLES_PER_MODEL, models[0].latent_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        rows = [f"{r['name']}" + (f", beta {r['kl_weight']:g}" if r["variational"] else "") for r in results]
        save_grid(torch.cat([model.decode(z) for model in models]), out_dir / "samples.png", ncols=_SAMPLES_PER_MODEL,
                  title="each row: one model decoding the same 8 draws z ~ N(0, I)", row_labels=rows)
    written = ["comparison.md", "comparison.json", f"samples.png (rows: {', '.join(r['name'] for r in results)})"]
    vaes = sorted((r for r in results if r["variational"]), key=lambda r: r["kl_weight"])
    if len(vaes) > 1:
        r2 = {name: [r["probe_r2"][name] for r in vaes] for name in vaes[0]["probe_r2"]}
        plot_beta_sweep([r["kl_weight"] for r in vaes], [r["mse"] for r in vaes], r2, out_dir / "beta_sweep.png")
        written.append("beta_sweep.png")
    print(f"\n{table}\n\nwrote to {out_dir}/: " + ", ".join(written))


if __name__ == "__main__":
    cli.run(main)
