"""Files a run writes and guards: atomic writes, the OUT_DIR lock, litter of killed writers.

Every file is written whole or not at all (`atomic_write`); a second run in a held OUT_DIR
is refused (`lock_out_dir`); what a killed writer left half-written is removed by the next
run (`remove_litter`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from worldvae.cli import UserError


def open_lock_file(path: Path) -> IO[str]:
    """A lock file, opened to read and write, created if need be and never through a symbolic link
    (which could point at a user's file); one line if something else is in its place."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666 & ~_UMASK)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise UserError(f"{path} is a symbolic link where a lock file belongs; it is never followed: move "
                            "it away") from None
        if error.errno in (errno.EROFS, errno.EACCES):
            raise UserError(f"{path.parent} is read-only ({error.strerror}), and this needs to write there (a "
                            "lock file): make it writable, or work on a copy") from None
        raise UserError(f"{path} cannot be opened as a lock file ({error.strerror or error}): move what is there "
                        "away") from None
    return os.fdopen(fd, "r+")


@contextlib.contextmanager
def lock_out_dir(path: Path) -> Iterator[None]:
    """Hold OUT_DIR for this run: a second run in the same folder would overwrite its files, so it
    stops at once, naming the PID of the first. Then what killed runs left half-written goes. The
    lock file stays (emptied) when the run ends: unlinking it while held would let two runs each
    hold a lock of their own. (Without fcntl, as on Windows, there is no lock.)"""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open_lock_file(path / ".lock") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = lock.read().strip() or "unknown"
            raise UserError(f"OUT_DIR={str(path)!r} is in use by PID {owner}: wait for that run, or give another "
                            "--out_dir") from None
        _rewrite(lock, str(os.getpid()))
        remove_litter(path)  # under the lock: no run of ours is writing here now
        try:
            yield
        finally:
            _rewrite(lock, "")


def _rewrite(lock: IO[str], text: str) -> None:
    lock.seek(0)
    lock.truncate()
    lock.write(text)
    lock.flush()


RUN_FILES = ("config.json", "metrics.csv", "steps.csv", "loss_curves.png", "reconstructions.png")  # beside the model


def refuse_to_replace(out_dir: Path, asked: bool) -> None:
    """A trained model is a user's: a run into an OUT_DIR that holds one (vae.pt, or a stopped run's
    last.pt) stops in one line, before it writes anything, unless it was asked to continue or replace it.
    So does a run into a folder holding files of a run's names that no run wrote (the user's own
    config.json or metrics.csv): a run writes its config.json first, so without one of its own there,
    the other files are not a run's either."""
    held = [name for name in ("vae.pt", "last.pt") if (out_dir / name).exists()]
    if held and not asked:
        raise UserError(f"OUT_DIR={str(out_dir)!r} holds an earlier run ({' and '.join(held)}): give another "
                        f"--out_dir to keep both, --resume to continue it, or --replace to replace it")
    theirs = [name for name in RUN_FILES if (out_dir / name).exists()]
    if theirs and not held and not asked and not _a_runs_config(out_dir / "config.json"):
        raise UserError(f"OUT_DIR={str(out_dir)!r} holds {', '.join(theirs)}, which no run of train_vae.py wrote "
                        "and a run would replace: give another --out_dir, or --replace to replace them")


def _a_runs_config(path: Path) -> bool:
    """Whether `path` is the config.json of a run (one stopped before its first epoch ended)."""
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and {"env_id", "n_frames", "seed", "out_dir"} <= set(config)


def refuse_foreign_file(path: Path, mine: Callable[[Path], bool], what: str) -> None:
    """Before a script writes `path`: refuse, in one line, a file there that `mine` does not recognise
    as one it wrote (what: the kind it writes), so a user's own file is never replaced."""
    if path.exists() and not mine(path):
        raise UserError(f"{path} exists and is not {what}, which this would replace: give another path, or move it")


def is_file(path: Path, name: str) -> bool:
    """Whether `path` is a file; a path the operating system refuses to look up (a name part longer than
    the file system allows, say) is the user's to fix: one line naming the constant `name` that gave it."""
    try:
        return path.is_file()
    except OSError as error:
        raise UserError(f"{name}={str(path)!r} cannot be looked up ({error.strerror or error})") from None


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


def json_safe(value: object) -> object:
    """`value` with every NaN or infinity (a mean over nothing, say) as None, so it is valid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read it back: os.umask can only be read by setting it


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call write(file) on a uniquely named temporary file beside `path`, then rename it over
    `path`: a crash or a full disk never leaves a half-written file, and two processes never
    share a temporary name. A failed write (a full disk, a file size limit, a folder in the way)
    raises UserError naming the file and the reason,
    with the temporary file removed and the previous `path` intact."""
    path = Path(path)
    existed = path.exists()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{_HOST}-{os.getpid()}.", suffix=_TEMPORARY)
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
        kept = "the previous file is intact" if existed else "nothing was written"
        raise UserError(f"cannot write {path} ({reason}); {kept}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_TEMPORARY = ".tmp"  # atomic_write's temporary files: .NAME.HOST-PID.RANDOM.tmp
_HOST = re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname())  # an OUT_DIR may be shared by machines


def remove_litter(folder: Path) -> list[str]:
    """Remove the temporary files that a process of this machine killed mid-write (kill -9, a power
    cut) left in `folder`: those whose writer, named in the file name, no longer runs. A live
    writer's are kept, and so is every other machine's (its PIDs mean nothing here)."""
    removed = []
    for path in folder.glob(f".*{_TEMPORARY}"):
        writer = path.name.rsplit(".", 3)[-3] if path.name.count(".") >= 4 else ""
        host, _, pid = writer.rpartition("-")
        if host == _HOST and pid.isdigit() and not _alive(int(pid)) and path.is_file():
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

