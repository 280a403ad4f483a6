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
from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import cli
import evaluate_vae
import train_vae
from images import save_grid
from MyVAE import load_vae

# -----------------------------------------------------------------------------
KL_WEIGHTS = (train_vae.KL_WEIGHT,)  # one VAE per value; two or more also plot MSE and probe R^2 against beta
AUTOENCODER = True  # also train a plain autoencoder on the same frames with the same budget
N_FRAMES = train_vae.N_FRAMES  # frames every model trains on (the same seed gives the same frames)
EPOCHS = train_vae.EPOCHS  # epochs every model trains for
SEED = train_vae.SEED  # seeds data, weights and shuffling, identically for every model
OUT_DIR = "outputs/compare"  # one folder per model, and the comparison files
# -----------------------------------------------------------------------------

SAMPLES_PER_MODEL = 8


def variants(cfg: object) -> list[tuple[str, float | None]]:
    """(name, KL weight) of each model to train; None marks the plain autoencoder."""
    return ([("autoencoder", None)] if cfg.autoencoder else []) + [(f"vae_beta{b:g}", b) for b in cfg.kl_weights]


def train_and_score(name: str, kl_weight: float | None, cfg: object, out_dir: Path) -> dict:
    """Train one model with train_vae's code, score it with evaluate_vae's; its metrics."""
    run_dir = out_dir / name
    print(f"\n=== {name} ===")
    model = ["--variational", "False"] if kl_weight is None else ["--kl_weight", repr(kl_weight)]
    budget = ["--n_frames", str(cfg.n_frames), "--epochs", str(cfg.epochs), "--seed", str(cfg.seed)]
    train_vae.main([*budget, *model, "--out_dir", str(run_dir)])
    metrics = evaluate_vae.evaluate(run_dir / "vae.pt", cli.prepare_out_dir(str(run_dir / "eval")))
    print(evaluate_vae.summary(metrics))
    return {"name": name, "kl_weight": kl_weight} | metrics


def markdown_table(results: list[dict]) -> str:
    names = list(results[0]["probe_r2"])
    header = ["model", "beta", "val MSE", "PSNR (dB)", "KL (nats)", "active dims", *[f"R^2 {n}" for n in names]]
    rows = []
    for r in results:
        active = r["active_dims"] if r["variational"] else f"({r['active_dims_by_variance']} by variance)"
        rows.append([
            r["name"],
            f"{r['kl_weight']:g}" if r["kl_weight"] is not None else "-",
            f"{r['mse']:.5f}",
            f"{r['psnr_db']:.1f}",
            f"{r['kl_total']:.2f}" if r["variational"] else "-",
            str(active),
            *[f"{r['probe_r2'][n]:.3f}" for n in names],
        ])
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def plot_beta_sweep(vaes: list[dict], path: Path) -> None:
    betas = [r["kl_weight"] for r in vaes]
    fig = Figure(figsize=(10, 3.8), dpi=100)
    FigureCanvasAgg(fig)
    mse_ax, r2_ax = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    mse_ax.plot(betas, [r["mse"] for r in vaes], marker="o")
    mse_ax.set(xscale="log", yscale="log", xlabel="KL_WEIGHT (beta)", title="validation MSE per pixel")
    for name in vaes[0]["probe_r2"]:
        r2_ax.plot(betas, [r["probe_r2"][name] for r in vaes], marker="o", label=name)
    r2_ax.set(xscale="log", xlabel="KL_WEIGHT (beta)", title="linear probe R^2 (held-out)", ylim=(-0.05, 1.05))
    r2_ax.legend(fontsize=8)
    for ax in (mse_ax, r2_ax):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def main(argv: Sequence[str] | None = None) -> None:
    cfg = cli.parse_config(__name__, argv)
    if not cfg.kl_weights and not cfg.autoencoder:
        raise cli.UserError("nothing to compare: give KL_WEIGHTS, or keep AUTOENCODER")
    if any(beta < 0 for beta in cfg.kl_weights):
        raise cli.UserError(f"KL_WEIGHTS must be zero or positive, got {cfg.kl_weights}")
    out_dir = cli.prepare_out_dir(cfg.out_dir)
    results = [train_and_score(name, kl_weight, cfg, out_dir) for name, kl_weight in variants(cfg)]

    table = markdown_table(results)
    (out_dir / "comparison.md").write_text(table + "\n")
    (out_dir / "comparison.json").write_text(json.dumps(results, indent=2))
    # one row of samples per model, all decoded from the same draws z ~ N(0, I)
    models = [load_vae(out_dir / r["name"] / "vae.pt") for r in results]
    z = torch.randn(SAMPLES_PER_MODEL, models[0].latent_dim, generator=torch.Generator().manual_seed(cfg.seed))
    with torch.no_grad():
        save_grid(torch.cat([model.decode(z) for model in models]), out_dir / "samples.png", ncols=SAMPLES_PER_MODEL)
    written = ["comparison.md", "comparison.json", f"samples.png (rows: {', '.join(r['name'] for r in results)})"]
    vaes = sorted((r for r in results if r["variational"]), key=lambda r: r["kl_weight"])
    if len(vaes) > 1:
        plot_beta_sweep(vaes, out_dir / "beta_sweep.png")
        written.append("beta_sweep.png")
    print(f"\n{table}\n\nwrote to {out_dir}/: " + ", ".join(written))


if __name__ == "__main__":
    cli.run(main)
