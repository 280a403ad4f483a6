"""Constants to command-line options: every public UPPER_CASE global of a script is a knob.

`parse_config` turns each into a `--lower_case_name value` option (its trailing comment
becomes the --help text, the comment line above a group of them its heading), checks each
override against the type of its default, and returns the final values as a namespace with
lower-case names. Module constants that are not knobs start with an underscore.

Values are read with `ast.literal_eval`, never `exec`, so `--angle_range "(-0.1, 0.1)"`
and `--angle_range None` work and nothing else runs. A string constant also takes a
bare word (`--env_id Pendulum-v1`); a bool constant given alone means True
(`--resume`). A flag must be spelled out in full: `--n_frame` is an error.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import functools
import importlib
import io
import math
import os
import tokenize
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

from worldvae import REPO
from worldvae.cli import UserError


@dataclass(frozen=True)
class Knob:
    """One constant: its default value, --help text and group heading."""

    value: Any
    help: str
    group: str


def knobs(module: ModuleType) -> dict[str, Knob]:
    """The module's public UPPER_CASE globals, in source order, with their comments."""
    return {name: Knob(value=getattr(module, name), help=help_text, group=group)
            for name, help_text, group in _commented_constants(module.__file__)}


@functools.cache  # every parse_config and defaults() asks; tokenizing a script each time cost ~50 ms
def _commented_constants(path: str) -> tuple[tuple[str, str, str], ...]:
    """(name, trailing comment, group heading) of each public UPPER_CASE assignment in the file at `path`."""
    source = Path(path).read_text()
    comments: dict[int, str] = {}  # line -> comment text
    code_lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
        elif token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            code_lines.add(token.start[0])
    found, group = [], ""
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        name = node.targets[0].id
        if not name.isupper() or name.startswith("_"):
            continue
        above = comments.get(node.lineno - 1, "")
        if above and node.lineno - 1 not in code_lines and not above.startswith("---"):
            group = above
        found.append((name, comments.get(node.end_lineno, "") if node.end_lineno in code_lines else "", group))
    return tuple(found)


def defaults(module: ModuleType, **overrides: Any) -> SimpleNamespace:
    """A module's constants as parse_config returns them, with `overrides` (lower-case names)."""
    return SimpleNamespace(**{name.lower(): knob.value for name, knob in knobs(module).items()} | overrides)


def _convert(name: str, text: str, knob: Knob) -> Any:
    """Read `text` as a value for constant `name`, or raise UserError naming what was expected. Numbers
    must be finite (1e999 is no size); None is taken where the constant's comment documents it."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text  # a bare word: only a string constant will accept it
    flag, default = "--" + name.lower(), knob.value
    if value is None and "None" in knob.help:
        return None
    if not all(_finite(v) for v in (value if isinstance(value, (tuple, list)) else [value]) if _is_number(v)):
        raise UserError(f"{flag} expects finite numbers, got {text!r}")
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
        value = value if isinstance(value, str) or value is None else text
        ok, expected = isinstance(value, str) and value.strip() != "", "a non-empty string"
    elif isinstance(default, tuple):  # a tuple it must stay: code reads its items
        ok = isinstance(value, (tuple, list)) and all(_is_number(v) for v in value)
        value = tuple(value) if isinstance(value, list) else value
        expected = f"a tuple of numbers like {default!r}"
    elif default is None and is_path(name):  # a folder or file named 2024 is still a name: the text as typed
        value, ok, expected = text, text.strip() != "", "a path, or None"
    elif default is None:
        numbers = isinstance(value, (tuple, list)) and all(_is_number(v) for v in value)
        ok = value is None or numbers or _is_number(value) or isinstance(value, str)
        value = tuple(value) if isinstance(value, list) else value
        expected = "a tuple of numbers like (-0.1, 0.1), or None"
    else:
        raise TypeError(f"constant {name} has unsupported type {type(default).__name__}")
    if not ok:
        raise UserError(f"{flag} expects {expected}, got {text!r}")
    return value


def is_path(name: str) -> bool:
    """Whether constant `name` names a file or folder (OUT_DIR, CHECKPOINT, HELDOUT, REPORT, OUT, ...)."""
    return name in ("OUT", "CHECKPOINT", "HELDOUT", "REPORT") or name.endswith("_DIR")


def _finite(number: float) -> bool:
    """A number a float can hold and is not inf or NaN (10**400, an int, is none: no size is that large)."""
    try:
        return math.isfinite(number)
    except OverflowError:
        return False


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of usage + traceback-like noise
        raise UserError(f"{message} (see --help)")


def script_path(module: ModuleType) -> str:
    """How a user names the script from the repo's root: train_vae.py, tools/bench.py."""
    path = Path(module.__file__).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name


def parse_config(module_name: str, argv: Sequence[str] | None = None) -> SimpleNamespace:
    """Defaults from the module's constants, with command-line overrides applied."""
    module = importlib.import_module(module_name)
    constants = knobs(module)
    parser = _Parser(
        prog=f"python {script_path(module)}",
        description=(module.__doc__ or "").strip().splitlines()[0],
        epilog="Values are Python literals: 64, 1e-3, True, None, \"(-0.1, 0.1)\".",
        allow_abbrev=False,
    )
    groups: dict[str, argparse._ArgumentGroup] = {}
    for name, knob in constants.items():
        if knob.group not in groups:
            groups[knob.group] = parser.add_argument_group(knob.group or None)
        bool_flag = {"nargs": "?", "const": "True"} if isinstance(knob.value, bool) else {}
        groups[knob.group].add_argument(
            "--" + name.lower(), metavar="VALUE", help=f"{knob.help} (default: {knob.value!r})", **bool_flag
        )
    known, unknown = parser.parse_known_args(argv)
    if unknown:
        flags = ["--" + name.lower() for name in constants]
        close = [match for arg in unknown if arg.startswith("--")
                 for match in difflib.get_close_matches(arg.split("=")[0], flags, n=1, cutoff=0.6)]
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise UserError(f"unrecognized arguments: {' '.join(unknown)}{hint} (see --help)")
    args = vars(known)
    config = {}
    for name, knob in constants.items():
        text = args[name.lower()]
        if text is None:
            config[name.lower()] = knob.value
        else:
            config[name.lower()] = _convert(name, text, knob)
            print(f"override: {name} = {config[name.lower()]!r}")
        if is_path(name) and isinstance(config[name.lower()], str):
            _require_a_path_the_system_takes(name, config[name.lower()])
    return SimpleNamespace(**config)


def _require_a_path_the_system_takes(name: str, path: str) -> None:
    """Refuse, before any work, a path whose name part or whole length the file system refuses: found
    late, it would be an OSError from deep in a run."""
    here = Path(path).absolute()
    existing = next(folder for folder in here.parents if os.path.isdir(folder))  # isdir: False, never OSError
    limits = {key: _pathconf(existing, key, default) for key, default in (("PC_NAME_MAX", 255), ("PC_PATH_MAX", 4096))}
    long_part = next((part for part in here.parts if len(os.fsencode(part)) > limits["PC_NAME_MAX"]), None)
    if long_part is not None:
        raise UserError(f"{name} names a file or folder {len(os.fsencode(long_part))} bytes long, and the file "
                        f"system takes at most {limits['PC_NAME_MAX']}: give a shorter name")
    if len(os.fsencode(str(here))) >= limits["PC_PATH_MAX"]:
        raise UserError(f"{name} is a path {len(os.fsencode(str(here)))} bytes long, and the system takes under "
                        f"{limits['PC_PATH_MAX']}: give a shorter one")


def _pathconf(path: Path, key: str, default: int) -> int:
    try:
        return os.pathconf(path, key)
    except (OSError, ValueError, AttributeError):  # no such limit here (Windows, some file systems)
        return default

