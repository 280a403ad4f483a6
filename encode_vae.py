"""Encode a run's frames into latent codes for the next stage of a world model (an MDN-RNN).

    python encode_vae.py                                  # outputs/vae.pt's dataset -> outputs/codes.npz
    python encode_vae.py --checkpoint outputs/car/vae.pt --out outputs/car/codes.npz

Writes one .npz, every array in episode order and, within an episode, in step order:

    mu, log_var    float32 (N, LATENT_DIM)  q(z|x) of each frame (the encoder's mean and log-variance);
                                   an autoencoder's code is mu alone: it has no variance, so no log_var
    action         float32 (N, A)  the action taken from that frame (a Discrete action as its index);
                                   NaN where `done`: no transition from that frame is stored
    reward         float32 (N,)    the reward that action earned (NaN where `done`)
    done           bool    (N,)    True where the stored sequence breaks: the last frame of each stored
                                   episode (the env ended it, RESET_AFTER did, or collection's chunk
                                   of 250 frames ended), and the last frame before one that a filter
                                   rejected (`step` then jumps)
    episode, step  int32   (N,)    which episode, and the frame's step within it
    episode_start  int64   (E + 1,) episode e is rows episode_start[e] : episode_start[e + 1]

so an RNN learns z[t + 1] from (z[t], action[t]) within each episode without reading this
repo's code. Frames rejected by a filter leave gaps in `step`; the CartPole default keeps
every frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from MyVAE import MyVAE
from worldvae import cli, constants, dataset, files, store
from worldvae.checkpoints import build_vae, load_checkpoint, run_config
from worldvae.codes import encode_frames
from worldvae.compute import pick_device

# -----------------------------------------------------------------------------
CHECKPOINT = "outputs/vae.pt"  # a checkpoint written by train_vae.py; its dataset is encoded
OUT = None  # where the codes go; None: codes.npz beside the checkpoint
DEVICE = "auto"  # auto (cuda, then mps, then cpu), cpu, cuda, mps
# -----------------------------------------------------------------------------

def episode_codes(model: MyVAE, data: dict[str, np.ndarray], device: torch.device) -> dict[str, np.ndarray]:
    """The arrays this script writes (see the docstring), from a dataset and a model."""
    order = np.lexsort((data["step"], data["episode"]))  # by episode, then step
    ordered = {key: data[key][order] for key in ("action", "reward", "done", "episode", "step")}
    codes = encode_frames(model, data["frames"][order], device)
    variance = {"log_var": codes.log_var} if model.variational else {}  # an autoencoder's code has none
    return {"mu": codes.mu, **variance, **ordered, "episode_start": episode_starts(ordered["episode"])}


def episode_starts(episodes: np.ndarray) -> np.ndarray:
    """Where each episode's rows begin, and the end: episode e is rows [starts[e], starts[e + 1])."""
    return np.append(np.flatnonzero(np.diff(episodes, prepend=-1)), len(episodes)).astype(np.int64)


def is_codes_file(path: Path) -> bool:
    """Whether `path` holds codes this script wrote (an .npz with mu and episode_start)."""
    try:
        with np.load(path, allow_pickle=False) as held:
            return isinstance(held, np.lib.npyio.NpzFile) and {"mu", "episode_start"} <= set(held.files)
    except (OSError, ValueError, EOFError):
        return False


def main(argv: Sequence[str] | None = None) -> None:
    cfg = constants.parse_config(__name__, argv)
    checkpoint = load_checkpoint(cfg.checkpoint)
    run = SimpleNamespace(**run_config(checkpoint, cfg.checkpoint))
    out = Path(cfg.out or Path(cfg.checkpoint).parent / "codes.npz")
    files.refuse_foreign_file(out, is_codes_file, "a codes file of encode_vae.py")  # the checkpoint itself, say
    frame_store, problem = dataset.complete_store(run, beside=Path(cfg.checkpoint).parent)
    cli.require(frame_store is not None, f"{problem}, so {cfg.checkpoint}'s frames cannot be encoded: the "
                "train_vae.py command that made it collects the same frames again (they depend on the settings and "
                "the seed alone) into another --out_dir")
    print(f"encoding the frames of {frame_store.folder}")
    files.prepare_out_dir(str(out.parent))
    device = pick_device(cfg.device)
    model = build_vae(checkpoint, device)
    n_shards = len(store.shard_sizes(run.n_frames, run.shard_frames))
    pieces = [episode_codes(model, frame_store.read(index), device) for index in range(n_shards)]  # one shard in RAM
    codes = {key: np.concatenate([piece[key] for piece in pieces]) for key in pieces[0] if key != "episode_start"}
    codes["episode_start"] = episode_starts(codes["episode"])
    files.atomic_write(out, lambda f: np.savez(f, **codes))
    n_episodes = len(codes["episode_start"]) - 1
    print(f"wrote {out}: {len(codes['mu'])} frames in {n_episodes} episodes, z of {codes['mu'].shape[1]} dims, "
          f"actions of {codes['action'].shape[1]}")


if __name__ == "__main__":
    cli.run(main)
