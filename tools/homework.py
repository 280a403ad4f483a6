"""The homework's recipe, rebuilt as the bench's reference and run as a program of its own.

    python tools/homework.py --heldout outputs/bench/heldout.npy   # the whole run: about 5 minutes on 2 cores

One env rendering at full size with a bicubic resize per frame (our filters and seeding),
then the homework's model (channels 32 to 512) trained in fp32, NCHW, on float frames with
batch 100 at a constant learning rate of 1e-3, at torch's own thread count: the homework
set none. `tools/bench.py` starts it as a user would, so nothing of the bench's process
reaches it. Writes REPORT (JSON): its threads, its collection time, training images/s, and
the held-out MSE along the way.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: its scripts and the library
import train_vae  # noqa: E402
from MyVAE import MyVAE  # noqa: E402
from worldvae import cli, collection, constants, envs, files, rendering  # noqa: E402
from worldvae.codes import encode_frames  # noqa: E402
from worldvae.compute import pick_device, to_unit_float  # noqa: E402

# -----------------------------------------------------------------------------
ENV_ID = "CartPole-v1"  # the env it collects from
N_FRAMES = 2000  # kept frames: the homework's dataset
ITERATIONS = 400  # optimizer steps
BATCH = 100  # frames a step; an epoch's last, smaller batch is dropped
LR = 1e-3  # Adam's learning rate, constant
EVAL_EVERY = 50  # steps between scores on the held-out frames; 0 never scores
WARMUP_STEPS = 2  # first steps left out of the images/s (they allocate and tune kernels)
HELDOUT = None  # an .npy of uint8 frames (N, 3, H, W) to score on along the way; None: no scoring
SEED = 0  # seeds data, weights and shuffling
REPORT = "outputs/bench/homework.json"  # where the results go
# -----------------------------------------------------------------------------


def bicubic_renderer(crop: Sequence[float], img_size: int) -> rendering.Renderer:
    """The homework's preprocessing: a full-size render, the crop sliced out, one bicubic resize."""
    def render(env: gym.Env, _obs: np.ndarray | None = None) -> np.ndarray:
        full = env.render()
        height, width = full.shape[:2]
        top, bottom, left, right = crop
        rows = slice(round(top * height), round(bottom * height))
        cols = slice(round(left * width), round(right * width))
        small = Image.fromarray(full[rows, cols]).resize((img_size, img_size), Image.Resampling.BICUBIC)
        return np.asarray(small).transpose(2, 0, 1)
    return render


def reference_collect(cfg: SimpleNamespace) -> dict[str, np.ndarray]:
    """Our filters and seeding, the homework's cost: one process, full render and bicubic resize per frame."""
    render = bicubic_renderer(cfg.crop, cfg.img_size)
    return collection.collect_chunk(cfg, 0, cfg.n_frames, render)[0]


def reference_step(model: MyVAE, optimizer: torch.optim.Optimizer, x: torch.Tensor, kl_weight: float) -> None:
    """The homework's step: fp32, NCHW, a float batch."""
    parts = model.loss(*model(x), kl_weight=kl_weight)
    optimizer.zero_grad()
    parts["loss"].backward()
    optimizer.step()


def heldout_mse(model: MyVAE, heldout_u8: np.ndarray) -> float:
    """Per-pixel MSE of eval-mode reconstructions, in fp32, on frames no model trained on."""
    model = model.float().to(memory_format=torch.contiguous_format)
    return float(encode_frames(model, heldout_u8, next(model.parameters()).device, "scoring").mse.mean())


def train(run: SimpleNamespace, frames: torch.Tensor, kl_weight: float, heldout_u8: np.ndarray | None) -> dict:
    """ITERATIONS steps on `frames`: images/s of the steps after the warm-up, and (wall seconds of
    training so far, held-out MSE) every EVAL_EVERY steps; the scoring itself is not timed."""
    torch.manual_seed(run.seed)
    model = MyVAE().to(frames.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=run.lr)
    shuffle = torch.Generator().manual_seed(run.seed)
    points, step, stepping, paused = [], 0, 0.0, 0.0
    start = time.perf_counter()
    while step < run.iterations:
        for idx in torch.randperm(len(frames), generator=shuffle).to(frames.device).split(run.batch):
            if len(idx) < run.batch or step == run.iterations:
                break
            model.train()
            tick = time.perf_counter()
            reference_step(model, optimizer, frames[idx], kl_weight)
            stepping += time.perf_counter() - tick if step >= run.warmup_steps else 0.0
            step += 1
            if heldout_u8 is not None and run.eval_every and (step % run.eval_every == 0 or step == run.iterations):
                tick = time.perf_counter()
                points.append({"seconds": tick - start - paused, "mse": heldout_mse(model, heldout_u8), "step": step})
                model.to(memory_format=torch.contiguous_format)
                paused += time.perf_counter() - tick
    return {"images_per_s": (run.iterations - run.warmup_steps) * run.batch / stepping, "points": points}


def read_frames(path: Path, img_size: int) -> np.ndarray:
    """HELDOUT's frames: an .npy of uint8 frames (N, 3, img_size, img_size), as the bench writes; one line
    naming the file and what is wrong with it otherwise."""
    cli.require(files.is_file(path, "HELDOUT"), f"HELDOUT={str(path)!r} is not a file: give an .npy of frames")
    try:
        frames = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise cli.UserError(f"HELDOUT={str(path)!r} is not an .npy array ({cli.reason(error)})") from None
    expected = f"uint8 frames (N, 3, {img_size}, {img_size})"
    cli.require(isinstance(frames, np.ndarray) and frames.dtype == np.uint8 and frames.ndim == 4
                and frames.shape[1:] == (3, img_size, img_size) and len(frames) >= 1,
                f"HELDOUT={str(path)!r} holds {getattr(frames, 'dtype', type(frames).__name__)} of shape "
                f"{getattr(frames, 'shape', '?')}, not {expected} as the model is trained on")
    return frames


def main(argv: Sequence[str] | None = None) -> dict:
    run = constants.parse_config(__name__, argv)
    cli.require(run.n_frames >= run.batch >= 1, f"N_FRAMES={run.n_frames} must hold at least one batch of "
                f"BATCH={run.batch}")
    cli.require(run.iterations > run.warmup_steps >= 0, f"ITERATIONS={run.iterations} must exceed WARMUP_STEPS="
                f"{run.warmup_steps}")
    cli.require(run.eval_every >= 0, f"EVAL_EVERY must be 0 or more, got {run.eval_every}")
    for name in ("n_frames", "iterations", "batch", "eval_every"):
        cli.require_at_most(getattr(run, name), 1_000_000, name.upper(), "the reference needs far fewer")
    cli.require_learning_rate(run.lr)
    cli.require(run.heldout is None or isinstance(run.heldout, str), f"HELDOUT must be the path of an .npy file, or "
                f"None; got {run.heldout!r}")
    cli.require_seed(run.seed)
    cfg = constants.defaults(train_vae, env_id=run.env_id, n_frames=run.n_frames, seed=run.seed)
    envs.resolve_env_defaults(cfg)
    heldout_u8 = None if run.heldout is None else read_frames(Path(run.heldout), cfg.img_size)
    report_dir = files.prepare_out_dir(str(Path(run.report).parent))  # before minutes of work, not after
    start = time.perf_counter()
    device = pick_device("auto")
    frames = to_unit_float(torch.from_numpy(reference_collect(cfg)["frames"]).to(device))  # the homework held floats
    collect_seconds = time.perf_counter() - start
    result = {"threads": torch.get_num_threads(), "collect_seconds": collect_seconds,
              "frames_per_s": run.n_frames / collect_seconds} | train(run, frames, cfg.kl_weight, heldout_u8)
    for point in result["points"]:  # wall seconds of the run so far, collection included
        point["seconds"] += collect_seconds
    text = json.dumps(result, indent=2)
    files.atomic_write(report_dir / Path(run.report).name, lambda f: f.write(text.encode()))
    print(f"homework's recipe: {torch.get_num_threads()} threads, {result['images_per_s']:.0f} images/s; "
          f"wrote {run.report}")
    return result


if __name__ == "__main__":
    cli.run(main)
