"""The README's promises about training and evaluation, each with a test that fails when it breaks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import StopAfter, read_store, tiny, train_config

import train_vae
from worldvae import codes, collection, dataset, files, metrics, readers, rendering
from worldvae.checkpoints import load_checkpoint
from worldvae.codes import code_variance, mean_kl, ranked_dims
from worldvae.compute import Compute
from worldvae.heldout import fresh_seed, heldout_frames

CPU = Compute.choose("cpu", "fp32", False, "off")


@pytest.mark.slow
def test_vae_pt_is_written_only_when_validation_improves(tmp_path, monkeypatch) -> None:
    cfg, source = tiny(tmp_path, epochs=3)
    val_losses = iter([0.5, 0.9, 0.7])  # best at epoch 1; epochs 2 and 3 are worse
    real_evaluate = train_vae.validation_loss

    def scripted(*args, **kwargs):
        parts = real_evaluate(*args, **kwargs)
        return parts | {"loss": next(val_losses)}

    monkeypatch.setattr(train_vae, "validation_loss", scripted)
    history = train_vae.train(cfg, source, tmp_path, CPU, StopAfter(999))
    assert [row["epoch"] for row in history] == [1, 2, 3]
    best = load_checkpoint(tmp_path / "vae.pt")
    assert best["epoch"] == 1 and len(best["metrics"]) == 1
    assert load_checkpoint(tmp_path / "last.pt")["progress"]["epoch"] == 4


def test_latent_dimensions_are_ordered_most_informative_first() -> None:
    mu = torch.zeros(50, 4)
    mu[:, 1] = torch.linspace(-3, 3, 50)  # dimension 1 carries the most
    mu[:, 3] = torch.linspace(-1, 1, 50)  # then dimension 3
    log_var = torch.zeros(50, 4)
    log_var[:, 1] = log_var[:, 3] = -4.0  # and is precise
    assert ranked_dims(mean_kl(mu.numpy(), log_var.numpy()))[:2] == [1, 3]
    assert ranked_dims(code_variance(mu.numpy()))[:2] == [1, 3]  # an autoencoder: by spread


def test_the_traversal_shows_the_active_dimensions_and_counts_the_rest() -> None:
    from MyVAE import MyVAE

    model = MyVAE(latent_dim=4, img_size=32, hidden_dims=(8, 16, 16, 32, 32))
    mu, log_var = np.zeros((50, 4), np.float32), np.zeros((50, 4), np.float32)
    mu[:, 3], mu[:, 1] = np.linspace(-3, 3, 50), np.linspace(-1, 1, 50)  # 3 carries the most, then 1
    decoded, labels, values, left_out, where = codes.traversal_rows(model, mu, log_var)
    assert [label.split(",")[0] for label in labels] == ["z[3]", "z[1]"] and left_out == 2
    assert decoded.shape == (2 * len(values), 3, 32, 32) and where == "the others at 0"


def test_an_autoencoders_traversal_sweeps_where_its_codes_lie_not_around_zero() -> None:
    """Its codes need not come near 0: the sweep is centred on their mean, in steps of their spread."""
    from MyVAE import MyVAE

    model = MyVAE(latent_dim=3, img_size=32, hidden_dims=(8, 16, 16, 32, 32), variational=False).eval()
    rng = np.random.default_rng(0)
    mu = (np.array([40.0, -25.0, 7.0]) + rng.normal(size=(200, 3)) * np.array([2.0, 0.5, 1e-3])).astype(np.float32)
    decoded, labels, values, _, where = codes.traversal_rows(model, mu, np.zeros_like(mu))
    assert "standard deviations" in where and [label.split(",")[0] for label in labels] == ["z[0]", "z[1]"]
    middle = len(values) // 2
    at_mean = model.decode(torch.from_numpy(mu.mean(0, keepdims=True)))
    assert torch.allclose(decoded[middle], at_mean[0], atol=1e-5), "the middle column decodes the codes' mean"
    step = model.decode(torch.from_numpy(mu.mean(0, keepdims=True) + np.array([[values[-1] * mu[:, 0].std(), 0, 0]],
                                                                                np.float32)))
    assert torch.allclose(decoded[len(values) - 1], step[0], atol=1e-5), "the last column: the mean + 3 sd"


def test_every_shard_splits_its_episodes_with_its_own_seed() -> None:
    episodes = np.repeat(np.arange(40), 10)  # two shards laid out alike still split differently
    assert not np.array_equal(readers.split_shard(episodes, 0, 0.1, 0)[1], readers.split_shard(episodes, 1, 0.1, 0)[1])
    assert np.array_equal(readers.split_shard(episodes, 1, 0.1, 0)[1], readers.split_shard(episodes, 1, 0.1, 0)[1])


def test_pictures_of_held_out_frames_show_different_episodes_at_different_points() -> None:
    episodes, steps = np.repeat(np.arange(30), 20), np.tile(np.arange(20), 30)
    picked = readers.spread_frames(episodes, steps, 8)
    assert len(set(episodes[picked])) == 8, "each frame from another episode"
    assert len(set(steps[picked])) >= 6 and steps[picked].min() == 0 and steps[picked].max() == 19
    one_long = readers.spread_frames(np.zeros(300, int), np.arange(300), 8)  # one episode: spread over its time
    assert len(set(one_long)) == 8 and one_long.max() - one_long.min() >= 250


def test_the_validation_split_holds_whole_episodes_only() -> None:
    episodes = np.repeat(np.arange(40), 10)
    train_idx, val_idx = readers.split_by_episode(episodes, 0.1, seed=0)
    assert set(episodes[train_idx]).isdisjoint(episodes[val_idx])
    assert len(train_idx) + len(val_idx) == len(episodes)
    assert 0.05 <= len(val_idx) / len(episodes) <= 0.2
    for episode in set(episodes[val_idx]):
        assert (episodes[val_idx] == episode).sum() == 10, "an episode is split across both sides"


def test_fresh_frames_come_from_another_seed_and_none_was_trained_on(tmp_path) -> None:
    cfg, _ = tiny(tmp_path)
    data = read_store(dataset.open_store(cfg, tmp_path), 1)
    held = heldout_frames(vars(cfg), fresh=60)
    assert fresh_seed(cfg.seed) != cfg.seed and f"seed {fresh_seed(cfg.seed)}" in held.description
    assert len(held.test["frames"]) == 60
    trained = {row.tobytes() for row in data["states"]}
    assert not any(row.tobytes() in trained for row in held.test["states"])
    own = heldout_frames(vars(cfg))  # without fresh: the run's own validation episodes
    assert set(own.test["episode"]).isdisjoint(own.fit["episode"])


def test_a_rejected_observation_is_never_rendered(monkeypatch) -> None:
    rendered = []
    cfg = train_config(n_frames=40, img_size=32, angle_range=(-0.02, 0.02), fast_render=False)
    real = rendering.preprocess_frame
    monkeypatch.setattr(rendering, "preprocess_frame", lambda *a: rendered.append(1) or real(*a))
    data, stats = collection.collect_frames(cfg)
    assert stats.rejected_angle > 0 and len(rendered) == stats.kept == len(data["frames"]) == 40


def test_eval_mode_reconstructions_are_deterministic() -> None:
    from MyVAE import MyVAE

    model = MyVAE(latent_dim=4, img_size=32, hidden_dims=(8, 16, 16, 32, 32)).eval()
    x = torch.rand(3, 3, 32, 32)
    assert torch.equal(model.reconstruct(x), model.reconstruct(x))


def test_learning_rate_warms_up_then_follows_a_cosine_to_a_tenth() -> None:
    cfg = train_config(lr=1e-3, warmup=0.1, cosine=True)
    rates = [train_vae.learning_rate(step, 100, cfg) for step in range(100)]
    assert rates[0] == pytest.approx(1e-4) and rates[9] == pytest.approx(1e-3)
    assert all(a < b for a, b in zip(rates[:10], rates[1:10], strict=False))
    assert all(a >= b for a, b in zip(rates[10:], rates[11:], strict=False))
    assert rates[-1] == pytest.approx(1e-4, rel=0.05)
    flat = train_config(lr=1e-3, warmup=0.0, cosine=False)
    assert {train_vae.learning_rate(step, 100, flat) for step in range(100)} == {1e-3}


@pytest.mark.slow
def test_last_pt_is_written_after_every_other_file_of_an_epoch(tmp_path, monkeypatch) -> None:
    """So a kill at any write boundary, then --resume, redoes the epoch and rewrites them all."""
    cfg, source = tiny(tmp_path, epochs=1)
    written = []
    real = files.atomic_write
    monkeypatch.setattr(files, "atomic_write", lambda path, write: written.append(path.name) or real(path, write))
    train_vae.train(cfg, source, tmp_path, CPU, StopAfter(999))
    assert written[-1] == "last.pt"
    assert {"vae.pt", "metrics.csv", "loss_curves.png", "reconstructions.png"} <= set(written[:-1])


@pytest.mark.slow
@pytest.mark.parametrize("dies_at", ["vae.pt", "metrics.csv", "last.pt"])
def test_a_kill_at_a_write_boundary_then_resume_ends_with_every_file(tmp_path, monkeypatch, dies_at: str) -> None:
    cfg, source = tiny(tmp_path, epochs=2)
    train_vae.train(train_config(**(vars(cfg) | {"epochs": 1})), source, tmp_path, CPU, StopAfter(999))
    real = files.atomic_write

    def killed(path, write):
        if path.name == dies_at:
            raise KeyboardInterrupt  # the process dies before this file is written
        real(path, write)

    monkeypatch.setattr(files, "atomic_write", killed)
    with pytest.raises(KeyboardInterrupt):
        train_vae.train(cfg, source, tmp_path, CPU, StopAfter(999), checkpoint=load_checkpoint(tmp_path / "last.pt"))
    monkeypatch.setattr(files, "atomic_write", real)
    last = load_checkpoint(tmp_path / "last.pt")
    history = train_vae.train(cfg, source, tmp_path, CPU, StopAfter(999), checkpoint=last)
    assert [row["epoch"] for row in history] == [1, 2]
    for name in ("vae.pt", "last.pt", "metrics.csv", "loss_curves.png", "reconstructions.png"):
        assert (tmp_path / name).is_file(), name
    best = min(history, key=lambda row: row["val_loss"])["epoch"]
    assert load_checkpoint(tmp_path / "vae.pt")["epoch"] == best


def test_the_training_loss_is_logged_every_50_steps_beside_the_epoch_rows(tmp_path) -> None:
    history = [{"epoch": e, "train_loss": 0.1, "train_recon": 0.1, "train_kl": 1.0, "val_loss": 0.1, "val_recon": 0.1,
                "val_kl": 1.0} for e in (1, 2)]
    steps = [{"step": s, "epoch": s / 100, "train_loss": 1 / s, "train_recon": 1 / s} for s in range(50, 201, 50)]
    metrics.write_metrics(history, steps, tmp_path)
    lines = (tmp_path / "steps.csv").read_text().splitlines()
    assert lines[0] == "step,epoch,train_loss,train_recon" and len(lines) == 5 and lines[1].startswith("50,0.5,")
    assert (tmp_path / "loss_curves.png").stat().st_size > 1000


# ---------------------------------------------------------------- one-line changes that must fail a test


def test_training_logs_the_loss_every_50_steps_of_a_real_run(tmp_path, monkeypatch) -> None:
    cfg, source = tiny(tmp_path, batch_size=2)  # ~40 steps an epoch, 2 epochs: the 50th step lies in the second
    losses, real_step = [], train_vae.training_step

    def step(*args):
        parts, *flags = real_step(*args)
        losses.append(float(parts["loss"].detach()))
        return parts, *flags

    monkeypatch.setattr(train_vae, "training_step", step)
    history = train_vae.train(cfg, source, tmp_path, CPU, StopAfter(10**9))
    rows = (tmp_path / "steps.csv").read_text().splitlines()
    steps_per_epoch = source.n_train // 2
    assert rows[0] == "step,epoch,train_loss,train_recon" and [row.split(",")[0] for row in rows[1:]] == ["50"]
    assert float(rows[1].split(",")[1]) == pytest.approx(50 / steps_per_epoch) and len(history) == 2
    assert float(rows[1].split(",")[2]) == pytest.approx(np.mean(losses[:50]), rel=1e-5), \
        "the mean of the last 50 steps, across the epoch boundary, not of the epoch so far"


def test_chunk_seeds_of_one_seed_never_meet_those_of_the_fresh_seed() -> None:
    """Chunk 1 of seed 0 and chunk 0 of seed 1 (the fresh seed) must differ, or fresh frames were trained on."""
    train = {collection.chunk_seed(0, chunk) for chunk in range(200)}
    fresh = {collection.chunk_seed(fresh_seed(0), chunk) for chunk in range(200)}
    assert len(train) == 200 and train.isdisjoint(fresh)


def test_the_cosine_starts_at_the_peak_when_the_warm_up_ends() -> None:
    cfg = train_config(lr=1e-3, warmup=0.1, cosine=True)
    assert train_vae.learning_rate(10, 100, cfg) == cfg.lr, "the cosine is measured from the warm-up's end"
    assert train_vae.learning_rate(9, 100, cfg) == cfg.lr, "the warm-up's last step reaches the peak"


def test_every_constant_but_the_speed_knobs_is_refused_on_resume() -> None:
    from worldvae.cli import UserError
    from worldvae.resume import MAY_CHANGE, check_resumable

    cfg = train_config()
    saved = vars(cfg) | {"world_size": 1}
    checkpoint = {"config": saved, "progress": {"epoch": 1}}

    def other(value):
        if isinstance(value, bool):
            return not value
        if isinstance(value, (int, float)):
            return value + 1
        if isinstance(value, tuple):
            return (*value, 1)
        return 1 if value is None else f"{value}_other"

    speed_knobs = {"resume", "replace", "out_dir", "device", "precision", "channels_last", "compile", "n_envs",
                   "threads"}
    assert speed_knobs == MAY_CHANGE, "only where it writes and how fast it runs may change on resume"
    for name in sorted(set(saved) - speed_knobs - {"epochs"}):
        changed = train_config(**(saved | {name: other(saved[name])}))
        with pytest.raises(UserError, match=name.upper()):
            check_resumable(checkpoint, changed, "last.pt")


@pytest.mark.parametrize(("episode", "shard"), [(20, 4000), (250, 4000), (250, 1000), (250, 500), (20, 100)])
def test_val_fraction_is_the_share_that_validates_whatever_the_shard_and_episode_sizes(episode, shard) -> None:
    """Shards once each gave at least one whole episode to validation, rounding up: 12.5% of CarRacing's
    frames at the default shard size, 50% at 500 frames, for a VAL_FRACTION of 10%."""
    episodes = np.arange(shard) // episode
    held = [len(readers.split_shard(episodes, index, 0.1, seed=0)[1]) for index in range(1, 401)]
    assert np.sum(held) / (400 * shard) == pytest.approx(0.1, abs=0.015)
    assert len(readers.split_shard(episodes, 0, 0.1, seed=0)[1]) >= episode, "shard 0 always validates one"


def test_sampling_and_reconstructing_leave_the_model_as_it_was_and_its_batch_statistics_untouched() -> None:
    from MyVAE import MyVAE

    model = MyVAE(latent_dim=4, img_size=32, hidden_dims=(8, 16, 16, 32, 32)).train()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    x = torch.rand(5, 3, 32, 32)
    first = model.reconstruct(x)
    model.generate(torch.randn(3, 4))
    assert model.training, "the caller's mode is kept"
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items()), "no running statistic"
    assert torch.equal(first, model.reconstruct(x)), "the same frame, the same reconstruction, in training mode too"


def test_the_validation_loss_decodes_a_sampled_code_as_training_does_and_repeats_itself(monkeypatch) -> None:
    """So the two curves of loss_curves.png measure one loss; the same noise each epoch, none taken from training."""
    from MyVAE import MyVAE

    torch.manual_seed(0)
    model = MyVAE(latent_dim=4, img_size=32, hidden_dims=(8, 16, 16, 32, 32))
    sampled = []
    monkeypatch.setattr(model, "reparameterize", lambda mu, log_var: sampled.append(1) or
                        MyVAE.reparameterize(mu, log_var))
    frames = [torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8) for _ in range(2)]
    cfg = train_config(kl_weight=1e-5, kl_floor=0.0, seed=3)
    state = torch.get_rng_state()
    first = train_vae.validation_loss(model, iter(frames), cfg, CPU)
    assert torch.equal(state, torch.get_rng_state()), "training's random stream is untouched"
    assert first == train_vae.validation_loss(model, iter(frames), cfg, CPU), "the same noise every epoch"
    assert len(sampled) == 4, "every batch decoded a code sampled from q(z|x), not its mean"
    assert not model.training


def test_the_angle_filter_keeps_both_ends_of_its_range_at_the_observations_own_precision() -> None:
    from worldvae import envs

    at_edge = np.array([0.0, 0.0, 0.3, 0.0], dtype=np.float32)  # float32 0.3 is 0.30000001
    assert envs.passes_angle_filter("CartPole-v1", (-0.3, 0.3), at_edge)
    assert envs.passes_angle_filter("CartPole-v1", (-0.3, 0.3), -at_edge)
    assert not envs.passes_angle_filter("CartPole-v1", (-0.3, 0.3), np.nextafter(at_edge, np.float32(1)))
