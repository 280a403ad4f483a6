"""tools/first_hour.py: the README's first commands timed idle and beside busy programs."""

from __future__ import annotations

from pathlib import Path


def measure(out_dir: Path, flags: dict) -> dict:
    from tools import first_hour

    return first_hour.main(["--out_dir", str(out_dir / "first_hour")])
