"""Tools for whoever maintains the repo: `bench.py` measures speed and quality per minute,
`make_docs.py` regenerates every picture and table the README and docs/ quote."""
