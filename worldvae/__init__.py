"""The library beneath the scripts, one job a module (docs/layout.md draws the rooms):
the command line (cli, constants, progress, files), the machine (compute, distributed),
envs and frames (envs, policies, rendering, collection), the data (dataset, store,
readers, heldout) and the model's outputs (checkpoints, resume, metrics, codes, latent,
road, pictures).

Scripts import this package and MyVAE.py; this package imports MyVAE.py and nothing else
of the repo's, each module only modules of a lower layer: imports point one way.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # the checkout: its scripts, docs/ and tests/
