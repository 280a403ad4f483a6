"""compare_vae.py: the autoencoder and four VAEs on the same budget."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tools.parts import DOCS

KL_WEIGHTS = "(1e-6, 1e-5, 1e-4, 1e-3)"  # the comparison's VAEs


def measure(out_dir: Path, flags: dict) -> dict:
    import compare_vae

    shutil.rmtree(out_dir / "compare", ignore_errors=True)  # make_docs' own runs: each build starts them afresh
    compare_vae.main(["--kl_weights", KL_WEIGHTS, "--out_dir", str(out_dir / "compare")])
    shutil.copyfile(out_dir / "compare" / "samples.png", DOCS / "ae_vs_vae_samples.png")
    shutil.copyfile(out_dir / "compare" / "beta_sweep.png", DOCS / "beta_sweep.png")
    return {"kl_weights": KL_WEIGHTS, "results": json.loads((out_dir / "compare" / "comparison.json").read_text()),
            "table": (out_dir / "compare" / "comparison.md").read_text().strip()}  # compare_vae.py's own rendering
