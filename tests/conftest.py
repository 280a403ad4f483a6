"""Shared fixtures: the repo on sys.path, headless settings, and one tiny trained run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("MPLBACKEND", "Agg")

# Small enough to train in seconds, large enough for two batches and a validation split.
TINY = ["--n_frames", "96", "--img_size", "32", "--latent_dim", "4", "--batch_size", "16", "--epochs", "2",
        "--hidden_dims", "(8, 16, 16, 32, 32)"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: an end-to-end run in a subprocess (deselect with -m 'not slow')")


def run_main(capsys: pytest.CaptureFixture, main, *argv: str) -> SimpleNamespace:
    """A script's main(argv) through cli.run, in this process: exit code and output as a user sees them."""
    import cli

    capsys.readouterr()
    try:
        cli.run(main, list(argv))
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)


def train_config(**overrides) -> SimpleNamespace:
    """train_vae's constants as main() would see them, with `overrides` applied."""
    import cli  # here, not at the top: the repo must be on sys.path first
    import train_vae

    return cli.defaults(train_vae, **overrides)


class StopAfter:
    """Stands in for cli.StopRequests: reports a SIGTERM from the n-th check on."""

    name = "SIGTERM"

    def __init__(self, checks: int) -> None:
        self.checks = checks

    @property
    def signum(self) -> int:
        self.checks -= 1
        return signal.SIGTERM if self.checks < 0 else 0


def run_script(script: str, *args: str, cwd: Path | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run one of the repo's scripts as a user would, capturing its output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, str(REPO / script), *args],
        cwd=cwd or REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """OUT_DIR of one finished tiny training run, shared by the tests that only read it."""
    out_dir = tmp_path_factory.mktemp("tiny_run")
    result = run_script("train_vae.py", *TINY, "--out_dir", str(out_dir))
    assert result.returncode == 0, result.stderr
    return out_dir
