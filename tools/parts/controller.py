"""The shipped CarRacing controller (pretrained/carracing_controller.json) on the held-out tracks beside a random
policy, and its drive drawn for the CarRacing page; no training (its record holds how it was trained)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tools.parts import DOCS, PRETRAINED


def measure(out_dir: Path, flags: dict) -> dict:
    from examples import carracing_controller

    run = out_dir / "controller"
    shutil.rmtree(run, ignore_errors=True)  # its evaluation and rollout are this build's, never an earlier one's
    evaluation = carracing_controller.main(["--evaluate", "True", "--out_dir", str(run)])
    carracing_controller.main(["--rollout", "True", "--out_dir", str(run)])
    shutil.copyfile(run / "rollout.gif", DOCS / "car_controller_rollout.gif")
    shipped = json.loads((PRETRAINED / "carracing_controller.json").read_text())
    return {"evaluation": evaluation, "hidden": shipped["hidden"], "training": shipped["training"],
            "shipped_bytes": (PRETRAINED / "carracing_controller.json").stat().st_size}
