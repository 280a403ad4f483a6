"""The command-line contract shared by every script: one-line errors, exit codes, clean stops.

A problem the user can fix is a UserError: `run` prints it as one line and exits 1. A
signal (Ctrl-C, SIGTERM) asks loops to stop at their next step (`StopRequests`), and the
work that stopped says what it kept (`Stopped`, exit 128 + the signal number).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any


class UserError(Exception):
    """A problem the user can fix (a bad constant, a missing file): one line, exit 1."""


def reason(error: BaseException, limit: int = 200) -> str:
    """An exception's message cut to its first line (and `limit` characters), for a one-line error;
    its type name when the message is empty."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__


def require(condition: bool, message: str) -> None:
    """Raise UserError(message) unless `condition` holds: a constant's check in one line."""
    if not condition:
        raise UserError(message)


def require_seed(seed: int, name: str = "SEED") -> None:
    """Seeds go to numpy, torch and the env: all take 0 .. 2**32 - 1. `name`: the constant that gave it."""
    require(0 <= seed < 2**32, f"{name} must lie in 0 .. 2**32 - 1 (numpy, torch and gymnasium all take it), "
            f"got {seed}")


def require_learning_rate(lr: float) -> None:
    """Adam moves each weight by about LR a step: below 1e-9 no float32 weight moves, above 10 every step
    throws every weight."""
    require(1e-9 <= lr <= 10, f"LR must lie in 1e-09 .. 10 (Adam moves each weight by about LR a step), got {lr}")


def require_at_most(value: float, limit: float, name: str, why: str) -> None:
    """A size constant's upper edge: past it the run cannot work (or would take an absurd allocation)."""
    require(value <= limit, f"{name}={value!r} is above {limit:,}: {why}")


STOP_GRACE_SECONDS = float(os.environ.get("VAE_STOP_GRACE", 120))  # a stop not reached in this long ends the run


class Stopped(Exception):
    """Work stopped by a signal after saving what it had; exits with 128 + the signal number."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class StopRequests:
    """While active, SIGINT (Ctrl-C) and SIGTERM only set `signum`; loops check it between
    steps, so a stop never lands halfway through an optimizer update or a file write.
    A second signal stops at once."""

    def __init__(self, grace: float = STOP_GRACE_SECONDS) -> None:
        self.signum: int | None = None
        self.grace = grace
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: object) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        print(f"\n{signal.Signals(signum).name} received: stopping after this step (at most {self.grace:.0f} s; "
              "again to stop at once)", file=sys.stderr)
        if hasattr(signal, "SIGALRM"):  # a step that never ends (a hang) must not hold the stop: past the grace,
            self._previous.setdefault(signal.SIGALRM, signal.signal(signal.SIGALRM, self._give_up))  # as a 2nd signal
            signal.setitimer(signal.ITIMER_REAL, self.grace)

    def _give_up(self, _signum: int, _frame: object) -> None:
        print(f"no step ended within {self.grace:.0f} s of the stop: stopping now", file=sys.stderr)
        raise KeyboardInterrupt

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    def __enter__(self) -> StopRequests:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *_exc: object) -> None:
        if getattr(signal, "SIGALRM", None) in self._previous:  # the grace's alarm, no longer needed
            signal.setitimer(signal.ITIMER_REAL, 0)
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def run(main: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None = None) -> None:
    """Run a script's main(argv), turning user errors and interrupts into one line and an exit code."""
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # progress lines reach a log file as they happen
    try:
        main(argv)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except Stopped as stop:
        print(stop, file=sys.stderr)
        sys.exit(stop.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
