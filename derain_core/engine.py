"""Inference engine: load models once, pick device and precision, pad, tile, time, measure.

Everything the apps and the CLI do with a model goes through here::

    import derain_core as dc
    model = dc.load_model("dsmnet")                  # trained weights, eval mode, fast path
    results = dc.derain("rainy.png", gt="clean.png", maps=True)
    for r in results: print(r.model_id, r.seconds, r.metrics)

The engine reads all model facts from the cards (size multiple, fp16/bf16 support,
tiling overlap), so it has no per-model special cases.
"""
from __future__ import annotations

import ctypes
import gc
import inspect
import os
import sys
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from . import settings
from . import weights as wts
from .base import MapSpec, reference_kernels
from .registry import ModelCard, create_model, get_card, model_ids
from .tiling import TileCallback, run_tiled

UNTRAINED = "untrained"
DEFAULT_TILE = 512  # tile side used when an image is above the threshold
TILE_THRESHOLD = settings.get("DERAIN_TILE_THRESHOLD")  # pixels
# Without a card default, photos get heavy-rain weights when shipped, else the Rain100L ones.
VARIANT_PREFERENCE = ("heavy", "rain100l")
MAPS_MAX_SIDE = settings.get("DERAIN_MAPS_MAX_SIDE")  # maps of larger images: preview pass
# Built networks kept at once (least recently used dropped first). The five default ones on one
# device are 5; a few more leave room for a second variant or device without growing unbounded.
MODEL_CACHE_SIZE = settings.get("DERAIN_MODEL_CACHE")


# --------------------------------------------------------------------------------------
# Device and precision
# --------------------------------------------------------------------------------------
def default_device() -> torch.device:
    """CUDA if present, else Apple MPS, else CPU (``DERAIN_DEVICE`` overrides)."""
    forced = settings.get("DERAIN_DEVICE")
    if forced:
        try:
            return torch.device(forced)
        except RuntimeError:
            raise settings.SettingError(f"DERAIN_DEVICE is not a torch device (cpu, cuda, cuda:1, mps); "
                                        f"got {forced!r}") from None
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None) -> :func:`default_device`; any other name is checked to exist."""
    if name is None or str(name) == "auto":
        return default_device()
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA requested but not available")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("MPS requested but not available")
    return dev


def tune_cpu_allocator() -> bool:
    """Keep freed memory in glibc's heap instead of handing it back to the OS at once.

    The networks allocate and free tens of MB per layer; with glibc's defaults every such
    tensor is a fresh ``mmap`` whose pages fault in on first touch (JDNet: 2.95 s against
    2.50 s; compare ``scripts/fast_vs_reference.py jdnet`` with ``DERAIN_MALLOC_TUNING=0``). Sets
    ``M_MMAP_THRESHOLD`` to 32 MB (glibc's maximum), ``M_TRIM_THRESHOLD`` to 1 GB and
    ``M_TOP_PAD`` to 256 MB. Linux/glibc only; ``DERAIN_MALLOC_TUNING=0`` switches it off.
    Returns whether it was applied.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED is not None:
        return _ALLOCATOR_TUNED
    _ALLOCATOR_TUNED = False
    if not settings.get("DERAIN_MALLOC_TUNING") or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
        _ALLOCATOR_TUNED = bool(libc.mallopt(m_mmap_threshold, 32 * 2**20)
                                and libc.mallopt(m_trim_threshold, 2**30)
                                and libc.mallopt(m_top_pad, 256 * 2**20))
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        pass
    return _ALLOCATOR_TUNED


_ALLOCATOR_TUNED: bool | None = None


HUGEPAGE_TUNABLE = "glibc.malloc.hugetlb=1"


def hugepage_env() -> dict[str, str] | None:
    """The environment for a training process whose glibc heap uses transparent huge pages.

    ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` (glibc 2.35+) makes malloc ``madvise`` its heap
    for 2 MB pages: a training step touches gigabytes of activations, and with 4 kB pages the
    first steps spend seconds in page faults and every step some in TLB misses (``derain bench
    --train`` runs its rows the same way). glibc reads it only at start-up, so
    ``derain train`` re-executes itself with it (:func:`reexec_with_hugepages`). Returns None
    where it does not apply: not Linux/glibc 2.35+, huge pages off, ``DERAIN_MALLOC_TUNING=0``,
    or already set.
    """
    if not settings.get("DERAIN_MALLOC_TUNING") or not sys.platform.startswith("linux"):
        return None
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" in tunables:
        return None
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            thp = f.read()
    except (ValueError, OSError, AttributeError):
        return None
    if name != "glibc" or tuple(int(v) for v in version.split(".")[:2]) < (2, 35) or "[never]" in thp:
        return None
    return {**os.environ, "GLIBC_TUNABLES": f"{tunables}:{HUGEPAGE_TUNABLE}" if tunables else HUGEPAGE_TUNABLE}


def reexec_with_hugepages() -> None:
    """Replace this process by itself under :func:`hugepage_env` (no-op where it does not
    apply). For command-line entry points only: whatever ran before is lost."""
    env = hugepage_env()
    if env is not None and getattr(sys, "orig_argv", None):
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def release_memory() -> bool:
    """Hand memory freed by a finished run back to the operating system.

    :func:`tune_cpu_allocator` keeps up to 1 GB of freed heap per glibc arena so the next
    layer's tensors need no fresh page faults; a server that answers several users from
    several threads would otherwise keep every arena's high-water mark resident after the
    run. This collects Python garbage, calls glibc's ``malloc_trim(0)`` (all arenas) and empties
    CUDA's cache. Returns whether ``malloc_trim`` ran (False off glibc).
    """
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    if not sys.platform.startswith("linux"):
        return False
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        return True
    except (OSError, AttributeError):  # not glibc
        return False


def cpu_has_native_bf16() -> bool:
    """True when this CPU runs bf16 matrix work natively (AVX512-BF16 or AMX).

    oneDNN's own ``_is_mkldnn_bf16_supported`` also says yes on plain AVX-512 CPUs, where it
    emulates bf16, slower than fp32: on such a CPU (2 threads) ``derain train jdnet`` logged
    about 7.4 s per step in bf16 and 5.0 s in fp32.
    """
    return cpu_matrix_isa() in ("AMX", "AVX512-BF16")


def cpu_matrix_isa() -> str:
    """This CPU's fastest instructions for matrix work, as a weight card records them: ``AMX``,
    ``AVX512-BF16`` or PyTorch's CPU capability (e.g. ``AVX512``, ``AVX2``). Machines with the
    same model name differ here, and a training step's time depends on it."""
    try:
        if torch.cpu._is_amx_tile_supported():
            return "AMX"
        if torch.cpu._is_avx512_bf16_supported():
            return "AVX512-BF16"
    except AttributeError:  # pragma: no cover - older torch
        pass
    return torch.backends.cpu.get_cpu_capability()


def choose_precision(card: ModelCard, device: torch.device) -> str:
    """``"bf16"``, ``"fp16"`` or ``"fp32"`` for this model on this device.

    Half precision only where the card allows it (the card's flags are backed by a test
    comparing with fp32 at >= 45 dB PSNR). ``DERAIN_PRECISION=fp32`` forces fp32.
    """
    forced = settings.get("DERAIN_PRECISION")
    if forced:
        return forced
    if device.type == "cuda":
        if card.supports_bf16 and torch.cuda.is_bf16_supported():
            return "bf16"
        if card.supports_fp16:
            return "fp16"
    if device.type == "cpu" and card.supports_bf16 and card.cpu_bf16 and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


def autocast_context(device: torch.device, precision: str):
    """The autocast context for a precision name (``nullcontext`` for fp32)."""
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


# --------------------------------------------------------------------------------------
# Loaded models
# --------------------------------------------------------------------------------------
@dataclass
class LoadedModel:
    """A network ready for inference plus the facts the UI shows about it."""

    card: ModelCard
    net: torch.nn.Module
    variant: str  # weights variant, or "untrained"
    device: torch.device
    precision: str
    weights_card: dict[str, Any] | None = None
    channels_last: bool = False
    fast: bool = True  # False: the benchmark's reference path (fp32, NCHW, plain module code)

    @property
    def trained(self) -> bool:
        return self.variant != UNTRAINED

    @property
    def label(self) -> str:
        return model_label(self.card.name, self.trained)


def model_label(name: str, trained: bool) -> str:
    """The display name of a model: its name, with ``(untrained)`` for random weights."""
    return name if trained else f"{name} ({UNTRAINED})"


def resolve_variant(model_id: str, variant: str | None, strict: bool = True) -> str:
    """The weights variant to use: the asked one, else the card's default, else the first of
    ``VARIANT_PREFERENCE`` that is shipped, else any shipped one.

    A variant the model does not ship is a ``ValueError`` when ``strict``; otherwise the model
    falls back to its default (what the apps do when one variant is asked of several models).
    Returns ``"untrained"`` when no weights exist for the model.
    """
    available = wts.available_variants(model_id)
    if variant == UNTRAINED:
        return UNTRAINED
    if variant is not None and variant in available:
        return variant
    if variant is not None and strict:
        raise ValueError(f"{model_id}: no weights variant {variant!r}; "
                         f"available: {', '.join(available) or 'none (untrained only)'}")
    card = get_card(model_id)
    for preferred in (card.default_variant, *VARIANT_PREFERENCE):
        if preferred in available:
            return preferred
    return available[0] if available else UNTRAINED


def fold_batchnorm(net: torch.nn.Module) -> int:
    """Fold every BatchNorm that directly follows a conv in an ``nn.Sequential`` into the conv
    (eval mode only; same result to float rounding, one pass over the tensor less). Returns
    how many were folded. Used on the fast path; the reference path keeps the plain modules."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval
    folded = 0
    for seq in [m for m in net.modules() if isinstance(m, torch.nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if (type(conv) is torch.nn.Conv2d and isinstance(bn, torch.nn.BatchNorm2d)
                    and bn.track_running_stats and not conv.training and not bn.training):
                seq[i] = fuse_conv_bn_eval(conv, bn)
                seq[i + 1] = torch.nn.Identity()
                folded += 1
    return folded


def _build(model_id: str, variant: str, device: torch.device, fast: bool) -> LoadedModel:
    card = get_card(model_id)
    if variant == UNTRAINED:
        torch.manual_seed(0)  # reproducible random init
        net = create_model(model_id)
        weights_card = None
    else:
        net = wts.load_weights(model_id, variant)
        weights_card = wts.read_card(model_id, variant)
    net = net.eval().to(device)
    if device.type == "cpu":
        tune_cpu_allocator()
    if fast:
        fold_batchnorm(net)
    precision = choose_precision(card, device) if fast else "fp32"
    channels_last = fast and (device.type == "cuda" or (device.type == "cpu" and card.cpu_channels_last))
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    for p in net.parameters():
        p.requires_grad_(False)
    return LoadedModel(card, net, variant, device, precision, weights_card, channels_last, fast)


class ModelCache:
    """Thread-safe cache: every (model, variant, device, fast) is built once and reused.

    At most ``max_size`` networks are kept; the least recently used one is dropped first
    (it is rebuilt from its weights file when asked for again).
    """

    def __init__(self, max_size: int = MODEL_CACHE_SIZE) -> None:
        self.max_size = max(1, int(max_size))
        self._models: dict[tuple, LoadedModel] = {}
        self._lock = threading.Lock()
        self._key_locks: dict[tuple, threading.Lock] = {}

    def get(self, model_id: str, variant: str | None = None, device: torch.device | str | None = None,
            fast: bool = True) -> LoadedModel:
        device = torch.device(device) if device is not None else default_device()
        variant = resolve_variant(model_id, variant)
        key = (model_id, variant, str(device), fast)
        with self._lock:
            if key in self._models:
                self._models[key] = self._models.pop(key)  # most recently used last
                return self._models[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # build outside the global lock so other models can load meanwhile
            with self._lock:
                loaded = self._models.get(key)
            if loaded is None:
                loaded = _build(model_id, variant, device, fast)
                with self._lock:
                    self._models[key] = loaded
                    while len(self._models) > self.max_size:
                        self._models.pop(next(iter(self._models)))
        return loaded

    def __len__(self) -> int:
        return len(self._models)

    def keys(self) -> list[tuple]:
        """The cached keys, least recently used first."""
        with self._lock:
            return list(self._models)

    def clear(self) -> None:
        with self._lock:
            self._models.clear()


MODELS = ModelCache()


def load_model(model_id: str, variant: str | None = None, device: torch.device | str | None = None
               ) -> torch.nn.Module:
    """The network with its trained weights (the card's default variant), eval mode, fast path.

    Falls back to reproducible random weights, marked untrained, when none are shipped.
    """
    loaded = MODELS.get(model_id, variant, device)
    net = loaded.net
    net.derain_variant = loaded.variant
    net.derain_precision = loaded.precision
    return net


# --------------------------------------------------------------------------------------
# Running a model on an image tensor: whole or tiled
# --------------------------------------------------------------------------------------
def _takes_on_tile(fn: Any) -> bool:
    try:
        return "on_tile" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def available_memory(device: torch.device) -> int | None:
    """Bytes a new allocation can use on ``device``: CUDA's free memory, or Linux's
    ``MemAvailable``; None where unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_tiled_memory(loaded: LoadedModel, h: int, w: int) -> None:
    """Refuse a tiled run whose whole-image tensors (``tiled_memory``) would take more than
    80 % of the memory available: a clear error instead of the system killing the server.
    (State that a network spills to temporary files is checked against the free disk space
    when the run creates them, :func:`derain_core.tiling.spill_folder`.)"""
    need, _ = loaded.net.tiled_memory(h, w, loaded.device)
    free = available_memory(loaded.device)
    if free is not None and need > 0.8 * free:
        raise MemoryError(f"{loaded.card.name} needs about {need / 2**30:.1f} GB for a {w}x{h} photo at full "
                          f"resolution and {free / 2**30:.1f} GB are free; run it on a smaller copy "
                          "(the working size, or --max-side)")


def run_model(loaded: LoadedModel, x: torch.Tensor, tile: int | None = None,
              on_tile: TileCallback | None = None) -> tuple[torch.Tensor, int | None]:
    """Clean image for ``x`` (1x3xHxW on the model's device) and the tile size used.

    ``tile=None`` tiles only above ``TILE_THRESHOLD`` pixels (4x that for cards whose
    ``tiling`` is "discouraged"); ``tile=0`` forces whole-image.
    On CUDA out-of-memory the tile size is halved until it fits (down to 64 px).
    ``on_tile(done, total)`` is called after each tile of a tiled run (not for a whole-image
    pass); an exception it raises (a cancellation) stops the run before the next tile.
    """
    h, w = x.shape[-2:]
    if tile is None:  # cards that discourage tiling (whole-image statistics) tile only when huge
        threshold = TILE_THRESHOLD * (4 if loaded.card.tiling == "discouraged" else 1)
        tile = DEFAULT_TILE if h * w > threshold else 0
    overlap = loaded.card.tile_overlap
    while True:
        try:
            with torch.inference_mode(), autocast_context(loaded.device, loaded.precision), \
                    reference_kernels(not loaded.fast):
                xin = x.contiguous(memory_format=torch.channels_last) if loaded.channels_last else x
                if tile and (h > tile or w > tile):
                    if hasattr(loaded.net, "tiled_memory"):
                        check_tiled_memory(loaded, h, w)
                    tiled = getattr(loaded.net, "forward_tiled", None)  # DerainNet's, or generic
                    ov = min(overlap, tile // 4)
                    if tiled is None:
                        y = run_tiled(loaded.net, xin, tile, ov, on_tile)
                    elif on_tile is not None and _takes_on_tile(tiled):
                        y = tiled(xin, tile, ov, on_tile=on_tile)
                    else:
                        y = tiled(xin, tile, ov)
                    y = y.float().clamp_(0, 1)  # a fresh tensor: clamped in place
                    used = tile
                else:
                    y = loaded.net(xin).float().clamp(0, 1)
                    used = None
            return y, used
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            tile = (tile or max(h, w)) // 2
            if tile < 64:
                raise


def run_maps(loaded: LoadedModel, x: torch.Tensor, full: bool = False
             ) -> tuple[dict[str, torch.Tensor], float]:
    """Intermediate maps; images larger than ``MAPS_MAX_SIDE`` get a downscaled preview pass.

    Returns the maps (on CPU, float32) and the scale of the pass (1.0 = full resolution).
    """
    from .io import area_downscale

    x, scale = area_downscale(x, MAPS_MAX_SIDE)
    with torch.inference_mode(), autocast_context(loaded.device, loaded.precision):
        _, maps = loaded.net.forward_intermediates(x, full=full)
    return {k: v.float().cpu() for k, v in maps.items()}, scale


# --------------------------------------------------------------------------------------
# The user-facing call
# --------------------------------------------------------------------------------------
@dataclass
class ModelResult:
    """One model's answer for one image."""

    model_id: str
    label: str  # display name, "(untrained)" appended when no weights
    variant: str
    trained: bool
    output: np.ndarray  # HxWx3 float32 in [0, 1]; compare.run keeps it at the photo's bit depth (uint8/uint16)
    seconds: float  # wall time of the forward pass (padding and tiling included)
    metrics: dict[str, float]
    device: str
    precision: str
    tile: int | None  # tile side used, None = whole image
    maps: dict[str, torch.Tensor] | None = None
    map_specs: list[MapSpec] = field(default_factory=list)
    maps_scale: float = 1.0  # < 1: maps come from a downscaled preview pass
    alpha: np.ndarray | None = None  # the input's alpha channel, re-attached on save
    size_note: str = ""  # "processed at 640x480, downscaled from 4032x3024" when a smaller copy ran

    @property
    def maps_note(self) -> str:
        return "" if self.maps is None else maps_note(self.maps_scale)

    @property
    def caption(self) -> str:
        """The label, with the size it was processed at when that is not the photo's own."""
        return with_size_note(self.label, self.size_note)


def with_size_note(label: str, size_note: str) -> str:
    """``"MFAN · processed at 640x480, downscaled from 4032x3024"`` (the label alone without a note)."""
    return f"{label} · {size_note}" if size_note else label


def maps_note(scale: float) -> str:
    """How the maps were computed, for a caption (``scale`` < 1: a downscaled preview pass)."""
    if scale < 1.0:
        return f"maps from a downscaled preview pass ({scale:.0%} of the input size)"
    return "maps at full resolution"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def derain_one(image: Any, model_id: str, variant: str | None = None, gt: Any = None,
               maps: bool = False, device: torch.device | str | None = None, tile: int | None = None,
               fast: bool = True, metrics: bool = True, on_tile: TileCallback | None = None) -> ModelResult:
    """Run one model on one image (path, bytes, PIL image or HxWx3 array).

    ``on_tile(done, total)``: called after each tile of a tiled run (see :func:`run_model`).
    """
    from . import io, metrics as mt

    img = image if isinstance(image, io.LoadedImage) else io.load_image(image)
    gt_img = None
    if gt is not None:
        gt_img = gt if isinstance(gt, io.LoadedImage) else io.load_image(gt)
        if gt_img.rgb.shape != img.rgb.shape:
            raise ValueError(f"ground truth is {gt_img.rgb.shape[1]}x{gt_img.rgb.shape[0]} but the "
                             f"image is {img.rgb.shape[1]}x{img.rgb.shape[0]}; they must match")
    loaded = MODELS.get(model_id, variant, device, fast)
    x = io.to_tensor(img.rgb, channels_last=loaded.channels_last).to(loaded.device)  # no copy on CPU
    _sync(loaded.device)
    t0 = time.perf_counter()
    y, used_tile = run_model(loaded, x, tile, on_tile)
    _sync(loaded.device)
    seconds = time.perf_counter() - t0
    out = io.to_numpy(y)
    values = mt.compute_metrics(out, gt_img.rgb if gt_img is not None else None) if metrics else {}
    result = ModelResult(model_id, loaded.label, loaded.variant, loaded.trained, out, seconds, values,
                         str(loaded.device), loaded.precision, used_tile, alpha=img.alpha)
    if maps:
        result.maps, result.maps_scale = run_maps(loaded, x)
        result.map_specs = loaded.net.map_specs()
    return result


def iter_derain(image: Any, models: Sequence[str] | None = None, variant: str | None = None,
                gt: Any = None, maps: bool = False, **kwargs: Any) -> Iterator[ModelResult]:
    """Like :func:`derain` but yields each model's result as soon as it is done.

    A ``variant`` that some model does not ship falls back to that model's default
    weights; each result's ``variant`` field tells what ran.
    """
    from . import io

    img = image if isinstance(image, io.LoadedImage) else io.load_image(image)
    gt_img = None if gt is None else (gt if isinstance(gt, io.LoadedImage) else io.load_image(gt))
    for model_id in (models or model_ids()):
        yield derain_one(img, model_id, resolve_variant(model_id, variant, strict=False), gt_img, maps,
                         **kwargs)


def derain(image: Any, models: Sequence[str] | None = None, variant: str | None = None, gt: Any = None,
           maps: bool = False, **kwargs: Any) -> list[ModelResult]:
    """One :class:`ModelResult` per model (default: all five) for ``image``.

    ``image`` and ``gt`` may be a path, bytes, a PIL image or an HxWx3 array. ``variant``
    picks the weights (default: each card's default); ``maps=True`` adds intermediate maps.
    """
    return list(iter_derain(image, models, variant, gt, maps, **kwargs))


def psnr_db(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB between two tensors in [0, 1], over all their values (used to compare the
    fast and reference paths); :func:`derain_core.metrics.psnr_torch` on the whole tensor."""
    from .metrics import psnr_torch

    return float(psnr_torch(a.float().reshape(1, 1, 1, -1), b.float().reshape(1, 1, 1, -1))[0])
