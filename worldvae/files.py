"""Files a run writes and guards: atomic writes, the OUT_DIR lock, litter of killed writers.

Every file is written whole or not at all (`atomic_write`); a second run in a held OUT_DIR
is refused (`lock_out_dir`); what a killed writer left half-written is removed by the next
run (`remove_litter`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from worldvae.cli import UserError


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

