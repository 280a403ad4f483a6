"""Speed of collection and training, measured side by side with the homework's approach.

    python bench.py                                      # all of it: about 10 minutes on 2 cores
    python bench.py --end_to_end False --memory_frames 0  # collection and training only: ~3 minutes

Prints a table and writes it to OUT_DIR/bench.json. The homework's approach is rebuilt
here as the reference: one env rendering every step at full size with a per-frame
bicubic resize, and an fp32, NCHW training step on float frames.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image

import cli
import train_vae
from MyVAE import MyVAE, load_vae

# -----------------------------------------------------------------------------
ENV_ID = "CartPole-v1"  # the env every measurement uses
COLLECT_FRAMES = 2000  # kept frames each collector gathers
TRAIN_FRAMES = 3000  # frames both training paths learn from in the quality comparison
TIMED_STEPS = 20  # optimizer steps timed for images/s, after 3 warm-up steps
QUALITY_EPOCHS = 3  # epochs each training path runs before their validation MSE is compared
HELDOUT_FRAMES = 1000  # fresh frames (another seed) that every model is scored on
END_TO_END = True  # also time a default `python train_vae.py` against the homework-equivalent run
MEMORY_FRAMES = 50_000  # frames collected and trained on for the peak-memory check; 0 skips it
SEED = 0  # seeds data, weights and shuffling on both sides
OUT_DIR = "outputs/bench"  # bench.json and the runs it makes go here
# -----------------------------------------------------------------------------

HOMEWORK_ITERATIONS, HOMEWORK_BATCH, HOMEWORK_LR = 400, 100, 1e-3  # the homework's training run


# ---------------------------------------------------------------- the homework's approach


def reference_collect(cfg: SimpleNamespace) -> dict[str, np.ndarray]:
    """One env; every observation rendered at full size, then filtered, cropped and resized.

    Same filters and seed handling as ours (so both keep N_FRAMES frames), the homework's
    cost structure: a full render per step and a bicubic resize per frame.
    """
    env = train_vae.make_env(cfg.env_id, cfg.seed)
    crop = train_vae.resolve_crop(cfg.env_id, cfg.crop)
    frames, states = [], []
    obs, _ = env.reset(seed=cfg.seed)
    step, done = 0, False
    while len(frames) < cfg.n_frames:
        full = env.render()
        if train_vae.passes_angle_filter(cfg.env_id, cfg.angle_range, obs):
            frames.append(bicubic_frame(full, crop, cfg.img_size))
            states.append(obs)
        step += 1
        if done or step >= cfg.reset_after:
            (obs, _), step, done = env.reset(), 0, False
        else:
            obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
            done = terminated or truncated
    env.close()
    return {"frames": np.stack(frames), "states": np.stack(states).astype(np.float32)}


def bicubic_frame(full: np.ndarray, crop: Sequence[float], img_size: int) -> np.ndarray:
    """The homework's preprocessing: slice the crop out, then one bicubic resize."""
    height, width = full.shape[:2]
    top, bottom, left, right = crop
    rows, cols = slice(round(top * height), round(bottom * height)), slice(round(left * width), round(right * width))
    small = Image.fromarray(full[rows, cols]).resize((img_size, img_size), Image.Resampling.BICUBIC)
    return np.asarray(small).transpose(2, 0, 1)


def reference_step(model: MyVAE, optimizer: torch.optim.Optimizer, x: torch.Tensor, kl_weight: float) -> None:
    """The homework's step: fp32, NCHW, a float batch."""
    parts = model.loss(*model(x), kl_weight=kl_weight)
    optimizer.zero_grad()
    parts["loss"].backward()
    optimizer.step()


# ---------------------------------------------------------------- measurements


def heldout_mse(model: MyVAE, frames: np.ndarray) -> float:
    """Per-pixel MSE of eval-mode reconstructions, in fp32, on frames no model trained on."""
    model = model.float().to(memory_format=torch.contiguous_format).eval()
    x = torch.from_numpy(frames).float().div(255)
    with torch.no_grad():
        return float(sum(((model(b)[0] - b) ** 2).sum() for b in x.split(200)) / x.numel())


def measure_collection(cfg: SimpleNamespace) -> dict:
    start = time.perf_counter()
    ours, _ = train_vae.collect_frames(cfg)
    ours_rate = cfg.n_frames / (time.perf_counter() - start)
    start = time.perf_counter()
    reference_collect(cfg)
    reference_rate = cfg.n_frames / (time.perf_counter() - start)
    return {
        "ours_frames_per_s": ours_rate,
        "reference_frames_per_s": reference_rate,
        "speedup": ours_rate / reference_rate,
        **frame_fidelity(cfg, ours),
        "n_envs": cfg.n_envs,
        "fast_render": cfg.fast_render,
    }


def frame_fidelity(cfg: SimpleNamespace, ours: dict[str, np.ndarray], n: int = 300) -> dict:
    """Mean absolute difference (grey levels of 255) between our frames and, for the same
    states, a full-size render resized with antialiasing, and the reference's bicubic frame."""
    env = train_vae.make_env(cfg.env_id, cfg.seed)
    env.reset(seed=cfg.seed)
    crop = train_vae.resolve_crop(cfg.env_id, cfg.crop)
    to_full, to_reference = [], []
    for frame, state in zip(ours["frames"][:n], ours["states"][:n], strict=True):
        env.unwrapped.state = state.astype(np.float64)
        full = env.render()
        antialiased = train_vae.preprocess_frame(full, crop, cfg.img_size)
        bicubic = bicubic_frame(full, crop, cfg.img_size)
        to_full.append(np.abs(frame.astype(int) - antialiased.astype(int)).mean())
        to_reference.append(np.abs(frame.astype(int) - bicubic.astype(int)).mean())
    env.close()
    return {"mad_vs_full_render": float(np.mean(to_full)), "mad_vs_reference": float(np.mean(to_reference))}


def _fresh_model(name: str, compute: train_vae.Compute | None, seed: int) -> tuple[MyVAE, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = MyVAE() if name == "reference" else compute.prepare(MyVAE())
    return model, torch.optim.Adam(model.parameters(), lr=HOMEWORK_LR)


def _train_pass(
    name: str,
    model: MyVAE,
    optimizer: torch.optim.Optimizer,
    batches: list[torch.Tensor],
    frames: dict[str, torch.Tensor],
    cfg: SimpleNamespace,
    compute: train_vae.Compute | None,
) -> None:
    """One pass over `batches` the way each side trains: ours through train_vae.train_epoch."""
    if name == "reference":
        model.train()
        for idx in batches:
            reference_step(model, optimizer, frames["f32"][idx], cfg.kl_weight)
        return
    progress = train_vae.Progress(torch.Generator().get_state())
    train_vae.train_epoch(model, optimizer, frames["u8"], batches, progress, cfg, compute, cli.StopRequests())


def measure_training(
    cfg: SimpleNamespace, data: dict[str, np.ndarray], heldout: np.ndarray, bench: SimpleNamespace
) -> dict:
    """Images/s of each side's training loop, and held-out MSE after equal epochs from equal starts."""
    compute = train_vae.Compute.from_config(cfg)
    frames = {"u8": torch.from_numpy(data["frames"])}
    frames["f32"] = frames["u8"].float().div(255)  # the homework held the whole set as floats
    draw = torch.Generator().manual_seed(bench.seed)
    timed = [torch.randint(len(frames["u8"]), (HOMEWORK_BATCH,), generator=draw) for _ in range(bench.timed_steps)]
    results = {"precision": str(compute), "batch": HOMEWORK_BATCH}
    for name in ("reference", "ours"):
        model, optimizer = _fresh_model(name, compute, bench.seed)
        _train_pass(name, model, optimizer, timed[:3], frames, cfg, compute)  # warm-up
        start = time.perf_counter()
        _train_pass(name, model, optimizer, timed, frames, cfg, compute)
        results[f"{name}_images_per_s"] = HOMEWORK_BATCH * len(timed) / (time.perf_counter() - start)

        model, optimizer = _fresh_model(name, compute, bench.seed)
        shuffle = torch.Generator().manual_seed(bench.seed)
        for _ in range(bench.quality_epochs):
            order = torch.randperm(len(frames["u8"]), generator=shuffle)
            batches = train_vae.batch_indices(order, HOMEWORK_BATCH, drop_last=True)
            _train_pass(name, model, optimizer, batches, frames, cfg, compute)
        results[f"{name}_heldout_mse"] = heldout_mse(model, heldout)
    results["speedup"] = results["ours_images_per_s"] / results["reference_images_per_s"]
    results["mse_ratio"] = results["ours_heldout_mse"] / results["reference_heldout_mse"]
    return results


def measure_end_to_end(bench: SimpleNamespace, heldout: np.ndarray) -> dict:
    """Wall time and held-out MSE of a default `python train_vae.py` and of the homework's run."""
    out_dir = Path(bench.out_dir) / "default_run"
    train_vae.dataset_path(out_dir, ENV_ID).unlink(missing_ok=True)  # collection is part of the run
    start = time.perf_counter()
    subprocess.run([sys.executable, "train_vae.py", "--out_dir", str(out_dir)], check=True, capture_output=True)
    ours_seconds = time.perf_counter() - start
    ours_mse = heldout_mse(load_vae(out_dir / "vae.pt"), heldout)

    start = time.perf_counter()
    cfg = cli.defaults(train_vae, env_id=ENV_ID, n_frames=2000, seed=bench.seed)
    frames = {"f32": torch.from_numpy(reference_collect(cfg)["frames"]).float().div(255)}
    model, optimizer = _fresh_model("reference", None, bench.seed)
    shuffle = torch.Generator().manual_seed(bench.seed)
    for done in range(0, HOMEWORK_ITERATIONS, len(frames["f32"]) // HOMEWORK_BATCH):
        order = torch.randperm(len(frames["f32"]), generator=shuffle)
        batches = train_vae.batch_indices(order, HOMEWORK_BATCH, drop_last=True)[: HOMEWORK_ITERATIONS - done]
        _train_pass("reference", model, optimizer, batches, frames, cfg, None)
    reference_seconds = time.perf_counter() - start
    return {
        "ours_seconds": ours_seconds,
        "ours_heldout_mse": ours_mse,
        "reference_seconds": reference_seconds,
        "reference_heldout_mse": heldout_mse(model, heldout),
        "time_ratio": ours_seconds / reference_seconds,
    }


def memory_probe(n_frames: int, out_dir: str) -> None:
    """Run in a fresh process: collect n_frames, train a few steps, print peak RSS (MiB) as JSON."""
    cfg = cli.defaults(train_vae, env_id=ENV_ID, n_frames=n_frames, out_dir=out_dir)
    path = cli.prepare_out_dir(out_dir)
    train_vae.dataset_path(path, ENV_ID).unlink(missing_ok=True)
    with cli.StopRequests() as stop:
        data = train_vae.load_or_collect(cfg, path, stop)
    compute = train_vae.Compute.from_config(cfg)
    model, optimizer = _fresh_model("ours", compute, cfg.seed)
    batches = train_vae.batch_indices(torch.randperm(len(data["frames"])), cfg.batch_size, drop_last=True)[:20]
    _train_pass("ours", model, optimizer, batches, {"u8": torch.from_numpy(data["frames"])}, cfg, compute)
    mib = 1024  # ru_maxrss is in KiB on Linux
    print(json.dumps({
        "frames": n_frames,
        "main_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / mib,
        "largest_worker_peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / mib,
        "dataset_mib": data["frames"].nbytes / mib**2,
    }))


def measure_memory(bench: SimpleNamespace) -> dict:
    probe = f"import bench; bench.memory_probe({bench.memory_frames}, {str(Path(bench.out_dir) / 'memory')!r})"
    result = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- report


def report(results: dict) -> list[tuple[str, str, str]]:
    """(measurement, value, target and verdict) rows for the printed table."""
    rows = []
    c = results["collection"]
    rows.append(("collection, kept frames/s", f"{c['ours_frames_per_s']:.0f} vs {c['reference_frames_per_s']:.0f} "
                 f"= {c['speedup']:.1f}x", _verdict(c["speedup"] >= 5, ">= 5x")))
    rows.append(("  frames vs full render + antialias (MAD)", f"{c['mad_vs_full_render']:.2f}/255",
                 _verdict(c["mad_vs_full_render"] <= 3, "<= 3/255")))
    rows.append(("  frames vs reference's bicubic (MAD)", f"{c['mad_vs_reference']:.2f}/255", "(for information)"))
    t = results["training"]
    rows.append(("training, images/s", f"{t['ours_images_per_s']:.0f} vs {t['reference_images_per_s']:.0f} "
                 f"= {t['speedup']:.2f}x ({t['precision']})", _verdict(t["speedup"] >= 3, ">= 3x")))
    mse = f"{t['ours_heldout_mse']:.5f} vs {t['reference_heldout_mse']:.5f} = {t['mse_ratio']:.3f}"
    rows.append(("  held-out MSE after equal epochs", mse, _verdict(t["mse_ratio"] <= 1.05, "<= 1.05")))
    if "end_to_end" in results:
        e = results["end_to_end"]
        rows.append(("end to end, wall time", f"{e['ours_seconds']:.0f}s vs {e['reference_seconds']:.0f}s "
                     f"= {e['time_ratio']:.2f}", _verdict(e["time_ratio"] <= 1 / 3, "<= 0.33")))
        rows.append(("  held-out MSE", f"{e['ours_heldout_mse']:.5f} vs {e['reference_heldout_mse']:.5f}",
                     _verdict(e["ours_heldout_mse"] < e["reference_heldout_mse"], "lower")))
    if "memory" in results:
        m = results["memory"]
        rows.append((f"peak RSS, {m['frames']:,} frames", f"{m['main_peak_mib']:.0f} MiB "
                     f"(largest worker {m['largest_worker_peak_mib']:.0f} MiB)",
                     _verdict(m["main_peak_mib"] < 1.5 * 1000**3 / 1024**2, "< 1.5 GB")))
    return rows


def _verdict(ok: bool, target: str) -> str:
    return f"{target}: {'met' if ok else 'NOT met'}"


def main(argv: Sequence[str] | None = None) -> None:
    bench = cli.parse_config(__name__, argv)
    out_dir = cli.prepare_out_dir(bench.out_dir)
    cfg = cli.defaults(train_vae, env_id=ENV_ID, n_frames=bench.collect_frames, seed=bench.seed)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; collecting {bench.heldout_frames} "
          f"held-out frames and {bench.train_frames} training frames")
    heldout_cfg = cli.defaults(train_vae, env_id=ENV_ID, n_frames=bench.heldout_frames, seed=bench.seed + 1000)
    heldout = train_vae.collect_frames(heldout_cfg)[0]["frames"]
    train_cfg = cli.defaults(train_vae, env_id=ENV_ID, n_frames=bench.train_frames, seed=bench.seed)
    data = train_vae.collect_frames(train_cfg)[0]

    results = {"machine": _machine()}
    print("1/4 collection ...")
    results["collection"] = measure_collection(cfg)
    print("2/4 training ...")
    results["training"] = measure_training(cfg, data, heldout, bench)
    if bench.end_to_end:
        print("3/4 end to end (a default train_vae.py run and the homework's run) ...")
        results["end_to_end"] = measure_end_to_end(bench, heldout)
    if bench.memory_frames > 0:
        print(f"4/4 peak memory with {bench.memory_frames:,} frames ...")
        results["memory"] = measure_memory(bench)

    rows = report(results)
    name_width, value_width = (max(len(row[i]) for row in rows) for i in (0, 1))
    print(f"\n{results['machine']}")
    for name, value, verdict in rows:
        print(f"{name:<{name_width}}  {value:<{value_width}}  {verdict}")
    (out_dir / "bench.json").write_text(json.dumps(results | {"table": rows}, indent=2))
    print(f"\nwrote {out_dir / 'bench.json'}")


def _machine() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return f"{names[0] if names else platform.processor()}, {os.cpu_count()} cores, torch {torch.__version__}"


if __name__ == "__main__":
    cli.run(main)
