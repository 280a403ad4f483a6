"""evaluate_vae.py, the sampling modes and compare_vae.py: numbers that mean what they say."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import assert_grid, run_main
from PIL import Image

import compare_vae
import evaluate_vae
import sample_vae
from MyVAE import MyVAE
from worldvae import codes, collection, control, plausible, prior
from worldvae.codes import INTERPOLATION_STEPS, TRAVERSAL_VALUES, interpolation, traversal
from worldvae.heldout import heldout_frames

METRIC_KEYS = {
    "checkpoint", "variational", "kl_weight", "env_id", "frames_scored", "data", "mse", "psnr_db",
    "sample_nearest_mse_median", "sample_nearest_mse_p90", "kl_per_dim", "kl_total", "active_dims",
    "active_dims_by_variance", "dims_by_information", "probe_r2", "road_iou", "frames_showing_road",
    "sample_prior", "implausible_samples", "plausibility",
}


def test_probe_r2_is_near_one_for_a_linear_code_and_near_zero_for_noise() -> None:
    rng = np.random.default_rng(0)
    states = rng.normal(size=(600, 4))
    code = states @ rng.normal(size=(4, 6)) + 0.01 * rng.normal(size=(600, 6))  # linear in the state
    r2 = evaluate_vae.linear_probe(code[:400], states[:400], code[400:], states[400:])
    assert r2.shape == (4,) and (r2 > 0.99).all()
    noise = rng.normal(size=(600, 6))
    r2 = evaluate_vae.linear_probe(noise[:400], states[:400], noise[400:], states[400:])
    assert (np.abs(r2) < 0.1).all()


def test_nearest_frame_mse_matches_a_brute_force_search_in_batches(monkeypatch) -> None:
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (50, 3, 8, 8), dtype=np.uint8)
    samples = torch.from_numpy(rng.random((6, 3, 8, 8), dtype=np.float32))
    monkeypatch.setattr(codes, "FRAMES_PER_BATCH", 7)  # many batches, one of them short
    got = plausible.nearest_frame_mse(samples, real)
    as_float = torch.from_numpy(real).float() / 255
    brute = ((samples[:, None] - as_float[None]) ** 2).flatten(2).mean(2).min(1).values
    assert np.allclose(got, brute.numpy(), atol=1e-6)


def test_a_ghostly_sample_scores_clearly_worse_than_a_clean_one() -> None:
    from conftest import train_config


    real = collection.collect_frames(train_config(n_frames=200, img_size=32, n_envs=1))[0]["frames"]
    x = torch.from_numpy(real).float() / 255
    clean = (x[:20] + 0.003 * torch.randn_like(x[:20])).clamp(0, 1)  # real frames, barely perturbed
    ghost = 0.5 * (x[:20] + x[:20].roll(x.shape[-1] // 3, dims=-1))  # two faint carts a third of the frame apart
    clean_score = np.median(plausible.nearest_frame_mse(clean, real))
    ghost_score = np.median(plausible.nearest_frame_mse(ghost, real))
    assert ghost_score > 10 * clean_score


def test_traversal_and_interpolation_have_the_documented_size() -> None:
    model = MyVAE(latent_dim=3, img_size=32, hidden_dims=(8, 8, 16, 16, 32)).eval()
    sweep = traversal(model, [2, 0, 1])
    assert sweep.shape == (3 * len(TRAVERSAL_VALUES), 3, 32, 32)
    a, b = torch.rand(3, 32, 32), torch.rand(3, 32, 32)
    path = interpolation(model, a, b)
    assert path.shape == (INTERPOLATION_STEPS + 2, 3, 32, 32)
    assert torch.equal(path[0], a) and torch.equal(path[-1], b)
    assert 0.5 in np.linspace(0, 1, INTERPOLATION_STEPS), "the midpoint is drawn and labelled 0.5"
    # the middle column of a traversal is z = 0 for every row
    middle = sweep.view(3, len(TRAVERSAL_VALUES), 3, 32, 32)[:, len(TRAVERSAL_VALUES) // 2]
    assert torch.allclose(middle[0], middle[1]) and torch.allclose(middle[1], middle[2])


@pytest.mark.slow
def test_evaluate_runs_end_to_end_on_a_tiny_checkpoint(capsys, tiny_run, tmp_path) -> None:
    result = run_main(capsys, evaluate_vae.main, "--checkpoint", str(tiny_run / "vae.pt"), "--out_dir", str(tmp_path),
                      "--control_episodes", "2", "--control_frames", "100", "--plausibility_frames", "200",
                      "--quality_samples", "32")
    assert result.returncode == 0, result.stderr
    assert "linear probe" in result.stdout and "pole angle" in result.stdout
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics) == METRIC_KEYS | {"control"}, "CartPole's closed-loop check too"
    assert metrics["sample_prior"] == "fitted" and set(metrics["implausible_samples"]) == {"fitted", "normal"}
    for name, score in metrics["plausibility"].items():  # judged against one half of 200 fresh frames
        assert 0 <= score["implausible"] <= 1 and score["samples"] == 32 and 50 <= score["reference_frames"] <= 150
        assert f"implausible samples ({prior.caption(name)})" in result.stdout
    assert set(metrics["probe_r2"]) == {"cart position", "cart velocity", "pole angle", "pole angular velocity"}
    assert len(metrics["kl_per_dim"]) == 4 and metrics["kl_total"] == pytest.approx(sum(metrics["kl_per_dim"]))
    assert metrics["psnr_db"] == pytest.approx(10 * np.log10(1 / metrics["mse"]))
    assert 0 <= metrics["active_dims"] <= 4 and sorted(metrics["dims_by_information"]) == [0, 1, 2, 3]
    shown_rows = max(1, metrics["active_dims"])  # the active dimensions only (at least the most informative one)
    assert_grid(tmp_path / "traversal.png", shown_rows, len(TRAVERSAL_VALUES), 32, col_labels=True)
    assert_grid(tmp_path / "interpolation.png", 1, INTERPOLATION_STEPS + 2, 32, col_labels=True)
    assert_grid(tmp_path / "reconstructions.png", 2, 8, 32)
    assert_grid(tmp_path / "samples.png", 2, 8, 32)
    with Image.open(tmp_path / "latent_scatter.png") as scatter:
        assert scatter.size == (500, 420)


def test_evaluate_on_fresh_frames_collects_them_from_another_seed(tiny_run, tmp_path) -> None:
    metrics = evaluate_vae.evaluate(tiny_run / "vae.pt", tmp_path, fresh=100, control_episodes=2, control_frames=100,
                                    plausibility_frames=200)
    assert "100 fresh frames" in metrics["data"] and metrics["frames_scored"] == 100
    check = metrics["control"]  # CartPole's closed-loop check, beside the controllers on the true state
    assert check["episodes"] == 2
    assert all(c["true_state_mean_steps"] == 500 == c["true_state_worst_steps"] for c in check["combinations"])
    combinations = [(c["controller"], c["readout_degree"]) for c in check["combinations"]]
    degrees = [int(name.removeprefix("degree ")) for name in check["readout_r2"]]  # those the probe frames afford
    assert degrees == [1], "the tiny run's 100 probe frames afford no products of its 4-dimensional code"
    assert combinations == [(name, degree) for name in control.CONTROLLERS for degree in degrees]
    assert check["worst"] in check["combinations"], "the summary is one combination, named"
    assert 1 <= check["worst"]["worst_steps"] <= check["worst"]["mean_steps"] <= 500
    assert all(set(r2) == {"cart position", "pole angle"} for r2 in check["readout_r2"].values())
    summary = evaluate_vae.summary(metrics)
    assert "control check, 2 episodes of each fixed controller" in summary
    assert all(f"{name} on the degree-{degree} readout" in summary for name, degree in combinations)
    worst = check["worst"]
    assert (f"the worst combination, {worst['controller']} on the degree-{worst['readout_degree']} readout: mean "
            f"{worst['mean_steps']:.0f} steps, worst episode {worst['worst_steps']}") in summary


@pytest.mark.parametrize(
    ("flag", "name", "shape"),
    [
        ("--traverse", "traversal.png", (None, len(TRAVERSAL_VALUES), True)),
        ("--interpolate", "interpolation.png", (1, INTERPOLATION_STEPS + 2, True)),
        ("--reconstruct", "reconstructions_heldout.png", (2, 5, False)),
    ],
)
def test_sampling_modes_write_their_pictures(capsys, tiny_run, tmp_path, flag: str, name: str, shape) -> None:
    args = ["--checkpoint", str(tiny_run / "vae.pt"), "--n_samples", "5", "--out_dir", str(tmp_path), flag]
    result = run_main(capsys, sample_vae.main, *args)
    assert result.returncode == 0, result.stderr
    rows, cols, col_labels = shape
    if rows is None:  # the traversal: a row per active dimension, as evaluate_vae counts them on the same frames
        (tmp_path / "eval").mkdir()
        metrics = evaluate_vae.evaluate(tiny_run / "vae.pt", tmp_path / "eval", plausibility_frames=200)
        rows = max(1, metrics["active_dims"])
    assert_grid(tmp_path / name, rows, cols, 32, col_labels)
    assert not (tmp_path / "samples.png").exists(), "a mode replaces the random samples"


@pytest.mark.slow
def test_compare_trains_ae_and_vaes_on_the_same_budget_and_tabulates_them(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(evaluate_vae, "PLAUSIBILITY_FRAMES", 200)  # evaluate_vae.main's default, read per call
    args = ["--n_frames", "96", "--epochs", "1", "--kl_weights", "(1e-5, 1e-3)", "--out_dir", str(tmp_path)]
    result = run_main(capsys, compare_vae.main, *args)
    assert result.returncode == 0, result.stderr
    table = (tmp_path / "comparison.md").read_text().splitlines()
    assert [row.split("|")[1].strip() for row in table[2:]] == ["autoencoder", "vae_beta1e-05", "vae_beta0.001"]
    results = json.loads((tmp_path / "comparison.json").read_text())
    assert [r["variational"] for r in results] == [False, True, True]
    assert all(set(r["probe_r2"]) and r["mse"] > 0 for r in results)
    assert_grid(tmp_path / "samples.png", 3, 8, 64)
    assert (tmp_path / "beta_sweep.png").is_file()
    for name in ("autoencoder", "vae_beta1e-05", "vae_beta0.001"):
        assert (tmp_path / name / "vae.pt").is_file() and (tmp_path / name / "eval" / "metrics.json").is_file()


def test_the_control_check_tells_a_readout_that_knows_the_state_from_a_shuffled_one() -> None:
    """A fixed case, no model: the 'code' is the true (position, angle) plus noise; a readout fitted to
    the right labels balances the pole, one fitted to shuffled labels drops it."""
    rng = np.random.default_rng(0)
    states = rng.uniform((-2, -0.2), (2, 0.2), (2000, 2))
    codes = states + rng.normal(0, 0.005, states.shape)
    design = control.features(codes, 3)
    good = control.Readout.fit(design, states)
    shuffled = control.Readout.fit(design, states[rng.permutation(len(states))])
    assert good.r2(design, states).min() > 0.99 > shuffled.r2(design, states).max()

    def reading(readout):
        return lambda envs: readout(control.features(control.true_state(envs), 3))

    far = control.features(np.array([[40.0, -9.0]]), 3)  # a code unlike any the readout was fitted on
    assert np.all((good(far) >= states.min(0)) & (good(far) <= states.max(0))), "no estimate off the fitted range"
    on_good = control.closed_loop("CartPole-v1", reading(good), episodes=3, seed=0, max_steps=200)
    on_shuffled = control.closed_loop("CartPole-v1", reading(shuffled), episodes=3, seed=0, max_steps=200)
    assert min(on_good) == 200 and max(on_shuffled) < 100, (on_good, on_shuffled)
    for gains in control.CONTROLLERS.values():  # each controller balances all 500 steps from the true state
        assert control.closed_loop("CartPole-v1", control.true_state, episodes=3, seed=0, gains=gains) == [500] * 3


def test_the_worst_combination_is_one_combination_with_its_own_mean_and_worst_episode() -> None:
    def row(controller: str, degree: int, mean: float, worst: int) -> dict:
        return {"controller": controller, "readout_degree": degree, "mean_steps": mean, "worst_steps": worst}

    steady_but_short_once = row("lqr", 2, 480.0, 90)  # the shortest episode, but a high mean
    weak = row("pd", 3, 300.0, 150)  # the lowest mean
    combinations = [row("lqr", 3, 500.0, 500), steady_but_short_once, weak, row("pd", 2, 300.0, 200)]
    assert control.worst_combination(combinations) is weak, "lowest mean, then its shortest episode"


def test_the_readout_reads_back_a_state_of_up_to_the_third_degree_in_the_code() -> None:
    rng = np.random.default_rng(0)
    code = rng.normal(size=(500, 3))
    states = np.column_stack([code[:, 0] * code[:, 1] * code[:, 2], code[:, 1] ** 3 - code[:, 0]])
    design = control.features(code, 3)
    readout = control.Readout.fit(design, states)  # what the features can express, not generalization
    assert readout.r2(design, states).min() > 0.999
    assert design.shape == (500, 1 + 3 + 6 + 10), "a bias, the code, its 2- and 3-products"
    assert control.readout_degrees(10, 2000) == (2, 3) and control.readout_degrees(32, 4000) == (2,), \
        "the third degree only where the fit has four frames per feature"
    assert control.readout_degrees(32, 2000) == (1,), "a code too wide for any product's fit: its linear readout"


def test_the_linear_probe_is_fitted_on_the_fit_rows_alone() -> None:
    """Fitted on the test rows, a probe scores R^2 = 1 on any code; fitted on unrelated fit rows, it cannot."""
    rng = np.random.default_rng(0)
    z_test = rng.normal(size=(300, 4))
    y_test = z_test @ rng.normal(size=(4, 2))  # exactly linear on the test rows
    r2 = evaluate_vae.linear_probe(rng.normal(size=(300, 4)), rng.normal(size=(300, 2)), z_test, y_test)
    assert r2.max() < 0.5


def test_every_constant_evaluate_lists_reaches_the_scoring(monkeypatch, tiny_run, tmp_path) -> None:
    """--coverage_frames and its neighbours are read from the command line, not from the module's defaults."""
    seen = {}
    monkeypatch.setattr(evaluate_vae, "evaluate", lambda *args, **keywords: seen.update(keywords) or {})
    monkeypatch.setattr(evaluate_vae, "summary", lambda metrics: "")
    given = {"coverage_frames": 77, "plausibility_frames": 333, "control_frames": 222, "quality_samples": 11,
             "control_episodes": 3, "n_samples": 5, "seed": 9, "fresh": 60}
    evaluate_vae.main(["--checkpoint", str(tiny_run / "vae.pt"), "--out_dir", str(tmp_path),
                       *(part for name, value in given.items() for part in (f"--{name}", str(value)))])
    assert {name: seen.get(name) for name in given} == given, "each value reaches the keyword of its own name"


def test_scores_on_the_validation_episodes_say_those_frames_chose_the_checkpoint(tiny_run) -> None:
    from worldvae.checkpoints import load_checkpoint, run_config

    config = run_config(load_checkpoint(tiny_run / "vae.pt"), tiny_run / "vae.pt")
    assert "chose this checkpoint" in heldout_frames(config, beside=tiny_run).description
    assert "chose" not in heldout_frames(config, fresh=60, beside=tiny_run).description


def test_the_plausibility_line_is_set_by_reconstructions_of_frames_the_reference_does_not_hold(monkeypatch,
                                                                                               tiny_run) -> None:
    """A line set by reconstructions of the reference's own frames would sit near zero distance: a leak
    that makes every sample look implausible, or, read the other way, flatters a model that copies."""
    from worldvae.checkpoints import build_vae, load_checkpoint, run_config

    checkpoint = load_checkpoint(tiny_run / "vae.pt")
    model, config = build_vae(checkpoint), run_config(checkpoint, tiny_run / "vae.pt")
    reconstructed, judged, real_reconstruct, real_judge = [], {}, model.reconstruct, plausible.judge

    def reconstruct(batch: torch.Tensor) -> torch.Tensor:
        reconstructed.append((batch * 255).round().to(torch.uint8).flatten(1).numpy())
        return real_reconstruct(batch)

    def judge(samplers, n_samples, reconstructions, reference_u8, others_u8) -> dict:
        judged["reference"] = reference_u8
        return real_judge(samplers, n_samples, reconstructions, reference_u8, others_u8)

    frames = np.random.default_rng(0).integers(0, 256, (200, 3, 32, 32), dtype=np.uint8)  # each frame its own
    monkeypatch.setattr(evaluate_vae, "rendered_frames", lambda config, n: {"frames": frames[:n],
                                                                           "episode": np.arange(n) // 10})
    monkeypatch.setattr(model, "reconstruct", reconstruct)
    monkeypatch.setattr(plausible, "judge", judge)
    evaluate_vae.sample_scores(model, "normal", None, config, np.zeros((4, 3, 32, 32), np.uint8), "cpu",
                               n_samples=8, plausibility_frames=200, seed=0)
    reference = {frame.tobytes() for frame in judged["reference"].reshape(len(judged["reference"]), -1)}
    inputs = np.concatenate(reconstructed)
    assert len(inputs) >= 50 and len(reference) >= 50 and len(inputs) + len(reference) == len(frames)
    assert not any(frame.tobytes() in reference for frame in inputs), "no reference frame is reconstructed"
