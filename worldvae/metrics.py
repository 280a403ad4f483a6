"""What a training run logs: the loss parts per epoch and every LOG_EVERY steps, as CSV and as curves."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from worldvae import files
from worldvae.pictures import plot_curves

LOSS_PARTS = ("loss", "recon", "kl")  # what MyVAE.loss returns, summed and logged
LOG_EVERY = 50  # steps between the points of the training loss in loss_curves.png and steps.csv


def write_metrics(history: list[dict], steps: list[dict], out_dir: Path) -> None:
    """metrics.csv (a row per epoch), steps.csv (the training loss every LOG_EVERY steps) and
    loss_curves.png from both: the training loss along the epochs, the validation loss after each."""
    for name, rows in (("metrics.csv", history), ("steps.csv", steps)):
        if rows:
            text = io.StringIO()
            writer = csv.DictWriter(text, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
            files.atomic_write(out_dir / name, lambda f, text=text: f.write(text.getvalue().encode()))

    def curves(part: str) -> dict[str, tuple[list[float], list[float]]]:
        epochs = [row["epoch"] for row in history]
        drawn = {"train (epoch mean)": (epochs, [row[f"train_{part}"] for row in history]),
                 "validation (as training: a sampled code)": (epochs, [row[f"val_{part}"] for row in history])}
        if steps and f"train_{part}" in steps[0]:
            drawn[f"train, mean of the last {LOG_EVERY} steps"] = (
                [row["epoch"] for row in steps], [row[f"train_{part}"] for row in steps])
        return drawn

    panels = {"reconstruction MSE per pixel": curves("recon")}
    if any(row["train_kl"] > 0 for row in history):  # an autoencoder has no KL term to plot
        panels["KL (nats per frame)"] = curves("kl")
    plot_curves(panels, out_dir / "loss_curves.png")


def print_run_summary(history: list[dict], seconds: float, out_dir: Path, store_folder: Path) -> None:
    """The run's closing lines: its time, its best epoch, and every file it left."""
    best = min(history, key=lambda row: row["val_loss"])
    print(f"done in {seconds:.0f}s; best validation loss {best['val_loss']:.5f} "
          f"(recon MSE {best['val_recon']:.5f}) at epoch {best['epoch']}")
    for name in ("vae.pt", "last.pt", "metrics.csv", "steps.csv", "loss_curves.png", "reconstructions.png",
                 "config.json"):
        if (out_dir / name).exists():
            print(f"  {out_dir / name}")
    print(f"  {store_folder}/")
