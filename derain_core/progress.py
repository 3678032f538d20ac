"""Progress and cancellation of a run: per-tile progress with an ETA, and a cancel token.

::

    token = CancelToken()
    for step in compare.run(upload, cancel=token, on_progress=lambda p: print(p.text)):
        ...
    # from another thread (a Cancel button):  token.cancel()
    # -> compare.run raises Cancelled before the next tile (or the next model) starts

The token is checked after every tile of a tiled run and before every model, so a
cancelled run stops within one tile. :class:`Tracker` turns "model i of n, tile d of t"
into the fraction done and the time left, weighting each model by its expected cost
(:mod:`derain_core.estimate`), so a slow model's tiles count for more than a fast one's.
"""
from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence


class Cancelled(Exception):
    """A run was cancelled through its :class:`CancelToken` (not an error of the run)."""


class CancelToken:
    """Set once by whoever wants the work to stop; checked by the worker between tiles."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` when the token was cancelled."""
        if self._event.is_set():
            raise Cancelled("the run was cancelled")


def fmt_duration(seconds: float) -> str:
    """``"8 s"``, ``"45 s"``, ``"3 min 10 s"``, ``"1 h 5 min"`` (rounded for a person to read)."""
    s = max(0, int(round(seconds)))
    if s < 90:
        return f"{max(s, 1)} s"
    if s < 3600:
        m, s = divmod(s, 60)
        s = s // 10 * 10  # "3 min 10 s": tens of seconds are precise enough
        return f"{m} min {s} s" if s else f"{m} min"
    h, rest = divmod(s, 3600)
    m = rest // 60
    return f"{h} h {m} min" if m else f"{h} h"


@dataclass(frozen=True)
class RunProgress:
    """Where a run stands: model ``index`` (0-based) of ``models``, ``tiles_done`` of ``tiles``."""

    index: int
    models: int
    model_id: str
    name: str
    tiles_done: int  # 0 .. tiles (a whole-image pass: 0, then 1 when the model finished)
    tiles: int  # 1 for a whole-image pass
    fraction: float  # of the whole run, each model weighted by its expected cost
    elapsed_s: float
    eta_s: float | None  # seconds left; None: not known yet

    @property
    def text(self) -> str:
        """``"MFAN (2/5) · tile 12 of 63 · about 3 min left"``."""
        parts = [f"{self.name} ({self.index + 1}/{self.models})"]
        if self.tiles > 1:
            parts.append(f"tile {self.tiles_done} of {self.tiles}")
        if self.eta_s is not None:
            parts.append(f"about {fmt_duration(self.eta_s)} left")
        return " · ".join(parts)


class Tracker:
    """Builds :class:`RunProgress` for a run of ``model_ids`` whose expected costs are ``weights``.

    Before anything finished, the time left is the expected total minus the time spent
    (``expected_s``, when given); after that it is the time spent scaled by what is left.
    """

    def __init__(self, model_ids: Sequence[str], names: Sequence[str], weights: Sequence[float] | None = None,
                 expected_s: float | None = None, clock: Callable[[], float] = time.perf_counter) -> None:
        self.model_ids, self.names = list(model_ids), list(names)
        w = [max(float(v), 1e-9) for v in (weights or [1.0] * len(self.model_ids))]
        # cost of the models before each one, summed in order, so that the fraction where one model ends
        # and the next begins is the same float: the fraction never steps back (not even by rounding)
        ends = list(itertools.accumulate(w))
        self._before, self._weights, self._total = [0.0, *ends[:-1]], w, (ends[-1] if ends else 1.0)
        self.expected_s = expected_s
        self._clock = clock
        self._t0 = clock()

    def at(self, index: int, tiles_done: int = 0, tiles: int = 1) -> RunProgress:
        tiles = max(1, tiles)
        done = self._before[index] + self._weights[index] * (min(tiles_done, tiles) / tiles)
        frac = min(1.0, done / self._total)
        elapsed = self._clock() - self._t0
        if frac > 0:
            eta = elapsed * (1 - frac) / frac
        elif self.expected_s is not None:
            eta = max(0.0, self.expected_s - elapsed)
        else:
            eta = None
        return RunProgress(index, len(self.model_ids), self.model_ids[index], self.names[index],
                           tiles_done, tiles, frac, elapsed, eta)
