"""How long a run will take: seconds for some models at an image size on a device.

Each model's time grows with the pixel count. The numbers come from a ``derain bench --json``
file for that device when the repository has one (``results/bench_cpu.json``,
``results/bench_cuda.json``), interpolated between the benchmark sizes. Without one they are
*assumed* from each network's MACs at a stated throughput, and the table says so
(``measured=False``), so nobody mistakes a guess for a measurement.

Used for the ZeroGPU ``duration`` a Space asks for (:func:`gpu_duration`) and for the time
shown before a run (:func:`estimate_text`). A benchmark file describes the machine it was
measured on; :func:`calibrate` times one cheap model once on the machine the app runs on and
scales the table by the ratio (cached for the process), so the shown time follows this
machine even when it is not the benchmark's. The networks do not all scale alike between
machines (on a CPU without native bf16 the convolution-bound ones slow down most), so every
finished run also calibrates its own model (:func:`observe`): from then on that model's
estimate is its own measured ratio.
"""
from __future__ import annotations

import functools
import json
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from . import settings
from .progress import fmt_duration

log = logging.getLogger("derain.estimate")

RESULTS_DIR = Path(__file__).resolve().parent.parent / "results"

# Assumed throughputs when no benchmark exists for the device (deliberately low: an
# estimate that runs out of GPU time mid-run is worse than one that asks for too much).
ASSUMED_GMACS = {"cuda": 2000.0, "cpu": 150.0, "mps": 300.0}
ASSUMED_OVERHEAD_S = {"cuda": 2.0, "cpu": 0.2, "mps": 1.0}

# ZeroGPU: the default duration is 60 s; shorter requests get better queue priority.
GPU_MARGIN = 1.5
GPU_MIN_S = 15
GPU_MAX_S = 300


@dataclass(frozen=True)
class Cost:
    """One model on one device: ``overhead_s`` plus a time that grows with the pixel count.

    ``points`` are measured (megapixels, seconds) pairs: the time is interpolated between them,
    proportional below the first and extended with the last segment's slope above the last.
    Without points it is ``s_per_mpix`` per megapixel.
    """

    overhead_s: float = 0.0
    s_per_mpix: float = 0.0
    points: tuple[tuple[float, float], ...] = ()

    def seconds(self, megapixels: float) -> float:
        pts = self.points
        if not pts:
            return self.overhead_s + self.s_per_mpix * megapixels
        if megapixels <= pts[0][0]:
            return self.overhead_s + pts[0][1] * megapixels / pts[0][0]
        for (p1, t1), (p2, t2) in zip(pts, pts[1:]):
            if megapixels <= p2:
                return self.overhead_s + t1 + (t2 - t1) * (megapixels - p1) / (p2 - p1)
        p1, t1 = pts[-2] if len(pts) > 1 else (0.0, 0.0)
        p2, t2 = pts[-1]
        slope = max((t2 - t1) / (p2 - p1), t2 / p2)
        return self.overhead_s + t2 + slope * (megapixels - p2)


@dataclass(frozen=True)
class CostTable:
    """Costs of every model on one device, and where they come from."""

    device: str
    costs: dict[str, Cost]
    source: str  # the benchmark file, or the assumption in words
    measured: bool

    def seconds(self, models: Sequence[str], width: int, height: int) -> float:
        """Expected seconds to run ``models`` one after the other on a ``width x height`` image."""
        mpix = width * height / 1e6
        return sum(self.cost(m).seconds(mpix) for m in models)

    def cost(self, model_id: str) -> Cost:
        if model_id in self.costs:
            return self.costs[model_id]
        return _assumed_cost(model_id, self.device)  # a model the benchmark did not cover


def _device_type(device: object) -> str:
    """``"cuda"`` for ``"cuda:1"`` or a ``torch.device``: the key of the tables and factors."""
    return str(device).split(":")[0]


def _size_mpix(size: str) -> float:
    w, h = (int(v) for v in size.lower().split("x"))
    return w * h / 1e6


def from_bench(path: str | Path) -> CostTable:
    """A table fitted to a ``derain bench --json`` file (fast-path times)."""
    data = json.loads(Path(path).read_text())
    by_model: dict[str, list[tuple[float, float]]] = {}
    device = "cpu"
    for row in data["rows"]:
        device = _device_type(row["device"])
        by_model.setdefault(row["model_id"], []).append((_size_mpix(row["size"]), float(row["fast_s"])))
    costs = {m: Cost(points=tuple(sorted(pts))) for m, pts in by_model.items()}
    return CostTable(device, costs, f"measured: {Path(path).name}", True)


@functools.lru_cache(maxsize=None)
def _macs_per_mpix(model_id: str, results_dir: Path = RESULTS_DIR) -> float:
    """GMAC per megapixel: from a benchmark file's MAC count when one has the model (free),
    else counted (:func:`~derain_core.stats.model_stats`, slow for some networks)."""
    for path in sorted(Path(results_dir).glob("bench_*.json")):
        try:
            rows = json.loads(path.read_text()).get("rows", [])
        except (OSError, ValueError, AttributeError):
            continue
        for row in rows:
            if row.get("model_id") == model_id and row.get("macs_g"):
                return float(row["macs_g"]) / _size_mpix(row["size"])
    from .stats import model_stats

    return model_stats(model_id)["macs"] / 1e9 / (512 * 512 / 1e6)  # counted at 512x512


def _assumed_cost(model_id: str, device: str) -> Cost:
    return Cost(ASSUMED_OVERHEAD_S.get(device, 1.0), _macs_per_mpix(model_id) / ASSUMED_GMACS.get(device, 150.0))


def assumed(device: str, models: Sequence[str]) -> CostTable:
    """A table from each network's MACs at an assumed throughput (not measured)."""
    costs = {m: _assumed_cost(m, device) for m in models}
    rate = ASSUMED_GMACS.get(device, 150.0)
    return CostTable(device, costs, f"assumed: MACs at {rate:.0f} GMAC/s, "
                     f"{ASSUMED_OVERHEAD_S.get(device, 1.0):g} s overhead per model", False)


def table_for(device: str, models: Sequence[str] | None = None, results_dir: Path = RESULTS_DIR) -> CostTable:
    """The measured table for ``device`` ("cpu", "cuda", ...) if the repository has one, else assumed."""
    from .registry import model_ids

    device = _device_type(device)
    path = Path(results_dir) / f"bench_{device}.json"
    if path.is_file():
        try:
            return from_bench(path)
        except (KeyError, ValueError, IndexError, OSError):
            pass  # an unreadable benchmark file: fall back to the assumption
    return assumed(device, list(models) if models else model_ids())


def gpu_duration(models: Sequence[str], width: int, height: int, table: CostTable | None = None,
                 margin: float = GPU_MARGIN) -> int:
    """Seconds of GPU time to ask ZeroGPU for: the CUDA estimate times ``margin``, whole seconds,
    at least ``GPU_MIN_S`` and at most ``GPU_MAX_S``."""
    table = table or table_for("cuda", models)
    seconds = table.seconds(models, width, height) * margin
    return int(min(max(math.ceil(seconds), GPU_MIN_S), GPU_MAX_S))


def gpu_duration_for_file(path: str | Path | None, models: Sequence[str], table: CostTable | None = None,
                          max_side: int | None = None) -> int:
    """:func:`gpu_duration` for an uploaded photo, read from its header only (no decoding).

    ``max_side``: the run processes a copy whose longer side is at most this (the apps'
    working size), so the duration is that copy's. An unreadable or missing file gets the
    minimum: the run itself will reject it at once.
    """
    from PIL import Image

    from .io import downscaled_size

    try:
        with Image.open(path) as im:
            width, height = im.size
    except (OSError, ValueError, TypeError, AttributeError, Image.DecompressionBombError):
        return GPU_MIN_S
    if max_side:
        width, height = downscaled_size(width, height, max_side)
    return gpu_duration(models, width, height, table)


# --------------------------------------------------------------------------------------
# The time shown before a run, calibrated on this machine
# --------------------------------------------------------------------------------------
CALIBRATION_SIZE = (481, 321)  # the benchmark's smaller size: a measured point, under a second on a CPU
CALIBRATION_CLAMP = (0.2, 10.0)  # a factor outside this is a broken measurement, not a machine
_CALIBRATION: dict[str, float] = {}
_OBSERVED: dict[tuple[str, str], float] = {}  # (device, model) -> measured / table, from the last run
_CALIBRATION_LOCK = threading.Lock()


def calibration(device: str = "cpu") -> float | None:
    """The factor :func:`calibrate` measured for ``device`` in this process, or None (not measured)."""
    return _CALIBRATION.get(_device_type(device))


def calibrate(device: str = "cpu", table: CostTable | None = None, model_id: str | None = None) -> float:
    """Measured time / table time of one cheap model at :data:`CALIBRATION_SIZE` on ``device``.

    Measured once per device and process (later calls return the cached factor at once);
    the model is the table's cheapest at that size unless ``model_id`` is given; one small
    warm-up pass builds it first. ``DERAIN_CALIBRATE=0`` (or a device that is not present)
    gives 1.0 without measuring. A failure is logged and gives 1.0.
    """
    dev = _device_type(device)
    with _CALIBRATION_LOCK:
        if dev in _CALIBRATION:
            return _CALIBRATION[dev]
        factor = 1.0
        if settings.get("DERAIN_CALIBRATE"):
            try:
                factor = _measure_factor(dev, table, model_id)
            except (RuntimeError, ValueError, OSError) as exc:
                log.warning("calibration on %s failed, using the table as it is: %s", dev, exc)
        _CALIBRATION[dev] = factor
        return factor


def _measure_factor(device: str, table: CostTable | None, model_id: str | None) -> float:
    import numpy as np

    from . import engine
    from .registry import model_ids

    try:
        engine.resolve_device(device)
    except ValueError:
        return 1.0
    models = list(model_ids())
    table = table or table_for(device, models)
    w, h = CALIBRATION_SIZE
    model_id = model_id or min(models, key=lambda m: table.cost(m).seconds(w * h / 1e6))
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([xx / w, yy / h, 0.5 + 0.25 * np.sin(xx / 7.0)], -1).astype(np.float32)
    engine.derain_one(rgb[:96, :128], model_id, device=device, metrics=False)  # build and warm up
    seconds = engine.derain_one(rgb, model_id, device=device, metrics=False).seconds
    factor = seconds / max(table.cost(model_id).seconds(w * h / 1e6), 1e-6)
    lo, hi = CALIBRATION_CLAMP
    log.info("calibrated %s on %s: %.2f s measured at %dx%d, factor %.2f", model_id, device, seconds, w, h, factor)
    return min(max(factor, lo), hi)


def observe(model_id: str, device: str, width: int, height: int, seconds: float,
            table: CostTable | None = None) -> float | None:
    """Record a finished run of ``model_id`` (``seconds`` at ``width x height`` on ``device``):
    its measured / table ratio becomes that model's factor in :func:`model_seconds`. Returns the
    factor, or None when the run tells nothing (no time, or a table time of zero)."""
    dev = _device_type(device)
    table = table or table_for(dev, [model_id])
    predicted = table.cost(model_id).seconds(width * height / 1e6)
    if not (seconds > 0 and predicted > 0):
        return None
    lo, hi = CALIBRATION_CLAMP
    factor = min(max(seconds / predicted, lo), hi)
    with _CALIBRATION_LOCK:
        _OBSERVED[(dev, model_id)] = factor
    return factor


def factor_for(model_id: str, device: str = "cpu") -> float:
    """The factor applied to ``model_id``'s table time: its last observed run's ratio, else the
    device's calibration, else 1."""
    dev = _device_type(device)
    return _OBSERVED.get((dev, model_id)) or calibration(dev) or 1.0


def model_seconds(model_id: str, width: int, height: int, device: str = "cpu",
                  table: CostTable | None = None) -> float:
    """Expected seconds of one model at ``width x height`` on ``device``, calibrated (:func:`factor_for`)."""
    dev = _device_type(device)
    table = table or table_for(dev, [model_id])
    return table.cost(model_id).seconds(width * height / 1e6) * factor_for(model_id, dev)


def expected_seconds(models: Sequence[str], width: int, height: int, device: str = "cpu",
                     table: CostTable | None = None) -> float:
    """Seconds to run ``models`` at ``width x height`` on ``device``: the table, each model times
    its factor (its last run's, else the device calibration measured in this process)."""
    dev = _device_type(device)
    table = table or table_for(dev, models)
    return sum(model_seconds(m, width, height, dev, table) for m in models)


def device_words(device: str) -> str:
    """``"this CPU"``, ``"the GPU"``, ``"this Mac's GPU"``."""
    dev = _device_type(device)
    return {"cpu": "this CPU", "cuda": "the GPU", "mps": "this Mac's GPU"}.get(dev, dev)


def estimate_text(models: Sequence[str], width: int, height: int, device: str = "cpu",
                  table: CostTable | None = None) -> str:
    """``"about 26 s for 5 models at 640x480 on this CPU"`` (with a note when the table is a guess)."""
    dev = _device_type(device)
    table = table or table_for(dev, models)
    seconds = expected_seconds(models, width, height, dev, table)
    n = len(models)
    text = (f"about {fmt_duration(seconds)} for {n} model{'' if n == 1 else 's'} at {width}x{height} "
            f"on {device_words(dev)}")
    if not table.measured:
        text += " (a rough guess: no benchmark for this device)"
    return text
