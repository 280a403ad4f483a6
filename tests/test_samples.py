"""Pictures a student would save: samples judged against frames the env draws, a prior fitted to where the
codes lie, and the homework's five activities as commands."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import REPO, TINY, assert_one_line, run_main, train_config
from PIL import Image

import sample_vae
from MyVAE import MyVAE
from tools import activities
from worldvae import collection, plausible, prior, readers
from worldvae.checkpoints import load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def cartpole_frames() -> dict[str, np.ndarray]:
    """Real CartPole frames of many episodes, at 32 px."""
    return collection.collect_frames(train_config(n_frames=900, img_size=32, n_envs=1))[0]


def _judge(frames: dict[str, np.ndarray]) -> dict[str, dict]:
    """Samples judged against a reference of half the episodes by a model that reconstructs perfectly,
    its samples being real frames of episodes the reference never saw, four of them over and over, or noise."""
    reference, rest = readers.split_by_episode(frames["episode"], 0.5, 0)
    others, unseen = readers.split_by_episode(frames["episode"][rest], 0.5, 1)
    as_float = torch.from_numpy(frames["frames"]).float() / 255
    real = as_float[rest][unseen]
    samplers = {"real": real, "few": real[torch.arange(len(real)) % 4], "noise": torch.rand_like(real)}
    return plausible.judge({name: samples.split(32) for name, samples in samplers.items()}, len(real),
                           as_float[rest][others].split(32), frames["frames"][reference],
                           frames["frames"][rest][others])


def test_samples_are_judged_both_ways_noise_real_frames_and_a_few_common_frames(cartpole_frames) -> None:
    judged = _judge(cartpole_frames)
    noise, real, few = (judged[sampler] for sampler in ("noise", "real", "few"))
    assert noise["implausible"] == 1.0 and noise["recall"] == 0.0
    assert real["implausible"] <= 0.15, "a perfect model: about 1 - QUANTILE"
    assert real["recall"] >= 0.8 * real["perfect_recall"] > 0, "real frames cover the reference as real frames do"
    assert few["implausible"] <= 0.15, "precision alone cannot tell a few common frames from a good sampler"
    assert few["recall"] < 0.5 * few["perfect_recall"], "recall can"
    assert few["samples"] == real["samples"] == noise["samples"] > 0


def test_a_mixture_fitted_to_codes_on_a_ring_draws_codes_on_the_ring_where_the_normal_prior_does_not() -> None:
    rng = np.random.default_rng(0)
    angle = rng.uniform(0, 2 * np.pi, 4000)
    codes = np.column_stack([2 * np.cos(angle), 2 * np.sin(angle), 0.01 * rng.normal(size=(4000, 2))])
    codes[:, :2] += 0.05 * rng.normal(size=(4000, 2))
    fitted = prior.fit_mixture(codes, seed=0)
    drawn = prior.draw_codes(fitted, 2000, 4, torch.Generator().manual_seed(0)).numpy()
    radius = np.hypot(drawn[:, 0], drawn[:, 1])
    assert ((radius > 1.7) & (radius < 2.3)).mean() > 0.97, "new codes where the codes lie"
    normal = prior.draw_codes(None, 2000, 4, torch.Generator().manual_seed(0)).numpy()
    assert ((np.hypot(normal[:, 0], normal[:, 1]) > 1.7) & (np.hypot(normal[:, 0], normal[:, 1]) < 2.3)).mean() < 0.3
    nearest = np.sqrt(((drawn[:, None, :] - codes[None, :, :]) ** 2).sum(-1)).min(1)
    assert nearest.min() > 1e-4, "a density: no draw is (within float error of) a stored code"
    assert len(np.unique(drawn, axis=0)) == len(drawn), "and no two draws are one"
    again = prior.draw_codes(fitted, 2000, 4, torch.Generator().manual_seed(0)).numpy()
    assert np.array_equal(drawn, again), "the same seed, the same codes"


def _description(path) -> str:
    with Image.open(path) as image:
        return image.text.get("Description", "")


@pytest.mark.slow
def test_training_stores_a_fitted_prior_and_sampling_draws_from_it_unless_told_normal(capsys, tiny_run,
                                                                                       tmp_path) -> None:
    checkpoint = load_checkpoint(tiny_run / "vae.pt")
    mixture = checkpoint["prior"]
    k = len(mixture["weights"])
    assert mixture["means"].shape == (k, 4) and mixture["scale_tril"].shape == (k, 4, 4)
    assert float(mixture["weights"].sum()) == pytest.approx(1.0, abs=1e-5)
    pictures = {}
    for name in ("auto", "normal"):
        result = run_main(capsys, sample_vae.main, "--checkpoint", str(tiny_run / "vae.pt"), "--n_samples", "3",
                          "--prior", name, "--out_dir", str(tmp_path / name))
        assert result.returncode == 0, result.stderr
        shown = prior.caption("fitted" if name == "auto" else "normal")
        assert shown in result.stdout and _description(tmp_path / name / "samples" / "sample_000.png") == shown
        with Image.open(tmp_path / name / "samples.png") as image:
            pictures[name] = np.asarray(image.convert("RGB"))
    assert pictures["auto"].shape == pictures["normal"].shape and not np.array_equal(*pictures.values())


def test_a_checkpoint_without_a_fitted_prior_samples_from_the_normal_one_and_refuses_to_pretend(capsys,
                                                                                               tmp_path) -> None:
    path = tmp_path / "vae.pt"
    save_checkpoint(path, MyVAE(img_size=32, latent_dim=4, hidden_dims=(8, 8, 16, 16, 32)))
    result = run_main(capsys, sample_vae.main, "--checkpoint", str(path), "--n_samples", "2", "--out_dir",
                      str(tmp_path / "auto"))
    assert result.returncode == 0 and prior.caption("normal") in result.stdout, result.stderr
    result = run_main(capsys, sample_vae.main, "--checkpoint", str(path), "--prior", "fitted", "--out_dir",
                      str(tmp_path / "fitted"))
    assert_one_line(result, "holds no fitted prior")
    assert not (tmp_path / "fitted").exists(), "refused before writing"


def test_the_homework_page_shows_each_activitys_commands() -> None:
    page = (REPO / "docs" / "homework.md").read_text()
    for activity in activities.listed():
        for command in activities.commands(activity, "outputs"):
            assert activities.shown(command) in page, command
    assert "(docs/homework.md)" in (REPO / "README.md").read_text().split("## Run")[0], "linked from the first screen"


@pytest.mark.slow
@pytest.mark.parametrize("activity", activities.listed(), ids=lambda a: f"activity{a.number}")
def test_every_activity_runs_at_tiny_sizes_and_saves_two_generated_images(capsys, tmp_path, activity) -> None:
    run = activities.run_activity(activity, tmp_path, TINY)
    saved = sorted((run / "samples").glob("sample_*.png"))
    assert [path.name for path in saved] == ["sample_000.png", "sample_001.png"]
    assert all(_description(path) == prior.caption("fitted") for path in saved)
    config = load_checkpoint(run / "vae.pt")["config"]
    flags = dict(zip(activity.train_flags[::2], activity.train_flags[1::2], strict=True))
    assert config["variational"] is (flags.get("--variational") != "False")
    assert config["env_id"] == flags.get("--env_id", "CartPole-v1")
