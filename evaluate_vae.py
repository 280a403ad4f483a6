"""Is the trained model any good, and what do its latent dimensions mean?

    python evaluate_vae.py                    # outputs/eval/: metrics.json and five pictures
    python evaluate_vae.py --fresh 2000       # score on 2,000 new frames from another seed instead

Reports reconstruction MSE and PSNR on held-out frames, the KL of each latent dimension
and how many are active, and a linear probe: how well a least-squares map from the
latent mean recovers the true state (for CartPole: cart position and velocity, pole
angle and angular velocity). A high R^2 says the code captured the physics, not just
pixels.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from MyVAE import MyVAE
from worldvae import cli, codes, constants, control, envs, files, plausible, prior, readers
from worldvae.checkpoints import build_vae, load_checkpoint, run_config
from worldvae.codes import Codes, encode_frames
from worldvae.collection import collect_frames
from worldvae.compute import pick_device, to_unit_float
from worldvae.heldout import HELDOUT_LIMIT, Heldout, fresh_seed, heldout_frames, rendered_frames
from worldvae.pictures import plot_latent_scatter, save_comparison, save_interpolation, save_samples, save_traversal
from worldvae.policies import HELD_OUT

# -----------------------------------------------------------------------------
CHECKPOINT = "outputs/vae.pt"  # a checkpoint written by train_vae.py
FRESH = 0  # 0: score on the checkpoint's own validation episodes; N: on N new frames from another seed
N_SAMPLES = 16  # random samples drawn for samples.png
QUALITY_SAMPLES = 256  # samples scored by the MSE to their nearest real frame, and judged plausible or not
PLAUSIBILITY_FRAMES = 4000  # fresh frames drawn by the env's own renderer that judge the samples (half reference)
CONTROL_EPISODES = 20  # CartPole: episodes of the closed-loop control check (docs/evaluation.md); 0 skips it
COVERAGE_FRAMES = 2000  # CarRacing: fresh frames of each policy scored, ~7 tracks (FRESH, when given, instead)
CONTROL_FRAMES = 4000  # CartPole: labelled frames of the check's own driver that its readout is fitted and scored on
SEED = 0  # seeds those samples
OUT_DIR = None  # metrics.json and the pictures go here; None: eval/ beside the checkpoint
DEVICE = "auto"  # auto (cuda, then mps, then cpu), cpu, cuda, mps
# -----------------------------------------------------------------------------

_INTERPOLATION_POOL = 512  # held-out frames searched for the one farthest from the first


def linear_probe(z_fit: np.ndarray, y_fit: np.ndarray, z_test: np.ndarray, y_test: np.ndarray) -> np.ndarray:
    """R^2 of each target on the test set, for a least-squares map (with bias) fitted on the fit set.

    1 means the target is a linear function of the code; 0 means no better than its mean.
    """
    design = np.column_stack([z_fit, np.ones(len(z_fit))])
    weights, *_ = np.linalg.lstsq(design, y_fit, rcond=None)
    predicted = np.column_stack([z_test, np.ones(len(z_test))]) @ weights
    residual = ((y_test - predicted) ** 2).sum(0)
    total = ((y_test - y_test.mean(0)) ** 2).sum(0)
    return 1.0 - residual / np.maximum(total, 1e-12)


def reconstruction_scores(model: MyVAE, config: dict, held: Heldout, device: torch.device) -> tuple[dict, Codes]:
    """How well the model keeps held-out frames (MSE, PSNR, the road), what its code holds (KL per dimension,
    active dimensions) and how linearly it holds the state (the probe); and the test frames' codes."""
    road = envs.env_family(config["env_id"]) == "CarRacing"  # what its controller needs: the road, kept
    fit, test = (encode_frames(model, held.fit["frames"], device),
                 encode_frames(model, held.test["frames"], device, road=road))
    mse = float(test.mse.mean())
    kl = codes.mean_kl(test.mu, test.log_var) if model.variational else np.zeros(model.latent_dim)
    variance = codes.code_variance(test.mu)
    names = envs.state_names(config["env_id"], held.test["states"].shape[1])
    r2 = linear_probe(fit.mu, held.fit["states"], test.mu, held.test["states"])
    return {
        "frames_scored": int(len(held.test["frames"])),
        "data": held.description,
        "mse": mse,
        "psnr_db": 10 * math.log10(1.0 / mse),
        "kl_per_dim": [float(v) for v in kl],
        "kl_total": float(kl.sum()),
        "active_dims": int((kl > codes.ACTIVE).sum()) if model.variational else None,
        "active_dims_by_variance": int((variance > codes.ACTIVE).sum()),
        "dims_by_information": codes.ranked_dims(kl if model.variational else variance),
        "probe_r2": dict(zip(names, (float(v) for v in r2), strict=True)),
        "road_iou": float(np.nanmean(test.road_iou)) if road else None,
        "frames_showing_road": int((~np.isnan(test.road_iou)).sum()) if road else None,
    }, test


def sample_scores(model: MyVAE, prior_name: str, fitted: dict | None, config: dict, training_frames: np.ndarray,
                  device: torch.device, *, n_samples: int, plausibility_frames: int, seed: int) -> dict:
    """The samples of each prior the checkpoint offers, judged both ways (worldvae/plausible.py) against
    `plausibility_frames` fresh frames of another seed, drawn by the env's own renderer: half of their
    episodes the reference, the other half reconstructed to set the line; and, for the prior sample_vae.py
    draws by default, the MSE to the nearest training frame. n_samples of them, a batch at a time."""
    frames = rendered_frames(config, plausibility_frames)
    reference, others = readers.split_by_episode(frames["episode"], 0.5, fresh_seed(config["seed"]))
    reference_u8, others_u8 = frames["frames"][reference], frames["frames"][others]

    def samples(prior_: dict | None) -> plausible.Images:
        return prior.new_frame_batches(model, prior_, n_samples, torch.Generator().manual_seed(seed))

    samplers = {"fitted": samples(fitted)} if fitted is not None else {}
    reconstructions = (model.reconstruct(batch) for batch in plausible.float_batches(others_u8, device))
    judged = plausible.judge(samplers | {"normal": samples(None)}, n_samples, reconstructions, reference_u8,
                             others_u8)
    nearest = plausible.nearest_frame_mse(samples(fitted), training_frames, n_samples)
    return {"sample_prior": prior_name,
            "implausible_samples": {name: score["implausible"] for name, score in judged.items()},
            "plausibility": judged,
            "sample_nearest_mse_median": float(np.median(nearest)),
            "sample_nearest_mse_p90": float(np.quantile(nearest, 0.9))}


def evaluate(checkpoint_path: str | Path, out_dir: Path, *, fresh: int = 0, n_samples: int = N_SAMPLES,
             seed: int = SEED, device: torch.device | None = None, quality_samples: int = QUALITY_SAMPLES,
             plausibility_frames: int = PLAUSIBILITY_FRAMES, coverage_frames: int = COVERAGE_FRAMES,
             control_episodes: int = 0, control_frames: int = CONTROL_FRAMES) -> dict:
    """Score one checkpoint as the module's docstring says, write metrics.json and the pictures to out_dir,
    and return the metrics: its reconstructions and code, its samples, on CarRacing every driver's frames,
    on CartPole (with `control_episodes`) the closed-loop control check."""
    checkpoint = load_checkpoint(checkpoint_path)
    device = device or torch.device("cpu")
    model, config = build_vae(checkpoint, device), run_config(checkpoint, checkpoint_path)
    prior_name, fitted = prior.choose(checkpoint, "auto", checkpoint_path)  # as sample_vae.py draws by default
    held = heldout_frames(config, fresh, beside=Path(checkpoint_path).parent)
    scores, test_codes = reconstruction_scores(model, config, held, device)
    metrics = {"checkpoint": str(checkpoint_path), "variational": model.variational,
               "kl_weight": config["kl_weight"] if model.variational else None, "env_id": config["env_id"],
               **scores, **sample_scores(model, prior_name, fitted, config, held.fit["frames"], device,
                                         n_samples=quality_samples, plausibility_frames=plausibility_frames,
                                         seed=seed)}
    if scores["road_iou"] is not None:  # what a learning controller meets: every driver's frames
        metrics["by_policy"] = road_by_policy(model, config, device, fresh or coverage_frames)
    if control_episodes and envs.env_family(config["env_id"]) == "CartPole":
        metrics["control"] = control.control_check(model, config, device, control_episodes, control_frames)
    write_pictures(model, prior_name, fitted, held.test, test_codes, scores["dims_by_information"],
                   scatter_colour(config["env_id"], held.test), out_dir, n_samples, seed, device)
    text = json.dumps(files.json_safe(metrics), indent=2, allow_nan=False)  # NaN (no road shown) is no JSON: null
    files.atomic_write(out_dir / "metrics.json", lambda f: f.write(text.encode()))
    return metrics


def road_by_policy(model: MyVAE, config: dict, device: torch.device, n_frames: int) -> dict[str, dict]:
    """CarRacing: MSE, road IoU and the phantom-road rate on `n_frames` fresh frames (another seed) of
    each driver: the careful one, the brownian one (off the road, on grass), uniform random, and the
    drivers from outside the training family's ranges (policies.HELD_OUT)."""
    scores = {}
    for policy in ("driver", "brownian", "random", *HELD_OUT):
        new = collect_frames(SimpleNamespace(**(config | {"n_frames": n_frames, "policy": policy,
                                                          "seed": fresh_seed(config["seed"])})))[0]["frames"]
        codes_ = encode_frames(model, new, device, f"scoring {policy} frames", road=True)
        scores[policy] = {"frames": n_frames, "mse": float(codes_.mse.mean()),
                          "road_iou": float(np.nanmean(codes_.road_iou)) if (~np.isnan(codes_.road_iou)).any()
                          else None, "phantom_road_rate": codes_.phantom_road_rate}
    return scores


def scatter_colour(env_id: str, test: dict[str, np.ndarray]) -> tuple[np.ndarray, str]:
    """What colours each frame's dot in the latent scatter, and its name: the pole angle where the env
    has one, else its first state variable, else (an env that observes images) the step in the episode."""
    angles = [envs.pole_angle(env_id, state) for state in test["states"]]
    if angles and angles[0] is not None:
        return np.array(angles), "pole angle (rad)"
    if test["states"].shape[1]:
        return test["states"][:, 0], envs.state_names(env_id, 1)[0]
    return test["step"], "step in the episode"


def write_pictures(model: MyVAE, prior_name: str, prior_: dict | None, test: dict[str, np.ndarray], codes_: Codes,
                   order: list[int], scatter: tuple[np.ndarray, str], out_dir: Path, n_samples: int, seed: int,
                   device: torch.device) -> None:
    """reconstructions, traversal, interpolation, samples and latent_scatter .png in out_dir."""
    spread = readers.spread_frames(test["episode"], test["step"], readers.SHOWN_FRAMES)
    shown = to_unit_float(torch.from_numpy(test["frames"][spread]).to(device))
    save_comparison(shown, model.reconstruct(shown), out_dir / "reconstructions.png")
    save_traversal(*codes.traversal_rows(model, codes_.mu, codes_.log_var), out_dir / "traversal.png")
    pool = to_unit_float(torch.from_numpy(test["frames"][:_INTERPOLATION_POOL]).to(device))
    save_interpolation(codes.interpolation(model, pool[0], pool[codes.farthest_from_first(pool)]),
                       out_dir / "interpolation.png")
    samples = prior.new_frames(model, prior_, n_samples, torch.Generator().manual_seed(seed))
    save_samples(samples, out_dir / "samples.png", prior.caption(prior_name))
    plot_latent_scatter(codes_.mu, order, *scatter, out_dir / "latent_scatter.png")


def summary(metrics: dict) -> str:
    """One screen of text."""
    kind = "VAE" if metrics["variational"] else "autoencoder"
    lines = [
        f"{kind} {metrics['checkpoint']}: {metrics['frames_scored']} {metrics['env_id']} frames ({metrics['data']})",
        f"  reconstruction MSE {metrics['mse']:.5f} per pixel, PSNR {metrics['psnr_db']:.1f} dB",
        f"  samples ({prior.caption(metrics['sample_prior'])}), MSE to the nearest training frame: median "
        f"{metrics['sample_nearest_mse_median']:.5f}, 90th percentile {metrics['sample_nearest_mse_p90']:.5f}",
    ]
    for name, score in metrics["plausibility"].items():
        lines.append(f"  implausible samples ({prior.caption(name)}): {score['implausible']:.0%} of "
                     f"{score['samples']}, farther from every one of {score['reference_frames']} fresh frames than "
                     f"{plausible.QUANTILE:.0%} of reconstructions are (a perfect model: about "
                     f"{1 - plausible.QUANTILE:.0%}; far under it is a warning, not a win: a sampler of a few "
                     "common frames scores there too)")
        lines.append(f"    recall: {score['recall']:.0%} of those fresh frames have a sample within the same line; "
                     f"{score['perfect_sampler_frames']} real frames of other episodes in the samples' place: "
                     f"{score['perfect_recall']:.0%}")
    if metrics["variational"]:
        kl = ", ".join(f"{v:.2f}" for v in metrics["kl_per_dim"])
        lines.append(f"  KL per latent dimension (nats): {kl}")
        n_dims = len(metrics["kl_per_dim"])
        lines.append(f"  active dimensions (mean KL > {codes.ACTIVE} nats, so the code carries information there): "
                     f"{metrics['active_dims']} of {n_dims}")
    else:  # an autoencoder has no KL: a dimension is active where its code varies across frames
        lines.append(f"  active dimensions (code variance across frames > {codes.ACTIVE}): "
                     f"{metrics['active_dims_by_variance']}")
    for policy, score in metrics.get("by_policy", {}).items():
        iou = "no frame shows road" if score["road_iou"] is None else f"road IoU {score['road_iou']:.3f}"
        phantom = ("no road-free frame" if score["phantom_road_rate"] is None
                   else f"phantom road in {score['phantom_road_rate']:.0%} of road-free frames")
        lines.append(f"  {score['frames']} fresh frames of the {policy} policy: MSE {score['mse']:.5f}, {iou}, "
                     f"{phantom}")
    if metrics["road_iou"] is not None:
        lines.append(f"  road kept: IoU of the road pixels, frame against reconstruction, {metrics['road_iou']:.3f} "
                     f"(mean over the {metrics['frames_showing_road']} frames that show road)")
    if "control" in metrics:
        c, worst = metrics["control"], metrics["control"]["worst"]
        lines.append(f"  control check, {c['episodes']} episodes of each fixed controller on the state read back from "
                     f"the code (solved: mean >= {control.SOLVED} of 500 steps): the worst combination, "
                     f"{worst['controller']} on the degree-{worst['readout_degree']} readout: mean "
                     f"{worst['mean_steps']:.0f} steps, worst episode {worst['worst_steps']}")
        for combination in c["combinations"]:
            lines.append(f"    {combination['controller']} on the degree-{combination['readout_degree']} readout: mean "
                         f"{combination['mean_steps']:.0f}, worst {combination['worst_steps']} (on the true state: "
                         f"{combination['true_state_mean_steps']:.0f}, {combination['true_state_worst_steps']})")
        for degree, r2 in c["readout_r2"].items():
            lines.append(f"    readout of {degree}, R^2 on unseen probe episodes: "
                         + ", ".join(f"{name} {value:.3f}" for name, value in r2.items()))
    if not metrics["probe_r2"]:  # CarRacing, Atari: the env's observation is the image
        lines.append("  linear probe: none (the env has no state vector to read back)")
    else:
        lines.append("  linear probe from the latent mean to the true state, R^2 on held-out frames:")
        lines += [f"    {name:<24} {r2:6.3f}" for name, r2 in metrics["probe_r2"].items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    cfg = constants.parse_config(__name__, argv)
    cli.require(cfg.fresh == 0 or cfg.fresh >= 50, f"FRESH must be 0 or at least 50 frames, got {cfg.fresh}")
    cli.require_at_most(cfg.fresh, HELDOUT_LIMIT, "FRESH", "scores settle long before (and the frames are "
                        "held in memory)")
    cli.require(cfg.n_samples >= 1, f"N_SAMPLES must be at least 1, got {cfg.n_samples}")
    cli.require_at_most(cfg.n_samples, 10_000, "N_SAMPLES", "they are tiles of one picture")
    cli.require(cfg.quality_samples >= 1, f"QUALITY_SAMPLES must be at least 1, got {cfg.quality_samples}")
    cli.require_at_most(cfg.quality_samples, 100_000, "QUALITY_SAMPLES", "each is compared with every real frame")
    cli.require(50 <= cfg.coverage_frames <= HELDOUT_LIMIT, f"COVERAGE_FRAMES must lie in 50 .. {HELDOUT_LIMIT}, got "
                f"{cfg.coverage_frames}")
    cli.require(100 <= cfg.plausibility_frames <= HELDOUT_LIMIT, f"PLAUSIBILITY_FRAMES must lie in 100 .. "
                f"{HELDOUT_LIMIT}, got {cfg.plausibility_frames}")
    cli.require(0 <= cfg.control_episodes <= 1000, f"CONTROL_EPISODES must lie in 0 .. 1000, got "
                f"{cfg.control_episodes}")
    cli.require(100 <= cfg.control_frames <= HELDOUT_LIMIT, f"CONTROL_FRAMES must lie in 100 .. {HELDOUT_LIMIT}, got "
                f"{cfg.control_frames}")
    cli.require_seed(cfg.seed)
    run_config(load_checkpoint(cfg.checkpoint), cfg.checkpoint)  # a refused checkpoint leaves nothing behind
    out_dir = files.prepare_out_dir(cfg.out_dir or str(Path(cfg.checkpoint).parent / "eval"))
    metrics = evaluate(cfg.checkpoint, out_dir, fresh=cfg.fresh, n_samples=cfg.n_samples, seed=cfg.seed,
                       device=pick_device(cfg.device), quality_samples=cfg.quality_samples,
                       plausibility_frames=cfg.plausibility_frames, coverage_frames=cfg.coverage_frames,
                       control_episodes=cfg.control_episodes, control_frames=cfg.control_frames)
    print(summary(metrics))
    print(f"wrote {out_dir}/: metrics.json, reconstructions.png, traversal.png, interpolation.png, samples.png, "
          "latent_scatter.png")
    checkpoint_flag = "" if cfg.checkpoint == CHECKPOINT else f" --checkpoint {cfg.checkpoint}"
    print(f"next: python encode_vae.py{checkpoint_flag}   # every frame's code, for the memory stage (docs/data.md)")


if __name__ == "__main__":
    cli.run(main)
