"""The homework's five activities as their commands run them, each scored on fresh frames; the two images
each saved go to docs/homework/."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tools.parts import DOCS


def measure(out_dir: Path, flags: dict) -> dict:
    import evaluate_vae
    from tools import activities as homework

    root = out_dir / "activities"
    shutil.rmtree(root, ignore_errors=True)  # make_docs' own runs: each build starts them afresh
    (DOCS / "homework").mkdir(exist_ok=True)
    rows = []
    for activity in homework.listed():
        run = homework.run_activity(activity, root)
        evaluate_vae.main(["--checkpoint", str(run / "vae.pt"), "--fresh", str(flags["fresh"]), "--out_dir",
                           str(run / "eval"), "--control_episodes", "0"])  # its table shows no control check
        for i in range(2):
            shutil.copyfile(run / "samples" / f"sample_{i:03d}.png",
                            DOCS / "homework" / f"activity{activity.number}_sample_{i}.png")
        rows.append({"number": activity.number, "title": activity.title,
                     "metrics": json.loads((run / "eval" / "metrics.json").read_text())})
    return {"fresh": flags["fresh"], "activities": rows}
