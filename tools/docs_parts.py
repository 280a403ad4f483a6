"""The measuring half of `tools/make_docs.py`: one part of the docs build, in a process of its own.

    python -m tools.docs_parts PART OUT_DIR FLAGS    # make_docs runs this; FLAGS is a JSON object

PART names a module of tools/parts/, whose `measure` runs the project's own commands (train, evaluate,
sample, the benches), copies the pictures the pages show to docs/, ships the checkpoints the tables
quote to pretrained/, and returns its measurements. This writes them, as JSON, for make_docs, which
stamps them with the project files this process and those it started imported (tools/import_log/)
and renders the tables from them: a table's wording changes without measuring again, and a change to
one part's measuring code changes no other part's stamp.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: its scripts and the library
from tools.parts import DOCS, PRETRAINED  # noqa: E402
from worldvae import REPO, cli, compute, files  # noqa: E402


def measured_path(out_dir: Path, part: str) -> Path:
    """Where the part's process leaves its measurements for make_docs, which stamps them."""
    return out_dir / "parts" / f"{part}.measured.json"


def main(argv: list[str]) -> None:
    part, out_dir, flags = argv[0], Path(argv[1]), json.loads(argv[2])
    known = sorted(p.stem for p in (REPO / "tools" / "parts").glob("*.py") if p.stem not in ("__init__", "runs"))
    cli.require(part in known, f"PART must be one of {', '.join(known)}, got {part!r}")
    measure = importlib.import_module(f"tools.parts.{part}").measure
    for directory in (DOCS, PRETRAINED, out_dir / "parts"):
        directory.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    measurements = measure(out_dir, flags)
    measured = {"part": part, "flags": flags, "minutes": (time.perf_counter() - start) / 60,
                "machine": compute.machine(), "date": time.strftime("%Y-%m-%d"), "measurements": measurements}
    text = json.dumps(files.json_safe(measured), indent=2)
    files.atomic_write(measured_path(out_dir, part), lambda f: f.write(text.encode()))


if __name__ == "__main__":
    cli.run(main, sys.argv[1:])
