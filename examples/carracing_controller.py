"""A controller drives CarRacing from the vision stage's codes alone: World Models' test of a V stage.

    pip install -r requirements-envs.txt                     # gymnasium[box2d]: CarRacing
    python examples/carracing_controller.py --evaluate True  # the shipped controller on 100 held-out tracks
    python examples/carracing_controller.py --rollout True   # its drive: frames, reconstructions, return so far
    python examples/carracing_controller.py                  # train one (outputs/controller/controller.json)
    python examples/carracing_controller.py --resume True    # go on after Ctrl-C or kill -9

The controller reads one thing: the code (LatentObservation's mean, LATENT_DIM numbers) of the frame
the car sees, never the simulator's state. It is World Models' C: action = W z + b (HIDDEN > 0 puts
one tanh layer between), steering tanh, gas (tanh + 1) / 2, brake clip(tanh, 0, 1). It waits out the
50 frames that zoom in on the car at each episode's start (envs.py's skip_first): their codes are of
frames the V stage never saw.

World Models trained C by CMA-ES on the return alone, on 64 cores for days. Here it learns by DAgger
(Ross, Gordon and Bagnell, 2011) in minutes: a teacher that reads the track from the simulator
(`teach`: steering toward the track a few tiles ahead, braking in corners) labels every
frame the controller sees with the action it would take. In round 0 the teacher drives; in every
later round the controller drives, the teacher taking over at each step with probability MIX ** round,
so the controller also learns from frames of its own mistakes, which copying the teacher's drives alone
never shows it. After each round the controller is fit (Adam, FIT_STEPS full-batch steps) to every
label so far. The teacher is privileged; the controller is not.

Training drives tracks SEED * 100,000 onward, evaluation EVAL_TRACKS tracks from EVAL_SEED on; the
controller file records its training tracks, and an evaluation that would drive one is refused.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: the library beside the scripts
from worldvae import cli, compute, constants, files  # noqa: E402
from worldvae.checkpoints import build_vae, load_checkpoint, run_config  # noqa: E402
from worldvae.cli import UserError  # noqa: E402
from worldvae.compute import to_unit_float  # noqa: E402
from worldvae.pictures import labelled_grid, plot_curves  # noqa: E402
from worldvae.policies import heading_error  # noqa: E402
from worldvae.progress import ProgressBar  # noqa: E402

# -----------------------------------------------------------------------------
# the vision stage and the controller
CHECKPOINT = "pretrained/carracing.pt"  # the CarRacing VAE whose codes the controller reads
HIDDEN = 0  # 0: World Models' linear controller; N: one tanh layer of N units before the actions
# training (DAgger)
ROUNDS = 8  # rounds of driving and fitting; round 0 the teacher drives, later rounds the controller
EPISODES = 16  # episodes (tracks) driven each round
EPISODE_STEPS = 1000  # a training episode ends here at the latest (gymnasium ends CarRacing's at 1000); evaluation
# always drives whole episodes
MIX = 0.5  # round r takes the teacher's action, not the controller's, at each step with probability MIX ** r
FIT_STEPS = 1000  # full-batch Adam steps fitting the controller to every label so far, after each round
LR = 1e-2  # Adam's learning rate for that fit
SEED = 0  # training drives tracks SEED * 100,000 onward; also seeds the controller's first weights
WORKERS = 2  # processes driving episodes side by side (spawned; one thread each)
OUT_DIR = "outputs/controller"  # training_state.pt, controller.json, progress.png, evaluation.json, rollout.gif
RESUME = False  # go on with the stopped (Ctrl-C, kill -9) training in OUT_DIR
# evaluation and pictures of a trained controller
EVALUATE = False  # drive CONTROLLER on EVAL_TRACKS held-out tracks beside a random policy; no training
ROLLOUT = False  # draw CONTROLLER's drive on track EVAL_SEED as OUT_DIR/rollout.gif; no training
CONTROLLER = "pretrained/carracing_controller.json"  # the controller --evaluate and --rollout drive
EVAL_TRACKS = 100  # tracks of the evaluation, as World Models' figures
EVAL_SEED = 1_000_000  # the first evaluation track; training never drives from here on
# -----------------------------------------------------------------------------

_ENV_ID = "CarRacing-v3"
_ZOOM_STEPS = 50  # the zoom at each episode's start (envs.py's CarRacing skip_first): no action is taken
_ACTIONS = 3  # steering, gas, brake
_TRACKS_PER_SEED = 100_000  # training tracks of SEED s: s * _TRACKS_PER_SEED onward
# the teacher (`teach`): nothing it does depends on the speed, which no code holds (the V stage's crop leaves the
# status bar out): a controller can copy it. Measured alone on tracks 2,000,200 .. 2,000,215 (AMD EPYC): 808 mean,
# worst 600; braking at 0.2 instead stopped the car for good on 4 of the 16 tracks
# follow: steering is -follow x the angle (rad) to the track 6 tiles ahead, clipped to -1 .. 1; gas: on straights;
# corner: where the track ahead lies more than this (rad) off the heading, no gas but this much brake
_TEACHER = {"follow": 2.0, "gas": 0.3, "corner": 0.5, "brake": 0.1}
# World Models (Ha and Schmidhuber, 2018), CarRacing, mean ± std over 100 random tracks
_WORLD_MODELS = {"code only, linear controller": (632, 251), "code only, one hidden layer": (788, 141),
                "full world model (V and M)": (906, 21)}
_FORMAT = "worldvae-carracing-controller/1"  # controller.json's "format"
_STATE = "training_state.pt"
_ROLLOUT_EVERY = 4  # the rollout GIF keeps every 4th step: CarRacing steps 50 times a second, the GIF shows 12.5


# ---------------------------------------------------------------------- checks
def check(cfg: SimpleNamespace) -> None:
    """Every constant a user can set, before anything is made or written."""
    cli.require(0 <= cfg.hidden <= 1024, f"HIDDEN must lie in 0 .. 1024, got {cfg.hidden}")
    cli.require(1 <= cfg.rounds <= 1000, f"ROUNDS must lie in 1 .. 1000, got {cfg.rounds}")
    cli.require(1 <= cfg.episodes <= 1000, f"EPISODES must lie in 1 .. 1000, got {cfg.episodes}")
    cli.require(_ZOOM_STEPS < cfg.episode_steps <= 10**6, f"EPISODE_STEPS must lie in {_ZOOM_STEPS + 1} .. 1000000 "
                f"(the first {_ZOOM_STEPS} steps zoom in on the car), got {cfg.episode_steps}")
    cli.require(0 <= cfg.mix <= 1, f"MIX must lie in 0 .. 1 (a probability), got {cfg.mix}")
    cli.require(1 <= cfg.fit_steps <= 10**6, f"FIT_STEPS must lie in 1 .. 1000000, got {cfg.fit_steps}")
    cli.require_learning_rate(cfg.lr)
    cli.require_seed(cfg.seed)
    cli.require(1 <= cfg.workers <= 256, f"WORKERS must lie in 1 .. 256, got {cfg.workers}")
    cli.require(1 <= cfg.eval_tracks <= 100_000, f"EVAL_TRACKS must lie in 1 .. 100000, got {cfg.eval_tracks}")
    cli.require_seed(cfg.eval_seed + cfg.eval_tracks - 1, "EVAL_SEED + EVAL_TRACKS - 1")
    cli.require(cfg.eval_seed >= 0, f"EVAL_SEED must be at least 0, got {cfg.eval_seed}")
    cli.require(not (cfg.evaluate and cfg.rollout), "EVALUATE and ROLLOUT each run alone: give one of them")
    if not (cfg.evaluate or cfg.rollout):
        tracks = training_tracks(cfg)
        cli.require(not overlaps(tracks, (cfg.eval_seed, cfg.eval_tracks)),
                    f"training would drive tracks {tracks[0]} .. {sum(tracks) - 1}, which reach the evaluation's "
                    f"(EVAL_SEED={cfg.eval_seed}): give another SEED, or fewer ROUNDS or EPISODES")
    if not files.is_file(Path(cfg.checkpoint), "CHECKPOINT"):
        raise UserError(f"no checkpoint at {cfg.checkpoint}: keep the shipped pretrained/carracing.pt, or train one "
                        f"(python train_vae.py --env_id {_ENV_ID})")
    env_id = run_config(load_checkpoint(cfg.checkpoint), cfg.checkpoint)["env_id"]
    cli.require(env_id == _ENV_ID, f"{cfg.checkpoint} is a model of {env_id} frames; the controller drives "
                f"{_ENV_ID}: give a {_ENV_ID} checkpoint")
    import_box2d()


def import_box2d() -> None:
    """CarRacing needs Box2D (gymnasium[box2d]), an optional install: one line if it is missing."""
    try:
        import Box2D  # noqa: F401
    except ImportError:
        raise UserError("CarRacing needs Box2D, which is not installed: pip install -r requirements-envs.txt") from None


def training_tracks(cfg: SimpleNamespace) -> tuple[int, int]:
    """(first track, number of tracks) that training drives: round r's episode e drives first + r * EPISODES + e."""
    return cfg.seed * _TRACKS_PER_SEED, cfg.rounds * cfg.episodes


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether two (first, count) ranges of tracks share one."""
    return a[0] < b[0] + b[1] and b[0] < a[0] + a[1]


# ---------------------------------------------------------------------- the controller
def controller_net(latent_dim: int, hidden: int) -> nn.Sequential:
    """The controller's layers, before the actions' squashing (`act`)."""
    if hidden:
        return nn.Sequential(nn.Linear(latent_dim, hidden), nn.Tanh(), nn.Linear(hidden, _ACTIONS))
    return nn.Sequential(nn.Linear(latent_dim, _ACTIONS))


def act(net: nn.Sequential, codes: torch.Tensor) -> torch.Tensor:
    """World Models' actions from codes (N, LATENT_DIM): steering in -1 .. 1, gas and brake in 0 .. 1."""
    out = torch.tanh(net(codes))
    return torch.stack([out[:, 0], (out[:, 1] + 1) / 2, out[:, 2].clamp(min=0)], dim=1)


def weights_digest(checkpoint: dict) -> str:
    """A digest of a VAE's weights: which V stage a controller was trained on."""
    digest = hashlib.sha256()
    for name, tensor in sorted(checkpoint["model"].items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def controller_record(net: nn.Sequential, hidden: int, vision: dict, training: dict) -> dict:
    """What controller.json holds: the weights as lists, the V stage it reads, how it was trained."""
    return {"format": _FORMAT, "hidden": hidden, "latent_dim": net[0].in_features,
            "weights": {name: tensor.tolist() for name, tensor in net.state_dict().items()},
            "vision": vision, "training": training}


def load_controller(path: str, checkpoint: str) -> tuple[nn.Sequential, dict]:
    """The controller saved at `path`, checked against the V stage at `checkpoint`; one line if it is missing,
    damaged, or was trained on another V stage."""
    if not files.is_file(Path(path), "CONTROLLER"):
        raise UserError(f"no controller at {path}: train one (python examples/carracing_controller.py), or keep the "
                        "shipped pretrained/carracing_controller.json")
    try:
        record = json.loads(Path(path).read_text())
        cli.require(isinstance(record, dict) and record.get("format") == _FORMAT, "not a controller file")
        net = controller_net(int(record["latent_dim"]), int(record["hidden"]))
        net.load_state_dict({name: torch.tensor(value) for name, value in record["weights"].items()})
        first, count = (int(n) for n in record["training"]["tracks"])
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, UserError) as error:
        raise UserError(f"{path} is not a readable controller file ({cli.reason(error, 120)}): train one again, "
                        "or give another CONTROLLER") from None
    digest = weights_digest(load_checkpoint(checkpoint))
    cli.require(record["vision"].get("weights_digest") == digest,
                f"{path} was trained on the codes of another V stage ({record['vision'].get('checkpoint')}), not "
                f"{checkpoint}'s: give the CHECKPOINT it was trained on")
    record["training"]["tracks"] = (first, count)
    return net.eval(), record


# ---------------------------------------------------------------------- driving (in the workers)
_worker: dict[str, Any] = {}


def start_worker() -> None:
    """A driving process: Ctrl-C is the parent's to handle (it saves, then stops the pool); one thread."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    _worker.clear()


def make_env(checkpoint: str):
    """CarRacing seen through the checkpoint's codes, made once per process."""
    from worldvae.latent import LatentObservation

    if checkpoint not in _worker:
        _worker[checkpoint] = LatentObservation(gym.make(_ENV_ID), checkpoint, device="cpu")
    return _worker[checkpoint]


def teach(car_racing: gym.Env) -> np.ndarray:
    """The teacher's action: it reads the track from the simulator (`car_racing`, unwrapped)."""
    error = heading_error(car_racing)
    corner = abs(error) > _TEACHER["corner"]
    return np.array([np.clip(-_TEACHER["follow"] * error, -1.0, 1.0), 0.0 if corner else _TEACHER["gas"],
                     _TEACHER["brake"] if corner else 0.0], np.float32)


def drive(task: dict) -> dict:
    """One episode on track `task["track"]` (whole, or its first "steps"), driven by the teacher (no "weights"),
    the controller (its "weights", "hidden"; the teacher taking over at each step with probability "mix") or
    uniformly random actions ("random"). Returns the return, the steps, and with "label", every code the
    controller acted on beside the teacher's action for it."""
    env = make_env(task["checkpoint"])
    code, _ = env.reset(seed=task["track"])
    env.action_space.seed(task["track"])
    net, mix = None, np.random.default_rng(task["track"])
    if "weights" in task:
        net = controller_net(env.observation_space.shape[0], task["hidden"])
        net.load_state_dict({name: torch.tensor(value) for name, value in task["weights"].items()})
    codes, labels, total, steps, done = [], [], 0.0, 0, False
    while not done:
        if task.get("random"):
            action = env.action_space.sample()
        elif steps < _ZOOM_STEPS:
            action = np.zeros(_ACTIONS, np.float32)
        else:
            label = teach(env.unwrapped) if net is None or task.get("label") else None
            if task.get("label"):
                codes.append(code)
                labels.append(label)
            teaches = net is None or mix.random() < task.get("mix", 0.0)
            action = label if teaches else act(net, torch.from_numpy(code)[None])[0].detach().numpy()
        code, reward, terminated, truncated, _ = env.step(action)
        total, steps = total + float(reward), steps + 1
        done = terminated or truncated or steps == task.get("steps")
    return {"track": task["track"], "return": total, "steps": steps,
            "codes": np.array(codes, np.float32).reshape(-1, env.observation_space.shape[0]),
            "labels": np.array(labels, np.float32).reshape(-1, _ACTIONS)}


def driving_pool(workers: int):
    """`workers` spawned processes that drive episodes (CarRacing's Box2D and the encoder of one frame are one
    thread each: a process per core)."""
    return multiprocessing.get_context("spawn").Pool(workers, initializer=start_worker)


def drive_all(pool, tasks: list[dict], bar: ProgressBar) -> list[dict]:
    """Every task's episode, in the tasks' order."""
    results = []
    for result in pool.imap(drive, tasks):
        results.append(result)
        bar.update(1, note=f"return {result['return']:.0f} on track {result['track']}")
    return results


# ---------------------------------------------------------------------- training
def fit(codes: np.ndarray, labels: np.ndarray, cfg: SimpleNamespace, round_: int) -> nn.Sequential:
    """A controller fit afresh to every (code, teacher's action) so far: full-batch Adam on the squared error
    of the actions, from weights drawn from SEED and the round (so a resumed round fits as the first did)."""
    torch.manual_seed(cfg.seed * 1000 + round_)
    net = controller_net(codes.shape[1], cfg.hidden)
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    x, y = torch.from_numpy(codes), torch.from_numpy(labels)
    for _ in range(cfg.fit_steps):
        optimizer.zero_grad()
        loss = ((act(net, x) - y) ** 2).mean()
        loss.backward()
        optimizer.step()
    return net


_SHARED = ("checkpoint", "hidden", "episodes", "episode_steps", "mix", "fit_steps", "lr", "seed")


def training_config(cfg: SimpleNamespace) -> dict:
    """The constants a resumed training must share with the stopped one (ROUNDS may grow: more rounds go on)."""
    return {name: getattr(cfg, name) for name in _SHARED}


def start_or_resume(cfg: SimpleNamespace, out_dir: Path) -> dict:
    """A fresh training state, or the stopped one in OUT_DIR (--resume); a second run into a folder holding
    one, and a controller.json that no training wrote, are refused before anything is written."""
    state_path, controller_path = out_dir / _STATE, out_dir / "controller.json"
    if not cfg.resume:
        cli.require(not state_path.exists(), f"OUT_DIR={str(out_dir)!r} holds a training ({_STATE}): give another "
                    "--out_dir to keep it, or --resume True to go on with it")
        files.refuse_foreign_file(controller_path, lambda _: False, "a controller this training wrote")
        latent_dim = load_checkpoint(cfg.checkpoint)["model_args"]["latent_dim"]
        return {"config": training_config(cfg), "round": 0, "codes": np.zeros((0, latent_dim), np.float32),
                "labels": np.zeros((0, _ACTIONS), np.float32), "history": [], "weights": None, "seconds": 0.0,
                "machine": compute.machine()}
    if not state_path.exists():
        raise UserError(f"OUT_DIR={str(out_dir)!r} holds no training to resume ({_STATE}): drop --resume to start one")
    try:
        state = torch.load(state_path, weights_only=False)
        saved = state["config"]
    except Exception as error:  # a damaged file: any unpickling error
        raise UserError(f"{state_path} is not a readable training state ({cli.reason(error, 120)}): start afresh "
                        "in another OUT_DIR") from None
    differ = [name for name, value in training_config(cfg).items() if saved.get(name) != value]
    cli.require(not differ, f"{state_path} was trained with other constants ({', '.join(differ)}): give the "
                "stopped training's, or start afresh in another OUT_DIR")
    return state


def save_state(state: dict, out_dir: Path) -> None:
    files.atomic_write(out_dir / _STATE, lambda f: torch.save(state, f))


def save_controller(net: nn.Sequential, cfg: SimpleNamespace, state: dict, out_dir: Path) -> None:
    """controller.json, and progress.png: the controller's return on the tracks of each round it drove."""
    vision = {"checkpoint": cfg.checkpoint, "weights_digest": weights_digest(load_checkpoint(cfg.checkpoint))}
    training = {"method": "DAgger", "teacher": _TEACHER, "rounds": state["round"],
                "tracks": list(training_tracks(cfg)), "labels": len(state["labels"]),
                "seconds": round(state["seconds"], 1), "machine": state["machine"], "date": state["date"]} \
        | training_config(cfg)
    record = files.json_safe(controller_record(net, cfg.hidden, vision, training) | {"history": state["history"]})
    files.atomic_write(out_dir / "controller.json", lambda f: f.write(json.dumps(record, indent=1).encode()))
    rounds = [row["round"] for row in state["history"]]
    plot_curves({"return on the round's training tracks": {
        "mean": (rounds, [row["mean"] for row in state["history"]]),
        "worst": (rounds, [row["worst"] for row in state["history"]])}}, out_dir / "progress.png")


def train(cfg: SimpleNamespace) -> None:
    """DAgger: ROUNDS rounds of driving EPISODES tracks and fitting the controller to every label so far."""
    state = start_or_resume(cfg, Path(cfg.out_dir))
    out_dir = files.prepare_out_dir(cfg.out_dir)
    files.remove_litter(out_dir)
    first, _ = training_tracks(cfg)
    bar = ProgressBar(cfg.rounds * cfg.episodes, "DAgger", "episode", initial=state["round"] * cfg.episodes)
    with driving_pool(cfg.workers) as pool, cli.StopRequests() as stop, bar:
        print(f"DAgger on the codes of {cfg.checkpoint}: {cfg.rounds} rounds of {cfg.episodes} tracks (from track "
              f"{first}), {'linear' if not cfg.hidden else f'{cfg.hidden} hidden units'}, into {out_dir}"
              + (f"; resuming after round {state['round']}" if state["round"] else ""))
        for round_ in range(state["round"], cfg.rounds):
            started = time.monotonic()
            tasks = [{"checkpoint": cfg.checkpoint, "track": first + round_ * cfg.episodes + e, "label": True,
                      "steps": cfg.episode_steps}
                     | ({"weights": state["weights"], "hidden": cfg.hidden, "mix": cfg.mix ** round_} if round_ else {})
                     for e in range(cfg.episodes)]
            episodes = drive_all(pool, tasks, bar)
            codes = np.concatenate([state["codes"]] + [episode["codes"] for episode in episodes])
            labels = np.concatenate([state["labels"]] + [episode["labels"] for episode in episodes])
            net = fit(codes, labels, cfg, round_)
            returns = [episode["return"] for episode in episodes]
            row = {"round": round_, "driver": "controller" if round_ else "teacher", "mean": float(np.mean(returns)),
                   "worst": float(min(returns)), "labels": len(labels)}
            state |= {"round": round_ + 1, "codes": codes, "labels": labels, "history": state["history"] + [row],
                      "weights": {name: t.tolist() for name, t in net.state_dict().items()},
                      "seconds": state["seconds"] + time.monotonic() - started, "date": time.strftime("%Y-%m-%d")}
            save_state(state, out_dir)
            save_controller(net, cfg, state, out_dir)
            bar.update(0, note=f"round {round_}: the {row['driver']} drove {row['mean']:.0f} mean")
            print(f"round {round_}: the {row['driver']} drove mean {row['mean']:.0f}, worst {row['worst']:.0f}; "
                  f"fit to {len(labels):,} labels")
            if stop.signum and round_ + 1 < cfg.rounds:
                raise cli.Stopped(f"{stop.name}: stopped after round {round_}, which is saved in {out_dir}: "
                                  "--resume True goes on", stop.signum)
    path = out_dir / "controller.json"
    print(f"controller: {path} ({state['seconds'] / 60:.1f} minutes of driving and fitting); score it: "
          f"python examples/carracing_controller.py --evaluate True --controller {path}")


# ---------------------------------------------------------------------- evaluation and the rollout
def summary(returns: list[float]) -> dict:
    return {"mean": float(np.mean(returns)), "std": float(np.std(returns)), "worst": float(min(returns))}


def evaluate(cfg: SimpleNamespace) -> dict:
    """CONTROLLER and a uniformly random policy on the same EVAL_TRACKS held-out tracks: OUT_DIR/evaluation.json."""
    net, record = load_controller(cfg.controller, cfg.checkpoint)
    trained_on = record["training"]["tracks"]
    held_out = (cfg.eval_seed, cfg.eval_tracks)
    cli.require(not overlaps(trained_on, held_out), f"{cfg.controller} trained on tracks {trained_on[0]} .. "
                f"{sum(trained_on) - 1}, which the evaluation's {held_out[0]} .. {sum(held_out) - 1} reach: give "
                "another EVAL_SEED")
    path = Path(cfg.out_dir) / "evaluation.json"
    files.refuse_foreign_file(path, lambda p: "world_models" in p.read_text(errors="replace"),
                              "an evaluation this script wrote")
    files.prepare_out_dir(cfg.out_dir)
    seeds = list(range(cfg.eval_seed, cfg.eval_seed + cfg.eval_tracks))
    weights = {name: t.tolist() for name, t in net.state_dict().items()}
    tasks = ([{"checkpoint": cfg.checkpoint, "track": s, "weights": weights, "hidden": record["hidden"]} for s in seeds]
             + [{"checkpoint": cfg.checkpoint, "track": s, "random": True} for s in seeds])
    with driving_pool(cfg.workers) as pool, ProgressBar(len(tasks), "evaluation", "episode") as bar:
        episodes = drive_all(pool, tasks, bar)
    returns = [e["return"] for e in episodes[:len(seeds)]]
    random_returns = [e["return"] for e in episodes[len(seeds):]]
    result = ({"controller": cfg.controller, "checkpoint": cfg.checkpoint, "tracks": len(seeds),
               "seeds": [seeds[0], seeds[-1]]} | summary(returns)
              | {"returns": returns, "steps": [e["steps"] for e in episodes[:len(seeds)]],
                 "random": summary(random_returns) | {"returns": random_returns},
                 "world_models": {name: {"mean": m, "std": s} for name, (m, s) in _WORLD_MODELS.items()}})
    files.atomic_write(path, lambda f: f.write(json.dumps(result, indent=1).encode()))
    print(f"{cfg.controller} on {len(seeds)} held-out tracks ({seeds[0]} .. {seeds[-1]}): mean {result['mean']:.0f} "
          f"± {result['std']:.0f}, worst {result['worst']:.0f}")
    print(f"a uniformly random policy, the same tracks: mean {result['random']['mean']:.0f} "
          f"± {result['random']['std']:.0f}, worst {result['random']['worst']:.0f}")
    print("World Models, 100 random tracks: " + "; ".join(f"{name} {m} ± {s}"
                                                          for name, (m, s) in _WORLD_MODELS.items()))
    print(f"wrote {path}")
    return result


def rollout(cfg: SimpleNamespace) -> Path:
    """CONTROLLER's drive on track EVAL_SEED as OUT_DIR/rollout.gif: every 4th frame the V stage saw, its
    reconstruction, and the return so far."""
    net, record = load_controller(cfg.controller, cfg.checkpoint)
    path = Path(cfg.out_dir) / "rollout.gif"
    files.refuse_foreign_file(path, lambda p: p.read_bytes()[:6] in (b"GIF87a", b"GIF89a"), "a GIF")
    files.prepare_out_dir(cfg.out_dir)
    torch.set_num_threads(1)
    env = make_env(cfg.checkpoint)
    vae = build_vae(load_checkpoint(cfg.checkpoint))
    code, _ = env.reset(seed=cfg.eval_seed)
    pictures, total, steps, done = [], 0.0, 0, False
    with torch.no_grad():
        while not done:
            action = (act(net, torch.from_numpy(code)[None])[0].numpy() if steps >= _ZOOM_STEPS
                      else np.zeros(_ACTIONS, np.float32))
            if steps >= _ZOOM_STEPS and (steps - _ZOOM_STEPS) % _ROLLOUT_EVERY == 0:
                frame = torch.from_numpy(env.frame(env.unwrapped.state))[None]
                reconstruction = vae.generate(torch.from_numpy(code)[None]).clamp(0, 1)
                pictures.append(labelled_grid(torch.cat([to_unit_float(frame), reconstruction]), 2,
                                              title=f"step {steps}, return so far {total:.0f}",
                                              col_labels=("frame", "reconstruction")))
            code, reward, terminated, truncated, _ = env.step(action)
            total, steps, done = total + float(reward), steps + 1, terminated or truncated
    from PIL import Image

    images = [Image.fromarray(picture) for picture in pictures]
    files.atomic_write(path, lambda f: images[0].save(f, format="GIF", save_all=True, append_images=images[1:],
                                                      duration=1000 * _ROLLOUT_EVERY // 50, loop=0))
    print(f"{cfg.controller} on track {cfg.eval_seed}: return {total:.0f} in {steps} steps; wrote {path}")
    return path


def main(argv: Sequence[str] | None = None) -> dict | Path | None:
    cfg = constants.parse_config(__name__, argv)
    check(cfg)
    if cfg.evaluate:
        return evaluate(cfg)
    if cfg.rollout:
        return rollout(cfg)
    train(cfg)
    return None


if __name__ == "__main__":
    cli.run(main)
