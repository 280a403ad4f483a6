"""Command-line overrides for the constants at the top of each script.

Every script keeps its knobs as UPPER_CASE constants between two `# ---` rules, with
one trailing comment each.
`parse_config` turns them into `--lower_case_name value` options (the comment becomes
the --help text), checks each override against the type of its default, and returns
the final values as a namespace with lower-case names.

Values are read with `ast.literal_eval`, never `exec`, so `--angle_range "(-0.1, 0.1)"`
and `--angle_range None` work and nothing else runs. A string constant also takes a
bare word (`--env_id Pendulum-v1`); a bool constant given alone means True
(`--resume`).
"""

from __future__ import annotations

import argparse
import ast
import inspect
import re
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

_CONSTANT_LINE = re.compile(r"^([A-Z][A-Z0-9_]*)\s*=.*?#\s*(.+)$")


class UserError(Exception):
    """A problem the user can fix (a bad constant, a missing file): one line, exit 1."""


class Stopped(Exception):
    """Work stopped by a signal after saving what it had; exits with 128 + the signal number."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class StopRequests:
    """While active, SIGINT (Ctrl-C) and SIGTERM only set `signum`; loops check it between
    steps, so a stop never lands halfway through an optimizer update or a file write.
    A second signal stops at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: object) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        print(f"\n{signal.Signals(signum).name} received: stopping after this step", file=sys.stderr)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    def __enter__(self) -> StopRequests:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *_exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def _constants(module: ModuleType) -> dict[str, tuple[Any, str]]:
    """The UPPER_CASE constants between the module's first two `# ---` rules, in source
    order, with their comments. Constants below the block are internal: no option."""
    found = {}
    rules = 0
    for line in inspect.getsource(module).splitlines():
        rules += line.startswith("# ---")
        match = _CONSTANT_LINE.match(line) if rules == 1 else None
        if match and match.group(1) in vars(module):
            name, comment = match.groups()
            found[name] = (getattr(module, name), comment.strip())
    return found


def defaults(module: ModuleType, **overrides: Any) -> SimpleNamespace:
    """A module's constants as parse_config returns them, with `overrides` (lower-case names)."""
    return SimpleNamespace(**{name.lower(): value for name, (value, _) in _constants(module).items()} | overrides)


def _convert(name: str, text: str, default: Any) -> Any:
    """Read `text` as a value for constant `name`, or raise UserError naming what was expected."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text  # a bare word: only a string constant will accept it
    flag = "--" + name.lower()
    if isinstance(default, bool):
        ok = isinstance(value, bool)
        expected = "True or False"
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
        expected = "an integer"
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
        expected = "a number"
    elif isinstance(default, str):
        ok, expected = True, "a string"
        value = value if isinstance(value, str) else text
    elif isinstance(default, tuple) or default is None:
        ok = value is None or (
            isinstance(value, (tuple, list))
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        )
        value = tuple(value) if isinstance(value, list) else value
        expected = "a tuple of numbers like (-0.1, 0.1), or None"
    else:
        raise TypeError(f"constant {name} has unsupported type {type(default).__name__}")
    if not ok:
        raise UserError(f"{flag} expects {expected}, got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of usage + traceback-like noise
        raise UserError(f"{message} (see --help)")


def parse_config(module_name: str, argv: Sequence[str] | None = None) -> SimpleNamespace:
    """Defaults from the module's constants, with command-line overrides applied."""
    module = sys.modules[module_name]
    constants = _constants(module)
    parser = _Parser(
        prog=f"python {module.__file__.rsplit('/', 1)[-1]}",
        description=(module.__doc__ or "").strip().splitlines()[0],
        epilog="Values are Python literals: 64, 1e-3, True, None, \"(-0.1, 0.1)\".",
    )
    for name, (default, comment) in constants.items():
        bool_flag = {"nargs": "?", "const": "True"} if isinstance(default, bool) else {}
        parser.add_argument(
            "--" + name.lower(),
            metavar="VALUE",
            help=f"{comment} (default: {default!r})",
            **bool_flag,
        )
    args = vars(parser.parse_args(argv))
    config = {}
    for name, (default, _) in constants.items():
        text = args[name.lower()]
        if text is None:
            config[name.lower()] = default
        else:
            config[name.lower()] = _convert(name, text, default)
            print(f"override: {name} = {config[name.lower()]!r}")
    return SimpleNamespace(**config)


def prepare_out_dir(out_dir: str) -> Path:
    """Create OUT_DIR and prove it is writable before any long work."""
    path = Path(out_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
    except OSError as error:
        raise UserError(f"OUT_DIR={out_dir!r} cannot be written ({error.strerror or error})") from None
    return path


def run(main: Callable[[Sequence[str] | None], None]) -> None:
    """Run a script's main(), turning user errors and interrupts into exit codes."""
    sys.stdout.reconfigure(line_buffering=True)  # progress lines reach a log file as they happen
    try:
        main(None)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except Stopped as stop:
        print(stop, file=sys.stderr)
        sys.exit(stop.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
