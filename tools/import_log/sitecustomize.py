"""Started in every Python process of a docs part (make_docs puts this folder first on PYTHONPATH, and
Python imports `sitecustomize` at startup): at exit, the process writes the project's files it imported
to a file of its own in the folder $WORLDVAE_IMPORT_LOG names. The union is what the part's numbers
depend on, the processes it started (a bench's sides, the test suite the first hour times) included."""

import atexit
import os
import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]


def _write_imported(folder: str) -> None:
    imported = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and Path(path).resolve().is_relative_to(_REPO) and "site-packages" not in Path(path).parts:
            imported.add(Path(path).resolve().relative_to(_REPO).as_posix())
    Path(folder, f"{os.getpid()}.txt").write_text("".join(f"{name}\n" for name in sorted(imported)))


if os.environ.get("WORLDVAE_IMPORT_LOG"):
    atexit.register(_write_imported, os.environ["WORLDVAE_IMPORT_LOG"])
