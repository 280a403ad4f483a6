"""The parts of the docs build (tools/make_docs.py), one module each, so that a part's stamp names the
measuring code of that part alone: each module's `measure(out_dir, flags)` runs the project's own
commands and returns its measurements; tools/docs_parts.py runs one in a process of its own. The
scripts are imported inside `measure`, never at the top."""

from worldvae import REPO

DOCS, PRETRAINED = REPO / "docs", REPO / "pretrained"
