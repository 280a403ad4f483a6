"""Speed and quality per minute, measured side by side with the homework's approach in one run.

    python tools/bench.py                          # all of it: about half an hour on 2 cores
    python tools/bench.py --quality False --memory_frames "()" --scaling_frames 0 --threads_frames 0  # ~3 minutes
    python tools/bench.py --gpu                    # the GPU acceptance check instead (under 10 minutes on one GPU)

Prints a table with the machine's CPU (and whether it has AMX) and writes it to
OUT_DIR/bench.json, and the time-to-quality curves to OUT_DIR/quality_vs_time.png. The
homework's approach is the reference (tools/homework.py): one env rendering at full size
with a bicubic resize per frame, and the homework's model trained in fp32, NCHW, on
float frames with batch 100 at a constant learning rate of 1e-3. Each side trains in a
process of its own, as a user starts it, at its own thread count.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: its scripts and the library
import train_vae  # noqa: E402
from tools import homework  # noqa: E402
from tools.homework import bicubic_renderer, heldout_mse, reference_collect  # noqa: E402
from worldvae import REPO, cli, collection, compute, constants, envs, files, rendering, store  # noqa: E402
from worldvae.checkpoints import load_checkpoint, load_vae, same_weights  # noqa: E402
from worldvae.codes import encode_frames  # noqa: E402
from worldvae.heldout import fresh_seed  # noqa: E402
from worldvae.pictures import save_figure  # noqa: E402

# -----------------------------------------------------------------------------
ENV_ID = "CartPole-v1"  # the env every measurement uses
COLLECT_FRAMES = 2000  # kept frames each collector gathers
TRAIN_FRAMES = 3000  # frames each side trains on for images/s
HELDOUT_FRAMES = 1000  # fresh frames (another seed) that every model is scored on
HOMEWORK_SPEED_STEPS = 12  # steps of the homework's recipe timed for its images/s, after its warm-up steps
READER_ROUNDS = 3  # alternating pairs of runs: frames streamed from disk, then held in RAM (the default)
QUALITY = True  # held-out MSE against wall seconds: our default run at several budgets vs the homework's run
QUALITY_BUDGETS = (0.25, 0.5, 1.0)  # shares of our default N_FRAMES, each one whole default run
CAR_QUALITY = True  # also CarRacing-v3's defaults at those budgets: held-out MSE and road IoU against wall seconds
MEMORY_FRAMES = (20_000, 200_000)  # N_FRAMES of the `--epochs 1` runs whose peak RSS is measured; ()
MEMORY_IMG_SIZE = 32  # their IMG_SIZE: 32 keeps the largest run short; a large dataset streams from disk either way
SCALING_FRAMES = 12_000  # frames that one process and two (torchrun) both train on, 2 epochs each; 0 skips it
THREADS_FRAMES = 4000  # frames of the runs timed at THREADS 1 and 2, idle and beside two busy programs; 0 skips it
GPU = False  # instead: the GPU acceptance check (default run, 40k x 5, compile, torchrun, resume, CarRacing)
SEED = 0  # seeds data, weights and shuffling on both sides
OUT_DIR = "outputs/bench"  # bench.json, the plot and the runs it makes go here
# -----------------------------------------------------------------------------

# ---------------------------------------------------------------- measurements


def train_defaults(**overrides: object) -> SimpleNamespace:
    """train_vae.py's constants with `overrides`, the env's own values filled in, as a run of it takes them."""
    return envs.resolve_env_defaults(constants.defaults(train_vae, **overrides))


def measure_collection(cfg: SimpleNamespace) -> dict:
    start = time.perf_counter()
    ours, _ = collection.collect_frames(cfg)
    ours_rate = cfg.n_frames / (time.perf_counter() - start)
    start = time.perf_counter()
    reference_collect(cfg)
    reference_rate = cfg.n_frames / (time.perf_counter() - start)
    return {
        "ours_frames_per_s": ours_rate,
        "reference_frames_per_s": reference_rate,
        "speedup": ours_rate / reference_rate,
        **frame_fidelity(cfg, ours),
    }


def frame_fidelity(cfg: SimpleNamespace, ours: dict[str, np.ndarray], n: int = 300) -> dict:
    """Mean absolute difference (grey levels of 255) between our frames and, for the same
    states, a full-size render resized with antialiasing, and the reference's bicubic frame."""
    env = envs.make_env(cfg.env_id, cfg.seed)
    env.reset(seed=cfg.seed)
    crop = cfg.crop
    bicubic = bicubic_renderer(crop, cfg.img_size)
    to_full, to_reference = [], []
    for frame, state in zip(ours["frames"][:n], ours["states"][:n], strict=True):
        env.unwrapped.state = state.astype(np.float64)
        antialiased = rendering.preprocess_frame(env.render(), crop, cfg.img_size)
        to_full.append(np.abs(frame.astype(int) - antialiased.astype(int)).mean())
        to_reference.append(np.abs(frame.astype(int) - bicubic(env).astype(int)).mean())
    env.close()
    return {"mad_vs_full_render": float(np.mean(to_full)), "mad_vs_reference": float(np.mean(to_reference))}


def remove_own_stores(out_dir: Path) -> None:
    """The datasets of this bench's own run in `out_dir`, so that its next run collects anew."""
    for folder in out_dir.glob("frames_*"):
        shutil.rmtree(folder)


def train_ours(out_dir: Path, argv: Sequence[str]) -> tuple[float, list[dict]]:
    """A whole `python train_vae.py` run, collection included: wall seconds and metrics rows."""
    remove_own_stores(out_dir)  # collection is part of the run
    seconds, rows, _ = timed_run([*argv, "--env_id", ENV_ID, "--out_dir", str(out_dir)], "our run")
    return seconds, rows


def homework_run(argv: Sequence[str], report: Path) -> dict:
    """tools/homework.py as a user starts it, in a process of its own at its own defaults: its report."""
    run_or_fail([sys.executable, str(REPO / "tools" / "homework.py"), *argv, "--report", str(report)],
                "the homework's run")
    return json.loads(report.read_text())


def measure_training(bench: SimpleNamespace, out_dir: Path) -> dict:
    """Training images/s, each side in a process of its own at its own defaults: our default loop
    (train_vae.py, one epoch on TRAIN_FRAMES, its frames held in RAM) vs the homework's step on the
    homework's model (tools/homework.py: batch 100, fp32, torch's own thread count). And the same run
    with its frames streamed from disk, alternating with the default READER_ROUNDS times."""
    argv = ["--n_frames", str(bench.train_frames), "--epochs", "1", "--seed", str(bench.seed)]
    remove_own_stores(out_dir / "speed")  # the first run collects the frames; images/s counts training alone
    rates: dict[str, list[float]] = {"0": [], "None": []}
    for _ in range(bench.reader_rounds):
        for in_ram_mb, rate in rates.items():
            run = [*argv, "--in_ram_mb", in_ram_mb, "--env_id", ENV_ID, "--out_dir", str(out_dir / "speed")]
            rate.append(float(timed_run(run, f"our run, IN_RAM_MB={in_ram_mb}")[1][-1]["images_per_s"]))
    ours, streamed = (float(np.median(rates[key])) for key in ("None", "0"))
    threads = json.loads((out_dir / "speed" / "config.json").read_text())["threads"]
    reference = homework_run(["--env_id", ENV_ID, "--n_frames", str(bench.train_frames), "--eval_every", "0",
                              "--iterations", str(bench.homework_speed_steps + homework.WARMUP_STEPS),
                              "--seed", str(bench.seed)], out_dir / "homework_speed.json")
    return {"ours_images_per_s": ours, "ours_threads": threads, "reference_images_per_s": reference["images_per_s"],
            "reference_threads": reference["threads"], "speedup": ours / reference["images_per_s"],
            "streamed_images_per_s": streamed, "reader_rounds": bench.reader_rounds}


def measure_quality(bench: SimpleNamespace, heldout_u8: np.ndarray, out_dir: Path) -> dict:
    """Held-out MSE against wall seconds: our default run at each budget, the homework's run along its way."""
    default = constants.defaults(train_vae)
    ours = []
    for share in bench.quality_budgets:
        n_frames = max(int(default.n_frames * share), 200)
        seconds, rows = train_ours(out_dir / f"quality_{n_frames}", ["--n_frames", str(n_frames),
                                                                     "--seed", str(bench.seed)])
        mse = heldout_mse(load_vae(out_dir / f"quality_{n_frames}" / "vae.pt"), heldout_u8)
        ours.append({"seconds": seconds, "mse": mse, "n_frames": n_frames, "run": str(out_dir / f"quality_{n_frames}"),
                     "images_per_s": float(rows[-1]["images_per_s"])})
    files.atomic_write(out_dir / "heldout.npy", lambda f: np.save(f, heldout_u8))
    homework = homework_run(["--env_id", ENV_ID, "--heldout", str(out_dir / "heldout.npy"), "--seed", str(bench.seed)],
                            out_dir / "homework.json")["points"]
    plot_quality(ours, homework, out_dir / "quality_vs_time.png")
    return {"ours": ours, "homework": homework}


def measure_car_quality(bench: SimpleNamespace, out_dir: Path) -> list[dict]:
    """CarRacing-v3's own defaults at each budget, collection included: wall seconds, and held-out
    MSE and road IoU on fresh frames of another seed (the last budget is the run the docs quote)."""
    car = train_defaults(env_id="CarRacing-v3")
    heldout = collection.collect_frames(train_defaults(env_id=car.env_id, n_frames=bench.heldout_frames,
                                                       seed=fresh_seed(bench.seed)))[0]
    points = []
    for share in bench.quality_budgets:
        n_frames = max(int(car.n_frames * share), car.shard_frames)
        run_dir = out_dir / f"car_quality_{n_frames}"
        remove_own_stores(run_dir)
        seconds, _, _ = timed_run(["--env_id", car.env_id, "--n_frames", str(n_frames), "--seed", str(bench.seed),
                                   "--out_dir", str(run_dir)], "the CarRacing run")
        model = load_vae(run_dir / "vae.pt")
        codes = encode_frames(model, heldout["frames"], next(model.parameters()).device, "scoring", road=True)
        points.append({"seconds": seconds, "mse": float(codes.mse.mean()), "n_frames": n_frames, "run": str(run_dir),
                       "road_iou": float(np.nanmean(codes.road_iou))})
    plot_car_quality(points, out_dir / "car_quality_vs_time.png")
    return points


def plot_car_quality(points: list[dict], path: Path) -> None:
    fig = Figure(figsize=(9, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    seconds = [p["seconds"] for p in points]
    for i, (key, title) in enumerate((("mse", "held-out MSE per pixel"), ("road_iou", "road IoU (held-out)")), 1):
        ax = fig.add_subplot(1, 2, i)
        ax.plot(seconds, [p[key] for p in points], marker="o")
        for p in points:
            ax.annotate(f"{p['n_frames']:,}", (p["seconds"], p[key]), fontsize=7)
        ax.set(xlabel="wall seconds, collection included", title=f"CarRacing-v3: {title}")
        ax.grid(alpha=0.3)
    fig.suptitle(compute.cpu_model(), fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def plot_quality(ours: list[dict], homework: list[dict], path: Path) -> None:
    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot([p["seconds"] for p in ours], [p["mse"] for p in ours], marker="o",
            label="ours (default runs, collection included)")
    ax.plot([p["seconds"] for p in homework], [p["mse"] for p in homework], marker=".", label="homework's recipe")
    ax.set(xlabel="wall seconds", ylabel="held-out MSE per pixel (fresh seed)", yscale="log",
           title=f"quality against time, {compute.cpu_model()}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def run_or_fail(command: Sequence[str], what: str) -> subprocess.CompletedProcess:
    """Run `command`, its output captured; one line with the last line it printed if it fails."""
    result = subprocess.run(command, capture_output=True, text=True)
    cli.require(result.returncode == 0, f"{what} failed: {result.stderr.strip().splitlines()[-1:]}")
    return result


def memory_probe(n_frames: int, img_size: int, out_dir: Path) -> dict:
    """Peak RSS (MiB) of `train_vae.py --n_frames N --epochs 1 --in_ram_mb 0` (streamed from disk, as a
    set larger than RAM is), collection included, by `/usr/bin/time -v`: the largest of the run's
    processes (its collection workers among them). And the dataset's size on disk."""
    shutil.rmtree(out_dir, ignore_errors=True)
    cli.require(Path("/usr/bin/time").exists(), "the memory check needs GNU time (/usr/bin/time): install it, "
                "or skip the check with --memory_frames \"()\"")
    _, _, result = timed_run(["--env_id", ENV_ID, "--n_frames", str(n_frames), "--epochs", "1", "--in_ram_mb", "0",
                              "--img_size", str(img_size), "--out_dir", str(out_dir)], "the memory run",
                             ["/usr/bin/time", "-v", sys.executable])
    peak_kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1))
    return {"frames": n_frames, "img_size": img_size, "peak_mib": peak_kib / 1024,
            "store_mib": store.folder_bytes(next(out_dir.glob("frames_*"))) / 2**20,
            "frames_mib": n_frames * 3 * img_size**2 / 2**20, "streamed": "streaming" in result.stdout}


def timed_run(argv: Sequence[str], what: str, launcher: Sequence[str] = ()
              ) -> tuple[float, list[dict], subprocess.CompletedProcess]:
    """train_vae.py as a user starts it, in a process of its own (under `launcher`: torchrun, GNU time),
    so nothing of this process (its thread count, its imports) reaches it: wall seconds, the metrics
    rows, and what it printed."""
    out_dir = Path(argv[argv.index("--out_dir") + 1])
    replace = [] if "--resume" in argv else ["--replace"]  # the bench's runs are its own: a rerun replaces them
    start = time.perf_counter()
    result = run_or_fail([*(launcher or [sys.executable]), str(REPO / "train_vae.py"), *argv, *replace], what)
    seconds = time.perf_counter() - start
    with open(out_dir / "metrics.csv") as f:
        return seconds, list(csv.DictReader(f)), result


def measure_scaling(n_frames: int, seed: int, heldout_u8: np.ndarray, out_dir: Path) -> list[dict]:
    """The same frames trained on by `python train_vae.py` and by `torchrun --nproc_per_node=2 train_vae.py`:
    images/s (all processes together) and held-out MSE of each."""
    args = ["--env_id", ENV_ID, "--n_frames", str(n_frames), "--seed", str(seed)]
    launchers = {1: (), 2: [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]}
    results = []
    for processes, launch in launchers.items():
        run_dir = out_dir / f"processes_{processes}"
        shutil.rmtree(run_dir, ignore_errors=True)
        if processes > 1:  # the very frames the first run collected
            first = next((out_dir / "processes_1").glob("frames_*"))
            shutil.copytree(first, run_dir / first.name)
        _, rows, _ = timed_run([*args, "--out_dir", str(run_dir)], f"the {processes}-process run", launch)
        results.append({"processes": processes, "images_per_s": float(rows[-1]["images_per_s"]),
                        "seconds": sum(float(row["seconds"]) for row in rows),
                        "heldout_mse": heldout_mse(load_vae(run_dir / "vae.pt"), heldout_u8)})
    return results


def measure_threads(n_frames: int, seed: int, out_dir: Path) -> list[dict]:
    """`train_vae.py --n_frames N --epochs 1` (collection included) at THREADS 1 and 2, on an idle machine
    and beside two CPU-bound programs (as a laptop runs a browser and an editor): wall seconds and images/s."""
    results = []
    for neighbours in (0, 2):
        for threads in (1, 2):
            run_dir = out_dir / f"threads_{threads}_neighbours_{neighbours}"
            shutil.rmtree(run_dir, ignore_errors=True)
            busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(neighbours)]
            try:
                seconds, rows, _ = timed_run(["--env_id", ENV_ID, "--n_frames", str(n_frames), "--epochs", "1",
                                                  "--seed", str(seed), "--threads", str(threads),
                                                  "--out_dir", str(run_dir)], f"the THREADS={threads} run")
            finally:
                for process in busy:
                    process.kill()
                    process.wait()
            results.append({"threads": threads, "neighbours": neighbours, "seconds": seconds,
                            "images_per_s": float(rows[-1]["images_per_s"])})
    return results


# ---------------------------------------------------------------- the GPU acceptance check


def gpu_acceptance(bench: SimpleNamespace, heldout_u8: np.ndarray, out_dir: Path) -> list[dict]:
    """Each check of the GPU path: what ran, its wall seconds, and what it measured."""
    shutil.rmtree(out_dir, ignore_errors=True)
    rows = []

    def row(check: str, seconds: float, result: str) -> None:
        rows.append({"check": check, "seconds": round(seconds, 1), "result": result})
        print(f"  {check}: {seconds:.0f} s, {result}")

    seconds, metrics, _ = timed_run(["--out_dir", str(out_dir / "default")], "the default run")
    mse = heldout_mse(load_vae(out_dir / "default" / "vae.pt"), heldout_u8)
    row("python train_vae.py (default, collection included)", seconds,
        f"{float(metrics[-1]['images_per_s']):.0f} images/s, held-out MSE {mse:.6f}")
    for compile_ in ("off", "on"):
        argv = ["--n_frames", "40000", "--epochs", "5", "--compile", compile_, "--out_dir", str(out_dir / compile_)]
        seconds, metrics, _ = timed_run(argv, f"the 40k x 5 run, COMPILE={compile_}")
        row(f"--n_frames 40000 --epochs 5 --compile {compile_}", seconds,
            f"{float(metrics[-1]['images_per_s']):.0f} images/s, validation MSE {float(metrics[-1]['val_recon']):.6f}")
    exact = ["--n_frames", "8000", "--cosine", "False", "--warmup", "0.0"]  # one LR throughout: resume = longer run
    for gpus in range(1, torch.cuda.device_count() + 1):
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}"]
        straight, resumed = out_dir / f"torchrun_{gpus}_straight", out_dir / f"torchrun_{gpus}_resumed"
        seconds, metrics, _ = timed_run([*exact, "--epochs", "2", "--out_dir", str(straight)], "torchrun", torchrun)
        timed_run([*exact, "--epochs", "1", "--out_dir", str(resumed)], "torchrun, first epoch", torchrun)
        timed_run([*exact, "--epochs", "2", "--resume", "--out_dir", str(resumed)], "torchrun --resume", torchrun)
        same = same_weights(*(load_checkpoint(run / "last.pt")["model"] for run in (straight, resumed)))
        row(f"torchrun --nproc_per_node={gpus}, then --resume", seconds,
            f"{float(metrics[-1]['images_per_s']):.0f} images/s; resumed weights {'identical' if same else 'DIFFER'}")
    moved = out_dir / "cpu_to_gpu"
    timed_run([*exact, "--epochs", "1", "--device", "cpu", "--out_dir", str(moved)], "the CPU run")
    seconds, metrics, _ = timed_run([*exact, "--epochs", "2", "--resume", "--out_dir", str(moved)], "its GPU resume")
    row("a run started on the CPU, resumed on the GPU", seconds, f"epoch 2 at {float(metrics[-1]['images_per_s']):.0f}"
        f" images/s, batch {json.loads((moved / 'config.json').read_text())['batch_size']} kept")
    speed = measure_training(bench, out_dir / "speed")
    row("bench training speed on CUDA", 0.0, f"{speed['ours_images_per_s']:.0f} vs the homework's "
        f"{speed['reference_images_per_s']:.0f} images/s")
    seconds, metrics, _ = timed_run(["--env_id", "CarRacing-v3", "--out_dir", str(out_dir / "car")], "CarRacing")
    row("python train_vae.py --env_id CarRacing-v3 (collection on every core)", seconds,
        f"validation MSE {float(metrics[-1]['val_recon']):.6f}")
    return rows


# ---------------------------------------------------------------- report


def report(results: dict) -> list[tuple[str, str, str]]:
    """(measurement, value, note) rows for the printed table."""
    c, t = results["collection"], results["training"]
    rows = [
        ("collection, kept frames/s", f"{c['ours_frames_per_s']:.0f} vs {c['reference_frames_per_s']:.0f} "
         f"= {c['speedup']:.1f}x", "ours vs homework's"),
        ("  frames vs full render + antialias (MAD)", f"{c['mad_vs_full_render']:.2f}/255", "same picture"),
        ("  frames vs reference's bicubic (MAD)", f"{c['mad_vs_reference']:.2f}/255", "(for information)"),
        ("training, images/s", f"{t['ours_images_per_s']:.0f} vs {t['reference_images_per_s']:.0f} "
         f"= {t['speedup']:.2f}x", f"our default run (THREADS={t['ours_threads']}) vs the homework's step "
         f"({t['reference_threads']} threads, torch's default), each in its own process"),
        ("  frames streamed from disk, images/s", f"{t['streamed_images_per_s']:.0f} vs {t['ours_images_per_s']:.0f} "
         "held in RAM", f"IN_RAM_MB=0 vs the default (None: held where they fit); medians of {t['reader_rounds']} "
         "alternating runs each"),
    ]
    if "quality" in results:
        ours, homework = results["quality"]["ours"][-1], results["quality"]["homework"][-1]
        rows.append(("default run: wall s, held-out MSE", f"{ours['seconds']:.0f} s, {ours['mse']:.6f}",
                     f"homework's run: {homework['seconds']:.0f} s, {homework['mse']:.6f}"))
    for car in results.get("car_quality", []):
        rows.append((f"CarRacing, {car['n_frames']:,} frames: wall s, MSE, road IoU",
                     f"{car['seconds']:.0f} s, {car['mse']:.6f}, {car['road_iou']:.3f}", "its own defaults otherwise"))
    memory = results.get("memory", [])
    for m in memory:
        how = "streamed from disk" if m["streamed"] else "held in RAM"
        growth = (f"; {m['peak_mib'] / memory[0]['peak_mib'] - 1:+.0%} over {memory[0]['frames']:,} frames"
                  if m is not memory[0] else "")
        rows.append((f"peak RSS, {m['frames']:,} frames of {m['img_size']} px", f"{m['peak_mib']:.0f} MiB",
                     f"frames alone {m['frames_mib']:.0f} MiB, {how}, {m['store_mib']:.1f} MiB on disk{growth}"))
    return rows


def threads_rows(results: dict) -> list[tuple[str, str, str, str]]:
    """(THREADS, busy neighbours, wall seconds, images/s) rows, and each run's time against its idle one."""
    runs = results.get("threads", [])
    idle = {r["threads"]: r["seconds"] for r in runs if r["neighbours"] == 0}
    return [(str(r["threads"]), str(r["neighbours"]), f"{r['seconds']:.1f} ({r['seconds'] / idle[r['threads']]:.1f}x "
             "idle)", f"{r['images_per_s']:.0f}") for r in runs]


def scaling_rows(results: dict) -> list[tuple[str, str, str]]:
    """(processes, images/s, held-out MSE) rows: one process against two on the same frames."""
    return [(f"{s['processes']}", f"{s['images_per_s']:.0f}", f"{s['heldout_mse']:.6f}")
            for s in results.get("scaling", [])]


def main(argv: Sequence[str] | None = None) -> None:
    bench = constants.parse_config(__name__, argv)
    cli.require(len(bench.quality_budgets) >= 1 and all(0 < share <= 4 for share in bench.quality_budgets),
                f"QUALITY_BUDGETS must be shares of the default N_FRAMES, each in (0, 4]; got {bench.quality_budgets}")
    cli.require(isinstance(bench.memory_frames, tuple) and all(isinstance(n, int) and 1000 <= n <= 10**8
                                                               for n in bench.memory_frames),
                f"MEMORY_FRAMES must be a tuple of frame counts from 1000 to 10**8, got {bench.memory_frames!r}")
    cli.require(bench.memory_img_size in (32, 64, 128, 256), f"MEMORY_IMG_SIZE must be 32, 64, 128 or 256, got "
                f"{bench.memory_img_size!r}")
    shard_frames = constants.defaults(train_vae).shard_frames
    cli.require(bench.scaling_frames == 0 or bench.scaling_frames >= 2 * shard_frames,
                f"SCALING_FRAMES must be 0 or at least {2 * shard_frames} (a shard for each of the two processes)")
    cli.require(bench.collect_frames >= 1 and bench.train_frames >= 100 and bench.heldout_frames >= 1,
                "COLLECT_FRAMES, HELDOUT_FRAMES must be at least 1 and TRAIN_FRAMES at least 100")
    for name in ("collect_frames", "heldout_frames", "train_frames", "scaling_frames", "threads_frames",
                 "homework_speed_steps", "reader_rounds"):
        cli.require(getattr(bench, name) >= 0, f"{name.upper()} must be 0 or more, got {getattr(bench, name)}")
        cli.require_at_most(getattr(bench, name), 1_000_000, name.upper(), "a benchmark needs far fewer")
    frame_bytes = 3 * constants.defaults(train_vae).img_size ** 2
    compute.require_memory((bench.collect_frames + 2 * bench.heldout_frames) * frame_bytes,
                       f"COLLECT_FRAMES={bench.collect_frames} and HELDOUT_FRAMES={bench.heldout_frames} frames, "
                       "held in memory,", "lower them")
    cli.require_seed(bench.seed)
    cli.require(not bench.gpu or torch.cuda.is_available(), "--gpu is the GPU acceptance check and needs a CUDA GPU; "
                "none is visible here")
    out_dir = files.prepare_out_dir(bench.out_dir)
    results = {"machine": compute.machine()}
    print(f"{results['machine']}")
    heldout_cfg = train_defaults(env_id=ENV_ID, n_frames=bench.heldout_frames, seed=fresh_seed(bench.seed) + 1000)
    heldout = collection.collect_frames(heldout_cfg)[0]["frames"]
    if bench.gpu:
        rows = gpu_acceptance(bench, heldout, out_dir / "gpu")
        report_json = json.dumps(results | {"gpu": rows}, indent=2)
        files.atomic_write(out_dir / "gpu.json", lambda f: f.write(report_json.encode()))
        print(f"\nwrote {out_dir / 'gpu.json'} ({results['machine']['device']})")
        return

    print("1/6 collection ...")
    results["collection"] = measure_collection(
        train_defaults(env_id=ENV_ID, n_frames=bench.collect_frames, seed=bench.seed))
    print("2/6 training speed ...")
    results["training"] = measure_training(bench, out_dir)
    if bench.quality:
        print("3/6 quality against time (our default run at each budget, then the homework's run) ...")
        results["quality"] = measure_quality(bench, heldout, out_dir)
        if bench.car_quality:
            print("3/6 CarRacing's defaults at each budget ...")
            results["car_quality"] = measure_car_quality(bench, out_dir)
    if bench.memory_frames:
        print(f"4/6 peak memory with {', '.join(f'{n:,}' for n in bench.memory_frames)} frames ...")
        results["memory"] = [memory_probe(n, bench.memory_img_size, out_dir / "memory") for n in bench.memory_frames]
    if bench.scaling_frames > 0:
        print(f"5/6 one process against two (torchrun) on the same {bench.scaling_frames:,} frames ...")
        results["scaling"] = measure_scaling(bench.scaling_frames, bench.seed, heldout, out_dir / "scaling")
    if bench.threads_frames > 0:
        print(f"6/6 THREADS 1 and 2, idle and beside two busy programs, {bench.threads_frames:,} frames each ...")
        results["threads"] = measure_threads(bench.threads_frames, bench.seed, out_dir / "threads")

    rows = report(results)
    name_width, value_width = (max(len(row[i]) for row in rows) for i in (0, 1))
    print()
    for name, value, note in rows:
        print(f"{name:<{name_width}}  {value:<{value_width}}  {note}")
    if "scaling" in results:
        print("\nprocesses  images/s  held-out MSE   (the same frames, 2 epochs each)")
        for processes, images_per_s, mse in scaling_rows(results):
            print(f"{processes:>9}  {images_per_s:>8}  {mse}")
    if "threads" in results:
        print("\nTHREADS  busy neighbours  wall s            images/s")
        for threads, neighbours, seconds, images_per_s in threads_rows(results):
            print(f"{threads:>7}  {neighbours:>15}  {seconds:<16}  {images_per_s}")
    report_json = json.dumps(results | {"table": rows, "scaling_table": scaling_rows(results),
                                        "threads_table": threads_rows(results)}, indent=2)
    files.atomic_write(out_dir / "bench.json", lambda f: f.write(report_json.encode()))
    print(f"\nwrote {out_dir / 'bench.json'}" + (f" and {out_dir / 'quality_vs_time.png'}" if bench.quality else ""))


if __name__ == "__main__":
    cli.run(main)
