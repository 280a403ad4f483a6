"""The dataset on disk: shards and the manifest that vouches for them.

A dataset is a folder per set of collection settings, OUT_DIR/frames_<env id>_<digest>/
(dataset.dataset_dir names it), of fixed-size shards and a manifest:

    settings.json        the collection settings that made every frame here, spelled out
    shard_00000.npz ...  SHARD_FRAMES frames each (the last may hold fewer): frames uint8
                         (N, 3, H, W), states, episode, step, action, reward, done, and the
                         settings again
    manifest.json        the settings, and per shard its frame count, size and sha256

Each shard is written atomically when it is complete and entered in the manifest at once,
so a stopped collection keeps every finished shard. A shard belongs to the dataset only
through the manifest: a shard missing, or whose bytes do not match the manifest's sha256,
is named and collected again; a damaged manifest is rebuilt from the shards that carry
these settings. Episodes never cross shards, so each shard splits into training and
validation episodes by itself (readers.py), whichever process reads it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from worldvae import cli, files
from worldvae.cli import UserError

ARRAYS = ("frames", "states", "episode", "step", "action", "reward", "done")  # what every shard holds
_MANIFEST = "manifest.json"


class Store:
    """One dataset's folder: its shards and the manifest that vouches for them.

    A folder holds one set of collection settings (its name carries their digest, and
    settings.json spells them out), so another run's settings use another folder and
    nothing here is ever emptied. Each shard also carries its settings inside it: a damaged
    manifest is rebuilt from the shards that still prove themselves. Reading needs no write
    access; only `prepare` (which may mend the manifest) and `write` write.
    """

    def __init__(self, folder: str | Path, settings: dict) -> None:
        self.folder, self.settings = Path(folder), settings  # settings: the collection's, SHARD_FRAMES among them
        self._verified: dict[int, tuple] = {}  # shard -> (sha256, size, mtime) it was last hashed and found to match

    def path(self, index: int) -> Path:
        return self.folder / f"shard_{index:05d}.npz"

    # ------------------------------------------------------------ reading (no writes)

    def read_manifest(self) -> dict:
        """The manifest's shards (index -> entry) if it is readable, of the right shape and for these
        settings; ManifestProblem saying what is wrong otherwise. No manifest yet: no shards."""
        path = self.folder / _MANIFEST
        if not path.exists():
            if any(self.folder.glob("shard_*.npz")):
                raise ManifestProblem(f"{path} is missing beside its shards")
            return {}
        try:
            manifest = json.loads(_read_regular(path))
        except (OSError, ValueError, UnicodeDecodeError) as error:
            raise ManifestProblem(f"{path} cannot be read ({cli.reason(error)})") from None
        shards = manifest.get("shards") if isinstance(manifest, dict) else None
        if not isinstance(shards, dict) or not all(_is_entry(entry) for entry in shards.values()):
            raise ManifestProblem(f"{path} is not a manifest (valid JSON of another shape)")
        if manifest.get("settings") != self.settings:
            raise ManifestProblem(f"{path} names other settings than its folder's")
        return dict(shards)

    def intact(self, sizes: dict[int, int]) -> list[int]:
        """Of the shards `sizes` names (index -> frames), those that the manifest lists with that many
        frames and whose bytes match its sha256; reads only (a read-only store is fine)."""
        try:
            entries = self.read_manifest()
        except ManifestProblem:
            return []
        return [index for index, n in sizes.items() if self._problem(index, n, entries.get(str(index))) is None]

    def _problem(self, index: int, n_frames: int, entry: dict | None) -> str | None:
        """Why shard `index` cannot serve as `n_frames` frames, or None if it can."""
        path = self.path(index)
        if path.exists() and not path.is_file():
            return "is not a regular file"
        if entry is None or entry["frames"] != n_frames:
            return "not collected yet"
        if not path.exists():
            return "is missing"
        stat = path.stat()
        seen = (entry["sha256"], stat.st_size, stat.st_mtime_ns)
        if self._verified.get(index) == seen:  # hashed already (a run checks before and after mending the manifest)
            return None
        if _sha256(_read_regular(path)) != entry["sha256"]:
            return "does not match its sha256 in the manifest"
        self._verified[index] = seen
        return None

    def frame_count(self, shards: Sequence[int]) -> int:
        """Frames in `shards`, as the manifest records them."""
        entries = self.read_manifest()
        return sum(entries[str(index)]["frames"] for index in shards)

    def read(self, index: int, keys: Sequence[str] = ARRAYS) -> dict[str, np.ndarray]:
        """Arrays `keys` of shard `index`; one line naming the shard if it cannot be read, or holds
        frames of another size than the store's."""
        path = self.path(index)
        try:
            with np.load(io.BytesIO(_read_regular(path)), allow_pickle=False) as npz:
                data = {key: npz[key] for key in keys}
        except Exception as error:  # zip, CRC, key and value errors all mean the same here
            raise UserError(f"{path} cannot be read ({cli.reason(error)}): run train_vae.py with the same constants "
                            "to collect it again") from None
        side = self.settings.get("img_size")
        if "frames" in data and side is not None and data["frames"].shape[1:] != (3, side, side):
            raise UserError(f"{path} holds frames of shape {data['frames'].shape[1:]}, not the store's "
                            f"{(3, side, side)}: it was replaced; run train_vae.py with the same constants to "
                            "collect it again")
        return data

    # ------------------------------------------------------------ writing

    def prepare(self) -> None:
        """Make the folder ready to collect into: created, its settings spelled out in settings.json,
        what a killed writer left half-written removed, and a damaged manifest rebuilt from the shards."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise UserError(f"{self.folder} is in the way of the dataset's folder and is not a folder: move it "
                            "away, or choose another OUT_DIR") from None
        files.remove_litter(self.folder)
        settings = self.folder / "settings.json"
        if not settings.exists():
            text = json.dumps(self.settings, indent=1, sort_keys=True)
            files.atomic_write(settings, lambda f: f.write(text.encode()))
        try:  # a sound manifest needs no lock to be read: a complete read-only store works
            sound = self.read_manifest() is not None and (self.folder / _MANIFEST).exists()
        except ManifestProblem:
            sound = False
        if not sound:
            with self._locked():
                pass  # under the lock a new store's manifest is written, and a damaged one mended

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict]:
        """The manifest's shards (index -> entry), for reading and changing; written back atomically on
        leaving. Processes that share the folder (ranks of one torchrun job) take turns through a file
        lock. A damaged manifest is rebuilt first from the shards that prove themselves."""
        with files.open_lock_file(self.folder / ".manifest.lock") as lock:
            with contextlib.suppress(ImportError):
                import fcntl
                fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                shards = self.read_manifest()
            except ManifestProblem as problem:
                shards = self._rebuild(str(problem))
            before = json.dumps(shards, sort_keys=True)
            yield shards
            if json.dumps(shards, sort_keys=True) != before or not (self.folder / _MANIFEST).exists():
                text = json.dumps({"settings": self.settings, "shards": shards}, indent=1, sort_keys=True)
                files.atomic_write(self.folder / _MANIFEST, lambda f: f.write(text.encode()))

    def _rebuild(self, problem: str) -> dict:
        """Shard entries from the shard files themselves: a shard counts if it is a regular file that
        loads, holds every array, and carries these settings. The damaged manifest is kept beside,
        as manifest.json.damaged; nothing else is touched."""
        shards, refused = {}, []
        for index, path in self._shard_files():
            entry = self._entry_from_shard(path)
            if entry is None:
                refused.append(path.name)
            else:
                shards[str(index)] = entry
        damaged = self.folder / _MANIFEST
        if damaged.exists():
            os.replace(damaged, self.folder / f"{_MANIFEST}.damaged")
        left = f"; these prove nothing and will be collected again: {', '.join(refused)}" if refused else ""
        print(f"{problem}: rebuilt it from the shards, {len(shards)} of which carry these settings and load whole "
              f"(the damaged file is kept as {_MANIFEST}.damaged){left}")
        return shards

    def _shard_files(self) -> list[tuple[int, Path]]:
        """(index, path) of the files named as shards are (shard_00012.npz); others are none of ours."""
        found = (re.fullmatch(r"shard_(\d{5,})\.npz", path.name) for path in self.folder.glob("shard_*.npz"))
        return sorted((int(match.group(1)), self.folder / match.group(0)) for match in found if match)

    def recoverable(self, sizes: dict[int, int]) -> list[int]:
        """Of the shards `sizes` names, those a sound manifest vouches for or, if it is damaged, those
        its rebuild would keep (shards that carry these settings and load whole); reads only."""
        try:
            self.read_manifest()
        except ManifestProblem:
            files = dict(self._shard_files())
            return [index for index, n in sizes.items()
                    if index in files and (self._entry_from_shard(files[index]) or {}).get("frames") == n]
        return self.intact(sizes)

    def _entry_from_shard(self, path: Path) -> dict | None:
        if not path.is_file():
            return None
        try:
            payload = _read_regular(path)
            with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
                carried = json.loads(npz["settings"].tobytes()) if "settings" in npz.files else None
                frames_u8 = npz["frames"]
                complete = all(key in npz.files for key in ARRAYS)
        except Exception:  # anything unreadable proves nothing
            return None
        if carried != self.settings or not complete:
            return None
        return {"frames": len(frames_u8), "bytes": len(payload), "sha256": _sha256(payload)}

    def missing(self, sizes: dict[int, int], quiet: bool = False) -> list[int]:
        """Of the shards `sizes` names (index -> frames), those to collect: never collected, or
        missing, resized or changed on disk since (each of those named). A file in a shard's place
        that is not a regular file is never read nor replaced: one line asks to move it. Reads only:
        `prepare` mends a damaged manifest first (unmended, it vouches for no shard)."""
        try:
            entries = self.read_manifest()
        except ManifestProblem:
            entries = {}
        todo = []
        for index, n_frames in sizes.items():
            problem = self._problem(index, n_frames, entries.get(str(index)))
            if problem == "is not a regular file":
                raise UserError(f"{self.path(index)} is not a regular file, where shard {index} belongs: move it away")
            # a shard of ours that a kill left without its manifest entry is collected again, alike; anything else
            # at its name is a user's file
            if problem == "not collected yet" and self.path(index).exists() and (
                    self._entry_from_shard(self.path(index)) is None):
                raise UserError(f"{self.path(index)} is in the way of shard {index} and is none of this store's "
                                "shards (no manifest entry, not of these settings): move it away")
            if problem is None:
                continue
            if not quiet and problem != "not collected yet":
                print(f"{self.path(index)} {problem}; collecting it again")
            todo.append(index)
        return todo

    def write(self, index: int, data: dict[str, np.ndarray]) -> None:
        """Shard `index`, with the settings that made it inside, written atomically, then entered in the manifest."""
        buffer = io.BytesIO()  # compressed in memory first: the sha256 is of the bytes on disk
        carried = np.frombuffer(json.dumps(self.settings, sort_keys=True).encode(), dtype=np.uint8)
        np.savez_compressed(buffer, **data, settings=carried)
        payload = buffer.getvalue()
        files.atomic_write(self.path(index), lambda f: f.write(payload))
        with self._locked() as entries:
            entries[str(index)] = {"frames": len(data["frames"]), "bytes": len(payload), "sha256": _sha256(payload)}


class ManifestProblem(Exception):
    """The manifest cannot vouch for the shards: unreadable, of the wrong shape, or for other settings."""


def _is_entry(entry: object) -> bool:
    return isinstance(entry, dict) and isinstance(entry.get("frames"), int) and isinstance(entry.get("sha256"), str)


def _read_regular(path: Path) -> bytes:
    """The bytes of a regular file. A FIFO, a device or a folder in its place is an OSError, never
    read (reading a FIFO waits forever; a device may never end)."""
    if not path.is_file():
        raise OSError(f"{path.name} is not a regular file")
    return path.read_bytes()


def _sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def shard_sizes(n_frames: int, shard_frames: int) -> list[int]:
    """Frames in each shard: SHARD_FRAMES each, the rest in a last, smaller one."""
    return [min(shard_frames, n_frames - start) for start in range(0, n_frames, shard_frames)]


def shards_of_rank(n_shards: int, rank: int, world: int) -> list[int]:
    """The shards process `rank` of `world` collects and trains on: every world-th, from its rank."""
    return list(range(rank, n_shards, world))


def folder_bytes(folder: str | Path) -> int:
    """Bytes of the shards and the manifest in `folder`: the store's size on disk."""
    return sum(entry.stat().st_size for entry in os.scandir(folder)
               if entry.is_file() and (entry.name.startswith("shard_") or entry.name == _MANIFEST))
