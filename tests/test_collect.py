"""Frame collection: the two filters, orientation, other envs, workers and renderers."""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import REPO, same_dataset, train_config

import train_vae
from worldvae import collection, rendering
from worldvae.cli import UserError
from worldvae.collection import collect_frames
from worldvae.envs import knowledge, make_env
from worldvae.rendering import preprocess_frame

CARTPOLE_CROP = knowledge("CartPole-v1").crop


def collect(env_id: str = "CartPole-v1", n_frames: int = 150, angle_range=(-0.3, 0.3), **overrides) -> dict:
    cfg = train_config(env_id=env_id, n_frames=n_frames, angle_range=angle_range, img_size=32, **overrides)
    return collect_frames(cfg)[0]


@pytest.fixture(scope="module")
def narrow() -> dict:
    """CartPole frames kept by a range narrow enough to reject many observations."""
    return collect(angle_range=(-0.02, 0.05), n_frames=120)


def test_every_kept_frame_lies_inside_a_narrow_angle_range(narrow) -> None:
    angles = narrow["states"][:, 2]
    assert angles.min() >= -0.02 and angles.max() <= 0.05
    assert len(narrow["frames"]) == 120


def test_no_episode_contributes_more_than_reset_after_frames() -> None:
    data = collect(angle_range=None, reset_after=7, n_frames=300)  # two chunks
    _, counts = np.unique(data["episode"], return_counts=True)
    assert counts.max() <= 7
    assert data["step"].max() <= 6
    # every episode restarts from its reset: steps count 0, 1, 2, ... within an episode
    for episode in np.unique(data["episode"]):
        steps = data["step"][data["episode"] == episode]
        assert list(steps) == list(range(len(steps)))


def test_states_go_with_their_frames_and_episodes_are_reset_after_20(narrow) -> None:
    assert narrow["states"].dtype == np.float32 and narrow["states"].shape == (120, 4)
    assert narrow["step"].max() < 20
    assert narrow["frames"].dtype == np.uint8 and narrow["frames"].shape == (120, 3, 32, 32)


def test_no_blank_frames_are_stored(narrow) -> None:
    frames = narrow["frames"].reshape(len(narrow["frames"]), -1)
    assert (frames.min(axis=1) < 100).all(), "every CartPole frame shows the black cart"
    assert (frames.max(axis=1) > 200).all(), "every CartPole frame has its white background"


def test_same_seed_gives_the_same_frames() -> None:
    a, b = collect(n_frames=40), collect(n_frames=40)
    assert same_dataset(a, b)
    c = collect(n_frames=40, seed=1)
    assert not np.array_equal(a["states"], c["states"])


def _dark_centroid(frame: np.ndarray) -> tuple[float, float]:
    """(row, column) centre of the dark (cart) pixels of a (3, H, W) frame."""
    rows, cols = np.nonzero(frame.mean(axis=0) < 60)
    return rows.mean(), cols.mean()


def test_moving_the_cart_right_moves_its_pixels_right() -> None:
    env = make_env("CartPole-v1", seed=0)
    env.reset(seed=0)
    centres = []
    for x in (-1.0, 0.0, 1.0):
        env.unwrapped.state = np.array([x, 0.0, 0.0, 0.0])
        centres.append(_dark_centroid(preprocess_frame(env.render(), CARTPOLE_CROP, 64)))
    env.close()
    (row_l, col_l), (row_c, col_c), (row_r, col_r) = centres
    assert col_l < col_c - 5 < col_r - 10, "cart should move along the width axis"
    assert abs(row_l - row_r) < 1, "and stay on the same rows (no height/width swap)"
    assert row_c > 32, "the track is in the lower half of the cropped frame (not upside down)"


def test_pendulum_works_by_changing_env_id_alone() -> None:
    data = collect("Pendulum-v1", n_frames=30)
    angles = np.arctan2(data["states"][:, 1], data["states"][:, 0])
    assert np.abs(angles).max() <= 0.3
    assert data["states"].shape == (30, 3)
    assert data["frames"].reshape(30, -1).std(axis=1).min() > 0


def test_a_filter_that_keeps_nothing_says_which_filter_rejected_how_much() -> None:
    with pytest.raises(UserError, match=r"kept only 0 of 10 frames.*rejected 500 whose pole angle lay outside "
                                        r"ANGLE_RANGE=\(2.0, 3.0\)"):
        collect(angle_range=(2.0, 3.0), n_frames=10, max_steps_per_frame=50)


def test_unknown_env_id_suggests_close_names() -> None:
    with pytest.raises(UserError, match="did you mean CartPole-v1"):
        make_env("CartPole-v2", seed=0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"env_id": "MountainCar-v0", "angle_range": (-0.3, 0.3)}, "has no pole angle to filter on"),
        ({"angle_range": "(a, b)"}, r"ANGLE_RANGE must be \(low, high\)"),
        ({"angle_range": (0.3, -0.3)}, "low < high"),
        ({"crop": (0.4, 1.2, 0.0, 1.0)}, "CROP must be"),
        ({"crop": (0.5, 0.5, 0.0, 1.0)}, "CROP must be"),
        ({"n_frames": -5}, "N_FRAMES must be at least 1"),
        ({"img_size": 48}, "IMG_SIZE must be a power of two"),
        ({"reset_after": 400}, "RESET_AFTER=400 would keep more than 250 frames of an episode"),
        ({"val_fraction": 1.0}, "VAL_FRACTION"),
        ({"n_frames": 50, "batch_size": 100}, "smaller than BATCH_SIZE"),
    ],
)
def test_bad_constants_are_rejected_before_any_work(overrides: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        train_vae.validate_config(train_config(**overrides))


def test_each_env_has_its_own_angle_filter_and_the_summary_says_what_it_rejected(capsys) -> None:
    assert train_config(env_id="CartPole-v1", angle_range=None).angle_range == (-0.3, 0.3)
    assert train_config(env_id="CartPole-v1", angle_range="all").angle_range == "all"
    assert train_config(env_id="Pendulum-v1", angle_range=None).angle_range == "all"  # +-0.3: ~4% of random swings
    assert train_config(env_id="Acrobot-v1", angle_range=None).angle_range == "all"  # +-0.3: only hanging down
    data = collect("Pendulum-v1", n_frames=200, angle_range=None)
    angles = np.arctan2(data["states"][:, 1], data["states"][:, 0])
    assert np.abs(angles).max() > 1.0, "Pendulum's default keeps frames far from upright"
    stats = collection.CollectionStats(observations=100, episodes=5, kept=40, rejected_angle=60)
    narrow = train_config(angle_range=(-0.1, 0.1))
    assert "kept 40 (40%)" in stats.summary(narrow) and "reset after 20" in stats.summary(narrow)
    assert "rejected 60 whose pole angle lay outside ANGLE_RANGE=(-0.1, 0.1)" in stats.summary(narrow)
    assert "no angle filter" in stats.summary(train_config(angle_range="all"))


def test_envs_without_an_angle_work_with_angle_range_none() -> None:
    train_vae.validate_config(train_config(env_id="MountainCar-v0", angle_range=None))
    data = collect("MountainCar-v0", n_frames=10, angle_range=None)
    assert data["frames"].shape == (10, 3, 32, 32)


def test_an_env_that_cannot_render_rgb_array_is_refused() -> None:
    import gymnasium as gym

    class Blind(gym.Env):
        metadata = {"render_modes": []}
        observation_space = gym.spaces.Box(-1, 1, (1,))
        action_space = gym.spaces.Discrete(2)

        def __init__(self, render_mode: str | None = None) -> None:
            self.render_mode = render_mode

    gym.register("BlindTest-v0", entry_point=Blind)
    try:
        with pytest.raises(UserError, match="BlindTest-v0"):
            make_env("BlindTest-v0", seed=0)
    finally:
        gym.registry.pop("BlindTest-v0")


def test_the_dataset_does_not_depend_on_how_many_workers_collect_it() -> None:
    alone, _ = collect_frames(train_config(n_frames=600, img_size=32, n_envs=1))
    pooled, _ = collect_frames(train_config(n_frames=600, img_size=32, n_envs=2))
    assert same_dataset(alone, pooled)


@pytest.mark.parametrize("img_size", [32, 64, 128])
@pytest.mark.parametrize("crop", [None, (0.0, 1.0, 0.0, 1.0), (0.3, 0.9, 0.1, 0.8), (0.1234, 0.5678, 0.05, 0.9)])
def test_fast_cartpole_render_is_the_env_render_pixel_for_pixel(img_size: int, crop) -> None:
    env = make_env("CartPole-v1", seed=0)
    env.reset(seed=0)
    crop = crop or CARTPOLE_CROP
    rng = np.random.default_rng(0)
    for x, theta in zip(rng.uniform(-2.4, 2.4, 40), rng.uniform(-0.3, 0.3, 40), strict=True):
        env.unwrapped.state = np.array([x, 0.0, theta, 0.0])
        fast = rendering.render_cartpole(env, crop, img_size)
        full = preprocess_frame(env.render(), crop, img_size)
        assert fast.shape == full.shape == (3, img_size, img_size) and fast.dtype == np.uint8
        worst = np.abs(fast.astype(int) - full.astype(int)).max()
        assert worst == 0, f"at x={x:.2f}, theta={theta:.3f}: {worst} grey levels apart"
    env.close()


def test_fast_and_plain_collection_keep_the_same_states_and_frames() -> None:
    fast, _ = collect_frames(train_config(n_frames=100, img_size=32, fast_render=True))
    plain, _ = collect_frames(train_config(n_frames=100, img_size=32, fast_render=False))
    assert np.array_equal(fast["states"], plain["states"]) and np.array_equal(fast["frames"], plain["frames"])


def test_under_torchrun_each_process_collects_with_its_share_of_the_cores(monkeypatch) -> None:
    monkeypatch.setattr(collection.compute, "usable_cpus", lambda: 8)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert collection._cores_per_process() == 8
    for name, value in {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
                        "MASTER_ADDR": "localhost", "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(name, value)  # as torchrun --nnodes=2 --nproc_per_node=2 sets them
    assert collection._cores_per_process() == 4


def test_the_balancer_takes_the_cart_along_the_track_and_sways_the_pole() -> None:
    """Unlike the homework's random actions, whose 20-step episodes keep the cart within +-0.25."""
    data, _ = collect_frames(train_config(n_frames=500, img_size=32, policy="balancer", n_envs=1))
    cart, pole = data["states"][:, 0], data["states"][:, 2]
    assert np.abs(cart).max() > 0.5 and (np.abs(cart) > 0.25).mean() > 0.1, "the cart travels"
    assert np.abs(pole).max() > 0.1, "the pole sways"
    assert data["step"].max() > 100, "its episodes run until the env (or the chunk) ends them"
    random = collect_frames(train_config(n_frames=500, img_size=32, n_envs=1))[0]
    assert np.abs(random["states"][:, 0]).max() < 0.25 and random["step"].max() < 20, "as the homework"


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is a Linux call")
def test_n_envs_0_counts_the_cpus_this_process_may_use_not_the_machines(monkeypatch) -> None:
    allowed = os.sched_getaffinity(0)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    os.sched_setaffinity(0, {min(allowed)})  # as taskset or a container's cpuset would
    try:
        assert collection._cores_per_process() == 1
    finally:
        os.sched_setaffinity(0, allowed)


def test_the_homework_pages_narrow_range_run_prints_the_line_the_page_quotes() -> None:
    """docs/homework.md shows the angle filter at work with a command and the line it printed."""
    import shlex

    from worldvae import constants, envs

    page = (REPO / "docs" / "homework.md").read_text()
    command = page.split("shows the filter at work:\n\n```bash\n")[1].split("\n")[0]
    quoted = page.split("It printed:\n\n```text\n")[1].split("\n")[0]
    argv = shlex.split(command)
    assert argv[:2] == ["python", "train_vae.py"]
    cfg = constants.parse_config(train_vae.__name__, argv[2:])
    envs.resolve_env_defaults(cfg)
    _, stats = collection.collect_frames(cfg)
    assert quoted == f"collected {cfg.env_id}: {stats.summary(cfg)}"
    assert stats.rejected_angle > 0.2 * stats.observations, "the page's run is one where the filter does work"
