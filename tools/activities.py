"""The homework's five activities, each as the two commands that do it (docs/homework.md).

    python tools/activities.py                # all five, one after another: about 12 minutes on 2 cores
    python tools/activities.py --activity 5   # one of them

Each activity trains with `train_vae.py` into OUT_DIR/activityN and then, as the homework asks,
saves two generated images with `sample_vae.py --n_samples 2`: OUT_DIR/activityN/samples/
sample_000.png and sample_001.png. Running the two commands by hand does the same.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: its scripts and the library
import sample_vae  # noqa: E402
import train_vae  # noqa: E402
from worldvae import cli, constants  # noqa: E402

# -----------------------------------------------------------------------------
ACTIVITY = 0  # which activity to run, 1 .. 5; 0: all five
OUT_DIR = "outputs"  # activity N trains into OUT_DIR/activityN and saves its two images there
# -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Activity:
    number: int
    title: str
    train_flags: tuple[str, ...]  # what train_vae.py is told beyond its defaults and --out_dir


# Activities 1 and 2 come before the homework's filters: an episode runs until CartPole ends it (random
# actions drop the pole within a few dozen steps, long before 250 observations) and every angle is kept.
_ACTIVITIES = (
    Activity(1, "the autoencoder", ("--variational", "False", "--reset_after", "250", "--angle_range", "all")),
    Activity(2, "the VAE", ("--reset_after", "250", "--angle_range", "all")),
    Activity(3, "reset after the first 20 observations", ("--reset_after", "20", "--angle_range", "all")),
    Activity(4, "keep pole angles in [-0.3, 0.3] rad", ("--reset_after", "20", "--angle_range", "(-0.3, 0.3)")),
    Activity(5, "another env: Pendulum-v1", ("--env_id", "Pendulum-v1")),
)
_SAMPLES = 2  # the homework's "save two generated images"


def listed() -> tuple[Activity, ...]:
    """The five activities, in the homework's order."""
    return _ACTIVITIES


def commands(activity: Activity, out_dir: str | Path) -> list[list[str]]:
    """The activity's two commands, as a user types them (script first)."""
    run = Path(out_dir) / f"activity{activity.number}"
    return [["train_vae.py", *activity.train_flags, "--out_dir", str(run)],
            ["sample_vae.py", "--checkpoint", str(run / "vae.pt"), "--n_samples", str(_SAMPLES)]]


def shown(command: Sequence[str]) -> str:
    """A command as a user types it into a shell."""
    return f"python {shlex.join(command)}"


def run_activity(activity: Activity, out_dir: str | Path, extra_train_flags: Sequence[str] = ()) -> Path:
    """Train and sample as the activity's commands do (`extra_train_flags` appended to the training's,
    for a smaller run); its folder."""
    train, sample = commands(activity, out_dir)
    print(f"activity {activity.number}, {activity.title}: {shown(train)}")
    train_vae.main([*train[1:], *extra_train_flags])
    sample_vae.main(sample[1:])
    return Path(out_dir) / f"activity{activity.number}"


def main(argv: Sequence[str] | None = None) -> None:
    cfg = constants.parse_config(__name__, argv)
    numbers = [activity.number for activity in _ACTIVITIES]
    cli.require(cfg.activity in (0, *numbers), f"ACTIVITY must be 0 (all) or one of {numbers}, got {cfg.activity!r}")
    chosen = [activity for activity in _ACTIVITIES if cfg.activity in (0, activity.number)]
    for activity in chosen:  # a later activity's folder that holds a run is refused before the first trains
        train_vae.main(commands(activity, cfg.out_dir)[0][1:], check_only=True)
    for activity in chosen:
        run_activity(activity, cfg.out_dir)


if __name__ == "__main__":
    cli.run(main)
