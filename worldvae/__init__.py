"""The library beneath the scripts: frames and envs, the store, training across processes,
the codes a model makes (and an env observed through them), CarRacing's road measure,
pictures, devices, checkpoints and the command-line contract.

Scripts import this package and MyVAE.py; this package imports MyVAE.py and nothing else
of the repo's: imports point one way, from the scripts down to the model.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # the checkout: its scripts, docs/ and tests/
