"""The command-line contract shared by every script: options, one-line errors, clean stops, safe writes.

Every public UPPER_CASE global of a script is a knob: `parse_config` turns each into a
`--lower_case_name value` option (its trailing comment becomes the --help text, the
comment line above a group of them its heading), checks each override against the type
of its default, and returns the final values as a namespace with lower-case names.
Module constants that are not knobs start with an underscore.

Values are read with `ast.literal_eval`, never `exec`, so `--angle_range "(-0.1, 0.1)"`
and `--angle_range None` work and nothing else runs. A string constant also takes a
bare word (`--env_id Pendulum-v1`); a bool constant given alone means True
(`--resume`). A flag must be spelled out in full: `--n_frame` is an error.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import difflib
import importlib
import io
import os
import signal
import sys
import tempfile
import time
import tokenize
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import IO, Any

from tqdm import tqdm

_REPO = Path(__file__).resolve().parents[1]  # where the scripts live


class UserError(Exception):
    """A problem the user can fix (a bad constant, a missing file): one line, exit 1."""


class ProgressBar:
    """Progress on long work, with the time left and (given `images_per_unit`) the images per second:
    a tqdm bar on a terminal; in a pipe or a log file, where a bar would be silence or noise, one
    plain line every `every` seconds. On standard output like the rest of the log, so a process whose
    output is silenced (torchrun's ranks but the first) shows none."""

    def __init__(self, total: int, desc: str, unit: str, initial: int = 0, every: float = 10.0,
                 images_per_unit: int = 0) -> None:
        self.total, self.desc, self.unit, self.done, self.every = total, desc, unit, initial, every
        self.images_per_unit, self.note, self._first = images_per_unit, "", initial
        self._bar = (tqdm(total=total, desc=desc, unit=unit, initial=initial, leave=False, file=sys.stdout)
                     if sys.stdout.isatty() else None)
        self._start = self._last = time.monotonic()

    def update(self, n: int = 1, note: str = "") -> None:
        """`n` more units done; `note` (a running loss, say) is shown beside the count."""
        self.done, self.note = self.done + n, note or self.note
        if self._bar is not None:
            self._bar.update(n)
            if self.note or self.images_per_unit:
                self._bar.set_postfix_str(self._details(), refresh=False)
        elif time.monotonic() - self._last >= self.every:
            self._last = time.monotonic()
            print(self.line(), flush=True)

    def _details(self) -> str:
        elapsed = max(time.monotonic() - self._start, 1e-9)
        images = (self.done - self._first) * self.images_per_unit
        speed = f"{images / elapsed:.0f} images/s" if self.images_per_unit else ""
        return ", ".join(part for part in (self.note, speed) if part)

    def line(self) -> str:
        """The plain progress line: count, time so far, estimated time left, and the details."""
        elapsed = time.monotonic() - self._start
        rate = (self.done - self._first) / elapsed if elapsed > 0 else 0.0
        left = f"~{_duration((self.total - self.done) / rate)} left" if rate > 0 else "time left unknown yet"
        units = self.unit + ("es" if self.unit.endswith(("ch", "sh", "s", "x")) else "s")
        details = self._details()
        return (f"{self.desc}: {self.done}/{self.total} {units} ({_duration(elapsed)} so far, {left})"
                + (f", {details}" if details else ""))

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._bar is not None:
            self._bar.close()


def _duration(seconds: float) -> str:
    """12s, 4m05s, 1h02m."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def reason(error: BaseException, limit: int = 200) -> str:
    """An exception's message cut to its first line (and `limit` characters), for a one-line error;
    its type name when the message is empty."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__


def require(condition: bool, message: str) -> None:
    """Raise UserError(message) unless `condition` holds: a constant's check in one line."""
    if not condition:
        raise UserError(message)


def require_seed(seed: int) -> None:
    """Seeds go to numpy, torch and the env: all take 0 .. 2**32 - 1."""
    require(0 <= seed < 2**32, f"SEED must lie in 0 .. 2**32 - 1 (numpy, torch and gymnasium all take it), got {seed}")


def available_memory() -> int:
    """Bytes of RAM available to a new allocation (MemAvailable), or a generous 64 GiB where unknown."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 64 * 2**30


def require_memory(n_bytes: float, what: str, fix: str) -> None:
    """Refuse, before any work, `what` that would take more than half the available RAM."""
    room = available_memory() / 2
    require(n_bytes <= room, f"{what} would take {n_bytes / 2**30:,.1f} GiB of memory, more than half the "
            f"{2 * room / 2**30:.1f} GiB available: {fix}")


def require_at_most(value: float, limit: float, name: str, why: str) -> None:
    """A size constant's upper edge: past it the run cannot work (or would take an absurd allocation)."""
    require(value <= limit, f"{name}={value!r} is above {limit:,}: {why}")


def open_lock_file(path: Path) -> IO[str]:
    """A lock file, opened to read and append; one line if something else (a folder) is in its place."""
    try:
        return open(path, "a+")  # noqa: SIM115 - the caller closes it
    except OSError as error:
        raise UserError(f"{path} cannot be opened as a lock file ({error.strerror or error}): move what is there "
                        "away") from None


@contextlib.contextmanager
def lock_out_dir(path: Path) -> Iterator[None]:
    """Hold OUT_DIR for this run: a second run in the same folder would overwrite its files, so it
    stops at once, naming the PID of the first. The lock file goes when the run ends. (Without
    fcntl, as on Windows, there is no lock.)"""
    try:
        import fcntl
    except ImportError:
        yield
        return
    lock_path = path / ".lock"
    with open_lock_file(lock_path) as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            owner = lock.read().strip() or "unknown"
            raise UserError(f"OUT_DIR={str(path)!r} is in use by PID {owner}: wait for that run, or give another "
                            "--out_dir") from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        try:
            yield
        finally:
            lock_path.unlink(missing_ok=True)  # still held: a run starting now makes a new one


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


@dataclass(frozen=True)
class Knob:
    """One constant: its default value, --help text and group heading."""

    value: Any
    help: str
    group: str


def knobs(module: ModuleType) -> dict[str, Knob]:
    """The module's public UPPER_CASE globals, in source order, with their comments."""
    source = Path(module.__file__).read_text()
    comments: dict[int, str] = {}  # line -> comment text
    code_lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
        elif token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            code_lines.add(token.start[0])
    found, group = {}, ""
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        name = node.targets[0].id
        if not name.isupper() or name.startswith("_"):
            continue
        above = comments.get(node.lineno - 1, "")
        if above and node.lineno - 1 not in code_lines and not above.startswith("---"):
            group = above
        help_text = comments.get(node.end_lineno, "") if node.end_lineno in code_lines else ""
        found[name] = Knob(value=getattr(module, name), help=help_text, group=group)
    return found


def defaults(module: ModuleType, **overrides: Any) -> SimpleNamespace:
    """A module's constants as parse_config returns them, with `overrides` (lower-case names)."""
    return SimpleNamespace(**{name.lower(): knob.value for name, knob in knobs(module).items()} | overrides)


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
    elif isinstance(default, tuple):  # a tuple it must stay: code reads its items
        ok = isinstance(value, (tuple, list)) and all(_is_number(v) for v in value)
        value = tuple(value) if isinstance(value, list) else value
        expected = f"a tuple of numbers like {default!r}"
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


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of usage + traceback-like noise
        raise UserError(f"{message} (see --help)")


def script_path(module: ModuleType) -> str:
    """How a user names the script from the repo's root: train_vae.py, tools/bench.py."""
    path = Path(module.__file__).resolve()
    return str(path.relative_to(_REPO)) if path.is_relative_to(_REPO) else path.name


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
            config[name.lower()] = _convert(name, text, knob.value)
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
    remove_litter(path)
    return path


_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read it back: os.umask can only be read by setting it


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call write(file) on a uniquely named temporary file beside `path`, then rename it over
    `path`: a crash or a full disk never leaves a half-written file, and two processes never
    share a temporary name. A failed write (a full disk, a file size limit, a folder in the way)
    raises UserError naming the file and the reason,
    with the temporary file removed and the previous `path` intact."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=_TEMPORARY)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes the file private; results are as readable as any file
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        reason = error.strerror or str(error)
        raise UserError(f"cannot write {path} ({reason}); the previous file is intact") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_TEMPORARY = ".tmp"  # atomic_write's temporary files: .NAME.PID.RANDOM.tmp


def remove_litter(folder: Path) -> list[str]:
    """Remove the temporary files that a process killed mid-write (kill -9, a power cut) left in
    `folder`: those whose writer, named in the file name, no longer runs. A live writer's are kept."""
    removed = []
    for path in folder.glob(f".*{_TEMPORARY}"):
        pid = path.name.rsplit(".", 3)[-3] if path.name.count(".") >= 4 else ""
        if pid.isdigit() and not _alive(int(pid)) and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path.name)
    if removed:
        print(f"removed {len(removed)} half-written files that a killed run left in {folder}")
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


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
