"""Shared fixtures: the repo on sys.path, headless settings, and one tiny trained run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: its scripts and the library
from worldvae import REPO  # noqa: E402

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("MPLBACKEND", "Agg")
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:  # under pytest -n: each worker its share of the cores, or they thrash
    _cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    _share = max(1, _cpus // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ["OMP_NUM_THREADS"] = str(_share)  # for this worker's torch and the scripts it runs

# Small enough to train in seconds, large enough for two batches and a validation split.
TINY_CONFIG = {"n_frames": 96, "img_size": 32, "latent_dim": 4, "batch_size": 16, "epochs": 2,
               "hidden_dims": (8, 16, 16, 32, 32)}
TINY = [arg for name, value in TINY_CONFIG.items() for arg in (f"--{name}", str(value))]  # the same, as flags


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: an end-to-end run, most in a subprocess (deselect with -m 'not slow')")
    config.addinivalue_line("filterwarnings", "ignore:builtin type Swig:DeprecationWarning")  # Box2D's bindings


def run_main(capsys: pytest.CaptureFixture, main, *argv: str) -> SimpleNamespace:
    """A script's main(argv) through cli.run, in this process: exit code and output as a user sees them."""
    from worldvae import cli

    capsys.readouterr()
    try:
        cli.run(main, list(argv))
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)


def assert_grid(path: Path, rows: int, cols: int, side: int, col_labels: bool = False) -> None:
    """The PNG at `path` is a labelled grid of rows x cols tiles of side x side frames, upscaled to >= 128 px."""
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
    tile = side * -(-128 // side) + 2
    line = 14 + 6  # pictures._FONT_SIZE + spacing: one line for the title, one for column labels
    assert height == line * (1 + col_labels) + 2 + rows * tile + 4, f"{path.name}: height {height}"
    assert 2 + cols * tile <= width <= 2 + cols * tile + 250, f"{path.name}: width {width}"


def same_dataset(a: dict, b: dict) -> bool:
    """Two datasets hold the same arrays (NaN, as in an episode's last action, equal to NaN)."""
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f") for k in a)


def train_config(**overrides) -> SimpleNamespace:
    """train_vae's constants as main() would see them, with `overrides` applied."""
    import torch

    import train_vae
    from worldvae import constants, envs  # here, not at the top: the repo must be on sys.path first
    from worldvae.compute import auto_batch_size

    cfg = constants.defaults(train_vae, **overrides)
    if cfg.batch_size is None:
        cfg.batch_size = auto_batch_size(torch.device("cpu"))
    envs.resolve_env_defaults(cfg)
    return cfg


def tiny_source(cfg: SimpleNamespace, out_dir: Path, in_ram_bytes: int = 2**30):
    """What train_vae.train reads: the run's frames, collected into a store in out_dir (or reused)."""
    from worldvae import dataset, readers

    frame_store, shards = dataset.load_or_collect(cfg, out_dir, StopAfter(10**9))
    return readers.open_frames(frame_store, shards, cfg.val_fraction, cfg.seed, in_ram_bytes)


def tiny(tmp_path: Path, in_ram_bytes: int = 2**30, **overrides) -> tuple:
    """The tiny run's constants (collecting in this process) with `overrides`, and what training reads."""
    cfg = train_config(**(TINY_CONFIG | {"out_dir": str(tmp_path), "n_envs": 1} | overrides))
    return cfg, tiny_source(cfg, tmp_path, in_ram_bytes)


def assert_one_line(result: SimpleNamespace | subprocess.CompletedProcess, message: str) -> None:
    """A refusal as users should see it: a non-zero exit, no traceback, one line on standard error naming `message`."""
    assert result.returncode not in (0, None), result.stdout
    assert "Traceback" not in result.stderr and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def read_store(frame_store, n_shards: int) -> dict[str, np.ndarray]:
    """Shards 0 .. n_shards - 1 of a store, concatenated in shard order: the whole dataset."""
    from worldvae import store

    return {key: np.concatenate([frame_store.read(i)[key] for i in range(n_shards)]) for key in store.ARRAYS}


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
    """OUT_DIR of one finished tiny training run (in this process), shared by the tests that only read it."""
    import train_vae

    out_dir = tmp_path_factory.mktemp("tiny_run")
    train_vae.main([*TINY, "--out_dir", str(out_dir)])
    return out_dir


def fingerprint(folder: Path) -> dict[str, str]:
    """Every regular file under `folder` by relative name, with the sha256 of its bytes: what a loss would change."""
    import hashlib

    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file() and not path.name.startswith(".")}
