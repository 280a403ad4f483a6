"""Progress on long work: a bar on a terminal, a plain line now and then in a log."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm


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

