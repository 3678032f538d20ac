"""One road from upload to picture: the comparison API both apps use.

::

    from derain_core import compare

    up = compare.prepare(photo, gt, ["dsmnet", "mfan"], variant=None)  # checked once
    up.input_metrics                                # the rainy input's own metrics
    for step in compare.run(up):                    # one Step per model, as each finishes
        step.result or step.error
    maps = compare.maps_of(up.image, step.result)   # the intermediate maps of one result
    shown, scale = compare.display_copy(rgb, 720)   # every on-screen copy

Everything an app offers (models, weight variants) and every rule it applies (which
variant a model falls back to, how an untrained model is labelled, how pictures are
shrunk for the screen) comes from here or from the modules this one calls; the apps only
lay out widgets.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from . import engine, io
from . import metrics as mt
from . import weights as wts
from .base import MapSpec
from .engine import UNTRAINED, ModelResult, model_label
from .io import LoadedImage, display_copy, downscale
from .registry import list_models, model_ids

__all__ = ["UNTRAINED", "ModelChoice", "model_choices", "variant_choices", "UploadError", "Upload",
           "load_image", "check_ground_truth", "prepare", "Step", "run", "preload", "MapSet", "maps_of",
           "display_copy", "downscale", "model_label", "use_threads", "ModelResult"]

log = logging.getLogger("derain.compare")


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


@dataclass
class Upload:
    """A checked request: a decoded photo, its optional ground truth, models and variant."""

    image: LoadedImage
    gt: LoadedImage | None
    models: tuple[str, ...]
    variant: str | None  # None: each model's default weights

    @cached_property
    def input_metrics(self) -> dict[str, float]:
        """The rainy input's own metrics (against the ground truth when there is one)."""
        return mt.compute_metrics(self.image.rgb, None if self.gt is None else self.gt.rgb)


def prepare(image: Any, gt: Any = None, models: Sequence[str] | None = None,
            variant: str | None = None) -> Upload:
    """Check everything once and decode the images; any problem is an :class:`UploadError`.

    ``models=None`` means every registered model; ``variant=None`` each model's default
    weights. A variant some model does not ship is allowed (that model falls back to its
    default when it runs); a variant no model ships is not.
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
    return Upload(img, gt_img, models, variant)


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


def run(upload: Upload, metrics: bool = True, device: str | torch.device | None = None) -> Iterator[Step]:
    """Run every model of ``upload`` in turn, yielding a :class:`Step` as each finishes.

    A variant a model does not ship falls back to that model's default weights
    (``step.result.variant`` says which ran). ``metrics=False`` skips the output metrics.
    ``device=None``: the engine's default (CUDA when present).
    """
    from .registry import get_card

    for model_id in upload.models:
        name = get_card(model_id).name
        variant = engine.resolve_variant(model_id, upload.variant, strict=False)
        try:
            result = engine.derain_one(upload.image, model_id, variant, upload.gt, metrics=metrics, device=device)
        except (ValueError, RuntimeError, MemoryError) as exc:  # one model failing must not stop the others
            log.exception("model %s failed", model_id)
            yield Step(model_id, name, error=f"{name} failed: {exc}")
            continue
        yield Step(model_id, name, result=result)


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

    @property
    def note(self) -> str:
        return engine.maps_note(self.scale)


def maps_of(image: LoadedImage, result: ModelResult) -> MapSet:
    """Record the maps of the model, weights and device that produced ``result`` on ``image``.

    Photos larger than the engine's ``MAPS_MAX_SIDE`` get a downscaled preview pass; ``base``
    is the input at that same size, so every map lies exactly over it.
    """
    loaded = engine.MODELS.get(result.model_id, result.variant, result.device)
    x = io.to_tensor(image.rgb)
    maps, scale = engine.run_maps(loaded, x.to(loaded.device))
    arrays = {k: v[0].numpy() for k, v in maps.items()}
    specs = [s for s in loaded.net.map_specs() if s.key in arrays]
    base = io.to_numpy(io.area_downscale(x, engine.MAPS_MAX_SIDE)[0])
    return MapSet(result.label, arrays, specs, scale, base)
