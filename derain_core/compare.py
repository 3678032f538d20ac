"""One road from upload to picture: the comparison API both apps use.

::

    from derain_core import compare

    up = compare.prepare(photo, gt, ["dsmnet", "mfan"], variant=None,
                         max_side=compare.WORKING_MAX_SIDE)  # checked once; a phone photo shrunk
    up.size_note                                    # "processed at 640x480, downscaled from 4032x3024"
    compare.expected(photo, up.models).text         # "about 26 s for 2 models at 640x480 on this CPU"
    up.input_metrics                                # the rainy input's own metrics
    token = compare.CancelToken()                   # token.cancel() from elsewhere stops the run
    for step in compare.run(up, cancel=token, on_progress=lambda p: print(p.text)):
        step.result or step.error                   # one Step per model, as each finishes
    maps = compare.maps_of(up.image, step.result)   # the intermediate maps of one result
    shown, scale = compare.display_copy(rgb, 720)   # every on-screen copy

Everything an app offers (models, weight variants) and every rule it applies (which
variant a model falls back to, how an untrained model is labelled, at what size a photo is
processed, how pictures are shrunk for the screen) comes from here or from the modules this
one calls; the apps only lay out widgets.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Hashable, Iterator, Sequence

import numpy as np
import torch

from . import engine, estimate, io, settings
from . import metrics as mt
from . import weights as wts
from .base import MapSpec
from .engine import UNTRAINED, ModelResult, model_label, with_size_note
from .io import LoadedImage, display_copy, downscale
from .progress import Cancelled, CancelToken, RunProgress, Tracker
from .registry import list_models, model_ids

__all__ = ["UNTRAINED", "WORKING_MAX_SIDE", "ModelChoice", "model_choices", "variant_choices", "UploadError",
           "calibrate_estimates", "Upload", "load_image", "check_ground_truth", "upload_problem", "size_problem",
           "prepare", "image_size", "Expected", "expected", "Step", "run", "preload", "CancelToken", "Cancelled",
           "RunProgress", "MapSet", "maps_of", "MapsCache", "MAPS", "run_images", "crops", "crop_images",
           "display_copy", "downscale", "model_label", "use_threads", "ModelResult"]

log = logging.getLogger("derain.compare")

# The apps derain a copy whose longer side is at most this many pixels unless the user asks for
# full resolution. Chosen from results/bench_cpu.json (2-core CPU, fast path): the five networks
# take 77 s at 1024x768 (the first, MSAMNet, 14 s), 40 s at 768x576, 26 s at 640x480 (the first
# 4.8 s); 640 keeps a 4:3 phone photo at about half a minute for all five with room for the
# app's own work (metrics, pictures), and the first result within 10 s. Area averaging does the
# shrinking (io.downscale_image), the ground truth shrinks the same way.
WORKING_MAX_SIDE = settings.get("DERAIN_WORKING_MAX_SIDE")  # default 640


# --------------------------------------------------------------------------------------
# What the apps offer
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelChoice:
    """One registered model as a picker shows it."""

    id: str
    name: str
    year: int
    trained: bool  # shipped weights exist

    @property
    def label(self) -> str:
        """The name, with ``(untrained)`` when no weights are shipped."""
        return model_label(self.name, self.trained)


def model_choices() -> list[ModelChoice]:
    """Every registered model, in the registry's order."""
    return [ModelChoice(c.id, c.name, c.year, bool(wts.available_variants(c.id))) for c in list_models()]


def variant_choices() -> list[str]:
    """Every shipped weights variant (of any model, sorted), then ``"untrained"``.

    An app puts its own "default" entry first and passes ``None`` for it.
    """
    shipped = sorted({v for m in model_ids() for v in wts.available_variants(m)})
    return [*shipped, UNTRAINED]


def use_threads(n: int | str | None) -> None:
    """Run inference on ``n`` CPU threads (``None`` or ``""``: keep torch's default)."""
    if n not in (None, ""):
        torch.set_num_threads(max(1, int(n)))


# --------------------------------------------------------------------------------------
# Checking an upload
# --------------------------------------------------------------------------------------
class UploadError(ValueError):
    """A problem with what the user gave; ``str(exc)`` is one sentence for the page."""

    def __init__(self, message: str, title: str = "Cannot run") -> None:
        super().__init__(message)
        self.title = title


def load_image(src: Any, what: str = "photo", name: str | None = None) -> LoadedImage:
    """Decode an image (path, bytes, PIL image, array or an already loaded image).

    An unreadable file is an :class:`UploadError` naming ``what`` it was meant to be.
    """
    if isinstance(src, LoadedImage):
        return src
    try:
        return io.load_image(src, name=name) if name else io.load_image(src)
    except io.ImageLoadError as exc:
        raise UploadError(f"Could not read the {what}: {exc}", title="Unreadable image") from None


def check_ground_truth(image: LoadedImage, gt: LoadedImage | None) -> None:
    """An :class:`UploadError` unless ``gt`` is absent or the same size as ``image``."""
    if gt is not None and gt.rgb.shape != image.rgb.shape:
        raise UploadError(f"The ground truth is {gt.width}×{gt.height} but the photo is "
                          f"{image.width}×{image.height}; they must be the same size.", title="Size mismatch")


def upload_problem(src: Any, what: str = "photo") -> str | None:
    """The plain-language problem with a file the moment it arrives, before any run: the
    :class:`UploadError` sentence :func:`load_image` would give, or ``None`` when it decodes
    (an absent file is no problem here)."""
    if src is None or (isinstance(src, str) and not src):
        return None
    try:
        load_image(src, what)
    except UploadError as exc:
        return str(exc)
    return None


def size_problem(image: Any, gt: Any) -> str | None:
    """The :func:`check_ground_truth` sentence for a photo and ground truth of different sizes,
    from their headers only; ``None`` when they match or either is absent or unreadable."""
    size, gt_size = image_size(image), image_size(gt)
    if size is None or gt_size is None or size == gt_size:
        return None
    return (f"The ground truth is {gt_size[0]}×{gt_size[1]} but the photo is {size[0]}×{size[1]}; "
            "they must be the same size.")


def size_note(processed: tuple[int, int], original: tuple[int, int]) -> str:
    """``"processed at 640x480, downscaled from 4032x3024"``, or ``""`` when the sizes are equal."""
    if tuple(processed) == tuple(original):
        return ""
    return f"processed at {processed[0]}x{processed[1]}, downscaled from {original[0]}x{original[1]}"


@dataclass
class Upload:
    """A checked request: a decoded photo, its optional ground truth, models and variant.

    ``image`` and ``gt`` are what the models see: the photo as uploaded, or its working copy
    (see :func:`prepare`'s ``max_side``); ``original_size`` is the uploaded photo's size.
    """

    image: LoadedImage
    gt: LoadedImage | None
    models: tuple[str, ...]
    variant: str | None  # None: each model's default weights
    original_size: tuple[int, int] | None = None  # (width, height) as uploaded; None: the image's own

    @property
    def processed_size(self) -> tuple[int, int]:
        """(width, height) the models run at."""
        return self.image.width, self.image.height

    @property
    def downscaled(self) -> bool:
        return self.original_size is not None and tuple(self.original_size) != self.processed_size

    @property
    def size_note(self) -> str:
        """``"processed at 640x480, downscaled from 4032x3024"``; ``""`` at full resolution.

        Every output, crop and map of a downscaled run carries it (results' ``caption``,
        :class:`MapSet`'s ``note`` and ``caption``, :func:`crops`, :meth:`caption`).
        """
        return size_note(self.processed_size, self.original_size or self.processed_size)

    def caption(self, label: str) -> str:
        """``label`` with :attr:`size_note` (e.g. ``"input · processed at ..."``)."""
        return with_size_note(label, self.size_note)

    def size_info(self) -> dict[str, Any]:
        """Sizes for a report: processed and original (width, height), and the note."""
        return {"processed_size": list(self.processed_size),
                "original_size": list(self.original_size or self.processed_size),
                "size_note": self.size_note}

    @cached_property
    def input_metrics(self) -> dict[str, float]:
        """The rainy input's own metrics (against the ground truth when there is one)."""
        return mt.compute_metrics(self.image.rgb, None if self.gt is None else self.gt.rgb)


def prepare(image: Any, gt: Any = None, models: Sequence[str] | None = None,
            variant: str | None = None, max_side: int | None = None) -> Upload:
    """Check everything once and decode the images; any problem is an :class:`UploadError`.

    ``models=None`` means every registered model; ``variant=None`` each model's default
    weights. A variant some model does not ship is allowed (that model falls back to its
    default when it runs); a variant no model ships is not.

    ``max_side`` (the apps pass :data:`WORKING_MAX_SIDE` unless the user asked for full
    resolution): a photo whose longer side is larger is replaced by an area-averaged copy of
    at most that side, and its ground truth by a copy of exactly the same size, so metrics
    compare like with like. ``None``: full resolution.
    """
    if image is None or (isinstance(image, str) and not image):
        raise UploadError("Upload a rainy photo or pick an example first.", title="No image")
    known = model_ids()
    models = tuple(known if models is None else models)
    if not models:
        raise UploadError("Choose at least one model.", title="No model")
    unknown = [m for m in models if m not in known]
    if unknown:
        raise UploadError(f"Unknown model(s): {', '.join(unknown)}; choose from {', '.join(known)}.")
    if variant is not None and variant not in variant_choices():
        raise UploadError(f"Unknown weights variant {variant!r}; choose from {', '.join(variant_choices())}.")
    img = load_image(image, "photo")
    gt_img = load_image(gt, "ground truth") if gt is not None else None
    check_ground_truth(img, gt_img)
    original = (img.width, img.height)
    if max_side:
        img = io.downscale_image(img, int(max_side))
        gt_img = None if gt_img is None else io.downscale_image(gt_img, int(max_side))
    return Upload(img, gt_img, models, variant, original)


# --------------------------------------------------------------------------------------
# The time a run will take, before it runs
# --------------------------------------------------------------------------------------
def image_size(src: Any) -> tuple[int, int] | None:
    """(width, height) of a path, bytes, PIL image, array or loaded image as :func:`load_image`
    would decode it (EXIF rotation applied), from the header only for files; ``None`` when it
    cannot be read."""
    if src is None or (isinstance(src, str) and not src):
        return None
    if isinstance(src, LoadedImage):
        return src.width, src.height
    if isinstance(src, np.ndarray):
        return (int(src.shape[1]), int(src.shape[0])) if src.ndim >= 2 else None
    from io import BytesIO

    from PIL import Image

    try:
        if isinstance(src, (bytes, bytearray, memoryview)):
            src = BytesIO(bytes(src))
        im = src if isinstance(src, Image.Image) else Image.open(src)
        w, h = im.size
        orientation = im.getexif().get(0x0112, 1)
        if im is not src:
            im.close()
    except (OSError, ValueError, TypeError, AttributeError, Image.DecompressionBombError):
        return None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


@dataclass(frozen=True)
class Expected:
    """What a run will cost, shown before it starts."""

    seconds: float
    processed_size: tuple[int, int]
    original_size: tuple[int, int]
    models: int
    text: str  # "about 26 s for 5 models at 640x480 on this CPU"


def expected(image: Any, models: Sequence[str] | None, full_resolution: bool = False,
             device: str | torch.device | None = None, max_side: int | None = None,
             table: estimate.CostTable | None = None) -> Expected | None:
    """The expected time of running ``models`` on ``image`` at the size the run will use
    (``max_side``, default :data:`WORKING_MAX_SIDE`, unless ``full_resolution``), on ``device``
    (None: the engine's default).

    Reads only the image header. ``None`` when there is no readable image or no model.
    """
    size = image_size(image)
    models = list(models or [])
    if size is None or not models:
        return None
    processed = size if full_resolution else io.downscaled_size(*size, max_side or WORKING_MAX_SIDE)
    dev = engine.resolve_device(device).type if device in (None, "auto") else str(device).split(":")[0]
    seconds = estimate.expected_seconds(models, *processed, dev, table)
    return Expected(seconds, processed, size, len(models), estimate.estimate_text(models, *processed, dev, table))


# --------------------------------------------------------------------------------------
# Running the models
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    """One model's turn: its result, or why it failed (the other models still run)."""

    model_id: str
    name: str
    result: ModelResult | None = None
    error: str | None = None


def _tracker(upload: Upload, names: Sequence[str], device: str | torch.device | None) -> Tracker:
    dev = engine.resolve_device(device).type
    table = estimate.table_for(dev, upload.models)
    w, h = upload.processed_size
    weights = [estimate.model_seconds(m, w, h, dev, table) for m in upload.models]
    return Tracker(upload.models, names, weights, sum(weights))


def run(upload: Upload, metrics: bool = True, device: str | torch.device | None = None,
        cancel: CancelToken | None = None, on_progress: Callable[[RunProgress], None] | None = None
        ) -> Iterator[Step]:
    """Run every model of ``upload`` in turn, yielding a :class:`Step` as each finishes.

    A variant a model does not ship falls back to that model's default weights
    (``step.result.variant`` says which ran). ``metrics=False`` skips the output metrics.
    Each result's ``output`` is the photo's bit depth (uint8, or uint16 for 16-bit photos),
    quantized as its PNG is, after the metrics were computed on the float output.
    ``device=None``: the engine's default (CUDA when present).

    ``on_progress(RunProgress)`` is called as each model starts and after each tile of a
    tiled (full-resolution) run, with the fraction done and the time left. ``cancel`` is
    checked before each model and after each tile: once cancelled, :class:`Cancelled` is
    raised before any more work starts. After each tiled (full-resolution) model, and when the
    run ends (finished, failed or cancelled), the freed memory is handed back to the system
    (:func:`engine.release_memory`): each network's tiles leave up to a gigabyte of freed heap.
    """
    from .registry import get_card

    names = [get_card(m).name for m in upload.models]
    tracker = _tracker(upload, names, device) if on_progress is not None else None
    try:
        for i, (model_id, name) in enumerate(zip(upload.models, names)):
            if cancel is not None:
                cancel.check()
            if tracker is not None:
                on_progress(tracker.at(i))

            def on_tile(done: int, total: int, i: int = i) -> None:
                if tracker is not None:
                    on_progress(tracker.at(i, done, total))
                if cancel is not None:
                    cancel.check()

            variant = engine.resolve_variant(model_id, upload.variant, strict=False)
            try:
                result = engine.derain_one(upload.image, model_id, variant, upload.gt, metrics=metrics, device=device,
                                           on_tile=on_tile if tracker is not None or cancel is not None else None)
            except (ValueError, RuntimeError, MemoryError) as exc:  # one model failing must not stop the others
                log.exception("model %s failed", model_id)
                yield Step(model_id, name, error=f"{name} failed: {exc}")
                continue
            result.size_note = upload.size_note
            estimate.observe(model_id, result.device, *upload.processed_size, result.seconds)  # later estimates follow it
            # Kept at the photo's bit depth from here on: exactly what its PNG holds, at a
            # quarter of the float32 output's memory (146 MB a model at 4032x3024)
            result.output = io.quantize(result.output, upload.image.bit_depth)
            if result.tile is not None:  # a full-resolution run: its tiles' heap goes back before the next model
                engine.release_memory()
            yield Step(model_id, name, result=result)
    finally:
        engine.release_memory()


def calibrate_estimates(device: str | torch.device | None = None) -> None:
    """Time one cheap model on ``device`` (default: the engine's) so :func:`expected` follows this
    machine (see :func:`derain_core.estimate.calibrate`); slow-ish, meant for a background thread."""
    from . import estimate

    estimate.calibrate(engine.resolve_device(device).type)


def preload(models: Sequence[str] | None = None, device: str | torch.device | None = None) -> list[str]:
    """Build the default weights of ``models`` (all by default) on ``device`` ahead of the first run.

    Returns the ids that could not be loaded (logged, not raised: they load on first use).
    """
    failed = []
    for model_id in model_ids() if models is None else models:
        try:
            engine.MODELS.get(model_id, None, engine.resolve_device(device))
        except (ValueError, RuntimeError, OSError) as exc:
            log.warning("could not preload %s on %s: %s", model_id, device, exc)
            failed.append(model_id)
    return failed


# --------------------------------------------------------------------------------------
# Maps of one result
# --------------------------------------------------------------------------------------
@dataclass
class MapSet:
    """The intermediate maps of one result, ready to draw with :mod:`derain_core.viz`."""

    label: str
    maps: dict[str, np.ndarray]  # key -> float32 (C, h, w)
    specs: list[MapSpec]  # the recorded ones, in the model's order
    scale: float  # 1.0: full resolution; below: a downscaled preview pass
    base: np.ndarray = field(repr=False)  # the input at the maps' resolution (float H x W x 3)
    size_note: str = ""  # the run's Upload.size_note: the photo itself was processed smaller

    @property
    def note(self) -> str:
        """How the maps were computed, and at what size the photo was processed."""
        return "; ".join(t for t in (engine.maps_note(self.scale), self.size_note) if t)

    def caption(self, spec: MapSpec) -> str:
        """The caption of one map: its title and meaning, with the size note of a downscaled run."""
        return with_size_note(f"{spec.title}: {spec.meaning}", self.size_note)

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self.maps.values()) + self.base.nbytes)


def maps_of(image: LoadedImage, result: ModelResult) -> MapSet:
    """Record the maps of the model, weights and device that produced ``result`` on ``image``.

    Photos larger than the engine's ``MAPS_MAX_SIDE`` get a downscaled preview pass; ``base``
    is the input at that same size, so every map lies exactly over it. The maps carry the
    result's size note (a downscaled run says so on every map).
    """
    loaded = engine.MODELS.get(result.model_id, result.variant, result.device)
    x = io.to_tensor(image.rgb)
    maps, scale = engine.run_maps(loaded, x.to(loaded.device))
    arrays = {k: v[0].numpy() for k, v in maps.items()}
    del maps
    specs = [s for s in loaded.net.map_specs() if s.key in arrays]
    base = io.to_numpy(io.area_downscale(x, engine.MAPS_MAX_SIDE)[0])
    engine.release_memory()  # the forward pass's intermediates are large; the maps are kept
    return MapSet(result.label, arrays, specs, scale, base, result.size_note)


class MapsCache:
    """Maps of recent results, shared by every session, at most ``max_bytes`` in all.

    The least recently used maps go first (maps of old photos are released as new ones come);
    a set larger than the whole budget is returned without being kept.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[Hashable, MapSet] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> MapSet | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key: Hashable, maps: MapSet) -> MapSet:
        with self._lock:
            self._items.pop(key, None)
            if maps.nbytes <= self.max_bytes:
                self._items[key] = maps
                while self.nbytes > self.max_bytes:
                    self._items.popitem(last=False)
        return maps

    def get_or_compute(self, key: Hashable, compute: Callable[[], MapSet]) -> MapSet:
        """The cached maps of ``key``, or ``compute()`` kept for next time."""
        found = self.get(key)
        return found if found is not None else self.put(key, compute())

    @property
    def nbytes(self) -> int:
        return sum(m.nbytes for m in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


# The maps of a big network at the 512-px preview size are tens to a few hundred MB each.
MAPS = MapsCache(settings.get("DERAIN_MAPS_CACHE_MB") * 2**20)


# --------------------------------------------------------------------------------------
# Pictures of a run with their labels
# --------------------------------------------------------------------------------------
def run_images(upload: Upload, results: Sequence[ModelResult]) -> tuple[list[np.ndarray], list[str]]:
    """The input, the ground truth (if any) and every output, all at the processed size, with labels."""
    images, labels = [upload.image.rgb], ["input"]
    if upload.gt is not None:
        images.append(upload.gt.rgb)
        labels.append("ground truth")
    for r in results:
        images.append(r.output)
        labels.append(r.label)
    return images, labels


def crops(upload: Upload, results: Sequence[ModelResult], point: tuple[float, float], crop: int,
          zoom: int) -> np.ndarray:
    """The same crop of the input, ground truth and every output side by side, labelled; a
    downscaled run has its size note written above the strip (``point`` and ``crop`` are in
    pixels of the processed image)."""
    from . import viz

    images, labels = run_images(upload, results)
    return viz.crops_strip(images, point, crop, zoom=int(zoom), labels=labels, caption=upload.size_note)


def crop_images(upload: Upload, results: Sequence[ModelResult], point: tuple[float, float], crop: int,
                zoom: int) -> list[tuple[str, np.ndarray]]:
    """The crops of :func:`crops` one by one, unlabelled, as (label, uint8 picture): each exactly
    ``crop * zoom`` pixels (nearest neighbour), for an app that shows them at their own size."""
    from . import viz

    images, labels = run_images(upload, results)
    return list(zip(labels, viz.synced_crops(images, point, crop, zoom=int(zoom))))
