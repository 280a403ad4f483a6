"""Constants become typed command-line overrides; bad ones are one clear error."""

from __future__ import annotations

import signal
import sys
import time

import pytest

import train_vae
from worldvae import cli, constants, distributed, progress
from worldvae.cli import UserError
from worldvae.progress import ProgressBar


def test_defaults_come_from_the_constants_at_the_top() -> None:
    cfg = constants.parse_config("train_vae", [])
    assert cfg.env_id == train_vae.ENV_ID and cfg.n_frames == train_vae.N_FRAMES
    assert cfg.angle_range == train_vae.ANGLE_RANGE and cfg.variational is train_vae.VARIATIONAL


def test_overrides_are_parsed_as_literals_of_the_right_type(capsys) -> None:
    cfg = constants.parse_config(
        "train_vae",
        ["--env_id", "Pendulum-v1", "--n_frames", "500", "--lr", "3e-4", "--kl_weight", "1",
         "--angle_range", "[-0.1, 0.2]", "--crop", "(0, 1, 0, 1)", "--variational", "False"],
    )
    assert cfg.env_id == "Pendulum-v1" and cfg.n_frames == 500 and cfg.lr == 3e-4
    assert cfg.kl_weight == 1.0 and isinstance(cfg.kl_weight, float)
    assert cfg.angle_range == (-0.1, 0.2) and cfg.crop == (0, 1, 0, 1) and cfg.variational is False
    assert "override: N_FRAMES = 500" in capsys.readouterr().out


def test_a_bool_flag_alone_means_true_and_none_is_accepted_for_tuples() -> None:
    cfg = constants.parse_config("sample_vae", ["--interactive"])
    assert cfg.interactive is True
    assert constants.parse_config("train_vae", ["--angle_range", "None"]).angle_range is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--n_frames", "lots"], "--n_frames expects an integer, got 'lots'"),
        (["--n_frames", "1.5"], "--n_frames expects an integer"),
        (["--lr", "fast"], "--lr expects a number"),
        (["--variational", "yes"], "--variational expects True or False"),

        (["--no_such_constant", "1"], "unrecognized arguments: --no_such_constant"),
    ],
)
def test_bad_overrides_are_a_user_error(argv: list[str], message: str) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        constants.parse_config("train_vae", argv)


def test_a_tuple_constant_takes_only_numbers() -> None:
    with pytest.raises(UserError, match=r"--quality_budgets expects a tuple of numbers"):
        constants.parse_config("tools.bench", ["--quality_budgets", "(a, b)"])


def test_help_lists_every_constant_with_its_default(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        constants.parse_config("train_vae", ["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # undo argparse line wrapping
    names = [name for name in vars(train_vae) if name.isupper() and not name.startswith("_")]
    assert len(names) >= 18
    for name in names:
        assert f"--{name.lower()}" in text
    assert "(default: 'CartPole-v1')" in text and "pole angle" in text


def test_private_constants_are_not_options_and_every_public_one_is(tmp_path, monkeypatch) -> None:
    module = tmp_path / "knobby.py"
    module.write_text(
        '"""A script."""\n'
        "# data\n"
        "WITH_COMMENT = 1  # documented\n"
        "NO_COMMENT = 2.5\n"
        "MULTI_LINE = (\n    1,\n    2,\n)  # spans lines\n"
        "_PRIVATE = 3  # internal\n"
        "lower = 4\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import knobby

    found = constants.knobs(knobby)
    assert list(found) == ["WITH_COMMENT", "NO_COMMENT", "MULTI_LINE"]
    assert found["WITH_COMMENT"].help == "documented" and found["WITH_COMMENT"].group == "data"
    assert found["NO_COMMENT"].help == "" and found["MULTI_LINE"].help == "spans lines"
    assert constants.parse_config("knobby", ["--no_comment", "3"]).no_comment == 3.0
    with pytest.raises(UserError, match="unrecognized arguments: --_private"):
        constants.parse_config("knobby", ["--_private", "3"])


def test_abbreviated_flags_are_refused() -> None:
    with pytest.raises(UserError, match="unrecognized arguments: --n_frame"):
        constants.parse_config("train_vae", ["--n_frame", "100"])


def test_a_misspelled_flag_gets_the_close_names_suggested() -> None:
    with pytest.raises(UserError, match=r"unrecognized arguments: --n_frame 100; did you mean --n_frames\?"):
        constants.parse_config("train_vae", ["--n_frame", "100"])
    with pytest.raises(UserError, match=r"--laten_dim 1; did you mean --latent_dim\?"):
        constants.parse_config("train_vae", ["--laten_dim", "1"])
    with pytest.raises(UserError, match=r"unrecognized arguments: --bogus 1 \(see --help\)"):
        constants.parse_config("train_vae", ["--bogus", "1"])


def test_an_error_reason_is_one_line_or_the_type_name() -> None:
    assert cli.reason(RuntimeError("first line\nsecond line")) == "first line"
    assert cli.reason(RuntimeError("x" * 500), limit=10) == "x" * 10
    assert cli.reason(RuntimeError("")) == "RuntimeError"


def test_progress_tells_the_time_left_the_speed_and_a_running_note(capsys, monkeypatch) -> None:
    now = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    with ProgressBar(40, "epoch 1/2", "batch", images_per_unit=8, every=0) as bar:
        now[0] = 110.0
        bar.update(10, note="loss 0.00123")
        now[0] = 130.0
        bar.update(10)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "epoch 1/2: 10/40 batches (10s so far, ~30s left), loss 0.00123, 8 images/s"
    assert lines[1] == "epoch 1/2: 20/40 batches (30s so far, ~30s left), loss 0.00123, 5 images/s"


def test_progress_is_part_of_standard_output_which_a_silenced_rank_drops(capsys) -> None:
    with ProgressBar(3, "work", "step", every=0) as bar:
        bar.update()
        bar.update(2)
    out, err = capsys.readouterr()
    assert "work: 3/3 steps" in out and err == ""
    real = sys.stdout
    try:
        distributed.print_only_on_main(distributed.Ranks(rank=1, world=2, local_world=2, launched=True))
        assert sys.stdout is not real and not sys.stdout.isatty()
        with ProgressBar(2, "hidden", "step", every=0) as bar:
            bar.update(2)
    finally:
        silenced, sys.stdout = sys.stdout, real
        silenced.close()
    assert "hidden" not in capsys.readouterr().out


def test_a_stop_that_no_step_reaches_ends_the_run_after_its_grace() -> None:
    """A step that hangs must not hold a Ctrl-C forever: after the grace the stop acts as a second signal."""
    with pytest.raises(KeyboardInterrupt), cli.StopRequests(grace=0.2) as stop:
        signal.raise_signal(signal.SIGTERM)
        assert stop.signum == signal.SIGTERM
        for _ in range(100_000):  # a loop that never checks stop.signum, as a hung step
            time.sleep(0.01)
