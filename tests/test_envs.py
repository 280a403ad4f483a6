"""Beyond classic control: CarRacing and Atari frames, codes for the next stage, a rollout GIF."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import REPO, TINY, assert_one_line, read_store, run_main, train_config

import encode_vae
import sample_vae
import train_vae
from MyVAE import MyVAE
from worldvae import collection, dataset, envs, policies, rendering, road
from worldvae.checkpoints import load_checkpoint, load_vae
from worldvae.cli import UserError
from worldvae.heldout import heldout_frames
from worldvae.latent import LatentObservation

needs_box2d = pytest.mark.skipif(importlib.util.find_spec("Box2D") is None,
                                 reason="CarRacing needs gymnasium[box2d]: pip install -r requirements-envs.txt")
needs_ale = pytest.mark.skipif(importlib.util.find_spec("ale_py") is None,
                               reason="Atari needs ale-py: pip install -r requirements-envs.txt")


@pytest.mark.slow
@needs_box2d
def test_carracing_frames_are_the_cropped_observation_after_the_zoom_and_the_driver_keeps_the_road() -> None:
    cfg = train_config(env_id="CarRacing-v3", n_frames=250, n_envs=1, policy="driver")  # a whole episode
    data, stats = collection.collect_frames(cfg)
    assert data["frames"].shape == (250, 3, 64, 64) and data["states"].shape == (250, 0)
    assert data["step"].min() == 50 and stats.skipped_intro == 50 * stats.episodes  # the zoom-in is never kept
    assert data["action"].shape == (250, 3) and (np.abs(data["action"][~data["done"]]) <= 1).all()
    assert (road.road_mask(data["frames"]).mean((1, 2)) >= road.SHOWS_ROAD).all(), "the driver keeps to the road"
    assert np.abs(np.diff(data["frames"].astype(int), axis=0)).mean() > 0.5, "the car moves"
    green = data["frames"][:, 1].mean() > data["frames"][:, 0].mean()
    assert green, "grass, not the black status bar, fills the cropped frame"


@pytest.mark.slow
@needs_box2d
def test_the_brownian_driver_leaves_the_road_and_mixed_episodes_take_each_policy() -> None:
    cfg = train_config(env_id="CarRacing-v3", n_frames=250, n_envs=1, policy="brownian")
    frames = collection.collect_frames(cfg)[0]["frames"]
    assert (road.road_mask(frames).mean((1, 2)) < road.SHOWS_ROAD).sum() >= 10, "frames of grass alone"
    env = SimpleNamespace(action_space=gym.spaces.Box(-1, 1, (3,), seed=0))
    mixed = policies.make_policy("mixed")
    chosen = []
    for _ in range(600):
        mixed.start(env)
        chosen.append(mixed.current.name)
    shares = [chosen.count(name) / len(chosen) for name in ("driver", "brownian", "random")]
    assert np.allclose(shares, policies.Mixed.SHARES, atol=0.05), f"episodes of each policy: {shares}"


def test_each_carracing_episode_draws_its_driver_from_the_ranges_the_dataset_names() -> None:
    env = SimpleNamespace(action_space=gym.spaces.Box(-1, 1, (3,), seed=0))
    drivers = policies.make_policy("drivers")
    drawn = []
    for _ in range(500):
        drivers.start(env)
        drawn.append(drivers.steering)
    ranges = policies.Drivers.RANGES
    for name, (low, high) in ranges.items():
        values = np.array([getattr(s, name) for s in drawn if name != "follow" or s.follow])
        assert low <= values.min() and values.max() <= high and values.max() - values.min() > (high - low) / 2, name
    blind = np.mean([s.follow == 0 for s in drawn])
    assert abs(blind - policies.Drivers.BLIND) < 0.06, f"{blind:.0%} of the drivers drive blind"
    assert train_config(env_id="CarRacing-v3", policy=None).policy == "drivers", "CarRacing's own"
    cfg = train_config(env_id="CarRacing-v3")
    assert dataset.collection_settings(cfg)["policy_params"]["ranges"] == {k: list(v) for k, v in ranges.items()}
    before = dataset.dataset_dir("out", cfg)
    wider = {**ranges, "gas": (0.1, 1.0)}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(policies.Drivers, "RANGES", wider)
        assert dataset.dataset_dir("out", cfg) != before, "other ranges collect into another folder"


def test_the_held_out_drivers_lie_outside_the_ranges_training_draws_from() -> None:
    """Each held-out driver has some trait no training driver has: what it scores is generalization.
    Not top speed: no held-out driver goes faster than about 80 (on two tracks: jittery 77, racer 70,
    braker 27), well inside training's 30 .. 120, so their unlimited top speed is one a training driver
    can have; nor a blind driver's follow."""
    ranges = {trait: bounds for trait, bounds in policies.Drivers.RANGES.items() if trait != "top_speed"}
    for name, steering in policies.HELD_OUT.items():
        outside = [trait for trait, (low, high) in ranges.items()
                   if not low <= getattr(steering, trait) <= high and not (trait == "follow" and steering.follow == 0)]
        assert outside, f"{name} could be drawn in training"
        assert policies.make_policy(name).steering == steering


def test_the_fast_road_rotates_as_pygame_does_bit_for_bit() -> None:
    import pygame

    rng = np.random.default_rng(0)
    quarter_turns = [k * np.pi / 2 + d for k in range(-4, 5) for d in (0.0, 5e-7, -5e-7, 2e-6)]
    for angle in [*rng.uniform(-20, 20, 200), *quarter_turns]:
        points = rng.uniform(-500, 500, (3, 2))
        ours = rendering.rotate_like_pygame(points, float(angle))
        theirs = [tuple(pygame.math.Vector2(*point).rotate_rad(float(angle))) for point in points.tolist()]
        assert [tuple(row) for row in ours.tolist()] == theirs, f"angle {angle!r}"


@needs_box2d
def test_fast_render_draws_carracings_road_as_gymnasium_does_pixel_for_pixel() -> None:
    """Both envs driven alike through the zoom-in, at full gas with wandering steering, and onto a second
    track: every observation, and the rgb_array render, the same bytes."""
    plain, fast = (envs.make_env("CarRacing-v3", seed=0) for _ in range(2))
    crop = envs.knowledge("CarRacing-v3").crop
    rendering.frame_renderer(fast, crop, 64, fast=True)
    assert fast.unwrapped._render_road is not plain.unwrapped._render_road, "FAST_RENDER changed how the road is drawn"
    rng, steer = np.random.default_rng(0), 0.0
    for track in (1, 2):
        first = [env.reset(seed=track)[0] for env in (plain, fast)]
        assert np.array_equal(*first), f"track {track}, after reset"
        for step in range(60 if track == 1 else 5):
            steer = float(np.clip(0.9 * steer + rng.normal(0.0, 0.5), -1.0, 1.0))
            action = np.array([steer, 1.0, 0.0], dtype=np.float32)
            observations = [env.step(action)[0] for env in (plain, fast)]
            assert np.array_equal(*observations), f"track {track}, step {step}"
    assert np.array_equal(plain.render(), fast.render())

    class OwnRoad(type(plain.unwrapped)):
        def _render_road(self, zoom, translation, angle) -> None:
            pass  # a road of its own: none
    own = OwnRoad(render_mode="rgb_array")
    own.spec = plain.spec
    rendering.frame_renderer(own, crop, 64, fast=True)
    assert "_render_road" not in vars(own), "a class that draws its road its own way keeps it"


@pytest.mark.slow
@needs_ale
def test_atari_frames_record_discrete_actions() -> None:
    cfg = train_config(env_id="ALE/Pong-v5", n_frames=30, n_envs=1)
    data, _ = collection.collect_frames(cfg)
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
    assert_one_line(result, message)


def test_actions_rewards_and_episode_ends_line_up_with_the_frames() -> None:
    data, _ = collection.collect_frames(train_config(n_frames=400, n_envs=1, reset_after=7))  # two chunks
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
    data = read_store(dataset.open_store(cfg, tmp_path), 2)
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
    n_heldout = len(heldout_frames(load_checkpoint(tiny_run / "vae.pt")["config"]).test["frames"])
    with Image.open(tmp_path / "rollout.gif") as gif:  # Pillow merges repeated frames, lengthening their time
        shown_ms = 0
        for index in range(gif.n_frames):
            gif.seek(index)
            shown_ms += gif.info["duration"]
        assert gif.is_animated and shown_ms == 100 * min(100, n_heldout), "the first 100 held-out frames, or all"


# ---------------------------------------------------------------- the road measure, and latents as observations


def _road_frame(shift: int = 0) -> np.ndarray:
    """A hand-made 64x64 CarRacing-like frame: grass, a grey road band, red-and-white curbs, a red car."""
    frame = np.empty((3, 64, 64), np.uint8)
    frame[:] = np.array([102, 204, 102], np.uint8)[:, None, None]  # grass
    frame[:, :, 20 + shift:36 + shift] = 102  # road
    frame[:, 30:34, 19 + shift] = np.array([255, 0, 0], np.uint8)[:, None]  # a red curb
    frame[:, 34:38, 19 + shift] = 255  # a white curb
    frame[:, 50:56, 26 + shift:30 + shift] = np.array([204, 0, 0], np.uint8)[:, None, None]  # the car
    return frame


def test_the_road_rule_takes_grey_asphalt_only() -> None:
    mask = road.road_mask(_road_frame()[None])[0]
    assert mask[:, 21:35].mean() > 0.85 and not mask[:, :19].any() and not mask[:, 37:].any(), "grass is not road"
    assert not mask[30:38, 19].any() and not mask[50:56, 26:30].any(), "curbs and the car are not road"


def test_the_road_measure_tells_a_good_reconstruction_from_a_blurred_one() -> None:
    frames_u8 = np.stack([_road_frame(shift) for shift in (0, 8, 16, 24)])
    noise = np.random.default_rng(0).integers(-3, 4, frames_u8.shape)
    good = np.clip(frames_u8.astype(int) + noise, 0, 255).astype(np.uint8)
    blurred = frames_u8.astype(float)
    for _ in range(6):  # a box blur: the road's edges wash into the grass, as an MSE-only model's do
        blurred = (blurred + np.roll(blurred, 3, axis=3) + np.roll(blurred, -3, axis=3)) / 3
    assert np.nanmean(road.road_iou(frames_u8, good)) > 0.95
    assert np.nanmean(road.road_iou(frames_u8, blurred.round().astype(np.uint8))) < 0.7
    grass_only = np.broadcast_to(np.array([102, 204, 102], np.uint8)[None, :, None, None], (1, 3, 64, 64))
    assert np.isnan(road.road_iou(grass_only, grass_only)).all(), "a frame without road is not scored"


def _checkpoint_for(tmp_path, env_id: str, **config) -> str:
    from worldvae.checkpoints import save_checkpoint

    cfg = train_config(env_id=env_id, img_size=32, latent_dim=4, hidden_dims=(8, 16, 16, 32, 32), **config)
    model = MyVAE(latent_dim=4, img_size=32, hidden_dims=(8, 16, 16, 32, 32))  # as the config describes it
    path = tmp_path / "vae.pt"
    save_checkpoint(path, model, config=vars(cfg))
    return str(path)


@pytest.mark.slow
def test_the_wrappers_code_is_what_encode_vae_writes_for_the_same_frame(capsys, tmp_path) -> None:
    import gymnasium as gym

    assert run_main(capsys, train_vae.main, *TINY, "--out_dir", str(tmp_path)).returncode == 0
    assert run_main(capsys, encode_vae.main, "--checkpoint", str(tmp_path / "vae.pt")).returncode == 0
    codes = np.load(tmp_path / "codes.npz")
    env = LatentObservation(gym.make("CartPole-v1", render_mode="rgb_array"), tmp_path / "vae.pt")
    z, _ = env.reset(seed=collection.chunk_seed(0, 0))  # the first episode of the first collection chunk
    first = np.flatnonzero((codes["episode"] == 0) & (codes["step"] == 0))[0]
    assert z.shape == (4,) and z.dtype == np.float32 and env.observation_space.contains(z)
    assert np.allclose(z, codes["mu"][first], atol=1e-5), "the same frame, the same code"
    both = LatentObservation(gym.make("CartPole-v1", render_mode="rgb_array"), tmp_path / "vae.pt", code="mu_log_var")
    z2, _ = both.reset(seed=collection.chunk_seed(0, 0))
    assert z2.shape == (8,) and np.allclose(z2[4:], codes["log_var"][first], atol=1e-5)


@pytest.mark.filterwarnings("ignore:.*different from the unwrapped version")  # the checker's note on wrappers
def test_gymnasiums_checker_accepts_the_wrapped_env_and_another_envs_checkpoint_is_refused(tmp_path) -> None:
    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env

    path = _checkpoint_for(tmp_path, "CartPole-v1")
    env = LatentObservation(gym.make("CartPole-v1", render_mode="rgb_array"), path)
    # spaces, reset and step, seeding, and rebuilding the wrapped env from its spec; not the pass that remakes it in
    # every render mode: a classic-control env's frames are rgb_array renders, so "human" is refused by design
    check_env(env, skip_render_check=True)
    env.reset(seed=0)
    for _ in range(3):
        z, *_ = env.step(env.action_space.sample())
        assert env.observation_space.contains(z)
    with pytest.raises(UserError, match="was trained on CartPole-v1 frames, not Pendulum-v1's"):
        LatentObservation(gym.make("Pendulum-v1", render_mode="rgb_array"), path)
    with pytest.raises(UserError, match='render_mode="rgb_array"'):
        LatentObservation(gym.make("CartPole-v1"), path)


@needs_box2d
@pytest.mark.filterwarnings("ignore:.*different from the unwrapped version")
def test_an_env_that_observes_images_is_encoded_from_its_observation_cropped_as_in_training(tmp_path) -> None:
    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env

    from worldvae.compute import to_unit_float

    path = _checkpoint_for(tmp_path, "CarRacing-v3")
    env = LatentObservation(gym.make("CarRacing-v3"), path)
    observation, _ = env.env.reset(seed=3)
    frame = rendering.preprocess_frame(observation, envs.knowledge("CarRacing-v3").crop, 32)
    expected = env.model(to_unit_float(torch.from_numpy(frame.copy()[None]))).mu[0].detach().numpy()
    assert np.allclose(env.observation(observation), expected, atol=1e-6)
    check_env(env, skip_render_check=True)


_VECTOR_PROBE = """
import sys
sys.path.insert(0, {repo!r})
import gymnasium as gym, numpy as np, torch
from worldvae.latent import LatentObservation

def make():
    return LatentObservation(gym.make("CartPole-v1", render_mode="rgb_array"), {checkpoint!r})

if __name__ == "__main__":
    torch.set_num_threads(2)
    torch.ones(512, 512) @ torch.ones(512, 512)  # the parent has started torch's thread pool before the workers fork
    runs = {{"sync": gym.vector.SyncVectorEnv([make, make]),
             "fork": gym.vector.AsyncVectorEnv([make, make], context="fork"),
             "spawn": gym.vector.AsyncVectorEnv([make, make], context="spawn"),
             "make_vec": gym.make_vec("CartPole-v1", 2, "async", render_mode="rgb_array",
                                      wrappers=[lambda env: LatentObservation(env, {checkpoint!r})])}}
    codes = {{}}
    for name, envs in runs.items():
        first, _ = envs.reset(seed=0)
        after, *_ = envs.step(np.array([1, 0]))
        codes[name] = np.concatenate([first, after])
        envs.close()
    assert all(np.allclose(codes["sync"], c, atol=1e-5) for c in codes.values()), codes
    print("same codes from", ", ".join(codes), codes["sync"].shape)
"""


@pytest.mark.slow
def test_the_wrapper_runs_in_real_vector_envs_forked_spawned_and_made_by_make_vec(tmp_path, tiny_run) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(_VECTOR_PROBE.format(repo=str(REPO), checkpoint=str(tiny_run / "vae.pt")))
    env = {**os.environ, "OMP_NUM_THREADS": "2"}  # a pool of two, as a laptop's default has (the suite sets 1)
    result = subprocess.run([sys.executable, str(probe)], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "same codes from sync, fork, spawn, make_vec (4, 4)" in result.stdout


def test_the_docs_agent_runs_from_a_folder_outside_the_checkout(tmp_path, tiny_run) -> None:
    """After the README's install (`pip install -e .`), a controller's own project imports the library."""
    page = (REPO / "docs" / "carracing-atari.md").read_text()
    agent = page.split("A random agent on codes:\n\n```python\n")[1].split("```")[0]
    agent = agent.replace('gym.make("CarRacing-v3")', 'gym.make("CartPole-v1", render_mode="rgb_array")').replace(
        "outputs/car/vae.pt", str(tiny_run / "vae.pt"))  # the tiny run's checkpoint, a CartPole one
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", agent + "\nprint(z.shape)"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-1500:]
    assert result.stdout.strip() == "(4,)"


def test_the_wrapper_draws_the_frame_with_the_runs_own_crop(tmp_path) -> None:
    crop = (0.2, 0.9, 0.1, 0.9)
    env = LatentObservation(gym.make("CartPole-v1", render_mode="rgb_array"),
                            _checkpoint_for(tmp_path, "CartPole-v1", crop=crop))
    cfg = train_config(img_size=32, crop=crop, n_envs=1)
    data, _ = collection.collect_chunk(cfg, 0, 5)
    obs, _ = env.reset(seed=0)
    env.unwrapped.state = data["states"][0].astype(np.float64)
    assert np.array_equal(env.frame(obs), data["frames"][0]), "as the training frame of that state was drawn"
    default = collection.collect_chunk(train_config(img_size=32, n_envs=1), 0, 1)[0]["frames"][0]
    assert not np.array_equal(env.frame(obs), default)


@pytest.mark.slow
@needs_box2d
def test_a_carracing_model_is_scored_on_the_frames_of_every_policy(tmp_path) -> None:
    """An untrained decoder paints every pixel mid-grey, which is road: a phantom road on every road-free frame."""
    import evaluate_vae

    checkpoint = load_checkpoint(_checkpoint_for(tmp_path, "CarRacing-v3", n_envs=1))
    scores = evaluate_vae.road_by_policy(load_vae(tmp_path / "vae.pt"), checkpoint["config"], torch.device("cpu"), 40)
    assert list(scores) == ["driver", "brownian", "random", *policies.HELD_OUT], "the fixed drivers, then the held-out"
    for score in scores.values():
        assert score["frames"] == 40 and score["mse"] > 0 and (score["road_iou"] is None or 0 <= score["road_iou"] <= 1)
        assert score["phantom_road_rate"] in (None, 1.0)
    summary = evaluate_vae.summary(
        {"variational": True, "checkpoint": "c", "frames_scored": 1, "env_id": "CarRacing-v3", "data": "d",
         "mse": 0.1, "psnr_db": 10.0, "sample_nearest_mse_median": 0.1, "sample_nearest_mse_p90": 0.1,
         "sample_prior": "normal", "plausibility": {},
         "kl_per_dim": [0.1], "active_dims": 1, "road_iou": None, "probe_r2": {}, "by_policy": scores})
    assert "fresh frames of the brownian policy" in summary and "no state vector" in summary


@pytest.mark.parametrize(("name", "env_id"), [("cartpole", "CartPole-v1"), ("cartpole_control", "CartPole-v1"),
                                              ("carracing", "CarRacing-v3")])
def test_the_pretrained_vision_stages_work_right_after_install(capsys, tmp_path, name: str, env_id: str) -> None:
    """Written by tools/make_docs.py from the runs its tables quote; small, and usable before any training."""
    path = REPO / "pretrained" / f"{name}.pt"
    assert path.stat().st_size < 8e6, "a few MB: float16 weights"
    checkpoint = load_checkpoint(path)
    assert checkpoint["config"]["env_id"] == env_id and "mse" in checkpoint["scores"]
    result = run_main(capsys, sample_vae.main, "--checkpoint", str(path), "--n_samples", "4",
                      "--out_dir", str(tmp_path))
    assert result.returncode == 0 and (tmp_path / "samples.png").exists(), result.stderr
    if env_id == "CarRacing-v3" and importlib.util.find_spec("Box2D") is None:
        pytest.skip("the wrapper part needs gymnasium[box2d]: pip install -r requirements-envs.txt")
    render = {} if env_id == "CarRacing-v3" else {"render_mode": "rgb_array"}
    env = LatentObservation(gym.make(env_id, **render), path, device="cpu")
    z, _ = env.reset(seed=0)
    assert z.shape == (checkpoint["model_args"]["latent_dim"],) and np.isfinite(z).all()


def test_the_wrapper_only_encodes_and_refuses_a_variance_an_autoencoder_does_not_have(tmp_path, monkeypatch) -> None:
    import gymnasium as gym

    from worldvae.checkpoints import save_checkpoint

    env = LatentObservation(gym.make("CartPole-v1", render_mode="rgb_array"), _checkpoint_for(tmp_path, "CartPole-v1"))

    def no_decoding(*_args):
        raise AssertionError("an observation decoded its code")

    monkeypatch.setattr(env.model, "decode", no_decoding)
    z, _ = env.reset(seed=0)
    assert z.shape == (4,)
    ae_dir = tmp_path / "ae"
    ae_dir.mkdir()
    config = vars(train_config(img_size=32, latent_dim=4, hidden_dims=(8, 16, 16, 32, 32), variational=False))
    save_checkpoint(ae_dir / "vae.pt", MyVAE(latent_dim=4, img_size=32, hidden_dims=(8, 16, 16, 32, 32),
                                             variational=False), config=config)
    with pytest.raises(UserError, match="an autoencoder, whose code has no variance"):
        LatentObservation(gym.make("CartPole-v1", render_mode="rgb_array"), ae_dir / "vae.pt", code="mu_log_var")
    plain = LatentObservation(gym.make("CartPole-v1", render_mode="rgb_array"), ae_dir / "vae.pt")
    assert plain.reset(seed=0)[0].shape == (4,)


def test_an_autoencoders_codes_carry_no_variance_into_codes_npz(capsys, tmp_path) -> None:
    assert run_main(capsys, train_vae.main, *TINY, "--variational", "False", "--out_dir", str(tmp_path)).returncode == 0
    assert run_main(capsys, encode_vae.main, "--checkpoint", str(tmp_path / "vae.pt")).returncode == 0
    with np.load(tmp_path / "codes.npz") as codes:
        assert "mu" in codes and "log_var" not in codes, "no unit variance that a memory stage would sample from"
