"""Beyond classic control: CarRacing and Atari frames, codes for the next stage, a rollout GIF."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from conftest import TINY, read_store, run_main, train_config

import encode_vae
import sample_vae
import train_vae
from vision import frames
from vision.checkpoints import load_checkpoint, load_vae

needs_box2d = pytest.mark.skipif(importlib.util.find_spec("Box2D") is None,
                                 reason="CarRacing needs gymnasium[box2d]: pip install -r requirements-envs.txt")
needs_ale = pytest.mark.skipif(importlib.util.find_spec("ale_py") is None,
                               reason="Atari needs ale-py: pip install -r requirements-envs.txt")


@pytest.mark.slow
@needs_box2d
def test_carracing_frames_are_the_cropped_observation_after_the_zoom_and_the_car_drives() -> None:
    cfg = train_config(env_id="CarRacing-v3", n_frames=40, n_envs=1, reset_after=70)
    data, stats = frames.collect_frames(cfg)
    assert data["frames"].shape == (40, 3, 64, 64) and data["states"].shape == (40, 0)
    assert data["step"].min() == 50 and stats.skipped_intro == 50 * stats.episodes  # the zoom-in is never kept
    assert data["action"].shape == (40, 3) and (data["action"][~data["done"], 1] >= 0.5).all()  # gas
    assert np.abs(np.diff(data["frames"].astype(int), axis=0)).mean() > 0.5, "the car moves"
    green = data["frames"][:, 1].mean() > data["frames"][:, 0].mean()
    assert green, "grass, not the black status bar, fills the cropped frame"


@pytest.mark.slow
@needs_ale
def test_atari_frames_record_discrete_actions() -> None:
    cfg = train_config(env_id="ALE/Pong-v5", n_frames=30, n_envs=1)
    data, _ = frames.collect_frames(cfg)
    assert data["frames"].shape == (30, 3, 64, 64) and data["states"].shape == (30, 0)
    taken = data["action"][~data["done"], 0]
    assert set(taken) <= set(range(6)) and data["frames"].std() > 0


@pytest.mark.parametrize(("env_id", "message"), [
    ("ALE/Pongg-v5", "did you mean ALE/Pong-v5"),
    ("ALE/Pong-v5", "needs ale-py: pip install -r requirements-envs.txt"),
])
def test_unknown_or_missing_atari_is_one_line(capsys, tmp_path, monkeypatch, env_id: str, message: str) -> None:
    if message.startswith("did you"):
        pytest.importorskip("ale_py", reason="suggestions come from ale-py's registry")
    else:
        monkeypatch.setitem(__import__("sys").modules, "ale_py", None)  # as if it were not installed
    result = run_main(capsys, train_vae.main, "--env_id", env_id, "--out_dir", str(tmp_path))
    assert result.returncode == 1 and message in result.stderr and len(result.stderr.splitlines()) == 1


def test_actions_rewards_and_episode_ends_line_up_with_the_frames() -> None:
    data, _ = frames.collect_frames(train_config(n_frames=400, n_envs=1, reset_after=7))  # two chunks
    for episode in np.unique(data["episode"]):
        rows = np.flatnonzero(data["episode"] == episode)
        assert data["done"][rows[-1]] and not data["done"][rows[:-1]].any(), "done marks the last frame only"
        assert np.isnan(data["action"][rows[-1]]).all() and not np.isnan(data["action"][rows[:-1]]).any()
        assert (data["reward"][rows[:-1]] == 1.0).all()  # CartPole pays 1 for every step it survives


@pytest.mark.slow
def test_codes_are_in_episode_order_and_decode_back_to_their_frames(capsys, tmp_path) -> None:
    two_shards = ["--n_frames", "500", "--shard_frames", "250"]
    assert run_main(capsys, train_vae.main, *TINY, *two_shards, "--out_dir", str(tmp_path)).returncode == 0
    out = tmp_path / "codes.npz"
    result = run_main(capsys, encode_vae.main, "--checkpoint", str(tmp_path / "vae.pt"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    codes = dict(np.load(out))
    cfg = train_config(n_frames=500, shard_frames=250, img_size=32)
    data = read_store(frames.open_store(cfg, tmp_path), 2)
    order = np.lexsort((data["step"], data["episode"]))
    for key in ("episode", "step", "action", "reward", "done"):
        assert np.array_equal(codes[key], data[key][order], equal_nan=True), key
    starts = codes["episode_start"]
    assert starts[0] == 0 and starts[-1] == len(codes["mu"]) and len(starts) == len(np.unique(codes["episode"])) + 1
    for e in range(len(starts) - 1):
        assert (codes["episode"][starts[e]:starts[e + 1]] == codes["episode"][starts[e]]).all()
        assert (np.diff(codes["step"][starts[e]:starts[e + 1]]) > 0).all()
    model = load_vae(tmp_path / "vae.pt")
    originals = torch.from_numpy(data["frames"][order]).float() / 255
    with torch.no_grad():  # each row's code decodes to exactly what the model makes of that row's frame
        assert torch.allclose(model.decode(torch.from_numpy(codes["mu"])), model.reconstruct(originals), atol=1e-5)


def test_the_rollout_gif_shows_a_heldout_episode_beside_its_reconstruction(capsys, tiny_run, tmp_path) -> None:
    from PIL import Image

    result = run_main(capsys, sample_vae.main, "--checkpoint", str(tiny_run / "vae.pt"), "--rollout",
                      "--out_dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    n_heldout = len(__import__("vision.frames", fromlist=["frames"]).heldout_frames(
        load_checkpoint(tiny_run / "vae.pt")["config"]).test["frames"])
    with Image.open(tmp_path / "rollout.gif") as gif:  # Pillow merges repeated frames, lengthening their time
        shown_ms = 0
        for index in range(gif.n_frames):
            gif.seek(index)
            shown_ms += gif.info["duration"]
        assert gif.is_animated and shown_ms == 100 * min(100, n_heldout), "the first 100 held-out frames, or all"
